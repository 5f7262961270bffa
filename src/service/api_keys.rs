//! API keys: creation (step-up), listing, editing, deletion, and the authentication of
//! every signed request the platform receives (`/authz`). The hot path reads keys from an
//! in-process cache (no database read on a hit, no write per request: last use is recorded
//! in batches by the timed job); any change to a key or its account evicts it here at once
//! and, on PostgreSQL, on every instance through `NOTIFY rampart_cache`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::json;

use super::{Client, Core, ServiceError, ServiceResult};
use crate::clock::{format_utc, Millis, DAY, HOUR};
use crate::domain::api_key::{
    self, check_key_rules, expiry, parse_signed, required_permission, timestamp_ok, Allowlist,
    ExpiryWarning, KeyAccess, KeyType, Permission, Permissions, Refusal, Verifier,
};
use crate::domain::mail_kind::MailKind;
use crate::domain::step_up::SensitiveAction;
use crate::store::{ApiKeyRecord, Effects, SessionAuth};

/// Cached entries beyond this are dropped wholesale (a flood of distinct keys cannot grow
/// memory without bound; the next requests simply reload).
const CACHE_LIMIT: usize = 200_000;
/// At most one "used from a forbidden address" mail per key per hour.
const IP_ALERT_INTERVAL: Millis = HOUR;

/// A key ready to verify requests.
#[derive(Debug)]
pub struct CachedKey {
    pub api_key: String,
    pub account_id: String,
    pub uid: String,
    pub verifier: Verifier,
    pub permissions: Permissions,
    pub allowlist: Allowlist,
    pub expires_at: Option<Millis>,
    pub frozen: bool,
    /// End of the account's latest withdrawal lock (compared with the clock on each request).
    pub withdrawals_locked_until: Option<Millis>,
    /// The stored permissions or allowlist did not decode: refused after the signature
    /// check (fail closed), never run with what could be read.
    pub unusable: bool,
}

/// The cached keys and the generation: every invalidation bumps it, and a fill stores its
/// entry only if no invalidation happened since before its database read. Otherwise a read
/// that raced an eviction (a freeze, a deletion) could put the key's old state back with
/// nothing left to evict it.
#[derive(Default)]
struct Entries {
    generation: u64,
    map: HashMap<String, Arc<CachedKey>>,
}

/// Taken before the database read of a cache fill; see [`KeyCache::fill`].
#[derive(Debug, Clone, Copy)]
pub struct FillTicket(u64);

/// The keys in memory, and what the hot path notes for the timed job to write in batches.
#[derive(Default)]
pub struct KeyCache {
    keys: RwLock<Entries>,
    used: Mutex<HashMap<String, (Millis, IpAddr)>>,
    refused_ips: Mutex<HashMap<String, (Millis, IpAddr)>>,
    last_ip_alert: Mutex<HashMap<String, Millis>>,
}

impl KeyCache {
    pub fn get(&self, key: &str) -> Option<Arc<CachedKey>> {
        self.keys.read().ok()?.map.get(key).cloned()
    }

    /// Call before reading a key from the database to fill the cache.
    pub fn begin_fill(&self) -> FillTicket {
        FillTicket(self.keys.read().map_or(u64::MAX, |e| e.generation))
    }

    /// Stores `entry` unless an invalidation happened since `ticket` was taken (then the
    /// read may be stale; the next request reads again). Returns whether it was stored.
    pub fn fill(&self, ticket: FillTicket, entry: Arc<CachedKey>) -> bool {
        let Ok(mut e) = self.keys.write() else {
            return false;
        };
        if e.generation != ticket.0 {
            return false;
        }
        if e.map.len() >= CACHE_LIMIT {
            e.map.clear();
        }
        e.map.insert(entry.api_key.clone(), entry);
        true
    }

    /// Applies an invalidation message: `key:<api_key>`, `account:<id>`, or `all`;
    /// anything else (the listener's `ping`) changes nothing.
    pub fn invalidate(&self, what: &str) {
        let Ok(mut e) = self.keys.write() else {
            return;
        };
        if let Some(key) = what.strip_prefix("key:") {
            e.map.remove(key);
        } else if let Some(account) = what.strip_prefix("account:") {
            e.map.retain(|_, v| v.account_id != account);
        } else if what == "all" {
            e.map.clear();
        } else {
            return;
        }
        e.generation = e.generation.wrapping_add(1);
    }

    pub fn len(&self) -> usize {
        self.keys.read().map_or(0, |e| e.map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn note_use(&self, key: &str, at: Millis, ip: IpAddr) {
        if let Ok(mut used) = self.used.lock() {
            used.insert(key.to_owned(), (at, ip));
        }
    }

    fn note_refused_ip(&self, key: &str, at: Millis, ip: IpAddr) {
        if let Ok(mut r) = self.refused_ips.lock() {
            r.entry(key.to_owned()).or_insert((at, ip));
        }
    }
}

/// Who a request is, when it is allowed.
#[derive(Debug, Clone)]
pub struct Identity {
    pub uid: String,
    /// The key used, or empty for a session.
    pub api_key: String,
    pub permissions: String,
    /// `api_key` or `session`.
    pub via: &'static str,
    /// Set while a withdrawal lock is in force: when it ends (Unix ms).
    pub withdrawals_locked_until: Option<Millis>,
}

/// A refusal (with its reason) or a failure of ours.
#[derive(Debug)]
pub enum AuthzError {
    Refused(Refusal),
    Failed(ServiceError),
}

impl From<Refusal> for AuthzError {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

/// The details a user gives for a new key.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub label: String,
    pub key_type: String,
    pub public_key: Option<String>,
    pub permissions: Vec<String>,
    pub ip_allowlist: Vec<String>,
}

impl Core {
    fn load_key(&self, auth: crate::store::ApiKeyAuth) -> ServiceResult<Arc<CachedKey>> {
        let k = auth.key;
        let verifier = match k.key_type {
            KeyType::Hmac => {
                let sealed = k.secret_enc.as_deref().ok_or_else(|| {
                    ServiceError::Internal(anyhow::anyhow!("HMAC key without secret"))
                })?;
                let secret = self.secret_box.open(sealed, &k.api_key)?;
                Verifier::hmac(&String::from_utf8(secret).map_err(anyhow::Error::from)?)
            }
            other => Verifier::public_key(other, k.public_key.as_deref().unwrap_or_default())?,
        };
        let (permissions, allowlist, unusable) = match k.access {
            KeyAccess::Readable {
                permissions,
                allowlist,
            } => (permissions, allowlist, false),
            KeyAccess::Unreadable { why, .. } => {
                tracing::error!(api_key = %k.api_key, "stored API key settings unreadable, key refused: {why}");
                (Permissions::default(), Allowlist::default(), true)
            }
        };
        Ok(Arc::new(CachedKey {
            permissions,
            allowlist,
            unusable,
            expires_at: k.expires_at,
            frozen: auth.frozen,
            withdrawals_locked_until: auth.withdrawals_locked_until,
            uid: auth.uid,
            account_id: k.account_id,
            api_key: k.api_key,
            verifier,
        }))
    }

    /// The key from the cache, or from the database (one read) into the cache.
    async fn cached_key(&self, api_key: &str) -> Result<Option<Arc<CachedKey>>, ServiceError> {
        if let Some(k) = self.key_cache.get(api_key) {
            return Ok(Some(k));
        }
        let ticket = self.key_cache.begin_fill();
        let Some(auth) = self.store.api_key_auth(api_key).await? else {
            return Ok(None);
        };
        let entry = self.load_key(auth)?;
        self.key_cache.fill(ticket, entry.clone());
        Ok(Some(entry))
    }

    /// Authenticates a signed request (the gateway hook's work). Checks, in order: form,
    /// key, timing, signature, then (only for a proven signature) expiry, freeze, address
    /// and permission, so nothing about a key is told to someone who cannot sign with it.
    pub async fn authorize_signed(
        &self,
        api_key: Option<&str>,
        method: &str,
        path: &str,
        query: &str,
        body: &str,
        ip: IpAddr,
    ) -> Result<Identity, AuthzError> {
        let api_key = api_key
            .filter(|k| !k.is_empty())
            .ok_or(Refusal::MissingKey)?;
        let path = api_key::canonical_path(path)?;
        let req = parse_signed(query, body)?;
        if api_key.len() > 128 {
            return Err(Refusal::UnknownKey.into());
        }
        let key = self
            .cached_key(api_key)
            .await
            .map_err(AuthzError::Failed)?
            .ok_or(Refusal::UnknownKey)?;
        let now = self.now();
        if !timestamp_ok(&req, now) {
            return Err(Refusal::TimestampOutsideWindow.into());
        }
        if !key.verifier.verify(req.payload.as_bytes(), &req.signature) {
            return Err(Refusal::BadSignature.into());
        }
        if key.unusable {
            return Err(Refusal::KeyUnusable.into());
        }
        if key.expires_at.is_some_and(|t| now >= t) {
            return Err(Refusal::KeyExpired.into());
        }
        if key.frozen {
            return Err(Refusal::AccountFrozen.into());
        }
        if !key.allowlist.allows(ip) {
            self.key_cache.note_refused_ip(&key.api_key, now, ip);
            return Err(Refusal::IpNotAllowed.into());
        }
        let needed = required_permission(&self.gateway_routes, method, path)
            .ok_or(Refusal::RouteUnmapped)?;
        if !key.permissions.contains(needed) {
            return Err(Refusal::PermissionMissing(needed).into());
        }
        let locked_until = key.withdrawals_locked_until.filter(|&t| t > now);
        check_withdrawal_lock(needed, locked_until)?;
        self.key_cache.note_use(&key.api_key, now, ip);
        Ok(Identity {
            uid: key.uid.clone(),
            api_key: key.api_key.clone(),
            permissions: key.permissions.to_csv(),
            via: "api_key",
            withdrawals_locked_until: locked_until,
        })
    }

    /// The gateway decision for a request carrying a Security Center session cookie (the
    /// platform's own web app acting for its signed-in user): every permission, but the
    /// path must be canonical and withdrawals wait out any lock, exactly as for keys.
    pub async fn authorize_session(
        &self,
        session_token: &str,
        method: &str,
        path: &str,
    ) -> Result<Identity, AuthzError> {
        let path = api_key::canonical_path(path)?;
        let auth = self
            .authenticate(session_token)
            .await
            .map_err(AuthzError::Failed)?;
        let now = self.now();
        let locked_until = self
            .store
            .withdrawal_locks(&auth.account.id, now)
            .await
            .map_err(|e| AuthzError::Failed(e.into()))?
            .iter()
            .map(|l| l.until)
            .max();
        if let Some(needed) = required_permission(&self.gateway_routes, method, path) {
            check_withdrawal_lock(needed, locked_until)?;
        }
        Ok(Identity {
            uid: auth.account.uid,
            api_key: String::new(),
            permissions: session_permissions(),
            via: "session",
            withdrawals_locked_until: locked_until,
        })
    }

    /// Drops a key (or all of an account's keys) from every instance's cache.
    pub async fn invalidate_keys(&self, what: &str) -> ServiceResult<()> {
        self.key_cache.invalidate(what);
        self.store.broadcast_invalidation(what).await?;
        Ok(())
    }

    /// A key created from a device first seen in the last 7 days, on an account that has
    /// older devices, is flagged.
    async fn device_is_unusual(&self, auth: &SessionAuth) -> ServiceResult<bool> {
        let devices = self.store.devices(&auth.account.id, 0).await?;
        let week_ago = self.now() - 7 * DAY;
        let this_is_new = devices
            .iter()
            .find(|d| d.id == auth.session.device_id)
            .is_some_and(|d| d.first_seen > week_ago);
        let has_older = devices
            .iter()
            .any(|d| d.id != auth.session.device_id && d.first_seen <= week_ago);
        Ok(this_is_new && has_older)
    }

    /// Creates a key. Returns the record and, for HMAC keys, the secret (shown once).
    pub async fn create_api_key(
        &self,
        auth: &SessionAuth,
        new: NewKey,
        client: &Client,
    ) -> ServiceResult<(ApiKeyRecord, Option<String>)> {
        self.require_step_up(auth, SensitiveAction::AddApiKey)
            .await?;
        // Control characters go first, so what is left is trimmed of every space they hid.
        let label: String = new.label.chars().filter(|c| !c.is_control()).collect();
        let label: String = label.trim().chars().take(64).collect();
        if label.is_empty() {
            return Err(crate::domain::Invalid::new(
                "invalid_label",
                "Give the key a label, such as \"trading bot\".",
            )
            .into());
        }
        let kind = KeyType::parse(&new.key_type)?;
        let permissions = Permissions::parse_list(&new.permissions)?;
        let allowlist = Allowlist::parse(&new.ip_allowlist)?;
        check_key_rules(permissions, &allowlist)?;
        let key = api_key::new_key();
        let (secret, secret_enc, public_key) = match kind {
            KeyType::Hmac => {
                if new
                    .public_key
                    .as_deref()
                    .is_some_and(|p| !p.trim().is_empty())
                {
                    return Err(crate::domain::Invalid::new(
                        "invalid_public_key",
                        "HMAC keys take no public key; Rampart generates the secret.",
                    )
                    .into());
                }
                let secret = api_key::new_secret();
                let sealed = self.secret_box.seal(secret.as_bytes(), &key)?;
                (Some(secret), Some(sealed), None)
            }
            other => {
                let pem = new.public_key.unwrap_or_default();
                Verifier::public_key(other, &pem)?;
                (None, None, Some(pem.trim().to_owned()))
            }
        };
        let account = &auth.account;
        let now = self.now();
        let unusual = self.device_is_unusual(auth).await?;
        let record = ApiKeyRecord {
            api_key: key,
            account_id: account.id.clone(),
            label,
            key_type: kind,
            secret_enc,
            public_key,
            access: KeyAccess::Readable {
                permissions,
                allowlist: allowlist.clone(),
            },
            created_at: now,
            created_ip: client.ip.to_string(),
            created_device: client.device.summary(),
            created_unusual: unusual,
            expires_at: expiry(permissions, &allowlist, now),
            last_used_at: None,
            last_used_ip: None,
            warned_7d_at: None,
            warned_1d_at: None,
            deleted_at: None,
        };
        let expires = record.expires_at.map_or_else(
            || "It does not expire.".to_owned(),
            |t| {
                format!(
                    "It expires at {} (write permissions without an IP allowlist last 30 days).",
                    format_utc(t)
                )
            },
        );
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "api_key.created",
            json!({"api_key": record.api_key, "label": record.label, "type": record.key_type.as_str(), "permissions": record.access.permissions_csv(), "ip_allowlist": record.access.allowlist_csv(), "unusual_device": unusual}),
        ))
        .with_mail(self.composer.compose(
            Some(&account.id),
            &account.email,
            account.anti_phishing_code.as_deref(),
            "A new API key was created",
            &format!(
                "The API key \"{}\" ({}) was created at {} from {} ({}).\nPermissions: {}\nIP allowlist: {}\n{}\n{}\n\
                 If this was not you, delete it now from the Security Center and freeze your account: attackers add API keys as a backdoor.",
                record.label,
                record.key_type.as_str(),
                format_utc(now),
                client.device.summary(),
                client.ip,
                permissions.to_csv(),
                if allowlist.is_empty() { "none (any address)".to_owned() } else { allowlist.to_csv() },
                expires,
                if unusual { "This device is new to your account.\n" } else { "" },
            ),
            now,
        ));
        self.store.create_api_key(&record, &fx).await?;
        Ok((record, secret))
    }

    pub async fn list_api_keys(&self, auth: &SessionAuth) -> ServiceResult<Vec<ApiKeyRecord>> {
        Ok(self.store.api_keys(&auth.account.id).await?)
    }

    /// Edits permissions and allowlist. Adding a permission or an address needs step-up
    /// and is announced; removing applies at once.
    pub async fn update_api_key(
        &self,
        auth: &SessionAuth,
        key: &str,
        permissions: Option<Vec<String>>,
        allowlist: Option<Vec<String>>,
        client: &Client,
    ) -> ServiceResult<ApiKeyRecord> {
        let account = &auth.account;
        let Some(mut record) = self
            .store
            .api_keys(&account.id)
            .await?
            .into_iter()
            .find(|k| k.api_key == key)
        else {
            return Err(ServiceError::NotFound(
                "not_found",
                "No such API key on this account.".into(),
            ));
        };
        // Editing a key whose stored settings do not decode would compute "what was added"
        // against a guess: refuse, and let the owner delete it instead.
        let (old_perms, old_list) = match &record.access {
            KeyAccess::Readable {
                permissions,
                allowlist,
            } => (*permissions, allowlist.clone()),
            KeyAccess::Unreadable { why, .. } => {
                return Err(ServiceError::Internal(anyhow::anyhow!(
                    "API key {}: {why}",
                    record.api_key
                )))
            }
        };
        let perms = match permissions {
            Some(p) => Permissions::parse_list(&p)?,
            None => old_perms,
        };
        let list = match allowlist {
            Some(l) => Allowlist::parse(&l)?,
            None => old_list.clone(),
        };
        check_key_rules(perms, &list)?;
        let added_perms = perms.added_since(old_perms);
        // Emptying the allowlist opens the key to every address: that widens it too.
        let widened_list = list.added_since(&old_list) || (list.is_empty() && !old_list.is_empty());
        let widening = !added_perms.is_empty() || widened_list;
        if widening {
            self.require_step_up(auth, SensitiveAction::AddApiKey)
                .await?;
        }
        let expires_at = match (record.expires_at, expiry(perms, &list, record.created_at)) {
            (_, None) => None,
            (Some(existing), Some(_)) => Some(existing),
            (None, Some(_)) => expiry(perms, &list, self.now()),
        };
        let mut fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "api_key.updated",
            json!({"api_key": key, "permissions": perms.to_csv(), "ip_allowlist": list.to_csv(), "widened": widening}),
        ));
        if widening {
            fx = fx.with_mail(self.composer.compose(
                Some(&account.id),
                &account.email,
                account.anti_phishing_code.as_deref(),
                "An API key was given more access",
                &format!(
                    "The API key \"{}\" was changed at {} from {} ({}).\nPermissions now: {}\nIP allowlist now: {}\n\n\
                     Scammers ask victims to change API permissions. If this was not you, delete the key and freeze your account.",
                    record.label,
                    format_utc(self.now()),
                    client.device.summary(),
                    client.ip,
                    perms.to_csv(),
                    if list.is_empty() { "none (any address)".to_owned() } else { list.to_csv() },
                ),
                self.now(),
            ));
        }
        if !self
            .store
            .update_api_key(&account.id, key, perms, &list, expires_at, &fx)
            .await?
        {
            return Err(ServiceError::NotFound(
                "not_found",
                "No such API key on this account.".into(),
            ));
        }
        self.invalidate_keys(&format!("key:{key}")).await?;
        record.access = KeyAccess::Readable {
            permissions: perms,
            allowlist: list,
        };
        record.expires_at = expires_at;
        Ok(record)
    }

    pub async fn delete_api_key(
        &self,
        auth: &SessionAuth,
        key: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        self.require_step_up(auth, SensitiveAction::DeleteApiKey)
            .await?;
        let account = &auth.account;
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "api_key.deleted",
            json!({ "api_key": key }),
        ));
        let found = self
            .store
            .delete_api_key(&account.id, key, self.now(), &fx)
            .await?;
        self.invalidate_keys(&format!("key:{key}")).await?;
        if found {
            Ok(())
        } else {
            Err(ServiceError::NotFound(
                "not_found",
                "No such API key on this account.".into(),
            ))
        }
    }

    /// "Revoke all API keys", the guides' first move after a compromise.
    pub async fn delete_all_api_keys(
        &self,
        auth: &SessionAuth,
        client: &Client,
    ) -> ServiceResult<u64> {
        self.require_step_up(auth, SensitiveAction::DeleteApiKey)
            .await?;
        let account = &auth.account;
        let now = self.now();
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "api_key.deleted_all", json!({})))
            .with_mail(self.composer.compose(
                Some(&account.id),
                &account.email,
                account.anti_phishing_code.as_deref(),
                "All your API keys were deleted",
                &format!("Every API key of your account was deleted at {} from {} ({}). Bots using them stop working now.", format_utc(now), client.device.summary(), client.ip),
                now,
            ));
        let n = self
            .store
            .delete_all_api_keys(&account.id, now, &fx)
            .await?;
        self.invalidate_keys(&format!("account:{}", account.id))
            .await?;
        Ok(n)
    }

    /// The timed job's share: last-use batches, forbidden-address alerts (at most hourly
    /// per key) and expiry warnings 7 days and 1 day ahead. Returns the mails queued.
    pub async fn api_key_housekeeping(&self) -> ServiceResult<usize> {
        let now = self.now();
        let used: Vec<(String, Millis, String)> = match self.key_cache.used.lock() {
            Ok(mut m) => m
                .drain()
                .map(|(k, (at, ip))| (k, at, ip.to_string()))
                .collect(),
            Err(_) => Vec::new(),
        };
        self.store.api_keys_used(&used).await?;
        let mut mails = 0;
        let refused: Vec<(String, (Millis, IpAddr))> = match self.key_cache.refused_ips.lock() {
            Ok(mut m) => m.drain().collect(),
            Err(_) => Vec::new(),
        };
        for (key, (at, ip)) in refused {
            let due = match self.key_cache.last_ip_alert.lock() {
                Ok(mut last) => {
                    let due = last.get(&key).is_none_or(|t| now - t >= IP_ALERT_INTERVAL);
                    if due {
                        last.insert(key.clone(), now);
                    }
                    due
                }
                Err(_) => false,
            };
            if !due {
                continue;
            }
            let Some(auth) = self.store.api_key_auth(&key).await? else {
                continue;
            };
            let Some(account) = self.store.account_by_id(&auth.key.account_id).await? else {
                continue;
            };
            let fx = Effects::audit(self.event(None, Some(&account.id), "system".into(), "api_key.ip_refused", json!({"api_key": key, "ip": ip.to_string(), "at": at})))
                .with_mail(self.composer.compose(
                    Some(&account.id),
                    &account.email,
                    account.anti_phishing_code.as_deref(),
                    "Your API key was used from an address outside its allowlist",
                    &format!(
                        "At {} a correctly signed request with your API key \"{}\" came from {ip}, which is not on its IP allowlist, and was refused.\n\n\
                         Someone else has this key's secret. Delete the key now and create a new one.",
                        format_utc(at),
                        auth.key.label
                    ),
                    now,
                ).optional(MailKind::ApiKeys));
            self.store.append_audit(&fx).await?;
            mails += 1;
        }
        for which in ExpiryWarning::ALL {
            for key in self
                .store
                .api_keys_to_warn(which, now + which.ahead(), now)
                .await?
            {
                let Some(account) = self.store.account_by_id(&key.account_id).await? else {
                    continue;
                };
                let Some(expires) = key.expires_at else {
                    continue;
                };
                let fx = Effects::audit(self.event(None, Some(&account.id), "system".into(), "api_key.expiry_warned", json!({"api_key": key.api_key, "which": which.as_str()})))
                    .with_mail(self.composer.compose(
                        Some(&account.id),
                        &account.email,
                        account.anti_phishing_code.as_deref(),
                        &format!("Your API key \"{}\" expires {}", key.label, which.when()),
                        &format!(
                            "The API key \"{}\" expires at {}. Bots using it will stop working then.\n\n\
                             To keep a key with write permissions, give it an IP allowlist (keys with an allowlist do not expire), or create a new one.",
                            key.label,
                            format_utc(expires)
                        ),
                        now,
                    ).optional(MailKind::ApiKeys));
                self.store
                    .api_key_warned(&key.api_key, which, now, &fx)
                    .await?;
                mails += 1;
            }
        }
        Ok(mails)
    }
}

/// A request that needs `withdraw` waits out a withdrawal lock in force.
fn check_withdrawal_lock(needed: Permission, locked_until: Option<Millis>) -> Result<(), Refusal> {
    match locked_until {
        Some(until) if needed == Permission::Withdraw => Err(Refusal::WithdrawalsLocked { until }),
        _ => Ok(()),
    }
}

/// The permissions of a Security Center session at the gateway: all of them (the
/// platform's own web app acts for its signed-in user).
pub fn session_permissions() -> String {
    let mut p = Permissions::default();
    for x in Permission::ALL {
        p.insert(x);
    }
    p.to_csv()
}
