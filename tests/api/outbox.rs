use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::helpers::*;
use rampart::clock::{MINUTE, SECOND};
use rampart::jobs::outbox::{LEASE, MAX_ATTEMPTS};

/// A minimal SMTP server that accepts every message and keeps its DATA.
pub(crate) async fn smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    sink(usize::MAX).await
}

#[tokio::test]
async fn mail_is_delivered_through_a_real_smtp_conversation() {
    let (port, received) = smtp_sink().await;
    let app = spawn_app_with(|s| {
        s.smtp_url = Some(format!("smtp://127.0.0.1:{port}").into());
        s.dev_mailbox = false;
    })
    .await;
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
    let app = spawn_app_with(|s| {
        s.smtp_url = Some("smtp://127.0.0.1:1".into());
        s.dev_mailbox = false;
    })
    .await;
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

/// An SMTP sink that accepts `accept` messages, then swallows the next DATA and never
/// answers (the sending process is killed while it waits).
async fn sink(accept: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
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
                            let stall = store.lock().expect("sink").len() >= accept;
                            if stall {
                                std::future::pending::<()>().await;
                            }
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

pub(crate) struct Server(std::process::Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real `rampart` binary (a separate process) on the test database.
pub(crate) fn start_binary(database_url: &str, dir: &std::path::Path, smtp_port: u16) -> Server {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .env("RAMPART_SMTP_URL", format!("smtp://127.0.0.1:{smtp_port}"))
        .env("RAMPART_SECRET_KEY_FILE", dir.join("key"))
        .env("RAMPART_OUTBOX_LEASE_MS", "1000")
        .env("RAMPART_OUTBOX_POLL_MS", "100")
        .env("RAMPART_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .env_remove("RAMPART_TEST_DATABASE_URL")
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("rampart starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    Server(child, port)
}

#[tokio::test]
async fn killing_the_process_mid_batch_loses_no_mail() {
    let (database_url, dir) = fresh_database().await;
    let work = tempfile::tempdir().expect("dir");
    let (stall_port, first) = sink(3).await;
    let server = start_binary(&database_url, work.path(), stall_port);
    let c = TestClient::new(&format!("http://127.0.0.1:{}", server.1), CHROME_LINUX);
    for i in 0..10 {
        let r = c
            .post(
                "/api/v1/accounts",
                json!({"email": format!("k{i}@example.com"), "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    for _ in 0..200 {
        if first.lock().expect("sink").len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        first.lock().expect("sink").len(),
        3,
        "three delivered, the fourth stalls"
    );
    // kill -9 in the middle of the batch.
    drop(server);

    let (ok_port, second) = smtp_sink().await;
    let _restarted = start_binary(&database_url, work.path(), ok_port);
    let mut ids = std::collections::HashSet::new();
    for _ in 0..200 {
        ids = first
            .lock()
            .expect("s")
            .iter()
            .chain(second.lock().expect("s").iter())
            .filter_map(|m| {
                m.lines()
                    .find(|l| l.starts_with("Message-ID:"))
                    .map(str::to_owned)
            })
            .collect();
        if ids.len() >= 10 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ids.len(), 10, "every mail arrived after the restart");
    let delivered = first.lock().expect("s").len() + second.lock().expect("s").len();
    assert!(
        delivered <= 11,
        "at most the interrupted mail twice ({delivered}), and its Message-ID says so"
    );
    drop(dir);
}
