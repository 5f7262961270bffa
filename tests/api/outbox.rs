use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::helpers::*;
use rampart::clock::{MINUTE, SECOND};
use rampart::jobs::outbox::{LEASE, MAX_ATTEMPTS};

/// A minimal SMTP server that accepts every message and keeps its DATA.
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.ok();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = data.as_mut() {
                        if line == "." {
                            store
                                .lock()
                                .expect("sink")
                                .push(data.take().unwrap_or_default());
                            write.write_all(b"250 queued\r\n").await.ok();
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.ok();
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await.ok();
                }
            });
        }
    });
    (port, received)
}

#[tokio::test]
async fn mail_is_delivered_through_a_real_smtp_conversation() {
    let (port, received) = smtp_sink().await;
    let app = spawn_app_with(|s| s.smtp_url = Some(format!("smtp://127.0.0.1:{port}"))).await;
    let r = app
        .client()
        .post(
            "/api/v1/accounts",
            json!({"email": "sam@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let report = app.worker.drain().await.expect("drain");
    assert_eq!(report.sent, 1);
    let got = received.lock().expect("sink").clone();
    assert_eq!(got.len(), 1);
    let message = &got[0];
    assert!(
        message.contains("Subject: [Rampart] Confirm your email address"),
        "{message}"
    );
    assert!(message.contains("To: sam@example.com"));
    assert!(
        message.contains("Message-ID: <"),
        "an idempotency id for duplicate detection"
    );
    assert!(message.contains("confirmation code is"));
    // No local mailbox when real mail goes out.
    assert_eq!(
        app.client().get("/dev/mailbox").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff_then_given_up() {
    // Port 1 on loopback: connection refused.
    let app = spawn_app_with(|s| s.smtp_url = Some("smtp://127.0.0.1:1".into())).await;
    app.client()
        .post(
            "/api/v1/accounts",
            json!({"email": "tia@example.com", "password": PASSWORD}),
        )
        .await;
    let r = app.worker.step().await.expect("step");
    assert_eq!((r.sent, r.failed), (0, 1));
    assert_eq!(
        app.worker.step().await.expect("step").failed,
        0,
        "not retried before its backoff"
    );
    app.clock.advance(30 * SECOND);
    assert_eq!(
        app.worker.step().await.expect("step").failed,
        1,
        "retried after 30 s"
    );
    app.clock.advance(30 * SECOND);
    assert_eq!(
        app.worker.step().await.expect("step").failed,
        0,
        "then waits a minute"
    );
    app.clock.advance(30 * SECOND);
    assert_eq!(app.worker.step().await.expect("step").failed, 1);
    for _ in 3..MAX_ATTEMPTS {
        app.clock.advance(60 * MINUTE);
        app.worker.step().await.expect("step");
    }
    let mail = app
        .store()
        .recent_mails(10)
        .await
        .expect("mails")
        .into_iter()
        .next()
        .expect("mail");
    assert_eq!(mail.attempts, MAX_ATTEMPTS);
    assert!(
        mail.dead_at.is_some(),
        "given up after {MAX_ATTEMPTS} tries"
    );
    assert!(
        mail.last_error.expect("error kept").contains("onnection"),
        "the reason is kept"
    );
    app.clock.advance(60 * MINUTE);
    assert_eq!(app.worker.step().await.expect("step").failed, 0);
}

#[tokio::test]
async fn a_worker_that_dies_mid_batch_loses_nothing() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.client()
            .post(
                "/api/v1/accounts",
                json!({"email": format!("u{i}@example.com"), "password": PASSWORD}),
            )
            .await;
    }
    // A worker claims the batch, then dies before delivering anything.
    let now = app.clock.now_ms();
    let claimed = app
        .store()
        .claim_mails(now, now + LEASE, 3)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    // Another worker delivers what is not leased, and nothing twice.
    assert_eq!(app.worker.drain().await.expect("drain").sent, 2);
    // When the lease runs out, the dead worker's mails are delivered.
    app.clock.advance(LEASE);
    assert_eq!(app.worker.drain().await.expect("drain").sent, 3);
    let mails = app.store().recent_mails(10).await.expect("mails");
    assert_eq!(mails.len(), 5);
    assert!(mails.iter().all(|m| m.sent_at.is_some()));
    assert_eq!(app.worker.drain().await.expect("drain").sent, 0);
}
