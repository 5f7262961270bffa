use serde_json::json;

use crate::helpers::*;
use rampart::service::audit::verify;

#[tokio::test]
async fn security_actions_are_audited_in_a_verifiable_chain() {
    let app = spawn_app().await;
    let c = app.signed_in("quinn@example.com").await;
    app.client()
        .post(
            "/api/v1/sessions",
            json!({"email": "quinn@example.com", "password": "Wrong-but-long-enough-1"}),
        )
        .await;
    c.put(
        "/api/v1/me/anti-phishing-code",
        json!({"code": "Quiet-River-42"}),
    )
    .await;
    c.delete("/api/v1/sessions/current").await;

    let account = app
        .store()
        .account_by_email("quinn@example.com")
        .await
        .expect("read")
        .expect("account");
    let events = app
        .store()
        .audit_for_account(&account.id, 100)
        .await
        .expect("events");
    let actions: Vec<&str> = events.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "account.registered",
            "account.email_confirmed",
            "signin.succeeded",
            "signin.failed",
            "anti_phishing_code.set",
            "signout"
        ]
    );
    let signin = events
        .iter()
        .find(|e| e.action == "signin.succeeded")
        .expect("sign-in event");
    assert_eq!(signin.ip.as_deref(), Some("127.0.0.1"));
    assert!(signin
        .device
        .as_deref()
        .expect("device")
        .contains("Chrome 126.0 on Linux"));
    assert_eq!(signin.actor, format!("account:{}", account.uid));

    let n = verify(app.store().as_ref())
        .await
        .expect("read")
        .expect("intact");
    assert_eq!(n, 6);
}

#[tokio::test]
async fn tampering_with_the_audit_log_is_detected() {
    let app = spawn_app().await;
    app.signed_in("rae@example.com").await;
    app.client()
        .post(
            "/api/v1/sessions",
            json!({"email": "rae@example.com", "password": "Wrong-but-long-enough-1"}),
        )
        .await;
    assert!(verify(app.store().as_ref()).await.expect("read").is_ok());

    raw_sql(
        &app.database_url,
        "UPDATE audit_events SET ip = '10.0.0.1' WHERE seq = 2",
    )
    .await;
    let broken = verify(app.store().as_ref())
        .await
        .expect("read")
        .expect_err("detected");
    assert!(broken.contains("event 2 was altered"), "{broken}");

    let app = spawn_app().await;
    app.signed_in("rae@example.com").await;
    raw_sql(
        &app.database_url,
        "DELETE FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events)",
    )
    .await;
    let broken = verify(app.store().as_ref())
        .await
        .expect("read")
        .expect_err("detected");
    assert!(broken.contains("removed"), "{broken}");

    let app = spawn_app().await;
    app.signed_in("rae@example.com").await;
    raw_sql(&app.database_url, "DELETE FROM audit_events WHERE seq = 1").await;
    let broken = verify(app.store().as_ref())
        .await
        .expect("read")
        .expect_err("detected");
    assert!(broken.contains("event 1 is missing"), "{broken}");
}
