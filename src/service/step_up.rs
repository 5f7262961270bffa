//! Step-up: a sensitive action needs, within five minutes, the second factor (code or
//! passkey), or on an account without one the password plus a mailed code.

use std::sync::Arc;

use serde_json::json;

use super::hasher::Hasher;
use super::notices::Notices;
use super::second_factors::SecondFactors;
use super::throttles::Throttles;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{Millis, SharedClock, HOUR, MINUTE};
use crate::domain::password;
use crate::domain::rules::Rules;
use crate::domain::secret::{constant_time_eq, six_digit_code, ServerKey};
use crate::domain::sign_in::SecondFactor;
use crate::domain::step_up::{self, SensitiveAction};
use crate::store::{ActionCode, Effects, SessionAuth, SharedStore};

/// The `action_codes` purpose of the mailed step-up code.
const STEP_UP_PURPOSE: &str = "step_up";

/// The "wrong code in your signed-in session" mail goes out at most this often per account.
pub const STEP_UP_ALERT_INTERVAL: Millis = HOUR;

/// Proving the second factor (or password and mailed code) for sensitive actions.
pub struct StepUp {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) key: ServerKey,
    pub(crate) rules: Rules,
    pub(crate) hasher: Arc<Hasher>,
    pub(crate) throttles: Arc<Throttles>,
    pub(crate) notices: Arc<Notices>,
    pub(crate) second_factors: Arc<SecondFactors>,
}

impl Clocked for StepUp {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl StepUp {
    /// Refuses a sensitive action unless this session proved, within five minutes, the
    /// second factor or (on an account without one) the password plus a mailed code.
    /// Every sensitive handler calls this first.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn require_step_up(
        &self,
        auth: &SessionAuth,
        action: SensitiveAction,
    ) -> ServiceResult<()> {
        if auth.account.recovery_required && action != SensitiveAction::AddSecondFactor {
            return Err(super::support::recovery_incomplete());
        }
        if action.blocked_by_settings_lock() {
            self.refuse_if_settings_locked(&auth.account.id).await?;
        }
        let proof = step_up::proof_for(self.second_factors.factors(&auth.account.id).await?.any());
        if step_up::allowed(action, proof, auth.session.stepped_up_at, self.now()) {
            Ok(())
        } else {
            Err(ServiceError::StepUpRequired {
                action: action.as_str(),
                proof,
            })
        }
    }

    /// Refuses while the account's settings lock is in force (every security setting
    /// change goes through here, and the password reset link too).
    pub async fn refuse_if_settings_locked(&self, account_id: &str) -> ServiceResult<()> {
        match self.store.settings_lock(account_id).await? {
            Some(lock) if lock.active(self.now()) => Err(settings_locked(lock.until)),
            _ => Ok(()),
        }
    }

    /// Proves a second factor for this session (authenticator or backup code): sensitive
    /// actions are then allowed for five minutes.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn step_up_with_code(
        &self,
        auth: &SessionAuth,
        code: &str,
        client: &Client,
    ) -> ServiceResult<Millis> {
        let account = &auth.account;
        if !self.second_factors.factors(&account.id).await?.any() {
            return Err(ServiceError::Conflict(
                "no_second_factor",
                "This account has no second factor to prove: confirm with your password and a code we mail you (POST /api/v1/me/step-up/email-code, then POST /api/v1/me/step-up with password and email_code).".into(),
            ));
        }
        if account.require_passkey {
            return Err(ServiceError::Forbidden(
                "passkey_required",
                "This account requires a passkey for important actions.".into(),
            ));
        }
        let key = self
            .throttles
            .throttle_session_factor(auth, client, "step_up")
            .await?;
        match self
            .second_factors
            .check_second_factor_code(account, code)
            .await?
        {
            Some(method) => {
                self.store.throttle_clear(&key).await?;
                self.mark_stepped_up(auth, method, client).await
            }
            None => {
                let alert = self
                    .throttles
                    .may_send(
                        &format!("alert:step_up_wrong_code:{}", account.id),
                        STEP_UP_ALERT_INTERVAL,
                    )
                    .await?;
                let mut fx = Effects::audit(self.event(
                    Some(client),
                    Some(&account.id),
                    Self::account_actor(account),
                    "step_up.failed",
                    json!({ "owner_alerted": alert }),
                ));
                if alert {
                    fx = fx.with_mail(self.notices.notice(
                        account,
                        "A wrong confirmation code was entered",
                        &format!("A wrong second-factor code was entered in your signed-in session on {} ({}). \
                                  Further wrong codes within the hour are recorded without another mail.", client.device.summary(), client.ip),
                    ));
                }
                self.store.append_audit(&fx).await?;
                Err(ServiceError::InvalidCode { attempts_left: 0 })
            }
        }
    }

    /// Mails the 6-digit code with which an account without a second factor confirms a
    /// sensitive action (with its password). At most one new code a minute; a code works
    /// for 10 minutes, once, with 5 tries. Returns whether a code was sent now (`false`:
    /// the one sent less than a minute ago still works) and when the current one expires.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn send_step_up_code(
        &self,
        auth: &SessionAuth,
        client: &Client,
    ) -> ServiceResult<(bool, Millis)> {
        let account = &auth.account;
        if self.second_factors.factors(&account.id).await?.any() {
            return Err(Self::use_second_factor());
        }
        if let Some(existing) = self.store.action_code(&account.id, STEP_UP_PURPOSE).await? {
            if self.now() - existing.created_at < MINUTE {
                return Ok((false, existing.expires_at));
            }
        }
        let code = six_digit_code();
        let c = ActionCode {
            account_id: account.id.clone(),
            purpose: STEP_UP_PURPOSE.into(),
            code_mac: self.step_up_code_mac(&account.id, &code),
            expires_at: self.now() + self.rules.confirm_code_ttl_minutes * MINUTE,
            attempts: 0,
            created_at: self.now(),
        };
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "step_up.code_sent", json!({"expires_at": c.expires_at})))
            .with_mail(self.notices.code_notice(
                account,
                "Your code to confirm a security change",
                &format!(
                    "Your code to confirm a security change is {code}. With your password, it allows security changes (second factors, API keys, devices) for 5 minutes. It is valid for {} minutes.\n\n\
                     Requested from {} ({}). If you did not ask for it, someone is signed in to your account: freeze it now.",
                    self.rules.confirm_code_ttl_minutes,
                    client.device.summary(),
                    client.ip
                ),
            ));
        self.store.put_action_code(&c, &fx).await?;
        Ok((true, c.expires_at))
    }

    fn step_up_code_mac(&self, account_id: &str, code: &str) -> String {
        self.key.mac(
            "action-code",
            &format!("{account_id}:{STEP_UP_PURPOSE}:{}", code.trim()),
        )
    }

    fn use_second_factor() -> ServiceError {
        ServiceError::Conflict(
            "use_second_factor",
            "This account has a second factor: confirm with it (authenticator code, backup code or passkey), not with a mailed code.".into(),
        )
    }

    /// Step-up of an account without a second factor: its password plus the mailed code
    /// (`send_step_up_code`). Throttled per account like sign-in; the code is spent.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn step_up_with_email_code(
        &self,
        auth: &SessionAuth,
        password: &str,
        email_code: &str,
        client: &Client,
    ) -> ServiceResult<Millis> {
        let account = &auth.account;
        if self.second_factors.factors(&account.id).await?.any() {
            return Err(Self::use_second_factor());
        }
        let failed = |reason: &str| {
            Effects::audit(self.event(
                Some(client),
                Some(&account.id),
                Self::account_actor(account),
                "step_up.failed",
                json!({"method": "password_and_email_code", "reason": reason}),
            ))
        };
        // Charged to this session only: a thief guessing in a stolen session slows himself,
        // never the owner's own sessions.
        let key = self
            .throttles
            .throttle_session_factor(auth, client, "step_up")
            .await?;
        let stored = account.password_hash.clone();
        let attempt = password.to_owned();
        if !self
            .hasher
            .argon2(move || password::verify(&attempt, &stored))
            .await?
        {
            self.store.append_audit(&failed("wrong_password")).await?;
            return Err(ServiceError::Forbidden(
                "wrong_password",
                "The password is wrong.".into(),
            ));
        }
        let max = self.rules.confirm_code_max_attempts;
        let Some(code) = self.store.action_code(&account.id, STEP_UP_PURPOSE).await? else {
            self.store.append_audit(&failed("no_code")).await?;
            return Err(ServiceError::InvalidCode { attempts_left: 0 });
        };
        if code.attempts >= max {
            self.store
                .append_audit(&failed("too_many_wrong_codes"))
                .await?;
            return Err(ServiceError::TooManyAttempts { retry_after_ms: 0 });
        }
        if self.now() >= code.expires_at {
            self.store.append_audit(&failed("code_expired")).await?;
            return Err(ServiceError::CodeExpired);
        }
        let given = self.step_up_code_mac(&account.id, email_code);
        if !constant_time_eq(&given, &code.code_mac) {
            let n = self
                .store
                .action_code_failed(&account.id, STEP_UP_PURPOSE)
                .await?;
            self.store.append_audit(&failed("wrong_code")).await?;
            return Err(ServiceError::InvalidCode {
                attempts_left: (max - n).max(0),
            });
        }
        let now = self.now();
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "step_up.succeeded",
            json!({"method": "password_and_email_code"}),
        ));
        if !self
            .store
            .step_up_with_action_code(
                &account.id,
                STEP_UP_PURPOSE,
                &code.code_mac,
                max,
                &auth.session.id,
                now,
                &fx,
            )
            .await?
        {
            // Spent by a concurrent request in the meantime.
            return Err(ServiceError::InvalidCode { attempts_left: 0 });
        }
        self.store.throttle_clear(&key).await?;
        Ok(now + step_up::STEP_UP_WINDOW)
    }

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn mark_stepped_up(
        &self,
        auth: &SessionAuth,
        method: SecondFactor,
        client: &Client,
    ) -> ServiceResult<Millis> {
        let account = &auth.account;
        let mut fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "step_up.succeeded",
            json!({ "method": method.as_str() }),
        ));
        if method == SecondFactor::BackupCode {
            fx = fx.with_mail(self.notices.notice(account, "A backup code was used", &format!("A backup code was used to confirm an action from {} ({}). Each code works once.", client.device.summary(), client.ip)));
        }
        let now = self.now();
        self.store
            .session_stepped_up(&auth.session.id, now, &fx)
            .await?;
        Ok(now + step_up::STEP_UP_WINDOW)
    }
}

/// The refusal of a change while the settings lock is in force.
pub fn settings_locked(until: crate::clock::Millis) -> ServiceError {
    ServiceError::Forbidden(
        "settings_locked",
        format!(
            "Your security settings are locked until {}: no password, email, second-factor, API key or allowlist change is possible before then. You can still remove devices, keys and addresses, freeze the account, or ask to end the lock early.",
            crate::clock::format_utc(until)
        ),
    )
}
