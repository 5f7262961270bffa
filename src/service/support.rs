//! Getting the account back: "forgot password", support access for an owner who cannot
//! sign in, support tickets pre-filled the way the guides write them, recovery requests,
//! and the console's side of both (queues, replies, approval with the two-person rule and
//! the 2-hour minimum, and what an approval does).

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::hasher::Hasher;
use super::key_cache::CacheInvalidator;
use super::notices::Notices;
use super::recovery::PASSWORD_HISTORY;
use super::second_factors::SecondFactors;
use super::throttles::Throttles;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{format_utc, Millis, SharedClock, DAY, MINUTE};
use crate::domain::email::Email;
use crate::domain::operator::{Operator, Power};
use crate::domain::password::{self, NewPassword};
use crate::domain::rules::Rules;
use crate::domain::secret::{
    constant_time_eq, random_token, six_digit_code, token_hash, SecretBox, ServerKey,
};
use crate::domain::support::{
    evidence_type, needs_two_approvals, unfreeze_allowed_at, LinkPurpose, RecoveryKind,
    RecoveryStatus, TicketRequest, TicketStatus, DESCRIPTION_MAX_CHARS, EVIDENCE_MAX_BYTES,
    EVIDENCE_MAX_FILES, EVIDENCE_RETENTION, MESSAGE_MAX_CHARS, RECOVERY_LINK_TTL, RECOVERY_LOCK,
    RESET_LINK_TTL, RESET_LOCK, SUPPORT_ACCESS_TTL,
};
use crate::domain::Invalid;
use crate::store::{
    Account, ActionCode, Effects, EvidenceRecord, PasswordLink, RecoveryRecord, SharedStore,
    Ticket, TicketMessage, WithdrawalLock,
};

const SUPPORT_CODE: &str = "support_access";
/// Audit actions a ticket lists as "actions already taken".
const TAKEN: &[(&str, &str)] = &[
    ("account.frozen", "Froze the account"),
    ("password.changed", "Changed the password"),
    ("password.reset", "Reset the password"),
    ("api_key.deleted", "Deleted an API key"),
    ("api_key.deleted_all", "Deleted every API key"),
    ("sessions.others_ended", "Signed out every other session"),
    ("device.removed", "Removed a device"),
    ("device.blocked", "Removed and blocked a device"),
    ("totp.reset", "Reset the authenticator app"),
    ("totp.enabled", "Set up an authenticator app"),
    ("passkey.added", "Added a passkey"),
    ("backup_codes.regenerated", "Made new backup codes"),
];

/// Support, tickets, recoveries and password links.
pub struct Support {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) key: ServerKey,
    pub(crate) rules: Rules,
    pub(crate) public_url: String,
    pub(crate) hasher: Arc<Hasher>,
    pub(crate) throttles: Arc<Throttles>,
    pub(crate) notices: Arc<Notices>,
    pub(crate) second_factors: Arc<SecondFactors>,
    pub(crate) invalidator: Arc<CacheInvalidator>,
    /// Seals identity evidence at rest.
    pub(crate) secret_box: Arc<SecretBox>,
    /// Proves a passkey for a reset link.
    pub(crate) passkeys: Arc<super::passkeys::Passkeys>,
}

impl Clocked for Support {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

/// What proves the second factor of a reset: nothing (an account without one), a code
/// (authenticator or backup code), or a passkey ceremony.
pub enum ResetProof<'a> {
    None,
    Code(&'a str),
    Passkey {
        ceremony_id: &'a str,
        credential: &'a webauthn_rs::prelude::PublicKeyCredential,
    },
}

/// What the reset page needs to know about a link before the form is sent.
#[derive(Debug, Clone, Serialize)]
pub struct LinkState {
    pub purpose: LinkPurpose,
    /// The account has a second factor: the form asks for a code.
    pub needs_code: bool,
    /// The account has a passkey: the page offers "Use my passkey" (the only way when it
    /// has no authenticator app or backup codes).
    pub has_passkey: bool,
    pub passkey_only: bool,
    pub expires_at: Millis,
}

/// A sign-in the owner can point at in a ticket.
#[derive(Debug, Clone, Serialize)]
pub struct DraftSignIn {
    pub id: String,
    pub at: Millis,
    pub success: bool,
    pub ip: String,
    pub place: String,
    pub device: String,
    /// From a device first seen in the last 30 days and not trusted.
    pub unfamiliar: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DraftDevice {
    pub id: String,
    pub device: String,
    pub place: String,
    pub first_seen: Millis,
    pub last_active: Millis,
    pub trusted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TakenAction {
    pub at: Millis,
    pub action: String,
    pub what: String,
}

/// A ticket pre-filled the way the guides write one.
#[derive(Debug, Clone, Serialize)]
pub struct TicketDraft {
    pub uid: String,
    pub email: String,
    pub frozen_at: Option<Millis>,
    pub sign_ins: Vec<DraftSignIn>,
    pub devices: Vec<DraftDevice>,
    pub actions_taken: Vec<TakenAction>,
    pub requests: Vec<TicketRequest>,
}

/// What the owner files.
#[derive(Debug, Clone, Default)]
pub struct NewTicket {
    pub noticed_at: Option<Millis>,
    pub description: String,
    pub sign_in_ids: Vec<String>,
    pub device_ids: Vec<String>,
    pub requests: Vec<TicketRequest>,
}

/// What a recovery request becomes after a reviewer acts.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub status: RecoveryStatus,
    pub message: String,
}

fn not_found(what: &str) -> ServiceError {
    ServiceError::NotFound("not_found", format!("No such {what}."))
}

fn bounded(text: &str, max: usize, code: &'static str, what: &str) -> ServiceResult<String> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > max {
        return Err(Invalid::new(code, format!("Write {what} (1 to {max} characters).")).into());
    }
    Ok(t.to_owned())
}

fn place(city: &Option<String>, country: &Option<String>) -> String {
    match (city, country) {
        (Some(c), Some(k)) => format!("{c}, {k}"),
        (None, Some(k)) => k.clone(),
        (Some(c), None) => c.clone(),
        (None, None) => "unknown place".into(),
    }
}

impl Support {
    fn link(&self, path: &str, token: &str) -> String {
        format!("{}/{path}/{token}", self.public_url.trim_end_matches('/'))
    }

    fn lock(&self, account_id: &str, reason: &str, ttl: Millis) -> WithdrawalLock {
        let now = self.now();
        WithdrawalLock {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account_id.to_owned(),
            reason: reason.into(),
            created_at: now,
            until: now + ttl,
        }
    }

    /// Audits a request for an address that has no (confirmed) account, naming the address
    /// only by its keyed MAC: the same one write a known address costs, so the answer's
    /// timing says nothing either.
    async fn record_unknown_address(
        &self,
        email: &Email,
        action: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        let fx = Effects::audit(self.event(
            Some(client),
            None,
            "anonymous".into(),
            action,
            json!({"address_mac": self.key.mac("unknown-address", email.as_str()), "account": "none"}),
        ));
        self.store.append_audit(&fx).await?;
        Ok(())
    }

    async fn account(&self, id: &str) -> ServiceResult<Account> {
        self.store
            .account_by_id(id)
            .await?
            .ok_or_else(|| not_found("account"))
    }

    async fn new_password_hash(&self, account: &Account, new: &str) -> ServiceResult<String> {
        let email = Email::parse(&account.email)?;
        let new_password = NewPassword::parse(new, &email, &self.rules)?;
        let history = self
            .store
            .password_history(&account.id, PASSWORD_HISTORY)
            .await?;
        let mut hashes = history;
        hashes.push(account.password_hash.clone());
        let candidate = new.to_owned();
        if self
            .hasher
            .argon2(move || hashes.iter().any(|h| password::verify(&candidate, h)))
            .await?
        {
            return Err(Invalid::new(
                "password_reused",
                format!("Choose a password you have not used for this account before (the last {PASSWORD_HISTORY} are remembered)."),
            )
            .into());
        }
        Ok(self
            .hasher
            .argon2(move || password::hash(new_password.expose()))
            .await??)
    }

    // ---------------------------------------------------------------------------------
    // Forgot password

    /// Mails a single-use reset link (30 minutes) to an existing, confirmed account. The
    /// answer and the work are the same for every address; throttled per address and IP.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn request_password_reset(&self, email: &str, client: &Client) -> ServiceResult<()> {
        let email = Email::parse(email)?;
        let address_key = format!("reset:{}", self.key.mac("reset-address", email.as_str()));
        self.throttles
            .throttle(&[
                (address_key, self.throttles.account_policy()),
                (format!("ip:{}", client.ip), self.throttles.ip_policy()),
            ])
            .await?;
        let account = self
            .store
            .account_by_email(email.as_str())
            .await?
            .filter(|a| a.email_confirmed_at.is_some());
        let token = random_token();
        let Some(account) = account else {
            // One write either way, so an unknown address takes as long as a known one.
            return self
                .record_unknown_address(&email, "password.reset_requested", client)
                .await;
        };
        let now = self.now();
        let link = PasswordLink {
            token_hash: token_hash(&token),
            account_id: account.id.clone(),
            purpose: LinkPurpose::Reset,
            expires_at: now + RESET_LINK_TTL,
            used_at: None,
            created_at: now,
        };
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), "anonymous".into(), "password.reset_requested", json!({})))
            .with_mail(self.notices.code_notice(
                &account,
                "Reset your password",
                &format!(
                    "Someone asked to reset the password of your account from {} ({}).\n\n\
                     To choose a new password, open this link within 30 minutes (it works once):\n{}\n\n\
                     If your account has a second factor, you will need it. After the reset every session ends and withdrawals are locked for 24 hours.\n\
                     If you did not ask for this, ignore this mail: your password stays as it is.",
                    client.device.summary(),
                    client.ip,
                    self.link("reset-password", &token)
                ),
            ));
        self.store.put_password_link(&link, &fx).await?;
        Ok(())
    }

    async fn usable_link(&self, token: &str) -> ServiceResult<(PasswordLink, Account)> {
        let invalid = || {
            ServiceError::NotFound(
                "reset_link_invalid",
                "This link is not valid or was already used. Ask for a new one.".into(),
            )
        };
        if token.is_empty() || token.len() > 128 {
            return Err(invalid());
        }
        let link = self
            .store
            .password_link(&token_hash(token))
            .await?
            .ok_or_else(invalid)?;
        if link.used_at.is_some() {
            return Err(invalid());
        }
        if self.now() >= link.expires_at {
            return Err(ServiceError::Forbidden(
                "reset_link_expired",
                "This link has expired. Ask for a new one.".into(),
            ));
        }
        let account = self.account(&link.account_id).await?;
        Ok((link, account))
    }

    /// Starts the passkey ceremony that proves the second factor of a reset.
    pub async fn reset_passkey_options(
        &self,
        token: &str,
    ) -> ServiceResult<super::passkeys::Ceremony<webauthn_rs::prelude::RequestChallengeResponse>>
    {
        let (link, account) = self.usable_link(token).await?;
        self.passkeys
            .passkey_link_start(&account, &format!("reset:{}", link.token_hash))
            .await
    }

    /// What the page should ask for on this link.
    pub async fn link_state(&self, token: &str) -> ServiceResult<LinkState> {
        let (link, account) = self.usable_link(token).await?;
        let f = self.second_factors.factors(&account.id).await?;
        let codes = f.totp || f.backup_codes_left > 0;
        Ok(LinkState {
            purpose: link.purpose,
            needs_code: link.purpose == LinkPurpose::Reset && codes,
            has_passkey: link.purpose == LinkPurpose::Reset && f.passkeys > 0,
            passkey_only: link.purpose == LinkPurpose::Reset && !codes && f.passkeys > 0,
            expires_at: link.expires_at,
        })
    }

    /// Sets a new password from a reset link: the second factor when one is enrolled, the
    /// password rules, every session ended, withdrawals locked 24 h, the owner mailed. A
    /// frozen account stays frozen.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn complete_password_reset(
        &self,
        token: &str,
        new_password: &str,
        proof: ResetProof<'_>,
        client: &Client,
    ) -> ServiceResult<()> {
        let (link, account) = self.usable_link(token).await?;
        if link.purpose != LinkPurpose::Reset {
            return Err(ServiceError::NotFound(
                "reset_link_invalid",
                "This link is not valid or was already used. Ask for a new one.".into(),
            ));
        }
        if let Some(lock) = self.store.settings_lock(&account.id).await? {
            if lock.active(self.now()) {
                return Err(super::step_up::settings_locked(lock.until));
            }
        }
        let factors = self.second_factors.factors(&account.id).await?;
        let codes = factors.totp || factors.backup_codes_left > 0;
        if let (
            ResetProof::Passkey {
                ceremony_id,
                credential,
            },
            true,
        ) = (&proof, factors.passkeys > 0)
        {
            self.passkeys
                .passkey_link_verify(
                    &account,
                    &format!("reset:{}", link.token_hash),
                    ceremony_id,
                    credential,
                    client,
                )
                .await?;
        } else if codes || factors.passkeys > 0 {
            let key = format!("reset-factor:{}", account.id);
            let code = match proof {
                ResetProof::Code(c) => Some(c),
                _ => None,
            };
            let Some(code) = code.map(str::trim).filter(|c| !c.is_empty() && codes) else {
                return Err(ServiceError::Forbidden(
                    "second_factor_required",
                    if codes {
                        "This account has a second factor: enter a code from your authenticator app or a backup code."
                    } else {
                        "This account is protected by a passkey: prove it with the passkey (the page's \"Use my passkey\" button)."
                    }
                    .into(),
                ));
            };
            self.throttles
                .throttle(&[(key.clone(), self.throttles.account_policy())])
                .await?;
            if self
                .second_factors
                .check_second_factor_code(&account, code)
                .await?
                .is_none()
            {
                let fx = Effects::audit(self.event(
                    Some(client),
                    Some(&account.id),
                    "anonymous".into(),
                    "password.reset_failed",
                    json!({"reason": "wrong_code"}),
                ));
                self.store.append_audit(&fx).await?;
                return Err(ServiceError::InvalidCode { attempts_left: 0 });
            }
            self.store.throttle_clear(&key).await?;
        }
        let hash = self.new_password_hash(&account, new_password).await?;
        let now = self.now();
        let lock = self.lock(&account.id, "password_reset", RESET_LOCK);
        let frozen = if account.frozen_at.is_some() {
            "\n\nYour account stays frozen: only a recovery review reopens it."
        } else {
            ""
        };
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), "anonymous".into(), "password.reset", json!({"withdrawals_locked_until": lock.until})))
            .with_mail(self.notices.notice(
                &account,
                "Your password was reset",
                &format!(
                    "Your password was reset at {} from {} ({}) with a link mailed to you. Every session was ended, and withdrawals are locked until {}.{frozen}\n\n\
                     If this was not you, freeze your account now.",
                    format_utc(now),
                    client.device.summary(),
                    client.ip,
                    format_utc(lock.until)
                ),
            ));
        if !self
            .store
            .set_password_by_link(&link.token_hash, &account.id, &hash, Some(&lock), now, &fx)
            .await?
        {
            return Err(ServiceError::NotFound(
                "reset_link_invalid",
                "This link is not valid or was already used. Ask for a new one.".into(),
            ));
        }
        self.invalidator
            .invalidate_keys(&format!("account:{}", account.id))
            .await?;
        Ok(())
    }

    /// Sets the new password from an approved recovery's link. The second factor comes
    /// next: until one is enrolled, the account can do nothing else.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn complete_recovery(
        &self,
        token: &str,
        new_password: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        let (link, account) = self.usable_link(token).await?;
        if link.purpose != LinkPurpose::Recovery {
            return Err(ServiceError::NotFound(
                "reset_link_invalid",
                "This link is not valid or was already used.".into(),
            ));
        }
        let hash = self.new_password_hash(&account, new_password).await?;
        let now = self.now();
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(&account),
            "recovery.password_set",
            json!({}),
        ))
        .with_mail(self.notices.notice(
            &account,
            "Recovery: your new password is set",
            &format!(
                "A new password was set at {} from {} ({}) with your recovery link. Next, sign in and set up an authenticator app or a passkey: your account can do nothing else until you do.\n\n\
                 If this was not you, freeze your account now.",
                format_utc(now),
                client.device.summary(),
                client.ip
            ),
        ));
        if !self
            .store
            .set_password_by_link(&link.token_hash, &account.id, &hash, None, now, &fx)
            .await?
        {
            return Err(ServiceError::NotFound(
                "reset_link_invalid",
                "This link is not valid or was already used.".into(),
            ));
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // Support access (an owner who cannot sign in)

    /// Mails a 6-digit code that opens support access. Same answer for every address.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn send_support_code(&self, email: &str, client: &Client) -> ServiceResult<()> {
        let email = Email::parse(email)?;
        self.throttles
            .throttle(&[
                (
                    format!(
                        "support:{}",
                        self.key.mac("support-address", email.as_str())
                    ),
                    self.throttles.account_policy(),
                ),
                (format!("ip:{}", client.ip), self.throttles.ip_policy()),
            ])
            .await?;
        let Some(account) = self
            .store
            .account_by_email(email.as_str())
            .await?
            .filter(|a| a.email_confirmed_at.is_some())
        else {
            // One write either way, so an unknown address takes as long as a known one.
            return self
                .record_unknown_address(&email, "support.code_requested", client)
                .await;
        };
        let code = six_digit_code();
        let now = self.now();
        let c = ActionCode {
            account_id: account.id.clone(),
            purpose: SUPPORT_CODE.into(),
            code_mac: self.key.mac(
                "action-code",
                &format!("{}:{SUPPORT_CODE}:{code}", account.id),
            ),
            expires_at: now + self.rules.confirm_code_ttl_minutes * MINUTE,
            attempts: 0,
            created_at: now,
        };
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), "anonymous".into(), "support.code_sent", json!({})))
            .with_mail(self.notices.code_notice(
                &account,
                "Your code to contact support",
                &format!(
                    "Your code to contact support is {code}. It is valid for {} minutes.\n\n\
                     Requested from {} ({}). Support never asks for this code, your password or your authenticator codes.",
                    self.rules.confirm_code_ttl_minutes,
                    client.device.summary(),
                    client.ip
                ),
            ));
        self.store.put_action_code(&c, &fx).await?;
        Ok(())
    }

    /// Checks the mailed code and opens support access (1 hour); returns its token.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn open_support_access(
        &self,
        email: &str,
        code: &str,
        client: &Client,
    ) -> ServiceResult<String> {
        let email = Email::parse(email)?;
        self.throttles
            .throttle(&[(format!("ip:{}", client.ip), self.throttles.ip_policy())])
            .await?;
        let wrong = || ServiceError::InvalidCode { attempts_left: 0 };
        let account = self
            .store
            .account_by_email(email.as_str())
            .await?
            .ok_or_else(wrong)?;
        let max = self.rules.confirm_code_max_attempts;
        let stored = self
            .store
            .action_code(&account.id, SUPPORT_CODE)
            .await?
            .ok_or_else(wrong)?;
        if stored.attempts >= max {
            return Err(ServiceError::TooManyAttempts { retry_after_ms: 0 });
        }
        if self.now() >= stored.expires_at {
            return Err(ServiceError::CodeExpired);
        }
        let given = self.key.mac(
            "action-code",
            &format!("{}:{SUPPORT_CODE}:{}", account.id, code.trim()),
        );
        if !constant_time_eq(&given, &stored.code_mac) {
            let n = self
                .store
                .action_code_failed(&account.id, SUPPORT_CODE)
                .await?;
            return Err(ServiceError::InvalidCode {
                attempts_left: (max - n).max(0),
            });
        }
        let token = random_token();
        let now = self.now();
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            "anonymous".into(),
            "support.access_opened",
            json!({}),
        ));
        self.store
            .put_support_access(
                &token_hash(&token),
                &account.id,
                now + SUPPORT_ACCESS_TTL,
                now,
                &fx,
            )
            .await?;
        Ok(token)
    }

    /// The account behind a support-access token.
    pub async fn support_account(&self, token: &str) -> ServiceResult<Account> {
        if token.is_empty() || token.len() > 128 {
            return Err(ServiceError::Unauthenticated);
        }
        let id = self
            .store
            .support_access(&token_hash(token), self.now())
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        self.account(&id).await
    }

    // ---------------------------------------------------------------------------------
    // Tickets, the owner's side

    /// The ticket as the guides write it: UID, sign-ins and devices to point at, the
    /// actions already taken (from the audit log), and the requests to tick.
    pub async fn ticket_draft(&self, account: &Account) -> ServiceResult<TicketDraft> {
        let now = self.now();
        let since = now - 30 * DAY;
        let devices = self.store.devices(&account.id, now - 90 * DAY).await?;
        let unfamiliar = |device_id: &Option<String>| {
            device_id
                .as_ref()
                .and_then(|id| devices.iter().find(|d| &d.id == id))
                .is_none_or(|d| d.trusted_at.is_none() && d.first_seen >= since)
        };
        let sign_ins = self
            .store
            .logins(&account.id, 100)
            .await?
            .into_iter()
            .filter(|l| l.at >= since)
            .map(|l| DraftSignIn {
                unfamiliar: unfamiliar(&l.device_id),
                id: l.id,
                at: l.at,
                success: l.success,
                place: place(&l.city, &l.country),
                device: format!("{} on {} ({})", l.browser, l.os, l.model),
                ip: l.ip,
            })
            .collect();
        let actions_taken = self
            .store
            .audit_for_account(&account.id, 500)
            .await?
            .into_iter()
            .filter(|e| e.at >= since)
            .filter_map(|e| {
                TAKEN
                    .iter()
                    .find(|(a, _)| *a == e.action)
                    .map(|(a, what)| TakenAction {
                        at: e.at,
                        action: (*a).to_owned(),
                        what: (*what).to_owned(),
                    })
            })
            .collect();
        Ok(TicketDraft {
            uid: account.uid.clone(),
            email: account.email.clone(),
            frozen_at: account.frozen_at,
            devices: devices
                .iter()
                .map(|d| DraftDevice {
                    id: d.id.clone(),
                    device: format!("{} on {} ({})", d.browser, d.os, d.model),
                    place: place(&d.city, &d.country),
                    first_seen: d.first_seen,
                    last_active: d.last_active,
                    trusted: d.trusted_at.is_some(),
                })
                .collect(),
            sign_ins,
            actions_taken,
            requests: if account.frozen_at.is_some() {
                vec![TicketRequest::FullAudit, TicketRequest::Unfreeze]
            } else {
                vec![TicketRequest::FullAudit, TicketRequest::WithdrawalLock]
            },
        })
    }

    /// Files a ticket. A request to unfreeze a frozen account opens a reactivation
    /// recovery (or joins the open one); a request to lock withdrawals locks them at once
    /// for 48 hours (strengthening needs no wait).
    #[tracing::instrument(level = "info", skip_all, fields(account = %account.id), err(level = "info"))]
    pub async fn file_ticket(
        &self,
        account: &Account,
        new: NewTicket,
        client: &Client,
    ) -> ServiceResult<Ticket> {
        let description = bounded(
            &new.description,
            DESCRIPTION_MAX_CHARS,
            "description_invalid",
            "what happened",
        )?;
        let draft = self.ticket_draft(account).await?;
        let pick = |ids: &[String], known: &[String], what: &str| -> ServiceResult<()> {
            match ids.iter().find(|id| !known.contains(id)) {
                Some(id) => Err(Invalid::new(
                    "unknown_reference",
                    format!("The {what} {id} is not one of this account's (last 30 days)."),
                )
                .into()),
                None => Ok(()),
            }
        };
        let sign_in_ids: Vec<String> = draft.sign_ins.iter().map(|s| s.id.clone()).collect();
        let device_ids: Vec<String> = draft.devices.iter().map(|d| d.id.clone()).collect();
        pick(&new.sign_in_ids, &sign_in_ids, "sign-in")?;
        pick(&new.device_ids, &device_ids, "device")?;
        if new.sign_in_ids.len() > 50 || new.device_ids.len() > 50 {
            return Err(
                Invalid::new("too_many", "Pick at most 50 sign-ins and 50 devices.").into(),
            );
        }
        let mut requests = new.requests.clone();
        requests.dedup();
        let now = self.now();
        let mut recovery = None;
        let mut recovery_id = None;
        if requests.contains(&TicketRequest::Unfreeze) && account.frozen_at.is_some() {
            let open = self
                .store
                .recoveries_of(&account.id)
                .await?
                .into_iter()
                .find(|r| r.status.is_open());
            recovery_id = Some(match open {
                Some(r) => r.id,
                None => {
                    let r = self
                        .new_recovery(account, RecoveryKind::Reactivation, &description)
                        .await?;
                    let id = r.id.clone();
                    recovery = Some(r);
                    id
                }
            });
        }
        let details = json!({
            "uid": account.uid,
            "sign_ins": draft.sign_ins.iter().filter(|s| new.sign_in_ids.contains(&s.id)).collect::<Vec<_>>(),
            "devices": draft.devices.iter().filter(|d| new.device_ids.contains(&d.id)).collect::<Vec<_>>(),
            "actions_taken": draft.actions_taken,
        });
        let ticket = Ticket {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account.id.clone(),
            status: TicketStatus::Open,
            noticed_at: new.noticed_at,
            description: description.clone(),
            details,
            requests: requests.clone(),
            recovery_id: recovery_id.clone(),
            created_at: now,
            updated_at: now,
        };
        let first = TicketMessage {
            id: uuid::Uuid::new_v4().to_string(),
            ticket_id: ticket.id.clone(),
            author: "owner".into(),
            body: description,
            internal: false,
            created_at: now,
        };
        let mut fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "support.ticket_filed",
            json!({"ticket_id": ticket.id, "requests": requests.iter().map(|r| r.as_str()).collect::<Vec<_>>(), "recovery_id": recovery_id}),
        ))
        .with_mail(self.notices.notice(
            account,
            "We received your support ticket",
            &format!(
                "Your ticket was filed at {}. A person from support will answer it in the Security Center's support page, and you will get a mail for every reply.\n\n\
                 Support never asks for your password, your authenticator codes or your backup codes.",
                format_utc(now)
            ),
        ));
        if let Some(r) = &recovery {
            fx.audit.push(self.event(
                Some(client),
                Some(&account.id),
                Self::account_actor(account),
                "recovery.requested",
                json!({"request_id": r.id, "kind": r.kind.as_str(), "via": "ticket"}),
            ));
        }
        self.store
            .create_ticket(&ticket, &first, recovery.as_ref(), &fx)
            .await?;
        if requests.contains(&TicketRequest::WithdrawalLock) {
            let lock = self.lock(&account.id, "owner_request", RECOVERY_LOCK);
            self.store
                .add_withdrawal_lock(
                    &lock,
                    &Effects::audit(self.event(
                        Some(client),
                        Some(&account.id),
                        Self::account_actor(account),
                        "withdrawals.locked",
                        json!({"until": lock.until, "via": "ticket"}),
                    )),
                )
                .await?;
            self.invalidator
                .invalidate_keys(&format!("account:{}", account.id))
                .await?;
        }
        Ok(ticket)
    }

    pub async fn owner_tickets(&self, account: &Account) -> ServiceResult<Vec<Ticket>> {
        Ok(self.store.tickets_of(&account.id).await?)
    }

    /// A ticket of this account with the messages its owner may read (never internal
    /// notes).
    pub async fn owner_ticket(
        &self,
        account: &Account,
        id: &str,
    ) -> ServiceResult<(Ticket, Vec<TicketMessage>)> {
        let ticket = self
            .store
            .ticket(id)
            .await?
            .filter(|t| t.account_id == account.id)
            .ok_or_else(|| not_found("ticket"))?;
        let messages = self
            .store
            .ticket_messages(&ticket.id)
            .await?
            .into_iter()
            .filter(|m| !m.internal)
            .collect();
        Ok((ticket, messages))
    }

    #[tracing::instrument(level = "info", skip_all, fields(account = %account.id), err(level = "info"))]
    pub async fn owner_reply(
        &self,
        account: &Account,
        id: &str,
        body: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        let (ticket, _) = self.owner_ticket(account, id).await?;
        let body = bounded(body, MESSAGE_MAX_CHARS, "message_invalid", "your message")?;
        let m = TicketMessage {
            id: uuid::Uuid::new_v4().to_string(),
            ticket_id: ticket.id.clone(),
            author: "owner".into(),
            body,
            internal: false,
            created_at: self.now(),
        };
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "support.owner_replied",
            json!({"ticket_id": ticket.id}),
        ));
        self.store
            .add_ticket_message(&m, TicketStatus::Open, &fx)
            .await?;
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // Recovery requests, the owner's side

    async fn new_recovery(
        &self,
        account: &Account,
        kind: RecoveryKind,
        what_happened: &str,
    ) -> ServiceResult<RecoveryRecord> {
        let now = self.now();
        let until = account.frozen_at.unwrap_or(now);
        let events = self.store.audit_for_account(&account.id, 1000).await?;
        Ok(RecoveryRecord {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account.id.clone(),
            kind,
            reason: what_happened.to_owned(),
            status: RecoveryStatus::Submitted,
            created_at: now,
            frozen_at: account.frozen_at,
            needs_two: needs_two_approvals(events.iter().map(|e| (e.at, e.action.as_str())), until),
            first_approver: None,
            decided_by: None,
            decision_reason: None,
            decided_at: None,
        })
    }

    /// Asks for a reviewed recovery: reopening a frozen account, or a lost second factor.
    /// One open request per account.
    #[tracing::instrument(level = "info", skip_all, fields(account = %account.id), err(level = "info"))]
    pub async fn request_recovery(
        &self,
        account: &Account,
        kind: RecoveryKind,
        what_happened: &str,
        client: &Client,
    ) -> ServiceResult<RecoveryRecord> {
        let what = bounded(
            what_happened,
            DESCRIPTION_MAX_CHARS,
            "description_invalid",
            "what happened",
        )?;
        if kind == RecoveryKind::Reactivation && account.frozen_at.is_none() {
            return Err(ServiceError::Conflict(
                "not_frozen",
                "This account is not frozen; there is nothing to reopen.".into(),
            ));
        }
        if self
            .store
            .recoveries_of(&account.id)
            .await?
            .iter()
            .any(|r| r.status.is_open())
        {
            return Err(ServiceError::Conflict(
                "recovery_open",
                "A recovery request for this account is already waiting for review.".into(),
            ));
        }
        let r = self.new_recovery(account, kind, &what).await?;
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "recovery.requested",
            json!({"request_id": r.id, "kind": kind.as_str()}),
        ))
        .with_mail(self.notices.notice(
            account,
            "Your recovery request was received",
            &format!(
                "Your request to {} was received at {}. A person from support reviews it; withdrawals stay locked while it is under review, and you will get a mail when it is decided.",
                match kind {
                    RecoveryKind::Reactivation => "reopen your frozen account",
                    RecoveryKind::SecondFactorReset => "reset your second factor",
                },
                format_utc(r.created_at)
            ),
        ));
        self.store.add_recovery(&r, &fx).await?;
        Ok(r)
    }

    pub async fn owner_recoveries(&self, account: &Account) -> ServiceResult<Vec<RecoveryRecord>> {
        Ok(self.store.recoveries_of(&account.id).await?)
    }

    /// Attaches identity evidence to an open request of this account: JPEG, PNG or PDF
    /// (recognised by its bytes), at most 5 MiB and 3 files, sealed at rest.
    #[tracing::instrument(level = "info", skip_all, fields(account = %account.id), err(level = "info"))]
    pub async fn add_evidence(
        &self,
        account: &Account,
        recovery_id: &str,
        declared_type: &str,
        bytes: &[u8],
        client: &Client,
    ) -> ServiceResult<EvidenceRecord> {
        let r = self
            .store
            .recovery(recovery_id)
            .await?
            .filter(|r| r.account_id == account.id)
            .ok_or_else(|| not_found("recovery request"))?;
        if !r.status.is_open() {
            return Err(already_decided());
        }
        if bytes.is_empty() || bytes.len() > EVIDENCE_MAX_BYTES {
            return Err(Invalid::new(
                "evidence_size",
                "A file of evidence is at most 5 MiB (and not empty).",
            )
            .into());
        }
        let Some(content_type) = evidence_type(declared_type, bytes) else {
            return Err(Invalid::new(
                "evidence_type",
                "Evidence must be a JPEG or PNG picture or a PDF, sent with its own type.",
            )
            .into());
        };
        let existing = self.store.evidence_of(&r.id).await?;
        let n = existing.iter().map(|e| e.n).max().unwrap_or(0) + 1;
        if existing.len() as i64 >= EVIDENCE_MAX_FILES {
            return Err(ServiceError::Conflict(
                "evidence_full",
                format!("At most {EVIDENCE_MAX_FILES} files per request."),
            ));
        }
        let sealed = self
            .secret_box
            .seal(bytes, &format!("evidence:{}:{n}", r.id))?;
        let e = EvidenceRecord {
            recovery_id: r.id.clone(),
            n,
            content_type: content_type.to_owned(),
            size_bytes: bytes.len() as i64,
            created_at: self.now(),
        };
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "recovery.evidence_added",
            json!({"request_id": r.id, "n": n, "type": content_type, "bytes": bytes.len()}),
        ));
        match self.store.add_evidence(&e, &sealed, &fx).await {
            Ok(()) => Ok(e),
            Err(crate::store::StoreError::Conflict(_)) => Err(ServiceError::Conflict(
                "evidence_full",
                "Another file was attached at the same time; try again.".into(),
            )),
            Err(err) => Err(err.into()),
        }
    }

    /// The evidence of a request, listed for its owner or a reviewer.
    pub async fn evidence_of(&self, recovery_id: &str) -> ServiceResult<Vec<EvidenceRecord>> {
        Ok(self.store.evidence_of(recovery_id).await?)
    }

    /// One file of evidence, opened for a reviewer (audited).
    #[tracing::instrument(level = "info", skip_all, fields(operator = %operator.id), err(level = "info"))]
    pub async fn evidence_file(
        &self,
        operator: &Operator,
        recovery_id: &str,
        n: i64,
        client: &Client,
    ) -> ServiceResult<(String, Vec<u8>)> {
        let (r, account) = self.console_recovery(operator, recovery_id).await?;
        let (content_type, sealed) = self
            .store
            .evidence_file(&r.id, n)
            .await?
            .ok_or_else(|| not_found("file"))?;
        let bytes = self
            .secret_box
            .open(&sealed, &format!("evidence:{}:{n}", r.id))?;
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            operator.actor(),
            "recovery.evidence_viewed",
            json!({"request_id": r.id, "n": n}),
        ));
        self.store.append_audit(&fx).await?;
        Ok((content_type, bytes))
    }

    /// Deletes the evidence of requests decided more than 30 days ago (the timed job).
    #[tracing::instrument(level = "debug", skip_all, err(level = "info"))]
    pub async fn delete_expired_evidence(&self) -> ServiceResult<usize> {
        let due = self
            .store
            .evidence_due(self.now() - EVIDENCE_RETENTION, 100)
            .await?;
        let mut deleted = 0;
        for (recovery_id, account_id) in due {
            let fx = Effects::audit(self.event(
                None,
                Some(&account_id),
                "system".into(),
                "recovery.evidence_deleted",
                json!({"request_id": recovery_id, "retention_days": EVIDENCE_RETENTION / crate::clock::DAY}),
            ));
            deleted += self.store.delete_evidence(&recovery_id, &fx).await? as usize;
        }
        Ok(deleted)
    }

    // ---------------------------------------------------------------------------------
    // The console's side

    pub async fn ticket_queue(
        &self,
        operator: &Operator,
        status: Option<TicketStatus>,
    ) -> ServiceResult<Vec<Ticket>> {
        super::console::require(operator, Power::Tickets)?;
        Ok(self.store.ticket_queue(status, 200).await?)
    }

    /// A ticket with every message (internal notes too) and its account.
    pub async fn console_ticket(
        &self,
        operator: &Operator,
        id: &str,
    ) -> ServiceResult<(Ticket, Vec<TicketMessage>, Account)> {
        super::console::require(operator, Power::Tickets)?;
        let ticket = self
            .store
            .ticket(id)
            .await?
            .ok_or_else(|| not_found("ticket"))?;
        let messages = self.store.ticket_messages(id).await?;
        let account = self.account(&ticket.account_id).await?;
        Ok((ticket, messages, account))
    }

    /// Replies to a ticket; the owner is mailed (not for internal notes, which the owner
    /// never sees).
    #[tracing::instrument(level = "info", skip_all, fields(operator = %operator.id), err(level = "info"))]
    pub async fn operator_reply(
        &self,
        operator: &Operator,
        id: &str,
        body: &str,
        internal: bool,
        client: &Client,
    ) -> ServiceResult<()> {
        let (ticket, _, account) = self.console_ticket(operator, id).await?;
        let body = bounded(body, MESSAGE_MAX_CHARS, "message_invalid", "the reply")?;
        let m = TicketMessage {
            id: uuid::Uuid::new_v4().to_string(),
            ticket_id: ticket.id.clone(),
            author: operator.actor(),
            body: body.clone(),
            internal,
            created_at: self.now(),
        };
        let mut fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            operator.actor(),
            if internal {
                "support.note_added"
            } else {
                "support.replied"
            },
            json!({"ticket_id": ticket.id}),
        ));
        let status = if internal {
            ticket.status
        } else {
            fx = fx.with_mail(self.notices.notice(
                &account,
                "Support replied to your ticket",
                &format!(
                    "Support replied to your ticket:\n\n{body}\n\n\
                     Read and answer it on the support page of the Security Center. Support never asks for your password or codes."
                ),
            ));
            TicketStatus::Answered
        };
        self.store.add_ticket_message(&m, status, &fx).await?;
        Ok(())
    }

    #[tracing::instrument(level = "info", skip_all, fields(operator = %operator.id), err(level = "info"))]
    pub async fn close_ticket(
        &self,
        operator: &Operator,
        id: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        let (ticket, _, account) = self.console_ticket(operator, id).await?;
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            operator.actor(),
            "support.ticket_closed",
            json!({"ticket_id": ticket.id}),
        ));
        self.store
            .set_ticket_status(&ticket.id, TicketStatus::Closed, self.now(), &fx)
            .await?;
        Ok(())
    }

    pub async fn recovery_queue(
        &self,
        operator: &Operator,
        status: Option<RecoveryStatus>,
    ) -> ServiceResult<Vec<RecoveryRecord>> {
        super::console::require(operator, Power::Recoveries)?;
        Ok(self.store.recovery_queue(status, 200).await?)
    }

    pub async fn console_recovery(
        &self,
        operator: &Operator,
        id: &str,
    ) -> ServiceResult<(RecoveryRecord, Account)> {
        super::console::require(operator, Power::Recoveries)?;
        let r = self
            .store
            .recovery(id)
            .await?
            .ok_or_else(|| not_found("recovery request"))?;
        let account = self.account(&r.account_id).await?;
        Ok((r, account))
    }

    /// Rejects a recovery request; the owner is mailed the reason.
    #[tracing::instrument(level = "info", skip_all, fields(operator = %operator.id), err(level = "info"))]
    pub async fn reject(
        &self,
        operator: &Operator,
        id: &str,
        reason: &str,
        client: &Client,
    ) -> ServiceResult<Decision> {
        let (r, account) = self.console_recovery(operator, id).await?;
        let reason = bounded(
            reason,
            2000,
            "reason_required",
            "the reason (the owner is told it)",
        )?;
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            operator.actor(),
            "recovery.rejected",
            json!({"request_id": r.id, "reason": reason}),
        ))
        .with_mail(self.notices.notice(
            &account,
            "Support declined your recovery request",
            &format!("Support declined your recovery request: {reason}\n\nYou can answer on the support page, or file a new request with more detail."),
        ));
        if !self
            .store
            .reject_recovery(&r.id, &operator.actor(), &reason, self.now(), &fx)
            .await?
        {
            return Err(already_decided());
        }
        Ok(Decision {
            status: RecoveryStatus::Rejected,
            message: "Rejected; the owner was told the reason.".into(),
        })
    }

    /// Approves a recovery request. A reactivation waits at least `unfreeze_min_minutes`
    /// after the freeze; a request for an account with a key, allowlist or email change or
    /// a withdrawal in the week before needs two different reviewers. Approval lifts the
    /// freeze, deletes every key, ends every session, removes every second factor, locks
    /// withdrawals for 48 hours, and mails the owner a link to set a new password; a new
    /// second factor comes next.
    #[tracing::instrument(level = "info", skip_all, fields(operator = %operator.id), err(level = "info"))]
    pub async fn approve(
        &self,
        operator: &Operator,
        id: &str,
        reason: &str,
        client: &Client,
    ) -> ServiceResult<Decision> {
        let (r, account) = self.console_recovery(operator, id).await?;
        let reason = bounded(
            reason,
            2000,
            "reason_required",
            "the reason (the owner is told it)",
        )?;
        if !r.status.is_open() {
            return Err(already_decided());
        }
        let now = self.now();
        if let Some(frozen_at) = account.frozen_at {
            let allowed = unfreeze_allowed_at(frozen_at, self.rules.unfreeze_min_minutes);
            if now < allowed {
                return Err(ServiceError::Conflict(
                    "too_soon",
                    format!(
                        "A frozen account is reopened no sooner than {} minutes after the freeze: approve from {}.",
                        self.rules.unfreeze_min_minutes,
                        format_utc(allowed)
                    ),
                ));
            }
        }
        let until = account.frozen_at.or(r.frozen_at).unwrap_or(r.created_at);
        let events = self.store.audit_for_account(&account.id, 1000).await?;
        let needs_two = r.needs_two
            || needs_two_approvals(events.iter().map(|e| (e.at, e.action.as_str())), until);
        if needs_two && r.status == RecoveryStatus::Submitted {
            let fx = Effects::audit(self.event(
                Some(client),
                Some(&account.id),
                operator.actor(),
                "recovery.first_approval",
                json!({"request_id": r.id, "reason": reason}),
            ));
            if !self
                .store
                .first_approval(&r.id, &operator.actor(), &fx)
                .await?
            {
                return Err(already_decided());
            }
            return Ok(Decision {
                status: RecoveryStatus::AwaitingSecondApproval,
                message: "First approval recorded. The account changed keys, allowlist, email or withdrawals in the week before: a second reviewer must approve too.".into(),
            });
        }
        if r.status == RecoveryStatus::AwaitingSecondApproval
            && r.first_approver.as_deref() == Some(operator.actor().as_str())
        {
            return Err(ServiceError::Forbidden(
                "second_approver_required",
                "You gave the first approval; a different reviewer must give the second.".into(),
            ));
        }
        let token = random_token();
        let link = PasswordLink {
            token_hash: token_hash(&token),
            account_id: account.id.clone(),
            purpose: LinkPurpose::Recovery,
            expires_at: now + RECOVERY_LINK_TTL,
            used_at: None,
            created_at: now,
        };
        let lock = self.lock(&account.id, "recovery", RECOVERY_LOCK);
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            operator.actor(),
            "recovery.approved",
            json!({"request_id": r.id, "kind": r.kind.as_str(), "reason": reason, "first_approver": r.first_approver, "withdrawals_locked_until": lock.until}),
        ))
        .with_mail(self.notices.notice(
            &account,
            "Support approved your recovery",
            &format!(
                "Support approved your recovery: {reason}\n\n\
                 What was done: {}every API key was deleted, every session ended, every second factor removed, and withdrawals are locked until {}.\n\
                 We mailed you a separate link to choose a new password; then sign in and set up a new authenticator app or passkey.",
                if r.kind == RecoveryKind::Reactivation { "your account was unfrozen, " } else { "" },
                format_utc(lock.until)
            ),
        ))
        .with_mail(self.notices.code_notice(
            &account,
            "Your recovery link",
            &format!(
                "Choose a new password with this link (it works once, for 72 hours):\n{}\n\n\
                 Then sign in and set up a new authenticator app or passkey: your account can do nothing else until you do.",
                self.link("recover", &token)
            ),
        ));
        if !self
            .store
            .approve_recovery(&r, &operator.actor(), &reason, &lock, &link, now, &fx)
            .await?
        {
            return Err(already_decided());
        }
        self.invalidator
            .invalidate_keys(&format!("account:{}", account.id))
            .await?;
        Ok(Decision {
            status: RecoveryStatus::Approved,
            message: "Approved. The owner was mailed a link to set a new password; keys, sessions and second factors are gone and withdrawals are locked for 48 hours.".into(),
        })
    }
}

/// The refusal for everything but a new second factor after an approved recovery.
pub fn recovery_incomplete() -> ServiceError {
    ServiceError::Forbidden(
        "recovery_incomplete",
        "Finish your recovery first: set up a new authenticator app or passkey in the Security Center.".into(),
    )
}

fn already_decided() -> ServiceError {
    ServiceError::Conflict(
        "already_decided",
        "This recovery request was already decided.".into(),
    )
}
