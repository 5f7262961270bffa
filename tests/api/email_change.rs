//! Changing the account's email address: step-up, a code to the new address, the old
//! address told with a 48-hour cancel link, the 48-hour lock, and security mail to the old
//! address for those 48 hours.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use rampart::clock::{HOUR, MINUTE};

/// The newest 6-digit code after `sentence` in a mail to `to`.
async fn code_after(app: &TestApp, to: &str, sentence: &str) -> String {
    let mails = app.mails_to(to).await;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.body_text.contains(sentence))
        .unwrap_or_else(|| panic!("no mail with {sentence:?} to {to}"));
    let at = mail.body_text.find(sentence).expect("sentence") + sentence.len();
    mail.body_text[at..at + 6].to_owned()
}

async fn changed(app: &TestApp, c: &TestClient, old: &str, new: &str) {
    app.step_up_by_email(c, old).await;
    let r = c
        .post("/api/v1/me/email-change", json!({"new_email": new}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let code = code_after(app, new, "make this the address of your account is ").await;
    let r = c
        .post("/api/v1/me/email-change/confirm", json!({"code": code}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["email"], new);
}

fn cancel_path(mail_text: &str) -> String {
    mail_text
        .lines()
        .find(|l| l.contains("/email-change/cancel/"))
        .expect("cancel link")
        .trim()
        .strip_prefix("http://rampart.test")
        .expect("public url")
        .to_owned()
}

#[tokio::test]
async fn an_email_change_needs_a_step_up_and_the_code_from_the_new_address() {
    let app = spawn_app().await;
    let c = app.signed_in("old@example.com").await;
    let r = c
        .post(
            "/api/v1/me/email-change",
            json!({"new_email": "new@example.com"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "step_up_required".into())
    );

    app.step_up_by_email(&c, "old@example.com").await;
    let r = c
        .post(
            "/api/v1/me/email-change",
            json!({"new_email": "new@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let wrong = c
        .post("/api/v1/me/email-change/confirm", json!({"code": "000000"}))
        .await;
    assert_eq!(wrong.code(), "invalid_code");
    assert_eq!(
        c.get("/api/v1/me").await.json()["email"],
        "old@example.com",
        "nothing changes before the code"
    );
    let code = code_after(
        &app,
        "new@example.com",
        "make this the address of your account is ",
    )
    .await;
    let r = c
        .post("/api/v1/me/email-change/confirm", json!({"code": code}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(c.get("/api/v1/me").await.json()["email"], "new@example.com");

    // Withdrawals locked 48 h; the old address is told, with a cancel link and the freeze link.
    let id = app
        .store()
        .account_by_email("new@example.com")
        .await
        .expect("read")
        .expect("account")
        .id;
    let locks = app
        .store()
        .withdrawal_locks(&id, app.clock.now_ms())
        .await
        .expect("locks");
    assert!(locks
        .iter()
        .any(|l| l.reason == "email_changed" && l.until == app.clock.now_ms() + 48 * HOUR));
    let told = app.mails_to("old@example.com").await;
    let mail = told
        .iter()
        .rev()
        .find(|m| {
            m.subject
                .contains("email address of your account was changed")
        })
        .expect("the old address is told");
    assert!(mail.body_text.contains("/email-change/cancel/"));
    assert!(mail.body_text.contains("/freeze/"));
    let inbox = app.store().notifications(&id, 50).await.expect("inbox");
    assert!(!inbox
        .iter()
        .any(|n| n.body.contains("/email-change/cancel/")));

    // Signing in uses the new address.
    let r = app
        .client()
        .post(
            "/api/v1/sessions",
            json!({"email": "old@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_old_address_can_cancel_within_48_hours_and_hears_of_security_events_until_then() {
    let app = spawn_app().await;
    let c = app.signed_in("first@example.com").await;
    changed(&app, &c, "first@example.com", "second@example.com").await;

    // No second change inside the window: it would take the first address out of reach.
    app.step_up_by_email(&c, "second@example.com").await;
    let r = c
        .post(
            "/api/v1/me/email-change",
            json!({"new_email": "third@example.com"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "email_change_pending".into())
    );

    // A security notice within the 48 hours reaches both addresses.
    let r = c
        .put(
            "/api/v1/me/anti-phishing-code",
            json!({"code": "blue-heron-42"}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let subject = "Your anti-phishing code was set";
    assert!(app
        .mails_to("first@example.com")
        .await
        .iter()
        .any(|m| m.subject.contains(subject)));
    assert!(app
        .mails_to("second@example.com")
        .await
        .iter()
        .any(|m| m.subject.contains(subject)));

    // The cancel link restores the old address and ends every session.
    let told = app.mails_to("first@example.com").await;
    let mail = told
        .iter()
        .rev()
        .find(|m| m.body_text.contains("/email-change/cancel/"))
        .expect("cancel mail");
    let path = cancel_path(&mail.body_text);
    let anon = app.client();
    let page = anon.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Cancel the email change?"));
    let r = anon
        .post_form(&path, &[("csrf", &csrf_in(&page.body))])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(c.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    let r = app
        .client()
        .post(
            "/api/v1/sessions",
            json!({"email": "first@example.com", "password": PASSWORD}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let again = anon
        .post_form(&path, &[("csrf", &csrf_in(&page.body))])
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn after_48_hours_the_change_cannot_be_cancelled_and_the_old_address_hears_no_more() {
    let app = spawn_app().await;
    let c = app.signed_in("a1@example.com").await;
    changed(&app, &c, "a1@example.com", "a2@example.com").await;
    let told = app.mails_to("a1@example.com").await;
    let mail = told
        .iter()
        .rev()
        .find(|m| m.body_text.contains("/email-change/cancel/"))
        .expect("cancel mail");
    let token = cancel_path(&mail.body_text)
        .rsplit('/')
        .next()
        .expect("token")
        .to_owned();

    app.clock.advance(48 * HOUR + MINUTE);
    let r = app
        .client()
        .post("/api/v1/email-change/cancel", json!({"token": token}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "cancel_link_invalid".into())
    );

    // The same browser (a known device) signs in again with the new address.
    let r = c
        .post(
            "/api/v1/sessions",
            json!({"email": "a2@example.com", "password": PASSWORD}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let before = app.mails_to("a1@example.com").await.len();
    let r = c
        .put(
            "/api/v1/me/anti-phishing-code",
            json!({"code": "late-owl-77"}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    assert_eq!(app.mails_to("a1@example.com").await.len(), before);
    assert!(app
        .mails_to("a2@example.com")
        .await
        .iter()
        .any(|m| m.subject.contains("anti-phishing code was set")));
}
