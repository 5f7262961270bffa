//! Getting the account back: forgot password, support access without signing in, tickets,
//! recovery requests and their review in the console.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::console::operator_signed_in;
use crate::helpers::*;
use rampart::clock::{DAY, HOUR, MINUTE};
use rampart::domain::totp;

const NEW_PASSWORD: &str = "Velvet-orbit-canyon-91-drums";

/// The path of the newest link to `path_prefix` mailed to `to`.
async fn link_in_mail(app: &TestApp, to: &str, path_prefix: &str) -> String {
    let mails = app.mails_to(to).await;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.body_text.contains(path_prefix))
        .unwrap_or_else(|| panic!("no mail with {path_prefix} to {to}"));
    let line = mail
        .body_text
        .lines()
        .find(|l| l.contains(path_prefix))
        .expect("link line")
        .trim();
    line.strip_prefix("http://rampart.test")
        .expect("public url")
        .to_owned()
}

fn token_of(path: &str) -> String {
    path.rsplit('/').next().expect("token").to_owned()
}

async fn enrol_totp(app: &TestApp, c: &TestClient) -> Vec<u8> {
    let r = c.post("/api/v1/me/totp", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let b32 = r.json()["secret"].as_str().expect("secret").to_owned();
    let secret = totp_rs::Secret::Encoded(b32).to_bytes().expect("base32");
    let code = totp::code_for_step(&secret, totp::step_of(app.clock.now_ms()), 6).expect("code");
    let r = c
        .post("/api/v1/me/totp/confirm", json!({ "code": code }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    secret
}

async fn account_id(app: &TestApp, email: &str) -> String {
    app.store()
        .account_by_email(email)
        .await
        .expect("read")
        .expect("account")
        .id
}

// ---- forgot password ---------------------------------------------------------------------------

#[tokio::test]
async fn a_reset_answers_alike_for_every_address_and_the_link_works_once_for_30_minutes() {
    let app = spawn_app().await;
    let email = "reset@example.com";
    let owner = app.signed_in(email).await;
    let anon = app.client();

    let known = anon
        .post("/api/v1/password-reset", json!({"email": email}))
        .await;
    let unknown = anon
        .post(
            "/api/v1/password-reset",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(known.status, StatusCode::ACCEPTED);
    assert_eq!(
        (unknown.status, unknown.body.clone()),
        (known.status, known.body.clone())
    );
    assert!(app.mails_to("nobody@example.com").await.is_empty());

    // The link expires after 30 minutes.
    let path = link_in_mail(&app, email, "/reset-password/").await;
    app.clock.advance(31 * MINUTE);
    let r = anon
        .post(
            "/api/v1/password-reset/complete",
            json!({"token": token_of(&path), "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "reset_link_expired".into())
    );

    // A new link works, once; every session ends and withdrawals are locked 24 h.
    anon.post("/api/v1/password-reset", json!({"email": email}))
        .await;
    let path = link_in_mail(&app, email, "/reset-password/").await;
    let page = anon.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Choose a new password"));
    let body = json!({"token": token_of(&path), "new_password": NEW_PASSWORD});
    let r = anon
        .post("/api/v1/password-reset/complete", body.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let again = anon.post("/api/v1/password-reset/complete", body).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::NOT_FOUND, "reset_link_invalid".into())
    );

    assert_eq!(
        owner.get("/api/v1/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    let old = anon
        .post(
            "/api/v1/sessions",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let c = app.client();
    let r = c
        .post(
            "/api/v1/sessions",
            json!({"email": email, "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let locks = app
        .store()
        .withdrawal_locks(&account_id(&app, email).await, app.clock.now_ms())
        .await
        .expect("locks");
    assert!(locks
        .iter()
        .any(|l| l.reason == "password_reset" && l.until == app.clock.now_ms() + 24 * HOUR));
    let mails = app.mails_to(email).await;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.subject.contains("Your password was reset"))
        .expect("the reset is announced");
    assert!(
        mail.body_text.contains("/freeze/"),
        "the mail carries the freeze link"
    );

    app.clock.advance(24 * HOUR);
    let locks = app
        .store()
        .withdrawal_locks(&account_id(&app, email).await, app.clock.now_ms())
        .await
        .expect("locks");
    assert!(
        locks.is_empty(),
        "the 24-hour lock ends by itself: {locks:?}"
    );
}

#[tokio::test]
async fn a_reset_of_an_account_with_an_authenticator_needs_its_code_and_a_frozen_account_stays_frozen(
) {
    let app = spawn_app().await;
    let email = "totp-reset@example.com";
    let c = app.signed_in(email).await;
    app.step_up_by_email(&c, email).await;
    let secret = enrol_totp(&app, &c).await;
    let r = c.post("/api/v1/me/freeze", json!({})).await;
    assert!(r.status.is_success(), "{}", r.body);

    let anon = app.client();
    anon.post("/api/v1/password-reset", json!({"email": email}))
        .await;
    let token = token_of(&link_in_mail(&app, email, "/reset-password/").await);
    let r = anon
        .post(
            "/api/v1/password-reset/complete",
            json!({"token": token, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "second_factor_required".into())
    );
    let r = anon
        .post(
            "/api/v1/password-reset/complete",
            json!({"token": token, "new_password": NEW_PASSWORD, "code": "000000"}),
        )
        .await;
    assert_eq!(r.code(), "invalid_code", "{}", r.body);
    app.clock.advance(MINUTE);
    let code = totp::code_for_step(&secret, totp::step_of(app.clock.now_ms()), 6).expect("code");
    let r = anon
        .post(
            "/api/v1/password-reset/complete",
            json!({"token": token, "new_password": NEW_PASSWORD, "code": code}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The reset did not unfreeze.
    let r = app
        .client()
        .post(
            "/api/v1/sessions",
            json!({"email": email, "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(r.code(), "account_frozen", "{}", r.body);
}

// ---- support access, tickets, recovery review ------------------------------------------------

/// Opens support access for `email` through the mailed code (no sign-in).
async fn support_access(app: &TestApp, email: &str) -> TestClient {
    let c = app.client();
    let r = c
        .post("/api/v1/support/verify", json!({"email": email}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let mails = app.mails_to(email).await;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.body_text.contains("code to contact support is"))
        .expect("support code mail");
    let at = mail.body_text.find("support is ").expect("sentence") + "support is ".len();
    let code = mail.body_text[at..at + 6].to_owned();
    let r = c
        .post(
            "/api/v1/support/verify/confirm",
            json!({"email": email, "code": code}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    c
}

#[tokio::test]
async fn an_owner_who_cannot_sign_in_files_a_prefilled_ticket_and_sees_only_supports_replies() {
    let app = spawn_app().await;
    let email = "victim@example.com";
    let owner = app.signed_in(email).await;
    let r = owner.post("/api/v1/me/freeze", json!({})).await;
    assert!(r.status.is_success(), "{}", r.body);

    // Without access, nothing; the code request answers alike for every address.
    let anon = app.client();
    let r = anon.get("/api/v1/support/ticket-draft").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let unknown = anon
        .post(
            "/api/v1/support/verify",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::ACCEPTED);
    let wrong = anon
        .post(
            "/api/v1/support/verify/confirm",
            json!({"email": email, "code": "123456"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);

    let c = support_access(&app, email).await;
    let draft = c.get("/api/v1/support/ticket-draft").await;
    assert_eq!(draft.status, StatusCode::OK, "{}", draft.body);
    let d = draft.json();
    assert_eq!(d["email"], email);
    assert!(d["uid"].as_str().is_some_and(|u| u.len() == 10));
    let sign_in = d["sign_ins"][0]["id"]
        .as_str()
        .expect("a sign-in")
        .to_owned();
    assert!(d["actions_taken"]
        .as_array()
        .expect("actions")
        .iter()
        .any(|a| a["action"] == "account.frozen"));

    // Validation: only this account's sign-ins.
    let r = c
        .post(
            "/api/v1/support/tickets",
            json!({"description": "Not me", "sign_in_ids": ["someone-else"]}),
        )
        .await;
    assert_eq!(r.code(), "unknown_reference", "{}", r.body);

    let r = c
        .post(
            "/api/v1/support/tickets",
            json!({
                "description": "Someone changed my password at 03:12 from Lagos.",
                "noticed_at": app.clock.now_ms(),
                "sign_in_ids": [sign_in],
                "requests": ["full_audit", "unfreeze"],
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ticket = r.json();
    let id = ticket["id"].as_str().expect("id").to_owned();
    assert!(
        ticket["recovery_id"].is_string(),
        "unfreeze on a frozen account opens a recovery"
    );
    let recoveries = c.get("/api/v1/support/recoveries").await.json();
    assert_eq!(recoveries[0]["kind"], "reactivation");
    assert_eq!(recoveries[0]["status"], "submitted");

    // Support answers; an internal note stays internal.
    let support = operator_signed_in(&app, "support").await;
    let queue = support.get("/api/v1/console/tickets").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
    assert_eq!(queue.json()[0]["id"], id.as_str());
    let r = support
        .post(
            &format!("/api/v1/console/tickets/{id}/replies"),
            json!({"body": "Looks like a phishing page; checking.", "internal": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let before = app.mails_to(email).await.len();
    let r = support
        .post(
            &format!("/api/v1/console/tickets/{id}/replies"),
            json!({"body": "We are reviewing your recovery."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let mails = app.mails_to(email).await;
    assert_eq!(mails.len(), before + 1);
    assert!(mails
        .last()
        .expect("mail")
        .body_text
        .contains("We are reviewing your recovery."));

    let seen = c.get(&format!("/api/v1/support/tickets/{id}")).await.json();
    assert_eq!(seen["status"], "answered");
    let bodies: Vec<&str> = seen["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect();
    assert!(bodies.contains(&"We are reviewing your recovery."));
    assert!(
        !bodies.iter().any(|b| b.contains("phishing page")),
        "{bodies:?}"
    );
    let console_view = support
        .get(&format!("/api/v1/console/tickets/{id}"))
        .await
        .json();
    assert!(console_view["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .any(|m| m["internal"] == true));

    // The account lookup lists the ticket and the recovery.
    let found = support
        .get(&format!("/api/v1/console/accounts?q={email}"))
        .await
        .json();
    assert_eq!(found["tickets"][0]["id"], id.as_str());
    assert_eq!(found["recovery_requests"][0]["kind"], "reactivation");

    // Support access does not open anything else.
    assert_eq!(c.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
}

/// A frozen account with an open reactivation request (through support access).
async fn frozen_with_request(app: &TestApp, email: &str) -> (TestClient, String) {
    let owner = app.signed_in(email).await;
    let r = owner.post("/api/v1/me/freeze", json!({})).await;
    assert!(r.status.is_success(), "{}", r.body);
    let c = support_access(app, email).await;
    let r = c
        .post(
            "/api/v1/support/recoveries",
            json!({"kind": "reactivation", "what_happened": "My password was changed by someone else."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.json()["id"].as_str().expect("id").to_owned();
    (c, id)
}

#[tokio::test]
async fn support_cannot_approve_and_a_reviewer_waits_two_hours_after_the_freeze() {
    let app = spawn_app().await;
    let email = "wait@example.com";
    let (owner, id) = frozen_with_request(&app, email).await;
    let approve = format!("/api/v1/console/recoveries/{id}/approve");

    let support = operator_signed_in(&app, "support").await;
    let r = support
        .post(&approve, json!({"reason": "looks fine"}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "role_missing".into())
    );
    assert_eq!(
        support.get("/api/v1/console/recoveries").await.status,
        StatusCode::FORBIDDEN
    );

    let reviewer = operator_signed_in(&app, "reviewer").await;
    let queue = reviewer.get("/api/v1/console/recoveries").await.json();
    assert_eq!(queue[0]["id"], id.as_str());
    let r = reviewer.post(&approve, json!({"reason": ""})).await;
    assert_eq!(r.code(), "reason_required");
    let r = reviewer
        .post(&approve, json!({"reason": "ID matches"}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "too_soon".into()),
        "{}",
        r.body
    );

    app.clock.advance(2 * HOUR);
    let reviewer = operator_signed_in(&app, "reviewer").await;
    let r = reviewer
        .post(&approve, json!({"reason": "ID matches"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["status"], "approved");
    let r = reviewer.post(&approve, json!({"reason": "again"})).await;
    assert_eq!(r.code(), "already_decided");
    // Support access lasts an hour; the owner opens it again to see the decision.
    assert_eq!(
        owner.get("/api/v1/support/recoveries").await.status,
        StatusCode::UNAUTHORIZED
    );
    let owner = support_access(&app, email).await;
    let mine = owner.get("/api/v1/support/recoveries").await.json();
    assert_eq!(mine[0]["status"], "approved");
    assert_eq!(mine[0]["decision_reason"], "ID matches");
}

#[tokio::test]
async fn a_recovery_after_a_new_api_key_needs_two_different_reviewers() {
    let app = spawn_app().await;
    let email = "twokeys@example.com";
    let owner = app.signed_in(email).await;
    app.step_up_by_email(&owner, email).await;
    let r = owner
        .post(
            "/api/v1/me/api-keys",
            json!({"label": "bot", "type": "hmac", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    app.clock.advance(20 * MINUTE);
    let r = owner.post("/api/v1/me/freeze", json!({})).await;
    assert!(r.status.is_success(), "{}", r.body);
    let c = support_access(&app, email).await;
    let r = c
        .post(
            "/api/v1/support/recoveries",
            json!({"kind": "reactivation", "what_happened": "A key I did not make appeared."}),
        )
        .await;
    let id = r.json()["id"].as_str().expect("id").to_owned();
    app.clock.advance(3 * HOUR);
    let approve = format!("/api/v1/console/recoveries/{id}/approve");

    let first = operator_signed_in(&app, "reviewer").await;
    let r = first.post(&approve, json!({"reason": "ID matches"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["status"], "awaiting_second_approval");
    let r = first.post(&approve, json!({"reason": "me again"})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "second_approver_required".into())
    );
    // Still frozen.
    let r = app
        .client()
        .post(
            "/api/v1/sessions",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.code(), "account_frozen");

    let second = operator_signed_in(&app, "admin").await;
    let r = second
        .post(&approve, json!({"reason": "Confirmed by phone"}))
        .await;
    assert_eq!(r.json()["status"], "approved", "{}", r.body);
}

#[tokio::test]
async fn an_approved_recovery_clears_the_attackers_footholds_and_asks_for_a_new_factor_first() {
    let app = spawn_app().await;
    let email = "back@example.com";
    let owner = app.signed_in(email).await;
    app.step_up_by_email(&owner, email).await;
    enrol_totp(&app, &owner).await; // an authenticator the attacker may have planted
    let id = account_id(&app, email).await;
    let r = owner.post("/api/v1/me/freeze", json!({})).await;
    assert!(r.status.is_success(), "{}", r.body);
    app.clock.advance(8 * DAY); // nothing heavy in the week before the freeze
    let c = support_access(&app, email).await;
    let r = c
        .post(
            "/api/v1/support/recoveries",
            json!({"kind": "reactivation", "what_happened": "Locked out."}),
        )
        .await;
    let rid = r.json()["id"].as_str().expect("id").to_owned();
    let reviewer = operator_signed_in(&app, "reviewer").await;
    let r = reviewer
        .post(
            &format!("/api/v1/console/recoveries/{rid}/approve"),
            json!({"reason": "Selfie and ID match"}),
        )
        .await;
    assert_eq!(r.json()["status"], "approved", "{}", r.body);

    // The owner is told, with the reason, and gets a single-use link.
    let mails = app.mails_to(email).await;
    assert!(mails.iter().any(|m| m
        .body_text
        .contains("Support approved your recovery: Selfie and ID match")));
    let path = link_in_mail(&app, email, "/recover/").await;
    let inbox = app.store().notifications(&id, 50).await.expect("inbox");
    assert!(inbox
        .iter()
        .any(|n| n.body.contains("Support approved your recovery")));
    assert!(
        !inbox.iter().any(|n| n.body.contains("/recover/")),
        "the link never reaches the inbox"
    );

    // Factors are gone, the freeze is lifted, withdrawals locked 48 h.
    let f = app
        .state
        .second_factors
        .factors(&id)
        .await
        .expect("factors");
    assert!(!f.totp && f.backup_codes_left == 0);
    let locks = app
        .store()
        .withdrawal_locks(&id, app.clock.now_ms())
        .await
        .expect("locks");
    assert!(locks
        .iter()
        .any(|l| l.reason == "recovery" && l.until == app.clock.now_ms() + 48 * HOUR));

    let anon = app.client();
    let r = anon
        .post(
            "/api/v1/recover",
            json!({"token": token_of(&path), "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = anon
        .post(
            "/api/v1/recover",
            json!({"token": token_of(&path), "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(r.code(), "reset_link_invalid");

    // Signed in again (same browser): a new second factor comes before anything else.
    let r = owner
        .post(
            "/api/v1/sessions",
            json!({"email": email, "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["status"], "signed_in", "{}", r.body);
    let r = owner.get("/api/v1/me/devices").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "recovery_incomplete".into())
    );
    let r = owner.get("/api/v1/me/api-keys").await;
    assert_eq!(r.code(), "recovery_incomplete");
    assert_eq!(owner.get("/api/v1/me").await.status, StatusCode::OK);
    let r = owner.post("/api/v1/me/step-up/email-code", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let code = step_up_code(&app, email).await;
    let r = owner
        .post(
            "/api/v1/me/step-up",
            json!({"password": NEW_PASSWORD, "email_code": code}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    enrol_totp(&app, &owner).await;
    let r = owner.get("/api/v1/me/devices").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // The 48-hour lock ends by itself.
    app.clock.advance(48 * HOUR);
    let locks = app
        .store()
        .withdrawal_locks(&id, app.clock.now_ms())
        .await
        .expect("locks");
    assert!(!locks.iter().any(|l| l.reason == "recovery"), "{locks:?}");
}

#[tokio::test]
async fn a_rejected_recovery_tells_the_owner_why_and_keeps_the_freeze() {
    let app = spawn_app().await;
    let email = "nope@example.com";
    let (c, id) = frozen_with_request(&app, email).await;
    let reviewer = operator_signed_in(&app, "reviewer").await;
    let r = reviewer
        .post(
            &format!("/api/v1/console/recoveries/{id}/reject"),
            json!({"reason": "The photo does not match."}),
        )
        .await;
    assert_eq!(r.json()["status"], "rejected", "{}", r.body);
    let mine: Value = c.get("/api/v1/support/recoveries").await.json();
    assert_eq!(mine[0]["status"], "rejected");
    assert!(app
        .mails_to(email)
        .await
        .iter()
        .any(|m| m.body_text.contains("The photo does not match.")));
    let r = app
        .client()
        .post(
            "/api/v1/sessions",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.code(), "account_frozen");
}

#[tokio::test]
async fn identity_evidence_is_checked_sealed_shown_only_to_reviewers_and_deleted_30_days_after_the_decision(
) {
    let app = spawn_app().await;
    let email = "evidence@example.com";
    let (c, id) = frozen_with_request(&app, email).await;
    let path = format!("/api/v1/support/recoveries/{id}/evidence");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(b"passport-photo-marker-0123456789");

    // Type and size are checked against the bytes.
    let r = c.post_raw(&path, "image/jpeg", png.clone()).await;
    assert_eq!(r.code(), "evidence_type", "{}", r.body);
    let r = c.post_raw(&path, "text/html", b"<script>".to_vec()).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut big = b"%PDF-1.7\n".to_vec();
    big.resize(5 * 1024 * 1024 + 10, b'a');
    let r = c.post_raw(&path, "application/pdf", big.clone()).await;
    assert_eq!(r.code(), "evidence_size", "{}", r.body);
    big.resize(6 * 1024 * 1024, b'a');
    let r = c.post_raw(&path, "application/pdf", big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    let r = c.post_raw(&path, "image/png", png.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["n"], 1);

    // Sealed at rest: the stored column does not hold the file.
    let stored: Vec<String> = app
        .state
        .services
        .store
        .evidence_of(&id)
        .await
        .expect("list")
        .iter()
        .map(|e| e.content_type.clone())
        .collect();
    assert_eq!(stored, vec!["image/png".to_owned()]);
    let (_, sealed) = app
        .store()
        .evidence_file(&id, 1)
        .await
        .expect("read")
        .expect("file");
    assert!(!sealed.contains("passport-photo-marker"));
    assert!(!String::from_utf8_lossy(&base64_decoded(&sealed)).contains("passport-photo-marker"));

    // Support may not open it; a reviewer downloads it as an attachment.
    let file = format!("/api/v1/console/recoveries/{id}/evidence/1");
    let support = operator_signed_in(&app, "support").await;
    assert_eq!(support.get(&file).await.status, StatusCode::FORBIDDEN);
    let reviewer = operator_signed_in(&app, "reviewer").await;
    let r = reviewer.get(&file).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "image/png");
    assert!(r.headers["content-disposition"]
        .to_str()
        .expect("ascii")
        .starts_with("attachment"));
    assert!(r.body.contains("passport-photo-marker"));
    let detail = reviewer
        .get(&format!("/api/v1/console/recoveries/{id}"))
        .await
        .json();
    assert_eq!(detail["evidence"][0]["content_type"], "image/png");

    // Decided, then deleted by the timed job 30 days later.
    app.clock.advance(2 * HOUR);
    let reviewer = operator_signed_in(&app, "reviewer").await;
    let r = reviewer
        .post(
            &format!("/api/v1/console/recoveries/{id}/reject"),
            json!({"reason": "Not the account holder."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.clock.advance(29 * DAY);
    rampart::jobs::timed::step(&app.state.services)
        .await
        .expect("timed");
    assert_eq!(app.store().evidence_of(&id).await.expect("list").len(), 1);
    app.clock.advance(2 * DAY);
    let report = rampart::jobs::timed::step(&app.state.services)
        .await
        .expect("timed");
    assert_eq!(report.evidence_deleted, 1);
    assert!(app.store().evidence_of(&id).await.expect("list").is_empty());
}

fn base64_decoded(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s))
        .unwrap_or_default()
}

#[tokio::test]
async fn a_reset_proved_by_passkey_needs_a_passkey_and_a_ceremony_of_this_link() {
    let app = spawn_app().await;
    let email = "pk-reset@example.com";
    app.signed_in(email).await;
    let anon = app.client();
    anon.post("/api/v1/password-reset", json!({"email": email}))
        .await;
    let token = token_of(&link_in_mail(&app, email, "/reset-password/").await);
    let r = anon
        .post(
            "/api/v1/password-reset/passkey/options",
            json!({"token": token}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "no_passkey".into())
    );
    let r = anon
        .post(
            "/api/v1/password-reset/passkey/options",
            json!({"token": "not-a-link"}),
        )
        .await;
    assert_eq!(r.code(), "reset_link_invalid");
    // A made-up ceremony proves nothing.
    let r = anon
        .post(
            "/api/v1/password-reset/complete",
            json!({"token": token, "new_password": NEW_PASSWORD,
                   "passkey": {"ceremony_id": "forged", "credential": {"id": "x"}}}),
        )
        .await;
    assert!(
        ["invalid_credential", "passkey_failed"].contains(&r.code().as_str()),
        "{}",
        r.body
    );
}
