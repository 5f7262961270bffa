//! Incident response through the running server: "Secure my account" (signed in and from a
//! mailed link), the settings lock, the backdoor sweep, the incident report (JSON, and the
//! PDF read back with `pdftotext`), the support code and the official-channel check.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::api_keys::{authz, create, hmac_hex};
use crate::console::operator_signed_in;
use crate::helpers::*;
use crate::protection::freeze_link;
use rampart::clock::{DAY, HOUR, MINUTE};

const BTC_ADDR: &str = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";

async fn owner_uid(c: &TestClient) -> String {
    c.get("/api/v1/me").await.json()["uid"]
        .as_str()
        .expect("uid")
        .to_owned()
}

async fn platform(app: &TestApp) -> TestClient {
    let token = app
        .state
        .withdrawals
        .add_platform_token("exchange")
        .await
        .expect("token");
    let p = app.client();
    p.header("authorization", &format!("Bearer {token}"));
    p
}

async fn withdraw(p: &TestClient, uid: &str, id: &str) -> Value {
    let r = p
        .post(
            "/api/v1/platform/withdrawals",
            json!({"request_id": id, "account_uid": uid, "asset": "BTC", "network": "BTC",
                   "amount": "0.5", "address": BTC_ADDR, "via": "session"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

/// The token of the newest mailed freeze link (the link Secure my account also uses).
async fn freeze_token(app: &TestApp, email: &str) -> String {
    freeze_link(app, email)
        .await
        .strip_prefix("/freeze/")
        .expect("a freeze link")
        .to_owned()
}

/// A read-only signed request for `key` through the gateway hook.
async fn key_answer(app: &TestApp, key: &str, secret: &str) -> Answer {
    let params = format!("timestamp={}", app.clock.now_ms());
    let uri = format!(
        "/api/v3/account?{params}&signature={}",
        hmac_hex(secret, &params)
    );
    authz(&app.client(), key, "GET", &uri).await
}

#[tokio::test]
async fn secure_my_account_ends_other_sessions_suspends_keys_cancels_and_locks_withdrawals() {
    let app = spawn_app().await;
    let email = "sam@example.com";
    let owner = app.signed_in(email).await;
    let uid = owner_uid(&owner).await;
    let other = app.signed_in_again(email).await;
    app.step_up_by_email(&owner, email).await;
    let key = create(&owner, json!({"label": "bot", "type": "hmac", "permissions": ["read"], "ip_allowlist": ["127.0.0.1"]})).await;
    let (key_id, secret) = (
        key["api_key"].as_str().expect("key").to_owned(),
        key["secret"].as_str().expect("secret").to_owned(),
    );
    assert_eq!(
        key_answer(&app, &key_id, &secret).await.status,
        StatusCode::OK
    );
    let r = owner
        .put("/api/v1/me/withdrawal-delay", json!({"days": 2}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let p = platform(&app).await;
    let held = withdraw(&p, &uid, "w1").await;
    assert_eq!(held["state"], "held");

    let r = owner.post("/api/v1/me/secure", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let report = r.json();
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"].as_str().expect("step"))
        .collect();
    assert_eq!(
        steps,
        [
            "sessions",
            "api_keys",
            "withdrawals",
            "withdrawal_lock",
            "incident"
        ]
    );
    assert!(report["steps"][0]["result"]
        .as_str()
        .expect("text")
        .contains("1 session"));
    assert!(report["steps"][1]["result"]
        .as_str()
        .expect("text")
        .contains("1 API key"));
    assert!(report["steps"][2]["result"]
        .as_str()
        .expect("text")
        .contains("1 held withdrawal"));
    assert!(!report["next"].as_array().expect("next").is_empty());

    // The asking session stays; the other one is gone.
    assert_eq!(owner.get("/api/v1/me").await.status, StatusCode::OK);
    assert_eq!(
        other.get("/api/v1/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    // The key is refused, and says why.
    let r = key_answer(&app, &key_id, &secret).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.headers["x-rampart-error"], "key_suspended");
    let keys = owner.get("/api/v1/me/api-keys").await.json();
    assert!(!keys.to_string().is_empty());
    // The held withdrawal is cancelled; a new one is not released while the lock holds.
    let list = owner.get("/api/v1/me/withdrawals").await.json();
    assert_eq!(list[0]["state"], "cancelled", "{list}");
    let again = withdraw(&p, &uid, "w2").await;
    assert_ne!(again["state"], "released", "{again}");
    let overview = owner.get("/api/v1/me/withdrawal-settings").await.json();
    assert!(
        overview["locks"].to_string().contains("account_secured"),
        "{overview}"
    );
    // The owner is told.
    assert!(app
        .mails_to(email)
        .await
        .iter()
        .any(|m| m.subject.contains("Your account was secured")));

    // Resuming the key needs a fresh step-up.
    app.clock.advance(10 * MINUTE);
    let r = owner
        .post(&format!("/api/v1/me/api-keys/{key_id}/resume"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.code(), "step_up_required");
    app.step_up_by_email(&owner, email).await;
    let r = owner
        .post(&format!("/api/v1/me/api-keys/{key_id}/resume"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        key_answer(&app, &key_id, &secret).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_link_in_a_security_mail_secures_the_account_once_without_signing_in() {
    let app = spawn_app().await;
    let email = "lin@example.com";
    let owner = app.signed_in(email).await;
    // A security mail with the single-use link: a second device signing in.
    let _other = app.signed_in_again(email).await;
    let token = freeze_token(&app, email).await;
    let anon = app.client();
    let r = anon
        .post("/api/v1/secure-account", json!({"token": token}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.json()["steps"][0]["result"]
        .as_str()
        .expect("text")
        .contains("everywhere"));
    assert_eq!(
        owner.get("/api/v1/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = anon
        .post("/api/v1/secure-account", json!({"token": token}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = anon
        .post("/api/v1/secure-account", json!({"token": "nope"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // Not frozen: the owner signs in again.
    let c = app.client();
    let r = c
        .post(
            "/api/v1/sessions",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn a_settings_lock_refuses_every_change_until_it_ends_and_ending_early_waits() {
    let app = spawn_app().await;
    let email = "lou@example.com";
    let owner = app.signed_in(email).await;
    app.step_up_by_email(&owner, email).await;
    let key = create(&owner, json!({"label": "bot", "type": "hmac", "permissions": ["read"], "ip_allowlist": ["127.0.0.1"]})).await;
    let key_id = key["api_key"].as_str().expect("key").to_owned();

    for (body, code) in [
        (
            json!({"hours": 0, "early_end_hours": 24}),
            "invalid_lock_duration",
        ),
        (
            json!({"hours": 24, "early_end_hours": 0}),
            "invalid_early_end_delay",
        ),
        (
            json!({"hours": 9000, "early_end_hours": 24}),
            "invalid_lock_duration",
        ),
    ] {
        let r = owner.put("/api/v1/me/settings-lock", body).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert_eq!(r.code(), code);
    }
    let r = owner
        .put(
            "/api/v1/me/settings-lock",
            json!({"hours": 30 * 24, "early_end_hours": 72}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let until = r.json()["until"].as_i64().expect("until");
    assert_eq!(until, app.clock.now_ms() + 30 * DAY);
    let r = owner
        .put(
            "/api/v1/me/settings-lock",
            json!({"hours": 1, "early_end_hours": 1}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "a lock in force is not replaced"
    );

    // Every change that adds access or alters a setting is refused, step-up or not.
    let refused = |r: Answer| {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert_eq!(r.code(), "settings_locked");
        assert!(r.json()["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("locked until"));
    };
    refused(
        owner
            .post(
                "/api/v1/me/api-keys",
                json!({"label": "x", "type": "hmac", "permissions": ["read"]}),
            )
            .await,
    );
    refused(
        owner
            .post(
                "/api/v1/me/withdrawal-addresses",
                json!({"asset": "BTC", "network": "BTC", "address": BTC_ADDR, "label": "cold"}),
            )
            .await,
    );
    refused(
        owner
            .post(
                "/api/v1/me/email-change",
                json!({"new_email": "new@example.com"}),
            )
            .await,
    );
    // Strengthening is not a change the lock stops; weakening is.
    let r = owner
        .put("/api/v1/me/withdrawal-allowlist", json!({"enabled": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    refused(
        owner
            .put("/api/v1/me/withdrawal-allowlist", json!({"enabled": false}))
            .await,
    );
    let overview = owner.get("/api/v1/me/withdrawal-settings").await.json();
    assert!(overview["locks"].to_string().contains("settings_locked"));
    // Removing access stays possible.
    let r = owner.delete(&format!("/api/v1/me/api-keys/{key_id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    // Ending early waits the 72 hours chosen when locking.
    let r = owner
        .post("/api/v1/me/settings-lock/end-early", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["until"].as_i64().expect("until"),
        app.clock.now_ms() + 72 * HOUR
    );
    assert!(app
        .mails_to(email)
        .await
        .iter()
        .any(|m| m.subject.contains("lock ends early")));
    app.clock.advance(72 * HOUR - MINUTE);
    let owner = app.signed_in_again(email).await;
    app.step_up_by_email(&owner, email).await;
    refused(
        owner
            .post(
                "/api/v1/me/api-keys",
                json!({"label": "x", "type": "hmac", "permissions": ["read"]}),
            )
            .await,
    );
    app.clock.advance(MINUTE);
    let view = owner.get("/api/v1/me/settings-lock").await.json();
    assert_eq!(view["locked"], false, "{view}");
    let r = owner
        .post(
            "/api/v1/me/api-keys",
            json!({"label": "x", "type": "hmac", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn the_sweep_lists_what_an_intruder_added_with_where_from_and_removes_it_all() {
    let app = spawn_app().await;
    let email = "sue@example.com";
    let owner = app.signed_in(email).await;
    app.step_up_by_email(&owner, email).await;
    let own = create(&owner, json!({"label": "my bot", "type": "hmac", "permissions": ["read"], "ip_allowlist": ["127.0.0.1"]})).await;
    app.clock.advance(MINUTE);
    let since = app.clock.now_ms();
    // The intruder signs in from another device and plants a key and an address.
    let intruder = app.signed_in_again(email).await;
    app.step_up_by_email(&intruder, email).await;
    let planted = create(&intruder, json!({"label": "sync", "type": "hmac", "permissions": ["read", "withdraw"], "ip_allowlist": ["127.0.0.1"]})).await;
    let r = intruder
        .post(
            "/api/v1/me/withdrawal-addresses",
            json!({"asset": "BTC", "network": "BTC", "address": BTC_ADDR, "label": "exchange"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    let sweep = owner
        .get(&format!("/api/v1/me/sweep?since={since}"))
        .await
        .json();
    let items = sweep["items"].as_array().expect("items");
    let kinds: Vec<&str> = items
        .iter()
        .map(|i| i["kind"].as_str().expect("kind"))
        .collect();
    assert!(kinds.contains(&"api_key"), "{sweep}");
    assert!(kinds.contains(&"allowlist_address"), "{sweep}");
    assert!(kinds.contains(&"device"), "{sweep}");
    let key_item = items
        .iter()
        .find(|i| i["kind"] == "api_key")
        .expect("key item");
    assert_eq!(key_item["id"], planted["api_key"]);
    assert!(
        key_item["device"].as_str().expect("device").contains("iOS"),
        "{key_item}"
    );
    assert!(key_item["ip"].is_string());
    assert!(
        !sweep
            .to_string()
            .contains(own["api_key"].as_str().expect("own")),
        "the owner's older key is not listed"
    );
    let r = owner.get("/api/v1/me/sweep?since=yesterday").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Removing needs the owner's step-up, then everything goes at once.
    app.clock.advance(10 * MINUTE);
    let r = owner
        .post("/api/v1/me/sweep/remove-all", json!({"since": since}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    app.step_up_by_email(&owner, email).await;
    let r = owner
        .post("/api/v1/me/sweep/remove-all", json!({"since": since}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let results = r.json()["results"].as_array().expect("results").clone();
    assert!(results.iter().all(|r| r["removed"] == true), "{results:?}");
    assert_eq!(
        intruder.get("/api/v1/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    let keys = owner.get("/api/v1/me/api-keys").await.body;
    assert!(!keys.contains(planted["api_key"].as_str().expect("k")));
    assert!(keys.contains(own["api_key"].as_str().expect("own")));
    assert_eq!(
        owner.get("/api/v1/me/withdrawal-addresses").await.json(),
        json!([])
    );
    let after = owner
        .get(&format!("/api/v1/me/sweep?since={since}"))
        .await
        .json();
    assert_eq!(after["items"], json!([]), "{after}");
    let r = owner
        .post(
            "/api/v1/me/sweep/remove",
            json!({"kind": "webhook", "id": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
}

#[tokio::test]
async fn the_incident_report_has_the_timeline_and_the_pdf_reads_back() {
    let app = spawn_app().await;
    let email = "ria@example.com";
    let owner = app.signed_in(email).await;
    let uid = owner_uid(&owner).await;
    app.step_up_by_email(&owner, email).await;
    create(&owner, json!({"label": "trading bot", "type": "hmac", "permissions": ["read"], "ip_allowlist": ["127.0.0.1"]})).await;
    let p = platform(&app).await;
    withdraw(&p, &uid, "w1").await;
    let r = owner.post("/api/v1/me/secure", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = owner.get("/api/v1/me/incident-report").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let report = r.json();
    assert_eq!(report["account_uid"], uid.as_str());
    assert_eq!(report["audit_chain_intact"], true, "{report}");
    let timeline = report["timeline"].to_string();
    assert!(timeline.contains("trading bot"), "{timeline}");
    assert!(timeline.contains("Secure my account"), "{timeline}");
    assert!(timeline.contains("Withdrawal requested"), "{timeline}");
    let at: Vec<i64> = report["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| e["at"].as_i64().expect("at"))
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "chronological");
    let sign_in = &report["sign_ins"][0];
    for field in ["device_model", "os", "browser", "ip", "place", "first_seen"] {
        assert!(!sign_in[field].is_null(), "{field} in {sign_in}");
    }
    assert_eq!(report["withdrawals"][0]["destination"], BTC_ADDR);
    assert_eq!(report["incidents"].as_array().expect("incidents").len(), 1);

    let r = owner.get("/api/v1/me/incident-report.pdf").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/pdf");
    assert!(r.bytes.starts_with(b"%PDF-"));
    let text = pdf_text(&r.bytes);
    let Some(text) = text else { return };
    assert!(text.contains("Incident report"), "{text}");
    assert!(text.contains(&uid), "{text}");
    assert!(text.contains("intact"), "{text}");
    assert!(text.contains(BTC_ADDR), "{text}");
    assert!(text.contains("trading bot"), "{text}");
}

#[tokio::test]
async fn the_report_says_so_when_its_events_were_altered() {
    let app = spawn_app().await;
    let email = "tam@example.com";
    let owner = app.signed_in(email).await;
    app.step_up_by_email(&owner, email).await;
    create(&owner, json!({"label": "bot", "type": "hmac", "permissions": ["read"], "ip_allowlist": ["127.0.0.1"]})).await;
    let r = owner.get("/api/v1/me/incident-report").await.json();
    assert_eq!(r["audit_chain_intact"], true, "{}", r["audit_chain"]);
    raw_sql(
        &app.database_url,
        "UPDATE audit_events SET detail = '{\"label\":\"innocent\"}' WHERE action = 'api_key.created'",
    )
    .await;
    let r = owner.get("/api/v1/me/incident-report").await.json();
    assert_eq!(r["audit_chain_intact"], false);
    assert!(
        r["audit_chain"].as_str().expect("text").contains("altered"),
        "{}",
        r["audit_chain"]
    );
}

/// The PDF's text through `pdftotext` (poppler-utils); `None` (skipped, loudly) only
/// outside CI when it is not installed.
fn pdf_text(pdf: &[u8]) -> Option<String> {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, pdf).expect("write");
    match std::process::Command::new("pdftotext")
        .arg("-layout")
        .arg(&path)
        .arg("-")
        .output()
    {
        Ok(out) => {
            assert!(out.status.success(), "pdftotext failed: {:?}", out);
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED reading the PDF back: pdftotext not found ({e}); apt-get install poppler-utils");
            None
        }
        Err(e) => panic!("pdftotext is needed in CI: {e}"),
    }
}

#[tokio::test]
async fn support_reads_out_the_rotating_code_and_anyone_checks_official_channels() {
    let app = spawn_app().await;
    let email = "cal@example.com";
    let owner = app.signed_in(email).await;
    let uid = owner_uid(&owner).await;
    // Signing the operator in moves the test clock (fresh TOTP steps): first, so both
    // codes below are read at the same time.
    let support = operator_signed_in(&app, "support").await;
    let code = owner.get("/api/v1/me/support-code").await.json();
    let digits = code["code"].as_str().expect("code").to_owned();
    assert_eq!(digits.len(), 6);
    assert_eq!(code["period_seconds"], 300);

    // The agent reads out what the owner sees; both change every 5 minutes.
    let shown = |uid: String| {
        let support = &support;
        async move {
            let r = support
                .get(&format!("/api/v1/console/accounts/{uid}/support-code"))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.json()["code"].as_str().expect("code").to_owned()
        }
    };
    assert_eq!(shown(uid.clone()).await, digits);
    app.clock.advance(5 * MINUTE);
    let next = owner.get("/api/v1/me/support-code").await.json()["code"]
        .as_str()
        .expect("code")
        .to_owned();
    assert_ne!(next, digits, "a new code every 5 minutes");
    assert_eq!(shown(uid.clone()).await, next);
    let other = app.signed_in("other@example.com").await;
    let others = other.get("/api/v1/me/support-code").await.json()["code"]
        .as_str()
        .expect("code")
        .to_owned();
    assert_eq!(shown(owner_uid(&other).await).await, others);
    let r = support
        .get("/api/v1/console/accounts/0000000000/support-code")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let anon = app.client();
    let r = anon
        .get(&format!("/api/v1/console/accounts/{uid}/support-code"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let account = app
        .store()
        .account_by_email(email)
        .await
        .expect("db")
        .expect("account");
    let trail = app
        .store()
        .audit_for_account(&account.id, 50)
        .await
        .expect("audit");
    assert!(trail
        .iter()
        .any(|e| e.action == "console.support_code_viewed"));

    // Only admins maintain the list; anyone checks against it.
    let r = support
        .post(
            "/api/v1/console/official-channels",
            json!({"kind": "web", "value": "rampart.example", "note": "Our site"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let admin = operator_signed_in(&app, "admin").await;
    for (kind, value, note) in [
        ("web", "https://rampart.example", "Our site"),
        ("email", "@rampart.example", "Every mail from us"),
        ("phone", "+44 20 7946 0000", "Support line"),
    ] {
        let r = admin
            .post(
                "/api/v1/console/official-channels",
                json!({"kind": kind, "value": value, "note": note}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let r = admin
        .post(
            "/api/v1/console/official-channels",
            json!({"kind": "web", "value": "RAMPART.example/", "note": "dup"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    let check = |kind: &str, value: &str| {
        let anon = &anon;
        let path = format!(
            "/api/v1/official-channels/check?kind={kind}&value={}",
            urlencode(value)
        );
        async move { anon.get(&path).await }
    };
    let yes = check("web", "https://rampart.example/login?x=1")
        .await
        .json();
    assert_eq!(yes["official"], true, "{yes}");
    let yes = check("email", "Security@Rampart.example").await.json();
    assert_eq!(yes["official"], true, "{yes}");
    let yes = check("phone", "0044 20 7946 0000").await.json();
    assert_eq!(yes["official"], true, "{yes}");
    let no = check("web", "https://rampart.example.support-desk.example/")
        .await
        .json();
    assert_eq!(no["official"], false, "{no}");
    assert!(no["message"].as_str().expect("m").contains("never asks"));
    let no = check("chat", "@rampart_support").await.json();
    assert_eq!(no["official"], false);
    let r = check("fax", "123").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = check("web", "https://rаmpart.example").await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a Cyrillic look-alike is refused"
    );
    let listed = anon.get("/api/v1/official-channels").await.json();
    assert_eq!(listed.as_array().expect("list").len(), 3);
}
