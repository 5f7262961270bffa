//! Demo mode: an account whose history already looks compromised. Its owner uses an
//! iPhone and a Mac in London; last night at 03:12 (UTC) someone signed in from Lagos on
//! a Windows PC never seen before, after two wrong passwords. Later issues extend the
//! same story (freeze, kick the device out, incident report).

use serde_json::json;

use crate::app::App;
use crate::clock::{Millis, DAY, HOUR, MINUTE};
use crate::domain::device::DeviceInfo;
use crate::domain::password;
use crate::domain::secret::{random_token, token_hash};
use crate::store::{
    Account, AuditEvent, Confirmation, Device, Effects, Login, Session, SignInRecord,
};

pub const DEMO_EMAIL: &str = "demo@rampart.example";
pub const DEMO_PASSWORD: &str = "Harbor-lantern-quietly-47";

const IPHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const MAC_UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
const ATTACKER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36";

struct Place {
    ip: &'static str,
    city: &'static str,
    country: &'static str,
}

const LONDON_HOME: Place = Place {
    ip: "81.2.69.142",
    city: "London",
    country: "GB",
};
const LONDON_MOBILE: Place = Place {
    ip: "81.2.69.160",
    city: "London",
    country: "GB",
};
const LAGOS: Place = Place {
    ip: "102.89.32.17",
    city: "Lagos",
    country: "NG",
};

/// What `seed` found and did.
pub struct DemoCredentials {
    pub email: &'static str,
    pub password: &'static str,
    /// A demo account from an earlier start was deleted and seeded anew.
    pub reset: bool,
}

/// Seeds the demo account in its known state: one left by an earlier start (whatever was
/// done to it since: a changed password, a freeze, new factors) is deleted first, so the
/// printed credentials and the story always hold.
pub async fn seed(app: &App) -> anyhow::Result<DemoCredentials> {
    let store = app.store();
    let now = app.state.now();
    let mut creds = DemoCredentials {
        email: DEMO_EMAIL,
        password: DEMO_PASSWORD,
        reset: false,
    };
    if let Some(old) = store.account_by_email(DEMO_EMAIL).await? {
        let reset = AuditEvent {
            at: now,
            account_id: Some(old.id.clone()),
            actor: "system:demo".into(),
            action: "demo.reset".into(),
            ip: None,
            device: None,
            detail: json!({"uid": old.uid}),
        };
        store
            .delete_account(&old.id, &Effects::audit(reset))
            .await?;
        app.state
            .key_cache
            .invalidate(&format!("account:{}", old.id));
        creds.reset = true;
    }
    let hash = tokio::task::spawn_blocking(|| password::hash(DEMO_PASSWORD)).await??;
    let account = Account {
        id: uuid::Uuid::new_v4().to_string(),
        uid: "2718281828".to_owned(),
        email: DEMO_EMAIL.to_owned(),
        password_hash: hash,
        email_confirmed_at: Some(now - 120 * DAY),
        anti_phishing_code: None,
        created_at: now - 120 * DAY,
        frozen_at: None,
        require_passkey: false,
        recovery_required: false,
    };
    let confirmation = Confirmation {
        account_id: account.id.clone(),
        code_mac: String::new(),
        expires_at: 0,
        attempts: 0,
        created_at: 0,
    };
    let registered = AuditEvent {
        at: account.created_at,
        account_id: Some(account.id.clone()),
        actor: format!("account:{}", account.uid),
        action: "account.registered".into(),
        ip: Some(LONDON_HOME.ip.into()),
        device: None,
        detail: json!({"uid": account.uid, "demo": true}),
    };
    store
        .create_account(&account, &confirmation, &Effects::audit(registered))
        .await?;
    store
        .confirm_email(&account.id, account.created_at, &Effects::default())
        .await?;

    // The owner: an iPhone for 60 days, a Mac for 40, both from London.
    let iphone = history_device(&account, IPHONE_UA, &LONDON_MOBILE, now - 60 * DAY);
    let mac = history_device(&account, MAC_UA, &LONDON_HOME, now - 40 * DAY);
    for days_ago in [60, 45, 30, 14, 7, 2, 1] {
        sign_in(
            app,
            &account,
            &iphone,
            &LONDON_MOBILE,
            now - days_ago * DAY + 8 * HOUR,
            days_ago != 60,
        )
        .await?;
    }
    for days_ago in [40, 20, 9, 3] {
        sign_in(
            app,
            &account,
            &mac,
            &LONDON_HOME,
            now - days_ago * DAY + 19 * HOUR,
            days_ago != 40,
        )
        .await?;
    }

    // The attacker: 03:10 and 03:11 wrong passwords, 03:12 in, from Lagos, a new Windows PC.
    let three_am = last_three_am(now);
    let attacker = history_device(&account, ATTACKER_UA, &LAGOS, three_am + 12 * MINUTE);
    for m in [10, 11] {
        let at = three_am + m * MINUTE;
        let login = login(&account, &attacker, &LAGOS, false, "wrong_password", at);
        let fx = Effects::audit(event(
            &account,
            "anonymous",
            "signin.failed",
            &LAGOS,
            &attacker,
            at,
            json!({"reason": "wrong_password"}),
        ));
        store.record_failed_login(&login, &fx).await?;
    }
    sign_in(
        app,
        &account,
        &attacker,
        &LAGOS,
        three_am + 12 * MINUTE,
        false,
    )
    .await?;
    backdoors(app, &account, &attacker, three_am).await?;
    withdrawals(app, &account).await?;
    Ok(creds)
}

/// What the attacker left behind after the 03:12 sign-in: an API key with withdrawal
/// rights (03:20) and an allowlist address of his own (03:25), both with his device and IP
/// in the audit log, for the backdoor sweep to find.
async fn backdoors(
    app: &App,
    account: &Account,
    attacker: &Device,
    three_am: Millis,
) -> anyhow::Result<()> {
    let store = app.store();
    let key_at = three_am + 20 * MINUTE;
    let key = crate::domain::api_key::new_key();
    let secret = crate::domain::api_key::new_secret();
    let record = crate::store::ApiKeyRecord {
        api_key: key.clone(),
        account_id: account.id.clone(),
        label: "sync".into(),
        key_type: Some(crate::domain::api_key::KeyType::Hmac),
        secret_enc: Some(app.state.secret_box.seal(secret.as_bytes(), &key)?),
        public_key: None,
        access: crate::domain::api_key::KeyAccess::decode(
            "read,withdraw".into(),
            "102.89.0.0/16".into(),
        ),
        created_at: key_at,
        created_ip: LAGOS.ip.to_owned(),
        created_device: format!(
            "{} on {} ({})",
            attacker.browser, attacker.os, attacker.model
        ),
        created_unusual: true,
        expires_at: None,
        last_used_at: None,
        last_used_ip: None,
        warned_7d_at: None,
        warned_1d_at: None,
        deleted_at: None,
        suspended_at: None,
    };
    let fx = Effects::audit(event(
        account,
        &format!("account:{}", account.uid),
        "api_key.created",
        &LAGOS,
        attacker,
        key_at,
        json!({"api_key": key, "label": "sync", "type": "hmac", "permissions": "read,withdraw", "ip_allowlist": "102.89.0.0/16", "unusual_device": true}),
    ));
    store.create_api_key(&record, &fx).await?;
    let address_at = three_am + 25 * MINUTE;
    let entry = crate::store::withdrawals::AllowlistEntry {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: account.id.clone(),
        asset: "ETH".into(),
        network: "ETH".into(),
        address: DEMO_ATTACKER_WALLET.into(),
        memo: None,
        label: "exchange".into(),
        created_at: address_at,
        usable_at: address_at + 24 * HOUR,
    };
    let fx = Effects::audit(event(
        account,
        &format!("account:{}", account.uid),
        "allowlist.address_added",
        &LAGOS,
        attacker,
        address_at,
        json!({"entry_id": entry.id, "asset": "ETH", "network": "ETH", "address": DEMO_ATTACKER_WALLET, "label": "exchange"}),
    ));
    store
        .add_allowlist_address(
            &entry,
            &crate::domain::withdrawal::lookalike_key(DEMO_ATTACKER_WALLET),
            &fx,
        )
        .await?;
    Ok(())
}

/// The owner's own withdrawal to their wallet (released), and the attacker's attempt to
/// a look-alike of it (held, with the address-poisoning warning and a cancel link).
async fn withdrawals(app: &App, account: &Account) -> anyhow::Result<()> {
    let exchange = crate::store::withdrawals::PlatformToken {
        id: "demo".into(),
        name: "demo-exchange".into(),
        token_hash: String::new(),
        created_at: 0,
        revoked_at: None,
        last_used_at: None,
    };
    let ask =
        |n: &str, amount: &str, address: &str| crate::service::withdrawals::WithdrawalRequest {
            request_id: format!("demo-{}-{n}", uuid::Uuid::new_v4()),
            account_uid: account.uid.clone(),
            asset: "ETH".into(),
            network: "ETH".into(),
            amount: amount.into(),
            address: address.into(),
            memo: None,
            via: "session".into(),
            api_key: None,
        };
    let w = &app.state.withdrawals;
    w.request(&exchange, &ask("own", "0.8", DEMO_OWN_WALLET))
        .await
        .map_err(|e| anyhow::anyhow!("demo withdrawal: {e}"))?;
    w.request(&exchange, &ask("attacker", "2.5", DEMO_POISONED_WALLET))
        .await
        .map_err(|e| anyhow::anyhow!("demo withdrawal: {e}"))?;
    Ok(())
}

/// The demo owner's wallet, and an address made to look like it (same ends).
const DEMO_OWN_WALLET: &str = "0x71C7656EC7ab88b098defB751B7401B5f6d8976F";
const DEMO_POISONED_WALLET: &str = "0x71C7e1a4b2c3d4e5f60718293a4b5c6d7e8f976F";
/// The attacker's own wallet, which he put on the allowlist.
const DEMO_ATTACKER_WALLET: &str = "0x9A3f5c1E7b2D4a6C8e0F1b3D5f7A9c2E4b6D8f0A";

/// The most recent 03:00 UTC at least an hour before `now`.
fn last_three_am(now: Millis) -> Millis {
    let day_start = now - now.rem_euclid(DAY);
    let candidate = day_start + 3 * HOUR;
    if candidate <= now - HOUR {
        candidate
    } else {
        candidate - DAY
    }
}

fn history_device(account: &Account, ua: &str, place: &Place, first_seen: Millis) -> Device {
    let info = DeviceInfo::from_user_agent(ua);
    Device {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: account.id.clone(),
        token_hash: Some(token_hash(&random_token())),
        fingerprint: info.fingerprint,
        model: info.model,
        os: info.os,
        browser: info.browser,
        user_agent: ua.to_owned(),
        ip: place.ip.to_owned(),
        city: Some(place.city.to_owned()),
        country: Some(place.country.to_owned()),
        first_seen,
        last_active: first_seen,
        trusted_at: None,
    }
}

fn login(
    account: &Account,
    d: &Device,
    place: &Place,
    success: bool,
    reason: &str,
    at: Millis,
) -> Login {
    Login {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: account.id.clone(),
        success,
        reason: reason.to_owned(),
        ip: place.ip.to_owned(),
        city: Some(place.city.to_owned()),
        country: Some(place.country.to_owned()),
        device_id: Some(d.id.clone()),
        model: d.model.clone(),
        os: d.os.clone(),
        browser: d.browser.clone(),
        at,
        method: crate::domain::sign_in::SignInMethod::Password,
    }
}

fn event(
    account: &Account,
    actor: &str,
    action: &str,
    place: &Place,
    d: &Device,
    at: Millis,
    detail: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        at,
        account_id: Some(account.id.clone()),
        actor: actor.to_owned(),
        action: action.to_owned(),
        ip: Some(place.ip.to_owned()),
        device: Some(format!("{} on {} ({})", d.browser, d.os, d.model)),
        detail,
    }
}

async fn sign_in(
    app: &App,
    account: &Account,
    d: &Device,
    place: &Place,
    at: Millis,
    known: bool,
) -> anyhow::Result<()> {
    let mut device = d.clone();
    device.last_active = at;
    let session = Session {
        id: token_hash(&random_token()),
        account_id: account.id.clone(),
        device_id: d.id.clone(),
        created_at: at,
        last_seen_at: at,
        expires_at: at + app.state.rules.session_absolute_hours * HOUR,
        stepped_up_at: None,
        method: crate::domain::sign_in::SignInMethod::Password,
        confirm_token_hash: None,
        ended_at: None,
    };
    let record = SignInRecord {
        device,
        device_is_new: !known,
        session,
        login: login(account, d, place, true, "signed_in", at),
    };
    let actor = format!("account:{}", account.uid);
    let fx = Effects::audit(event(
        account,
        &actor,
        "signin.succeeded",
        place,
        d,
        at,
        json!({"device_id": d.id, "new_device": !known}),
    ));
    app.store().record_sign_in(&record, &fx).await?;
    Ok(())
}
