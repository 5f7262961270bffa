//! Stopping an attacker: freezing (from the Security Center, the API, or the single-use
//! link in any security mail), removing and blocking devices, signing out everywhere else,
//! trusted devices and new-device confirmation, the notification inbox, and signed
//! webhooks that push the same events to the platform.

use hmac::Mac;
use serde_json::json;

use std::sync::Arc;

use super::key_cache::CacheInvalidator;
use super::notices::Notices;
use super::pending::PendingChanges;
use super::step_up::StepUp;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{format_utc, Millis, SharedClock, HOUR, MINUTE};
use crate::domain::change::Weakening;
use crate::domain::mail_kind::MailKind;
use crate::domain::rules::Rules;
use crate::domain::secret::{token_hash, SecretBox};
use crate::domain::step_up::SensitiveAction;
use crate::geo::Location;
use crate::store::{
    Account, BlockedDevice, Effects, FreezeOutcome, Notification, SessionAuth, SharedStore,
};

/// One optional security mail and its state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MailPreference {
    pub kind: &'static str,
    pub description: &'static str,
    pub enabled: bool,
    /// When a requested switch-off takes effect (cancellable until then).
    pub turning_off_at: Option<Millis>,
}

/// A freeze is lifted only through the recovery review, never sooner than this.
pub const MIN_FREEZE: Millis = 2 * HOUR;
const WEBHOOK_LEASE: Millis = 2 * MINUTE;
const WEBHOOK_MAX_ATTEMPTS: i64 = 12;

/// Freezing, devices, trust, the inbox, mail preferences and webhooks.
pub struct Protection {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) rules: Rules,
    pub(crate) secret_box: Arc<SecretBox>,
    pub(crate) notices: Arc<Notices>,
    pub(crate) step_up: Arc<StepUp>,
    pub(crate) pending_changes: Arc<PendingChanges>,
    pub(crate) invalidator: Arc<CacheInvalidator>,
}

impl Clocked for Protection {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl Protection {
    fn freeze_effects(&self, account: &Account, client: &Client, via: &str) -> Effects {
        let now = self.now();
        Effects::audit(self.event(Some(client), Some(&account.id), format!("account:{}", account.uid), "account.frozen", json!({ "via": via })))
            .with_mail(self.notices.notice(
                account,
                "Your account is frozen",
                &format!(
                    "Your account was frozen at {} ({via}, from {} at {}).\n\n\
                     Done: every session was ended, every API key is refused, sign-ins are refused, and held withdrawals are cancelled.\n\
                     Nobody, including you, can undo this from a session or an API key. To get your account back, contact support: \
                     a person reviews the recovery, never sooner than 2 hours after the freeze.",
                    format_utc(now),
                    client.device.summary(),
                    client.ip
                ),
            ))
    }

    async fn after_freeze(&self, account_id: &str) -> ServiceResult<()> {
        self.invalidator
            .invalidate_keys(&format!("account:{account_id}"))
            .await
    }

    /// Freezes the signed-in account. Idempotent: a second freeze changes nothing.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn freeze(
        &self,
        auth: &SessionAuth,
        client: &Client,
    ) -> ServiceResult<FreezeOutcome> {
        let fx = self.freeze_effects(&auth.account, client, "from the Security Center");
        let outcome = self
            .store
            .freeze_account(&auth.account.id, self.now(), &fx)
            .await?;
        self.after_freeze(&auth.account.id).await?;
        Ok(outcome)
    }

    /// Whether a freeze link can still be used (for the page that shows its button).
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn freeze_link_state(&self, token: &str) -> ServiceResult<()> {
        self.usable_freeze_link(token).await.map(|_| ())
    }

    pub(crate) async fn usable_freeze_link(
        &self,
        token: &str,
    ) -> ServiceResult<crate::store::FreezeLinkRow> {
        let invalid = || {
            ServiceError::NotFound(
                "link_invalid",
                "This freeze link is not valid. Check that you copied the whole link, or freeze from the Security Center or through support.".into(),
            )
        };
        if token.is_empty() || token.len() > 128 {
            return Err(invalid());
        }
        let link = self
            .store
            .freeze_link(&token_hash(token))
            .await?
            .ok_or_else(invalid)?;
        if let Some(at) = link.used_at {
            return Err(link_used(at));
        }
        if self.now() >= link.expires_at {
            return Err(ServiceError::Conflict(
                "link_expired",
                "This freeze link has expired (links work for 7 days). Freeze from the Security Center, from a newer mail, or through support.".into(),
            ));
        }
        Ok(link)
    }

    /// Freezes through the link in a mail: no session needed, works once, for 7 days.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn freeze_by_link(
        &self,
        token: &str,
        client: &Client,
    ) -> ServiceResult<FreezeOutcome> {
        let link = self.usable_freeze_link(token).await?;
        let account = self
            .store
            .account_by_id(&link.account_id)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(
                    "link_invalid",
                    "This freeze link's account no longer exists.".into(),
                )
            })?;
        let fx = self.freeze_effects(&account, client, "with the link in a security mail");
        match self
            .store
            .spend_freeze_link(&token_hash(token), &account.id, self.now(), &fx)
            .await?
        {
            Some(outcome) => {
                self.after_freeze(&account.id).await?;
                Ok(outcome)
            }
            // Another click got there first.
            None => Err(link_used(self.now())),
        }
    }

    /// The devices blocked at sign-in.
    pub async fn blocked_devices(&self, auth: &SessionAuth) -> ServiceResult<Vec<BlockedDevice>> {
        Ok(self.store.blocked_devices(&auth.account.id).await?)
    }

    /// Lets a blocked device sign in again (step-up; refused while settings are locked).
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn unblock_device(
        &self,
        auth: &SessionAuth,
        fingerprint: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        self.step_up
            .require_step_up(auth, SensitiveAction::UnblockDevice)
            .await?;
        let account = &auth.account;
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "device.unblocked", json!({"fingerprint": fingerprint})))
            .with_mail(self.notices.notice(account, "A blocked device may sign in again", &format!(
                "A device you had blocked may sign in again: unblocked at {} from {} ({}).\n\nNot you? Freeze your account with the link below.",
                format_utc(self.now()), client.device.summary(), client.ip
            )));
        if self
            .store
            .unblock_fingerprint(&account.id, fingerprint, &fx)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound(
                "not_found",
                "That device is not blocked.".into(),
            ))
        }
    }

    /// Removes a device (step-up): its sessions end at once; with `block`, its fingerprint
    /// is refused at sign-in from then on.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn remove_device(
        &self,
        auth: &SessionAuth,
        device_id: &str,
        block: bool,
        client: &Client,
    ) -> ServiceResult<u64> {
        self.step_up
            .require_step_up(auth, SensitiveAction::RemoveDevice)
            .await?;
        let account = &auth.account;
        let Some(device) = self.store.device(&account.id, device_id).await? else {
            return Err(ServiceError::NotFound(
                "not_found",
                "No such device on this account.".into(),
            ));
        };
        let what = if block {
            "removed and blocked"
        } else {
            "removed"
        };
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), if block { "device.blocked" } else { "device.removed" }, json!({"device_id": device.id, "device": format!("{} on {} ({})", device.browser, device.os, device.model)})))
            .with_mail(self.notices.notice(
                account,
                &format!("A device was {what}"),
                &format!(
                    "The device \"{} · {} · {}\" (last seen at {}, {}) was {what} at {} from {}. Its sessions ended at once.{}",
                    device.model,
                    device.os,
                    device.browser,
                    device.ip,
                    Location::label(device.city.as_deref(), device.country.as_deref()),
                    format_utc(self.now()),
                    client.device.summary(),
                    if block { " Sign-ins from that device are now refused." } else { "" }
                ),
            ));
        self.store
            .remove_device(&account.id, device_id, block, self.now(), &fx)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound("not_found", "No such device on this account.".into())
            })
    }

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn sign_out_others(&self, auth: &SessionAuth, client: &Client) -> ServiceResult<u64> {
        let account = &auth.account;
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "sessions.others_ended",
            json!({}),
        ));
        Ok(self
            .store
            .end_other_sessions(&account.id, &auth.session.id, self.now(), &fx)
            .await?)
    }

    /// Adds a device to (or takes it off) the trusted list of at most three.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn set_trusted(
        &self,
        auth: &SessionAuth,
        device_id: &str,
        trusted: bool,
        client: &Client,
    ) -> ServiceResult<()> {
        if trusted {
            self.step_up
                .require_step_up(auth, SensitiveAction::AddSecondFactor)
                .await?;
        }
        let account = &auth.account;
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            if trusted {
                "device.trusted"
            } else {
                "device.untrusted"
            },
            json!({ "device_id": device_id }),
        ));
        match self
            .store
            .set_device_trusted(
                &account.id,
                device_id,
                trusted,
                self.rules.max_trusted_devices,
                self.now(),
                &fx,
            )
            .await?
        {
            Some(true) => Ok(()),
            Some(false) => Err(ServiceError::Conflict(
                "too_many_trusted_devices",
                format!(
                    "At most {} devices can be trusted. Remove one from the list first.",
                    self.rules.max_trusted_devices
                ),
            )),
            None => Err(ServiceError::NotFound(
                "not_found",
                "No such device on this account.".into(),
            )),
        }
    }

    /// Confirms a new device's pending session from the mailed link.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn confirm_device(&self, token: &str, client: &Client) -> ServiceResult<()> {
        let invalid = || {
            ServiceError::NotFound("link_invalid", "This confirmation link is not valid, was already used, or its session ended. Sign in again.".into())
        };
        if token.is_empty() || token.len() > 128 {
            return Err(invalid());
        }
        let hash = token_hash(token);
        let account_id = self
            .store
            .pending_session_account(&hash)
            .await?
            .ok_or_else(invalid)?;
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account_id),
            "anonymous".into(),
            "device.confirmed",
            json!({}),
        ));
        if self.store.confirm_session(&hash, self.now(), &fx).await? {
            Ok(())
        } else {
            Err(invalid())
        }
    }

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn notifications(
        &self,
        auth: &SessionAuth,
        limit: i64,
    ) -> ServiceResult<Vec<Notification>> {
        Ok(self
            .store
            .notifications(&auth.account.id, limit.clamp(1, 500))
            .await?)
    }

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn mark_notifications_read(&self, auth: &SessionAuth) -> ServiceResult<u64> {
        Ok(self
            .store
            .mark_notifications_read(&auth.account.id, self.now())
            .await?)
    }

    /// The optional security mails and whether each is on (or switching off, and when).
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn mail_preferences(&self, auth: &SessionAuth) -> ServiceResult<Vec<MailPreference>> {
        let muted = self.store.mail_mutes(&auth.account.id).await?;
        let pending = self.store.pending_changes(&auth.account.id).await?;
        Ok(MailKind::OPTIONAL
            .into_iter()
            .map(|kind| MailPreference {
                kind: kind.as_str(),
                description: kind.optional_description().unwrap_or_default(),
                enabled: !muted.contains(&kind),
                turning_off_at: pending
                    .iter()
                    .find(|c| c.change == Weakening::MuteMail(kind))
                    .map(|c| c.effective_at),
            })
            .collect())
    }

    /// Switching a security mail on applies at once; switching it off is weakening
    /// (48 hours, announced, cancellable). The inbox keeps every event either way.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn set_mail_preference(
        &self,
        auth: &SessionAuth,
        kind: &str,
        enabled: bool,
        client: &Client,
    ) -> ServiceResult<Option<crate::store::PendingChange>> {
        let optional = MailKind::parse(kind)
            .ok()
            .and_then(|k| Some((k, k.optional_description()?)));
        let Some((kind, description)) = optional else {
            return Err(crate::domain::Invalid::new(
                "invalid_kind",
                "Only these mails can be switched off: signin, api_keys.",
            )
            .into());
        };
        let account = &auth.account;
        if enabled {
            let fx = Effects::audit(self.event(
                Some(client),
                Some(&account.id),
                Self::account_actor(account),
                "mail_preference.enabled",
                json!({ "kind": kind.as_str() }),
            ));
            self.store.unmute_mail(&account.id, kind, &fx).await?;
            return Ok(None);
        }
        let what = format!("Stop mailing {description}");
        Ok(Some(
            self.pending_changes
                .schedule_weakening(auth, Weakening::MuteMail(kind), &what, client)
                .await?,
        ))
    }

    /// Registers a webhook endpoint (operator action); returns the signing secret.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn add_webhook(&self, url: &str) -> ServiceResult<(String, String)> {
        add_webhook(self.store.as_ref(), &self.secret_box, self.now(), url).await
    }
}

/// Registers a webhook endpoint; returns its id and signing secret (shown once, sealed at
/// rest). A free function so the `rampart webhook add` command needs only the store and key.
pub async fn add_webhook(
    store: &dyn crate::store::Store,
    secret_box: &crate::domain::secret::SecretBox,
    now: Millis,
    url: &str,
) -> ServiceResult<(String, String)> {
    let parsed = url::Url::parse(url)
        .map_err(|e| crate::domain::Invalid::new("invalid_url", format!("Not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(
            crate::domain::Invalid::new("invalid_url", "Webhook URLs must be http(s).").into(),
        );
    }
    let id = uuid::Uuid::new_v4().to_string();
    let secret = format!("whsec_{}", crate::domain::secret::random_token());
    let sealed = secret_box.seal(secret.as_bytes(), &id)?;
    store.add_webhook_endpoint(&id, url, &sealed, now).await?;
    Ok((id, secret))
}

fn link_used(at: Millis) -> ServiceError {
    ServiceError::Conflict(
        "link_used",
        format!("This freeze link was already used at {}. Each link works once; the account was frozen then. To get it back, contact support.", format_utc(at)),
    )
}

/// `sha256=<hex HMAC-SHA256 of the body>` with the endpoint's secret.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    let mut m = crate::domain::secret::hmac_sha256(secret.as_bytes());
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// Delivers due webhooks: POST the event JSON with `X-Rampart-Signature`,
/// `X-Rampart-Delivery` (the idempotency id) and `X-Rampart-Attempt`; 2xx is success,
/// anything else is retried with the mail backoff; every try is logged.
pub async fn deliver_webhooks(core: &Protection, http: &reqwest::Client) -> anyhow::Result<usize> {
    let now = core.now();
    let batch = core
        .store
        .claim_webhooks(now, now + WEBHOOK_LEASE, 32)
        .await?;
    let mut delivered = 0;
    for d in batch {
        let secret = String::from_utf8(core.secret_box.open(&d.secret_enc, &d.endpoint_id)?)?;
        let body = d.event.clone().into_bytes();
        let result = http
            .post(&d.url)
            .header("content-type", "application/json")
            .header("x-rampart-signature", webhook_signature(&secret, &body))
            .header("x-rampart-delivery", &d.id)
            .header("x-rampart-attempt", d.attempts.to_string())
            .body(body)
            .send()
            .await;
        let now = core.now();
        let retry_at = now + crate::domain::retry::backoff(d.attempts);
        let dead = d.attempts >= WEBHOOK_MAX_ATTEMPTS;
        match result {
            Ok(r) if r.status().is_success() => {
                core.store
                    .webhook_delivered(&d.id, i64::from(r.status().as_u16()), now)
                    .await?;
                delivered += 1;
            }
            Ok(r) => {
                let status = i64::from(r.status().as_u16());
                core.store
                    .webhook_failed(
                        &d.id,
                        Some(status),
                        &format!("HTTP {status}"),
                        retry_at,
                        dead,
                        now,
                    )
                    .await?;
            }
            Err(e) => {
                core.store
                    .webhook_failed(&d.id, None, &e.to_string(), retry_at, dead, now)
                    .await?
            }
        }
    }
    Ok(delivered)
}
