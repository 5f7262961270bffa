use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use rampart::clock::{HOUR, MINUTE, SECOND};
use rampart::domain::totp;

/// Turns on the authenticator app; returns the raw secret and the backup codes.
async fn enrol_totp(app: &TestApp, c: &TestClient) -> (Vec<u8>, Vec<String>) {
    let r = c.post("/api/v1/me/totp", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let body = r.json();
    let b32 = body["secret"].as_str().expect("secret").to_owned();
    assert!(body["otpauth_uri"]
        .as_str()
        .expect("uri")
        .starts_with("otpauth://totp/Rampart:"));
    let secret = totp_rs::Secret::Encoded(b32).to_bytes().expect("base32");
    let code = current_code(app, &secret, 0);
    let r = c
        .post("/api/v1/me/totp/confirm", json!({ "code": code }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let codes: Vec<String> = r.json()["backup_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|v| v.as_str().expect("str").to_owned())
        .collect();
    (secret, codes)
}

fn current_code(app: &TestApp, secret: &[u8], step_offset: i64) -> String {
    totp::code_for_step(secret, totp::step_of(app.clock.now_ms()) + step_offset, 6).expect("code")
}

async fn totp_enabled(app: &TestApp, email: &str) -> bool {
    let account = app
        .store()
        .account_by_email(email)
        .await
        .expect("read")
        .expect("account");
    app.state
        .second_factors
        .factors(&account.id)
        .await
        .expect("factors")
        .totp
}

/// The newest mail to `to` whose subject contains `subject`.
async fn mail_with(app: &TestApp, to: &str, subject: &str) -> rampart::store::OutboxMail {
    let mails = app.mails_to(to).await;
    mails
        .into_iter()
        .rev()
        .find(|m| m.subject.contains(subject))
        .unwrap_or_else(|| panic!("no mail about {subject:?} to {to}"))
}

async fn password_step(c: &TestClient, email: &str) -> Value {
    let r = c
        .post(
            "/api/v1/sessions",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

#[tokio::test]
async fn authenticator_app_makes_a_password_alone_worthless() {
    let app = spawn_app().await;
    let c = app.signed_in("ana@example.com").await;
    app.step_up_by_email(&c, "ana@example.com").await;
    let (secret, codes) = enrol_totp(&app, &c).await;
    assert_eq!(codes.len(), 10);
    let mail = mail_with(&app, "ana@example.com", "A second factor was added").await;
    assert!(mail.body_text.contains("/freeze/"), "{}", mail.body_text);

    // The password alone opens no session.
    let other = app.client_with_ua(IPHONE);
    let step = password_step(&other, "ana@example.com").await;
    assert_eq!(step["status"], "second_factor_required");
    assert!(other.cookie("rampart_session").is_none());
    let challenge = step["challenge"].as_str().expect("challenge").to_owned();
    assert_eq!(step["methods"], json!(["totp", "backup_code"]));

    // A code from the next 30-second step (clock skew) completes it.
    app.clock.advance(30 * SECOND);
    let code = current_code(&app, &secret, 1);
    let r = other
        .post(
            "/api/v1/sessions/second-factor",
            json!({"challenge": challenge, "code": code}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["status"],
        "device_confirmation_required",
        "a second factor does not replace the new-device check"
    );
    assert_eq!(
        other.get("/api/v1/me").await.code(),
        "device_confirmation_required"
    );
    app.confirm_new_device("ana@example.com").await;
    assert_eq!(other.get("/api/v1/me").await.status, StatusCode::OK);
    let logins = other.get("/api/v1/me/logins").await.json();
    assert_eq!(logins["logins"][0]["method"], "password+totp");

    // The same code is refused when replayed, and the challenge cannot be reused.
    let r = other
        .post(
            "/api/v1/sessions/second-factor",
            json!({"challenge": challenge, "code": code}),
        )
        .await;
    assert_eq!(r.code(), "challenge_expired");
    let again = password_step(&app.client(), "ana@example.com").await;
    let r = app
        .client()
        .post(
            "/api/v1/sessions/second-factor",
            json!({"challenge": again["challenge"], "code": code}),
        )
        .await;
    assert_eq!(
        r.code(),
        "invalid_code",
        "a code accepted once is refused in its window"
    );

    // A backup code works exactly once.
    let b = app.client();
    let ch = password_step(&b, "ana@example.com").await["challenge"].clone();
    let r = b
        .post(
            "/api/v1/sessions/second-factor",
            json!({"challenge": ch, "code": codes[0].to_uppercase()}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "backup codes are case-insensitive: {}",
        r.body
    );
    let ch = password_step(&b, "ana@example.com").await["challenge"].clone();
    let r = b
        .post(
            "/api/v1/sessions/second-factor",
            json!({"challenge": ch, "code": codes[0]}),
        )
        .await;
    assert_eq!(r.code(), "invalid_code");
    let overview = c.get("/api/v1/me/second-factors").await.json();
    assert_eq!(overview["backup_codes_left"], 9);
    assert_eq!(overview["totp_enabled"], true);
}

#[tokio::test]
async fn wrong_codes_burn_the_challenge_and_warn_the_owner() {
    let app = spawn_app().await;
    let c = app.signed_in("ben@example.com").await;
    app.step_up_by_email(&c, "ben@example.com").await;
    enrol_totp(&app, &c).await;
    app.clock.advance(SECOND);
    let attacker = app.client_with_ua(IPHONE);
    let ch = password_step(&attacker, "ben@example.com").await["challenge"].clone();
    for left in (0..5).rev() {
        let r = attacker
            .post(
                "/api/v1/sessions/second-factor",
                json!({"challenge": ch, "code": "000000"}),
            )
            .await;
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
    let r = attacker
        .post(
            "/api/v1/sessions/second-factor",
            json!({"challenge": ch, "code": "000000"}),
        )
        .await;
    assert_eq!(r.code(), "challenge_expired");
    let mails = app.mails_to("ben@example.com").await;
    assert!(mails
        .iter()
        .any(|m| m.subject.contains("A wrong sign-in code was entered")));
    let logins = c.get("/api/v1/me/logins").await.json();
    assert_eq!(logins["logins"][0]["reason"], "wrong_second_factor");
}

#[tokio::test]
async fn a_right_password_left_unfinished_alerts_the_owner_after_three_minutes() {
    let app = spawn_app().await;
    let c = app.signed_in("cleo@example.com").await;
    app.step_up_by_email(&c, "cleo@example.com").await;
    enrol_totp(&app, &c).await;
    password_step(&app.client_with_ua(IPHONE), "cleo@example.com").await;
    app.clock.advance(2 * MINUTE);
    assert_eq!(
        rampart::jobs::timed::step(&app.state.services)
            .await
            .expect("step")
            .signin_alerts,
        0
    );
    app.clock.advance(MINUTE);
    assert_eq!(
        rampart::jobs::timed::step(&app.state.services)
            .await
            .expect("step")
            .signin_alerts,
        1
    );
    assert_eq!(
        rampart::jobs::timed::step(&app.state.services)
            .await
            .expect("step")
            .signin_alerts,
        0,
        "once"
    );
    let mails = app.mails_to("cleo@example.com").await;
    let alert = mails
        .iter()
        .find(|m| m.subject.contains("Someone has your password"))
        .expect("alert");
    assert!(
        alert.body_text.contains("Mobile Safari") && alert.body_text.contains("127.0.0.1"),
        "{}",
        alert.body_text
    );

    // A completed sign-in sends no alert.
    let d = app.client();
    let ch = password_step(&d, "cleo@example.com").await["challenge"].clone();
    let r = d
        .post(
            "/api/v1/sessions/second-factor",
            json!({"challenge": ch, "code": "xxxxx-xxxxx"}),
        )
        .await;
    assert_eq!(r.code(), "invalid_code");
}

#[tokio::test]
async fn sensitive_actions_need_a_fresh_second_factor() {
    let app = spawn_app().await;
    let c = app.signed_in("dan@example.com").await;
    app.step_up_by_email(&c, "dan@example.com").await;
    let (secret, codes) = enrol_totp(&app, &c).await;
    // Enrolment itself proved the factor: a moment later sensitive actions are allowed.
    assert_eq!(
        c.post("/api/v1/me/backup-codes", json!({})).await.status,
        StatusCode::OK
    );
    app.clock.advance(5 * MINUTE);
    let r = c.post("/api/v1/me/backup-codes", json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "step_up_required");
    let r = c
        .post(
            "/api/v1/me/passkeys/register/start",
            json!({"name": "attacker key"}),
        )
        .await;
    assert_eq!(
        r.code(),
        "step_up_required",
        "no backdoor passkey from a stolen session"
    );
    assert_eq!(
        c.post("/api/v1/me/step-up", json!({"code": "123456"}))
            .await
            .code(),
        "invalid_code"
    );
    let code = current_code(&app, &secret, 0);
    let r = c.post("/api/v1/me/step-up", json!({ "code": code })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let fresh = c.post("/api/v1/me/backup-codes", json!({})).await.json();
    let fresh: Vec<String> = fresh["backup_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|v| v.as_str().expect("s").to_owned())
        .collect();
    assert_eq!(fresh.len(), 10);
    // Old codes are dead, new ones work.
    app.clock.advance(6 * MINUTE);
    assert_eq!(
        c.post("/api/v1/me/step-up", json!({"code": codes[1]}))
            .await
            .code(),
        "invalid_code"
    );
    assert_eq!(
        c.post("/api/v1/me/step-up", json!({"code": fresh[0]}))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn turning_the_authenticator_off_takes_48_hours_and_can_be_cancelled() {
    let app = spawn_app().await;
    let c = app.signed_in("eva@example.com").await;
    app.step_up_by_email(&c, "eva@example.com").await;
    enrol_totp(&app, &c).await;
    let r = c.delete("/api/v1/me/totp").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let change = r.json();
    assert_eq!(change["status"], "scheduled");
    assert_eq!(
        change["effective_at"].as_i64().expect("ms") - app.clock.now_ms(),
        48 * HOUR
    );
    let mail = mail_with(&app, "eva@example.com", "takes effect in 48 hours").await;
    let link = mail
        .body_text
        .lines()
        .find(|l| l.contains("/cancel/"))
        .expect("cancel link")
        .trim()
        .to_owned();

    app.clock.advance(48 * HOUR - 1);
    rampart::jobs::timed::step(&app.state.services)
        .await
        .expect("step");
    assert!(
        totp_enabled(&app, "eva@example.com").await,
        "not a moment early"
    );

    // The link from the mail cancels without signing in; GET only shows a button.
    let path = link
        .strip_prefix("http://rampart.test")
        .expect("public url");
    let stranger = app.client();
    let page = stranger.get(path).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = csrf_in(&page.body);
    let account = app
        .store()
        .account_by_email("eva@example.com")
        .await
        .expect("read")
        .expect("account");
    assert_eq!(
        app.store()
            .pending_changes(&account.id)
            .await
            .expect("read")
            .len(),
        1
    );
    let r = stranger.post_form(path, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("cancelled"));
    let r = stranger.post_form(path, &[("csrf", &csrf)]).await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "a used link explains itself"
    );
    assert!(r.body.contains("already cancelled"));
    app.clock.advance(HOUR);
    rampart::jobs::timed::step(&app.state.services)
        .await
        .expect("step");
    assert!(
        totp_enabled(&app, "eva@example.com").await,
        "cancelled: nothing happened"
    );
}

#[tokio::test]
async fn weakening_takes_effect_after_48_hours_unless_cancelled_from_the_security_center() {
    let app = spawn_app().await;
    let c = app.signed_in("fox@example.com").await;
    app.step_up_by_email(&c, "fox@example.com").await;
    let (secret, _) = enrol_totp(&app, &c).await;
    let id = c.delete("/api/v1/me/totp").await.json()["change_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        c.delete(&format!("/api/v1/me/pending-changes/{id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.delete(&format!("/api/v1/me/pending-changes/{id}"))
            .await
            .code(),
        "not_found"
    );

    app.clock.advance(MINUTE);
    let r = c.delete("/api/v1/me/totp").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    app.clock.advance(48 * HOUR);
    let report = rampart::jobs::timed::step(&app.state.services)
        .await
        .expect("step");
    assert_eq!(report.changes_applied, 1);
    // The password alone signs in again (a new device: confirmed by mail).
    let fresh = app.client();
    assert_eq!(
        password_step(&fresh, "fox@example.com").await["status"],
        "device_confirmation_required"
    );
    app.confirm_new_device("fox@example.com").await;
    let overview = fresh.get("/api/v1/me/second-factors").await.json();
    assert_eq!(overview["totp_enabled"], false);
    assert_eq!(
        overview["backup_codes_left"], 0,
        "no factor left, no backup codes"
    );
    assert!(app
        .mails_to("fox@example.com")
        .await
        .iter()
        .any(|m| m.subject.contains("now in effect")));
    // The old secret is gone for good.
    assert_eq!(
        fresh
            .post(
                "/api/v1/me/step-up",
                json!({"code": current_code(&app, &secret, 0)})
            )
            .await
            .code(),
        "no_second_factor"
    );
}

#[tokio::test]
async fn a_damaged_pending_change_is_not_applied_and_holds_up_nobody_else() {
    let app = spawn_app().await;
    // Two owners ask to turn their authenticator off; one row is then damaged.
    let mut ids = Vec::new();
    for email in ["hal@example.com", "ida@example.com"] {
        let c = app.signed_in(email).await;
        app.step_up_by_email(&c, email).await;
        enrol_totp(&app, &c).await;
        let r = c.delete("/api/v1/me/totp").await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        ids.push(r.json()["change_id"].as_str().expect("id").to_owned());
    }
    let damaged = &ids[0];
    raw_sql(
        &app.database_url,
        &format!("UPDATE pending_changes SET kind = 'bogus' WHERE id = '{damaged}'"),
    )
    .await;
    // Ida also leaves a right password without its second factor.
    password_step(&app.client_with_ua(IPHONE), "ida@example.com").await;
    app.clock.advance(48 * HOUR);

    let report = rampart::jobs::timed::step(&app.state.services)
        .await
        .expect("the other work goes on");
    assert_eq!(
        report.changes_applied, 1,
        "Ida's change, not the damaged one"
    );
    assert_eq!(report.signin_alerts, 1, "Ida is still alerted");
    assert!(app
        .mails_to("ida@example.com")
        .await
        .iter()
        .any(|m| m.subject.contains("now in effect")));
    // Hal's authenticator stays on: a change that cannot be read is never applied.
    let hal = app.client();
    assert_eq!(
        password_step(&hal, "hal@example.com").await["status"],
        "second_factor_required"
    );
}

#[tokio::test]
async fn password_change_needs_everything_and_locks_withdrawals() {
    let app = spawn_app().await;
    let c = app.signed_in("gil@example.com").await;
    let elsewhere = app.signed_in_again("gil@example.com").await;
    let change = |current: &str, new: &str, code: &str| json!({"current_password": current, "new_password": new, "email_code": code});

    assert_eq!(
        c.put(
            "/api/v1/me/password",
            change(PASSWORD, "Fresh-garden-lamp-2031", "123456")
        )
        .await
        .code(),
        "invalid_code",
        "no code was mailed yet"
    );
    assert_eq!(
        c.post("/api/v1/me/password/code", json!({})).await.status,
        StatusCode::ACCEPTED
    );
    let mail = mail_with(&app, "gil@example.com", "Your code to change your password").await;
    let at = mail.body_text.find("code is ").expect("code") + 8;
    let code = mail.body_text[at..at + 6].to_owned();

    let r = c
        .put(
            "/api/v1/me/password",
            change("Wrong-password-entirely", "Fresh-garden-lamp-2031", &code),
        )
        .await;
    assert_eq!(r.code(), "wrong_password");
    let r = c
        .put("/api/v1/me/password", change(PASSWORD, PASSWORD, &code))
        .await;
    assert_eq!(r.code(), "password_reused");
    let r = c
        .put("/api/v1/me/password", change(PASSWORD, "short", &code))
        .await;
    assert_eq!(r.code(), "weak_password");
    let r = c
        .put(
            "/api/v1/me/password",
            change(PASSWORD, "Fresh-garden-lamp-2031", &code),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["other_sessions_ended"], 1);

    assert_eq!(
        c.get("/api/v1/me").await.status,
        StatusCode::OK,
        "this session goes on"
    );
    assert_eq!(
        elsewhere.get("/api/v1/me").await.status,
        StatusCode::UNAUTHORIZED,
        "every other session ended"
    );
    let locks = c.get("/api/v1/me/second-factors").await.json()["withdrawal_locks"].clone();
    assert_eq!(locks[0]["reason"], "password_changed");
    assert_eq!(
        locks[0]["until"].as_i64().expect("ms") - app.clock.now_ms(),
        24 * HOUR
    );
    let r = app
        .client()
        .post(
            "/api/v1/sessions",
            json!({"email": "gil@example.com", "password": "Fresh-garden-lamp-2031"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(app
        .mails_to("gil@example.com")
        .await
        .iter()
        .any(|m| m.subject.contains("Your password was changed")));
    // The code was spent.
    assert_eq!(
        c.put(
            "/api/v1/me/password",
            change("Fresh-garden-lamp-2031", "Another-new-phrase-77", &code)
        )
        .await
        .code(),
        "invalid_code"
    );
    app.clock.advance(24 * HOUR);
    let fresh = app.client();
    fresh
        .post(
            "/api/v1/sessions",
            json!({"email": "gil@example.com", "password": "Fresh-garden-lamp-2031"}),
        )
        .await;
    app.confirm_new_device("gil@example.com").await;
    assert!(
        fresh.get("/api/v1/me/second-factors").await.json()["withdrawal_locks"]
            .as_array()
            .expect("list")
            .is_empty(),
        "the lock ends after 24 h"
    );
}

#[tokio::test]
async fn password_change_with_a_second_factor_needs_step_up() {
    let app = spawn_app().await;
    let c = app.signed_in("hal@example.com").await;
    app.step_up_by_email(&c, "hal@example.com").await;
    enrol_totp(&app, &c).await;
    app.clock.advance(6 * MINUTE);
    let r = c.put("/api/v1/me/password", json!({"current_password": PASSWORD, "new_password": "Fresh-garden-lamp-2031", "email_code": "000000"})).await;
    assert_eq!(r.code(), "step_up_required");
}

#[tokio::test]
async fn a_backup_code_resets_the_authenticator_and_locks_withdrawals_48h() {
    let app = spawn_app().await;
    let c = app.signed_in("ida@example.com").await;
    app.step_up_by_email(&c, "ida@example.com").await;
    let (_, codes) = enrol_totp(&app, &c).await;
    assert_eq!(
        c.post(
            "/api/v1/me/totp/reset",
            json!({"backup_code": "aaaaa-bbbbb"})
        )
        .await
        .code(),
        "invalid_code"
    );
    let r = c
        .post("/api/v1/me/totp/reset", json!({"backup_code": codes[3]}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["withdrawals_locked_until"].as_i64().expect("ms") - app.clock.now_ms(),
        48 * HOUR
    );
    let overview = c.get("/api/v1/me/second-factors").await.json();
    assert_eq!(overview["totp_enabled"], false);
    assert_eq!(
        overview["withdrawal_locks"][0]["reason"],
        "second_factor_reset"
    );
    // A new authenticator can be set up at once (the account has no factor left, so once
    // the enrolment's proof is older than 5 minutes the step-up is the password and a
    // mailed code).
    app.clock.advance(5 * MINUTE);
    assert_eq!(
        c.post("/api/v1/me/totp", json!({})).await.code(),
        "step_up_required"
    );
    app.step_up_by_email(&c, "ida@example.com").await;
    enrol_totp(&app, &c).await;
}

#[tokio::test]
async fn recovery_requests_are_recorded_without_revealing_anything() {
    let app = spawn_app().await;
    app.signed_in("jan@example.com").await;
    let c = app.client();
    let wrong = c.post("/api/v1/recovery/authenticator-reset", json!({"email": "jan@example.com", "password": "Not-the-password-9", "reason": "lost phone"})).await;
    let unknown = c
        .post(
            "/api/v1/recovery/authenticator-reset",
            json!({"email": "nobody@example.com", "password": PASSWORD, "reason": "lost phone"}),
        )
        .await;
    let right = c.post("/api/v1/recovery/authenticator-reset", json!({"email": "jan@example.com", "password": PASSWORD, "reason": "lost phone and codes"})).await;
    assert_eq!(wrong.status, StatusCode::ACCEPTED);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body, right.body);
    let mails = app.mails_to("jan@example.com").await;
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.subject.contains("Authenticator reset requested"))
            .count(),
        1
    );
}

#[tokio::test]
async fn passkey_endpoints_refuse_bad_ceremonies_clearly() {
    let app = spawn_app().await;
    let c = app.signed_in("kai@example.com").await;
    app.step_up_by_email(&c, "kai@example.com").await;
    let r = c
        .post("/api/v1/me/passkeys/register/start", json!({"name": "  "}))
        .await;
    assert_eq!(r.code(), "invalid_name");
    let r = c
        .post(
            "/api/v1/me/passkeys/register/start",
            json!({"name": "YubiKey"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let started = r.json();
    let options = &started["options"]["publicKey"];
    assert_eq!(options["rp"]["id"], "rampart.test");
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    let r = c
        .post(
            "/api/v1/me/passkeys/register/finish",
            json!({"ceremony_id": started["ceremony_id"], "credential": {"id": 1}}),
        )
        .await;
    assert_eq!(r.code(), "invalid_credential");
    let r = c
        .post(
            "/api/v1/me/passkeys/register/finish",
            json!({"ceremony_id": "forged", "credential": {}}),
        )
        .await;
    assert!(["invalid_credential", "passkey_failed"].contains(&r.code().as_str()));
    let r = app
        .client()
        .post("/api/v1/sessions/passkey/start", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["options"]["publicKey"]["challenge"].is_string());
    let r = app
        .client()
        .post(
            "/api/v1/sessions/passkey/start",
            json!({"challenge": "made-up"}),
        )
        .await;
    assert_eq!(r.code(), "challenge_expired");
    assert_eq!(
        c.put("/api/v1/me/require-passkey", json!({"enabled": true}))
            .await
            .code(),
        "no_passkey"
    );
    assert_eq!(
        c.delete("/api/v1/me/passkeys/not-mine").await.code(),
        "not_found"
    );
}

#[tokio::test]
async fn totp_secrets_are_encrypted_at_rest() {
    let app = spawn_app().await;
    let c = app.signed_in("lou@example.com").await;
    app.step_up_by_email(&c, "lou@example.com").await;
    let r = c.post("/api/v1/me/totp", json!({})).await;
    let b32 = r.json()["secret"].as_str().expect("secret").to_owned();
    let account = app
        .store()
        .account_by_email("lou@example.com")
        .await
        .expect("read")
        .expect("account");
    let stored = app
        .store()
        .totp(&account.id)
        .await
        .expect("read")
        .expect("row");
    assert!(!stored.secret_enc.contains(&b32));
    let raw = totp_rs::Secret::Encoded(b32).to_bytes().expect("b32");
    assert_eq!(
        app.state
            .secret_box
            .open(&stored.secret_enc, &account.id)
            .expect("opens"),
        raw
    );
}
