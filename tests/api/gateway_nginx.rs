//! The documented nginx configuration (`deploy/nginx-gateway.conf`), as pasted, in front
//! of a tiny upstream: signed requests go through nginx to Rampart's `/authz` and on.
//! Needs Debian's `nginx`; skipped (loudly) without it, except in CI where it must run.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::json;

use crate::api_keys::hmac_hex;
use crate::helpers::*;

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Echoes the identity nginx passes on.
async fn upstream() -> SocketAddr {
    let app = axum::Router::new().fallback(|headers: HeaderMap, method: axum::http::Method, uri: axum::http::Uri| async move {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        axum::Json(json!({
            "method": method.as_str(), "uri": uri.to_string(),
            "uid": h("x-rampart-uid"), "key": h("x-rampart-key"), "permissions": h("x-rampart-permissions"),
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("upstream") });
    addr
}

fn start_nginx(
    dir: &std::path::Path,
    rampart: SocketAddr,
    api: SocketAddr,
    port: u16,
) -> Option<Nginx> {
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
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
    std::fs::write(dir.join("gateway.conf"), gateway).expect("write");
    let d = dir.display();
    let main = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
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

#[tokio::test]
async fn signed_requests_pass_through_nginx_and_refusals_keep_their_reason() {
    let app =
        spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")]).await;
    let api = upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let rampart: SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let Some(_nginx) = start_nginx(dir.path(), rampart, api, port) else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must install nginx (apt-get install nginx)"
        );
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx)");
        return;
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{base}/")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

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
