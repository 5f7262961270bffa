//! `spawn_app()`: the real server on port 0 with a fresh database (a temp SQLite file, or a
//! fresh PostgreSQL database when RAMPART_TEST_DATABASE_URL is set), a manual clock, and
//! the outbox worker driven by the test instead of a timer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rampart::app::App;
use rampart::clock::{Clock, ManualClock, SystemClock};
use rampart::config::Settings;
use rampart::http::AppState;
use rampart::jobs::outbox::OutboxWorker;
use rampart::store::{OutboxMail, SharedStore};
use reqwest::header::{HeaderMap, HeaderValue, COOKIE, SET_COOKIE, USER_AGENT};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;
use sqlx::Connection;

use crate::test_logs;

pub const CHROME_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
pub const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
pub const PASSWORD: &str = "Tr0ub4dor&3-horse-staple-battery";

pub struct TestApp {
    pub base: String,
    /// The gateway listener's base URL, when the settings set `gateway_listen`.
    pub gateway: Option<String>,
    pub clock: ManualClock,
    pub state: AppState,
    pub worker: OutboxWorker,
    pub database_url: String,
    _dir: Option<tempfile::TempDir>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A fresh, empty database URL for this test.
pub async fn fresh_database() -> (String, Option<tempfile::TempDir>) {
    match std::env::var("RAMPART_TEST_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => {
            let name = format!("rampart_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to RAMPART_TEST_DATABASE_URL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            conn.close().await.ok();
            let (prefix, _) = admin.rsplit_once('/').expect("URL with a database name");
            let query = admin
                .split_once('?')
                .map(|(_, q)| format!("?{q}"))
                .unwrap_or_default();
            (format!("{prefix}/{name}{query}"), None)
        }
        _ => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("rampart.db").display());
            (url, Some(dir))
        }
    }
}

pub fn test_settings(database_url: &str) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        database_url: database_url.into(),
        secret_key: Some(
            rampart::domain::secret::ServerKey::generate()
                .to_base64()
                .into(),
        ),
        geoip_paths: Vec::new(),
        public_url: Some("http://rampart.test".to_owned()),
        dev_mailbox: true,
        ..Settings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let (database_url, dir) = fresh_database().await;
    let mut settings = test_settings(&database_url);
    configure(&mut settings);
    spawn_app_from(settings, dir).await
}

/// A second instance on the same database and key as `first` (PostgreSQL deployments).
pub async fn spawn_second_instance(first: &TestApp, key: &str) -> TestApp {
    let mut settings = test_settings(&first.database_url);
    settings.secret_key = Some(key.into());
    spawn_app_from(settings, None).await
}

pub async fn spawn_app_from(settings: Settings, dir: Option<tempfile::TempDir>) -> TestApp {
    spawn(settings, dir, false).await
}

/// The app under `rampart::app::serve`, exactly as `rampart serve` runs it: every
/// background job (outbox, timed work, webhooks) runs on its own loop beside the server.
pub async fn spawn_served_from(settings: Settings, dir: Option<tempfile::TempDir>) -> TestApp {
    spawn(settings, dir, true).await
}

/// Builds the app on a manual clock and serves it on a fresh port: the router alone (the
/// test drives the jobs), or `app::serve` with its background loops.
async fn spawn(settings: Settings, dir: Option<tempfile::TempDir>, with_jobs: bool) -> TestApp {
    test_logs::install();
    if let Some(key) = &settings.secret_key {
        test_logs::record("server secret key", key.expose_secret());
    }
    let database_url = settings.database_url.expose_secret().to_owned();
    let clock = ManualClock::new(SystemClock.now());
    let mut app: App = rampart::app::build(settings, Arc::new(clock.clone()))
        .await
        .expect("app builds");
    let gateway = app.gateway.as_ref().map(|g| format!("http://{}", g.addr));
    if !with_jobs {
        if let Some(g) = app.gateway.take() {
            let (never, stop) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let _never = never;
                rampart::http::gateway::serve(
                    g.listener,
                    g.handler,
                    g.header_timeout,
                    g.max_connections,
                    stop,
                )
                .await
                .expect("gateway runs")
            });
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (state, worker) = (app.state.clone(), app.worker.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    tokio::spawn(async move {
        if with_jobs {
            rampart::app::serve(app, listener, stopped)
                .await
                .expect("server runs");
        } else {
            let service = app
                .router
                .into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, service)
                .with_graceful_shutdown(stopped)
                .await
                .expect("server runs");
        }
    });
    TestApp {
        base: format!("http://{addr}"),
        gateway,
        clock,
        state,
        worker,
        database_url,
        _dir: dir,
        _stop: stop,
    }
}

impl TestApp {
    pub fn store(&self) -> &SharedStore {
        &self.state.store
    }

    pub fn client(&self) -> TestClient {
        TestClient::new(&self.base, CHROME_LINUX)
    }

    pub fn client_with_ua(&self, ua: &str) -> TestClient {
        TestClient::new(&self.base, ua)
    }

    /// Delivers every due mail, then returns all mails to `to`, oldest first.
    pub async fn mails_to(&self, to: &str) -> Vec<OutboxMail> {
        self.worker.drain().await.expect("outbox drains");
        let mut mails: Vec<OutboxMail> = self
            .store()
            .recent_mails(1000)
            .await
            .expect("mails")
            .into_iter()
            .filter(|m| m.to_addr == to)
            .collect();
        for mail in &mails {
            test_logs::record_mail(&mail.body_text);
        }
        mails.reverse();
        mails
    }

    /// The code in the newest confirmation mail to `to`.
    pub async fn confirmation_code(&self, to: &str) -> String {
        let mails = self.mails_to(to).await;
        let mail = mails
            .iter()
            .rev()
            .find(|m| m.body_text.contains("confirmation code is"))
            .expect("a confirmation mail");
        code_in(&mail.body_text)
    }

    /// Registers, confirms and signs in; returns the signed-in client.
    pub async fn signed_in(&self, email: &str) -> TestClient {
        let c = self.client();
        self.register_confirmed(&c, email).await;
        let r = c
            .post(
                "/api/v1/sessions",
                serde_json::json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        c
    }

    /// Clicks the newest new-device confirmation link mailed to `email`.
    pub async fn confirm_new_device(&self, email: &str) {
        let mails = self.mails_to(email).await;
        let mail = mails
            .iter()
            .rev()
            .find(|m| m.body_text.contains("/confirm-device/"))
            .expect("a device confirmation mail");
        let link = mail
            .body_text
            .lines()
            .find(|l| l.contains("/confirm-device/"))
            .expect("link")
            .trim();
        let path = link
            .strip_prefix("http://rampart.test")
            .expect("public url");
        let c = self.client();
        let page = c.get(path).await;
        let r = c.post_form(path, &[("csrf", &csrf_in(&page.body))]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    /// Another signed-in client (another device) of an existing account without second factor.
    pub async fn signed_in_again(&self, email: &str) -> TestClient {
        let c = self.client_with_ua(IPHONE);
        let r = c
            .post(
                "/api/v1/sessions",
                serde_json::json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.json()["status"], "device_confirmation_required");
        self.confirm_new_device(email).await;
        c
    }

    pub async fn register_confirmed(&self, c: &TestClient, email: &str) {
        let r = c
            .post(
                "/api/v1/accounts",
                serde_json::json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        let code = self.confirmation_code(email).await;
        let r = c
            .post(
                "/api/v1/accounts/confirm",
                serde_json::json!({"email": email, "code": code}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
}

pub fn code_in(body: &str) -> String {
    let at =
        body.find("confirmation code is ").expect("code sentence") + "confirmation code is ".len();
    body[at..at + 6].to_owned()
}

/// An HTTP client with its own cookie jar, so `Secure` cookies are kept over plain HTTP on
/// loopback exactly as a browser on localhost keeps them.
pub struct TestClient {
    pub base: String,
    pub http: reqwest::Client,
    pub jar: std::sync::Mutex<HashMap<String, String>>,
    pub user_agent: String,
    pub extra: std::sync::Mutex<HeaderMap>,
}

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The body as sent (for binary answers such as the incident report's PDF).
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// The stable error code of an error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.body))
            .to_owned()
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }
}

impl TestClient {
    pub fn new(base: &str, ua: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            jar: Default::default(),
            user_agent: ua.to_owned(),
            extra: Default::default(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().expect("jar").get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.jar
            .lock()
            .expect("jar")
            .insert(name.to_owned(), value.to_owned());
    }

    pub fn header(&self, name: &'static str, value: &str) {
        self.extra
            .lock()
            .expect("headers")
            .insert(name, HeaderValue::from_str(value).expect("header"));
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<(&str, Vec<u8>)>) -> Answer {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        req = req.header(USER_AGENT, self.user_agent.as_str());
        for (k, v) in self.extra.lock().expect("headers").iter() {
            req = req.header(k, v);
        }
        let cookies: Vec<String> = self
            .jar
            .lock()
            .expect("jar")
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !cookies.is_empty() {
            req = req.header(COOKIE, cookies.join("; "));
        }
        if let Some((content_type, bytes)) = body {
            if content_type == "application/json" {
                if let Ok(json) = serde_json::from_slice::<Value>(&bytes) {
                    test_logs::record_request_json(&json);
                }
            }
            req = req.header("content-type", content_type).body(bytes);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        for sc in headers.get_all(SET_COOKIE) {
            let sc = sc.to_str().expect("ascii cookie");
            let (pair, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            test_logs::record_cookie(name, value);
            let mut jar = self.jar.lock().expect("jar");
            if attrs.contains("Max-Age=0") || value.is_empty() {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
        let bytes = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        if let Ok(json) = serde_json::from_str::<Value>(&body) {
            test_logs::record_response_json(&json);
        }
        Answer {
            status,
            headers,
            body,
            bytes,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }
    pub async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None).await
    }
    pub async fn post(&self, path: &str, json: Value) -> Answer {
        self.send(
            Method::POST,
            path,
            Some(("application/json", json.to_string().into_bytes())),
        )
        .await
    }
    pub async fn put(&self, path: &str, json: Value) -> Answer {
        self.send(
            Method::PUT,
            path,
            Some(("application/json", json.to_string().into_bytes())),
        )
        .await
    }
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> Answer {
        self.send(Method::POST, path, Some((content_type, body.into())))
            .await
    }
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        test_logs::record_form(fields);
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            Method::POST,
            path,
            Some(("application/x-www-form-urlencoded", body.into_bytes())),
        )
        .await
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The CSRF token a page's forms carry.
pub fn csrf_in(html: &str) -> String {
    let at =
        html.find("name=\"csrf\" value=\"").expect("csrf field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().expect("value").to_owned()
}

/// Raw SQL on the test database (for tampering tests).
pub async fn raw_sql(database_url: &str, sql: &str) {
    // The test's own tampering is not the server's log: its statements (which may quote
    // a key or a token) stay out of the logs that the secret check reads.
    use sqlx::ConnectOptions;
    if database_url.starts_with("sqlite:") {
        let mut c = database_url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .expect("sqlite url")
            .disable_statement_logging()
            .connect()
            .await
            .expect("sqlite");
        sqlx::query(sql).execute(&mut c).await.expect("raw sql");
    } else {
        let mut c = database_url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .expect("pg url")
            .disable_statement_logging()
            .connect()
            .await
            .expect("pg");
        sqlx::query(sql).execute(&mut c).await.expect("raw sql");
    }
}

/// The code in the newest step-up mail to `to`.
pub async fn step_up_code(app: &TestApp, to: &str) -> String {
    const SENTENCE: &str = "confirm a security change is ";
    let mails = app.mails_to(to).await;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.body_text.contains(SENTENCE))
        .expect("a step-up code mail");
    let at = mail.body_text.find(SENTENCE).expect("sentence") + SENTENCE.len();
    mail.body_text[at..at + 6].to_owned()
}

impl TestApp {
    /// The step-up of an account without a second factor: asks for a mailed code and sends
    /// it with the password, so `c` may make sensitive changes for five minutes.
    pub async fn step_up_by_email(&self, c: &TestClient, email: &str) {
        let r = c
            .post("/api/v1/me/step-up/email-code", serde_json::json!({}))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        let code = step_up_code(self, email).await;
        let r = c
            .post(
                "/api/v1/me/step-up",
                serde_json::json!({"password": PASSWORD, "email_code": code}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
}
