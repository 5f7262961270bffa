//! The storage contract, run against whichever backend the suite runs on (SQLite, or
//! PostgreSQL with RAMPART_TEST_DATABASE_URL): what both implementations must guarantee
//! under concurrency.

use std::collections::HashSet;
use std::sync::Arc;

use rampart::clock::MINUTE;
use rampart::domain::mail_kind::MailKind;
use rampart::domain::throttle::ThrottlePolicy;
use rampart::store::{connect, AuditEvent, Effects, NewMail, SharedStore};
use serde_json::json;

use crate::helpers::fresh_database;

async fn store() -> (SharedStore, Option<tempfile::TempDir>) {
    let (url, dir) = fresh_database().await;
    let s = connect(&url).await.expect("connect");
    // Migrating an up-to-date database again is a no-op.
    connect(&url).await.expect("connect again").close().await;
    (s, dir)
}

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        at: 1_000 + i as i64,
        account_id: None,
        actor: "system".into(),
        action: "contract.test".into(),
        ip: None,
        device: None,
        detail: json!({"i": i}),
    }
}

fn mail(i: usize) -> NewMail {
    NewMail {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: None,
        to: format!("m{i}@example.com"),
        subject: "s".into(),
        body_text: "b".into(),
        event_text: "b".into(),
        created_at: 1_000,
        freeze_link: None,
        inbox: false,
        kind: MailKind::Security,
    }
}

#[tokio::test]
async fn throttle_charges_are_atomic_under_concurrency() {
    let (s, _dir) = store().await;
    let policy = ThrottlePolicy {
        free_failures: 5,
        window: 15 * MINUTE,
        max_delay: 15 * MINUTE,
    };
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.throttle_attempt("k", &policy, 10_000)
                .await
                .expect("attempt")
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        if t.await.expect("task").is_ok() {
            allowed += 1;
        }
    }
    assert_eq!(
        allowed, 5,
        "exactly the free tries get through, however parallel the guessing"
    );
    s.throttle_clear("k").await.expect("clear");
    assert!(s
        .throttle_attempt("k", &policy, 10_000)
        .await
        .expect("attempt")
        .is_ok());
}

#[tokio::test]
async fn once_per_interval_lets_exactly_one_concurrent_caller_through() {
    let (url, _dir) = fresh_database().await;
    // Two stores with their own pools, as two instances would have.
    let a = connect(&url).await.expect("connect");
    let b = connect(&url).await.expect("connect");
    let race = |now: i64| {
        let mut tasks = Vec::new();
        for i in 0..20 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                s.once_per_interval("alert:k", 60 * MINUTE, now)
                    .await
                    .expect("claim")
            }));
        }
        tasks
    };
    let mut yes = 0;
    for t in race(1_000_000) {
        yes += usize::from(t.await.expect("task"));
    }
    assert_eq!(yes, 1, "exactly one caller may send");
    assert!(
        !a.once_per_interval("alert:k", 60 * MINUTE, 1_000_000 + 60 * MINUTE - 1)
            .await
            .expect("claim"),
        "not again within the interval"
    );
    assert!(
        a.once_per_interval("alert:other", 60 * MINUTE, 1_000_001)
            .await
            .expect("claim"),
        "keys are independent"
    );
    let mut yes = 0;
    for t in race(1_000_000 + 60 * MINUTE) {
        yes += usize::from(t.await.expect("task"));
    }
    assert_eq!(yes, 1, "once the interval has passed, exactly one again");
}

#[tokio::test]
async fn concurrent_writers_extend_one_unbroken_audit_chain() {
    let (s, _dir) = store().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let fx = Effects {
                audit: vec![event(i), event(i + 100)],
                mails: vec![],
            };
            s.append_audit(&fx).await.expect("append");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let n = rampart::service::audit::verify(s.as_ref())
        .await
        .expect("read")
        .expect("intact");
    assert_eq!(n, 40);
    assert_eq!(s.audit_head().await.expect("head").0, 40);
}

#[tokio::test]
async fn concurrent_claims_never_take_the_same_mail() {
    let (s, _dir) = store().await;
    let fx = Effects {
        audit: vec![],
        mails: (0..40).map(mail).collect(),
    };
    s.append_audit(&fx).await.expect("queue");
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.claim_mails(2_000, 2_000 + MINUTE, 15)
                .await
                .expect("claim")
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        for m in t.await.expect("task") {
            total += 1;
            assert!(seen.insert(m.id), "a mail was claimed twice");
        }
    }
    assert_eq!(total, 40);
    assert!(
        s.claim_mails(2_001, 3_000, 100)
            .await
            .expect("claim")
            .is_empty(),
        "all leased"
    );
}
