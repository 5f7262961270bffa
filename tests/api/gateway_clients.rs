//! Real, unchanged exchange client libraries through the gateway listener: ccxt and the
//! exchange's own connector (binance-connector) from PyPI, and `binance` from npm, at the
//! versions pinned in clients/ and installed by scripts/client-libs. Only their base URL is
//! pointed at Rampart, which stands in front of an upstream that answers like the exchange
//! and records what it received. For each library and key type (HMAC, Ed25519, RSA):
//! start-up needs no key, balance/order/cancel/listen key pass with the identity and the
//! signed bytes unchanged, and a withdrawal without the permission is refused in the
//! exchange's shape, so the library raises its usual exception and the upstream sees nothing.
//! Needs python3 and node; skipped (loudly) without them, except in CI where it must run.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::{HeaderMap, Method, Uri};
use base64::Engine;
use rampart::clock::{Clock, SystemClock};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::api_keys::hmac_hex;
use crate::helpers::*;

/// Where scripts/client-libs installed the pinned libraries.
struct Libs {
    python: Option<String>,
    node: Option<String>,
    clients: PathBuf,
}

fn libs() -> &'static Libs {
    static LIBS: OnceLock<Libs> = OnceLock::new();
    LIBS.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new(root.join("scripts/client-libs"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("scripts/client-libs runs");
        assert!(
            out.status.success(),
            "scripts/client-libs could not install the pinned client libraries"
        );
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
        };
        Libs {
            python: line("python"),
            node: line("node"),
            clients: PathBuf::from(line("clients").expect("the clients folder")),
        }
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Library {
    /// ccxt (Python): signs POST parameters in the body.
    Ccxt,
    /// binance-connector (Python): every parameter in the query string.
    Connector,
    /// binance (npm, tiagosiebler): every parameter in the query string.
    Js,
}

impl Library {
    fn program(self) -> Option<(String, &'static str)> {
        let libs = libs();
        let (tool, script, what) = match self {
            Library::Ccxt => (&libs.python, "ccxt_client.py", "python3"),
            Library::Connector => (&libs.python, "connector_client.py", "python3"),
            Library::Js => (&libs.node, "js_client.mjs", "node and npm"),
        };
        match tool {
            Some(tool) => Some((tool.clone(), script)),
            None => {
                assert_ne!(
                    std::env::var("CI").as_deref(),
                    Ok("true"),
                    "CI must install {what} for the client library tests"
                );
                eprintln!("SKIPPED: {what} is not installed: {self:?} was not tried");
                None
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum KeyType {
    Hmac,
    Ed25519,
    Rsa,
}

impl KeyType {
    fn name(self) -> &'static str {
        match self {
            KeyType::Hmac => "hmac",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa => "rsa",
        }
    }
}

/// A key as a trading program holds it, and what the test needs to check its signatures.
struct Credential {
    api_key: String,
    kind: KeyType,
    /// HMAC: the secret.
    secret: String,
    /// Ed25519 / RSA: the private key's PKCS#8 PEM file.
    pem: Option<tempfile::NamedTempFile>,
    verify: Verifier,
}

enum Verifier {
    Hmac(String),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

impl Verifier {
    /// `true` when `signature` (as it appears in the request, percent-encoded) signs `payload`.
    fn verifies(&self, payload: &str, signature: &str) -> bool {
        let raw = percent_encoding::percent_decode_str(signature)
            .decode_utf8()
            .expect("utf-8")
            .into_owned();
        let b64 = || base64::engine::general_purpose::STANDARD.decode(&raw);
        match self {
            Verifier::Hmac(secret) => hmac_hex(secret, payload) == raw,
            Verifier::Ed25519(key) => {
                let Ok(Ok(sig)) = b64().map(|b| ed25519_dalek::Signature::from_slice(&b)) else {
                    return false;
                };
                key.verify_strict(payload.as_bytes(), &sig).is_ok()
            }
            Verifier::Rsa(key) => {
                use rsa::signature::Verifier as _;
                let Ok(Ok(sig)) = b64().map(|b| rsa::pkcs1v15::Signature::try_from(b.as_slice()))
                else {
                    return false;
                };
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.clone())
                    .verify(payload.as_bytes(), &sig)
                    .is_ok()
            }
        }
    }
}

/// Creates an API key of `kind` with `permissions`, usable from 127.0.0.1, for a signed-in,
/// stepped-up client; Ed25519 and RSA key pairs are made here, the public half registered.
async fn create_key(c: &TestClient, kind: KeyType, permissions: &[&str]) -> Credential {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey, EncodePublicKey};
    let mut body = json!({"label": "bot", "type": kind.name(), "permissions": permissions,
        "ip_allowlist": ["127.0.0.1"]});
    let (private_pem, verify) = match kind {
        KeyType::Hmac => (None, None),
        KeyType::Ed25519 => {
            let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            // PKCS#8 v1 (no public key inside): the form every library here reads, and
            // short enough for ccxt to take it for Ed25519 rather than RSA.
            let pem = ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: signing.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_pem(LineEnding::LF)
            .expect("pem");
            body["public_key"] = signing
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("pem")
                .into();
            (
                Some(pem.to_string()),
                Some(Verifier::Ed25519(signing.verifying_key())),
            )
        }
        KeyType::Rsa => {
            let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa");
            let pem =
                rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&private, LineEnding::LF).expect("pem");
            body["public_key"] = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
                &private.to_public_key(),
                LineEnding::LF,
            )
            .expect("pem")
            .into();
            (
                Some(pem.to_string()),
                Some(Verifier::Rsa(private.to_public_key())),
            )
        }
    };
    let r = c.post("/api/v1/me/api-keys", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let k = r.json();
    let secret = k["secret"].as_str().unwrap_or("").to_owned();
    let pem = private_pem.map(|text| {
        let file = tempfile::NamedTempFile::new().expect("pem file");
        std::fs::write(file.path(), text).expect("write pem");
        file
    });
    Credential {
        api_key: k["api_key"].as_str().expect("key").to_owned(),
        kind,
        verify: verify.unwrap_or_else(|| Verifier::Hmac(secret.clone())),
        secret,
        pem,
    }
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The exchange's signed payload (query string, then body, without the signature) and
    /// the signature, wherever the library put it.
    fn signed(&self) -> Option<(String, String)> {
        let split = |s: &str| -> Option<(String, String)> {
            let (rest, sig) = s.rsplit_once("signature=")?;
            Some((rest.trim_end_matches('&').to_owned(), sig.to_owned()))
        };
        if let Some((body, sig)) = split(&self.body) {
            Some((format!("{}{body}", self.query), sig))
        } else {
            let (query, sig) = split(&self.query)?;
            Some((format!("{query}{}", self.body), sig))
        }
    }
}

type Received = Arc<Mutex<Vec<Seen>>>;

fn order_answer(status: &str) -> Value {
    json!({"symbol": "BTCUSDT", "orderId": 28, "orderListId": -1, "clientOrderId": "rampart-test",
        "transactTime": SystemClock.now(), "price": "20000.00", "origQty": "0.00100",
        "executedQty": "0", "cummulativeQuoteQty": "0", "status": status, "timeInForce": "GTC",
        "type": "LIMIT", "side": "BUY", "fills": []})
}

/// What the exchange answers, as much of it as the libraries read.
fn exchange_answer(method: &str, path: &str) -> Option<Value> {
    let now = SystemClock.now();
    Some(match (method, path) {
        ("GET", "/api/v3/ping") => json!({}),
        ("GET", "/api/v3/time") => json!({"serverTime": now}),
        ("GET", "/api/v3/exchangeInfo") => json!({
            "timezone": "UTC", "serverTime": now, "rateLimits": [], "exchangeFilters": [],
            "symbols": [{
                "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC",
                "baseAssetPrecision": 8, "quoteAsset": "USDT", "quotePrecision": 8,
                "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8, "orderTypes": ["LIMIT", "MARKET"],
                "icebergAllowed": true, "ocoAllowed": true, "isSpotTradingAllowed": true,
                "isMarginTradingAllowed": false, "permissions": [], "permissionSets": [["SPOT"]],
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
                    {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.0", "stepSize": "0.00001"}
                ],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"]
            }]
        }),
        // ccxt's load_markets asks for the margin pairs when it holds a key.
        ("GET", "/sapi/v1/margin/allPairs" | "/sapi/v1/margin/isolated/allPairs") => json!([]),
        ("GET", "/api/v3/account") => json!({
            "makerCommission": 10, "takerCommission": 10, "canTrade": true, "canWithdraw": true,
            "canDeposit": true, "updateTime": now, "accountType": "SPOT", "permissions": ["SPOT"],
            "balances": [
                {"asset": "BTC", "free": "1.00000000", "locked": "0.00000000"},
                {"asset": "USDT", "free": "1000.00000000", "locked": "0.00000000"}
            ]
        }),
        ("POST", "/api/v3/order") => order_answer("NEW"),
        ("DELETE", "/api/v3/order") => order_answer("CANCELED"),
        ("POST", "/sapi/v1/capital/withdraw/apply") => {
            json!({"id": "7213fea8e94b4a5593d507237e5a555b"})
        }
        ("POST", "/api/v3/userDataStream") => {
            json!({"listenKey": "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"})
        }
        _ => return None,
    })
}

/// An upstream that answers like the exchange and records every request it receives.
async fn exchange_upstream() -> (String, Received) {
    let received: Received = Arc::default();
    let log = received.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: String| async move {
            let seen = Seen {
                method: method.to_string(),
                path: uri.path().to_owned(),
                query: uri.query().unwrap_or("").to_owned(),
                headers,
                body,
            };
            let answer = exchange_answer(&seen.method, &seen.path);
            log.lock().expect("log").push(seen);
            match answer {
                Some(a) => (StatusCode::OK, axum::Json(a)),
                None => (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"code": -1020, "msg": "not answered by the test upstream"})),
                ),
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("upstream") });
    (format!("http://{addr}"), received)
}

/// Rampart's clock follows the real one while the libraries run: they stamp their requests
/// with the machine's time and the gateway judges them against its own.
struct RealTime(tokio::task::JoinHandle<()>);

impl RealTime {
    fn follow(app: &TestApp) -> Self {
        let clock = app.clock.clone();
        RealTime(tokio::spawn(async move {
            loop {
                clock.set(SystemClock.now());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }))
    }
}

impl Drop for RealTime {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the library's driver for `scenarios` (comma-separated) and returns its lines.
async fn drive(
    (program, script): &(String, &'static str),
    gateway: &str,
    credential: Option<&Credential>,
    scenarios: &str,
) -> Vec<Value> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.current_dir(&libs().clients)
        .arg(script)
        .args(["--base", gateway, "--scenario", scenarios])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true);
    if let Some(c) = credential {
        cmd.args(["--key", &c.api_key, "--key-type", c.kind.name()]);
        match &c.pem {
            Some(pem) => cmd.arg("--private-key").arg(pem.path()),
            None => cmd.args(["--secret", &c.secret]),
        };
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the driver finishes")
        .expect("the driver starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} {scenarios}: {}\n{stdout}\n{stderr}",
        out.status
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{stderr}")))
        .collect()
}

fn all_ok(lines: &[Value], what: &str) {
    assert!(!lines.is_empty(), "{what}: no call reported");
    for l in lines {
        assert_eq!(l["ok"], true, "{what}: {l}");
    }
}

fn take(received: &Received) -> Vec<Seen> {
    std::mem::take(&mut *received.lock().expect("log"))
}

/// The library raised its usual exception for the exchange's `-2015` refusal.
fn refused_as_the_exchange_refuses(library: Library, line: &Value) {
    assert_eq!(line["ok"], false, "{line}");
    let message = line["error_message"].as_str().unwrap_or("");
    match library {
        Library::Ccxt => {
            let classes = line["error_classes"].as_array().expect("classes");
            assert!(
                classes.contains(&json!("AuthenticationError")),
                "ccxt's AuthenticationError (PermissionDenied's parent): {line}"
            );
            assert!(message.contains("-2015"), "{line}");
        }
        Library::Connector => {
            assert_eq!(line["error_class"], "ClientError", "{line}");
            assert_eq!(line["error_code"], -2015, "{line}");
        }
        Library::Js => {
            assert_eq!(line["error_class"], "BinanceApiError", "{line}");
            assert_eq!(line["error_code"], -2015, "{line}");
        }
    }
    assert!(
        message.contains("permission") || message.contains("Permission"),
        "the message says why: {line}"
    );
}

async fn library_through_the_gateway(library: Library) {
    let Some(program) = library.program() else {
        return;
    };
    let (upstream, received) = exchange_upstream().await;
    let upstream_for_settings = upstream.clone();
    let app = spawn_app_with(move |s| {
        s.gateway_listen = Some("127.0.0.1:0".parse().expect("addr"));
        s.gateway_upstream = Some(upstream_for_settings);
    })
    .await;
    let gw = app.gateway.clone().expect("gateway listener");

    // Start-up without a key: public routes only, and no identity reaches the upstream.
    let lines = {
        let _now = RealTime::follow(&app);
        drive(&program, &gw, None, "startup").await
    };
    all_ok(&lines, "start-up without a key");
    let seen = take(&received);
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/api/v3/ping", "/api/v3/time", "/api/v3/exchangeInfo"],
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| s.header("x-rampart-uid").is_empty()));

    for (n, kind) in [KeyType::Hmac, KeyType::Ed25519, KeyType::Rsa]
        .into_iter()
        .enumerate()
    {
        let email = format!("trader{n}@example.com");
        let c = app.signed_in(&email).await;
        app.step_up_by_email(&c, &email).await;
        let uid = c.get("/api/v1/me").await.json()["uid"]
            .as_str()
            .expect("uid")
            .to_owned();
        let trader = create_key(&c, kind, &["read", "spot_trade"]).await;
        let treasury = create_key(&c, kind, &["read", "spot_trade", "withdraw"]).await;
        let what = format!("{library:?} with a {kind:?} key");

        // The everyday calls with a read + spot_trade key.
        let lines = {
            let _now = RealTime::follow(&app);
            drive(
                &program,
                &gw,
                Some(&trader),
                "startup,balance,order,cancel,listen_key",
            )
            .await
        };
        all_ok(&lines, &what);
        let seen = take(&received);
        for s in &seen {
            let public = ["/api/v3/ping", "/api/v3/time", "/api/v3/exchangeInfo"];
            if !public.contains(&s.path.as_str()) {
                assert_eq!(s.header("x-rampart-uid"), uid, "{what}: {s:?}");
                assert_eq!(s.header("x-rampart-key"), trader.api_key, "{what}: {s:?}");
            }
            if let Some((payload, signature)) = s.signed() {
                assert!(
                    trader.verify.verifies(&payload, &signature),
                    "{what}: the upstream got exactly the bytes the library signed: {s:?}"
                );
            }
        }
        let order = seen
            .iter()
            .find(|s| s.method == "POST" && s.path == "/api/v3/order")
            .unwrap_or_else(|| panic!("{what}: the order reached the upstream: {seen:?}"));
        let params = match library {
            // ccxt signs the body; the others put everything in the query string.
            Library::Ccxt => &order.body,
            Library::Connector | Library::Js => &order.query,
        };
        for p in ["symbol=BTCUSDT", "side=BUY", "type=LIMIT", "quantity=0.001"] {
            assert!(params.contains(p), "{what}: {p} in {order:?}");
        }
        let (payload, signature) = order.signed().expect("the order is signed");
        assert!(
            !trader
                .verify
                .verifies(&payload.replace("BTCUSDT", "ETHUSDT"), &signature),
            "{what}: the check above would see a changed byte"
        );
        for (method, path) in [
            ("GET", "/api/v3/account"),
            ("DELETE", "/api/v3/order"),
            ("POST", "/api/v3/userDataStream"),
        ] {
            assert!(
                seen.iter().any(|s| s.method == method && s.path == path),
                "{what}: {method} {path} reached the upstream: {seen:?}"
            );
        }

        // A withdrawal with a key that lacks the permission: refused, nothing upstream.
        let lines = {
            let _now = RealTime::follow(&app);
            drive(&program, &gw, Some(&trader), "withdraw").await
        };
        let refused = lines.last().expect("the withdrawal's line");
        assert_eq!(refused["call"], "withdraw");
        refused_as_the_exchange_refuses(library, refused);
        assert!(
            !take(&received)
                .iter()
                .any(|s| s.path.starts_with("/sapi/v1/capital")),
            "{what}: a refused withdrawal never reaches the upstream"
        );

        // The same call with the permission passes, signed bytes unchanged.
        let lines = {
            let _now = RealTime::follow(&app);
            drive(&program, &gw, Some(&treasury), "withdraw").await
        };
        all_ok(&lines, &format!("{what} holding withdraw"));
        assert_eq!(
            lines.last().expect("line")["result"],
            "7213fea8e94b4a5593d507237e5a555b"
        );
        let seen = take(&received);
        let w = seen
            .iter()
            .find(|s| s.path == "/sapi/v1/capital/withdraw/apply")
            .unwrap_or_else(|| panic!("{what}: the withdrawal reached the upstream: {seen:?}"));
        assert_eq!(w.header("x-rampart-uid"), uid);
        assert!(
            w.header("x-rampart-permissions").contains("withdraw"),
            "{w:?}"
        );
        let (payload, signature) = w.signed().expect("signed");
        assert!(treasury.verify.verifies(&payload, &signature), "{w:?}");
        for p in [
            "coin=BTC",
            "amount=0.01",
            "address=1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
        ] {
            assert!(payload.contains(p), "{what}: {p} in {w:?}");
        }
    }
}

#[tokio::test]
async fn ccxt_trades_through_the_gateway_with_every_key_type() {
    library_through_the_gateway(Library::Ccxt).await;
}

#[tokio::test]
async fn the_exchanges_python_connector_trades_through_the_gateway_with_every_key_type() {
    library_through_the_gateway(Library::Connector).await;
}

#[tokio::test]
async fn the_binance_npm_client_trades_through_the_gateway_with_every_key_type() {
    library_through_the_gateway(Library::Js).await;
}

/// ccxt reads `-2015` after a successful private call as a temporary ban, as it does from
/// the exchange itself: a program that read its balance and then tries a withdrawal the key
/// may not make sees DDoSProtection, not AuthenticationError. Rampart answers the same
/// refusal either way; this pins what a ccxt user will see.
#[tokio::test]
async fn ccxt_after_a_successful_private_call_takes_a_permission_refusal_for_a_ban() {
    let Some(program) = Library::Ccxt.program() else {
        return;
    };
    let (upstream, received) = exchange_upstream().await;
    let app = spawn_app_with(move |s| {
        s.gateway_listen = Some("127.0.0.1:0".parse().expect("addr"));
        s.gateway_upstream = Some(upstream);
    })
    .await;
    let gw = app.gateway.clone().expect("gateway listener");
    let c = app.signed_in("ivy@example.com").await;
    app.step_up_by_email(&c, "ivy@example.com").await;
    let trader = create_key(&c, KeyType::Hmac, &["read", "spot_trade"]).await;
    let lines = {
        let _now = RealTime::follow(&app);
        drive(&program, &gw, Some(&trader), "balance,withdraw").await
    };
    assert_eq!(lines[0]["ok"], true, "{}", lines[0]);
    assert_eq!(lines[1]["ok"], false, "{}", lines[1]);
    assert_eq!(lines[1]["error_class"], "DDoSProtection", "{}", lines[1]);
    assert!(lines[1]["error_message"]
        .as_str()
        .is_some_and(|m| m.contains("-2015")));
    assert!(!take(&received)
        .iter()
        .any(|s| s.path.starts_with("/sapi/v1/capital")));
}
