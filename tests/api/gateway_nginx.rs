//! The documented nginx configuration (`deploy/nginx-gateway.conf`), as pasted, in front
//! of a tiny upstream: signed requests go through nginx to Rampart's `/authz` and on.
//! Needs Debian's `nginx`; skipped (loudly) without it, except in CI where it must run.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::json;

use crate::api_keys::hmac_hex;
use crate::helpers::*;

/// A running nginx, stopped when dropped.
pub(crate) struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// What the upstream received, in order: method and URI as they arrived.
type Received = Arc<Mutex<Vec<String>>>;

/// Echoes the identity nginx passes on, and records every request it receives.
async fn upstream() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let log = received.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, method: axum::http::Method, uri: axum::http::Uri| async move {
        log.lock().expect("log").push(format!("{method} {uri}"));
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        axum::Json(json!({
            "method": method.as_str(), "uri": uri.to_string(),
            "uid": h("x-rampart-uid"), "key": h("x-rampart-key"), "permissions": h("x-rampart-permissions"),
            "locked_until": h("x-rampart-withdrawals-locked-until"),
            "method_override": h("x-http-method-override"),
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("upstream") });
    (addr, received)
}

fn start_nginx(
    dir: &std::path::Path,
    rampart: SocketAddr,
    api: SocketAddr,
    port: u16,
) -> Option<Nginx> {
    let documented = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/nginx-gateway.conf"
    ))
    .expect("documented config");
    let gateway = documented
        .replace("127.0.0.1:8080", &rampart.to_string())
        .replace("127.0.0.1:9000", &api.to_string())
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{port}"));
    assert_ne!(
        gateway, documented,
        "the documented addresses were found and replaced"
    );
    run_nginx(dir, &gateway, "")
}

/// Starts nginx (in the foreground, as a child) with a prefix in `dir`: `gateway` is
/// included in the `http` block, `main` (e.g. `load_module ...;`) goes before it. None
/// when nginx is not installed.
pub(crate) fn run_nginx(dir: &std::path::Path, gateway: &str, main: &str) -> Option<Nginx> {
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    std::fs::write(dir.join("gateway.conf"), gateway).expect("write");
    let d = dir.display();
    let main = format!(
        "{main}daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 256; }}\nhttp {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n \
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n include {d}/gateway.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).expect("write");
    let child = Command::new(nginx)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx starts");
    Some(Nginx(child))
}

/// Rampart (trusting nginx's X-Forwarded-For), the upstream API and nginx with the
/// documented configuration in front of both.
struct Gateway {
    app: TestApp,
    base: String,
    received: Received,
    _nginx: Nginx,
    _dir: tempfile::TempDir,
}

async fn gateway() -> Option<Gateway> {
    let app =
        spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")]).await;
    let (api, received) = upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let rampart: SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let Some(nginx) = start_nginx(dir.path(), rampart, api, port) else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must install nginx (apt-get install nginx)"
        );
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx)");
        return None;
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{base}/")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    received.lock().expect("log").clear();
    Some(Gateway {
        app,
        base,
        received,
        _nginx: nginx,
        _dir: dir,
    })
}

/// Sends one request with its path exactly as written (HTTP clients normalise `..` and
/// `%2e` away before sending, attackers do not); returns the status and the body.
async fn raw_request(base: &str, method: &str, target: &str, key: &str) -> (u16, String) {
    raw_request_with(base, method, target, key, "").await
}

/// [`raw_request`] with extra header lines (each ending in `\r\n`).
async fn raw_request_with(
    base: &str,
    method: &str,
    target: &str,
    key: &str,
    extra_headers: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nX-MBX-APIKEY: {key}\r\n{extra_headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn paths_that_the_upstream_would_route_elsewhere_are_refused_before_it() {
    let Some(gw) = gateway().await else {
        return;
    };
    let (app, base, received) = (&gw.app, &gw.base, &gw.received);
    let c = app.signed_in("ola@example.com").await;
    app.step_up_by_email(&c, "ola@example.com").await;
    let created = c.post("/api/v1/me/api-keys", json!({"label": "trader", "type": "hmac", "permissions": ["read", "spot_trade"], "ip_allowlist": ["127.0.0.1"]})).await.json();
    let (key, secret) = (
        created["api_key"].as_str().expect("k").to_owned(),
        created["secret"].as_str().expect("s").to_owned(),
    );
    let now = app.clock.now_ms();
    let params = format!("coin=BTC&amount=1&timestamp={now}");
    let query = format!("{params}&signature={}", hmac_hex(&secret, &params));
    for (method, path) in [
        (
            "POST",
            "/api/v3/order/../../../sapi/v1/capital/withdraw/apply",
        ),
        (
            "POST",
            "/api/v3/order/%2e%2e/%2e%2e/%2e%2e/sapi/v1/capital/withdraw/apply",
        ),
        (
            "POST",
            "/api/v3/order/..%2f..%2f..%2fsapi/v1/capital/withdraw/apply",
        ),
        ("GET", "/sapi/v1//asset/transfer"),
        ("GET", "/sapi/v1/asset/%74ransfer"),
        ("GET", "/sapi/v1/asset\\transfer"),
        ("GET", "/sapi/v1/asset/./transfer"),
    ] {
        let (status, body) = raw_request(base, method, &format!("{path}?{query}"), &key).await;
        assert!(
            status == 401 || status == 400,
            "{method} {path}: refused, got {status} {body}"
        );
        if status == 401 {
            assert!(
                body.contains("non_canonical_path"),
                "{method} {path}: {body}"
            );
        }
    }
    // Upper case is the same route to a case-insensitive upstream, and needs the same
    // permission.
    let (status, body) = raw_request(
        base,
        "POST",
        &format!("/SAPI/v1/asset/transfer?{query}"),
        &key,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("permission_missing"), "{body}");
    assert_eq!(
        received.lock().expect("log").clone(),
        Vec::<String>::new(),
        "nothing reached the upstream"
    );
    // The canonical form of an allowed request still passes.
    let (status, body) = raw_request(base, "GET", &format!("/api/v3/account?{query}"), &key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(received.lock().expect("log").len(), 1);
    let echoed: serde_json::Value = serde_json::from_str(&body).expect("echo");
    assert_eq!(echoed["locked_until"], "", "no lock, no header");
    // A method override would make many frameworks run POST where GET was authorised.
    let (status, body) = raw_request_with(
        base,
        "GET",
        &format!("/api/v3/account?{query}"),
        &key,
        "X-HTTP-Method-Override: POST\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let echoed: serde_json::Value = serde_json::from_str(&body).expect("echo");
    assert_eq!(echoed["method_override"], "", "blanked by the proxy");

    // After a password change the API learns of the 24 h withdrawal lock from nginx.
    crate::api_keys::change_password(app, &c, "ola@example.com", "Fresh-garden-lamp-2031").await;
    let (status, body) = raw_request(base, "GET", &format!("/api/v3/account?{query}"), &key).await;
    assert_eq!(status, 200, "{body}");
    let echoed: serde_json::Value = serde_json::from_str(&body).expect("echo");
    let until: i64 = echoed["locked_until"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("lock end in ms");
    assert!(until > app.clock.now_ms());
    // And a withdrawal refused through nginx says until when.
    let w = c.post("/api/v1/me/api-keys", json!({"label": "treasury", "type": "hmac", "permissions": ["read", "withdraw"], "ip_allowlist": ["127.0.0.1"]})).await.json();
    let (wkey, wsecret) = (
        w["api_key"].as_str().expect("k").to_owned(),
        w["secret"].as_str().expect("s").to_owned(),
    );
    let wquery = format!("{params}&signature={}", hmac_hex(&wsecret, &params));
    let (status, body) = raw_request(
        base,
        "POST",
        &format!("/sapi/v1/capital/withdraw/apply?{wquery}"),
        &wkey,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("withdrawals_locked"), "{body}");
    assert!(
        body.contains(&format!("\"locked_until\":\"{until}\"")),
        "{body}"
    );
}

#[tokio::test]
async fn signed_requests_pass_through_nginx_and_refusals_keep_their_reason() {
    let Some(gw) = gateway().await else {
        return;
    };
    let (app, base) = (&gw.app, &gw.base);
    let http = reqwest::Client::new();

    let c = app.signed_in("nia@example.com").await;
    app.step_up_by_email(&c, "nia@example.com").await;
    let r = c.post("/api/v1/me/api-keys", json!({"label": "bot", "type": "hmac", "permissions": ["read", "spot_trade"], "ip_allowlist": ["127.0.0.1"]})).await;
    let created = r.json();
    let (key, secret) = (
        created["api_key"].as_str().expect("k").to_owned(),
        created["secret"].as_str().expect("s").to_owned(),
    );
    let uid = c.get("/api/v1/me").await.json()["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let signed = |path: &str, params: String| {
        format!(
            "{base}{path}?{params}&signature={}",
            hmac_hex(&secret, &params)
        )
    };

    let now = app.clock.now_ms();
    let r = http
        .post(signed(
            "/api/v3/order",
            format!("symbol=BTCUSDT&side=BUY&quantity=1&timestamp={now}"),
        ))
        .header("x-mbx-apikey", &key)
        .header("x-rampart-uid", "spoofed")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    let echoed: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        echoed["uid"],
        uid.as_str(),
        "the upstream sees Rampart's identity, not the client's"
    );
    assert_eq!(echoed["key"], key.as_str());
    assert_eq!(echoed["permissions"], "read,spot_trade");
    assert_eq!(echoed["method"], "POST");

    let refused = |r: reqwest::Response, status: StatusCode, code: &'static str| async move {
        assert_eq!(r.status(), status, "{code}");
        let body: serde_json::Value = r.json().await.expect("JSON refusal");
        assert_eq!(body["error"]["code"], code);
    };
    let bad =
        signed("/api/v3/account", format!("timestamp={now}")).replace("timestamp=", "timestamp=1");
    refused(
        http.get(bad)
            .header("x-mbx-apikey", &key)
            .send()
            .await
            .expect("req"),
        StatusCode::UNAUTHORIZED,
        "timestamp_outside_window",
    )
    .await;
    let tampered = signed("/api/v3/account", format!("symbol=A&timestamp={now}"))
        .replace("symbol=A", "symbol=B");
    refused(
        http.get(tampered)
            .header("x-mbx-apikey", &key)
            .send()
            .await
            .expect("req"),
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    )
    .await;
    let withdraw = signed(
        "/sapi/v1/capital/withdraw/apply",
        format!("coin=BTC&timestamp={now}"),
    );
    refused(
        http.post(withdraw)
            .header("x-mbx-apikey", &key)
            .send()
            .await
            .expect("req"),
        StatusCode::FORBIDDEN,
        "permission_missing",
    )
    .await;
    refused(
        http.get(format!("{base}/api/v3/account?timestamp={now}"))
            .header("x-mbx-apikey", &key)
            .send()
            .await
            .expect("req"),
        StatusCode::UNAUTHORIZED,
        "missing_parameter",
    )
    .await;
    refused(
        http.get(format!("{base}/api/v3/account"))
            .send()
            .await
            .expect("req"),
        StatusCode::UNAUTHORIZED,
        "missing_api_key",
    )
    .await;
}
