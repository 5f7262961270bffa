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
    let _ = (HOUR, MINUTE, error_code);
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
