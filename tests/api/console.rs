//! The operator console: enrolment, sign-in, sessions, roles, lookup and freeze.
//!
//! The helpers at the top (`operator_signed_in`, …) are for every console test, the
//! support queues' included.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use rampart::clock::{HOUR, MINUTE, SECOND};
use rampart::domain::totp;

pub const OPERATOR_PASSWORD: &str = "Console-staple-horse-battery-42";

/// An operator as a test holds them: address, authenticator seed, signed-in client.
pub struct TestOperator {
    pub email: String,
    pub secret: Vec<u8>,
    pub client: TestClient,
}

/// Adds an operator through the service (as `rampart operator add` does); answers the
/// enrolment token (the last segment of the printed link).
pub async fn operator_added(app: &TestApp, email: &str, role: &str) -> String {
    let added = app
        .state
        .operators
        .add(email, role, None)
        .await
        .expect("operator added");
    assert!(
        added
            .enrolment_link
            .starts_with("http://rampart.test/console/enrol/"),
        "{}",
        added.enrolment_link
    );
    added
        .enrolment_link
        .rsplit('/')
        .next()
        .expect("token")
        .to_owned()
}

/// Enrols through the API (password, then a code); answers the authenticator seed.
pub async fn operator_enrol(app: &TestApp, token: &str) -> Vec<u8> {
    let c = app.client();
    let r = c
        .post(
            "/api/v1/console/enrol",
            json!({"token": token, "password": OPERATOR_PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let body = r.json();
    assert!(body["otpauth_uri"]
        .as_str()
        .expect("uri")
        .starts_with("otpauth://totp/"));
    let b32 = body["totp_secret"].as_str().expect("secret").to_owned();
    let secret = totp_rs::Secret::Encoded(b32).to_bytes().expect("base32");
    let r = c
        .post(
            "/api/v1/console/enrol/confirm",
            json!({"token": token, "code": operator_code(app, &secret)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    secret
}

/// The authenticator code for the current step.
pub fn operator_code(app: &TestApp, secret: &[u8]) -> String {
    totp::code_for_step(secret, totp::step_of(app.clock.now_ms()), 6).expect("code")
}

/// Signs an enrolled operator in. Moves the clock on by one 30-second step first, so the
/// code is not one already used (each code works once).
pub async fn operator_sign_in(app: &TestApp, email: &str, secret: &[u8]) -> TestClient {
    app.clock.advance(totp::STEP_SECONDS as i64 * SECOND);
    let c = app.client();
    let r = c
        .post(
            "/api/v1/console/sessions",
            json!({"email": email, "password": OPERATOR_PASSWORD, "code": operator_code(app, secret)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(c.cookie("rampart_console").is_some());
    c
}

/// A new operator with `role` (`support`, `reviewer`, `admin`), enrolled through the API
/// and signed in; each call makes a different operator.
pub async fn operator_signed_in(app: &TestApp, role: &str) -> TestClient {
    operator_signed_in_full(app, role).await.client
}

/// Like [`operator_signed_in`], keeping the address and seed (to sign in again).
pub async fn operator_signed_in_full(app: &TestApp, role: &str) -> TestOperator {
    let email = format!(
        "{role}-{}@ops.test",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let token = operator_added(app, &email, role).await;
    let secret = operator_enrol(app, &token).await;
    let client = operator_sign_in(app, &email, &secret).await;
    TestOperator {
        email,
        secret,
        client,
    }
}

fn error_code(r: &Answer) -> Value {
    r.json()["error"]["code"].clone()
}

#[tokio::test]
async fn an_enrolled_operator_signs_in_sees_itself_and_signs_out() {
    let app = spawn_app().await;
    let op = operator_signed_in_full(&app, "reviewer").await;
    let r = op.client.get("/api/v1/console/me").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["email"], op.email.as_str());
    assert_eq!(r.json()["role"], "reviewer");
    assert_eq!(
        r.json()["powers"],
        json!(["lookup", "tickets", "recoveries", "freeze"])
    );
    let r = op.client.delete("/api/v1/console/sessions/current").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = op.client.get("/api/v1/console/me").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_in_needs_the_right_fresh_code_and_answers_alike() {
    let app = spawn_app().await;
    let _support = operator_signed_in(&app, "support").await;
    let op = operator_signed_in_full(&app, "support").await;
    // The code that just opened a session cannot open another one.
    let code = operator_code(&app, &op.secret);
    let c = app.client();
    let r = c
        .post(
            "/api/v1/console/sessions",
            json!({"email": op.email, "password": OPERATOR_PASSWORD, "code": code}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(error_code(&r), "invalid_credentials");
    // Wrong code, wrong password, unknown address: the same answer.
    app.clock.advance(30 * SECOND);
    let wrong = format!(
        "{:06}",
        (code.parse::<u32>().expect("digits") + 1) % 1_000_000
    );
    for (email, password, code) in [
        (op.email.as_str(), OPERATOR_PASSWORD, wrong.clone()),
        (
            op.email.as_str(),
            "Not-the-password-at-all-9",
            operator_code(&app, &op.secret),
        ),
        (
            "nobody@ops.test",
            OPERATOR_PASSWORD,
            operator_code(&app, &op.secret),
        ),
    ] {
        let r = c
            .post(
                "/api/v1/console/sessions",
                json!({"email": email, "password": password, "code": code}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        assert_eq!(error_code(&r), "invalid_credentials");
        assert!(c.cookie("rampart_console").is_none());
    }
    // The right code of the next step works.
    let r = c
        .post(
            "/api/v1/console/sessions",
            json!({"email": op.email, "password": OPERATOR_PASSWORD, "code": operator_code(&app, &op.secret)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn an_enrolment_link_works_once_and_for_24_hours() {
    let app = spawn_app().await;
    let c = app.client();
    // Expired: 24 hours by the clock.
    let late = operator_added(&app, "late@ops.test", "support").await;
    app.clock.advance(24 * HOUR);
    let r = c
        .post(
            "/api/v1/console/enrol",
            json!({"token": late, "password": OPERATOR_PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(error_code(&r), "enrolment_invalid");
    // Just in time: 24 hours minus a minute.
    let token = operator_added(&app, "ontime@ops.test", "support").await;
    app.clock.advance(24 * HOUR - MINUTE);
    let secret = operator_enrol(&app, &token).await;
    // Used: refused at both steps.
    for path in ["/api/v1/console/enrol", "/api/v1/console/enrol/confirm"] {
        let r = c
            .post(
                path,
                json!({"token": token, "password": OPERATOR_PASSWORD, "code": operator_code(&app, &secret)}),
            )
            .await;
        assert!(r.status.is_client_error(), "{}", r.body);
    }
    let r = c
        .post(
            "/api/v1/console/enrol",
            json!({"token": token, "password": OPERATOR_PASSWORD}),
        )
        .await;
    assert_eq!(error_code(&r), "enrolment_invalid");
    // A wrong code does not enrol; a weak password is refused.
    let other = operator_added(&app, "other@ops.test", "support").await;
    let r = c
        .post(
            "/api/v1/console/enrol",
            json!({"token": other, "password": "short"}),
        )
        .await;
    assert_eq!(error_code(&r), "weak_password");
    let r = c
        .post(
            "/api/v1/console/enrol",
            json!({"token": other, "password": OPERATOR_PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = c
        .post(
            "/api/v1/console/enrol/confirm",
            json!({"token": other, "code": "000000"}),
        )
        .await;
    assert_eq!(error_code(&r), "invalid_code");
    // The seed is stored sealed, never as shown.
    let stored = app
        .store()
        .operator_by_email("ontime@ops.test")
        .await
        .expect("read")
        .expect("operator");
    let sealed = stored.totp_secret.expect("sealed seed");
    let shown = totp_rs::Secret::Raw(secret.clone())
        .to_encoded()
        .to_string();
    assert!(!sealed.contains(&shown) && sealed.len() > 40, "{sealed}");
}

#[tokio::test]
async fn a_console_session_ends_after_15_idle_minutes_and_after_8_hours() {
    let app = spawn_app().await;
    let op = operator_signed_in_full(&app, "support").await;
    app.clock.advance(14 * MINUTE);
    assert_eq!(
        op.client.get("/api/v1/console/me").await.status,
        StatusCode::OK
    );
    app.clock.advance(15 * MINUTE);
    let r = op.client.get("/api/v1/console/me").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&r), "session_expired");
    // Ended for good, not just this once.
    assert_eq!(
        error_code(&op.client.get("/api/v1/console/me").await),
        "unauthenticated"
    );
    // Busy all day: still ends at 8 hours.
    let c = operator_sign_in(&app, &op.email, &op.secret).await;
    for _ in 0..(8 * 60 / 10 - 1) {
        app.clock.advance(10 * MINUTE);
        assert_eq!(c.get("/api/v1/console/me").await.status, StatusCode::OK);
    }
    app.clock.advance(10 * MINUTE);
    assert_eq!(
        error_code(&c.get("/api/v1/console/me").await),
        "session_expired"
    );
}

#[tokio::test]
async fn a_disabled_operator_is_refused_at_once() {
    let app = spawn_app().await;
    let admin = operator_signed_in(&app, "admin").await;
    let op = operator_signed_in_full(&app, "reviewer").await;
    let list = admin.get("/api/v1/console/operators").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let id = list.json()["operators"]
        .as_array()
        .expect("list")
        .iter()
        .find(|o| o["email"] == op.email.as_str())
        .expect("listed")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = admin
        .post(
            &format!("/api/v1/console/operators/{id}/disable"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        op.client.get("/api/v1/console/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    app.clock.advance(30 * SECOND);
    let r = app
        .client()
        .post(
            "/api/v1/console/sessions",
            json!({"email": op.email, "password": OPERATOR_PASSWORD, "code": operator_code(&app, &op.secret)}),
        )
        .await;
    assert_eq!(error_code(&r), "invalid_credentials");
    let list = admin.get("/api/v1/console/operators").await.json();
    let me = list["operators"]
        .as_array()
        .expect("list")
        .iter()
        .find(|o| o["email"] == op.email.as_str())
        .cloned()
        .expect("listed");
    assert!(me["disabled_at"].is_i64());
}

#[tokio::test]
async fn each_role_is_refused_what_it_may_not_do() {
    let app = spawn_app().await;
    app.signed_in("owner@example.com").await;
    let uid = app
        .store()
        .account_by_email("owner@example.com")
        .await
        .expect("read")
        .expect("account")
        .uid;
    let support = operator_signed_in(&app, "support").await;
    let reviewer = operator_signed_in(&app, "reviewer").await;
    let r = support
        .post(
            &format!("/api/v1/console/accounts/{uid}/freeze"),
            json!({"reason": "reported stolen"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(error_code(&r), "role_missing");
    // Support may look up.
    let r = support
        .get(&format!("/api/v1/console/accounts?q={uid}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for (method, path) in [
        ("GET", "/api/v1/console/operators"),
        ("POST", "/api/v1/console/operators"),
        ("GET", "/api/v1/console/settings"),
    ] {
        for c in [&support, &reviewer] {
            let r = if method == "GET" {
                c.get(path).await
            } else {
                c.post(path, json!({"email": "new@ops.test", "role": "admin"}))
                    .await
            };
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{method} {path}: {}",
                r.body
            );
            assert_eq!(error_code(&r), "role_missing");
        }
    }
    assert!(app
        .store()
        .operator_by_email("new@ops.test")
        .await
        .expect("read")
        .is_none());
    // An admin may add (the link is answered once) and read the settings.
    let admin = operator_signed_in(&app, "admin").await;
    let r = admin
        .post(
            "/api/v1/console/operators",
            json!({"email": "new@ops.test", "role": "support"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let link = r.json()["enrolment_link"]
        .as_str()
        .expect("link")
        .to_owned();
    let token = link.rsplit('/').next().expect("token");
    operator_enrol(&app, token).await;
    let r = admin.get("/api/v1/console/settings").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["console_idle_minutes"], 15);
    assert!(r.json()["rules"]["password_min_chars"].is_u64());
    assert!(!r.body.contains("secret"), "{}", r.body);
}

#[tokio::test]
async fn a_freeze_needs_a_reason_and_the_owner_is_told_it() {
    let app = spawn_app().await;
    let owner = app.signed_in("olga@example.com").await;
    let uid = owner.get("/api/v1/me").await.json()["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let op = operator_signed_in_full(&app, "reviewer").await;
    let path = format!("/api/v1/console/accounts/{uid}/freeze");
    for reason in ["", "   "] {
        let r = op.client.post(&path, json!({ "reason": reason })).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(error_code(&r), "reason_required");
    }
    let r = op.client.post(&path, json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(
        owner.get("/api/v1/me").await.status,
        StatusCode::OK,
        "not frozen yet"
    );
    let r = op
        .client
        .post(
            &path,
            json!({ "reason": "Account reported stolen by phone (ticket 42)" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["status"], "frozen");
    // The owner's session ended at once.
    let r = owner.get("/api/v1/me").await;
    assert_eq!(error_code(&r), "account_frozen");
    // Idempotent.
    let r = op.client.post(&path, json!({ "reason": "again" })).await;
    assert_eq!(r.json()["status"], "already_frozen");
    // Mail and inbox say it with the reason.
    let mails = app.mails_to("olga@example.com").await;
    let mail = mails
        .iter()
        .find(|m| m.subject.contains("Support froze your account"))
        .expect("freeze mail");
    assert!(mail
        .body_text
        .contains("Support froze your account: Account reported stolen by phone (ticket 42)"));
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.subject.contains("Support froze"))
            .count(),
        1,
        "a second freeze writes nothing"
    );
    let account = app
        .store()
        .account_by_email("olga@example.com")
        .await
        .expect("read")
        .expect("account");
    let inbox = app
        .store()
        .notifications(&account.id, 50)
        .await
        .expect("inbox");
    assert!(inbox.iter().any(|n| n
        .body
        .contains("Support froze your account: Account reported stolen by phone (ticket 42)")));
    // Audited with the operator and the reason; the lookup says who and why.
    let r = op
        .client
        .get(&format!("/api/v1/console/accounts?q={uid}"))
        .await;
    let profile = &r.json()["profile"];
    assert!(profile["frozen_at"].is_i64());
    assert_eq!(profile["frozen"]["by"], format!("operator:{}", op.email));
    assert_eq!(
        profile["frozen"]["reason"],
        "Account reported stolen by phone (ticket 42)"
    );
    // Unknown account.
    let r = op
        .client
        .post(
            "/api/v1/console/accounts/NOSUCHUID/freeze",
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(error_code(&r), "account_not_found");
}

#[tokio::test]
async fn a_lookup_shows_every_section_is_audited_and_verifies_the_chain() {
    let app = spawn_app().await;
    let owner = app.signed_in("lena@example.com").await;
    let uid = owner.get("/api/v1/me").await.json()["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let op = operator_signed_in_full(&app, "support").await;
    for q in [uid.as_str(), "LENA@example.com"] {
        let r = op
            .client
            .get(&format!(
                "/api/v1/console/accounts?q={}",
                q.replace('@', "%40")
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let body = r.json();
        assert_eq!(body["profile"]["uid"], uid.as_str());
        assert_eq!(body["profile"]["email"], "lena@example.com");
        assert_eq!(body["profile"]["anti_phishing_code_set"], false);
        assert!(body["profile"]["email_confirmed_at"].is_i64());
        assert_eq!(body["devices"].as_array().expect("devices").len(), 1);
        assert!(!body["sign_ins"].as_array().expect("sign-ins").is_empty());
        assert!(body["api_keys"].is_array());
        assert!(body["withdrawal_locks"].is_array());
        assert!(body["recovery_requests"].is_array());
        assert_eq!(
            body["audit_chain"]["intact"], true,
            "{}",
            body["audit_chain"]
        );
        let events = body["audit_events"].as_array().expect("events");
        assert!(events.iter().all(|e| e["verified"] == true));
        // The lookup itself is the newest event: by the operator, on the account.
        assert_eq!(events[0]["action"], "console.lookup");
        assert_eq!(events[0]["actor"], format!("operator:{}", op.email));
        assert!(!r.body.contains("password_hash") && !r.body.contains("$argon2"));
    }
    let r = op
        .client
        .get("/api/v1/console/accounts?q=nobody%40example.com")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&r), "account_not_found");
    // Tamper with one of the account's events: the lookup names it.
    let r = op
        .client
        .get(&format!("/api/v1/console/accounts?q={uid}"))
        .await;
    let events = r.json()["audit_events"].as_array().expect("events").clone();
    let victim = events.last().expect("oldest")["seq"].as_i64().expect("seq");
    raw_sql(
        &app.database_url,
        &format!("UPDATE audit_events SET ip = '198.51.100.66' WHERE seq = {victim}"),
    )
    .await;
    let body = op
        .client
        .get(&format!("/api/v1/console/accounts?q={uid}"))
        .await
        .json();
    assert_eq!(body["audit_chain"]["intact"], false);
    assert_eq!(body["audit_chain"]["broken_at"], victim);
    assert!(body["audit_chain"]["problem"]
        .as_str()
        .expect("problem")
        .contains("altered"));
    let bad = body["audit_events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["seq"] == victim)
        .expect("listed");
    assert_eq!(bad["verified"], false);
}

#[tokio::test]
async fn the_owner_cookie_and_the_console_cookie_open_only_their_own_doors() {
    let app = spawn_app().await;
    let owner = app.signed_in("nina@example.com").await;
    let op = operator_signed_in(&app, "admin").await;
    let r = owner.get("/api/v1/console/me").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = op.get("/api/v1/me").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The owner's session token as a console cookie (and the other way round) is nothing.
    let owner_token = owner.cookie("rampart_session").expect("owner cookie");
    let console_token = op.cookie("rampart_console").expect("console cookie");
    let swapped = app.client();
    swapped.set_cookie("rampart_console", &owner_token);
    assert_eq!(
        swapped.get("/api/v1/console/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    let swapped = app.client();
    swapped.set_cookie("rampart_session", &console_token);
    assert_eq!(
        swapped.get("/api/v1/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    // The console cookie's attributes.
    let token = operator_added(&app, "attrs@ops.test", "support").await;
    let secret = operator_enrol(&app, &token).await;
    app.clock.advance(30 * SECOND);
    let r = app
        .client()
        .post(
            "/api/v1/console/sessions",
            json!({"email": "attrs@ops.test", "password": OPERATOR_PASSWORD, "code": operator_code(&app, &secret)}),
        )
        .await;
    let cookie = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("rampart_console="))
        .expect("console cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    // State-changing requests carrying the console cookie must come from our origin.
    op.header("origin", "https://evil.example");
    let r = op
        .post(
            "/api/v1/console/operators",
            json!({"email": "x@ops.test", "role": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(error_code(&r), "cross_origin_request");
}

#[tokio::test]
async fn every_console_route_is_in_the_openapi_document_under_its_tag() {
    let app = spawn_app().await;
    let doc = app.client().get("/api/v1/openapi.json").await.json();
    for (path, method, signed_in) in [
        ("/api/v1/console/enrol", "post", false),
        ("/api/v1/console/enrol/confirm", "post", false),
        ("/api/v1/console/sessions", "post", false),
        ("/api/v1/console/sessions/current", "delete", true),
        ("/api/v1/console/me", "get", true),
        ("/api/v1/console/accounts", "get", true),
        ("/api/v1/console/accounts/{uid}/freeze", "post", true),
        ("/api/v1/console/operators", "get", true),
        ("/api/v1/console/operators", "post", true),
        ("/api/v1/console/operators/{id}/disable", "post", true),
        ("/api/v1/console/settings", "get", true),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} documented");
        assert_eq!(op["tags"], json!(["console"]), "{method} {path}");
        if signed_in {
            assert_eq!(op["security"], json!([{"console": []}]), "{method} {path}");
            assert!(op["responses"]["401"].is_object(), "{method} {path}");
            assert!(op["responses"]["403"].is_object(), "{method} {path}");
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["console"]["name"],
        "rampart_console"
    );
}

/// `rampart ARGS` against `db` with `key`, to its end; answers success and output.
fn rampart_cli(args: &[&str], db: &str, key: &str) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.args(args)
        .args(["--database-url", db])
        .current_dir(std::env::temp_dir())
        .env("RAMPART_LOG", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("RAMPART_") && k != "RAMPART_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("RAMPART_SECRET_KEY", key)
        .env("RAMPART_PUBLIC_URL", "http://rampart.test");
    let out = cmd.output().expect("rampart runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn the_operator_cli_adds_with_a_link_lists_and_disables() {
    use secrecy::ExposeSecret;
    let (db, dir) = fresh_database().await;
    let settings = test_settings(&db);
    let key = settings
        .secret_key
        .clone()
        .expect("key")
        .expose_secret()
        .to_owned();
    let app = spawn_app_from(settings, dir).await;
    let cli = |args: Vec<String>| {
        let (db, key) = (db.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            rampart_cli(&args, &db, &key)
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let (ok, out) = cli(args(&[
        "operator",
        "add",
        "--email",
        "Cli@Ops.test",
        "--role",
        "reviewer",
    ]))
    .await
    .expect("joined");
    assert!(ok, "{out}");
    let link = out
        .lines()
        .find(|l| l.starts_with("http://rampart.test/console/enrol/"))
        .unwrap_or_else(|| panic!("link printed: {out}"))
        .trim()
        .to_owned();
    // The printed link enrols against the server on the same database and key.
    let token = link.rsplit('/').next().expect("token");
    let secret = operator_enrol(&app, token).await;
    let c = operator_sign_in(&app, "cli@ops.test", &secret).await;
    assert_eq!(c.get("/api/v1/console/me").await.json()["role"], "reviewer");
    // Refusals: a bad role, the same address twice.
    let (ok, out) = cli(args(&[
        "operator",
        "add",
        "--email",
        "x@ops.test",
        "--role",
        "boss",
    ]))
    .await
    .expect("joined");
    assert!(!ok && out.contains("support, reviewer or admin"), "{out}");
    let (ok, out) = cli(args(&[
        "operator",
        "add",
        "--email",
        "cli@ops.test",
        "--role",
        "admin",
    ]))
    .await
    .expect("joined");
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = cli(args(&["operator", "list"])).await.expect("joined");
    assert!(ok, "{out}");
    assert!(out.contains("cli@ops.test\treviewer\tenrolled"), "{out}");
    let (ok, out) = cli(args(&["operator", "disable", "--email", "cli@ops.test"]))
        .await
        .expect("joined");
    assert!(ok, "{out}");
    // Its live session ends at once.
    assert_eq!(
        c.get("/api/v1/console/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    let (_, out) = cli(args(&["operator", "list"])).await.expect("joined");
    assert!(out.contains("cli@ops.test\treviewer\tdisabled"), "{out}");
}

/// Signs in through the console's sign-in page.
async fn page_sign_in(app: &TestApp, email: &str, secret: &[u8]) -> TestClient {
    app.clock.advance(30 * SECOND);
    let c = app.client();
    let page = c.get("/console/signin").await;
    assert_eq!(page.status, StatusCode::OK);
    let r = c
        .post_form(
            "/console/signin",
            &[
                ("csrf", &csrf_in(&page.body)),
                ("email", email),
                ("password", OPERATOR_PASSWORD),
                ("code", &operator_code(app, secret)),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(c.cookie("rampart_console").is_some());
    c
}

#[tokio::test]
async fn the_console_pages_enrol_sign_in_look_up_and_freeze() {
    let app = spawn_app().await;
    let owner = app.signed_in("pia@example.com").await;
    let uid = owner.get("/api/v1/me").await.json()["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    // Enrolment through the pages: password, then the QR code and the secret, then a code.
    let token = operator_added(&app, "page@ops.test", "reviewer").await;
    let c = app.client();
    let page = c.get(&format!("/console/enrol/{token}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("page@ops.test"));
    let r = c
        .post_form(
            &format!("/console/enrol/{token}"),
            &[
                ("csrf", &csrf_in(&page.body)),
                ("password", OPERATOR_PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("<svg"), "the QR code");
    let at = r
        .body
        .find("data-testid=\"totp-secret\">")
        .expect("secret shown")
        + "data-testid=\"totp-secret\">".len();
    let b32 = r.body[at..].split('<').next().expect("secret").to_owned();
    let secret = totp_rs::Secret::Encoded(b32).to_bytes().expect("base32");
    let r = c
        .post_form(
            &format!("/console/enrol/{token}/confirm"),
            &[
                ("csrf", &csrf_in(&r.body)),
                ("code", &operator_code(&app, &secret)),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // The link is spent.
    assert_eq!(
        c.get(&format!("/console/enrol/{token}")).await.status,
        StatusCode::NOT_FOUND
    );
    let op = page_sign_in(&app, "page@ops.test", &secret).await;
    let r = op.get(&format!("/console/accounts?q={uid}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for section in [
        "lookup-profile",
        "lookup-devices",
        "lookup-signins",
        "lookup-keys",
        "lookup-locks",
        "lookup-recoveries",
        "lookup-audit",
        "console-nav",
    ] {
        assert!(r.body.contains(section), "{section}");
    }
    assert!(r.body.contains("Chain verified"));
    assert!(r.body.contains("console.lookup"));
    assert!(
        !r.body.contains("/console/operators"),
        "no admin links for a reviewer"
    );
    // Freeze with a reason; an empty one is refused; a form without CSRF is refused.
    let csrf = csrf_in(&r.body);
    let path = format!("/console/accounts/{uid}/freeze");
    let r = op.post_form(&path, &[("reason", "x")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "missing csrf field");
    let r = op
        .post_form(&path, &[("csrf", "forged"), ("reason", "x")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = op
        .post_form(&path, &[("csrf", &csrf), ("reason", " ")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(owner.get("/api/v1/me").await.status, StatusCode::OK);
    let r = op
        .post_form(
            &path,
            &[
                ("csrf", &csrf),
                ("reason", "Phishing report from the owner's bank"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        owner.get("/api/v1/me").await.json()["error"]["code"],
        "account_frozen"
    );
    let r = op
        .get(&format!("/console/accounts?q={uid}&notice=frozen"))
        .await;
    assert!(
        r.body
            .contains("Phishing report from the owner&#x27;s bank")
            || r.body.contains("Phishing report from the owner&#39;s bank"),
        "{}",
        r.body
    );
    // Sign out.
    let csrf = csrf_in(&r.body);
    let r = op.post_form("/console/signout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = op.get("/console/accounts").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn console_pages_and_owner_pages_each_refuse_the_other_cookie() {
    let app = spawn_app().await;
    let owner = app.signed_in("quinn@example.com").await;
    assert_eq!(owner.get("/security").await.status, StatusCode::OK);
    let r = owner.get("/console/accounts").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.headers["location"]
        .to_str()
        .expect("ascii")
        .starts_with("/console/signin"));
    let op = operator_signed_in(&app, "admin").await;
    assert_eq!(op.get("/console/accounts").await.status, StatusCode::OK);
    let r = op.get("/security").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.headers["location"]
        .to_str()
        .expect("ascii")
        .starts_with("/signin"));
    // A console form's token is not an owner form's token, nor the other way round.
    let console_page = op.get("/console/operators").await;
    assert_eq!(console_page.status, StatusCode::OK, "{}", console_page.body);
    let owner_csrf = csrf_in(&owner.get("/security").await.body);
    let r = op
        .post_form(
            "/console/operators",
            &[
                ("csrf", &owner_csrf),
                ("email", "z@ops.test"),
                ("role", "support"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Admin pages: add shows the link once; settings are read-only.
    let r = op
        .post_form(
            "/console/operators",
            &[
                ("csrf", &csrf_in(&console_page.body)),
                ("email", "z@ops.test"),
                ("role", "support"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("http://rampart.test/console/enrol/"));
    let r = op.get("/console/settings").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("session_idle_minutes") && r.body.contains("Read-only"));
    // A support operator gets no admin page.
    let support = operator_signed_in(&app, "support").await;
    assert_eq!(
        support.get("/console/operators").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        support.get("/console/settings").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn console_sign_in_is_throttled_per_address() {
    let app = spawn_app().await;
    let op = operator_signed_in_full(&app, "support").await;
    let c = app.client();
    let mut throttled = None;
    for _ in 0..12 {
        let r = c
            .post(
                "/api/v1/console/sessions",
                json!({"email": op.email, "password": "Wrong-but-long-enough-1", "code": "123456"}),
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(r);
            break;
        }
        assert_eq!(error_code(&r), "invalid_credentials");
    }
    let r = throttled.expect("throttled after a few wrong tries");
    assert_eq!(error_code(&r), "too_many_attempts");
    assert!(r.headers.get("retry-after").is_some());
    // Even the right password and code wait until the delay is over, and the code is
    // not spent by the refused try.
    let r = c
        .post(
            "/api/v1/console/sessions",
            json!({"email": op.email, "password": OPERATOR_PASSWORD, "code": operator_code(&app, &op.secret)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    app.clock.advance(20 * MINUTE);
    let c2 = operator_sign_in(&app, &op.email, &op.secret).await;
    assert_eq!(c2.get("/api/v1/console/me").await.status, StatusCode::OK);
}
