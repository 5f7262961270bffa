//! API key management: creation (step-up), listing, editing, deletion, and the timed
//! housekeeping (last-use batches, forbidden-address alerts, expiry warnings). Any change
//! to a key evicts it from every instance's cache (see `key_cache`); the check of each
//! signed request is in `gateway`.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::json;

use super::key_cache::CacheInvalidator;
use super::step_up::StepUp;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{format_utc, Millis, SharedClock, DAY, HOUR};
use crate::domain::api_key::{
    self, check_key_rules, expiry, Allowlist, ExpiryWarning, KeyAccess, KeyType, Permissions,
    Verifier,
};
use crate::domain::mail_kind::MailKind;
use crate::domain::secret::SecretBox;
use crate::domain::step_up::SensitiveAction;
use crate::mail::Composer;
use crate::store::{ApiKeyRecord, Effects, SessionAuth, SharedStore};

pub use super::gateway::{session_permissions, Access, AuthzError, GatewayRequest, Identity};
pub use super::key_cache::{CachedKey, FillTicket, KeyCache};

/// At most one "used from a forbidden address" mail per key per hour.
const IP_ALERT_INTERVAL: Millis = HOUR;

/// The details a user gives for a new key.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub label: String,
    pub key_type: String,
    pub public_key: Option<String>,
    pub permissions: Vec<String>,
    pub ip_allowlist: Vec<String>,
}

/// The account's API keys.
pub struct ApiKeys {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) secret_box: Arc<SecretBox>,
    pub(crate) composer: Composer,
    pub(crate) key_cache: Arc<KeyCache>,
    pub(crate) invalidator: Arc<CacheInvalidator>,
    pub(crate) step_up: Arc<StepUp>,
}

impl Clocked for ApiKeys {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl ApiKeys {
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
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn create_api_key(
        &self,
        auth: &SessionAuth,
        new: NewKey,
        client: &Client,
    ) -> ServiceResult<(ApiKeyRecord, Option<String>)> {
        self.step_up
            .require_step_up(auth, SensitiveAction::AddApiKey)
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
            key_type: Some(kind),
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
            suspended_at: None,
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
            json!({"api_key": record.api_key, "label": record.label, "type": record.key_type.map_or("unknown", KeyType::as_str), "permissions": record.access.permissions_csv(), "ip_allowlist": record.access.allowlist_csv(), "unusual_device": unusual}),
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
                record.key_type.map_or("unknown", KeyType::as_str),
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

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn list_api_keys(&self, auth: &SessionAuth) -> ServiceResult<Vec<ApiKeyRecord>> {
        Ok(self.store.api_keys(&auth.account.id).await?)
    }

    /// Edits permissions and allowlist. Adding a permission or an address needs step-up
    /// and is announced; removing applies at once.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
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
            self.step_up
                .require_step_up(auth, SensitiveAction::AddApiKey)
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
        self.invalidator
            .invalidate_keys(&format!("key:{key}"))
            .await?;
        record.access = KeyAccess::Readable {
            permissions: perms,
            allowlist: list,
        };
        record.expires_at = expires_at;
        Ok(record)
    }

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn delete_api_key(
        &self,
        auth: &SessionAuth,
        key: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        self.step_up
            .require_step_up(auth, SensitiveAction::DeleteApiKey)
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
        self.invalidator
            .invalidate_keys(&format!("key:{key}"))
            .await?;
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
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn delete_all_api_keys(
        &self,
        auth: &SessionAuth,
        client: &Client,
    ) -> ServiceResult<u64> {
        self.step_up
            .require_step_up(auth, SensitiveAction::DeleteApiKey)
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
        self.invalidator
            .invalidate_keys(&format!("account:{}", account.id))
            .await?;
        Ok(n)
    }

    /// The timed job's share: last-use batches, forbidden-address alerts (at most hourly
    /// per key) and expiry warnings 7 days and 1 day ahead. Returns the mails queued.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
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
