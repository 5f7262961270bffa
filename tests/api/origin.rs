//! Requests made in the user's name from somewhere else: a page on another origin (a
//! sibling subdomain is the same *site*, so `SameSite=Lax` cookies still come along) must
//! not change anything, whether through the JSON API or through the pages' forms. Also the
//! CSRF token's binding to the session, and `Strict-Transport-Security`.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// Sends the next requests with these browser headers (and only these).
fn browser_headers(c: &TestClient, headers: &[(&'static str, &str)]) {
    c.extra.lock().expect("headers").clear();
    for (name, value) in headers {
        c.header(name, value);
    }
}

async fn frozen(app: &TestApp, email: &str) -> bool {
    app.store()
        .account_by_email(email)
        .await
        .expect("read")
        .expect("account")
        .frozen_at
        .is_some()
}

async fn anti_phishing_code(c: &TestClient) -> Option<String> {
    browser_headers(c, &[]);
    let me = c.get("/api/v1/me").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    me.json()["anti_phishing_code"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_signed_in_freeze_sent_as_text_or_a_form_is_refused() {
    let app = spawn_app().await;
    let c = app.signed_in("tex@example.com").await;
    // What a <form enctype="text/plain"> or a no-cors fetch with a string body sends.
    for (content_type, body) in [
        ("text/plain", "{}"),
        ("text/plain;charset=UTF-8", ""),
        ("application/x-www-form-urlencoded", "a=b"),
        ("multipart/form-data; boundary=x", "--x--\r\n"),
    ] {
        let r = c
            .post_raw("/api/v1/me/freeze", content_type, body.as_bytes().to_vec())
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}: {}",
            r.body
        );
        assert_eq!(r.code(), "unsupported_media_type");
        assert!(!frozen(&app, "tex@example.com").await, "{content_type}");
    }
    // The same holds for an endpoint with a JSON body.
    let r = c
        .send(
            reqwest::Method::PUT,
            "/api/v1/me/anti-phishing-code",
            Some(("text/plain", br#"{"code":"Planted-Code-1"}"#.to_vec())),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.body);
    assert_eq!(anti_phishing_code(&c).await, None);

    // As JSON, or with no body at all, it freezes.
    let r = c
        .send(reqwest::Method::POST, "/api/v1/me/freeze", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["status"], "frozen");
    assert!(frozen(&app, "tex@example.com").await);
}

#[tokio::test]
async fn a_signed_in_request_from_a_foreign_origin_is_refused() {
    let app = spawn_app().await;
    let c = app.signed_in("for@example.com").await;
    for origin in [
        // A sibling subdomain: same site, so the Lax session cookie is sent.
        "http://evil.rampart.test",
        "https://rampart.test",
        "http://rampart.test:8080",
        "http://rampart.test.evil.example",
        "null",
    ] {
        browser_headers(&c, &[("origin", origin)]);
        let r = c.post("/api/v1/me/freeze", json!({})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin}: {}", r.body);
        assert_eq!(r.code(), "cross_origin_request");
        let r = c
            .put(
                "/api/v1/me/anti-phishing-code",
                json!({"code": "Planted-Code-1"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin}: {}", r.body);
        assert_eq!(r.code(), "cross_origin_request");
        let r = c.delete("/api/v1/sessions/current").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin}: {}", r.body);
    }
    assert!(!frozen(&app, "for@example.com").await);
    assert_eq!(
        anti_phishing_code(&c).await,
        None,
        "still signed in, unchanged"
    );

    // Forms too, even with a valid CSRF token.
    let csrf = csrf_in(&c.get("/security").await.body);
    browser_headers(&c, &[("origin", "http://evil.rampart.test")]);
    let r = c
        .post_form(
            "/security/anti-phishing-code",
            &[("csrf", &csrf), ("code", "Planted-Code-1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("from another site"), "{}", r.body);
    let r = c
        .post_form("/security/freeze/confirm", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(!frozen(&app, "for@example.com").await);
    assert_eq!(anti_phishing_code(&c).await, None);
}

#[tokio::test]
async fn a_signed_in_request_that_the_browser_marks_cross_site_is_refused() {
    let app = spawn_app().await;
    let c = app.signed_in("sfs@example.com").await;
    for site in ["cross-site", "same-site", "Cross-Site", "bogus"] {
        browser_headers(&c, &[("sec-fetch-site", site)]);
        let r = c.post("/api/v1/me/freeze", json!({})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{site}: {}", r.body);
        assert_eq!(r.code(), "cross_origin_request");
    }
    // Even with our own Origin: both headers must agree that it is us.
    browser_headers(
        &c,
        &[
            ("origin", "http://rampart.test"),
            ("sec-fetch-site", "same-site"),
        ],
    );
    let r = c.post("/api/v1/me/freeze", json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let csrf = csrf_in(&{
        browser_headers(&c, &[]);
        c.get("/security").await.body
    });
    browser_headers(&c, &[("sec-fetch-site", "cross-site")]);
    let r = c
        .post_form("/security/freeze/confirm", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(!frozen(&app, "sfs@example.com").await);
}

#[tokio::test]
async fn our_own_pages_and_clients_without_browser_headers_are_accepted() {
    let app = spawn_app().await;
    let c = app.signed_in("own@example.com").await;
    // Setting the code again below is a replacement, which needs a step-up.
    app.step_up_by_email(&c, "own@example.com").await;
    for headers in [
        vec![
            ("origin", "http://rampart.test"),
            ("sec-fetch-site", "same-origin"),
        ],
        vec![("origin", "http://rampart.test/")],
        vec![("origin", "HTTP://Rampart.Test")],
        vec![("sec-fetch-site", "none")],
        vec![("sec-fetch-site", "same-origin")],
        vec![],
    ] {
        browser_headers(&c, &headers);
        let r = c
            .put(
                "/api/v1/me/anti-phishing-code",
                json!({"code": "Owl-Lantern-9"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}: {}", r.body);
        // JSON with a charset parameter is JSON.
        let r = c
            .send(
                reqwest::Method::PUT,
                "/api/v1/me/anti-phishing-code",
                Some((
                    "application/json; charset=utf-8",
                    br#"{"code":"Owl-Lantern-9"}"#.to_vec(),
                )),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}: {}", r.body);
    }
    assert_eq!(
        anti_phishing_code(&c).await.as_deref(),
        Some("Owl-Lantern-9")
    );

    // A form from our own page. Under `Referrer-Policy: no-referrer` browsers would send
    // `Origin: null` with it (refused: a sandboxed frame sends that too); `same-origin`
    // keeps our own origin in our own requests and still sends nothing to other sites.
    let page = c.get("/security").await;
    assert_eq!(page.headers["referrer-policy"], "same-origin");
    let csrf = csrf_in(&page.body);
    browser_headers(
        &c,
        &[
            ("origin", "http://rampart.test"),
            ("sec-fetch-site", "same-origin"),
        ],
    );
    let r = c
        .post_form(
            "/security/anti-phishing-code",
            &[("csrf", &csrf), ("code", "Fox-Meadow-7")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        anti_phishing_code(&c).await.as_deref(),
        Some("Fox-Meadow-7")
    );

    // The freeze link's page, opened in the signed-in browser, still works from itself.
    let mails = app.mails_to("own@example.com").await;
    let link = mails
        .iter()
        .rev()
        .find_map(|m| {
            m.body_text
                .lines()
                .find(|l| l.contains("/freeze/"))
                .map(|l| l.trim().to_owned())
        })
        .expect("a freeze link");
    let path = link
        .strip_prefix("http://rampart.test")
        .expect("public url");
    browser_headers(&c, &[("sec-fetch-site", "none")]);
    let page = c.get(path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    browser_headers(
        &c,
        &[
            ("origin", "http://rampart.test"),
            ("sec-fetch-site", "same-origin"),
        ],
    );
    let r = c.post_form(path, &[("csrf", &csrf_in(&page.body))]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Your account is frozen"), "{}", r.body);
    assert!(frozen(&app, "own@example.com").await);
}

#[tokio::test]
async fn the_gateway_hook_is_not_judged_by_origin() {
    // /authz answers for the platform's own pages, wherever they are served from.
    let app = spawn_app().await;
    let c = app.signed_in("gw@example.com").await;
    browser_headers(
        &c,
        &[
            ("origin", "https://exchange.example"),
            ("sec-fetch-site", "cross-site"),
            ("x-original-method", "POST"),
            ("x-original-uri", "/api/v3/order"),
        ],
    );
    let r = c.post_raw("/authz", "text/plain", "x").await;
    assert_ne!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(!r.body.contains("cross_origin_request"), "{}", r.body);
}

/// Signs in through the sign-in form; returns the token the form carried.
async fn sign_in_on_the_page(c: &TestClient, email: &str) -> String {
    let token = csrf_in(&c.get("/signin").await.body);
    let r = c
        .post_form(
            "/signin",
            &[("csrf", &token), ("email", email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.headers["location"], "/security");
    token
}

#[tokio::test]
async fn a_form_token_from_before_sign_in_or_from_another_session_is_refused() {
    let app = spawn_app().await;
    let owner_email = "tok@example.com";
    let owner = app.client();
    app.register_confirmed(&owner, owner_email).await;

    // Signed out: the sign-in page's token signs in.
    let before = sign_in_on_the_page(&owner, owner_email).await;
    // Signed in: that token no longer passes, the Security Center's does.
    let r = owner
        .post_form(
            "/security/anti-phishing-code",
            &[("csrf", &before), ("code", "Planted-Code-1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("form has expired"), "{}", r.body);
    assert_eq!(anti_phishing_code(&owner).await, None);

    // An attacker with their own account, who can set cookies on the parent domain from a
    // sibling subdomain, plants their CSRF cookie in the owner's browser and uses their own
    // (valid, signed-in) token: refused, because it belongs to another session.
    let attacker = app.signed_in("mallory@example.com").await;
    let attackers_token = csrf_in(&attacker.get("/security").await.body);
    let attackers_cookie = attacker.cookie("rampart_csrf").expect("csrf cookie");
    owner.set_cookie("rampart_csrf", &attackers_cookie);
    let r = owner
        .post_form(
            "/security/anti-phishing-code",
            &[("csrf", &attackers_token), ("code", "Planted-Code-1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("form has expired"), "{}", r.body);
    let r = owner
        .post_form("/signout", &[("csrf", &attackers_token)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(anti_phishing_code(&owner).await, None, "still signed in");

    // The owner's own page works, and a token of the owner's previous session does not
    // outlive it.
    let own = csrf_in(&owner.get("/security").await.body);
    let r = owner
        .post_form(
            "/security/anti-phishing-code",
            &[("csrf", &own), ("code", "Owl-Lantern-9")],
        )
        .await;
    assert_eq!(
        r.headers["location"],
        "/security/factors?saved=anti_phishing"
    );
    let r = owner.post_form("/signout", &[("csrf", &own)]).await;
    assert_eq!(r.headers["location"], "/signin?notice=signed_out");
    sign_in_on_the_page(&owner, owner_email).await;
    let r = owner
        .post_form(
            "/security/anti-phishing-code",
            &[("csrf", &own), ("code", "Planted-Code-1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(
        anti_phishing_code(&owner).await.as_deref(),
        Some("Owl-Lantern-9")
    );
}

#[tokio::test]
async fn strict_transport_security_only_when_public_url_is_https() {
    let app = spawn_app_with(|s| s.public_url = Some("https://rampart.test".to_owned())).await;
    let c = app.client();
    for path in ["/healthz", "/signin", "/api/v1/me", "/no-such-page"] {
        let r = c.get(path).await;
        assert_eq!(
            r.headers
                .get("strict-transport-security")
                .map(|v| v.to_str().expect("ascii")),
            Some("max-age=31536000; includeSubDomains"),
            "{path}"
        );
    }
    let r = c.post("/api/v1/sessions", json!({})).await;
    assert!(r.headers.contains_key("strict-transport-security"));

    let app = spawn_app().await;
    let c = app.client();
    for path in ["/healthz", "/signin", "/api/v1/me"] {
        assert!(
            !c.get(path)
                .await
                .headers
                .contains_key("strict-transport-security"),
            "plain http public_url: {path}"
        );
    }
}
