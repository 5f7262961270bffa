use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::json;

use crate::api_keys::{authz, hmac_hex};
use crate::helpers::*;
use rampart::clock::{DAY, SECOND};

/// The freeze link in the newest mail to `email`, as a path.
pub async fn freeze_link(app: &TestApp, email: &str) -> String {
    let mails = app.mails_to(email).await;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.body_text.contains("/freeze/"))
        .expect("a mail with a freeze link");
    let line = mail
        .body_text
        .lines()
        .find(|l| l.contains("/freeze/"))
        .expect("link");
    line.trim()
        .strip_prefix("http://rampart.test")
        .expect("public url")
        .to_owned()
}

async fn hmac_key(c: &TestClient) -> (String, String) {
    let r = c
        .post(
            "/api/v1/me/api-keys",
            json!({"label": "bot", "type": "hmac", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let j = r.json();
    (
        j["api_key"].as_str().expect("k").to_owned(),
        j["secret"].as_str().expect("s").to_owned(),
    )
}

fn account_uri(app: &TestApp, secret: &str) -> String {
    let params = format!("timestamp={}", app.clock.now_ms());
    format!(
        "/api/v3/account?{params}&signature={}",
        hmac_hex(secret, &params)
    )
}

#[tokio::test]
async fn freezing_stops_everything_at_once_and_only_once() {
    let app = spawn_app().await;
    let me = app.signed_in("ava@example.com").await;
    app.step_up_by_email(&me, "ava@example.com").await;
    let phone = app.signed_in_again("ava@example.com").await;
    let (key, secret) = hmac_key(&me).await;
    assert_eq!(
        authz(&app.client(), &key, "GET", &account_uri(&app, &secret))
            .await
            .status,
        StatusCode::OK
    );

    let r = phone.post("/api/v1/me/freeze", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["status"], "frozen");
    assert_eq!(r.json()["sessions_ended"], 2);

    let r = me.get("/api/v1/me").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "account_frozen");
    assert_eq!(
        authz(&app.client(), &key, "GET", &account_uri(&app, &secret))
            .await
            .code(),
        "account_frozen"
    );
    let r = app
        .client()
        .post(
            "/api/v1/sessions",
            json!({"email": "ava@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.code(), "account_frozen");
    assert!(!r.body.contains("ava@"), "a neutral message");
    let mails = app.mails_to("ava@example.com").await;
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.subject.contains("Your account is frozen"))
            .count(),
        1
    );

    // The frozen account cannot undo it with a new sign-in or its keys; freezing again
    // through a link explains that it already is.
    let link = freeze_link(&app, "ava@example.com").await;
    let c = app.client();
    let page = c.get(&link).await;
    let r = c.post_form(&link, &[("csrf", &csrf_in(&page.body))]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("already frozen"), "{}", r.body);
}

#[tokio::test]
async fn fifty_concurrent_freezes_freeze_once() {
    let app = spawn_app().await;
    let c = Arc::new(app.signed_in("bo@example.com").await);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.post("/api/v1/me/freeze", json!({})).await
        }));
    }
    let mut frozen = 0;
    for t in tasks {
        let r = t.await.expect("task");
        match r.status {
            StatusCode::OK if r.json()["status"] == "frozen" => frozen += 1,
            StatusCode::OK => assert_eq!(r.json()["status"], "already_frozen"),
            _ => assert_eq!(r.code(), "account_frozen", "the session ended under it"),
        }
    }
    assert_eq!(frozen, 1);
    let mails = app.mails_to("bo@example.com").await;
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.subject.contains("Your account is frozen"))
            .count(),
        1
    );
    assert!(rampart::service::audit::verify(app.store().as_ref())
        .await
        .expect("read")
        .is_ok());
}

#[tokio::test]
async fn the_freeze_link_in_a_mail_works_without_signing_in_once_and_for_seven_days() {
    let app = spawn_app().await;
    app.signed_in("cal@example.com").await;
    let link = freeze_link(&app, "cal@example.com").await;
    let stranger = app.client();
    // Opening the link changes nothing (mail scanners open links).
    let page = stranger.get(&link).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Freeze my account now"));
    assert_eq!(
        app.store()
            .account_by_email("cal@example.com")
            .await
            .expect("r")
            .expect("a")
            .frozen_at,
        None
    );
    // CSRF: a forged form from elsewhere is refused.
    let r = app.client().post_form(&link, &[("csrf", "forged")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Forged and truncated links explain themselves.
    let csrf = csrf_in(&page.body);
    let r = stranger
        .post_form("/freeze/not-a-real-token", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("not valid"));
    let r = stranger
        .post_form(&link[..link.len() - 4], &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = stranger.post_form(&link, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Your account is frozen"));
    assert!(app
        .store()
        .account_by_email("cal@example.com")
        .await
        .expect("r")
        .expect("a")
        .frozen_at
        .is_some());
    let r = stranger.post_form(&link, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("already used"), "{}", r.body);
    let page = stranger.get(&link).await;
    assert_eq!(
        page.status,
        StatusCode::CONFLICT,
        "a used link says so before any button"
    );
    assert!(page.body.contains("already used") && !page.body.contains("Freeze my account now"));

    // Another account's link expires after 7 days.
    app.signed_in("dot@example.com").await;
    let link = freeze_link(&app, "dot@example.com").await;
    app.clock.advance(7 * DAY);
    let r = stranger.post_form(&link, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("expired"));
}

#[tokio::test]
async fn devices_can_be_removed_blocked_and_trusted() {
    let app = spawn_app().await;
    let me = app.signed_in("eve@example.com").await;
    app.step_up_by_email(&me, "eve@example.com").await;
    let phone = app.signed_in_again("eve@example.com").await;
    let other = app.signed_in("fin@example.com").await;
    app.step_up_by_email(&other, "fin@example.com").await;
    let devices = me.get("/api/v1/me/devices").await.json();
    let phone_id = devices["devices"]
        .as_array()
        .expect("l")
        .iter()
        .find(|d| d["current"] == false)
        .expect("phone")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Someone else's device id is just "not found".
    assert_eq!(
        other
            .delete(&format!("/api/v1/me/devices/{phone_id}"))
            .await
            .code(),
        "not_found"
    );
    assert_eq!(phone.get("/api/v1/me").await.status, StatusCode::OK);

    let r = me
        .delete(&format!("/api/v1/me/devices/{phone_id}?block=true"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["sessions_ended"], 1);
    assert_eq!(
        phone.get("/api/v1/me").await.status,
        StatusCode::UNAUTHORIZED,
        "kicked out at once"
    );
    let listed = me.get("/api/v1/me/devices").await.json();
    assert_eq!(listed["devices"].as_array().expect("l").len(), 1);
    // The same browser and OS is refused at sign-in; another browser is not (a delay, not a wall).
    let r = app
        .client_with_ua(IPHONE)
        .post(
            "/api/v1/sessions",
            json!({"email": "eve@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.code(), "device_blocked");
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let r = app
        .client_with_ua(firefox)
        .post(
            "/api/v1/sessions",
            json!({"email": "eve@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.json()["status"], "device_confirmation_required");

    // Sign out everywhere else.
    app.clock.advance(SECOND);
    let tablet = app.client_with_ua("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36");
    tablet
        .post(
            "/api/v1/sessions",
            json!({"email": "eve@example.com", "password": PASSWORD}),
        )
        .await;
    app.confirm_new_device("eve@example.com").await;
    assert_eq!(tablet.get("/api/v1/me").await.status, StatusCode::OK);
    let r = me.delete("/api/v1/me/sessions/others").await;
    assert!(r.json()["sessions_ended"].as_u64().expect("n") >= 1);
    assert_eq!(
        tablet.get("/api/v1/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me.get("/api/v1/me").await.status, StatusCode::OK);

    // At most three trusted devices.
    let mut ids = Vec::new();
    for i in 0..3 {
        let c = app.client_with_ua(&format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/12{i}.0.0.0 Safari/537.36"));
        c.post(
            "/api/v1/sessions",
            json!({"email": "eve@example.com", "password": PASSWORD}),
        )
        .await;
        app.clock.advance(SECOND);
    }
    for d in me.get("/api/v1/me/devices").await.json()["devices"]
        .as_array()
        .expect("l")
    {
        ids.push(d["id"].as_str().expect("id").to_owned());
    }
    for id in &ids[..3] {
        assert_eq!(
            me.put(
                &format!("/api/v1/me/devices/{id}/trusted"),
                json!({"trusted": true})
            )
            .await
            .status,
            StatusCode::NO_CONTENT
        );
    }
    let r = me
        .put(
            &format!("/api/v1/me/devices/{}/trusted", ids[3]),
            json!({"trusted": true}),
        )
        .await;
    assert_eq!(r.code(), "too_many_trusted_devices");
    assert_eq!(
        me.put(
            &format!("/api/v1/me/devices/{}/trusted", ids[0]),
            json!({"trusted": false})
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        me.put(
            &format!("/api/v1/me/devices/{}/trusted", ids[3]),
            json!({"trusted": true})
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_new_device_is_announced_and_unusable_until_confirmed() {
    let app = spawn_app().await;
    app.signed_in("gia@example.com").await;
    let laptop = app.client_with_ua(IPHONE);
    let r = laptop
        .post(
            "/api/v1/sessions",
            json!({"email": "gia@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.json()["status"], "device_confirmation_required");
    assert_eq!(
        laptop.get("/api/v1/me").await.code(),
        "device_confirmation_required"
    );
    let mails = app.mails_to("gia@example.com").await;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.subject.contains("signed in from") && m.subject.contains("Apple iPhone"))
        .expect("new-device mail");
    assert!(
        mail.subject.contains("unknown on Apple iPhone"),
        "{}",
        mail.subject
    );
    assert!(mail.body_text.contains("/freeze/") && mail.body_text.contains("/confirm-device/"));
    app.confirm_new_device("gia@example.com").await;
    assert_eq!(laptop.get("/api/v1/me").await.status, StatusCode::OK);
    // The link worked once.
    let link = mail
        .body_text
        .lines()
        .find(|l| l.contains("/confirm-device/"))
        .expect("l")
        .trim()
        .strip_prefix("http://rampart.test")
        .expect("u")
        .to_owned();
    let c = app.client();
    let page = c.get(&link).await;
    assert_eq!(
        c.post_form(&link, &[("csrf", &csrf_in(&page.body))])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The inbox has the event, never the codes.
    let inbox = laptop.get("/api/v1/me/notifications").await.json();
    let subjects: Vec<&str> = inbox["notifications"]
        .as_array()
        .expect("l")
        .iter()
        .map(|n| n["subject"].as_str().expect("s"))
        .collect();
    assert!(subjects.iter().any(|s| s.contains("signed in from")));
    assert!(
        !subjects.iter().any(|s| s.contains("Confirm your email")),
        "code mails stay out of the inbox"
    );
    assert!(inbox["notifications"]
        .as_array()
        .expect("l")
        .iter()
        .all(|n| !n["body"].as_str().expect("b").contains("/confirm-device/")));
    assert!(inbox["unread"].as_u64().expect("n") > 0);
    assert_eq!(
        laptop
            .post("/api/v1/me/notifications/read", json!({}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        laptop.get("/api/v1/me/notifications").await.json()["unread"],
        0
    );
}

/// A webhook receiver that records what it gets and fails the first `fail` calls.
pub async fn receiver(fail: usize) -> (String, Arc<Mutex<Vec<(String, String, String)>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    let calls = Arc::new(Mutex::new(0usize));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            let calls = calls.clone();
            async move {
                let mut n = calls.lock().expect("calls");
                *n += 1;
                if *n <= fail {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                seen.lock().expect("seen").push((
                    h("x-rampart-signature"),
                    h("x-rampart-delivery"),
                    body,
                ));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (url, got)
}

#[tokio::test]
async fn security_events_are_pushed_to_signed_webhooks_with_retries() {
    let app = spawn_app().await;
    let (url, got) = receiver(1).await;
    let (_, secret) = app
        .state
        .protection
        .add_webhook(&url)
        .await
        .expect("endpoint");
    let http = reqwest::Client::new();
    let c = app.signed_in("hal@example.com").await;
    c.put(
        "/api/v1/me/anti-phishing-code",
        json!({"code": "Webhook-Test-1"}),
    )
    .await;
    let first = rampart::service::protection::deliver_webhooks(&app.state.protection, &http)
        .await
        .expect("deliver");
    assert!(
        got.lock().expect("g").len() < first + 2,
        "the first call failed and is retried later"
    );
    app.clock.advance(30 * SECOND);
    rampart::service::protection::deliver_webhooks(&app.state.protection, &http)
        .await
        .expect("deliver");
    let received = got.lock().expect("g").clone();
    assert!(
        received
            .iter()
            .any(|(_, _, body)| body.contains("anti-phishing code was set")),
        "{received:?}"
    );
    for (sig, delivery, body) in &received {
        assert_eq!(
            sig,
            &rampart::service::protection::webhook_signature(&secret, body.as_bytes()),
            "signed with the endpoint's secret"
        );
        assert!(!delivery.is_empty(), "an idempotency id");
        assert!(
            !body.contains("confirmation code is"),
            "code mails are never pushed"
        );
    }
    let log = app.store().webhook_log(50).await.expect("log");
    assert!(log.iter().any(|d| d.last_status == Some(204)));
    assert!(
        log.iter().any(|d| d.attempts >= 2),
        "the failed try was retried and logged"
    );
}

#[tokio::test]
async fn a_freeze_on_one_instance_is_honoured_by_another_at_once() {
    if std::env::var("RAMPART_TEST_DATABASE_URL").map_or(true, |v| v.is_empty()) {
        eprintln!("SKIPPED: two instances need PostgreSQL (set RAMPART_TEST_DATABASE_URL)");
        return;
    }
    let key = rampart::domain::secret::ServerKey::generate().to_base64();
    let a = spawn_app_with(|s| s.secret_key = Some(key.as_str().into())).await;
    let b = spawn_second_instance(&a, &key).await;
    let c = a.signed_in("ida@example.com").await;
    a.step_up_by_email(&c, "ida@example.com").await;
    let (api_key, secret) = hmac_key(&c).await;
    // B serves the session and caches the key.
    let on_b = TestClient::new(&b.base, CHROME_LINUX);
    on_b.set_cookie(
        "rampart_session",
        &c.cookie("rampart_session").expect("cookie"),
    );
    assert_eq!(on_b.get("/api/v1/me").await.status, StatusCode::OK);
    assert_eq!(
        authz(
            &TestClient::new(&b.base, CHROME_LINUX),
            &api_key,
            "GET",
            &account_uri(&a, &secret)
        )
        .await
        .status,
        StatusCode::OK
    );

    assert_eq!(
        c.post("/api/v1/me/freeze", json!({})).await.json()["status"],
        "frozen"
    );
    assert_eq!(
        on_b.get("/api/v1/me").await.code(),
        "account_frozen",
        "B refuses the session on the next request"
    );
    let mut refused = None;
    for _ in 0..100 {
        let r = authz(
            &TestClient::new(&b.base, CHROME_LINUX),
            &api_key,
            "GET",
            &account_uri(&a, &secret),
        )
        .await;
        if r.status != StatusCode::OK {
            refused = Some(r.code());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        refused.as_deref(),
        Some("account_frozen"),
        "B's key cache heard the NOTIFY"
    );
}

#[tokio::test]
async fn switching_a_security_mail_off_takes_48_hours_and_the_inbox_keeps_everything() {
    let app = spawn_app().await;
    let c = app.signed_in("joy@example.com").await;
    app.step_up_by_email(&c, "joy@example.com").await;
    let prefs = c.get("/api/v1/me/notification-preferences").await.json();
    assert!(prefs["preferences"]
        .as_array()
        .expect("l")
        .iter()
        .all(|p| p["enabled"] == true));
    assert_eq!(
        c.put(
            "/api/v1/me/notification-preferences",
            json!({"kind": "freeze", "enabled": false})
        )
        .await
        .code(),
        "invalid_kind"
    );
    let r = c
        .put(
            "/api/v1/me/notification-preferences",
            json!({"kind": "api_keys", "enabled": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert!(app
        .mails_to("joy@example.com")
        .await
        .iter()
        .any(|m| m.subject.contains("takes effect in 48 hours")));
    // A key that will expire, to produce an api_keys mail later.
    let r = c
        .post(
            "/api/v1/me/api-keys",
            json!({"label": "t", "type": "hmac", "permissions": ["internal_transfer"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    app.clock.advance(2 * DAY);
    rampart::jobs::timed::step(&app.state.services)
        .await
        .expect("step");
    let account = app
        .store()
        .account_by_email("joy@example.com")
        .await
        .expect("r")
        .expect("a");
    assert_eq!(
        app.store().mail_mutes(&account.id).await.expect("mutes"),
        vec![rampart::domain::mail_kind::MailKind::ApiKeys]
    );
    app.clock.advance(21 * DAY);
    assert_eq!(
        rampart::jobs::timed::step(&app.state.services)
            .await
            .expect("step")
            .api_key_mails,
        1
    );
    let mails = app.mails_to("joy@example.com").await;
    assert!(
        !mails
            .iter()
            .any(|m| m.subject.contains("expires in 7 days")),
        "switched off: no mail"
    );
    let inbox = app
        .store()
        .notifications(&account.id, 100)
        .await
        .expect("inbox");
    assert!(
        inbox
            .iter()
            .any(|n| n.subject.contains("expires in 7 days")),
        "but the inbox has it"
    );
}
