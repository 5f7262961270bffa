//! Incident response for the owner: "Secure my account" (from the Security Center, the API
//! or the link in any security mail), the backdoor sweep (everything created or changed
//! since a suspicious sign-in, removable one by one or all at once), the incident report
//! (JSON, and a PDF made by `report_pdf`), the settings lock, suspended API keys, the
//! rotating support code, and the public official-channel check with its console list.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::api_keys::ApiKeys;
use super::factors::FactorSettings;
use super::key_cache::CacheInvalidator;
use super::notices::Notices;
use super::passkeys::Passkeys;
use super::pending::PendingChanges;
use super::protection::Protection;
use super::step_up::StepUp;
use super::withdrawals::Withdrawals;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{format_utc, Millis, SharedClock, DAY, HOUR};
use crate::domain::incident::{
    self, email_covered, ChannelKind, SettingsLock, SUPPORT_CODE_PERIOD,
};
use crate::domain::operator::{Operator, Power};
use crate::domain::secret::{token_hash, ServerKey};
use crate::domain::step_up::SensitiveAction;
use crate::geo::{Geo, Location};
use crate::store::incidents::{OfficialChannel, SecureRequest};
use crate::store::{Account, Effects, SessionAuth, SharedStore, WithdrawalLock};

/// How long "Secure my account" locks withdrawals.
pub const SECURE_LOCK: Millis = 48 * HOUR;
/// How far back the sweep and the report look when no time is given.
pub const DEFAULT_LOOKBACK: Millis = 30 * DAY;
/// The most audit events one sweep or report reads.
const MAX_EVENTS: i64 = 5_000;

/// Incident response.
pub struct Incidents {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) key: ServerKey,
    pub(crate) rules: crate::domain::rules::Rules,
    pub(crate) geo: Arc<Geo>,
    pub(crate) notices: Arc<Notices>,
    pub(crate) step_up: Arc<StepUp>,
    pub(crate) invalidator: Arc<CacheInvalidator>,
    pub(crate) protection: Arc<Protection>,
    pub(crate) api_keys: Arc<ApiKeys>,
    pub(crate) withdrawals: Arc<Withdrawals>,
    pub(crate) factors: Arc<FactorSettings>,
    pub(crate) passkeys: Arc<Passkeys>,
    pub(crate) pending_changes: Arc<PendingChanges>,
}

impl Clocked for Incidents {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

/// One step of "Secure my account" and what it did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SecureStep {
    /// `sessions`, `api_keys`, `withdrawals`, `withdrawal_lock`, `incident`.
    pub step: &'static str,
    pub done: bool,
    pub result: String,
}

/// What "Secure my account" did, and what the owner does next.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SecureReport {
    pub incident_id: String,
    pub opened_at: Millis,
    pub steps: Vec<SecureStep>,
    /// What is left to the owner, in order.
    pub next: Vec<String>,
}

/// Something created or changed since the chosen time.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SweepItem {
    /// `api_key`, `allowlist_address`, `device`, `trusted_device`, `passkey`,
    /// `authenticator`, `pending_change`, `email`, `anti_phishing_code`.
    pub kind: &'static str,
    /// What to pass back to remove it.
    pub id: String,
    pub what: String,
    pub at: Millis,
    pub ip: Option<String>,
    /// The device that did it.
    pub device: Option<String>,
    pub place: String,
    /// What removing it does, or `None` when it cannot be undone from here (the sentence
    /// in `what` says where).
    pub remove: Option<String>,
}

/// The sweep's answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Sweep {
    pub since: Millis,
    pub items: Vec<SweepItem>,
}

/// What removing one item did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SweepResult {
    pub kind: String,
    pub id: String,
    pub removed: bool,
    pub result: String,
}

/// One line of the incident report's timeline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportEntry {
    pub at: Millis,
    /// `sign_in`, `security`, `api_key`, `withdrawal`, `transfer`, `deposit`, `operator`,
    /// `system`.
    pub kind: &'static str,
    /// Who: the owner's account, an operator, the platform or Rampart itself.
    pub actor: String,
    pub what: String,
    pub ip: Option<String>,
    pub device: Option<String>,
    pub place: Option<String>,
}

/// A sign-in with the six fields of the guides.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportSignIn {
    pub at: Millis,
    pub result: String,
    pub device_model: String,
    pub os: String,
    pub browser: String,
    pub ip: String,
    pub place: String,
    /// When this device was first and last seen, if it is still known.
    pub first_seen: Option<Millis>,
    pub last_active: Option<Millis>,
}

/// A withdrawal as the report shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportWithdrawal {
    pub at: Millis,
    pub state: String,
    pub asset: String,
    pub network: String,
    pub amount: String,
    pub destination: String,
    pub txid: Option<String>,
}

/// The incident report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IncidentReport {
    pub account_uid: String,
    pub email: String,
    pub generated_at: Millis,
    pub since: Millis,
    /// Incidents opened with "Secure my account", newest first.
    pub incidents: Vec<String>,
    pub timeline: Vec<ReportEntry>,
    pub sign_ins: Vec<ReportSignIn>,
    pub withdrawals: Vec<ReportWithdrawal>,
    /// The audit chain's verification, in words ("intact: 1,234 events" or where it breaks).
    pub audit_chain: String,
    pub audit_chain_intact: bool,
}

/// The settings lock as the owner sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SettingsLockView {
    pub locked: bool,
    pub lock: Option<SettingsLock>,
}

/// The support code shown in the Security Center.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SupportCode {
    pub code: String,
    pub expires_at: Millis,
    pub period_seconds: i64,
}

/// An official channel as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub id: String,
    pub kind: &'static str,
    pub value: String,
    pub note: String,
}

/// The answer of the official-channel check.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChannelCheck {
    pub official: bool,
    pub kind: &'static str,
    /// The value as compared.
    pub checked: String,
    pub note: Option<String>,
    pub message: String,
}

/// Something that happened recently, for the overview.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecentEvent {
    pub at: Millis,
    pub what: String,
    pub place: Option<String>,
    /// Why it stands out, or `None`.
    pub unusual: Option<String>,
}

/// One line of "what to do now", ticked when done.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckItem {
    pub step: &'static str,
    pub text: &'static str,
    pub done: bool,
    /// Where it is done.
    pub link: Option<&'static str>,
}

/// The overview: recent events with the unusual ones marked, and the checklist.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Overview {
    pub recent: Vec<RecentEvent>,
    pub checklist: Vec<CheckItem>,
}

/// How far back the overview looks.
pub const RECENT: Millis = 14 * DAY;

/// What support never asks, stated on the check page and in its answers.
pub const SUPPORT_NEVER_ASKS: &str = "Our support never asks you to change API settings, to share a code, a password or a recovery phrase, or to move funds to another address — not by phone, mail or chat.";

impl Incidents {
    fn place(&self, ip: Option<&str>) -> String {
        ip.and_then(|ip| ip.parse().ok())
            .map(|ip| self.geo.locate(ip))
            .map_or_else(
                || "unknown".to_owned(),
                |l: Location| Location::label(l.city.as_deref(), l.country.as_deref()),
            )
    }

    /// Where an address is: the geolocation database's answer, or else the place recorded
    /// with a sign-in from it (the database may be missing or older than the sign-in).
    fn place_among(&self, ip: Option<&str>, logins: &[crate::store::Login]) -> String {
        let located = self.place(ip);
        if located != "unknown" {
            return located;
        }
        ip.and_then(|ip| {
            logins
                .iter()
                .find(|l| l.ip == ip && (l.city.is_some() || l.country.is_some()))
        })
        .map_or(located, |l| {
            Location::label(l.city.as_deref(), l.country.as_deref())
        })
    }

    // ----- Secure my account -----

    /// Secures the signed-in account; the asking session stays signed in so the owner can
    /// go on to change the password and second factor.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn secure(&self, auth: &SessionAuth, client: &Client) -> ServiceResult<SecureReport> {
        self.secure_account(
            &auth.account,
            Some(&auth.session.id),
            None,
            "security_center",
            client,
        )
        .await
    }

    /// Secures the account of a security mail's single-use link (the freeze link's page
    /// offers both): every session ends.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn secure_by_link(
        &self,
        token: &str,
        client: &Client,
    ) -> ServiceResult<SecureReport> {
        let link = self.protection.usable_freeze_link(token).await?;
        let account = self
            .store
            .account_by_id(&link.account_id)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(
                    "link_invalid",
                    "This link's account no longer exists.".into(),
                )
            })?;
        self.secure_account(
            &account,
            None,
            Some(&token_hash(token)),
            "mail_link",
            client,
        )
        .await
    }

    async fn secure_account(
        &self,
        account: &Account,
        keep_session: Option<&str>,
        link_hash: Option<&str>,
        via: &str,
        client: &Client,
    ) -> ServiceResult<SecureReport> {
        if account.frozen_at.is_some() {
            return Err(ServiceError::AccountFrozen);
        }
        let now = self.now();
        let incident_id = uuid::Uuid::new_v4().to_string();
        let lock = WithdrawalLock {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account.id.clone(),
            reason: "account_secured".into(),
            created_at: now,
            until: now + SECURE_LOCK,
        };
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "account.secured", json!({"incident_id": incident_id, "via": via})))
            .with_mail(self.notices.notice(account, "Your account was secured", &format!(
                "At {} you secured your account (from {} at {}): every other session was ended, every API key is suspended, held withdrawals were cancelled and withdrawals are locked until {}.\n\n\
                 Next: change your password, set up your second factor again, and review what changed recently in the Security Center (the backdoor sweep).\n\n\
                 Not you? Freeze your account with the link below.",
                format_utc(now), client.device.summary(), client.ip, format_utc(lock.until)
            )));
        let req = SecureRequest {
            incident_id: &incident_id,
            account_id: &account.id,
            keep_session,
            link_hash,
            via,
            lock: &lock,
            now,
        };
        let Some(out) = self.store.secure_account(&req, &fx).await? else {
            return Err(ServiceError::Conflict(
                "link_used",
                "This link was already used or has expired. Sign in and use \"Secure my account\" in the Security Center.".into(),
            ));
        };
        self.invalidator
            .invalidate_keys(&format!("account:{}", account.id))
            .await?;
        let plural = |n: u64, one: &str, many: &str| {
            if n == 1 {
                format!("1 {one}")
            } else {
                format!("{n} {many}")
            }
        };
        let steps = vec![
            SecureStep {
                step: "sessions",
                done: true,
                result: if keep_session.is_some() {
                    format!("Signed out {} on other devices; this one stays signed in.", plural(out.sessions_ended, "session", "sessions"))
                } else {
                    format!("Signed out {} everywhere.", plural(out.sessions_ended, "session", "sessions"))
                },
            },
            SecureStep {
                step: "api_keys",
                done: true,
                result: format!("Suspended {}: every request with them is refused until you resume or delete them.", plural(out.keys_suspended, "API key", "API keys")),
            },
            SecureStep {
                step: "withdrawals",
                done: true,
                result: format!(
                    "Cancelled {} and recalled {} not yet sent to the blockchain.",
                    plural(out.withdrawals_cancelled.len() as u64, "held withdrawal", "held withdrawals"),
                    plural(out.withdrawals_recalled.len() as u64, "released withdrawal", "released withdrawals"),
                ),
            },
            SecureStep {
                step: "withdrawal_lock",
                done: true,
                result: format!("Withdrawals are locked until {}.", format_utc(lock.until)),
            },
            SecureStep {
                step: "incident",
                done: true,
                result: format!("Opened incident {incident_id}: download its report to hand to support or the police."),
            },
        ];
        Ok(SecureReport {
            incident_id,
            opened_at: now,
            steps,
            next: vec![
                "Change your password (every other device is signed out again).".into(),
                "Set up your authenticator app or passkey again, and make new backup codes.".into(),
                "Run the backdoor sweep: remove every key, address, device and setting you did not make.".into(),
                "Check your withdrawal allowlist and file a support ticket with the incident report.".into(),
            ],
        })
    }

    // ----- Overview -----

    /// What happened in the last 14 days (sign-ins and security changes), newest first,
    /// with the unusual ones marked and why; and the checklist of the guides, ticked from
    /// what the account shows (after the latest incident, if one was opened).
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn overview(&self, auth: &SessionAuth) -> ServiceResult<Overview> {
        let account = &auth.account;
        let now = self.now();
        let from = now - RECENT;
        let logins = self.store.logins(&account.id, 200).await?;
        let devices = self.store.devices(&account.id, 0).await?;
        let events = self
            .store
            .audit_since(&account.id, from, MAX_EVENTS)
            .await?;
        let incidents = self.store.incidents(&account.id).await?;
        let current = devices.iter().find(|d| d.id == auth.session.device_id);
        let known: Vec<String> = devices
            .iter()
            .filter(|d| d.trusted_at.is_some() || d.id == auth.session.device_id)
            .map(|d| format!("{} on {} ({})", d.browser, d.os, d.model))
            .collect();
        let mut recent = Vec::new();
        // Countries signed in from, oldest sign-in first, to tell a new one.
        let mut countries = std::collections::HashSet::new();
        let mut chronological: Vec<_> = logins.iter().collect();
        chronological.sort_by_key(|l| l.at);
        for l in chronological {
            let place = Location::label(l.city.as_deref(), l.country.as_deref());
            let device = devices.iter().find(|d| Some(&d.id) == l.device_id.as_ref());
            let mut why = Vec::new();
            if l.success {
                if let Some(c) = &l.country {
                    if !countries.is_empty() && !countries.contains(c) {
                        why.push(format!("a country you had not signed in from before ({c})"));
                    }
                    countries.insert(c.clone());
                }
                let is_current = current.is_some_and(|c| Some(&c.id) == l.device_id.as_ref());
                if let Some(d) = device {
                    if !is_current
                        && d.trusted_at.is_none()
                        && d.first_seen >= from
                        && d.first_seen >= l.at - HOUR
                    {
                        why.push("a device first seen then".to_owned());
                    }
                }
            } else {
                why.push("a failed attempt: someone may be trying your password".to_owned());
            }
            if l.at < from {
                continue;
            }
            let result = crate::domain::sign_in::login_result(&l.reason, l.method);
            recent.push(RecentEvent {
                at: l.at,
                what: format!(
                    "Sign-in: {result} — {} on {} ({})",
                    l.browser, l.os, l.model
                ),
                place: Some(format!("{place} · IP {}", l.ip)),
                unusual: (!why.is_empty()).then(|| format!("{}.", capitalise(&why.join("; ")))),
            });
        }
        for e in &events {
            if !SECURITY_CHANGES.contains(&e.action.as_str()) {
                continue;
            }
            let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
            let by_owner = e.actor == format!("account:{}", account.uid);
            let from_known = e.device.as_ref().is_some_and(|d| known.contains(d));
            let unusual = (by_owner && !from_known).then(|| {
                format!(
                    "Made from {}, which is not this device or a trusted one.",
                    e.device.as_deref().unwrap_or("an unknown device")
                )
            });
            recent.push(RecentEvent {
                at: e.at,
                what: describe(&e.action, &detail),
                place: e
                    .ip
                    .as_deref()
                    .map(|ip| format!("{} · IP {ip}", self.place_among(Some(ip), &logins))),
                unusual,
            });
        }
        recent.sort_by_key(|e| std::cmp::Reverse(e.at));
        recent.truncate(50);

        let anchor = incidents.first().map_or(from, |i| i.opened_at);
        let since_anchor = self
            .store
            .audit_since(&account.id, anchor, MAX_EVENTS)
            .await?;
        let did = |actions: &[&str]| {
            since_anchor
                .iter()
                .any(|e| actions.contains(&e.action.as_str()))
        };
        let idle = self.rules.session_idle_minutes * crate::clock::MINUTE;
        let live = self
            .store
            .live_devices(&account.id, now, now - idle)
            .await?;
        let keys = self.store.api_keys(&account.id).await?;
        let settings = self.store.withdrawal_settings(&account.id).await?;
        let checklist = vec![
            CheckItem {
                step: "secure",
                text: "Secure your account (or freeze it)",
                done: !incidents.is_empty() && anchor >= from,
                link: None,
            },
            CheckItem {
                step: "sign_out_others",
                text: "Sign out every other device",
                done: live.iter().all(|d| d == &auth.session.device_id),
                link: Some("/security/devices"),
            },
            CheckItem {
                step: "password",
                text: "Change your password",
                done: did(&[
                    "password.changed",
                    "password.reset",
                    "recovery.password_set",
                ]),
                link: Some("/security/factors#password"),
            },
            CheckItem {
                step: "second_factor",
                text: "Set up your second factor again and make new backup codes",
                done: did(&[
                    "totp.enabled",
                    "totp.reset",
                    "passkey.added",
                    "backup_codes.regenerated",
                ]),
                link: Some("/security/factors"),
            },
            CheckItem {
                step: "api_keys",
                text: "Delete API keys you did not create",
                done: keys.iter().all(|k| k.suspended_at.is_some()),
                link: Some("/security/keys"),
            },
            CheckItem {
                step: "allowlist",
                text: "Turn on the withdrawal allowlist and check its addresses",
                done: settings.allowlist_enabled,
                link: Some("/security/withdrawals"),
            },
            CheckItem {
                step: "ticket",
                text: "File a support ticket with the incident report",
                done: did(&["support.ticket_filed"]),
                link: Some("/support"),
            },
        ];
        Ok(Overview { recent, checklist })
    }

    // ----- Suspended keys -----

    /// Suspends or resumes one of the owner's keys. Resuming needs a step-up (and no
    /// settings lock in force); suspending never does.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn set_key_suspended(
        &self,
        auth: &SessionAuth,
        api_key: &str,
        suspended: bool,
        client: &Client,
    ) -> ServiceResult<()> {
        if !suspended {
            self.step_up
                .require_step_up(auth, SensitiveAction::ResumeApiKey)
                .await?;
        }
        let account = &auth.account;
        let action = if suspended {
            "api_key.suspended"
        } else {
            "api_key.resumed"
        };
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            action,
            json!({"api_key": api_key}),
        ));
        if !self
            .store
            .set_key_suspended(&account.id, api_key, suspended, self.now(), &fx)
            .await?
        {
            return Err(ServiceError::NotFound(
                "not_found",
                "No such API key on this account.".into(),
            ));
        }
        self.invalidator
            .invalidate_keys(&format!("account:{}", account.id))
            .await
    }

    // ----- Settings lock -----

    pub async fn settings_lock(&self, auth: &SessionAuth) -> ServiceResult<SettingsLockView> {
        let lock = self.store.settings_lock(&auth.account.id).await?;
        let now = self.now();
        Ok(SettingsLockView {
            locked: lock.as_ref().is_some_and(|l| l.active(now)),
            lock: lock.filter(|l| l.active(now)),
        })
    }

    /// Locks every security setting for `hours`; ending it early waits `early_end_hours`.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn lock_settings(
        &self,
        auth: &SessionAuth,
        hours: i64,
        early_end_hours: i64,
        client: &Client,
    ) -> ServiceResult<SettingsLock> {
        let now = self.now();
        let lock = SettingsLock::new(
            now,
            hours.saturating_mul(HOUR),
            early_end_hours.saturating_mul(HOUR),
        )?;
        self.step_up
            .require_step_up(auth, SensitiveAction::LockSettings)
            .await?;
        let account = &auth.account;
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "settings.locked", json!({"until": lock.until, "early_end_delay": lock.early_end_delay})))
            .with_mail(self.notices.notice(account, "Your security settings are locked", &format!(
                "At {} your security settings were locked until {} (from {} at {}). No password, email, second-factor, API key or allowlist change is possible until then; ending the lock early takes {}.\n\n\
                 Not you? Freeze your account with the link below and contact support.",
                format_utc(now), format_utc(lock.until), client.device.summary(), client.ip, span(lock.early_end_delay)
            )));
        if self
            .store
            .put_settings_lock(&account.id, &lock, now, &fx)
            .await?
        {
            Ok(lock)
        } else {
            Err(ServiceError::Conflict(
                "settings_already_locked",
                "Your settings are already locked. Ask to end that lock early first, or wait until it ends.".into(),
            ))
        }
    }

    /// Asks to end the lock early: it then ends after the delay chosen when locking.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn end_settings_lock(
        &self,
        auth: &SessionAuth,
        client: &Client,
    ) -> ServiceResult<SettingsLock> {
        self.step_up
            .require_step_up(auth, SensitiveAction::EndSettingsLock)
            .await?;
        let account = &auth.account;
        let now = self.now();
        let current = self
            .store
            .settings_lock(&account.id)
            .await?
            .filter(|l| l.active(now))
            .ok_or_else(|| {
                ServiceError::NotFound("not_locked", "Your settings are not locked.".into())
            })?;
        let ended = current.end_early(now);
        if ended == current {
            return Ok(current);
        }
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "settings.unlock_requested", json!({"until": ended.until})))
            .with_mail(self.notices.notice(account, "Your settings lock ends early", &format!(
                "At {} someone asked to end your settings lock early (from {} at {}). It ends at {}.\n\n\
                 Not you? Freeze your account with the link below: the lock then stays until support has checked it is you.",
                format_utc(now), client.device.summary(), client.ip, format_utc(ended.until)
            )));
        if self
            .store
            .update_settings_lock(&account.id, &ended, now, &fx)
            .await?
        {
            Ok(ended)
        } else {
            Err(ServiceError::Conflict(
                "lock_changed",
                "The lock changed meanwhile; reload and try again.".into(),
            ))
        }
    }

    // ----- Backdoor sweep -----

    /// Everything created or changed since `since` (default: the last 30 days) that is
    /// still in place, with the device and place that did it.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn sweep(&self, auth: &SessionAuth, since: Option<Millis>) -> ServiceResult<Sweep> {
        let account = &auth.account;
        let now = self.now();
        let since = since.unwrap_or(now - DEFAULT_LOOKBACK);
        let events = self
            .store
            .audit_since(&account.id, since, MAX_EVENTS)
            .await?;
        let keys = self.store.api_keys(&account.id).await?;
        let addresses = self.store.allowlist(&account.id).await?;
        let devices = self.store.devices(&account.id, since).await?;
        let passkeys = self.store.passkeys(&account.id).await?;
        let pending = self.store.pending_changes(&account.id).await?;
        let logins = self.store.logins(&account.id, 200).await?;
        let totp = self
            .store
            .totp(&account.id)
            .await?
            .is_some_and(|t| t.enabled_at.is_some());
        let current_device = &auth.session.device_id;
        let mut items: Vec<SweepItem> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for e in events.iter().rev() {
            let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
            let field = |k: &str| {
                detail
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let item =
                |kind: &'static str, id: String, what: String, remove: Option<&str>| SweepItem {
                    kind,
                    id,
                    what,
                    at: e.at,
                    ip: e.ip.clone(),
                    device: e.device.clone(),
                    place: self.place_among(e.ip.as_deref(), &logins),
                    remove: remove.map(str::to_owned),
                };
            let found = match e.action.as_str() {
                "api_key.created" | "api_key.updated" | "api_key.withdraw_rules_set" | "api_key.resumed" => {
                    let id = field("api_key");
                    keys.iter().find(|k| k.api_key == id).map(|k| {
                        let verb = if e.action == "api_key.created" { "created" } else { "changed" };
                        item("api_key", id.clone(), format!("API key \"{}\" ({}) {verb}, permissions: {}{}", k.label, key_hint(&id), k.access.permissions_csv(), if k.suspended_at.is_some() { "; suspended now" } else { "" }), Some("Delete the key"))
                    })
                }
                "allowlist.address_added" => {
                    let id = field("entry_id");
                    addresses.iter().find(|a| a.id == id).map(|a| {
                        item("allowlist_address", id.clone(), format!("Withdrawal address {} ({} on {}, \"{}\") added to the allowlist", a.address, a.asset, a.network, a.label), Some("Remove the address"))
                    })
                }
                "device.trusted" => {
                    let id = field("device_id");
                    devices.iter().find(|d| d.id == id && d.trusted_at.is_some()).map(|d| {
                        item("trusted_device", id.clone(), format!("Device trusted: {} · {} · {}", d.model, d.os, d.browser), Some("Stop trusting it"))
                    })
                }
                "passkey.added" => {
                    let id = field("passkey_id");
                    passkeys.iter().find(|p| p.id == id).map(|p| {
                        let pending_removal = pending.iter().any(|c| c.change == crate::domain::change::Weakening::RemovePasskey(id.clone()));
                        item("passkey", id.clone(), format!("Passkey \"{}\" added{}", p.name, if pending_removal { "; removal scheduled" } else { "" }), (!pending_removal).then_some("Remove it (takes effect in 48 hours, like every removal of a protection)"))
                    })
                }
                "totp.enabled" if totp => Some(item("authenticator", "totp".into(), "Authenticator app set up".into(), Some("Turn it off (takes effect in 48 hours); set up your own afterwards"))),
                "weakening.scheduled" => {
                    pending.iter().find(|c| c.change.kind() == field("kind") && c.change.target().unwrap_or_default() == field("target")).map(|c| {
                        item("pending_change", c.id.clone(), format!("A protection will be weakened at {}: {}", format_utc(c.effective_at), c.change.kind()), Some("Cancel the change"))
                    })
                }
                "email.changed" => Some(item("email", "email".into(), format!("Email address changed from {} to {}: the old address can cancel the change from its mail, or change it back under Email address", field("from"), field("to")), None)),
                "anti_phishing_code.set" => Some(item("anti_phishing_code", "anti_phishing_code".into(), "Anti-phishing code set or changed: set your own again under Anti-phishing code".into(), None)),
                _ => None,
            };
            if let Some(i) = found {
                if seen.insert((i.kind, i.id.clone())) {
                    items.push(i);
                }
            }
        }
        for d in devices
            .iter()
            .filter(|d| d.first_seen >= since && &d.id != current_device)
        {
            if seen.insert(("device", d.id.clone())) {
                items.push(SweepItem {
                    kind: "device",
                    id: d.id.clone(),
                    what: format!(
                        "New device signed in: {} · {} · {}",
                        d.model, d.os, d.browser
                    ),
                    at: d.first_seen,
                    ip: Some(d.ip.clone()),
                    device: Some(format!("{} on {} ({})", d.browser, d.os, d.model)),
                    place: Location::label(d.city.as_deref(), d.country.as_deref()),
                    remove: Some("Remove the device (its sessions end)".into()),
                });
            }
        }
        items.sort_by_key(|i| std::cmp::Reverse(i.at));
        Ok(Sweep { since, items })
    }

    /// Removes one item the sweep listed, through the service that owns it (each with its
    /// own rules: a step-up, 48 hours for removing a protection).
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn sweep_remove(
        &self,
        auth: &SessionAuth,
        kind: &str,
        id: &str,
        client: &Client,
    ) -> ServiceResult<String> {
        match kind {
            "api_key" => {
                self.api_keys.delete_api_key(auth, id, client).await?;
                Ok("Deleted.".into())
            }
            "allowlist_address" => {
                self.withdrawals.remove_address(auth, id, client).await?;
                Ok("Removed from the allowlist.".into())
            }
            "trusted_device" => {
                self.protection.set_trusted(auth, id, false, client).await?;
                Ok("No longer trusted.".into())
            }
            "device" => {
                let n = self
                    .protection
                    .remove_device(auth, id, false, client)
                    .await?;
                Ok(format!("Removed; {n} session(s) ended."))
            }
            "passkey" => {
                let c = self.passkeys.remove_passkey(auth, id, client).await?;
                Ok(format!(
                    "Removal scheduled for {}.",
                    format_utc(c.effective_at)
                ))
            }
            "authenticator" => {
                let c = self.factors.disable_totp(auth, client).await?;
                Ok(format!("Turning off at {}.", format_utc(c.effective_at)))
            }
            "pending_change" => {
                self.pending_changes
                    .cancel_pending_change(auth, id, client)
                    .await?;
                Ok("Cancelled.".into())
            }
            _ => Err(ServiceError::Invalid(crate::domain::Invalid::new(
                "invalid_kind",
                "That kind of item cannot be removed here.",
            ))),
        }
    }

    /// Removes every removable item of the sweep, one by one, and says what each did.
    pub async fn sweep_remove_all(
        &self,
        auth: &SessionAuth,
        since: Option<Millis>,
        client: &Client,
    ) -> ServiceResult<Vec<SweepResult>> {
        let sweep = self.sweep(auth, since).await?;
        let mut out = Vec::new();
        for item in sweep.items.into_iter().filter(|i| i.remove.is_some()) {
            let (removed, result) = match self.sweep_remove(auth, item.kind, &item.id, client).await
            {
                Ok(r) => (true, r),
                // A step-up needed stops the batch: every later item would need it too.
                Err(e @ ServiceError::StepUpRequired { .. }) => return Err(e),
                Err(e) => (false, e.to_string()),
            };
            out.push(SweepResult {
                kind: item.kind.to_owned(),
                id: item.id,
                removed,
                result,
            });
        }
        Ok(out)
    }

    // ----- Incident report -----

    /// The timeline since `since` (default: 30 days back), every sign-in with its six
    /// device fields, the withdrawals with their TxIDs, and the audit chain's verification.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn report(
        &self,
        auth: &SessionAuth,
        since: Option<Millis>,
        client: &Client,
    ) -> ServiceResult<IncidentReport> {
        let account = &auth.account;
        let now = self.now();
        let since = since.unwrap_or(now - DEFAULT_LOOKBACK);
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "incident.report_made",
            json!({"since": since}),
        ));
        self.store.append_audit(&fx).await?;
        let events = self
            .store
            .audit_since(&account.id, since, MAX_EVENTS)
            .await?;
        let devices = self.store.devices(&account.id, 0).await?;
        let logins = self.store.logins(&account.id, 500).await?;
        let mut timeline = Vec::new();
        for e in &events {
            if e.action.starts_with("signin.") {
                continue; // the sign-ins below carry more
            }
            let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
            timeline.push(ReportEntry {
                at: e.at,
                kind: event_kind(&e.action, &e.actor),
                actor: e.actor.clone(),
                what: describe(&e.action, &detail),
                place: e
                    .ip
                    .as_deref()
                    .map(|ip| self.place_among(Some(ip), &logins)),
                ip: e.ip.clone(),
                device: e.device.clone(),
            });
        }
        let mut sign_ins = Vec::new();
        for l in logins.iter().filter(|l| l.at >= since) {
            let device = l
                .device_id
                .as_ref()
                .and_then(|id| devices.iter().find(|d| &d.id == id));
            let place = Location::label(l.city.as_deref(), l.country.as_deref());
            let result = crate::domain::sign_in::login_result(&l.reason, l.method);
            timeline.push(ReportEntry {
                at: l.at,
                kind: "sign_in",
                actor: if l.success {
                    format!("account:{}", account.uid)
                } else {
                    "anonymous".into()
                },
                what: format!("Sign-in: {result} — {} · {} · {}", l.model, l.os, l.browser),
                ip: Some(l.ip.clone()),
                device: Some(format!("{} on {} ({})", l.browser, l.os, l.model)),
                place: Some(place.clone()),
            });
            sign_ins.push(ReportSignIn {
                at: l.at,
                result,
                device_model: l.model.clone(),
                os: l.os.clone(),
                browser: l.browser.clone(),
                ip: l.ip.clone(),
                place,
                first_seen: device.map(|d| d.first_seen),
                last_active: device.map(|d| d.last_active),
            });
        }
        // Key use is kept as each key's last use (the gateway does not log every request).
        for k in self.store.api_keys(&account.id).await? {
            if let (Some(at), Some(ip)) = (k.last_used_at, k.last_used_ip.as_deref()) {
                if at >= since {
                    timeline.push(ReportEntry {
                        at,
                        kind: "api_key",
                        actor: format!("api_key:{}", key_hint(&k.api_key)),
                        what: format!(
                            "API key {} (\"{}\") last used",
                            key_hint(&k.api_key),
                            k.label
                        ),
                        place: Some(self.place_among(Some(ip), &logins)),
                        ip: Some(ip.to_owned()),
                        device: None,
                    });
                }
            }
        }
        timeline.sort_by_key(|e| e.at);
        let withdrawals = self
            .store
            .account_withdrawals(&account.id, None, 500)
            .await?
            .into_iter()
            .filter(|w| w.created_at >= since)
            .map(|w| ReportWithdrawal {
                at: w.created_at,
                state: w.state.as_str().to_owned(),
                asset: w.asset,
                network: w.network,
                amount: w.amount,
                destination: w.address,
                txid: w.txid,
            })
            .collect();
        let incidents = self
            .store
            .incidents(&account.id)
            .await?
            .into_iter()
            .map(|i| {
                format!(
                    "{} opened {} ({})",
                    i.id,
                    format_utc(i.opened_at),
                    i.via.replace('_', " ")
                )
            })
            .collect();
        // The report's own events against the chain: each one's hash, and its link to the
        // event before it in the platform's log (one indexed read per event, not a walk of
        // the whole log, so a report costs the same on a platform with millions of events).
        let wanted: Vec<i64> = events
            .iter()
            .map(|e| e.seq - 1)
            .filter(|s| *s > 0)
            .collect();
        let prev: std::collections::HashMap<i64, String> = self
            .store
            .audit_hashes(&wanted)
            .await?
            .into_iter()
            .collect();
        let (_, verdict) = super::console::verify_events(&events, &prev);
        let (audit_chain, audit_chain_intact) = match verdict.problem {
            None => (format!("Verified at {}: the {} audit events of this report are intact: each matches its hash and is linked to the event before it in the platform's hash-chained log (none altered, none removed between them).", format_utc(now), verdict.events_checked), true),
            Some(why) => (format!("Verified at {}: the audit log is BROKEN: {why}.", format_utc(now)), false),
        };
        Ok(IncidentReport {
            account_uid: account.uid.clone(),
            email: account.email.clone(),
            generated_at: now,
            since,
            incidents,
            timeline,
            sign_ins,
            withdrawals,
            audit_chain,
            audit_chain_intact,
        })
    }

    // ----- Support code and official channels -----

    /// An account's support code now, and when it changes.
    fn code_now(&self, account_id: &str) -> SupportCode {
        let now = self.now();
        SupportCode {
            code: incident::support_code(&self.key, account_id, now),
            expires_at: incident::support_code_expires(now),
            period_seconds: SUPPORT_CODE_PERIOD / 1000,
        }
    }

    /// The account's support code now, and when it changes.
    pub fn support_code(&self, auth: &SessionAuth) -> SupportCode {
        self.code_now(&auth.account.id)
    }

    /// The code an agent reads out on a call, for the owner to compare with the one in
    /// their Security Center (audited: who looked, at which account).
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn support_code_for(
        &self,
        operator: &Operator,
        uid: &str,
        client: &Client,
    ) -> ServiceResult<SupportCode> {
        super::console::require(operator, Power::Lookup)?;
        let account = self
            .store
            .account_by_uid(uid.trim())
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound("account_not_found", "No account has this UID.".into())
            })?;
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            operator.actor(),
            "console.support_code_viewed",
            json!({}),
        ));
        self.store.append_audit(&fx).await?;
        Ok(self.code_now(&account.id))
    }

    /// Whether a value is one of the platform's official channels.
    pub async fn check_channel(&self, kind: &str, value: &str) -> ServiceResult<ChannelCheck> {
        let kind = ChannelKind::parse(kind).map_err(|_| {
            crate::domain::Invalid::new(
                "invalid_kind",
                "Choose what to check: phone, email, web or chat.",
            )
        })?;
        let checked = kind.normalize(value)?;
        let channels = self.store.official_channels().await?;
        let hit = channels.iter().find(|c| {
            c.kind == kind
                && (c.normalized == checked
                    || (kind == ChannelKind::Email && email_covered(&c.normalized, &checked)))
        });
        Ok(match hit {
            Some(c) => ChannelCheck {
                official: true,
                kind: kind.as_str(),
                checked,
                note: Some(c.note.clone()),
                message: format!("Yes: this {} is one of our official channels. Even so, {}", kind.label(), lowercase_first(SUPPORT_NEVER_ASKS)),
            },
            None => ChannelCheck {
                official: false,
                kind: kind.as_str(),
                checked,
                note: None,
                message: format!("No: this {} is NOT one of our official channels. Do not answer it, click its links or give it anything. {SUPPORT_NEVER_ASKS}", kind.label()),
            },
        })
    }

    pub async fn channels(&self) -> ServiceResult<Vec<ChannelView>> {
        Ok(self
            .store
            .official_channels()
            .await?
            .into_iter()
            .map(|c| ChannelView {
                id: c.id,
                kind: c.kind.as_str(),
                value: c.display,
                note: c.note,
            })
            .collect())
    }

    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn add_channel(
        &self,
        operator: &Operator,
        kind: &str,
        value: &str,
        note: &str,
        client: &Client,
    ) -> ServiceResult<ChannelView> {
        super::console::require(operator, Power::Settings)?;
        let kind = ChannelKind::parse(kind).map_err(|_| {
            crate::domain::Invalid::new("invalid_kind", "The kind is phone, email, web or chat.")
        })?;
        let normalized = kind.normalize(value)?;
        let note = note.trim();
        if note.chars().count() > 200 {
            return Err(crate::domain::Invalid::new(
                "invalid_note",
                "The note is at most 200 characters.",
            )
            .into());
        }
        let c = OfficialChannel {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            normalized: normalized.clone(),
            display: value.trim().to_owned(),
            note: note.to_owned(),
            added_at: self.now(),
            added_by: operator.email.clone(),
        };
        let fx = Effects::audit(self.event(
            Some(client),
            None,
            operator.actor(),
            "official_channel.added",
            json!({"id": c.id, "kind": kind.as_str(), "value": normalized}),
        ));
        if !self.store.add_official_channel(&c, &fx).await? {
            return Err(ServiceError::Conflict(
                "channel_exists",
                "This channel is already on the list.".into(),
            ));
        }
        Ok(ChannelView {
            id: c.id,
            kind: kind.as_str(),
            value: c.display,
            note: c.note,
        })
    }

    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn remove_channel(
        &self,
        operator: &Operator,
        id: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        super::console::require(operator, Power::Settings)?;
        let fx = Effects::audit(self.event(
            Some(client),
            None,
            operator.actor(),
            "official_channel.removed",
            json!({"id": id}),
        ));
        if self.store.remove_official_channel(id, &fx).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(
                "not_found",
                "No such channel.".into(),
            ))
        }
    }
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// A key shown by its first and last characters.
fn key_hint(key: &str) -> String {
    if key.len() > 12 {
        format!("{}…{}", &key[..6], &key[key.len() - 4..])
    } else {
        key.to_owned()
    }
}

/// "2 days", "5 hours".
fn span(ms: Millis) -> String {
    if ms % DAY == 0 {
        let d = ms / DAY;
        format!("{d} day{}", if d == 1 { "" } else { "s" })
    } else {
        let h = ms / HOUR;
        format!("{h} hour{}", if h == 1 { "" } else { "s" })
    }
}

/// Which part of the timeline an audit event belongs to.
fn event_kind(action: &str, actor: &str) -> &'static str {
    if actor.starts_with("operator:") {
        "operator"
    } else if action.starts_with("api_key.") {
        "api_key"
    } else if action.starts_with("withdrawal") {
        "withdrawal"
    } else if action.starts_with("transfer.") {
        "transfer"
    } else if action.starts_with("deposit.") {
        "deposit"
    } else if actor == "system" {
        "system"
    } else {
        "security"
    }
}

/// An audit event in words: a sentence for the common actions, with the details that
/// matter (asset, amount, destination, TxID, key) appended.
pub(crate) fn describe(action: &str, d: &serde_json::Value) -> String {
    let f = |k: &str| {
        d.get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_default()
    };
    let base = match action {
        "account.registered" => "Account created".to_owned(),
        "account.email_confirmed" => "Email address confirmed".to_owned(),
        "account.frozen" => format!("Account frozen ({})", f("via")),
        "account.secured" => "Secure my account: other sessions ended, keys suspended, withdrawals cancelled and locked".to_owned(),
        "password.changed" => "Password changed".to_owned(),
        "password.reset" => "Password reset with a mailed link".to_owned(),
        "password.reset_requested" => "Password reset link requested".to_owned(),
        "totp.enabled" => "Authenticator app set up".to_owned(),
        "totp.reset" => "Authenticator app reset with a backup code".to_owned(),
        "passkey.added" => format!("Passkey \"{}\" added", f("name")),
        "backup_codes.regenerated" => "New backup codes made".to_owned(),
        "api_key.created" => format!("API key {} created (\"{}\", permissions {}, IP allowlist {})", key_hint(&f("api_key")), f("label"), f("permissions"), if f("ip_allowlist").is_empty() { "none".to_owned() } else { f("ip_allowlist") }),
        "api_key.deleted" => format!("API key {} deleted", key_hint(&f("api_key"))),
        "api_key.deleted_all" => "Every API key deleted".to_owned(),
        "api_key.updated" => format!("API key {} changed", key_hint(&f("api_key"))),
        "api_key.suspended" => format!("API key {} suspended", key_hint(&f("api_key"))),
        "api_key.resumed" => format!("API key {} resumed", key_hint(&f("api_key"))),
        "allowlist.address_added" => format!("Withdrawal address {} ({} on {}) added to the allowlist", f("address"), f("asset"), f("network")),
        "allowlist.address_removed" => "Withdrawal address removed from the allowlist".to_owned(),
        "email.changed" => format!("Email address changed from {} to {}", f("from"), f("to")),
        "anti_phishing_code.set" => "Anti-phishing code set".to_owned(),
        "device.removed" => "Device removed".to_owned(),
        "device.blocked" => "Device removed and blocked".to_owned(),
        "device.trusted" => "Device trusted".to_owned(),
        "sessions.others_ended" => "Every other session signed out".to_owned(),
        "settings.locked" => "Security settings locked".to_owned(),
        "withdrawal.requested" | "withdrawal.released" | "withdrawal.cancelled" | "withdrawal.broadcast" | "withdrawal.confirmed" => {
            let verb = action.trim_start_matches("withdrawal.");
            let mut s = format!("Withdrawal {verb}");
            for (k, label) in [("amount", ""), ("asset", ""), ("network", "on "), ("address", "to "), ("txid", "TxID "), ("state", "state ")] {
                let v = f(k);
                if !v.is_empty() && v != "null" {
                    s.push_str(&format!(" {label}{v}"));
                }
            }
            s
        }
        "transfer.recorded" | "transfer.received" => format!("Internal transfer {} {} ({})", f("amount"), f("asset"), if action.ends_with("received") { "received" } else { "sent" }),
        "deposit.recorded" => format!("Deposit {} {} on {}, TxID {}", f("amount"), f("asset"), f("network"), f("txid")),
        other => other.replace(['.', '_'], " "),
    };
    base
}

/// The audit actions the overview lists as security changes.
const SECURITY_CHANGES: &[&str] = &[
    "account.secured",
    "account.frozen",
    "password.changed",
    "password.reset",
    "totp.enabled",
    "totp.reset",
    "passkey.added",
    "backup_codes.regenerated",
    "api_key.created",
    "api_key.deleted",
    "api_key.deleted_all",
    "allowlist.address_added",
    "allowlist.address_removed",
    "email.changed",
    "anti_phishing_code.set",
    "device.removed",
    "device.blocked",
    "device.trusted",
    "sessions.others_ended",
    "settings.locked",
    "weakening.scheduled",
];

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
