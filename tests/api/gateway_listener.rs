//! The gateway listener (`gateway_listen`): Rampart itself in front of an upstream that
//! records everything it receives. Body-signed requests pass with the body unchanged; every
//! refusal is in the exchange's `{"code","msg"}` shape and reaches nothing upstream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Uri};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api_keys::hmac_hex;
use crate::helpers::*;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
}

impl Seen {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub type Received = Arc<Mutex<Vec<Seen>>>;

/// An upstream that records every request and answers with what it saw.
pub async fn recording_upstream() -> (String, Received) {
    let received: Received = Arc::default();
    let log = received.clone();
    let app = axum::Router::new().fallback(
        move |ConnectInfo(peer): ConnectInfo<SocketAddr>,
              method: Method,
              uri: Uri,
              headers: HeaderMap,
              body: axum::body::Bytes| async move {
            let seen = Seen {
                method: method.to_string(),
                uri: uri.to_string(),
                headers,
                body: body.to_vec(),
                peer,
            };
            let answer = json!({
                "method": seen.method, "uri": seen.uri,
                "body": String::from_utf8_lossy(&seen.body),
                "uid": seen.header("x-rampart-uid"),
                "apikey": seen.header("x-mbx-apikey"),
            });
            log.lock().expect("log").push(seen);
            axum::Json(answer)
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("upstream")
    });
    (format!("http://{addr}"), received)
}

/// Rampart with its gateway listener in front of `upstream`.
async fn gateway_to(
    upstream: &str,
    configure: impl FnOnce(&mut rampart::config::Settings),
) -> TestApp {
    let upstream = upstream.to_owned();
    spawn_app_with(move |s| {
        s.gateway_listen = Some("127.0.0.1:0".parse().expect("addr"));
        s.gateway_upstream = Some(upstream);
        configure(s);
    })
    .await
}

/// An account with an HMAC key holding `permissions`, usable from 127.0.0.1.
async fn key_with(app: &TestApp, email: &str, permissions: &[&str]) -> (String, String, String) {
    let c = app.signed_in(email).await;
    app.step_up_by_email(&c, email).await;
    let r = c
        .post(
            "/api/v1/me/api-keys",
            json!({"label": "bot", "type": "hmac", "permissions": permissions, "ip_allowlist": ["127.0.0.1"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let k = r.json();
    let uid = c.get("/api/v1/me").await.json()["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    (
        k["api_key"].as_str().expect("key").to_owned(),
        k["secret"].as_str().expect("secret").to_owned(),
        uid,
    )
}

fn form() -> (&'static str, &'static str) {
    ("content-type", "application/x-www-form-urlencoded")
}

/// The exchange-shaped refusal: status, numeric code and Rampart's code.
async fn refusal(r: reqwest::Response) -> (u16, i64, String) {
    let status = r.status().as_u16();
    let header = r
        .headers()
        .get("x-rampart-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = r.json().await.expect("a JSON refusal");
    assert!(
        body["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["rampart_code"], header.as_str(), "{body}");
    (status, body["code"].as_i64().expect("code"), header)
}

#[tokio::test]
async fn a_body_signed_order_reaches_the_upstream_byte_for_byte_with_the_identity() {
    let (upstream, received) = recording_upstream().await;
    let app = gateway_to(&upstream, |_| {}).await;
    let gw = app.gateway.clone().expect("gateway listener");
    let (key, secret, uid) = key_with(&app, "ada@example.com", &["read", "spot_trade"]).await;
    let http = reqwest::Client::new();
    let now = app.clock.now_ms();

    // ccxt's way: every parameter and the signature in the body.
    let params = format!("symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=0.1&timestamp={now}");
    let body = format!("{params}&signature={}", hmac_hex(&secret, &params));
    let r = http
        .post(format!("{gw}/api/v3/order"))
        .header("x-mbx-apikey", &key)
        .header("x-rampart-uid", "spoofed")
        .header("x-rampart-permissions", "withdraw")
        .header("x-forwarded-for", "203.0.113.9")
        // Many servers read underscores as dashes (CGI's HTTP_X_RAMPART_UID).
        .header("x-rampart_uid", "spoofed")
        .header("x_rampart_permissions", "withdraw")
        .header("x-forwarded_for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("true-client-ip", "203.0.113.9")
        .header(form().0, form().1)
        .body(body.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    let echoed: Value = r.json().await.expect("the upstream's answer");
    assert_eq!(echoed["body"], body.as_str());
    let seen = received.lock().expect("log").pop().expect("forwarded");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/api/v3/order");
    assert_eq!(seen.body, body.as_bytes(), "the body unchanged");
    assert_eq!(
        seen.header("x-rampart-uid"),
        uid,
        "Rampart's identity, not the client's"
    );
    assert_eq!(seen.header("x-rampart-key"), key);
    assert_eq!(seen.header("x-rampart-permissions"), "read,spot_trade");
    assert_eq!(seen.header("x-rampart-auth"), "api_key");
    assert_eq!(
        seen.header("x-forwarded-for"),
        "127.0.0.1",
        "the address Rampart judged"
    );
    for name in seen.headers.keys() {
        let n = name.as_str();
        assert!(
            !n.contains('_') && n != "x-forwarded-proto" && n != "true-client-ip",
            "{n} reached the upstream"
        );
    }
    assert_eq!(
        seen.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        seen.header("x-mbx-apikey"),
        key,
        "the client's own headers pass"
    );

    // The exchange's mixed form: some parameters in the query string, the rest and the
    // signature in the body; the request target reaches the upstream exactly as sent.
    let query = "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC";
    let rest = format!("quantity=1&price=0.1&recvWindow=5000&timestamp={now}");
    let signature = hmac_hex(&secret, &format!("{query}{rest}"));
    let r = http
        .post(format!("{gw}/api/v3/order?{query}"))
        .header("x-mbx-apikey", &key)
        .header(form().0, form().1)
        .body(format!("{rest}&signature={signature}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    let seen = received.lock().expect("log").pop().expect("forwarded");
    assert_eq!(seen.uri, format!("/api/v3/order?{query}"));

    // A signed GET (query string only) and a DELETE pass the same way.
    let params = format!("symbol=BTCUSDT&orderId=7&timestamp={now}");
    let signed = format!("{params}&signature={}", hmac_hex(&secret, &params));
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = http
            .request(method.clone(), format!("{gw}/api/v3/order?{signed}"))
            .header("x-mbx-apikey", &key)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::OK, "{method}");
    }
    // One connection to the upstream carried all of them (keep-alive).
    let peers: std::collections::HashSet<SocketAddr> = received
        .lock()
        .expect("log")
        .iter()
        .map(|s| s.peer)
        .collect();
    assert_eq!(peers.len(), 1, "{peers:?}");
}

#[tokio::test]
async fn public_routes_need_no_key_and_key_only_routes_no_signature() {
    let (upstream, received) = recording_upstream().await;
    let app = gateway_to(&upstream, |_| {}).await;
    let gw = app.gateway.clone().expect("gateway listener");
    let (key, _, uid) = key_with(&app, "bo@example.com", &["read"]).await;
    let http = reqwest::Client::new();

    for path in [
        "/api/v3/ping",
        "/api/v3/time",
        "/api/v3/exchangeInfo",
        "/api/v3/depth?symbol=BTCUSDT&limit=5",
    ] {
        let r = http
            .get(format!("{gw}{path}"))
            .header("x-rampart-uid", "spoofed")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let seen = received.lock().expect("log").pop().expect("forwarded");
        assert_eq!(seen.uri, path);
        assert_eq!(
            seen.header("x-rampart-uid"),
            "",
            "no identity on public routes"
        );
        assert_eq!(seen.header("x-rampart-auth"), "public");
    }

    // The user data stream: the key, no signature.
    let r = http
        .post(format!("{gw}/api/v3/userDataStream"))
        .header("x-mbx-apikey", &key)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    let seen = received.lock().expect("log").pop().expect("forwarded");
    assert_eq!(seen.header("x-rampart-uid"), uid);
    let r = http
        .post(format!("{gw}/api/v3/userDataStream"))
        .send()
        .await
        .expect("request");
    assert_eq!(refusal(r).await, (401, -2014, "missing_api_key".into()));
    let r = http
        .put(format!("{gw}/api/v3/userDataStream?listenKey=x"))
        .header("x-mbx-apikey", "rmpk_not-a-key")
        .send()
        .await
        .expect("request");
    assert_eq!(refusal(r).await, (401, -2015, "unknown_key".into()));
    assert!(received.lock().expect("log").is_empty());
}

#[tokio::test]
async fn every_refusal_is_in_the_exchange_s_shape_and_reaches_nothing_upstream() {
    let (upstream, received) = recording_upstream().await;
    let app = gateway_to(&upstream, |s| s.gateway_body_limit_bytes = 4096).await;
    let gw = app.gateway.clone().expect("gateway listener");
    let (key, secret, _) = key_with(&app, "cy@example.com", &["read", "spot_trade"]).await;
    let http = reqwest::Client::new();
    let now = app.clock.now_ms();
    let sign = |params: &str| format!("{params}&signature={}", hmac_hex(&secret, params));
    let order = format!("symbol=BTCUSDT&side=BUY&quantity=1&timestamp={now}");
    let post = |target: String, body: String| {
        http.post(format!("{gw}{target}"))
            .header("x-mbx-apikey", &key)
            .header(form().0, form().1)
            .body(body)
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, (u16, i64, &str))> = vec![
        (
            "a tampered body",
            post(
                "/api/v3/order".into(),
                sign(&order).replace("quantity=1", "quantity=9"),
            ),
            (400, -1022, "bad_signature"),
        ),
        (
            "a body sent with a signature that covers the query string only",
            post(
                format!("/api/v3/order?{}", sign(&order)),
                "price=99999".into(),
            ),
            (400, -1022, "bad_signature"),
        ),
        (
            "a parameter in both the query string and the body",
            {
                let query = format!("symbol=BTCUSDT&quantity=1&timestamp={now}");
                let body = "quantity=100";
                let signature = hmac_hex(&secret, &format!("{query}{body}"));
                post(
                    format!("/api/v3/order?{query}"),
                    format!("{body}&signature={signature}"),
                )
            },
            (400, -1101, "duplicate_parameter"),
        ),
        (
            "a parameter twice in the body",
            post(
                "/api/v3/order".into(),
                sign(&format!("side=BUY&side=SELL&timestamp={now}")),
            ),
            (400, -1101, "duplicate_parameter"),
        ),
        (
            "an oversized body",
            post(
                "/api/v3/order".into(),
                format!("{}&pad={}", sign(&order), "x".repeat(5000)),
            ),
            (413, -1000, "body_too_large"),
        ),
        (
            "a JSON body",
            http.post(format!("{gw}/api/v3/order"))
                .header("x-mbx-apikey", &key)
                .header("content-type", "application/json")
                .body(format!("{{\"signature\":\"{}\"}}", sign(&order))),
            (400, -1102, "bad_parameter"),
        ),
        (
            "a stale timestamp",
            post(
                "/api/v3/order".into(),
                sign(&format!("symbol=BTCUSDT&timestamp={}", now - 60_000)),
            ),
            (400, -1021, "timestamp_outside_window"),
        ),
        (
            "a parameter name without a value, where a request could be re-split",
            {
                let params = format!("symbol=BTCUSDT&quantity=10&timestamp={now}");
                let signature = hmac_hex(&secret, &params);
                post(
                    format!("/api/v3/order?symbol=BTCUSDT&quantity=1&signature={signature}"),
                    format!("0&timestamp={now}"),
                )
            },
            (400, -1102, "bad_parameter"),
        ),
        (
            "the key twice",
            post("/api/v3/order".into(), sign(&order)).header("x-mbx-apikey", "rmpk_other"),
            (400, -1101, "duplicate_parameter"),
        ),
        (
            "two body types",
            post("/api/v3/order".into(), sign(&order)).header("content-type", "application/json"),
            (400, -1101, "duplicate_parameter"),
        ),
        (
            "an encoded body the upstream would decode",
            post("/api/v3/order".into(), sign(&order)).header("content-encoding", "br"),
            (400, -1102, "bad_parameter"),
        ),
        (
            "the withdraw route by GET with a key that may not withdraw",
            http.get(format!(
                "{gw}/sapi/v1/capital/withdraw/apply?{}",
                sign(&format!("coin=BTC&amount=1&timestamp={now}"))
            ))
            .header("x-mbx-apikey", &key),
            (401, -2015, "permission_missing"),
        ),
        (
            "no key",
            http.get(format!(
                "{gw}/api/v3/account?{}",
                sign(&format!("timestamp={now}"))
            )),
            (401, -2014, "missing_api_key"),
        ),
        (
            "no signature",
            http.get(format!("{gw}/api/v3/account?timestamp={now}"))
                .header("x-mbx-apikey", &key),
            (400, -1102, "missing_parameter"),
        ),
        (
            "a withdrawal without the withdraw permission",
            post(
                "/sapi/v1/capital/withdraw/apply".into(),
                sign(&format!("coin=BTC&amount=1&timestamp={now}")),
            ),
            (401, -2015, "permission_missing"),
        ),
        (
            "a route the table does not know",
            http.get(format!(
                "{gw}/api/v3/secretAdmin?{}",
                sign(&format!("timestamp={now}"))
            ))
            .header("x-mbx-apikey", &key),
            (404, -1020, "unknown_route"),
        ),
    ];
    for (what, request, expected) in cases {
        let r = request.send().await.expect("request");
        let (status, code, rampart_code) = refusal(r).await;
        assert_eq!((status, code, rampart_code.as_str()), expected, "{what}");
    }
    // A path an upstream could route elsewhere, sent raw (HTTP clients resolve `%2e%2e`).
    let signed = sign(&format!("timestamp={now}"));
    let addr = gw.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!(
                "GET /api/v3/order/%2e%2e/account?{signed} HTTP/1.1\r\nHost: {addr}\r\n\
                 X-MBX-APIKEY: {key}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"code\":-1020"), "{answer}");
    assert!(answer.contains("non_canonical_path"), "{answer}");
    assert_eq!(
        received.lock().expect("log").len(),
        0,
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn a_slow_upload_is_cut_off_before_the_upstream_sees_anything() {
    let (upstream, received) = recording_upstream().await;
    let app = gateway_to(&upstream, |s| s.gateway_body_timeout_ms = 300).await;
    let gw = app.gateway.clone().expect("gateway listener");
    let addr = gw.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // Headers promise 100 bytes; 10 arrive, then nothing.
    stream
        .write_all(
            format!(
                "POST /api/v3/order HTTP/1.1\r\nHost: {addr}\r\nX-MBX-APIKEY: k\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nsymbol=BTC"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered within the body timeout, not left hanging")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(received.lock().expect("log").is_empty());
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let (upstream, received) = recording_upstream().await;
    let app = gateway_to(&upstream, |s| s.gateway_body_timeout_ms = 300).await;
    let gw = app.gateway.clone().expect("gateway listener");
    let addr = gw.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET /api/v3/ping HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").as_bytes())
        .await
        .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is closed, not held open");
    assert!(received.lock().expect("log").is_empty());
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (upstream, _) = recording_upstream().await;
    let app = gateway_to(&upstream, |s| s.gateway_max_connections = 1).await;
    let gw = app.gateway.clone().expect("gateway listener");
    let held = tokio::net::TcpStream::connect(gw.trim_start_matches("http://"))
        .await
        .expect("connect");
    let waiting = tokio::spawn(reqwest::get(format!("{gw}/api/v3/ping")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the only slot is taken");
    drop(held);
    let r = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once the slot is free")
        .expect("task")
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_upstream_that_closes_an_idle_connection_costs_the_client_nothing() {
    // Answers one request per connection, keep-alive promised, then hangs up (as an
    // upstream whose idle timeout ran out does); says so on `closed`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = format!("http://{}", listener.local_addr().expect("addr"));
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buf).await.expect("read");
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let body = "{\"serverTime\":1}";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(answer.as_bytes()).await.expect("write");
                drop(socket);
                let _ = closed_tx.send(());
            });
        }
    });
    let app = gateway_to(&upstream, |_| {}).await;
    let gw = app.gateway.clone().expect("gateway listener");
    let http = reqwest::Client::new();
    for round in 0..3 {
        let r = http
            .get(format!("{gw}/api/v3/time"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::OK, "round {round}");
        assert_eq!(r.text().await.expect("body"), "{\"serverTime\":1}");
        closed.recv().await.expect("the upstream hung up");
        // Let the gateway see the hang-up before the next request on the same connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_unreachable_or_silent_upstream_is_a_clear_502_or_504() {
    // Nothing listens on the upstream's port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let app = gateway_to(&format!("http://127.0.0.1:{port}"), |_| {}).await;
    let gw = app.gateway.clone().expect("gateway listener");
    let r = reqwest::get(format!("{gw}/api/v3/ping"))
        .await
        .expect("request");
    assert_eq!(
        refusal(r).await,
        (502, -1001, "upstream_unavailable".into())
    );

    // An upstream that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let app = gateway_to(&format!("http://{silent_addr}"), |s| {
        s.gateway_upstream_timeout_ms = 300
    })
    .await;
    let gw = app.gateway.clone().expect("gateway listener");
    let r = reqwest::get(format!("{gw}/api/v3/time"))
        .await
        .expect("request");
    assert_eq!(refusal(r).await, (504, -1007, "upstream_timeout".into()));
}

#[tokio::test]
async fn the_upstream_s_answer_streams_back_as_it_is_written() {
    // An upstream that sends its first chunk, then waits for the test to have read it.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let released = Arc::new(Mutex::new(Some(released)));
    let app_upstream = axum::Router::new().fallback(move || {
        let released = released.lock().expect("lock").take();
        async move {
            let first = futures_chunk("first chunk\n");
            let rest = async move {
                if let Some(r) = released {
                    let _ = r.await;
                }
                Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"second chunk\n"))
            };
            let stream = tokio_stream_of(first, rest);
            axum::body::Body::from_stream(stream)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app_upstream).await.expect("upstream") });
    let app = gateway_to(&upstream, |_| {}).await;
    let gw = app.gateway.clone().expect("gateway listener");
    let mut r = reqwest::get(format!("{gw}/api/v3/time"))
        .await
        .expect("request");
    let first = tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .expect("the first chunk arrives while the upstream is still writing")
        .expect("chunk")
        .expect("some");
    assert_eq!(&first[..], b"first chunk\n");
    release.send(()).expect("release");
    let rest = r.text().await.expect("rest");
    assert_eq!(rest, "second chunk\n");
}

fn futures_chunk(s: &'static str) -> axum::body::Bytes {
    axum::body::Bytes::from_static(s.as_bytes())
}

/// A body stream: `first` at once, then whatever `rest` resolves to.
fn tokio_stream_of(
    first: axum::body::Bytes,
    rest: impl std::future::Future<Output = Result<axum::body::Bytes, std::io::Error>> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Send + 'static {
    use futures_util::StreamExt;
    futures_util::stream::once(async move { Ok(first) }).chain(futures_util::stream::once(rest))
}
