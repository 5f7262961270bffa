//! The documented nginx + JavaScript module configuration (`deploy/nginx-njs-gateway.conf`
//! with `deploy/rampart-authz.js`), as pasted, in front of a tiny upstream that records
//! exactly what it receives: body-signed requests (ccxt's POST /api/v3/order) go through
//! nginx to Rampart's `/authz` WITH their body, and on to the API byte for byte.
//! Needs Debian's `nginx` and `libnginx-mod-http-js`; skipped (loudly) without them, except
//! in CI where they must be there.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use serde_json::{json, Value};

use crate::api_keys::hmac_hex;
use crate::gateway_nginx::{free_port, run_nginx, Nginx};
use crate::helpers::*;

/// Debian's path (libnginx-mod-http-js).
const JS_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_js_module.so";

/// One request as the upstream API received it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Received = Arc<Mutex<Vec<Seen>>>;

async fn upstream() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let log = received.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
            log.lock().expect("log").push(Seen {
                method: method.to_string(),
                uri: uri.to_string(),
                headers,
                body,
            });
            axum::Json(json!({"upstream": true}))
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("upstream") });
    (addr, received)
}

struct Gateway {
    app: TestApp,
    /// nginx's address, host:port.
    addr: String,
    received: Received,
    _nginx: Nginx,
    dir: tempfile::TempDir,
}

impl Gateway {
    fn seen(&self) -> Vec<Seen> {
        self.received.lock().expect("log").clone()
    }
}

fn skip_or_fail(what: &str) -> Option<Gateway> {
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "CI must install {what} (apt-get install nginx libnginx-mod-http-js)"
    );
    eprintln!("SKIPPED: {what} is not installed (apt-get install nginx libnginx-mod-http-js)");
    None
}

/// Rampart (trusting nginx's X-Forwarded-For), the recording upstream, and nginx with
/// the documented configuration: only the addresses and the script's path replaced.
async fn gateway() -> Option<Gateway> {
    if !std::path::Path::new(JS_MODULE).exists() {
        return skip_or_fail("nginx's JavaScript module");
    }
    let app =
        spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")]).await;
    let (api, received) = upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let rampart: SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
    let documented =
        std::fs::read_to_string(format!("{deploy}/nginx-njs-gateway.conf")).expect("config");
    let conf = documented
        .replace("127.0.0.1:8080", &rampart.to_string())
        .replace("127.0.0.1:9000", &api.to_string())
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{port}"))
        .replace(
            "/etc/nginx/njs/rampart-authz.js",
            &format!("{deploy}/rampart-authz.js"),
        );
    for documented_part in [
        "127.0.0.1:8080",
        "127.0.0.1:9000",
        "127.0.0.1:8443",
        "/etc/nginx/njs/rampart-authz.js",
    ] {
        assert!(
            documented.contains(documented_part) && !conf.contains(documented_part),
            "{documented_part} was found and replaced"
        );
    }
    let Some(nginx) = run_nginx(dir.path(), &conf, &format!("load_module {JS_MODULE};\n")) else {
        return skip_or_fail("nginx");
    };
    let addr = format!("127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        up,
        "nginx did not start: {}",
        std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
    );
    Some(Gateway {
        app,
        addr,
        received,
        _nginx: nginx,
        dir,
    })
}

/// An answer as the client saw it.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("JSON answer, got {} {}", self.status, self.body))
    }

    /// Refused in the exchange's shape: HTTP status, the exchange's code, Rampart's code.
    fn refused(&self, status: u16, exchange_code: i64, code: &str) {
        assert_eq!(self.status, status, "{code}: {}", self.body);
        let body = self.json();
        assert_eq!(body["rampart_code"], code, "{}", self.body);
        assert_eq!(body["code"], exchange_code, "{}", self.body);
        assert!(
            body["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.body
        );
        assert!(
            self.headers
                .to_ascii_lowercase()
                .contains(&format!("x-rampart-error: {code}")),
            "{}",
            self.headers
        );
    }
}

/// Sends `head` (request line and header lines, each ending in `\r\n`, without the
/// blank line) and `body` over one connection, exactly as given, and reads the answer.
async fn send(addr: &str, head: &str, body: &[u8]) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{head}Host: {addr}\r\nConnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.expect("write");
    let mut response = Vec::new();
    // nginx may answer (413) before reading everything, then close.
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (headers, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        headers: headers.to_owned(),
        body: body.to_owned(),
    }
}

/// A form-encoded POST with a Content-Length.
async fn post_form(addr: &str, target: &str, key: &str, extra: &str, body: &[u8]) -> Answer {
    let head = format!(
        "POST {target} HTTP/1.1\r\nX-MBX-APIKEY: {key}\r\n{extra}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    send(addr, &head, body).await
}

/// A form-encoded POST with `Transfer-Encoding: chunked`, in chunks of `chunk` bytes.
async fn post_chunked(addr: &str, target: &str, key: &str, body: &[u8], chunk: usize) -> Answer {
    let head = format!(
        "POST {target} HTTP/1.1\r\nX-MBX-APIKEY: {key}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n"
    );
    let mut encoded = Vec::new();
    for part in body.chunks(chunk) {
        encoded.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        encoded.extend_from_slice(part);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    send(addr, &head, &encoded).await
}

/// An HMAC key with `permissions` for a new signed-in user: (uid, key, secret).
async fn key_for(app: &TestApp, email: &str, permissions: &[&str]) -> (String, String, String) {
    let c = app.signed_in(email).await;
    app.step_up_by_email(&c, email).await;
    let created = c
        .post(
            "/api/v1/me/api-keys",
            json!({"label": "bot", "type": "hmac", "permissions": permissions, "ip_allowlist": ["127.0.0.1"]}),
        )
        .await
        .json();
    let uid = c.get("/api/v1/me").await.json()["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    (
        uid,
        created["api_key"].as_str().expect("k").to_owned(),
        created["secret"].as_str().expect("s").to_owned(),
    )
}

#[tokio::test]
async fn body_signed_requests_reach_the_api_byte_for_byte_with_rampart_identity() {
    let Some(gw) = gateway().await else {
        return;
    };
    let (app, addr) = (&gw.app, gw.addr.as_str());
    let (uid, key, secret) = key_for(app, "bo@example.com", &["read", "spot_trade"]).await;
    let now = app.clock.now_ms();

    // ccxt's shape: everything, signature last, in the form-encoded body.
    let params = format!(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.5&price=30000.1\
         &newClientOrderId=x%2Fy%40z%20w&recvWindow=5000&timestamp={now}"
    );
    let body = format!("{params}&signature={}", hmac_hex(&secret, &params));
    let a = post_form(
        addr,
        "/api/v3/order",
        &key,
        "X-Rampart-Uid: spoofed\r\nX-Rampart-Permissions: withdraw\r\nX-Rampart-Auth: session\r\n\
         X-HTTP-Method-Override: DELETE\r\nX-Forwarded-For: 10.9.9.9\r\nForwarded: for=10.9.9.9\r\n",
        body.as_bytes(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json(), json!({"upstream": true}), "the API's own answer");
    let seen = gw.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    assert_eq!(s.uri, "/api/v3/order");
    assert_eq!(s.body, body.as_bytes(), "the body, byte for byte");
    assert_eq!(
        s.header("x-rampart-uid"),
        Some(uid.as_str()),
        "Rampart's identity, not the client's"
    );
    assert_eq!(s.header("x-rampart-key"), Some(key.as_str()));
    assert_eq!(s.header("x-rampart-permissions"), Some("read,spot_trade"));
    assert_eq!(s.header("x-rampart-auth"), Some("api_key"));
    assert_eq!(s.header("x-rampart-withdrawals-locked-until"), None);
    assert_eq!(s.header("x-http-method-override"), None, "never forwarded");
    assert_eq!(
        s.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "the address judged"
    );
    assert_eq!(s.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(s.header("forwarded"), None);
    assert_eq!(s.header("x-forwarded-host"), Some(addr));
    assert_eq!(
        s.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );

    // Part in the query string, part in the body (the exchange signs both, joined without
    // '&'); the query string reaches the API exactly as sent. And a chunked upload in
    // small chunks: nginx reads it whole, Rampart and the API get the same bytes.
    let query = "symbol=ETHUSDT&newClientOrderId=a%2Db%7Ec";
    let params = format!("side=SELL&type=MARKET&quantity=2&timestamp={now}");
    let body = format!(
        "{params}&signature={}",
        hmac_hex(&secret, &format!("{query}{params}"))
    );
    let target = format!("/api/v3/order?{query}");
    let a = post_chunked(addr, &target, &key, body.as_bytes(), 7).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = gw.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].uri, target, "the URI as the client sent it");
    assert_eq!(seen[1].body, body.as_bytes());
    assert_eq!(seen[1].header("x-rampart-uid"), Some(uid.as_str()));

    // Up to Rampart's body limit (64 KiB); and chunked in small chunks, whose framing
    // overflows nginx's 64 KiB body buffer so that nginx writes the body to a temp file:
    // still checked and forwarded whole.
    let params = format!("symbol=BTCUSDT&side=BUY&quantity=1&timestamp={now}&memo=");
    let pad = 64 * 1024 - params.len() - "&signature=".len() - 64;
    let params = format!("{params}{}", "a".repeat(pad));
    let body = format!("{params}&signature={}", hmac_hex(&secret, &params));
    assert_eq!(body.len(), 64 * 1024);
    let a = post_form(addr, "/api/v3/order", &key, "", body.as_bytes()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = post_chunked(addr, "/api/v3/order", &key, body.as_bytes(), 100).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = gw.seen();
    assert_eq!(seen.len(), 4);
    assert!(seen[2..].iter().all(|s| s.body == body.as_bytes()));
    let log = std::fs::read_to_string(gw.dir.path().join("error.log")).unwrap_or_default();
    assert!(
        log.contains("buffered to a temporary file"),
        "the chunked 64 KiB body went through a temp file: {log}"
    );

    // A public route: no key, no identity, and the client's own claims are dropped.
    let a = send(
        addr,
        "GET /api/v3/ping HTTP/1.1\r\nX-Rampart-Uid: spoofed\r\nX-Rampart-Key: spoofed\r\n",
        b"",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = gw.seen();
    let s = seen.last().expect("forwarded");
    assert_eq!(s.uri, "/api/v3/ping");
    assert_eq!(s.header("x-rampart-auth"), Some("public"));
    assert_eq!(s.header("x-rampart-uid"), None);
    assert_eq!(s.header("x-rampart-key"), None);
    // A key-only route (user data stream): the key, no signature.
    let a = post_form(addr, "/api/v3/userDataStream", &key, "", b"").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = gw.seen();
    let s = seen.last().expect("forwarded");
    assert_eq!(s.header("x-rampart-uid"), Some(uid.as_str()));
    assert_eq!(seen.len(), 6);

    // Query-signed requests without a body work as with auth_request.
    let params = format!("timestamp={now}");
    let target = format!(
        "/api/v3/account?{params}&signature={}",
        hmac_hex(&secret, &params)
    );
    let a = send(
        addr,
        &format!("GET {target} HTTP/1.1\r\nX-MBX-APIKEY: {key}\r\n"),
        b"",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = gw.seen();
    assert_eq!(seen.len(), 7);
    assert_eq!(
        (seen[6].method.as_str(), seen[6].uri.as_str()),
        ("GET", target.as_str())
    );
    assert!(seen[6].body.is_empty());
    assert_eq!(seen[6].header("x-rampart-uid"), Some(uid.as_str()));
}

#[tokio::test]
async fn tampered_misplaced_and_oversized_bodies_are_refused_before_the_api() {
    let Some(gw) = gateway().await else {
        return;
    };
    let (app, addr) = (&gw.app, gw.addr.as_str());
    let (_, key, secret) = key_for(app, "cy@example.com", &["read", "spot_trade"]).await;
    let now = app.clock.now_ms();
    let params = format!("symbol=BTCUSDT&side=BUY&quantity=1&timestamp={now}");
    let signed = format!("{params}&signature={}", hmac_hex(&secret, &params));

    // The body changed after signing.
    let tampered = signed.replace("quantity=1", "quantity=9");
    post_form(addr, "/api/v3/order", &key, "", tampered.as_bytes())
        .await
        .refused(400, -1022, "bad_signature");
    post_chunked(addr, "/api/v3/order", &key, tampered.as_bytes(), 5)
        .await
        .refused(400, -1022, "bad_signature");

    // A signature over the query string only, with a body sent alongside: the body is
    // part of what must be signed.
    let target = format!("/api/v3/order?{signed}");
    post_form(addr, &target, &key, "", b"newClientOrderId=mine")
        .await
        .refused(400, -1022, "bad_signature");

    // A parameter in both the query string and the body, even correctly signed: the API
    // might read either.
    let query = "symbol=BTCUSDT&quantity=1";
    let params = format!("side=BUY&quantity=100&timestamp={now}");
    let body = format!(
        "{params}&signature={}",
        hmac_hex(&secret, &format!("{query}{params}"))
    );
    post_form(
        addr,
        &format!("/api/v3/order?{query}"),
        &key,
        "",
        body.as_bytes(),
    )
    .await
    .refused(400, -1101, "duplicate_parameter");
    // The signature in both.
    post_form(addr, &target, &key, "", signed.as_bytes())
        .await
        .refused(400, -1101, "duplicate_parameter");
    // A route outside the table.
    post_form(addr, "/api/v3/nowhere", &key, "", signed.as_bytes())
        .await
        .refused(404, -1020, "unknown_route");
    // A JSON body, even one whose bytes are signed: the API would read parameters
    // Rampart never saw as parameters.
    let json_body = format!("{{\"side\":\"BUY\",\"timestamp\":{now}}}");
    let head = format!(
        "POST /api/v3/order?signature={}&timestamp={now} HTTP/1.1\r\nX-MBX-APIKEY: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        hmac_hex(&secret, &json_body),
        json_body.len()
    );
    send(addr, &head, json_body.as_bytes())
        .await
        .refused(400, -1102, "bad_parameter");

    // No key; a key without the permission.
    post_form(addr, "/api/v3/order", "", "", signed.as_bytes())
        .await
        .refused(401, -2014, "missing_api_key");
    let params = format!("coin=BTC&amount=1&timestamp={now}");
    let withdraw = format!("{params}&signature={}", hmac_hex(&secret, &params));
    post_form(
        addr,
        "/sapi/v1/capital/withdraw/apply",
        &key,
        "",
        withdraw.as_bytes(),
    )
    .await
    .refused(401, -2015, "permission_missing");

    // Bigger than the 64 KiB limit: nginx refuses it itself (Rampart's /authz has no such
    // code), before Rampart or the API.
    let params = format!(
        "symbol=BTCUSDT&timestamp={now}&memo={}",
        "a".repeat(64 * 1024)
    );
    let big = format!("{params}&signature={}", hmac_hex(&secret, &params));
    for a in [
        post_form(addr, "/api/v3/order", &key, "", big.as_bytes()).await,
        post_chunked(addr, "/api/v3/order", &key, big.as_bytes(), 8 * 1024).await,
    ] {
        a.refused(413, -1000, "body_too_large");
        assert!(
            a.body.contains("larger than 65536 bytes"),
            "nginx's answer: {}",
            a.body
        );
    }

    assert!(gw.seen().is_empty(), "nothing reached the API");
}

#[tokio::test]
async fn a_withdrawal_lock_reaches_the_api_and_the_refused_client() {
    let Some(gw) = gateway().await else {
        return;
    };
    let (app, addr) = (&gw.app, gw.addr.as_str());
    let email = "di@example.com";
    let c = app.signed_in(email).await;
    app.step_up_by_email(&c, email).await;
    let created = c
        .post(
            "/api/v1/me/api-keys",
            json!({"label": "treasury", "type": "hmac", "permissions": ["read", "spot_trade", "withdraw"], "ip_allowlist": ["127.0.0.1"]}),
        )
        .await
        .json();
    let (key, secret) = (
        created["api_key"].as_str().expect("k").to_owned(),
        created["secret"].as_str().expect("s").to_owned(),
    );
    crate::api_keys::change_password(app, &c, email, "Fresh-garden-lamp-2031").await;
    let now = app.clock.now_ms();

    // Trading goes on; the API learns when the lock ends.
    let params = format!("symbol=BTCUSDT&side=BUY&quantity=1&timestamp={now}");
    let body = format!("{params}&signature={}", hmac_hex(&secret, &params));
    let a = post_form(addr, "/api/v3/order", &key, "", body.as_bytes()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = gw.seen();
    let until: i64 = seen[0]
        .header("x-rampart-withdrawals-locked-until")
        .and_then(|v| v.parse().ok())
        .expect("lock end in ms");
    assert!(until > now);

    // A withdrawal is refused, and the client is told until when.
    let params = format!("coin=BTC&amount=1&address=bc1qexample&timestamp={now}");
    let body = format!("{params}&signature={}", hmac_hex(&secret, &params));
    let a = post_form(
        addr,
        "/sapi/v1/capital/withdraw/apply",
        &key,
        "",
        body.as_bytes(),
    )
    .await;
    a.refused(401, -1002, "withdrawals_locked");
    assert!(
        a.headers
            .to_ascii_lowercase()
            .contains(&format!("x-rampart-withdrawals-locked-until: {until}")),
        "{}",
        a.headers
    );
    assert_eq!(gw.seen().len(), 1, "the withdrawal never reached the API");
}
