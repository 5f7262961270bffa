use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use rampart::clock::MINUTE;

#[tokio::test]
async fn register_confirm_sign_in_and_see_me() {
    let app = spawn_app().await;
    let c = app.client();
    let r = c
        .post(
            "/api/v1/accounts",
            json!({"email": "Alice@Example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.json()["status"], "confirmation_sent");

    let mails = app.mails_to("alice@example.com").await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].subject.contains("Confirm your email"));
    assert!(
        mails[0].body_text.contains("set an anti-phishing code"),
        "no code set yet: the mail says how"
    );
    assert!(mails[0].sent_at.is_some(), "delivered to the local mailbox");

    let code = code_in(&mails[0].body_text);
    let r = c
        .post(
            "/api/v1/accounts/confirm",
            json!({"email": "alice@example.com", "code": code}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = c
        .post(
            "/api/v1/sessions",
            json!({"email": "ALICE@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let uid = r.json()["uid"].as_str().expect("uid").to_owned();
    assert_eq!(uid.len(), 10);

    let me = c.get("/api/v1/me").await;
    assert_eq!(me.status, StatusCode::OK);
    let me = me.json();
    assert_eq!(me["uid"], uid.as_str());
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["email_confirmed"], true);
    assert!(me["anti_phishing_code"].is_null());
}

#[tokio::test]
async fn registering_an_existing_address_answers_the_same_and_tells_the_owner() {
    let app = spawn_app().await;
    let owner = app.signed_in("bob@example.com").await;
    app.clock.advance(MINUTE);
    let stranger = app.client_with_ua(IPHONE);
    let r = stranger
        .post(
            "/api/v1/accounts",
            json!({"email": "bob@example.com", "password": "Another-long-passphrase-77"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.json()["status"], "confirmation_sent");
    let mails = app.mails_to("bob@example.com").await;
    let last = mails.last().expect("mail");
    assert!(
        last.subject.contains("Someone tried to register"),
        "{}",
        last.subject
    );
    assert!(
        last.body_text.contains("Mobile Safari"),
        "the mail says from what device"
    );
    // The owner's password is unchanged and their session still works.
    assert_eq!(owner.get("/api/v1/me").await.status, StatusCode::OK);
    let r = app
        .client()
        .post(
            "/api/v1/sessions",
            json!({"email": "bob@example.com", "password": "Another-long-passphrase-77"}),
        )
        .await;
    assert_eq!(r.code(), "invalid_credentials");
}

#[tokio::test]
async fn wrong_codes_are_counted_and_the_fifth_kills_the_code() {
    let app = spawn_app().await;
    let c = app.client();
    c.post(
        "/api/v1/accounts",
        json!({"email": "carol@example.com", "password": PASSWORD}),
    )
    .await;
    let code = app.confirmation_code("carol@example.com").await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for left in (0..5).rev() {
        let r = c
            .post(
                "/api/v1/accounts/confirm",
                json!({"email": "carol@example.com", "code": wrong}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.code(), "invalid_code");
        if left > 0 {
            assert!(r.json()["error"]["message"]
                .as_str()
                .expect("msg")
                .contains(&format!(
                    "{left} {} left",
                    if left == 1 { "try" } else { "tries" }
                )));
        }
    }
    let r = c
        .post(
            "/api/v1/accounts/confirm",
            json!({"email": "carol@example.com", "code": code}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the right code no longer works"
    );
    assert_eq!(r.code(), "too_many_attempts");

    // A new code (not sooner than a minute after the last) works.
    app.clock.advance(MINUTE);
    let r = c
        .post(
            "/api/v1/accounts/confirm/resend",
            json!({"email": "carol@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let fresh = app.confirmation_code("carol@example.com").await;
    let r = c
        .post(
            "/api/v1/accounts/confirm",
            json!({"email": "carol@example.com", "code": fresh}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn codes_expire_after_ten_minutes() {
    let app = spawn_app().await;
    let c = app.client();
    c.post(
        "/api/v1/accounts",
        json!({"email": "dave@example.com", "password": PASSWORD}),
    )
    .await;
    let code = app.confirmation_code("dave@example.com").await;
    app.clock.advance(10 * MINUTE);
    let r = c
        .post(
            "/api/v1/accounts/confirm",
            json!({"email": "dave@example.com", "code": code}),
        )
        .await;
    assert_eq!(r.code(), "code_expired");
    // Resend works at once because the old code is older than a minute.
    c.post(
        "/api/v1/accounts/confirm/resend",
        json!({"email": "dave@example.com"}),
    )
    .await;
    let fresh = app.confirmation_code("dave@example.com").await;
    app.clock.advance(10 * MINUTE - 1);
    let r = c
        .post(
            "/api/v1/accounts/confirm",
            json!({"email": "dave@example.com", "code": fresh}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "still valid a moment before ten minutes"
    );
}

#[tokio::test]
async fn unknown_addresses_cannot_be_confirmed_or_probed() {
    let app = spawn_app().await;
    let c = app.client();
    let r = c
        .post(
            "/api/v1/accounts/confirm",
            json!({"email": "nobody@example.com", "code": "123456"}),
        )
        .await;
    assert_eq!(r.code(), "invalid_code");
    let r = c
        .post(
            "/api/v1/accounts/confirm/resend",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(app.mails_to("nobody@example.com").await.is_empty());
}

#[tokio::test]
async fn weak_passwords_are_refused_with_reasons_and_nothing_is_written() {
    let app = spawn_app().await;
    let c = app.client();
    for (password, why) in [
        ("Sh0rt!pass", "at least 12"),
        ("password1234", "too easy to guess"),
        ("qwertyuiop12", "too easy to guess"),
        ("erin.smith-Qx7#mZ!9v", "must not contain your email"),
    ] {
        let r = c
            .post(
                "/api/v1/accounts",
                json!({"email": "erin.smith@example.com", "password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{password}");
        assert_eq!(r.code(), "weak_password");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .expect("message")
                .contains(why),
            "{password}: {}",
            r.body
        );
    }
    assert!(app.mails_to("erin.smith@example.com").await.is_empty());
    assert!(app
        .store()
        .account_by_email("erin.smith@example.com")
        .await
        .expect("read")
        .is_none());
}

#[tokio::test]
async fn signing_in_before_confirming_is_refused_with_the_reason() {
    let app = spawn_app().await;
    let c = app.client();
    c.post(
        "/api/v1/accounts",
        json!({"email": "fay@example.com", "password": PASSWORD}),
    )
    .await;
    let r = c
        .post(
            "/api/v1/sessions",
            json!({"email": "fay@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "email_not_confirmed");
    assert!(c.cookie("rampart_session").is_none());
}

#[tokio::test]
async fn anti_phishing_code_is_shown_in_every_later_mail() {
    let app = spawn_app().await;
    let c = app.signed_in("gus@example.com").await;
    for bad in ["short", "has spaces in it", "ünïcödé-code", &"x".repeat(33)] {
        let r = c
            .put("/api/v1/me/anti-phishing-code", json!({"code": bad}))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(r.code(), "invalid_anti_phishing_code");
    }
    app.clock.advance(MINUTE);
    let r = c
        .put(
            "/api/v1/me/anti-phishing-code",
            json!({"code": "Blue-Falcon7"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        c.get("/api/v1/me").await.json()["anti_phishing_code"],
        "Blue-Falcon7"
    );

    let mails = app.mails_to("gus@example.com").await;
    let announce = mails.last().expect("mail");
    assert!(announce
        .body_text
        .starts_with("Anti-phishing code: Blue-Falcon7"));

    // A later mail (someone tries to register the address) carries it too.
    app.clock.advance(MINUTE);
    app.client()
        .post(
            "/api/v1/accounts",
            json!({"email": "gus@example.com", "password": PASSWORD}),
        )
        .await;
    let later = app.mails_to("gus@example.com").await;
    assert!(later
        .last()
        .expect("mail")
        .body_text
        .starts_with("Anti-phishing code: Blue-Falcon7"));

    let r = app
        .client()
        .put(
            "/api/v1/me/anti-phishing-code",
            json!({"code": "Blue-Falcon7"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "unauthenticated");
    // Replacing it is a sensitive change: a thief's code in genuine mails would make his
    // own phishing mails look genuine. The change is announced under the old code.
    let r = c
        .put(
            "/api/v1/me/anti-phishing-code",
            json!({"code": "Thief-Code-1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.code(), "step_up_required");
    app.step_up_by_email(&c, "gus@example.com").await;
    let r = c
        .put(
            "/api/v1/me/anti-phishing-code",
            json!({"code": "Green-Otter42"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mails = app.mails_to("gus@example.com").await;
    let changed = mails
        .iter()
        .rev()
        .find(|m| m.subject.contains("anti-phishing code was changed"))
        .expect("announced");
    assert!(
        changed
            .body_text
            .starts_with("Anti-phishing code: Blue-Falcon7"),
        "{}",
        changed.body_text
    );
}
