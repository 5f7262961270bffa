//! An attacker must never lock the owner out: second-factor guessing is throttled per
//! account for unknown browsers, per known device and per live session, and the alert
//! mails it causes are limited to one an hour. Registration is throttled per address and
//! per IP, and the confirmation endpoint answers alike for every address.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use rampart::clock::{DAY, HOUR, MINUTE, SECOND};
use rampart::domain::totp;

const WRONG_SIGNIN_CODE: &str = "A wrong sign-in code was entered";
const PASSWORD_KNOWN: &str = "Someone has your password";
const WRONG_SESSION_CODE: &str = "A wrong confirmation code was entered";

/// Requests from this client appear to come from `ip` (the app trusts 127.0.0.1 as proxy).
fn from_ip(c: &TestClient, ip: &str) {
    c.header("x-forwarded-for", ip);
}

async fn spawn_behind_proxy() -> TestApp {
    spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")]).await
}

/// Turns on the authenticator app (after the password-and-mailed-code step-up that a
/// first factor needs); returns its raw secret.
async fn enrol_totp(app: &TestApp, c: &TestClient, email: &str) -> Vec<u8> {
    app.step_up_by_email(c, email).await;
    let r = c.post("/api/v1/me/totp", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let b32 = r.json()["secret"].as_str().expect("secret").to_owned();
    let secret = totp_rs::Secret::Encoded(b32).to_bytes().expect("base32");
    let r = c
        .post(
            "/api/v1/me/totp/confirm",
            json!({ "code": code_at(app, &secret, 0) }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    secret
}

fn code_at(app: &TestApp, secret: &[u8], offset: i64) -> String {
    totp::code_for_step(secret, totp::step_of(app.clock.now_ms()) + offset, 6).expect("code")
}

/// A six-digit code that is none of the codes the server would accept now.
fn wrong_code(app: &TestApp, secret: &[u8]) -> String {
    let valid: Vec<String> = (-1..=1).map(|o| code_at(app, secret, o)).collect();
    (0..10u32)
        .map(|d| format!("{d}{d}{d}{d}{d}{d}"))
        .find(|c| !valid.contains(c))
        .expect("a wrong code")
}

async fn password_step(c: &TestClient, email: &str) -> Value {
    let r = c
        .post(
            "/api/v1/sessions",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["status"], "second_factor_required", "{}", r.body);
    r.json()
}

fn retry_after(r: &Answer) -> i64 {
    r.headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("Retry-After on {}", r.body))
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds")
}

async fn count_mails(app: &TestApp, to: &str, subjects: &[&str]) -> usize {
    app.mails_to(to)
        .await
        .iter()
        .filter(|m| subjects.iter().any(|s| m.subject.contains(s)))
        .count()
}

async fn audit_actions(app: &TestApp, email: &str) -> Vec<String> {
    let account = app
        .store()
        .account_by_email(email)
        .await
        .expect("read")
        .expect("account");
    app.store()
        .audit_for_account(&account.id, 1000)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[tokio::test]
async fn wrong_codes_with_a_stolen_password_never_lock_the_owner_out() {
    let app = spawn_behind_proxy().await;
    let email = "olga@example.com";
    let owner = app.signed_in(email).await;
    let secret = enrol_totp(&app, &owner, email).await;

    // The attacker has the password, not the authenticator, and sends a wrong code on a
    // fresh challenge again and again, waiting out every delay.
    let attacker = app.client_with_ua(IPHONE);
    from_ip(&attacker, "203.0.113.66");
    let (mut wrong, mut throttled) = (0, 0);
    while wrong < 12 {
        let ch = password_step(&attacker, email).await["challenge"].clone();
        let r = attacker
            .post(
                "/api/v1/sessions/second-factor",
                json!({"challenge": ch, "code": wrong_code(&app, &secret)}),
            )
            .await;
        match r.status {
            StatusCode::BAD_REQUEST => {
                assert_eq!(r.code(), "invalid_code");
                wrong += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(r.code(), "too_many_attempts");
                throttled += 1;
                app.clock.advance(retry_after(&r) * SECOND);
            }
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    assert!(throttled >= 6, "the attacker waited after the free tries");

    // Right now the attacker is delayed, and told for how long.
    let ch = password_step(&attacker, email).await["challenge"].clone();
    let r = attacker
        .post(
            "/api/v1/sessions/second-factor",
            json!({"challenge": ch, "code": wrong_code(&app, &secret)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.code(), "too_many_attempts");
    assert!(
        retry_after(&r) >= 60,
        "12 wrong codes cost minutes: {}",
        r.body
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .expect("message")
        .contains("Try again in"));

    // The owner's live session steps up with a right code at once.
    app.clock.advance(30 * SECOND);
    let r = owner
        .post(
            "/api/v1/me/step-up",
            json!({ "code": code_at(&app, &secret, 0) }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "step-up: {}", r.body);

    // And the owner signs in from a known device (the same browser) with the right code.
    app.clock.advance(30 * SECOND);
    let ch = password_step(&owner, email).await["challenge"].clone();
    let r = owner
        .post(
            "/api/v1/sessions/second-factor",
            json!({"challenge": ch, "code": code_at(&app, &secret, 0)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "known-device sign-in: {}", r.body);
    assert_eq!(r.json()["status"], "signed_in");
    assert_eq!(owner.get("/api/v1/me").await.status, StatusCode::OK);

    // The owner sees what happened: wrong codes and refusals, each in the history and audit.
    let logins = owner.get("/api/v1/me/logins").await.json();
    let reasons: Vec<&str> = logins["logins"]
        .as_array()
        .expect("list")
        .iter()
        .map(|l| l["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == "wrong_second_factor")
            .count(),
        12
    );
    assert!(reasons.contains(&"throttled"));
    let actions = audit_actions(&app, email).await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "signin.second_factor_throttled")
            .count(),
        throttled + 1
    );

    // One alert for all of it, even after the unfinished challenges are swept.
    assert_eq!(
        count_mails(&app, email, &[WRONG_SIGNIN_CODE, PASSWORD_KNOWN]).await,
        1
    );
    app.clock.advance(3 * MINUTE);
    rampart::jobs::timed::step(&app.state.services)
        .await
        .expect("timed step");
    assert_eq!(
        count_mails(&app, email, &[WRONG_SIGNIN_CODE, PASSWORD_KNOWN]).await,
        1,
        "at most one 'someone has your password' mail an hour"
    );

    // An hour later the owner may be told again.
    app.clock.advance(HOUR);
    let ch = password_step(&attacker, email).await["challenge"].clone();
    let r = attacker
        .post(
            "/api/v1/sessions/second-factor",
            json!({"challenge": ch, "code": wrong_code(&app, &secret)}),
        )
        .await;
    assert_eq!(r.code(), "invalid_code", "the window has passed");
    assert_eq!(
        count_mails(&app, email, &[WRONG_SIGNIN_CODE, PASSWORD_KNOWN]).await,
        2
    );
}

#[tokio::test]
async fn guessing_in_a_stolen_session_slows_only_that_session() {
    let app = spawn_app().await;
    let email = "pia@example.com";
    let laptop = app.signed_in(email).await;
    let secret = enrol_totp(&app, &laptop, email).await;

    // A second session of the owner, on the phone, whose cookie the thief copies.
    app.clock.advance(30 * SECOND);
    let phone = app.client_with_ua(IPHONE);
    let ch = password_step(&phone, email).await["challenge"].clone();
    let r = phone
        .post(
            "/api/v1/sessions/second-factor",
            json!({"challenge": ch, "code": code_at(&app, &secret, 0)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.confirm_new_device(email).await;
    let thief = app.client_with_ua(IPHONE);
    thief.set_cookie(
        "rampart_session",
        &phone.cookie("rampart_session").expect("session cookie"),
    );
    assert_eq!(thief.get("/api/v1/me").await.status, StatusCode::OK);

    let mut last = None;
    for _ in 0..10 {
        let r = thief
            .post(
                "/api/v1/me/step-up",
                json!({ "code": wrong_code(&app, &secret) }),
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            last = Some(r);
            break;
        }
        assert_eq!(r.code(), "invalid_code");
    }
    let r = last.expect("the stolen session is throttled after the free tries");
    assert_eq!(r.code(), "too_many_attempts");
    assert!(retry_after(&r) >= 1);
    assert!(audit_actions(&app, email)
        .await
        .contains(&"step_up.throttled".to_owned()));

    // The owner's other session and the owner's sign-in are untouched.
    app.clock.advance(30 * SECOND);
    let r = laptop
        .post(
            "/api/v1/me/step-up",
            json!({ "code": code_at(&app, &secret, 0) }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.clock.advance(30 * SECOND);
    let ch = password_step(&laptop, email).await["challenge"].clone();
    let r = laptop
        .post(
            "/api/v1/sessions/second-factor",
            json!({"challenge": ch, "code": code_at(&app, &secret, 0)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Five wrong codes, one mail.
    assert_eq!(count_mails(&app, email, &[WRONG_SESSION_CODE]).await, 1);
}

async fn register(c: &TestClient, email: &str) -> Answer {
    c.post(
        "/api/v1/accounts",
        json!({"email": email, "password": PASSWORD}),
    )
    .await
}

/// A client of its own at its own address.
fn client_at(app: &TestApp, ip: &str) -> TestClient {
    let c = app.client();
    from_ip(&c, ip);
    c
}

#[tokio::test]
async fn many_registrations_from_one_address_are_throttled() {
    let app = spawn_behind_proxy().await;
    app.register_confirmed(&client_at(&app, "192.0.2.1"), "taken@example.com")
        .await;

    let bot = client_at(&app, "198.51.100.20");
    for i in 0..10 {
        let r = register(&bot, &format!("new{i}@example.com")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{i}: {}", r.body);
    }
    // The eleventh waits, whether the address is new or taken: the same answer.
    let fresh = register(&bot, "new10@example.com").await;
    let taken = register(&bot, "taken@example.com").await;
    assert_eq!(
        fresh.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        fresh.body
    );
    assert_eq!(fresh.code(), "too_many_attempts");
    assert!(retry_after(&fresh) >= 1);
    assert_eq!(
        (taken.status, &taken.body, retry_after(&taken)),
        (fresh.status, &fresh.body, retry_after(&fresh)),
        "a throttled registration reveals nothing about the address"
    );
    assert!(
        app.store()
            .account_by_email("new10@example.com")
            .await
            .expect("read")
            .is_none(),
        "refused before anything was done"
    );
    assert_eq!(
        count_mails(&app, "taken@example.com", &["tried to register"]).await,
        0
    );

    // Someone else is not slowed down; the bot is, after waiting, let through again.
    let r = register(&client_at(&app, "203.0.113.5"), "new10@example.com").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    app.clock.advance(retry_after(&fresh) * SECOND);
    let r = register(&bot, "new11@example.com").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
}

#[tokio::test]
async fn one_address_is_throttled_alike_whether_or_not_it_has_an_account() {
    let app = spawn_behind_proxy().await;
    app.register_confirmed(&client_at(&app, "192.0.2.1"), "kim@example.com")
        .await;
    app.clock.advance(HOUR); // the owner's own registration is forgotten

    let mut answers: Vec<(String, Vec<StatusCode>)> = Vec::new();
    for email in ["kim@example.com", "nobody-yet@example.com"] {
        let mut statuses = Vec::new();
        for i in 0..6 {
            // A different source every time: only the address counter can refuse.
            let r = register(&client_at(&app, &format!("198.51.100.{}", 100 + i)), email).await;
            statuses.push(r.status);
        }
        answers.push((email.to_owned(), statuses));
    }
    let mut expected = vec![StatusCode::ACCEPTED; 5];
    expected.push(StatusCode::TOO_MANY_REQUESTS);
    for (email, statuses) in &answers {
        assert_eq!(statuses, &expected, "{email}");
    }
    assert!(audit_actions(&app, "kim@example.com")
        .await
        .contains(&"account.registration_throttled".to_owned()));
}

#[tokio::test]
async fn an_owner_hears_of_repeated_registrations_once_a_day() {
    let app = spawn_behind_proxy().await;
    let email = "lou@example.com";
    app.register_confirmed(&client_at(&app, "192.0.2.1"), email)
        .await;
    let stranger = client_at(&app, "203.0.113.77");
    for _ in 0..2 {
        assert_eq!(
            register(&stranger, email).await.status,
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(count_mails(&app, email, &["tried to register"]).await, 1);
    app.clock.advance(HOUR);
    for _ in 0..2 {
        assert_eq!(
            register(&stranger, email).await.status,
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(
        count_mails(&app, email, &["tried to register"]).await,
        1,
        "still the same day"
    );
    app.clock.advance(DAY);
    assert_eq!(
        register(&stranger, email).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(count_mails(&app, email, &["tried to register"]).await, 2);
    // Every attempt is in the owner's audit trail, mailed or not.
    let repeated = audit_actions(&app, email)
        .await
        .into_iter()
        .filter(|a| a == "account.registration_repeated")
        .count();
    assert_eq!(repeated, 5);
}

#[tokio::test]
async fn confirming_answers_alike_for_unknown_confirmed_and_waiting_addresses() {
    let app = spawn_app().await;
    app.register_confirmed(&app.client(), "done@example.com")
        .await;
    assert_eq!(
        register(&app.client(), "waiting@example.com").await.status,
        StatusCode::ACCEPTED
    );
    let real = app.confirmation_code("waiting@example.com").await;
    let wrong = if real == "000000" { "000001" } else { "000000" };
    let addresses = [
        "nobody@example.com",
        "done@example.com",
        "waiting@example.com",
    ];
    let c = app.client();
    let mut transcripts = Vec::new();
    for email in addresses {
        let mut answers = Vec::new();
        for _ in 0..6 {
            let r = c
                .post(
                    "/api/v1/accounts/confirm",
                    json!({"email": email, "code": wrong}),
                )
                .await;
            answers.push((
                r.status,
                r.body.clone(),
                r.headers.get("retry-after").cloned(),
            ));
        }
        // A new code gives every address its tries back, known or not.
        let r = c
            .post("/api/v1/accounts/confirm/resend", json!({"email": email}))
            .await;
        answers.push((r.status, r.body.clone(), None));
        let r = c
            .post(
                "/api/v1/accounts/confirm",
                json!({"email": email, "code": wrong}),
            )
            .await;
        answers.push((r.status, r.body.clone(), None));
        transcripts.push(answers);
    }
    assert_eq!(transcripts[0], transcripts[1], "unknown vs confirmed");
    assert_eq!(transcripts[0], transcripts[2], "unknown vs waiting");
    let first = &transcripts[0];
    assert_eq!(first[0].0, StatusCode::BAD_REQUEST);
    assert!(first[0].1.contains("4 tries left"), "{}", first[0].1);
    assert!(first[3].1.contains("1 try left"), "{}", first[3].1);
    assert_eq!(first[5].0, StatusCode::TOO_MANY_REQUESTS, "{}", first[5].1);
    assert_eq!(first[7].0, StatusCode::BAD_REQUEST);
    assert!(first[7].1.contains("4 tries left"), "{}", first[7].1);

    // The waiting owner's new code still works.
    let fresh = app.confirmation_code("waiting@example.com").await;
    let r = c
        .post(
            "/api/v1/accounts/confirm",
            json!({"email": "waiting@example.com", "code": fresh}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
