use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::*;
use rampart::clock::{DAY, MINUTE, SECOND};

pub fn hmac_hex(secret: &str, payload: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    m.update(payload.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

pub fn pct(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub async fn create(c: &TestClient, body: Value) -> Value {
    let r = c.post("/api/v1/me/api-keys", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.json()
}

/// Asks the gateway hook about an original request, nginx style.
pub async fn authz(c: &TestClient, key: &str, method: &str, uri: &str) -> Answer {
    c.header("x-mbx-apikey", key);
    c.header("x-original-method", method);
    c.header("x-original-uri", uri);
    c.get("/authz").await
}

fn signed_uri(path: &str, params: &str, secret: &str) -> String {
    format!("{path}?{params}&signature={}", hmac_hex(secret, params))
}

#[tokio::test]
async fn an_hmac_key_authenticates_signed_requests_and_every_refusal_says_why() {
    let app = spawn_app().await;
    let c = app.signed_in("amy@example.com").await;
    app.step_up_by_email(&c, "amy@example.com").await;
    let created = create(&c, json!({"label": "bot", "type": "hmac", "permissions": ["read", "spot_trade"], "ip_allowlist": ["127.0.0.1"]})).await;
    let key = created["api_key"].as_str().expect("key").to_owned();
    let secret = created["secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    assert!(key.starts_with("rmpk_") && key.len() == 64);
    assert!(secret.starts_with("rmps_"));
    assert!(
        created["key"]["expires_at"].is_null(),
        "an allowlisted key does not expire"
    );

    let now = app.clock.now_ms();
    let params = format!("symbol=LTCBTC&side=BUY&type=LIMIT&quantity=1&price=0.1&timestamp={now}");
    let gw = app.client();
    let r = authz(
        &gw,
        &key,
        "POST",
        &signed_uri("/api/v3/order", &params, &secret),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let me = c.get("/api/v1/me").await.json();
    assert_eq!(r.headers["x-rampart-uid"], me["uid"].as_str().expect("uid"));
    assert_eq!(r.headers["x-rampart-key"], key.as_str());
    assert_eq!(r.headers["x-rampart-permissions"], "read,spot_trade");

    let refused = |r: &Answer, status: StatusCode, code: &str| {
        assert_eq!(r.status, status, "{code}: {}", r.body);
        assert_eq!(r.code(), code);
        assert_eq!(r.headers["x-rampart-error"], code);
    };
    let tampered =
        signed_uri("/api/v3/order", &params, &secret).replace("quantity=1", "quantity=9");
    refused(
        &authz(&gw, &key, "POST", &tampered).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    refused(
        &authz(
            &gw,
            &key,
            "POST",
            &signed_uri("/api/v3/order", &params, "rmps_wrong"),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    refused(
        &authz(
            &gw,
            &format!("rmpk_{}", "x".repeat(59)),
            "POST",
            &signed_uri("/api/v3/order", &params, &secret),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unknown_key",
    );
    let old = format!("symbol=LTCBTC&timestamp={}", now - 5001);
    refused(
        &authz(
            &gw,
            &key,
            "GET",
            &signed_uri("/api/v3/account", &old, &secret),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "timestamp_outside_window",
    );
    let wide = format!("symbol=LTCBTC&recvWindow=60000&timestamp={}", now - 5001);
    assert_eq!(
        authz(
            &gw,
            &key,
            "GET",
            &signed_uri("/api/v3/account", &wide, &secret)
        )
        .await
        .status,
        StatusCode::OK,
        "a wider recvWindow allows it"
    );
    let future = format!("timestamp={}", now + SECOND);
    refused(
        &authz(
            &gw,
            &key,
            "GET",
            &signed_uri("/api/v3/account", &future, &secret),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "timestamp_outside_window",
    );
    let withdraw = format!("coin=BTC&amount=1&timestamp={now}");
    refused(
        &authz(
            &gw,
            &key,
            "POST",
            &signed_uri("/sapi/v1/capital/withdraw/apply", &withdraw, &secret),
        )
        .await,
        StatusCode::FORBIDDEN,
        "permission_missing",
    );
    // Malformed requests: 401 at the nginx-style hook (auth_request knows only 401/403).
    refused(
        &authz(&gw, &key, "GET", "/api/v3/account?timestamp=1").await,
        StatusCode::UNAUTHORIZED,
        "missing_parameter",
    );
    refused(
        &authz(
            &gw,
            &key,
            "GET",
            &format!("/api/v3/account?timestamp={now}&timestamp={now}&signature=ab"),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "duplicate_parameter",
    );
    refused(
        &authz(
            &gw,
            &key,
            "GET",
            "/api/v3/account?timestamp=soon&signature=ab",
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "bad_parameter",
    );
    refused(
        &authz(
            &gw,
            &key,
            "GET",
            &format!(
                "/api/v3/account?timestamp={now}&signature={}",
                "Z".repeat(64)
            ),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    let unicode = format!("symbol={}&timestamp={now}", pct("１２３"));
    assert_eq!(
        authz(
            &gw,
            &key,
            "GET",
            &signed_uri("/api/v3/ticker", &unicode, &secret)
        )
        .await
        .status,
        StatusCode::OK,
        "percent-encoded unicode is signed as sent"
    );
    let gw2 = app.client();
    gw2.header("x-original-uri", "/api/v3/account");
    refused(
        &gw2.get("/authz").await,
        StatusCode::UNAUTHORIZED,
        "missing_api_key",
    );

    // Last use is written in batches, not per request.
    let listed = c.get("/api/v1/me/api-keys").await.json();
    assert!(listed["api_keys"][0]["last_used_at"].is_null());
    rampart::jobs::timed::step(&app.state.services)
        .await
        .expect("step");
    let listed = c.get("/api/v1/me/api-keys").await.json();
    let k = &listed["api_keys"][0];
    assert_eq!(k["last_used_ip"], "127.0.0.1");
    assert_eq!(k["created_ip"], "127.0.0.1");
    assert!(k["created_device"]
        .as_str()
        .expect("device")
        .contains("Chrome"));
    assert!(k.get("secret").is_none(), "the secret is never shown again");
    let mail = app
        .mails_to("amy@example.com")
        .await
        .into_iter()
        .rev()
        .find(|m| m.subject.contains("new API key"))
        .expect("mail");
    assert!(mail.body_text.contains("read,spot_trade"));
}

#[tokio::test]
async fn keys_follow_the_rules_table() {
    let app = spawn_app().await;
    let c = app.signed_in("bea@example.com").await;
    app.step_up_by_email(&c, "bea@example.com").await;
    for (perms, code) in [
        (json!(["withdraw"]), "allowlist_required"),
        (json!(["futures"]), "allowlist_required"),
        (json!(["fly"]), "invalid_permission"),
        (json!([]), "invalid_permission"),
    ] {
        let r = c
            .post(
                "/api/v1/me/api-keys",
                json!({"label": "x", "type": "hmac", "permissions": perms}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.code(), code);
    }
    let r = c.post("/api/v1/me/api-keys", json!({"label": "x", "type": "hmac", "permissions": ["read"], "ip_allowlist": vec!["10.0.0.1"; 31]})).await;
    assert_eq!(r.code(), "invalid_allowlist");
    let r = c.post("/api/v1/me/api-keys", json!({"label": "x", "type": "hmac", "permissions": ["read"], "ip_allowlist": ["0.0.0.0/0"]})).await;
    assert_eq!(r.code(), "invalid_allowlist");
    let r = c.post("/api/v1/me/api-keys", json!({"label": "x", "type": "ed25519", "permissions": ["read"], "public_key": "not a key"})).await;
    assert_eq!(r.code(), "invalid_public_key");
    let r = c
        .post(
            "/api/v1/me/api-keys",
            json!({"label": "x", "type": "dsa", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(r.code(), "invalid_key_type");

    // A writing key without an allowlist lives 30 days, warned 7 days and 1 day ahead.
    let created = create(
        &c,
        json!({"label": "transfers", "type": "hmac", "permissions": ["internal_transfer"]}),
    )
    .await;
    let key = created["api_key"].as_str().expect("key").to_owned();
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert_eq!(
        created["key"]["expires_at"].as_i64().expect("expiry") - app.clock.now_ms(),
        30 * DAY
    );
    let read_only = create(
        &c,
        json!({"label": "watch", "type": "hmac", "permissions": ["read"]}),
    )
    .await;
    assert!(read_only["key"]["expires_at"].is_null());

    app.clock.advance(23 * DAY);
    assert_eq!(
        rampart::jobs::timed::step(&app.state.services)
            .await
            .expect("step")
            .api_key_mails,
        1
    );
    assert_eq!(
        rampart::jobs::timed::step(&app.state.services)
            .await
            .expect("step")
            .api_key_mails,
        0,
        "once"
    );
    app.clock.advance(6 * DAY);
    assert_eq!(
        rampart::jobs::timed::step(&app.state.services)
            .await
            .expect("step")
            .api_key_mails,
        1
    );
    let subjects: Vec<String> = app
        .mails_to("bea@example.com")
        .await
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert!(subjects.iter().any(|s| s.contains("expires in 7 days")));
    assert!(subjects.iter().any(|s| s.contains("expires tomorrow")));
    app.clock.advance(DAY);
    let now = app.clock.now_ms();
    let params = format!("asset=BTC&amount=1&timestamp={now}");
    let r = authz(
        &app.client(),
        &key,
        "POST",
        &signed_uri("/sapi/v1/asset/transfer", &params, &secret),
    )
    .await;
    assert_eq!(r.code(), "key_expired");
}

#[tokio::test]
async fn deleting_and_narrowing_take_effect_on_the_next_request() {
    let app = spawn_app().await;
    let c = app.signed_in("cyd@example.com").await;
    app.step_up_by_email(&c, "cyd@example.com").await;
    let k = create(&c, json!({"label": "bot", "type": "hmac", "permissions": ["read", "spot_trade"], "ip_allowlist": ["127.0.0.0/8"]})).await;
    let (key, secret) = (
        k["api_key"].as_str().expect("k").to_owned(),
        k["secret"].as_str().expect("s").to_owned(),
    );
    let order = |now: i64| {
        signed_uri(
            "/api/v3/order",
            &format!("symbol=X&timestamp={now}"),
            &secret,
        )
    };
    let gw = app.client();
    assert_eq!(
        authz(&gw, &key, "POST", &order(app.clock.now_ms()))
            .await
            .status,
        StatusCode::OK,
        "cached now"
    );

    let r = c
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/me/api-keys/{key}"),
            Some((
                "application/json",
                json!({"permissions": ["read"]}).to_string().into_bytes(),
            )),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        authz(&gw, &key, "POST", &order(app.clock.now_ms()))
            .await
            .code(),
        "permission_missing",
        "removal is instant"
    );

    // Giving a permission back is announced.
    let r = c
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/me/api-keys/{key}"),
            Some((
                "application/json",
                json!({"permissions": ["read", "spot_trade"]})
                    .to_string()
                    .into_bytes(),
            )),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(app
        .mails_to("cyd@example.com")
        .await
        .iter()
        .any(|m| m.subject.contains("more access")));
    assert_eq!(
        authz(&gw, &key, "POST", &order(app.clock.now_ms()))
            .await
            .status,
        StatusCode::OK
    );

    assert_eq!(
        c.delete(&format!("/api/v1/me/api-keys/{key}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        authz(&gw, &key, "POST", &order(app.clock.now_ms()))
            .await
            .code(),
        "unknown_key"
    );
    assert_eq!(
        c.delete(&format!("/api/v1/me/api-keys/{key}")).await.code(),
        "not_found"
    );

    let a = create(
        &c,
        json!({"label": "a", "type": "hmac", "permissions": ["read"]}),
    )
    .await;
    create(
        &c,
        json!({"label": "b", "type": "hmac", "permissions": ["read"]}),
    )
    .await;
    let (ka, sa) = (
        a["api_key"].as_str().expect("k").to_owned(),
        a["secret"].as_str().expect("s").to_owned(),
    );
    let acct = signed_uri(
        "/api/v3/account",
        &format!("timestamp={}", app.clock.now_ms()),
        &sa,
    );
    assert_eq!(authz(&gw, &ka, "GET", &acct).await.status, StatusCode::OK);
    let r = c.delete("/api/v1/me/api-keys").await;
    assert_eq!(r.json()["deleted"], 2);
    assert_eq!(authz(&gw, &ka, "GET", &acct).await.code(), "unknown_key");
    assert!(c.get("/api/v1/me/api-keys").await.json()["api_keys"]
        .as_array()
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn a_frozen_account_s_keys_are_refused_on_the_next_request() {
    let app = spawn_app().await;
    let c = app.signed_in("dee@example.com").await;
    app.step_up_by_email(&c, "dee@example.com").await;
    let k = create(
        &c,
        json!({"label": "bot", "type": "hmac", "permissions": ["read"]}),
    )
    .await;
    let (key, secret) = (
        k["api_key"].as_str().expect("k").to_owned(),
        k["secret"].as_str().expect("s").to_owned(),
    );
    let uri = signed_uri(
        "/api/v3/account",
        &format!("timestamp={}", app.clock.now_ms()),
        &secret,
    );
    assert_eq!(
        authz(&app.client(), &key, "GET", &uri).await.status,
        StatusCode::OK
    );
    let account = app
        .store()
        .account_by_email("dee@example.com")
        .await
        .expect("read")
        .expect("account");
    raw_sql(
        &app.database_url,
        &format!(
            "UPDATE accounts SET frozen_at = 1 WHERE id = '{}'",
            account.id
        ),
    )
    .await;
    app.state
        .invalidator
        .invalidate_keys(&format!("account:{}", account.id))
        .await
        .expect("invalidate");
    assert_eq!(
        authz(&app.client(), &key, "GET", &uri).await.code(),
        "account_frozen"
    );
}

#[tokio::test]
async fn addresses_outside_the_allowlist_are_refused_and_reported() {
    let app =
        spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")]).await;
    let c = app.signed_in("eli@example.com").await;
    app.step_up_by_email(&c, "eli@example.com").await;
    let k = create(&c, json!({"label": "bot", "type": "hmac", "permissions": ["read", "spot_trade"], "ip_allowlist": ["203.0.113.7", "198.51.100.0/24"]})).await;
    let (key, secret) = (
        k["api_key"].as_str().expect("k").to_owned(),
        k["secret"].as_str().expect("s").to_owned(),
    );
    let uri = signed_uri(
        "/api/v3/order",
        &format!("symbol=X&timestamp={}", app.clock.now_ms()),
        &secret,
    );
    let from = |ip: &str| {
        let gw = app.client();
        gw.header("x-forwarded-for", ip);
        gw
    };
    assert_eq!(
        authz(&from("198.51.100.20"), &key, "POST", &uri)
            .await
            .status,
        StatusCode::OK
    );
    let r = authz(&from("192.0.2.66"), &key, "POST", &uri).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "ip_not_allowed");
    authz(&from("192.0.2.67"), &key, "POST", &uri).await;
    rampart::jobs::timed::step(&app.state.services)
        .await
        .expect("step");
    app.clock.advance(10 * MINUTE);
    authz(&from("192.0.2.68"), &key, "POST", &uri).await;
    rampart::jobs::timed::step(&app.state.services)
        .await
        .expect("step");
    let alerts: Vec<_> = app
        .mails_to("eli@example.com")
        .await
        .into_iter()
        .filter(|m| m.subject.contains("outside its allowlist"))
        .collect();
    assert_eq!(alerts.len(), 1, "at most one alert per key per hour");
    assert!(alerts[0].body_text.contains("192.0.2.66"));
    // A bad signature from a stranger's address says nothing about the allowlist.
    let fresh = signed_uri(
        "/api/v3/order",
        &format!("symbol=X&timestamp={}", app.clock.now_ms()),
        &secret,
    );
    let r = authz(
        &from("192.0.2.66"),
        &key,
        "POST",
        &fresh.replace("symbol=X", "symbol=Y"),
    )
    .await;
    assert_eq!(r.code(), "bad_signature");
}

#[tokio::test]
async fn ed25519_and_rsa_keys_sign_like_the_exchange() {
    use base64::Engine;
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePublicKey};
    use ed25519_dalek::Signer;
    let app = spawn_app().await;
    let c = app.signed_in("fay@example.com").await;
    app.step_up_by_email(&c, "fay@example.com").await;

    let ed = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let pem = ed
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    let k = create(
        &c,
        json!({"label": "ed", "type": "ed25519", "public_key": pem, "permissions": ["read"]}),
    )
    .await;
    assert!(k.get("secret").is_none(), "no secret for a public-key type");
    let key = k["api_key"].as_str().expect("k").to_owned();
    let params = format!("symbol=BTCUSDT&timestamp={}", app.clock.now_ms());
    let sig =
        base64::engine::general_purpose::STANDARD.encode(ed.sign(params.as_bytes()).to_bytes());
    let r = authz(
        &app.client(),
        &key,
        "GET",
        &format!("/api/v3/account?{params}&signature={}", pct(&sig)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let hex_sig = hmac_hex("anything", &params);
    assert_eq!(
        authz(
            &app.client(),
            &key,
            "GET",
            &format!("/api/v3/account?{params}&signature={hex_sig}")
        )
        .await
        .code(),
        "bad_signature",
        "another type's signature"
    );

    let mut rng = rand::thread_rng();
    let private = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("rsa");
    let pem = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
        &private.to_public_key(),
        rsa::pkcs8::LineEnding::LF,
    )
    .expect("pem");
    let k = create(
        &c,
        json!({"label": "rsa", "type": "rsa", "public_key": pem, "permissions": ["read"]}),
    )
    .await;
    let key = k["api_key"].as_str().expect("k").to_owned();
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(private);
    let sig = rsa::signature::Signer::sign(&signer, params.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD
        .encode(rsa::signature::SignatureEncoding::to_bytes(&sig));
    let r = authz(
        &app.client(),
        &key,
        "GET",
        &format!("/api/v3/account?{params}&signature={}", pct(&sig)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let small = rsa::RsaPrivateKey::new(&mut rng, 1024).expect("rsa");
    let pem = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
        &small.to_public_key(),
        rsa::pkcs8::LineEnding::LF,
    )
    .expect("pem");
    let r = c
        .post(
            "/api/v1/me/api-keys",
            json!({"label": "weak", "type": "rsa", "public_key": pem, "permissions": ["read"]}),
        )
        .await;
    assert_eq!(r.code(), "invalid_public_key");
}

#[tokio::test]
async fn sessions_envoy_style_and_step_up() {
    let app = spawn_app().await;
    let c = app.signed_in("gus@example.com").await;
    app.step_up_by_email(&c, "gus@example.com").await;
    c.header("x-original-uri", "/api/v3/account");
    let r = c.get("/authz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-rampart-auth"], "session");

    let k = create(&c, json!({"label": "bot", "type": "hmac", "permissions": ["read", "spot_trade"], "ip_allowlist": ["127.0.0.1"]})).await;
    let (key, secret) = (
        k["api_key"].as_str().expect("k").to_owned(),
        k["secret"].as_str().expect("s").to_owned(),
    );
    let query = "symbol=LTCBTC&side=BUY";
    let body = format!("quantity=1&timestamp={}", app.clock.now_ms());
    let sig = hmac_hex(&secret, &format!("{query}{body}"));
    let gw = app.client();
    gw.header("x-mbx-apikey", &key);
    let r = gw
        .post_raw(
            &format!("/authz/api/v3/order?{query}"),
            "application/x-www-form-urlencoded",
            format!("{body}&signature={sig}"),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "Envoy sends the original path, method and body: {}",
        r.body
    );
    let r = gw.get("/authz/api/v3/account?timestamp=1").await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "Envoy gets the exact status"
    );
    assert_eq!(r.code(), "missing_parameter");

    // With a second factor enrolled, creating a key needs a fresh proof.
    let r = c.post("/api/v1/me/totp", json!({})).await;
    let b32 = r.json()["secret"].as_str().expect("secret").to_owned();
    let secret_bytes = totp_rs::Secret::Encoded(b32).to_bytes().expect("b32");
    let code = rampart::domain::totp::code_for_step(
        &secret_bytes,
        rampart::domain::totp::step_of(app.clock.now_ms()),
        6,
    )
    .expect("code");
    assert_eq!(
        c.post("/api/v1/me/totp/confirm", json!({ "code": code }))
            .await
            .status,
        StatusCode::OK
    );
    app.clock.advance(6 * MINUTE);
    let r = c
        .post(
            "/api/v1/me/api-keys",
            json!({"label": "x", "type": "hmac", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(r.code(), "step_up_required");
    assert_eq!(
        c.delete("/api/v1/me/api-keys").await.code(),
        "step_up_required"
    );
}

/// Changes the password through the API (mailed code and all); withdrawals lock for 24 h.
pub async fn change_password(app: &TestApp, c: &TestClient, email: &str, new: &str) {
    let r = c.post("/api/v1/me/password/code", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let mails = app.mails_to(email).await;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.subject.contains("Your code to change your password"))
        .expect("code mail");
    let at = mail.body_text.find("code is ").expect("code") + 8;
    let code = mail.body_text[at..at + 6].to_owned();
    let r = c
        .put(
            "/api/v1/me/password",
            json!({"current_password": PASSWORD, "new_password": new, "email_code": code}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn withdrawals_wait_out_a_lock_for_keys_and_sessions_alike() {
    let app = spawn_app().await;
    let c = app.signed_in("wes@example.com").await;
    app.step_up_by_email(&c, "wes@example.com").await;
    let k = create(&c, json!({"label": "treasury", "type": "hmac", "permissions": ["read", "withdraw"], "ip_allowlist": ["127.0.0.1"]})).await;
    let (key, secret) = (
        k["api_key"].as_str().expect("k").to_owned(),
        k["secret"].as_str().expect("s").to_owned(),
    );
    let gw = app.client();
    let ask = |path: &'static str, method: &'static str| {
        let params = format!("coin=BTC&timestamp={}", app.clock.now_ms());
        let uri = signed_uri(path, &params, &secret);
        let (gw, key) = (&gw, &key);
        async move { authz(gw, key, method, &uri).await }
    };
    let r = ask("/sapi/v1/capital/withdraw/apply", "POST").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!r.headers.contains_key("x-rampart-withdrawals-locked-until"));

    // The key is in the cache now; the password change must reach it anyway.
    change_password(&app, &c, "wes@example.com", "Fresh-garden-lamp-2031").await;
    let until = app.clock.now_ms() + DAY;
    let r = ask("/sapi/v1/capital/withdraw/apply", "POST").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.code(), "withdrawals_locked");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .expect("message")
            .contains("locked on this account until"),
        "{}",
        r.body
    );
    assert_eq!(
        r.headers["x-rampart-withdrawals-locked-until"],
        until.to_string().as_str()
    );
    let r = ask("/api/v3/account", "GET").await;
    assert_eq!(r.status, StatusCode::OK, "reading goes on: {}", r.body);
    assert_eq!(
        r.headers["x-rampart-withdrawals-locked-until"],
        until.to_string().as_str(),
        "the platform's backend is told too"
    );

    // The owner's own session through the gateway: the same lock.
    c.header("x-original-method", "POST");
    c.header("x-original-uri", "/sapi/v1/capital/withdraw/apply");
    let r = c.get("/authz").await;
    assert_eq!(r.code(), "withdrawals_locked", "{}", r.body);

    app.clock.advance(DAY);
    let r = ask("/sapi/v1/capital/withdraw/apply", "POST").await;
    assert_eq!(r.status, StatusCode::OK, "after 24 h: {}", r.body);
    assert!(!r.headers.contains_key("x-rampart-withdrawals-locked-until"));
}

#[tokio::test]
async fn stored_settings_that_do_not_decode_refuse_the_key() {
    let app = spawn_app().await;
    let c = app.signed_in("ida@example.com").await;
    app.step_up_by_email(&c, "ida@example.com").await;
    let k = create(&c, json!({"label": "bot", "type": "hmac", "permissions": ["read", "spot_trade"], "ip_allowlist": ["127.0.0.1"]})).await;
    let (key, secret) = (
        k["api_key"].as_str().expect("k").to_owned(),
        k["secret"].as_str().expect("s").to_owned(),
    );
    // A damaged row: the only allowlist entry no longer parses. Read leniently, the list
    // would be empty, and an empty list allows every address.
    raw_sql(
        &app.database_url,
        &format!("UPDATE api_keys SET ip_allowlist = '10.0.0.0/33' WHERE api_key = '{key}'"),
    )
    .await;
    app.state.key_cache.invalidate("all");
    let gw = app.client();
    let uri = signed_uri(
        "/api/v3/order",
        &format!("symbol=A&timestamp={}", app.clock.now_ms()),
        &secret,
    );
    let r = authz(&gw, &key, "POST", &uri).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.code(), "key_unusable");

    // A damaged type or secret: no verifier can be built. The key is refused, and listed
    // so that its owner can delete it; neither answer is a 500.
    for damage in ["key_type = 'hmac-sha3'", "secret_enc = 'not-sealed'"] {
        raw_sql(
            &app.database_url,
            &format!("UPDATE api_keys SET ip_allowlist = '127.0.0.1/32', {damage} WHERE api_key = '{key}'"),
        )
        .await;
        app.state.key_cache.invalidate("all");
        let r = authz(&gw, &key, "POST", &uri).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{damage}: {}", r.body);
        assert_eq!(r.code(), "key_unusable", "{damage}");
        let listed = c.get("/api/v1/me/api-keys").await;
        assert_eq!(listed.status, StatusCode::OK, "{damage}: {}", listed.body);
        assert!(listed.body.contains(&key), "{damage}");
    }
    assert!(c.get("/api/v1/me/api-keys").await.json()["api_keys"][0]["type"] == "unknown");
}

#[tokio::test]
async fn a_cache_fill_that_raced_an_eviction_is_not_kept() {
    let app = spawn_app().await;
    let c = app.signed_in("rex@example.com").await;
    app.step_up_by_email(&c, "rex@example.com").await;
    let k = create(
        &c,
        json!({"label": "bot", "type": "hmac", "permissions": ["read"]}),
    )
    .await;
    let key = k["api_key"].as_str().expect("k").to_owned();
    let services = &app.state.services;
    // The interleaving: a request reads the key (not frozen yet) ...
    let ticket = services.key_cache.begin_fill();
    let before = services
        .store
        .api_key_auth(&key)
        .await
        .expect("read")
        .expect("key");
    assert!(!before.frozen);
    // ... meanwhile the owner freezes the account, which evicts the account's keys ...
    let r = c.post("/api/v1/me/freeze", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // ... and then the slow request stores what it read.
    let stale = cached_key(&key, &before.key.account_id, before.frozen);
    assert!(
        !services.key_cache.fill(ticket, stale),
        "a fill older than the eviction is dropped"
    );
    assert!(services.key_cache.get(&key).is_none());
    let gw = app.client();
    let r = authz(&gw, &key, "GET", "/api/v3/account?timestamp=1&signature=00").await;
    assert_ne!(r.status, StatusCode::OK);
    // Without an eviction in between, a fill is kept.
    let ticket = services.key_cache.begin_fill();
    assert!(services
        .key_cache
        .fill(ticket, cached_key("other", "x", false)));
    assert!(services.key_cache.get("other").is_some());
}

fn cached_key(
    key: &str,
    account_id: &str,
    frozen: bool,
) -> std::sync::Arc<rampart::service::api_keys::CachedKey> {
    std::sync::Arc::new(rampart::service::api_keys::CachedKey {
        api_key: key.to_owned(),
        account_id: account_id.to_owned(),
        uid: "0000000000".into(),
        verifier: Some(rampart::domain::api_key::Verifier::hmac("whatever")),
        permissions: rampart::domain::api_key::Permissions::default(),
        permissions_csv: String::new(),
        allowlist: rampart::domain::api_key::Allowlist::default(),
        expires_at: None,
        frozen,
        suspended: false,
        withdrawals_locked_until: None,
        unusable: false,
    })
}
