use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use rampart::clock::{DAY, HOUR, MINUTE, SECOND};

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let app = spawn_app().await;
    app.signed_in("hana@example.com").await;
    let a = app
        .client()
        .post(
            "/api/v1/sessions",
            json!({"email": "hana@example.com", "password": "Wrong-but-long-enough-1"}),
        )
        .await;
    let b = app
        .client()
        .post(
            "/api/v1/sessions",
            json!({"email": "nobody@example.com", "password": "Wrong-but-long-enough-1"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.status, b.status);
    assert_eq!(a.body, b.body);
    assert_eq!(a.code(), "invalid_credentials");
}

#[tokio::test]
async fn cookies_are_httponly_secure_lax_and_rotated_at_each_sign_in() {
    let app = spawn_app().await;
    let c = app.signed_in("ivan@example.com").await;
    let first = c.cookie("rampart_session").expect("session cookie");
    let r = c
        .post(
            "/api/v1/sessions",
            json!({"email": "ivan@example.com", "password": PASSWORD}),
        )
        .await;
    let set = r.set_cookies();
    let session = set
        .iter()
        .find(|s| s.starts_with("rampart_session="))
        .expect("set-cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attr), "{attr} missing in {session}");
    }
    let second = c.cookie("rampart_session").expect("session cookie");
    assert_ne!(first, second, "a new session token at every sign-in");
    // Both are separate live sessions of the same known device; the device cookie was kept.
    assert!(
        set.iter().all(|s| !s.starts_with("rampart_device=")),
        "known device keeps its cookie"
    );
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let app = spawn_app().await;
    let c = app.signed_in("jo@example.com").await;
    let token = c.cookie("rampart_session").expect("cookie");
    let r = c.delete("/api/v1/sessions/current").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(c.cookie("rampart_session").is_none(), "cookie cleared");
    // Even a copy of the old cookie is dead.
    c.set_cookie("rampart_session", &token);
    let r = c.get("/api/v1/me").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "unauthenticated");
}

#[tokio::test]
async fn sessions_expire_when_idle_and_after_the_absolute_limit() {
    let app = spawn_app().await;
    let c = app.signed_in("kim@example.com").await;
    app.clock.advance(29 * MINUTE);
    assert_eq!(
        c.get("/api/v1/me").await.status,
        StatusCode::OK,
        "29 idle minutes are fine"
    );
    app.clock.advance(30 * MINUTE);
    let r = c.get("/api/v1/me").await;
    assert_eq!(r.code(), "session_expired");

    let c = app.client();
    let r = c
        .post(
            "/api/v1/sessions",
            json!({"email": "kim@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    app.confirm_new_device("kim@example.com").await;
    for _ in 0..(12 * 60 / 20 - 1) {
        app.clock.advance(20 * MINUTE);
        assert_eq!(c.get("/api/v1/me").await.status, StatusCode::OK);
    }
    app.clock.advance(20 * MINUTE);
    assert_eq!(
        c.get("/api/v1/me").await.code(),
        "session_expired",
        "12 hours is the most a session lives"
    );
}

#[tokio::test]
async fn guessing_is_slowed_but_the_owner_is_never_locked_out() {
    let app = spawn_app().await;
    let owner = app.signed_in("lea@example.com").await;
    owner.delete("/api/v1/sessions/current").await; // the owner's browser keeps its device cookie

    let stranger = app.client_with_ua(IPHONE);
    for _ in 0..5 {
        let r = stranger
            .post(
                "/api/v1/sessions",
                json!({"email": "lea@example.com", "password": "Guess-guess-guess-1"}),
            )
            .await;
        assert_eq!(r.code(), "invalid_credentials");
    }
    let r = stranger
        .post(
            "/api/v1/sessions",
            json!({"email": "lea@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert_eq!(r.code(), "too_many_attempts");
    assert_eq!(
        r.headers
            .get("retry-after")
            .expect("Retry-After")
            .to_str()
            .expect("ascii"),
        "1"
    );

    // The owner's known device has its own counter.
    let r = owner
        .post(
            "/api/v1/sessions",
            json!({"email": "lea@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Each further wrong try doubles the wait, capped; the window ends and all is forgiven.
    for _ in 0..30 {
        app.clock.advance(16 * SECOND);
        stranger
            .post(
                "/api/v1/sessions",
                json!({"email": "lea@example.com", "password": "Guess-guess-guess-1"}),
            )
            .await;
    }
    app.clock.advance(15 * MINUTE);
    let r = stranger
        .post(
            "/api/v1/sessions",
            json!({"email": "lea@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "after the window the right password works: {}",
        r.body
    );

    // The history shows the refusals.
    let logins = owner.get("/api/v1/me/logins").await.json();
    let reasons: Vec<&str> = logins["logins"]
        .as_array()
        .expect("list")
        .iter()
        .map(|l| l["reason"].as_str().expect("reason"))
        .collect();
    assert!(reasons.contains(&"wrong_password"));
    assert!(reasons.contains(&"throttled"));
}

#[tokio::test]
async fn unknown_emails_are_throttled_like_real_ones() {
    let app = spawn_app().await;
    let c = app.client();
    let mut last = None;
    for _ in 0..6 {
        last = Some(
            c.post(
                "/api/v1/sessions",
                json!({"email": "ghost@example.com", "password": "Guess-guess-guess-1"}),
            )
            .await,
        );
    }
    assert_eq!(
        last.expect("answer").code(),
        "too_many_attempts",
        "no difference that reveals the address is unknown"
    );
}

#[tokio::test]
async fn one_address_guessing_many_accounts_is_slowed_too() {
    let app = spawn_app().await;
    let c = app.client();
    let mut codes = Vec::new();
    for i in 0..21 {
        let r = c.post("/api/v1/sessions", json!({"email": format!("victim{i}@example.com"), "password": "Guess-guess-guess-1"})).await;
        codes.push(r.code());
    }
    assert!(codes[..20].iter().all(|c| c == "invalid_credentials"));
    assert_eq!(codes[20], "too_many_attempts");
}

#[tokio::test]
async fn devices_show_the_six_fields_and_the_current_one() {
    let app = spawn_app().await;
    let laptop = app.signed_in("max@example.com").await;
    let phone = app.client_with_ua(IPHONE);
    app.clock.advance(HOUR);
    let r = phone
        .post(
            "/api/v1/sessions",
            json!({"email": "max@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    app.confirm_new_device("max@example.com").await;

    let devices = phone.get("/api/v1/me/devices").await.json();
    let list = devices["devices"].as_array().expect("list");
    assert_eq!(list.len(), 2);
    let current = &list[0];
    assert_eq!(
        current["current"], true,
        "most recent first, and it is this one"
    );
    assert_eq!(current["device_model"], "Apple iPhone");
    assert_eq!(current["os"], "iOS 17.5");
    assert_eq!(current["browser"], "Mobile Safari 17.5");
    assert_eq!(current["ip"], "127.0.0.1");
    assert!(
        current["city"].is_null(),
        "no MMDB in tests: location unknown"
    );
    assert!(current["first_seen"].as_i64().expect("ms") > 0);
    assert_eq!(list[1]["browser"], "Chrome 126.0");
    assert_eq!(list[1]["os"], "Linux");
    assert_eq!(list[1]["current"], false);

    // Last active moves with use; devices older than 90 days drop out of the list.
    app.clock.advance(91 * DAY);
    let r = laptop
        .post(
            "/api/v1/sessions",
            json!({"email": "max@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let list = laptop.get("/api/v1/me/devices").await.json();
    let list = list["devices"].as_array().expect("list");
    assert_eq!(list.len(), 1, "the phone was last active 91 days ago");
    assert_eq!(list[0]["current"], true);
}

#[tokio::test]
async fn login_history_lists_successes_and_failures_with_where_and_what() {
    let app = spawn_app().await;
    let c = app.signed_in("nia@example.com").await;
    app.clock.advance(SECOND);
    app.client_with_ua(IPHONE)
        .post(
            "/api/v1/sessions",
            json!({"email": "nia@example.com", "password": "Wrong-but-long-enough-1"}),
        )
        .await;
    let logins = c.get("/api/v1/me/logins").await.json();
    let list = logins["logins"].as_array().expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["success"], false);
    assert_eq!(list[0]["reason"], "wrong_password");
    assert_eq!(list[0]["device_model"], "Apple iPhone");
    assert_eq!(list[0]["ip"], "127.0.0.1");
    assert_eq!(list[1]["success"], true);
    assert_eq!(list[1]["browser"], "Chrome 126.0");
    let limited = c.get("/api/v1/me/logins?limit=1").await.json();
    assert_eq!(limited["logins"].as_array().expect("list").len(), 1);
    assert_eq!(
        c.get("/api/v1/me/logins?limit=many").await.code(),
        "invalid_query"
    );
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let app = spawn_app().await;
    let c = app.signed_in("oli@example.com").await;
    c.header("x-forwarded-for", "203.0.113.9");
    app.clock.advance(SECOND);
    c.post(
        "/api/v1/sessions",
        json!({"email": "oli@example.com", "password": PASSWORD}),
    )
    .await;
    let logins = c.get("/api/v1/me/logins").await.json();
    assert_eq!(
        logins["logins"][0]["ip"], "127.0.0.1",
        "a spoofed header from a stranger is ignored"
    );

    let proxied =
        spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")]).await;
    let c = proxied.signed_in("oli@example.com").await;
    c.header("x-forwarded-for", "198.51.100.1, 203.0.113.9");
    proxied.clock.advance(SECOND);
    c.post(
        "/api/v1/sessions",
        json!({"email": "oli@example.com", "password": PASSWORD}),
    )
    .await;
    let logins = c.get("/api/v1/me/logins").await.json();
    assert_eq!(
        logins["logins"][0]["ip"], "203.0.113.9",
        "the hop the trusted proxy saw"
    );
    c.header("x-forwarded-for", "not-an-address");
    let r = c
        .post(
            "/api/v1/sessions",
            json!({"email": "oli@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "bad_forwarded_for");
}
