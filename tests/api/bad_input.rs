use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn malformed_bodies_get_clear_4xx_codes() {
    let app = spawn_app().await;
    let c = app.client();
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "application/json",
            b"{\"email\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "application/json",
            b"\xff\xfe\x00garbage".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "application/json",
            br#"{"email": 42, "password": true}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "application/json",
            br#"{"email": "a@example.com"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "application/json",
            br#"{"email": "a@example.com", "password": "x", "admin": true}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "application/json",
            br#"[]"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "text/plain",
            br#"{"email": "a@example.com", "password": "x"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "application/json",
            vec![b' '; 200 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (ct, body, status, code) in cases {
        let r = c.post_raw("/api/v1/accounts", ct, body).await;
        assert_eq!(r.status, status, "{code}: {}", r.body);
        assert_eq!(r.code(), code);
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .expect("message")
                .len()
                > 10
        );
    }
    assert!(
        app.mails_to("a@example.com").await.is_empty(),
        "nothing written"
    );
    // The same answer where the body is read raw (the gateway hook), not as JSON.
    let r = c
        .post_raw(
            "/authz/api/v3/order",
            "application/x-www-form-urlencoded",
            vec![b'a'; 200 * 1024],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(r.code(), "body_too_large");
}

#[tokio::test]
async fn invalid_and_deceptive_emails_are_refused() {
    let app = spawn_app().await;
    let c = app.client();
    for email in [
        "",
        "plainaddress",
        "two@@example.com",
        "a@localhost",
        "alice@ехample.com",
        "alice\u{200b}@example.com",
        "alice\u{202e}moc.elpmaxe@example.com",
        "x'; DROP TABLE accounts;--@example.com",
        "\"quoted\"@example.com",
    ] {
        let r = c
            .post(
                "/api/v1/accounts",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{email:?}");
        assert_eq!(r.code(), "invalid_email", "{email:?}");
    }
    let huge = format!("{}@example.com", "a".repeat(10_000));
    assert_eq!(
        c.post(
            "/api/v1/accounts",
            json!({"email": huge, "password": PASSWORD})
        )
        .await
        .code(),
        "invalid_email"
    );
}

#[tokio::test]
async fn sql_metacharacters_are_just_characters() {
    let app = spawn_app().await;
    let c = app.client();
    let email = "o'brien+x@example.com";
    let password = "Robert'); DROP TABLE accounts;-- 7x";
    let r = c
        .post(
            "/api/v1/accounts",
            json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let code = app.confirmation_code(email).await;
    c.post(
        "/api/v1/accounts/confirm",
        json!({"email": email, "code": code}),
    )
    .await;
    let r = c
        .post(
            "/api/v1/sessions",
            json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = c
        .post(
            "/api/v1/sessions",
            json!({"email": "' OR '1'='1@example.com", "password": "' OR '1'='1"}),
        )
        .await;
    assert_eq!(r.code(), "invalid_credentials");
    assert_eq!(c.get("/api/v1/me").await.json()["email"], email);
}

#[tokio::test]
async fn huge_and_garbage_user_agents_are_survived() {
    let app = spawn_app().await;
    app.signed_in("pat@example.com").await;
    let huge = app.client_with_ua(&"Mozilla/5.0 (".repeat(2_000));
    let r = huge
        .post(
            "/api/v1/sessions",
            json!({"email": "pat@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.clock.advance(1000);
    let garbage = app.client_with_ua("'; DROP TABLE devices;-- \t <script>alert(1)</script>");
    let r = garbage
        .post(
            "/api/v1/sessions",
            json!({"email": "pat@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    app.confirm_new_device("pat@example.com").await;
    let devices = garbage.get("/api/v1/me/devices").await.json();
    let list = devices["devices"].as_array().expect("list");
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["browser"], "Unknown browser");
    app.clock.advance(1000);
    // Invalid UTF-8 in the header is treated as no User-Agent.
    let raw = app.client();
    raw.extra.lock().expect("h").insert(
        "user-agent",
        reqwest::header::HeaderValue::from_bytes(b"Bad \xff\xfe agent").expect("bytes"),
    );
    let r = raw
        .post(
            "/api/v1/sessions",
            json!({"email": "pat@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = spawn_app().await;
    let c = app.client();
    let r = c.get("/api/v1/nothing-here").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
    let r = c
        .send(reqwest::Method::PATCH, "/api/v1/accounts", None)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.code(), "method_not_allowed");
    let r = c.get("/api/v1/me").await;
    assert_eq!(r.code(), "unauthenticated");
    c.set_cookie("rampart_session", &"x".repeat(4000));
    assert_eq!(c.get("/api/v1/me").await.code(), "unauthenticated");
}

#[tokio::test]
async fn fifty_concurrent_registrations_of_one_address_make_one_account() {
    // The race itself, with the registration throttle opened wide (lockout.rs tests it).
    let app = spawn_app_with(|s| {
        s.rules.register_ip_free_attempts = 100;
        s.rules.register_address_free_attempts = 100;
    })
    .await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = app.client();
        tasks.push(tokio::spawn(async move {
            c.post(
                "/api/v1/accounts",
                json!({"email": "race@example.com", "password": PASSWORD}),
            )
            .await
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), StatusCode::ACCEPTED);
    }
    let mails = app.mails_to("race@example.com").await;
    let confirmations = mails
        .iter()
        .filter(|m| m.subject.contains("Confirm"))
        .count();
    assert_eq!(confirmations, 1, "one account, one confirmation code");
    assert_eq!(
        mails.len(),
        2,
        "the other attempts told the owner, in one mail a day"
    );
    let code = app.confirmation_code("race@example.com").await;
    let r = app
        .client()
        .post(
            "/api/v1/accounts/confirm",
            json!({"email": "race@example.com", "code": code}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn bodies_must_be_objects_and_names_must_show_something() {
    let app = spawn_app().await;
    // serde maps an array onto a struct's fields in order; the API takes objects only.
    let c = app.client();
    for body in ["[null]", "[]", "null", "\"x\"", "1"] {
        let r = c
            .post_raw("/api/v1/sessions/passkey/start", "application/json", body)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.body
        );
        assert_eq!(r.code(), "invalid_body");
    }
    let r = c
        .post_raw("/api/v1/sessions/passkey/start", "application/json", "{}")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Names and labels made only of control characters and (Unicode) spaces are empty.
    let me = app.signed_in("nam@example.com").await;
    app.step_up_by_email(&me, "nam@example.com").await;
    let blank = "\u{9b}\u{2029}\u{17}\u{93} \u{3000}\u{4}";
    let r = me
        .post(
            "/api/v1/me/passkeys/register/start",
            serde_json::json!({ "name": blank }),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.code(), "invalid_name");
    let r = me
        .post(
            "/api/v1/me/api-keys",
            serde_json::json!({"label": blank, "type": "hmac", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.code(), "invalid_label");
}
