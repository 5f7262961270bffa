//! The step-up of an account without a second factor: its password plus a mailed code. A
//! thief holding only the session cookie can no longer enrol a factor, create keys or
//! remove devices.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use rampart::clock::{MINUTE, SECOND};
use rampart::domain::totp;

const OWNER_IP: &str = "198.51.100.7";
const THIEF_IP: &str = "203.0.113.66";

/// An app behind a trusted proxy on loopback, so `X-Forwarded-For` sets the client address.
async fn proxied_app() -> TestApp {
    spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")]).await
}

/// Another browser on another address that holds a copy of `victim`'s session cookie.
fn thief_with_cookie_of(app: &TestApp, victim: &TestClient) -> TestClient {
    let thief = app.client_with_ua(IPHONE);
    thief.set_cookie(
        "rampart_session",
        &victim.cookie("rampart_session").expect("session cookie"),
    );
    thief.header("x-forwarded-for", THIEF_IP);
    thief
}

async fn account_id(app: &TestApp, email: &str) -> String {
    app.store()
        .account_by_email(email)
        .await
        .expect("read")
        .expect("account")
        .id
}

/// Audit actions of the account with their details, oldest first.
async fn audit(app: &TestApp, email: &str) -> Vec<(String, Value, Option<String>)> {
    let id = account_id(app, email).await;
    let mut events: Vec<_> = app
        .store()
        .audit_for_account(&id, 500)
        .await
        .expect("events")
        .into_iter()
        .map(|e| {
            let detail = serde_json::from_str(&e.detail).expect("JSON detail");
            (e.action, detail, e.ip)
        })
        .collect();
    events.reverse();
    events
}

fn totp_code(app: &TestApp, b32: &str) -> String {
    let secret = totp_rs::Secret::Encoded(b32.to_owned())
        .to_bytes()
        .expect("base32");
    totp::code_for_step(&secret, totp::step_of(app.clock.now_ms()), 6).expect("code")
}

/// Sets up the authenticator app (the session must be stepped up); returns its secret.
async fn enrol_totp(app: &TestApp, c: &TestClient) -> String {
    let r = c.post("/api/v1/me/totp", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let b32 = r.json()["secret"].as_str().expect("secret").to_owned();
    let r = c
        .post(
            "/api/v1/me/totp/confirm",
            json!({"code": totp_code(app, &b32)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    b32
}

fn withdraw_key() -> Value {
    json!({"label": "drain", "type": "hmac", "permissions": ["read", "withdraw"], "ip_allowlist": [THIEF_IP]})
}

#[tokio::test]
async fn a_stolen_session_cookie_alone_cannot_enrol_a_factor_create_keys_or_remove_devices() {
    let app = proxied_app().await;
    let email = "olga@example.com";
    let owner = app.client();
    owner.header("x-forwarded-for", OWNER_IP);
    app.register_confirmed(&owner, email).await;
    let r = owner
        .post(
            "/api/v1/sessions",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A second device of the owner, for the thief to try to remove.
    let laptop = app.signed_in_again(email).await;
    let devices = owner.get("/api/v1/me/devices").await.json();
    let laptop_id = devices["devices"]
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["current"] == false)
        .expect("the other device")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let thief = thief_with_cookie_of(&app, &owner);
    assert_eq!(
        thief.get("/api/v1/me").await.status,
        StatusCode::OK,
        "the cookie works"
    );

    // Every way to dig in is refused with the same stable code, and says how to proceed.
    let r = thief.post("/api/v1/me/totp", json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.code(), "step_up_required");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .expect("message")
            .contains("/api/v1/me/step-up/email-code"),
        "{}",
        r.body
    );
    let r = thief
        .post(
            "/api/v1/me/passkeys/register/start",
            json!({"name": "Thief key"}),
        )
        .await;
    assert_eq!(r.code(), "step_up_required");
    let r = thief.post("/api/v1/me/api-keys", withdraw_key()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.code(), "step_up_required");
    let r = thief
        .delete(&format!("/api/v1/me/devices/{laptop_id}"))
        .await;
    assert_eq!(r.code(), "step_up_required");
    assert_eq!(
        laptop.get("/api/v1/me").await.status,
        StatusCode::OK,
        "the owner's other device is still signed in"
    );

    // The cookie is not a password, and the code goes to the owner's mailbox.
    let r = thief.post("/api/v1/me/step-up/email-code", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let mailed = step_up_code(&app, email).await;
    let guess = if mailed == "000000" {
        "111111"
    } else {
        "000000"
    };
    let r = thief
        .post(
            "/api/v1/me/step-up",
            json!({"password": "Not-the-password-1234", "email_code": mailed}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.code(), "wrong_password");
    let r = thief
        .post(
            "/api/v1/me/step-up",
            json!({"password": PASSWORD, "email_code": guess}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.code(), "invalid_code");
    assert_eq!(
        thief
            .post("/api/v1/me/api-keys", withdraw_key())
            .await
            .code(),
        "step_up_required"
    );
    let code_mail = app
        .mails_to(email)
        .await
        .into_iter()
        .rev()
        .find(|m| m.body_text.contains("confirm a security change is"))
        .expect("code mail");
    assert!(
        code_mail.body_text.contains(THIEF_IP),
        "the owner sees where the request came from"
    );
    assert!(code_mail.body_text.contains("/freeze/"));
    assert!(code_mail.body_text.contains("set an anti-phishing code"));

    // Nothing was planted.
    let keys = owner.get("/api/v1/me/api-keys").await.json();
    assert_eq!(
        keys["api_keys"].as_array().expect("keys").len(),
        0,
        "{keys}"
    );
    let factors = owner.get("/api/v1/me/second-factors").await.json();
    assert_eq!(factors["totp_enabled"], false, "{factors}");

    // With the password and the mailed code, the same session may act for 5 minutes.
    app.clock.advance(MINUTE);
    app.step_up_by_email(&thief, email).await;
    let r = thief.post("/api/v1/me/api-keys", withdraw_key()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = thief
        .delete(&format!("/api/v1/me/devices/{laptop_id}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        laptop.get("/api/v1/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = thief.post("/api/v1/me/totp", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.clock.advance(5 * MINUTE);
    let r = thief
        .post(
            "/api/v1/me/api-keys",
            json!({"label": "x", "type": "hmac", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(
        r.code(),
        "step_up_required",
        "five minutes, like any step-up"
    );

    // Each step is in the audit log, with the address it came from.
    let events = audit(&app, email).await;
    let from_thief = |action: &str, key: &str, value: &str| {
        events
            .iter()
            .any(|(a, d, ip)| a == action && d[key] == value && ip.as_deref() == Some(THIEF_IP))
    };
    assert!(
        events
            .iter()
            .any(|(a, _, ip)| a == "step_up.code_sent" && ip.as_deref() == Some(THIEF_IP)),
        "{events:?}"
    );
    assert!(
        from_thief("step_up.failed", "reason", "wrong_password"),
        "{events:?}"
    );
    assert!(
        from_thief("step_up.failed", "reason", "wrong_code"),
        "{events:?}"
    );
    assert!(
        from_thief("step_up.succeeded", "method", "password_and_email_code"),
        "{events:?}"
    );
}

#[tokio::test]
async fn the_mailed_code_lasts_ten_minutes_works_once_and_is_resent_at_most_once_a_minute() {
    let app = spawn_app().await;
    let email = "pia@example.com";
    let c = app.signed_in(email).await;
    let code_mails = |mails: &[rampart::store::OutboxMail]| {
        mails
            .iter()
            .filter(|m| m.body_text.contains("confirm a security change is"))
            .count()
    };

    let r = c.post("/api/v1/me/step-up/email-code", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.json()["sent"], true);
    let expires_at = r.json()["expires_at"].as_i64().expect("expiry");
    assert_eq!(expires_at, app.clock.now_ms() + 10 * MINUTE);
    let first = step_up_code(&app, email).await;
    let mail = app
        .mails_to(email)
        .await
        .into_iter()
        .rev()
        .find(|m| m.body_text.contains("confirm a security change is"))
        .expect("mail");
    assert!(mail.body_text.contains("/freeze/"), "{}", mail.body_text);
    let stored = app
        .store()
        .action_code(&account_id(&app, email).await, "step_up")
        .await
        .expect("read")
        .expect("code");
    assert!(
        !stored.code_mac.contains(&first),
        "stored as a keyed hash, never the code"
    );

    // Asking again within a minute mails nothing new; the first code still counts.
    app.clock.advance(30 * SECOND);
    let r = c.post("/api/v1/me/step-up/email-code", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.json()["sent"], false);
    assert_eq!(r.json()["expires_at"], expires_at);
    assert_eq!(code_mails(&app.mails_to(email).await), 1);

    // Ten minutes later it has expired.
    app.clock.advance(10 * MINUTE - 30 * SECOND);
    let r = c
        .post(
            "/api/v1/me/step-up",
            json!({"password": PASSWORD, "email_code": first}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.code(), "code_expired");

    // A new code works once.
    let r = c.post("/api/v1/me/step-up/email-code", json!({})).await;
    assert_eq!(r.json()["sent"], true);
    assert_eq!(code_mails(&app.mails_to(email).await), 2);
    let second = step_up_code(&app, email).await;
    app.clock.advance(9 * MINUTE);
    let r = c
        .post(
            "/api/v1/me/step-up",
            json!({"password": PASSWORD, "email_code": second}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["stepped_up_until"],
        app.clock.now_ms() + 5 * MINUTE
    );
    let r = c
        .post(
            "/api/v1/me/step-up",
            json!({"password": PASSWORD, "email_code": second}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.code(), "invalid_code", "single use");
}

#[tokio::test]
async fn wrong_codes_and_passwords_are_limited() {
    let app = spawn_app().await;
    let email = "quim@example.com";
    let c = app.signed_in(email).await;
    c.post("/api/v1/me/step-up/email-code", json!({})).await;
    let right = step_up_code(&app, email).await;
    let wrong = if right == "123456" {
        "654321"
    } else {
        "123456"
    };
    for left in (0..5).rev() {
        let r = c
            .post(
                "/api/v1/me/step-up",
                json!({"password": PASSWORD, "email_code": wrong}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.code(), "invalid_code");
        if left > 0 {
            assert!(
                r.body.contains(&format!(
                    "{left} {} left",
                    if left == 1 { "try" } else { "tries" }
                )),
                "{}",
                r.body
            );
        }
    }
    // After five wrong codes even the right one is refused: ask for a new code. (The
    // per-account throttle has started too; wait it out first.)
    app.clock.advance(2 * SECOND);
    let r = c
        .post(
            "/api/v1/me/step-up",
            json!({"password": PASSWORD, "email_code": right}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.code(), "too_many_attempts");
    assert!(
        r.headers.get("retry-after").is_none(),
        "a new code, not a wait"
    );
    assert_eq!(
        c.post(
            "/api/v1/me/api-keys",
            json!({"label": "x", "type": "hmac", "permissions": ["read"]})
        )
        .await
        .code(),
        "step_up_required"
    );

    // Wrong passwords are throttled per account, however many sessions try.
    let other = app.signed_in_again(email).await;
    let mut throttled = None;
    for _ in 0..10 {
        let r = other
            .post(
                "/api/v1/me/step-up",
                json!({"password": "Wrong-password-but-long-1", "email_code": right}),
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(r);
            break;
        }
        assert_eq!(r.code(), "wrong_password");
    }
    let r = throttled.expect("throttled");
    assert_eq!(r.code(), "too_many_attempts");
    let wait: i64 = r.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(wait > 0);

    // Never a lockout: after the wait, a new code and the password work.
    app.clock.advance(16 * MINUTE);
    app.step_up_by_email(&c, email).await;
    let r = c
        .post(
            "/api/v1/me/api-keys",
            json!({"label": "x", "type": "hmac", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

/// The path of the freeze link in `body`.
fn freeze_path(body: &str) -> String {
    body.lines()
        .find(|l| l.contains("/freeze/"))
        .expect("freeze link")
        .trim()
        .strip_prefix("http://rampart.test")
        .expect("public url")
        .to_owned()
}

#[tokio::test]
async fn the_first_second_factor_is_announced_with_a_freeze_link_that_works() {
    let app = spawn_app().await;
    let email = "rui@example.com";
    let c = app.signed_in(email).await;
    app.step_up_by_email(&c, email).await;
    enrol_totp(&app, &c).await;

    let mail = app
        .mails_to(email)
        .await
        .into_iter()
        .rev()
        .find(|m| {
            m.subject
                .contains("A second factor was added to your account")
        })
        .expect("the first-factor mail");
    assert!(
        mail.body_text.contains("authenticator app"),
        "{}",
        mail.body_text
    );
    assert!(mail.body_text.contains("Not you?"), "{}", mail.body_text);

    // The owner clicks the link without signing in: the account freezes and the
    // session that enrolled the factor ends.
    let path = freeze_path(&mail.body_text);
    let stranger = app.client();
    let page = stranger.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    let r = stranger
        .post_form(&path, &[("csrf", &csrf_in(&page.body))])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = c.get("/api/v1/me").await;
    assert_eq!(r.code(), "account_frozen");
}

#[tokio::test]
async fn an_account_with_a_second_factor_cannot_step_up_by_mail() {
    let app = spawn_app().await;
    let email = "sol@example.com";
    let c = app.signed_in(email).await;
    // Without a factor, `{code}` has nothing to prove.
    let r = c
        .post("/api/v1/me/step-up", json!({"code": "123456"}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.code(), "no_second_factor");

    c.post("/api/v1/me/step-up/email-code", json!({})).await;
    let unused = step_up_code(&app, email).await;
    app.clock.advance(MINUTE);
    app.step_up_by_email(&c, email).await;
    let b32 = enrol_totp(&app, &c).await;
    app.clock.advance(6 * MINUTE);

    let r = c.post("/api/v1/me/step-up/email-code", json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.code(), "use_second_factor");
    let r = c
        .post(
            "/api/v1/me/step-up",
            json!({"password": PASSWORD, "email_code": unused}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.code(), "use_second_factor");
    assert_eq!(
        c.post(
            "/api/v1/me/api-keys",
            json!({"label": "x", "type": "hmac", "permissions": ["read"]})
        )
        .await
        .code(),
        "step_up_required"
    );
    // Its factor works.
    let r = c
        .post("/api/v1/me/step-up", json!({"code": totp_code(&app, &b32)}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // A body that mixes both kinds is refused as such.
    let r = c
        .post(
            "/api/v1/me/step-up",
            json!({"code": "123456", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.code(), "invalid_body");
}

#[tokio::test]
async fn the_security_center_offers_the_mailed_code_with_csrf() {
    let app = spawn_app().await;
    let email = "tea@example.com";
    let c = app.signed_in(email).await;
    let page = c.get("/security/factors").await;
    assert!(page
        .body
        .contains("action=\"/security/step-up/email-code\""));
    assert!(page.body.contains("action=\"/security/step-up/email\""));
    let csrf = csrf_in(&page.body);

    // Setting up the app is refused until the step-up, with a sentence about the form.
    let r = c.post_form("/security/totp", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("ask for a code by mail"), "{}", r.body);

    // Forms without the token do nothing.
    let r = app
        .client()
        .post_form("/security/step-up/email-code", &[("csrf", &csrf)])
        .await;
    assert_ne!(r.status, StatusCode::SEE_OTHER);
    let r = c
        .post_form("/security/step-up/email-code", &[("csrf", "forged")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!app
        .mails_to(email)
        .await
        .iter()
        .any(|m| m.body_text.contains("confirm a security change is")));

    let r = c
        .post_form("/security/step-up/email-code", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        r.headers["location"],
        "/security/factors?saved=step_up_code"
    );
    let code = step_up_code(&app, email).await;
    let r = c
        .post_form(
            "/security/step-up/email",
            &[
                ("csrf", &csrf),
                ("password", "Wrong-password-long-1"),
                ("email_code", &code),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("The password is wrong."), "{}", r.body);
    let r = c
        .post_form(
            "/security/step-up/email",
            &[
                ("csrf", &csrf),
                ("password", PASSWORD),
                ("email_code", &code),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers["location"], "/security/factors?saved=stepped_up");
    let page = c.get("/security/factors?saved=stepped_up").await;
    assert!(page.body.contains("data-testid=\"stepped-up\""));

    let r = c.post_form("/security/totp", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("<svg"), "the QR code page");
}

#[tokio::test]
async fn the_openapi_document_describes_both_proofs() {
    let app = spawn_app().await;
    let doc = app.client().get("/api/v1/openapi.json").await.json();
    let send = &doc["paths"]["/api/v1/me/step-up/email-code"]["post"];
    assert!(send["responses"]["202"].is_object(), "{send}");
    assert!(send["responses"]["409"].is_object(), "{send}");
    let step_up = &doc["paths"]["/api/v1/me/step-up"]["post"];
    assert!(step_up["responses"]["403"].is_object(), "{step_up}");
    let schemas = &doc["components"]["schemas"];
    let one_of = schemas["StepUpRequest"]["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", schemas["StepUpRequest"]));
    assert_eq!(one_of.len(), 2, "{one_of:?}");
    let email = &schemas["EmailStepUpRequest"];
    assert_eq!(
        email["required"],
        json!(["password", "email_code"]),
        "{email}"
    );
    assert_eq!(email["additionalProperties"], false, "{email}");
}
