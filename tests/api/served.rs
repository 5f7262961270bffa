//! What the running server does, not what its functions can do: the `rampart` binary as a
//! newcomer or an operator starts it, and the app under `app::serve` with every background
//! job on its own loop. Each documented setting, job and start-up rule has a test here or
//! in another module that goes through one of the two.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::api_keys::{authz, hmac_hex};
use crate::helpers::*;

/// A `rampart` process; killed when dropped. Its stdout and stderr lines are collected.
struct Rampart {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Drop for Rampart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rampart ARGS` in `dir` with `env` (and none of the test runner's RAMPART_ settings but
/// the ones given).
fn rampart(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Rampart {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RAMPART_LOG", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("RAMPART_") && k != "RAMPART_LOG" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("rampart starts");
    let output = Arc::new(Mutex::new(Vec::new()));
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                sink.lock().expect("output").push(line);
            }
        });
    }
    Rampart { child, output }
}

impl Rampart {
    fn text(&self) -> String {
        self.output.lock().expect("output").join("\n")
    }

    /// Waits until a line contains `needle`; returns everything printed so far.
    async fn wait_for(&self, needle: &str) -> String {
        for _ in 0..600 {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{needle:?} never appeared; output:\n{}", self.text());
    }

    /// Waits for the process to end; returns its exit status and output.
    async fn exit(&mut self) -> (std::process::ExitStatus, String) {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return (status, self.text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("still running; output:\n{}", self.text());
    }

    /// The port from the banner's first line, `Rampart listening on 127.0.0.1:PORT`.
    async fn port(&self) -> u16 {
        let text = self.wait_for("Rampart listening on").await;
        text.lines()
            .find_map(|l| l.strip_prefix("Rampart listening on 127.0.0.1:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {text}"))
    }
}

fn serve_args(database_url: &str) -> Vec<&str> {
    vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        database_url,
    ]
}

#[tokio::test]
async fn without_smtp_or_the_dev_mailbox_serve_refuses_to_start_and_says_how() {
    let (db, _keep) = fresh_database().await;
    let dir = tempfile::tempdir().expect("dir");
    let mut r = rampart(dir.path(), &serve_args(&db), &[]);
    let (status, text) = r.exit().await;
    assert!(!status.success(), "{text}");
    assert!(text.contains("no way to send mail"), "{text}");
    assert!(
        text.contains("RAMPART_SMTP_URL") && text.contains("--dev-mailbox"),
        "says both ways out: {text}"
    );
    assert!(
        !dir.path().join("rampart.key").exists(),
        "a refused start leaves no key file behind"
    );
}

#[tokio::test]
async fn the_dev_mailbox_is_asked_for_loudly_and_its_links_lead_back_to_the_server() {
    let (db, _keep) = fresh_database().await;
    let dir = tempfile::tempdir().expect("dir");
    let mut args = serve_args(&db);
    args.push("--dev-mailbox");
    let server = rampart(dir.path(), &args, &[]);
    let port = server.port().await;
    let banner = server.wait_for("DEV MAILBOX ON").await;
    let public = format!("http://localhost:{port}");
    assert!(
        banner.contains(&format!("open: {public}/signin")),
        "the banner gives the URL where passkeys work: {banner}"
    );
    assert!(!banner.contains("WARNING"), "{banner}");

    let c = TestClient::new(&format!("http://127.0.0.1:{port}"), CHROME_LINUX);
    let r = c
        .post(
            "/api/v1/accounts",
            json!({"email": "dev@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let mut page = String::new();
    for _ in 0..100 {
        page = c.get("/dev/mailbox").await.body;
        if page.contains("dev@example.com") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(page.contains("confirmation code is"), "{page}");
    assert!(
        page.contains(&format!("<a href=\"{public}/")),
        "links in mails point at the port served and are clickable: {page}"
    );
}

#[tokio::test]
async fn a_public_url_that_cannot_reach_this_server_is_warned_about() {
    let (db, _keep) = fresh_database().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = rampart(
        dir.path(),
        &serve_args(&db),
        &[
            ("RAMPART_DEV_MAILBOX", "true"),
            ("RAMPART_PUBLIC_URL", "http://localhost:1"),
        ],
    );
    let text = server.wait_for("WARNING").await;
    assert!(text.contains("links in mails will not reach it"), "{text}");
}

#[tokio::test]
async fn a_route_table_that_cannot_work_stops_the_server_with_the_reason() {
    let (db, _keep) = fresh_database().await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("rampart.toml"),
        "dev_mailbox = true\n\n[[gateway_routes]]\npath_prefix = \"/sapi/v1\"\npermission = \"read\"\n\n\
         [[gateway_routes]]\nmethod = \"GET\"\npath_prefix = \"/sapi/v1/capital/withdraw/address\"\npermission = \"withdraw\"\n",
    )
    .expect("write");
    let mut r = rampart(dir.path(), &serve_args(&db), &[]);
    let (status, text) = r.exit().await;
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("gateway_routes rule 2") && text.contains("never used"),
        "{text}"
    );
}

#[tokio::test]
async fn configured_routes_from_rampart_toml_are_what_the_gateway_enforces() {
    let (db, dir) = fresh_database().await;
    let toml = "[[gateway_routes]]\nmethod = \"GET\"\npath_prefix = \"/sapi/v1/capital/withdraw/address\"\npermission = \"withdraw\"\n";
    let mut settings: rampart::config::Settings = toml::from_str(toml).expect("valid toml");
    let defaults = test_settings(&db);
    settings.database_url = db.as_str().into();
    settings.secret_key = defaults.secret_key;
    settings.public_url = defaults.public_url;
    settings.dev_mailbox = true;
    settings.geoip_paths = Vec::new();
    let app = spawn_served_from(settings, dir).await;
    let c = app.signed_in("rio@example.com").await;
    app.step_up_by_email(&c, "rio@example.com").await;
    let r = c
        .post(
            "/api/v1/me/api-keys",
            json!({"label": "reader", "type": "hmac", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let k = r.json();
    let (key, secret) = (
        k["api_key"].as_str().expect("k").to_owned(),
        k["secret"].as_str().expect("s").to_owned(),
    );
    let params = format!("timestamp={}", app.clock.now_ms());
    let sign = |path: &str| format!("{path}?{params}&signature={}", hmac_hex(&secret, &params));
    let gw = app.client();
    let r = authz(
        &gw,
        &key,
        "GET",
        &sign("/sapi/v1/capital/withdraw/address/list"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.code(), "permission_missing");
    assert!(r.body.contains("withdraw"), "{}", r.body);
    // The configured table replaces the default one: a route it does not list is refused
    // (403 to nginx, which understands no 404 from its auth subrequest).
    let r = authz(&gw, &key, "GET", &sign("/api/v3/account")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.code(), "unknown_route");
}

#[tokio::test]
async fn a_freeze_reaches_a_webhook_added_with_the_cli_within_seconds() {
    let (db, dir) = fresh_database().await;
    let settings = test_settings(&db);
    let key = settings.secret_key.clone().expect("key");
    let (url, got) = crate::protection::receiver(0).await;
    let work = tempfile::tempdir().expect("dir");
    let mut cli = rampart(
        work.path(),
        &["webhook", "add", &url, "--database-url", &db],
        &[("RAMPART_SECRET_KEY", key.expose_secret())],
    );
    let (status, text) = cli.exit().await;
    assert!(status.success(), "{text}");
    let secret = text
        .lines()
        .find(|l| l.starts_with("signing secret"))
        .and_then(|l| l.rsplit(' ').next())
        .expect("secret printed")
        .to_owned();

    let app = spawn_served_from(settings, dir).await;
    let c = app.signed_in("fay@example.com").await;
    let r = c.post("/api/v1/me/freeze", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Nobody calls a delivery function here: the server's own loop must do it.
    let mut received = Vec::new();
    for _ in 0..100 {
        received = got.lock().expect("got").clone();
        if received.iter().any(|(_, _, b)| b.contains("frozen")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (sig, _, body) = received
        .iter()
        .find(|(_, _, b)| b.contains("frozen"))
        .unwrap_or_else(|| panic!("no freeze event within 10 s: {received:?}"));
    assert_eq!(
        sig,
        &format!("sha256={}", hmac_hex(&secret, body)),
        "signed as documented with the secret the CLI printed"
    );
    for (_, _, body) in &received {
        assert!(
            !body.contains("/freeze/"),
            "a freeze link is a bearer token for the owner's mailbox, never for webhook logs: {body}"
        );
    }
}

#[tokio::test]
async fn the_demo_starts_from_its_known_state_every_time() {
    let (db, _keep) = fresh_database().await;
    let dir = tempfile::tempdir().expect("dir");
    let mut args = serve_args(&db);
    args.push("--demo");
    let first = rampart(dir.path(), &args, &[]);
    let text = first.wait_for("demo account:").await;
    assert!(!text.contains("reset"), "{text}");
    drop(first);
    // What a visitor may have done since: frozen it, changed its password.
    raw_sql(
        &db,
        "UPDATE accounts SET frozen_at = 1, password_hash = 'changed' WHERE email = 'demo@rampart.example'",
    )
    .await;
    let second = rampart(dir.path(), &args, &[]);
    let text = second.wait_for("demo account:").await;
    assert!(text.contains("demo account reset"), "{text}");
    let port = second.port().await;
    let c = TestClient::new(&format!("http://127.0.0.1:{port}"), CHROME_LINUX);
    let r = c
        .post(
            "/api/v1/sessions",
            json!({"email": rampart::demo::DEMO_EMAIL, "password": rampart::demo::DEMO_PASSWORD}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the printed credentials work: {}",
        r.body
    );
}

#[tokio::test]
async fn a_weakening_takes_effect_from_serve_s_own_timed_loop() {
    let (db, dir) = fresh_database().await;
    let app = spawn_served_from(test_settings(&db), dir).await;
    let email = "tim@example.com";
    let c = app.signed_in(email).await;
    app.step_up_by_email(&c, email).await;
    let r = c
        .put(
            "/api/v1/me/notification-preferences",
            json!({"kind": "signin", "enabled": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let account = app
        .store()
        .account_by_email(email)
        .await
        .expect("read")
        .expect("account");
    app.clock.advance(48 * rampart::clock::HOUR);
    // Nobody calls `timed::step` here: the loop `serve` started must apply it (every 5 s).
    let mut mutes = Vec::new();
    for _ in 0..100 {
        mutes = app.store().mail_mutes(&account.id).await.expect("mutes");
        if !mutes.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mutes, vec![rampart::domain::mail_kind::MailKind::Signin]);
}

#[tokio::test]
async fn a_public_url_on_an_ip_address_is_refused_with_the_fix() {
    let (db, _keep) = fresh_database().await;
    let dir = tempfile::tempdir().expect("dir");
    let mut r = rampart(
        dir.path(),
        &serve_args(&db),
        &[
            ("RAMPART_DEV_MAILBOX", "true"),
            ("RAMPART_PUBLIC_URL", "http://127.0.0.1:8091"),
        ],
    );
    let (status, text) = r.exit().await;
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("IP address") && text.contains("http://localhost:8091"),
        "{text}"
    );
}

#[tokio::test]
async fn serve_with_gateway_flags_verifies_and_forwards_on_its_second_port() {
    let (db, dir) = fresh_database().await;
    let key = test_settings(&db).secret_key.expect("key");
    let (upstream, received) = crate::gateway_listener::recording_upstream().await;
    let mut args = serve_args(&db);
    args.extend([
        "--dev-mailbox",
        "--gateway-listen",
        "127.0.0.1:0",
        "--gateway-upstream",
        &upstream,
    ]);
    let r = rampart(
        dir.as_ref().map_or(std::path::Path::new("."), |d| d.path()),
        &args,
        &[("RAMPART_SECRET_KEY", key.expose_secret())],
    );
    let text = r.wait_for("gateway listening on").await;
    let gateway = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("gateway listening on "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no gateway address in {text}"))
        .to_owned();
    assert!(
        text.contains(&upstream),
        "the banner names the upstream: {text}"
    );
    let http = reqwest::Client::new();
    let ping = http
        .get(format!("http://{gateway}/api/v3/ping"))
        .send()
        .await
        .expect("ping");
    assert_eq!(ping.status(), StatusCode::OK);
    let refused = http
        .get(format!(
            "http://{gateway}/api/v3/account?timestamp=1&signature=00"
        ))
        .send()
        .await
        .expect("account");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["code"], -2014, "{body}");
    let seen = received.lock().expect("log").clone();
    assert_eq!(seen.len(), 1, "only the ping was forwarded");
    assert_eq!(seen[0].uri, "/api/v3/ping");
}

#[tokio::test]
async fn a_gateway_without_an_upstream_does_not_start() {
    let (db, dir) = fresh_database().await;
    let work = tempfile::tempdir().expect("dir");
    let _ = dir;
    let mut r = rampart(
        work.path(),
        &serve_args(&db),
        &[
            ("RAMPART_GATEWAY_LISTEN", "127.0.0.1:0"),
            ("RAMPART_DEV_MAILBOX", "true"),
        ],
    );
    let (status, text) = r.exit().await;
    assert!(!status.success(), "{text}");
    assert!(text.contains("gateway_upstream is not"), "{text}");
    let mut r = rampart(
        work.path(),
        &serve_args(&db),
        &[
            ("RAMPART_GATEWAY_LISTEN", "127.0.0.1:0"),
            ("RAMPART_GATEWAY_UPSTREAM", "ftp://files.example"),
            ("RAMPART_DEV_MAILBOX", "true"),
        ],
    );
    let (status, text) = r.exit().await;
    assert!(!status.success(), "{text}");
    assert!(text.contains("http:// or https://"), "{text}");
}
