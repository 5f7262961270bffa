//! The withdrawal guard through the running server: the platform asks, Rampart decides,
//! holds and releases; the owner's allowlist, delay, cancel link and key rules; freezes
//! that cancel and recall; idempotency and bad input. Time moves on the injected clock.

use axum::http::StatusCode;
use rampart::clock::{DAY, HOUR};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp, TestClient};

const BTC_ADDR: &str = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";
const ETH_ADDR: &str = "0x52908400098527886E0F7030069857D2E4169EE7";
/// Same first and last four characters as `ETH_ADDR` after `0x`, different middle.
const ETH_POISON: &str = "0x5290aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa69EE7";

struct Guard {
    app: TestApp,
    platform: std::sync::Arc<TestClient>,
    owner: TestClient,
    uid: String,
    email: &'static str,
}

async fn setup() -> Guard {
    let app = spawn_app().await;
    let email = "wanda@example.com";
    let owner = app.signed_in(email).await;
    let uid = owner.get("/api/v1/me").await.json()["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let token = app
        .state
        .withdrawals
        .add_platform_token("exchange")
        .await
        .expect("token");
    let platform = app.client();
    platform.header("authorization", &format!("Bearer {token}"));
    Guard {
        app,
        platform: std::sync::Arc::new(platform),
        owner,
        uid,
        email,
    }
}

impl Guard {
    fn body(
        &self,
        request_id: &str,
        asset: &str,
        network: &str,
        amount: &str,
        address: &str,
    ) -> Value {
        json!({"request_id": request_id, "account_uid": self.uid, "asset": asset, "network": network,
               "amount": amount, "address": address, "via": "session"})
    }

    async fn ask(&self, body: Value) -> Value {
        let r = self
            .platform
            .post("/api/v1/platform/withdrawals", body)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.json()
    }

    async fn btc(&self, request_id: &str, amount: &str) -> Value {
        self.ask(self.body(request_id, "BTC", "BTC", amount, BTC_ADDR))
            .await
    }

    async fn feed(&self, after: i64) -> Value {
        let r = self
            .platform
            .get(&format!(
                "/api/v1/platform/withdrawals/released?after={after}"
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.json()
    }

    async fn step_up(&self) {
        self.app.step_up_by_email(&self.owner, self.email).await;
    }

    async fn timed(&self) -> rampart::jobs::timed::TimedReport {
        rampart::jobs::timed::step(&self.app.state.services)
            .await
            .expect("timed step")
    }

    /// Signs the owner in again after the clock moved past the session's life.
    async fn owner_again(&self) -> TestClient {
        self.app.signed_in_again(self.email).await
    }

    async fn count(&self) -> i64 {
        self.app
            .state
            .withdrawals
            .feed(0, 500)
            .await
            .expect("feed")
            .len() as i64
    }
}

#[tokio::test]
async fn platform_endpoints_need_a_live_token() {
    let g = setup().await;
    let anon = g.app.client();
    let body = g.body("r1", "BTC", "BTC", "0.1", BTC_ADDR);
    let r = anon
        .post("/api/v1/platform/withdrawals", body.clone())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let wrong = g.app.client();
    wrong.header("authorization", "Bearer rmpt_not-a-token");
    assert_eq!(
        wrong
            .post("/api/v1/platform/withdrawals", body.clone())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        wrong
            .get("/api/v1/platform/withdrawals/released")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // The owner's session is no platform credential.
    assert_eq!(
        g.owner
            .post("/api/v1/platform/withdrawals", body.clone())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    rampart::service::withdrawals::revoke_platform_token(
        g.app.store().as_ref(),
        g.app.clock.now_ms(),
        "exchange",
    )
    .await
    .expect("revoke");
    assert_eq!(
        g.platform
            .post("/api/v1/platform/withdrawals", body)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn released_at_once_then_broadcast_and_confirmed_through_the_feed() {
    let g = setup().await;
    let a = g.btc("r1", "0.50000000").await;
    assert_eq!(a["state"], "released", "{a}");
    assert!(a["reasons"].as_array().expect("reasons").is_empty());
    let feed = g.feed(0).await;
    let items = feed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["event"], "released");
    assert_eq!(items[0]["withdrawal"]["amount"], "0.5", "exact, canonical");
    assert_eq!(items[0]["withdrawal"]["account_uid"], g.uid.as_str());
    let next = feed["next"].as_i64().expect("next");
    assert!(g.feed(next).await["items"]
        .as_array()
        .expect("items")
        .is_empty());

    let id = a["id"].as_str().expect("id");
    let r = g
        .platform
        .post(
            &format!("/api/v1/platform/withdrawals/{id}/confirmed"),
            json!({}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "not broadcast yet: {}",
        r.body
    );
    let r = g
        .platform
        .post(
            &format!("/api/v1/platform/withdrawals/{id}/broadcast"),
            json!({"txid": "ab12"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let again = g
        .platform
        .post(
            &format!("/api/v1/platform/withdrawals/{id}/broadcast"),
            json!({"txid": "ab12"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "a retried report is harmless");
    let r = g
        .platform
        .post(
            &format!("/api/v1/platform/withdrawals/{id}/confirmed"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mine = g.owner.get("/api/v1/me/withdrawals").await.json();
    assert_eq!(mine[0]["state"], "confirmed");
    assert_eq!(mine[0]["txid"], "ab12");
    let mails = g.app.mails_to(g.email).await;
    assert!(mails
        .iter()
        .any(|m| m.subject.contains("Withdrawal released")));
}

#[tokio::test]
async fn the_same_request_gets_the_same_answer_and_a_reused_id_is_refused() {
    let g = setup().await;
    let first = g.btc("same", "1").await;
    let second = g.btc("same", "1.000").await;
    assert_eq!(first, second, "the stored answer, not a new decision");
    assert_eq!(g.count().await, 1, "released once");
    let r = g
        .platform
        .post(
            "/api/v1/platform/withdrawals",
            g.body("same", "BTC", "BTC", "2", BTC_ADDR),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "request_id_reused");
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_nothing_is_stored() {
    let g = setup().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            g.body("b1", "BTC", "BTC", "-1", BTC_ADDR),
            "negative_amount",
        ),
        (
            g.body("b2", "BTC", "BTC", "0", BTC_ADDR),
            "amount_not_positive",
        ),
        (
            g.body("b3", "BTC", "BTC", "0.123456789", BTC_ADDR),
            "too_many_decimals",
        ),
        (
            g.body("b4", "BTC", "BTC", "1e3", BTC_ADDR),
            "invalid_amount",
        ),
        (g.body("b5", "DOGE", "BTC", "1", BTC_ADDR), "unknown_asset"),
        (g.body("b6", "BTC", "ETH", "1", BTC_ADDR), "unknown_network"),
        (
            g.body(
                "b7",
                "BTC",
                "BTC",
                "1",
                "bc1qar0srrr7xfkvy5l643 lydnw9re59gtzzwf5mdq",
            ),
            "address_has_spaces",
        ),
        (
            g.body(
                "b8",
                "ETH",
                "ETH",
                "1",
                "0x52908400098527886\u{415}0F7030069857D2E4169EE7",
            ),
            "address_not_ascii",
        ),
        (g.body("b9", "BTC", "BTC", "1", "short"), "invalid_address"),
        (
            json!({"request_id": "b10", "account_uid": g.uid, "asset": "BTC", "network": "BTC", "amount": "1", "address": BTC_ADDR, "memo": "123", "via": "session"}),
            "memo_not_allowed",
        ),
        (
            json!({"request_id": "b11", "account_uid": g.uid, "asset": "BTC", "network": "BTC", "amount": "1", "address": BTC_ADDR, "via": "api_key"}),
            "api_key_required",
        ),
        (
            json!({"request_id": "b12", "account_uid": g.uid, "asset": "BTC", "network": "BTC", "amount": "1", "address": BTC_ADDR, "via": "carrier_pigeon"}),
            "invalid_via",
        ),
    ];
    for (body, code) in cases {
        let r = g
            .platform
            .post("/api/v1/platform/withdrawals", body.clone())
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.body
        );
        assert_eq!(r.code(), code, "{body}");
    }
    let r = g
        .platform
        .post(
            "/api/v1/platform/withdrawals",
            json!({"request_id": "b13", "amount": 1}),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.body);
    let r = g
        .platform
        .post(
            "/api/v1/platform/withdrawals",
            g.body("b14", "BTC", "BTC", "1", BTC_ADDR)
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("account_uid".into(), json!("nobody"));
                    Value::Object(o)
                })
                .expect("object"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // XRP takes a memo.
    let xrp = json!({"request_id": "ok1", "account_uid": g.uid, "asset": "XRP", "network": "XRP", "amount": "10.5", "address": "rPEPPER7kfTD9w2To4CQk6UCfuHM9c6GDY", "memo": "12345", "via": "session"});
    assert_eq!(g.ask(xrp).await["state"], "released");
    let listed = g.owner.get("/api/v1/me/withdrawals").await.json();
    assert_eq!(
        listed.as_array().expect("list").len(),
        1,
        "only the good one is stored: {listed}"
    );
}

#[tokio::test]
async fn the_withdraw_delay_holds_the_worker_releases_and_shortening_waits() {
    let g = setup().await;
    let r = g
        .owner
        .put("/api/v1/me/withdrawal-delay", json!({"days": 2}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "lengthening is strengthening: {}",
        r.body
    );
    assert_eq!(r.json()["status"], "applied");
    let a = g.btc("d1", "0.1").await;
    assert_eq!(a["state"], "held");
    assert_eq!(a["reasons"][0]["code"], "withdraw_delay");
    let now = g.app.clock.now_ms();
    assert_eq!(a["release_at"], now + 2 * DAY);
    let held_mail = g
        .app
        .mails_to(g.email)
        .await
        .into_iter()
        .find(|m| m.subject.contains("Withdrawal requested: held"))
        .expect("held mail");
    assert!(
        held_mail.body_text.contains("/withdrawals/cancel/"),
        "{}",
        held_mail.body_text
    );

    g.app.clock.advance(2 * DAY - HOUR);
    assert_eq!(g.timed().await.withdrawals_released, 0);
    assert_eq!(g.count().await, 0);
    g.app.clock.advance(HOUR);
    assert_eq!(g.timed().await.withdrawals_released, 1);
    assert_eq!(g.timed().await.withdrawals_released, 0, "never twice");
    assert_eq!(
        g.feed(0).await["items"][0]["withdrawal"]["state"],
        "released"
    );

    // Shortening waits out the current delay (48 h at least) and can be cancelled.
    let owner = g.owner_again().await;
    let r = owner
        .put("/api/v1/me/withdrawal-delay", json!({"days": 0}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "weakening needs a step-up: {}",
        r.body
    );
    g.app.step_up_by_email(&owner, g.email).await;
    let r = owner
        .put("/api/v1/me/withdrawal-delay", json!({"days": 0}))
        .await;
    assert_eq!(r.json()["status"], "scheduled", "{}", r.body);
    let o = owner.get("/api/v1/me/withdrawal-settings").await.json();
    assert_eq!(o["delay_days"], 2);
    assert_eq!(o["delay_next_days"], 0);
    assert_eq!(g.btc("d2", "0.1").await["state"], "held", "still 2 days");
    g.app.clock.advance(2 * DAY);
    g.timed().await;
    assert_eq!(
        g.btc("d3", "0.1").await["state"],
        "released",
        "the shorter delay applied"
    );
    let r = g
        .owner_again()
        .await
        .put("/api/v1/me/withdrawal-delay", json!({"days": 9}))
        .await;
    assert_eq!(r.code(), "invalid_delay");
}

#[tokio::test]
async fn the_allowlist_takes_new_addresses_after_24_hours_and_goes_off_after_48() {
    let g = setup().await;
    let r = g
        .owner
        .post(
            "/api/v1/me/withdrawal-addresses",
            json!({"asset": "ETH", "network": "ETH", "address": ETH_ADDR, "label": "cold wallet"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "adding needs a step-up");
    g.step_up().await;
    let r = g
        .owner
        .post(
            "/api/v1/me/withdrawal-addresses",
            json!({"asset": "ETH", "network": "ETH", "address": ETH_ADDR, "label": "cold wallet"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let entry = r.json();
    let r = g
        .owner
        .post(
            "/api/v1/me/withdrawal-addresses",
            json!({"asset": "ETH", "network": "ETH", "address": ETH_ADDR, "label": "again"}),
        )
        .await;
    assert_eq!(r.code(), "address_listed");
    assert!(g
        .app
        .mails_to(g.email)
        .await
        .iter()
        .any(|m| m.subject.contains("Withdrawal address added")));
    let r = g
        .owner
        .put("/api/v1/me/withdrawal-allowlist", json!({"enabled": true}))
        .await;
    assert_eq!(r.json()["status"], "applied", "on at once: {}", r.body);

    let young = g.ask(g.body("a1", "ETH", "ETH", "1", ETH_ADDR)).await;
    assert_eq!(young["state"], "refused");
    assert_eq!(young["code"], "address_not_yet_usable");
    let other = g.btc("a2", "1").await;
    assert_eq!(other["code"], "address_not_allowlisted");
    g.app.clock.advance(24 * HOUR);
    assert_eq!(
        g.ask(g.body("a3", "ETH", "ETH", "1", ETH_ADDR)).await["state"],
        "released"
    );

    // Off waits 48 hours, and turning it on again cancels that.
    let owner = g.owner_again().await;
    g.app.step_up_by_email(&owner, g.email).await;
    let r = owner
        .put("/api/v1/me/withdrawal-allowlist", json!({"enabled": false}))
        .await;
    assert_eq!(r.json()["status"], "scheduled", "{}", r.body);
    assert!(owner.get("/api/v1/me/withdrawal-settings").await.json()["allowlist_off_at"].is_i64());
    g.app.clock.advance(47 * HOUR);
    g.timed().await;
    assert_eq!(
        g.btc("a4", "1").await["code"],
        "address_not_allowlisted",
        "still on at 47 h"
    );
    g.app.clock.advance(HOUR);
    g.timed().await;
    assert_eq!(
        g.btc("a5", "1").await["state"],
        "released",
        "off after 48 h"
    );

    // Removal is instant.
    let owner = g.owner_again().await;
    g.app.step_up_by_email(&owner, g.email).await;
    owner
        .put("/api/v1/me/withdrawal-allowlist", json!({"enabled": true}))
        .await;
    let id = entry["id"].as_str().expect("id");
    let r = owner
        .delete(&format!("/api/v1/me/withdrawal-addresses/{id}"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        g.ask(g.body("a6", "ETH", "ETH", "1", ETH_ADDR)).await["code"],
        "address_not_allowlisted"
    );
}

#[tokio::test]
async fn a_look_alike_of_a_used_address_is_held_with_a_warning_naming_it() {
    let g = setup().await;
    assert_eq!(
        g.ask(g.body("l1", "ETH", "ETH", "1", ETH_ADDR)).await["state"],
        "released"
    );
    let a = g.ask(g.body("l2", "ETH", "ETH", "1", ETH_POISON)).await;
    assert_eq!(a["state"], "held", "{a}");
    assert_eq!(a["reasons"][0]["code"], "lookalike_address");
    let msg = a["reasons"][0]["message"].as_str().expect("message");
    assert!(msg.contains(ETH_ADDR), "names the imitated address: {msg}");
    assert_eq!(a["release_at"], g.app.clock.now_ms() + 24 * HOUR);
    // The real address again is fine.
    assert_eq!(
        g.ask(g.body("l3", "ETH", "ETH", "2", ETH_ADDR)).await["state"],
        "released"
    );
    let held = g
        .app
        .mails_to(g.email)
        .await
        .into_iter()
        .find(|m| m.subject.contains("Withdrawal requested: held"))
        .expect("mail");
    assert!(
        held.body_text.contains("address poisoning"),
        "{}",
        held.body_text
    );
}

#[tokio::test]
async fn held_withdrawals_are_cancelled_by_the_owner_or_the_mailed_link() {
    let g = setup().await;
    g.owner
        .put("/api/v1/me/withdrawal-delay", json!({"days": 1}))
        .await;
    let a = g.btc("c1", "0.1").await;
    let id = a["id"].as_str().expect("id");
    let r = g
        .owner
        .post(&format!("/api/v1/me/withdrawals/{id}/cancel"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = g
        .owner
        .post(&format!("/api/v1/me/withdrawals/{id}/cancel"), json!({}))
        .await;
    assert_eq!(r.code(), "not_held");

    g.btc("c2", "0.2").await;
    let mail = g
        .app
        .mails_to(g.email)
        .await
        .into_iter()
        .rev()
        .find(|m| m.subject.contains("Withdrawal requested: held"))
        .expect("mail");
    let at =
        mail.body_text.find("/withdrawals/cancel/").expect("link") + "/withdrawals/cancel/".len();
    let token: String = mail.body_text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let stranger = g.app.client();
    let r = stranger
        .post("/api/v1/withdrawal-cancel", json!({"token": token}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["state"], "cancelled");
    let r = stranger
        .post("/api/v1/withdrawal-cancel", json!({"token": token}))
        .await;
    assert_eq!(r.code(), "link_unusable", "once");
    g.app.clock.advance(2 * DAY);
    assert_eq!(
        g.timed().await.withdrawals_released,
        0,
        "cancelled ones never leave"
    );
    let list = g
        .owner_again()
        .await
        .get("/api/v1/me/withdrawals")
        .await
        .json();
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .all(|w| w["state"] == "cancelled"),
        "{list}"
    );
}

#[tokio::test]
async fn a_freeze_cancels_held_and_recalls_released_withdrawals() {
    let g = setup().await;
    let released = g.btc("f1", "0.1").await;
    g.owner
        .put("/api/v1/me/withdrawal-delay", json!({"days": 1}))
        .await;
    let held = g.btc("f2", "0.2").await;
    assert_eq!(held["state"], "held");
    let r = g.owner.post("/api/v1/me/freeze", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let feed = g.feed(0).await;
    let events: Vec<&str> = feed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["event"].as_str().expect("event"))
        .collect();
    assert_eq!(events, ["released", "recalled"]);
    let id = released["id"].as_str().expect("id");
    let r = g
        .platform
        .post(
            &format!("/api/v1/platform/withdrawals/{id}/broadcast"),
            json!({"txid": "ff00"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "withdrawal_recalled");
    let after = g.btc("f3", "0.1").await;
    assert_eq!(after["code"], "account_frozen");
    g.app.clock.advance(2 * DAY);
    assert_eq!(g.timed().await.withdrawals_released, 0);
    let w = g
        .app
        .state
        .withdrawals
        .platform_withdrawal(held["id"].as_str().expect("id"))
        .await
        .expect("w");
    assert_eq!(w.state, "cancelled");
    assert_eq!(w.cancel_reason.as_deref(), Some("account_frozen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_racing_many_withdrawals_lets_none_through_after_it_returns() {
    let g = setup().await;
    let mut asks = Vec::new();
    for i in 0..40 {
        let platform = g.platform.clone();
        let body = g.body(&format!("race{i}"), "BTC", "BTC", "0.01", BTC_ADDR);
        asks.push(tokio::spawn(async move {
            platform.post("/api/v1/platform/withdrawals", body).await
        }));
        if i == 20 {
            let r = g.owner.post("/api/v1/me/freeze", json!({})).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            // The freeze has returned: nothing may be released from here on.
            let store = g.app.state.withdrawals.clone();
            let feed = store.feed(0, 500).await.expect("feed");
            let released: std::collections::HashSet<_> = feed
                .iter()
                .filter(|e| e.event == "released")
                .map(|e| e.withdrawal.id.clone())
                .collect();
            let recalled: std::collections::HashSet<_> = feed
                .iter()
                .filter(|e| e.event == "recalled")
                .map(|e| e.withdrawal.id.clone())
                .collect();
            assert_eq!(
                released, recalled,
                "every release before the freeze was recalled by it"
            );
        }
    }
    for a in asks {
        let r = a.await.expect("task");
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let list = g
        .app
        .store()
        .account_withdrawals(&account_id(&g).await, None, 500)
        .await
        .expect("list");
    assert_eq!(list.len(), 40);
    assert!(
        list.iter()
            .all(|w| w.state.as_str() == "cancelled" || w.state.as_str() == "refused"),
        "none left released"
    );
}

async fn account_id(g: &Guard) -> String {
    g.app
        .store()
        .account_by_uid(&g.uid)
        .await
        .expect("read")
        .expect("account")
        .id
}

#[tokio::test]
async fn a_withdrawal_during_a_lock_is_refused_with_its_end() {
    let g = setup().await;
    crate::api_keys::change_password(&g.app, &g.owner, g.email, "Correct-mule-Ledger-9-orbit")
        .await;
    let a = g.btc("k1", "0.1").await;
    assert_eq!(a["code"], "withdrawals_locked");
    let o = g.owner.get("/api/v1/me/withdrawal-settings").await;
    let locks = o.json()["locks"].clone();
    assert_eq!(locks[0]["reason"], "password_changed", "{locks}");
    g.app.clock.advance(24 * HOUR);
    assert_eq!(g.btc("k2", "0.1").await["state"], "released");
}

#[tokio::test]
async fn a_key_withdraws_only_within_its_own_rules() {
    let g = setup().await;
    g.step_up().await;
    let created = crate::api_keys::create(&g.owner, json!({"label": "payout bot", "type": "hmac", "permissions": ["read", "withdraw"], "ip_allowlist": ["127.0.0.1"]})).await;
    let key = created["api_key"].as_str().expect("key").to_owned();
    let reader = crate::api_keys::create(&g.owner, json!({"label": "reader", "type": "hmac", "permissions": ["read"], "ip_allowlist": ["127.0.0.1"]})).await;
    let entry = g
        .owner
        .post(
            "/api/v1/me/withdrawal-addresses",
            json!({"asset": "BTC", "network": "BTC", "address": BTC_ADDR, "label": "mine"}),
        )
        .await
        .json();
    let r = g
        .owner
        .put(
            &format!("/api/v1/me/api-keys/{key}/withdraw-rules"),
            json!({"addresses": [entry["id"]], "daily_count": 2, "daily_amounts": {"BTC": "0.30"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["daily_amounts"]["BTC"], "0.3");
    let by_key = |id: &str, amount: &str, address: &str, key: &str| json!({"request_id": id, "account_uid": g.uid, "asset": "BTC", "network": "BTC", "amount": amount, "address": address, "via": "api_key", "api_key": key});
    assert_eq!(
        g.ask(by_key("p1", "0.2", BTC_ADDR, &key)).await["state"],
        "released"
    );
    assert_eq!(
        g.ask(by_key("p2", "0.2", BTC_ADDR, &key)).await["code"],
        "key_daily_amount"
    );
    assert_eq!(
        g.ask(by_key("p3", "0.1", BTC_ADDR, &key)).await["state"],
        "released"
    );
    assert_eq!(
        g.ask(by_key("p4", "0.0001", BTC_ADDR, &key)).await["code"],
        "key_daily_count"
    );
    let other = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh";
    assert_eq!(
        g.ask(by_key("p5", "0.0001", other, &key)).await["reasons"][0]["code"],
        "key_address_not_allowed"
    );
    let r = reader["api_key"].as_str().expect("key");
    assert_eq!(
        g.ask(by_key("p6", "0.1", BTC_ADDR, r)).await["code"],
        "permission_missing"
    );
    assert_eq!(
        g.ask(by_key("p7", "0.1", BTC_ADDR, "rmpk_nope")).await["code"],
        "key_unusable"
    );
    g.app.clock.advance(DAY);
    let _ = g.owner_again().await;
    assert_eq!(
        g.ask(by_key("p8", "0.2", BTC_ADDR, &key)).await["state"],
        "released",
        "a new day"
    );
}

#[tokio::test]
async fn transfers_and_deposits_are_recorded_and_shown_to_the_owner() {
    let g = setup().await;
    let friend = g.app.signed_in("frank@example.com").await;
    let friend_uid = friend.get("/api/v1/me").await.json()["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let t = json!({"request_id": "t1", "from_uid": g.uid, "to_uid": friend_uid, "asset": "USDT", "amount": "250.5"});
    let r = g
        .platform
        .post("/api/v1/platform/transfers", t.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["state"], "completed");
    assert_eq!(
        g.platform
            .post("/api/v1/platform/transfers", t)
            .await
            .json()["state"],
        "completed",
        "idempotent"
    );
    let d = json!({"request_id": "d1", "account_uid": g.uid, "asset": "BTC", "network": "BTC", "amount": "0.02", "txid": "abcdef0123"});
    let r = g.platform.post("/api/v1/platform/deposits", d).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mine = g.owner.get("/api/v1/me/transfers").await.json();
    assert_eq!(mine[0]["amount"], "250.5");
    assert_eq!(mine[0]["direction"], "out");
    assert_eq!(mine[0]["counterparty_uid"], friend_uid.as_str());
    assert!(
        mine[0].get("to_account_id").is_none(),
        "no internal ids: {mine}"
    );
    assert_eq!(
        g.owner.get("/api/v1/me/deposits").await.json()[0]["txid"],
        "abcdef0123"
    );
    let theirs = friend.get("/api/v1/me/transfers").await.json();
    assert_eq!(theirs.as_array().expect("list").len(), 1);
    assert_eq!(theirs[0]["direction"], "in");
    assert_eq!(theirs[0]["counterparty_uid"], g.uid.as_str());
}

/// The release worker of the real binary, killed with SIGKILL in the middle of a batch and
/// started again: every due withdrawal is released exactly once (one feed entry, one audit
/// event, one mail each), none is lost.
#[tokio::test]
async fn the_release_worker_killed_mid_batch_releases_each_once() {
    const N: usize = 600;
    let g = setup().await;
    let account = account_id(&g).await;
    let real_now = g.app.clock.now_ms();
    g.app
        .store()
        .set_withdrawal_settings(
            &account,
            rampart::store::withdrawals::WithdrawalSettings {
                allowlist_enabled: false,
                delay_days: 1,
            },
            real_now,
            &rampart::store::Effects::default(),
        )
        .await
        .expect("delay");
    // Asked two days ago: due a day ago by the wall clock the binary reads.
    g.app.clock.set(real_now - 2 * DAY);
    let token = g
        .app
        .state
        .withdrawals
        .authenticate_platform(Some(&platform_token(&g).await))
        .await
        .expect("platform");
    for i in 0..N {
        let req: rampart::service::withdrawals::WithdrawalRequest =
            serde_json::from_value(g.body(&format!("kill{i}"), "BTC", "BTC", "0.001", BTC_ADDR))
                .expect("request");
        let a = g
            .app
            .state
            .withdrawals
            .request(&token, &req)
            .await
            .expect("decided");
        assert_eq!(a.state, "held");
    }
    let database_url = g.app.database_url.clone();
    let released = || {
        let url = database_url.clone();
        async move {
            count_sql(
                &url,
                "SELECT COUNT(*) AS n FROM withdrawals WHERE state = 'released'",
            )
            .await
        }
    };
    let work = tempfile::tempdir().expect("dir");
    let (smtp, _mails) = crate::outbox::smtp_sink().await;
    let server = crate::outbox::start_binary(&database_url, work.path(), smtp);
    for _ in 0..2000 {
        if released().await >= 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(server); // SIGKILL, mid-batch
    let after_kill = released().await;
    assert!(after_kill > 0, "the worker had started");
    assert!(
        after_kill < N as i64,
        "killed before the batch was done ({after_kill} of {N})"
    );
    let _restarted = crate::outbox::start_binary(&database_url, work.path(), smtp);
    for _ in 0..600 {
        if released().await == N as i64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(released().await, N as i64, "none lost");
    assert_eq!(
        count_sql(
            &database_url,
            "SELECT COUNT(*) AS n FROM withdrawal_feed WHERE event = 'released'"
        )
        .await,
        N as i64,
        "one feed entry each"
    );
    assert_eq!(
        count_sql(
            &database_url,
            "SELECT COUNT(DISTINCT withdrawal_id) AS n FROM withdrawal_feed"
        )
        .await,
        N as i64
    );
    assert_eq!(
        count_sql(
            &database_url,
            "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'withdrawal.released'"
        )
        .await,
        N as i64,
        "one audit event each"
    );
    assert_eq!(
        count_sql(
            &database_url,
            "SELECT COUNT(*) AS n FROM outbox WHERE subject LIKE '%Held withdrawal released%'"
        )
        .await,
        N as i64,
        "one mail each"
    );
}

async fn platform_token(g: &Guard) -> String {
    g.app
        .state
        .withdrawals
        .add_platform_token("worker-test")
        .await
        .expect("token")
}

async fn count_sql(database_url: &str, sql: &str) -> i64 {
    use sqlx::{Connection as _, Row as _};
    if database_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(database_url).await.expect("pg");
        let n: i64 = sqlx::query(sql)
            .fetch_one(&mut c)
            .await
            .expect("count")
            .get("n");
        c.close().await.ok();
        n
    } else {
        let mut c = sqlx::SqliteConnection::connect(database_url)
            .await
            .expect("sqlite");
        let n: i64 = sqlx::query(sql)
            .fetch_one(&mut c)
            .await
            .expect("count")
            .get("n");
        c.close().await.ok();
        n
    }
}

#[tokio::test]
async fn operators_follow_transfers_several_hops_and_freeze_the_receivers_with_cases() {
    let g = setup().await;
    let mut uids = vec![g.uid.clone()];
    let mut clients = Vec::new();
    for who in ["b", "c", "d"] {
        let c = g.app.signed_in(&format!("{who}@example.com")).await;
        uids.push(
            c.get("/api/v1/me").await.json()["uid"]
                .as_str()
                .expect("uid")
                .to_owned(),
        );
        clients.push(c);
    }
    for (i, amount) in ["100", "90", "80"].iter().enumerate() {
        g.app.clock.advance(HOUR);
        let t = json!({"request_id": format!("hop{i}"), "from_uid": uids[i], "to_uid": uids[i + 1], "asset": "USDT", "amount": amount});
        assert_eq!(
            g.platform
                .post("/api/v1/platform/transfers", t)
                .await
                .json()["state"],
            "completed"
        );
    }
    let support = crate::console::operator_signed_in(&g.app, "support").await;
    let r = support
        .get(&format!("/api/v1/console/accounts/{}/money", g.uid))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let graph = r.json();
    let edges = graph["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 3, "{graph}");
    assert_eq!(edges[2]["depth"], 3);
    assert_eq!(edges[2]["amount"], "80");
    assert_eq!(edges[2]["to_uid"], uids[3].as_str());
    let r = support
        .post(
            &format!("/api/v1/console/accounts/{}/freeze-receivers", g.uid),
            json!({"uids": [uids[1]], "reason": "stolen funds"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "support may look, not freeze"
    );

    let reviewer = crate::console::operator_signed_in(&g.app, "reviewer").await;
    let r = reviewer
        .post(
            &format!("/api/v1/console/accounts/{}/freeze-receivers", g.uid),
            json!({"uids": [uids[1]], "reason": " "}),
        )
        .await;
    assert_eq!(r.code(), "reason_required");
    let r = reviewer.post(&format!("/api/v1/console/accounts/{}/freeze-receivers", g.uid), json!({"uids": [uids[1], uids[2]], "reason": "received funds stolen from a compromised account"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let results = r.json()["results"].clone();
    assert_eq!(results[0]["status"], "frozen");
    assert_eq!(results[1]["status"], "frozen");
    assert!(results[0]["case_id"].is_string());
    assert_eq!(
        clients[0].get("/api/v1/me").await.status,
        StatusCode::UNAUTHORIZED,
        "B's session ended"
    );
    // Money cannot move on out of a frozen receiver.
    let t = json!({"request_id": "onward", "from_uid": uids[1], "to_uid": uids[3], "asset": "USDT", "amount": "1"});
    assert_eq!(
        g.platform
            .post("/api/v1/platform/transfers", t)
            .await
            .json()["code"],
        "account_frozen"
    );
    let cases = g
        .app
        .state
        .console
        .cases(&reviewer_operator(&g.app).await, &uids[1])
        .await
        .expect("cases");
    assert_eq!(cases.len(), 1);
    assert_eq!(
        cases[0].reason,
        "received funds stolen from a compromised account"
    );
    let page = reviewer
        .get(&format!("/console/accounts/{}/money", g.uid))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("(frozen)"), "{}", page.body);
}

async fn reviewer_operator(app: &TestApp) -> rampart::domain::operator::Operator {
    let o = app
        .store()
        .operators()
        .await
        .expect("operators")
        .into_iter()
        .find(|o| o.role == rampart::domain::operator::Role::Reviewer)
        .expect("reviewer");
    rampart::domain::operator::Operator {
        id: o.id,
        email: o.email,
        role: o.role,
    }
}
