use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_whole_flow_works_through_the_pages_with_csrf() {
    let app = spawn_app().await;
    let c = app.client();
    let page = c.get("/signup").await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page
        .headers
        .get("content-security-policy")
        .expect("CSP")
        .to_str()
        .expect("ascii");
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    let csrf = csrf_in(&page.body);

    // A form without the token, or with another browser's token, is refused.
    let r = c
        .post_form(
            "/signup",
            &[("email", "una@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "missing field");
    let other = app.client();
    let r = other
        .post_form(
            "/signup",
            &[
                ("csrf", &csrf),
                ("email", "una@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a token without its cookie is refused"
    );
    assert!(app.mails_to("una@example.com").await.is_empty());

    let r = c
        .post_form(
            "/signup",
            &[
                ("csrf", &csrf),
                ("email", "una@example.com"),
                ("password", "tooweak"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("at least 12 characters"));

    let r = c
        .post_form(
            "/signup",
            &[
                ("csrf", &csrf),
                ("email", "una@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/confirm?email=una%40example.com");
    let code = app.confirmation_code("una@example.com").await;
    let r = c
        .post_form(
            "/confirm",
            &[
                ("csrf", &csrf),
                ("email", "una@example.com"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(r.headers["location"], "/signin?notice=confirmed");
    let r = c
        .post_form(
            "/signin",
            &[
                ("csrf", &csrf),
                ("email", "una@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.headers["location"], "/security");

    let page = c.get("/security").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Security Center"));
    assert!(page.body.contains("Chrome 126.0"));
    assert!(page.body.contains("Success"));
    assert!(page.body.contains("What to do now"));
    let devices = c.get("/security/devices").await;
    assert!(devices.body.contains("This device"));
    assert!(devices.body.contains("aria-current=\"page\">Devices"));
    let factors = c.get("/security/factors").await;
    assert!(factors.body.contains("You have no anti-phishing code yet"));
    assert_eq!(
        c.get("/security/nothing-here").await.status,
        StatusCode::NOT_FOUND
    );

    // Signed in, forms carry a token bound to this session (the sign-in page's is stale).
    let csrf = csrf_in(&page.body);
    let r = c
        .post_form(
            "/security/anti-phishing-code",
            &[("csrf", &csrf), ("code", "Owl-Lantern-9")],
        )
        .await;
    assert_eq!(
        r.headers["location"],
        "/security/factors?saved=anti_phishing"
    );
    assert!(c
        .get("/security/factors")
        .await
        .body
        .contains("Owl-Lantern-9"));

    let r = c.post_form("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(r.headers["location"], "/signin?notice=signed_out");
    let r = c.get("/security").await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "signed out: back to sign-in"
    );
}

#[tokio::test]
async fn page_errors_escape_what_the_user_typed() {
    let app = spawn_app().await;
    let c = app.client();
    let csrf = csrf_in(&c.get("/signin").await.body);
    let r = c
        .post_form(
            "/signin",
            &[
                ("csrf", &csrf),
                ("email", "<script>alert(1)</script>@x.com"),
                ("password", "whatever-long-enough"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.body.contains("<script>alert(1)"));
    assert!(r.body.contains("&#60;script&#62;") || r.body.contains("&lt;script&gt;"));
}

#[tokio::test]
async fn health_metrics_openapi_and_mailbox() {
    let app = spawn_app().await;
    let c = app.client();
    assert_eq!(c.get("/healthz").await.status, StatusCode::OK);
    c.post(
        "/api/v1/sessions",
        json!({"email": "x@example.com", "password": "Wrong-but-long-enough-1"}),
    )
    .await;
    let metrics = c.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.body.contains("rampart_http_requests_total"),
        "{}",
        metrics.body
    );
    let doc = c.get("/api/v1/openapi.json").await.json();
    for path in [
        "/api/v1/accounts",
        "/api/v1/accounts/confirm",
        "/api/v1/sessions",
        "/api/v1/sessions/current",
        "/api/v1/me",
        "/api/v1/me/devices",
        "/api/v1/me/logins",
        "/api/v1/me/anti-phishing-code",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    app.client()
        .post(
            "/api/v1/accounts",
            json!({"email": "vic@example.com", "password": PASSWORD}),
        )
        .await;
    app.worker.drain().await.expect("drain");
    let mailbox = c.get("/dev/mailbox").await;
    assert_eq!(mailbox.status, StatusCode::OK);
    assert!(mailbox.body.contains("data-to=\"vic@example.com\""));
    assert!(mailbox.body.contains("confirmation code is"));
}

#[tokio::test]
async fn the_openapi_document_declares_what_each_operation_takes_and_answers() {
    let app = spawn_app().await;
    let doc = app.client().get("/api/v1/openapi.json").await.json();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 30, "every route is documented");
    for path in [
        "/api/v1/me/notification-preferences",
        "/api/v1/me/devices/{id}/trusted",
        "/api/v1/me/api-keys/{api_key}",
    ] {
        assert!(paths.contains_key(path), "{path} documented");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["session"]["in"],
        "cookie"
    );
    for (path, item) in paths {
        let templated: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().expect("path item") {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let declared = |name: &str, place: &str| {
                params.iter().any(|p| p["name"] == name && p["in"] == place)
            };
            for name in &templated {
                assert!(
                    declared(name, "path"),
                    "{method} {path}: path parameter {name}"
                );
            }
            for p in &params {
                if p["in"] == "path" {
                    assert!(
                        templated.contains(&p["name"].as_str().expect("name")),
                        "{method} {path}: {} is not in the path",
                        p["name"]
                    );
                }
            }
            let responses = op["responses"].as_object().expect("responses");
            if path.starts_with("/api/v1/me") {
                assert!(responses.contains_key("401"), "{method} {path}: 401");
                assert_eq!(op["security"][0]["session"], serde_json::json!([]));
            }
            if path.starts_with("/api/") && method != "get" {
                assert!(responses.contains_key("415"), "{method} {path}: 415");
            }
            if op.get("requestBody").is_some() {
                assert!(responses.contains_key("422"), "{method} {path}: 422");
            }
        }
    }
}
