//! The changes that lock withdrawals, and recovery: password change (with its mailed
//! code), authenticator reset with a backup code, and the request for a reviewed reset
//! when the backup codes are lost too.

use std::sync::Arc;

use serde_json::json;

use super::hasher::Hasher;
use super::key_cache::CacheInvalidator;
use super::notices::Notices;
use super::second_factors::SecondFactors;
use super::step_up::StepUp;
use super::throttles::Throttles;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{format_utc, Millis, SharedClock, HOUR, MINUTE};
use crate::domain::email::Email;
use crate::domain::password::{self, NewPassword};
use crate::domain::rules::Rules;
use crate::domain::secret::{constant_time_eq, normalize_backup_code, six_digit_code, ServerKey};
use crate::domain::step_up::SensitiveAction;
use crate::store::{
    ActionCode, Effects, RecoveryRequest, SessionAuth, SharedStore, WithdrawalLock,
};

pub const PASSWORD_CHANGE_LOCK: Millis = 24 * HOUR;

pub const SECOND_FACTOR_RESET_LOCK: Millis = 48 * HOUR;

/// The last N passwords (the current one included) may not be reused.
pub const PASSWORD_HISTORY: i64 = 5;

/// Password change, authenticator reset and recovery requests.
pub struct Recovery {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) key: ServerKey,
    pub(crate) rules: Rules,
    pub(crate) hasher: Arc<Hasher>,
    pub(crate) throttles: Arc<Throttles>,
    pub(crate) notices: Arc<Notices>,
    pub(crate) second_factors: Arc<SecondFactors>,
    pub(crate) step_up: Arc<StepUp>,
    pub(crate) invalidator: Arc<CacheInvalidator>,
}

impl Clocked for Recovery {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl Recovery {
    /// Mails the code that a password change needs.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn send_password_change_code(
        &self,
        auth: &SessionAuth,
        client: &Client,
    ) -> ServiceResult<()> {
        let account = &auth.account;
        if let Some(existing) = self
            .store
            .action_code(&account.id, "password_change")
            .await?
        {
            if self.now() - existing.created_at < MINUTE {
                return Ok(());
            }
        }
        let code = six_digit_code();
        let c = ActionCode {
            account_id: account.id.clone(),
            purpose: "password_change".into(),
            code_mac: self.key.mac(
                "action-code",
                &format!("{}:password_change:{code}", account.id),
            ),
            expires_at: self.now() + self.rules.confirm_code_ttl_minutes * MINUTE,
            attempts: 0,
            created_at: self.now(),
        };
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "password_change.code_sent", json!({})))
            .with_mail(self.notices.code_notice(
                account,
                "Your code to change your password",
                &format!(
                    "Your password change code is {code}. It is valid for {} minutes.\n\n\
                     Requested from {} ({}). If you did not ask for it, someone is signed in to your account: freeze it now.",
                    self.rules.confirm_code_ttl_minutes,
                    client.device.summary(),
                    client.ip
                ),
            ));
        self.store.put_action_code(&c, &fx).await?;
        Ok(())
    }

    /// Changes the password: current password, a fresh second factor (if enrolled) and the
    /// mailed code (which, with the password, is the whole step-up of an account without a
    /// second factor); ends every other session; locks withdrawals for 24 h.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn change_password(
        &self,
        auth: &SessionAuth,
        current: &str,
        new: &str,
        email_code: &str,
        client: &Client,
    ) -> ServiceResult<u64> {
        let account = &auth.account;
        self.step_up
            .require_step_up(auth, SensitiveAction::ChangePassword)
            .await?;
        let key = format!("pwchange:{}", account.id);
        self.throttles
            .throttle(&[(key.clone(), self.throttles.account_policy())])
            .await?;
        let stored = account.password_hash.clone();
        let attempt = current.to_owned();
        if !self
            .hasher
            .argon2(move || password::verify(&attempt, &stored))
            .await?
        {
            let fx = Effects::audit(self.event(
                Some(client),
                Some(&account.id),
                Self::account_actor(account),
                "password_change.failed",
                json!({"reason": "wrong_current_password"}),
            ));
            self.store.append_audit(&fx).await?;
            return Err(ServiceError::Forbidden(
                "wrong_password",
                "The current password is wrong.".into(),
            ));
        }
        let max = self.rules.confirm_code_max_attempts;
        let Some(code) = self
            .store
            .action_code(&account.id, "password_change")
            .await?
        else {
            return Err(ServiceError::InvalidCode { attempts_left: 0 });
        };
        if code.attempts >= max {
            return Err(ServiceError::TooManyAttempts { retry_after_ms: 0 });
        }
        if self.now() >= code.expires_at {
            return Err(ServiceError::CodeExpired);
        }
        let given = self.key.mac(
            "action-code",
            &format!("{}:password_change:{}", account.id, email_code.trim()),
        );
        if !constant_time_eq(&given, &code.code_mac) {
            let n = self
                .store
                .action_code_failed(&account.id, "password_change")
                .await?;
            return Err(ServiceError::InvalidCode {
                attempts_left: (max - n).max(0),
            });
        }
        let email = Email::parse(&account.email)?;
        let new_password = NewPassword::parse(new, &email, &self.rules)?;
        let history = self
            .store
            .password_history(&account.id, PASSWORD_HISTORY)
            .await?;
        let candidate = new.to_owned();
        let reused = self
            .hasher
            .argon2(move || history.iter().any(|h| password::verify(&candidate, h)))
            .await?;
        if reused {
            return Err(ServiceError::Invalid(crate::domain::Invalid::new(
                "password_reused",
                format!("Choose a password you have not used for this account before (the last {PASSWORD_HISTORY} are remembered)."),
            )));
        }
        let hash = self
            .hasher
            .argon2(move || password::hash(new_password.expose()))
            .await??;
        let now = self.now();
        let lock = WithdrawalLock {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account.id.clone(),
            reason: "password_changed".into(),
            created_at: now,
            until: now + PASSWORD_CHANGE_LOCK,
        };
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "password.changed", json!({"withdrawals_locked_until": lock.until})))
            .with_mail(self.notices.notice(
                account,
                "Your password was changed",
                &format!(
                    "Your password was changed at {} from {} ({}). Every other device was signed out, and withdrawals are locked until {} for your protection.\n\n\
                     If this was not you, freeze your account from the Security Center now.",
                    format_utc(now),
                    client.device.summary(),
                    client.ip,
                    format_utc(lock.until)
                ),
            ));
        let ended = self
            .store
            .change_password(&account.id, &hash, &auth.session.id, &lock, now, &fx)
            .await?;
        // The gateway's cached keys learn of the withdrawal lock on every instance.
        self.invalidator
            .invalidate_keys(&format!("account:{}", account.id))
            .await?;
        self.store.throttle_clear(&key).await?;
        Ok(ended)
    }

    /// Removes the authenticator app at once, proved with a backup code; withdrawals are
    /// locked for 48 h. A new app can then be set up.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn reset_totp_with_backup_code(
        &self,
        auth: &SessionAuth,
        backup_code: &str,
        client: &Client,
    ) -> ServiceResult<WithdrawalLock> {
        let account = &auth.account;
        self.step_up.refuse_if_settings_locked(&account.id).await?;
        if !self.second_factors.factors(&account.id).await?.totp {
            return Err(ServiceError::NotFound(
                "not_found",
                "No authenticator app is set up.".into(),
            ));
        }
        let key = self
            .throttles
            .throttle_session_factor(auth, client, "totp.reset")
            .await?;
        let normalized = normalize_backup_code(backup_code);
        let ok = normalized.len() == 10
            && self
                .store
                .use_backup_code(
                    &account.id,
                    &self.second_factors.backup_mac(&account.id, &normalized),
                    self.now(),
                )
                .await?;
        if !ok {
            let fx = Effects::audit(self.event(
                Some(client),
                Some(&account.id),
                Self::account_actor(account),
                "totp.reset_failed",
                json!({}),
            ));
            self.store.append_audit(&fx).await?;
            return Err(ServiceError::InvalidCode { attempts_left: 0 });
        }
        self.store.throttle_clear(&key).await?;
        let now = self.now();
        let lock = WithdrawalLock {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account.id.clone(),
            reason: "second_factor_reset".into(),
            created_at: now,
            until: now + SECOND_FACTOR_RESET_LOCK,
        };
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "totp.reset", json!({"via": "backup_code", "withdrawals_locked_until": lock.until})))
            .with_mail(self.notices.notice(
                account,
                "Your authenticator app was reset",
                &format!(
                    "Your authenticator app was removed at {} with a backup code, from {} ({}). Withdrawals are locked until {}.\n\n\
                     Set up your authenticator again from the Security Center. If this was not you, freeze your account now.",
                    format_utc(now),
                    client.device.summary(),
                    client.ip,
                    format_utc(lock.until)
                ),
            ));
        self.store.reset_totp(&account.id, &lock, &fx).await?;
        self.invalidator
            .invalidate_keys(&format!("account:{}", account.id))
            .await?;
        Ok(lock)
    }

    /// Asks for an authenticator reset through the recovery review (when the backup codes
    /// are lost too). The request is recorded for an operator; the answer is the same for
    /// every address and password, so it reveals nothing.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn request_authenticator_reset(
        &self,
        email: &str,
        password: &str,
        reason: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        let reason: String = reason.trim().chars().take(2000).collect();
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        self.throttles
            .throttle(&[(format!("ip:{}", client.ip), self.throttles.ip_policy())])
            .await?;
        let account = self.store.account_by_email(email.as_str()).await?;
        let stored = account.as_ref().map_or_else(
            || self.hasher.dummy_hash.clone(),
            |a| a.password_hash.clone(),
        );
        let attempt = password.to_owned();
        let ok = self
            .hasher
            .argon2(move || password::verify(&attempt, &stored))
            .await?;
        let Some(account) = account.filter(|_| ok) else {
            return Ok(());
        };
        let request = RecoveryRequest {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account.id.clone(),
            kind: "second_factor_reset".into(),
            reason,
            status: "submitted".into(),
            created_at: self.now(),
        };
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), "anonymous".into(), "recovery.requested", json!({"kind": "authenticator_reset", "request_id": request.id})))
            .with_mail(self.notices.notice(
                &account,
                "Authenticator reset requested",
                &format!(
                    "A reset of your authenticator app was requested at {} from {} ({}). Our team will review it and contact you; \
                     withdrawals stay locked while it is under review, and a completed reset locks them for 48 hours.\n\n\
                     If this was not you, someone knows your password: change it now.",
                    format_utc(self.now()),
                    client.device.summary(),
                    client.ip
                ),
            ));
        self.store.add_recovery_request(&request, &fx).await?;
        Ok(())
    }
}
