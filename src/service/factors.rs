//! Second factors: the authenticator app (TOTP), backup codes, step-up for sensitive
//! actions, delayed weakening (48 h, cancellable), password change and authenticator reset
//! with the withdrawal locks that follow them, and the incomplete-sign-in alert.

use serde_json::json;

use super::sessions::{ChallengeClient, PASSWORD_KNOWN_ALERT_INTERVAL};
use super::{Client, Core, ServiceError, ServiceResult};
use crate::clock::{format_utc, Millis, HOUR, MINUTE};
use crate::domain::change::Weakening;
use crate::domain::mail_kind::MailKind;
use crate::domain::password::{self, NewPassword};
use crate::domain::secret::{
    constant_time_eq, normalize_backup_code, random_token, six_digit_code, token_hash,
};
use crate::domain::sign_in::SecondFactor;
use crate::domain::step_up::{self, SensitiveAction};
use crate::domain::{email::Email, totp};
use crate::store::{
    Account, ActionCode, Effects, PendingChange, RecoveryRequest, SessionAuth, TotpRecord,
    WithdrawalLock,
};

pub const BACKUP_CODE_COUNT: usize = 10;
/// Weakening a protection takes effect this long after it is asked for.
pub const WEAKENING_DELAY: Millis = 48 * HOUR;
pub const PASSWORD_CHANGE_LOCK: Millis = 24 * HOUR;
pub const SECOND_FACTOR_RESET_LOCK: Millis = 48 * HOUR;
/// A right password without its second factor for this long alerts the owner.
pub const INCOMPLETE_SIGNIN_ALERT_AFTER: Millis = 3 * MINUTE;
/// The last N passwords (the current one included) may not be reused.
pub const PASSWORD_HISTORY: i64 = 5;
/// The `action_codes` purpose of the mailed step-up code.
const STEP_UP_PURPOSE: &str = "step_up";
/// The "wrong code in your signed-in session" mail goes out at most this often per account.
pub const STEP_UP_ALERT_INTERVAL: Millis = HOUR;

/// Which second factors an account has.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factors {
    pub totp: bool,
    pub passkeys: usize,
    pub backup_codes_left: i64,
}

impl Factors {
    pub fn any(&self) -> bool {
        self.totp || self.passkeys > 0
    }
    /// The ways a sign-in may be finished.
    pub fn methods(&self, require_passkey: bool) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.passkeys > 0 {
            m.push("passkey");
        }
        if !require_passkey {
            if self.totp {
                m.push("totp");
            }
            if self.backup_codes_left > 0 {
                m.push("backup_code");
            }
        }
        m
    }
}

/// What the Security Center shows about second factors.
#[derive(Debug, Clone)]
pub struct FactorOverview {
    pub factors: Factors,
    pub require_passkey: bool,
    pub passkeys: Vec<crate::store::PasskeyRecord>,
    pub pending: Vec<PendingChange>,
    pub withdrawal_locks: Vec<WithdrawalLock>,
    pub stepped_up_until: Option<Millis>,
}

/// A started authenticator-app enrolment.
#[derive(Debug, Clone)]
pub struct TotpEnrolment {
    /// Base32, shown once as the "backup key".
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

impl Core {
    pub async fn factors(&self, account_id: &str) -> ServiceResult<Factors> {
        let (totp, passkeys, backup_codes_left) = self.store.factor_counts(account_id).await?;
        Ok(Factors {
            totp,
            passkeys: usize::try_from(passkeys).unwrap_or(0),
            backup_codes_left,
        })
    }

    pub async fn factor_overview(&self, auth: &SessionAuth) -> ServiceResult<FactorOverview> {
        let id = &auth.account.id;
        Ok(FactorOverview {
            factors: self.factors(id).await?,
            require_passkey: auth.account.require_passkey,
            passkeys: self.store.passkeys(id).await?,
            pending: self.store.pending_changes(id).await?,
            withdrawal_locks: self.store.withdrawal_locks(id, self.now()).await?,
            stepped_up_until: auth
                .session
                .stepped_up_at
                .map(|t| t + step_up::STEP_UP_WINDOW)
                .filter(|t| *t > self.now()),
        })
    }

    /// Refuses a sensitive action unless this session proved, within five minutes, the
    /// second factor or (on an account without one) the password plus a mailed code.
    /// Every sensitive handler calls this first.
    pub async fn require_step_up(
        &self,
        auth: &SessionAuth,
        action: SensitiveAction,
    ) -> ServiceResult<()> {
        let proof = step_up::proof_for(self.factors(&auth.account.id).await?.any());
        if step_up::allowed(action, proof, auth.session.stepped_up_at, self.now()) {
            Ok(())
        } else {
            Err(ServiceError::StepUpRequired {
                action: action.as_str(),
                proof,
            })
        }
    }

    fn backup_mac(&self, account_id: &str, code: &str) -> String {
        self.key.mac(
            "backup-code",
            &format!("{account_id}:{}", normalize_backup_code(code)),
        )
    }

    /// Checks a code against the authenticator app (replay-guarded) or, failing that, the
    /// unused backup codes (each works once). Returns the method that matched.
    pub(crate) async fn check_second_factor_code(
        &self,
        account: &Account,
        code: &str,
    ) -> ServiceResult<Option<SecondFactor>> {
        let code = code.trim();
        if code.len() > 64 {
            return Ok(None);
        }
        if let Some(t) = self
            .store
            .totp(&account.id)
            .await?
            .filter(|t| t.enabled_at.is_some())
        {
            let secret = self.secret_box.open(&t.secret_enc, &account.id)?;
            if let Some(step) = totp::verify(&secret, code, self.now(), t.last_step) {
                // The store accepts the step only if no other request used it meanwhile.
                return Ok(self
                    .store
                    .totp_use_step(&account.id, step)
                    .await?
                    .then_some(SecondFactor::Totp));
            }
        }
        let normalized = normalize_backup_code(code);
        if normalized.len() == 10
            && self
                .store
                .use_backup_code(
                    &account.id,
                    &self.backup_mac(&account.id, &normalized),
                    self.now(),
                )
                .await?
        {
            return Ok(Some(SecondFactor::BackupCode));
        }
        Ok(None)
    }

    pub(crate) fn factor_used_mail(
        &self,
        account: &Account,
        method: SecondFactor,
        client: &Client,
    ) -> crate::store::NewMail {
        let what = match method {
            SecondFactor::Totp => "your authenticator app",
            SecondFactor::BackupCode => {
                "a backup code (each works once; make new ones if you are running low)"
            }
            SecondFactor::Passkey => "your passkey",
        };
        self.composer.compose(
            Some(&account.id),
            &account.email,
            account.anti_phishing_code.as_deref(),
            "New sign-in to your account",
            &format!(
                "Your account was signed in at {} with {what}, from {} ({}, {}).\n\n\
                 If this was not you, freeze your account from the Security Center and change your password.",
                format_utc(self.now()),
                client.device.summary(),
                client.ip,
                crate::geo::Location::label(client.location.city.as_deref(), client.location.country.as_deref()),
            ),
            self.now(),
        )
        .optional(MailKind::Signin)
    }

    pub(crate) fn notice(
        &self,
        account: &Account,
        subject: &str,
        body: &str,
    ) -> crate::store::NewMail {
        self.composer.compose(
            Some(&account.id),
            &account.email,
            account.anti_phishing_code.as_deref(),
            subject,
            body,
            self.now(),
        )
    }

    /// A mail that carries a code: mail only, never the inbox.
    pub(crate) fn code_notice(
        &self,
        account: &Account,
        subject: &str,
        body: &str,
    ) -> crate::store::NewMail {
        self.notice(account, subject, body).carrying_code()
    }

    // ---- authenticator app ---------------------------------------------------------

    /// Starts enrolment: a new secret (encrypted at rest), shown once with its QR code.
    pub async fn totp_begin(
        &self,
        auth: &SessionAuth,
        client: &Client,
    ) -> ServiceResult<TotpEnrolment> {
        let account = &auth.account;
        if self.factors(&account.id).await?.totp {
            return Err(ServiceError::Conflict(
                "totp_already_enabled",
                "An authenticator app is already set up. Turn it off or reset it before setting up another.".into(),
            ));
        }
        self.require_step_up(auth, SensitiveAction::AddSecondFactor)
            .await?;
        let secret = totp::new_secret();
        let (b32, uri) = totp::enrolment(&secret, &account.email)?;
        let record = TotpRecord {
            account_id: account.id.clone(),
            secret_enc: self.secret_box.seal(&secret, &account.id)?,
            enabled_at: None,
            last_step: 0,
            created_at: self.now(),
        };
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "totp.enrolment_started",
            json!({}),
        ));
        self.store
            .totp_begin(&record, &fx)
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(_) => ServiceError::Conflict(
                    "totp_already_enabled",
                    "An authenticator app is already set up.".into(),
                ),
                e => e.into(),
            })?;
        Ok(TotpEnrolment {
            qr_svg: totp::qr_svg(&uri)?,
            secret: b32,
            otpauth_uri: uri,
        })
    }

    /// Confirms enrolment with a current code. Returns the backup codes when this is the
    /// account's first second factor (shown once).
    pub async fn totp_confirm(
        &self,
        auth: &SessionAuth,
        code: &str,
        client: &Client,
    ) -> ServiceResult<Option<Vec<String>>> {
        let account = &auth.account;
        let Some(pending) = self
            .store
            .totp(&account.id)
            .await?
            .filter(|t| t.enabled_at.is_none())
        else {
            return Err(ServiceError::NotFound(
                "no_enrolment",
                "Start setting up the authenticator app first.".into(),
            ));
        };
        self.require_step_up(auth, SensitiveAction::AddSecondFactor)
            .await?;
        let key = self
            .throttle_session_factor(auth, client, "totp.enrolment")
            .await?;
        let secret = self.secret_box.open(&pending.secret_enc, &account.id)?;
        let Some(step) = totp::verify(&secret, code, self.now(), 0) else {
            let fx = Effects::audit(self.event(
                Some(client),
                Some(&account.id),
                Self::account_actor(account),
                "totp.enrolment_failed",
                json!({}),
            ));
            self.store.append_audit(&fx).await?;
            return Err(ServiceError::InvalidCode { attempts_left: 0 }.with_message_for_enrolment());
        };
        self.store.throttle_clear(&key).await?;
        let first = !self.factors(&account.id).await?.any();
        let (codes, macs) = self.new_backup_codes_for(&account.id);
        let mail = if first {
            self.first_factor_mail(account, "an authenticator app", client)
        } else {
            self.notice(
                account,
                "Authenticator app turned on",
                &format!(
                    "An authenticator app was set up for your account at {} from {} ({}). From now on, signing in needs a code from it.\n\n\
                     If this was not you, someone controls your account: freeze it from the Security Center now.",
                    format_utc(self.now()),
                    client.device.summary(),
                    client.ip
                ),
            )
        };
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "totp.enabled",
            json!({"backup_codes_issued": first}),
        ))
        .with_mail(mail);
        self.store
            .totp_enable(
                &account.id,
                step,
                first.then_some(macs.as_slice()),
                self.now(),
                &fx,
            )
            .await?;
        self.store
            .session_stepped_up(&auth.session.id, self.now(), &Effects::default())
            .await?;
        Ok(first.then_some(codes))
    }

    /// Replaces the backup codes (the old ones stop working at once).
    pub async fn regenerate_backup_codes(
        &self,
        auth: &SessionAuth,
        client: &Client,
    ) -> ServiceResult<Vec<String>> {
        let account = &auth.account;
        if !self.factors(&account.id).await?.any() {
            return Err(ServiceError::Conflict(
                "no_second_factor",
                "Backup codes stand in for a second factor; set one up first.".into(),
            ));
        }
        self.require_step_up(auth, SensitiveAction::RegenerateBackupCodes)
            .await?;
        let (codes, macs) = self.new_backup_codes_for(&account.id);
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "backup_codes.regenerated",
            json!({}),
        ))
        .with_mail(self.notice(
            account,
            "New backup codes were made",
            &format!(
                "New backup codes were made at {} from {}. The old ones no longer work.",
                format_utc(self.now()),
                client.device.summary()
            ),
        ));
        self.store
            .replace_backup_codes(&account.id, &macs, self.now(), &fx)
            .await?;
        Ok(codes)
    }

    /// Proves a second factor for this session (authenticator or backup code): sensitive
    /// actions are then allowed for five minutes.
    pub async fn step_up_with_code(
        &self,
        auth: &SessionAuth,
        code: &str,
        client: &Client,
    ) -> ServiceResult<Millis> {
        let account = &auth.account;
        if !self.factors(&account.id).await?.any() {
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
            .throttle_session_factor(auth, client, "step_up")
            .await?;
        match self.check_second_factor_code(account, code).await? {
            Some(method) => {
                self.store.throttle_clear(&key).await?;
                self.mark_stepped_up(auth, method, client).await
            }
            None => {
                let alert = self
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
                    fx = fx.with_mail(self.notice(
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

    /// The mail announcing an account's first second factor: from then on it guards every
    /// sign-in, so a thief who plants one locks the owner out. The freeze link the composer
    /// adds works without signing in.
    pub(crate) fn first_factor_mail(
        &self,
        account: &Account,
        what: &str,
        client: &Client,
    ) -> crate::store::NewMail {
        self.notice(
            account,
            "A second factor was added to your account",
            &format!(
                "A second factor ({what}) was added to your account at {} from {} ({}, {}). From now on, signing in needs it.\n\n\
                 If this was not you, someone is in your account and could lock you out: freeze it now with the link below.",
                format_utc(self.now()),
                client.device.summary(),
                client.ip,
                crate::geo::Location::label(client.location.city.as_deref(), client.location.country.as_deref()),
            ),
        )
    }

    /// Mails the 6-digit code with which an account without a second factor confirms a
    /// sensitive action (with its password). At most one new code a minute; a code works
    /// for 10 minutes, once, with 5 tries. Returns whether a code was sent now (`false`:
    /// the one sent less than a minute ago still works) and when the current one expires.
    pub async fn send_step_up_code(
        &self,
        auth: &SessionAuth,
        client: &Client,
    ) -> ServiceResult<(bool, Millis)> {
        let account = &auth.account;
        if self.factors(&account.id).await?.any() {
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
            .with_mail(self.code_notice(
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
    pub async fn step_up_with_email_code(
        &self,
        auth: &SessionAuth,
        password: &str,
        email_code: &str,
        client: &Client,
    ) -> ServiceResult<Millis> {
        let account = &auth.account;
        if self.factors(&account.id).await?.any() {
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
            .throttle_session_factor(auth, client, "step_up")
            .await?;
        let stored = account.password_hash.clone();
        let attempt = password.to_owned();
        if !self
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

    pub(crate) async fn mark_stepped_up(
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
            fx = fx.with_mail(self.notice(account, "A backup code was used", &format!("A backup code was used to confirm an action from {} ({}). Each code works once.", client.device.summary(), client.ip)));
        }
        let now = self.now();
        self.store
            .session_stepped_up(&auth.session.id, now, &fx)
            .await?;
        Ok(now + step_up::STEP_UP_WINDOW)
    }

    // ---- delayed weakening ---------------------------------------------------------

    /// Schedules a weakening change 48 h out, announced by mail with a cancel link.
    pub(crate) async fn schedule_weakening(
        &self,
        auth: &SessionAuth,
        weakening: Weakening,
        what: &str,
        client: &Client,
    ) -> ServiceResult<PendingChange> {
        self.require_step_up(auth, SensitiveAction::WeakenProtection)
            .await?;
        let account = &auth.account;
        if let Some(existing) = self
            .store
            .pending_changes(&account.id)
            .await?
            .into_iter()
            .find(|c| c.change == weakening)
        {
            return Ok(existing);
        }
        let token = random_token();
        let now = self.now();
        let change = PendingChange {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account.id.clone(),
            change: weakening,
            cancel_token_hash: token_hash(&token),
            requested_at: now,
            effective_at: now + WEAKENING_DELAY,
            cancelled_at: None,
            applied_at: None,
        };
        let url = self.composer.public_url.trim_end_matches('/');
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "weakening.scheduled", json!({"kind": change.change.kind(), "target": change.change.target(), "effective_at": change.effective_at})))
            .with_mail(self.notice(
                account,
                &format!("{what}: takes effect in 48 hours"),
                &format!(
                    "You asked to: {what}. For your protection this takes effect only at {} (48 hours from now), from {} ({}).\n\n\
                     Not you? Cancel it with one click, no sign-in needed:\n{url}/cancel/{token}\n\n\
                     You can also cancel it from the Security Center until then.",
                    format_utc(change.effective_at),
                    client.device.summary(),
                    client.ip
                ),
            ));
        self.store.add_pending_change(&change, &fx).await?;
        Ok(change)
    }

    pub async fn cancel_pending_change(
        &self,
        auth: &SessionAuth,
        id: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        let account = &auth.account;
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "weakening.cancelled",
            json!({"change_id": id}),
        ));
        if self
            .store
            .cancel_pending_change(&account.id, id, self.now(), &fx)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound(
                "not_found",
                "No such pending change (it may already be cancelled or in effect).".into(),
            ))
        }
    }

    /// Cancels through the link in the mail, without a session.
    pub async fn cancel_pending_change_by_link(
        &self,
        token: &str,
        client: &Client,
    ) -> ServiceResult<PendingChange> {
        let gone = || {
            ServiceError::NotFound("link_invalid", "This cancel link is not valid. The change may already be cancelled or in effect; check the Security Center.".into())
        };
        if token.is_empty() || token.len() > 128 {
            return Err(gone());
        }
        let change = self
            .store
            .pending_change_by_token(&token_hash(token))
            .await?
            .ok_or_else(gone)?;
        if change.cancelled_at.is_some() {
            return Err(ServiceError::Conflict(
                "already_cancelled",
                "This change was already cancelled. Nothing more to do.".into(),
            ));
        }
        if change.applied_at.is_some() {
            return Err(ServiceError::Conflict("already_applied", "This change already took effect. Sign in and turn the protection back on, or freeze your account if this was not you.".into()));
        }
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&change.account_id),
            "anonymous".into(),
            "weakening.cancelled",
            json!({"change_id": change.id, "via": "mail_link"}),
        ));
        if !self
            .store
            .cancel_pending_change(&change.account_id, &change.id, self.now(), &fx)
            .await?
        {
            return Err(gone());
        }
        Ok(change)
    }

    /// Applies every due weakening change (the job calls this). Returns how many.
    pub async fn apply_due_changes(&self) -> ServiceResult<usize> {
        let now = self.now();
        let mut n = 0;
        for change in self.store.due_pending_changes(now, 100).await? {
            let Some(account) = self.store.account_by_id(&change.account_id).await? else {
                continue;
            };
            let what = change.change.label();
            let fx = Effects::audit(self.event(None, Some(&account.id), "system".into(), "weakening.applied", json!({"kind": change.change.kind(), "target": change.change.target()})))
                .with_mail(self.notice(&account, &format!("{what}: now in effect"), &format!("The change you asked for 48 hours ago is now in effect: {what}.\n\nIf you did not ask for it, freeze your account from the Security Center.")));
            if self
                .store
                .apply_pending_change(&change, &change.change.steps(), now, &fx)
                .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }

    pub async fn disable_totp(
        &self,
        auth: &SessionAuth,
        client: &Client,
    ) -> ServiceResult<PendingChange> {
        if !self.factors(&auth.account.id).await?.totp {
            return Err(ServiceError::NotFound(
                "not_found",
                "No authenticator app is set up.".into(),
            ));
        }
        self.schedule_weakening(
            auth,
            Weakening::DisableTotp,
            "Turn off the authenticator app",
            client,
        )
        .await
    }

    /// "Require a passkey for important actions": on at once (a passkey must exist), off
    /// after the weakening delay.
    pub async fn set_require_passkey(
        &self,
        auth: &SessionAuth,
        on: bool,
        client: &Client,
    ) -> ServiceResult<Option<PendingChange>> {
        let account = &auth.account;
        if on {
            if self.store.passkeys(&account.id).await?.is_empty() {
                return Err(ServiceError::Conflict(
                    "no_passkey",
                    "Register a passkey or security key first.".into(),
                ));
            }
            let fx = Effects::audit(self.event(
                Some(client),
                Some(&account.id),
                Self::account_actor(account),
                "require_passkey.enabled",
                json!({}),
            ))
            .with_mail(self.notice(
                account,
                "Passkey now required for important actions",
                "From now on, signing in and withdrawals need your passkey or security key.",
            ));
            self.store
                .set_require_passkey(&account.id, true, &fx)
                .await?;
            return Ok(None);
        }
        if !account.require_passkey {
            return Ok(None);
        }
        Ok(Some(
            self.schedule_weakening(
                auth,
                Weakening::StopRequiringPasskey,
                "Stop requiring a passkey for important actions",
                client,
            )
            .await?,
        ))
    }

    // ---- password change -----------------------------------------------------------

    /// Mails the code that a password change needs.
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
            .with_mail(self.code_notice(
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
    pub async fn change_password(
        &self,
        auth: &SessionAuth,
        current: &str,
        new: &str,
        email_code: &str,
        client: &Client,
    ) -> ServiceResult<u64> {
        let account = &auth.account;
        self.require_step_up(auth, SensitiveAction::ChangePassword)
            .await?;
        let key = format!("pwchange:{}", account.id);
        self.throttle(&[(key.clone(), self.account_policy())])
            .await?;
        let stored = account.password_hash.clone();
        let attempt = current.to_owned();
        if !self
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
            .argon2(move || history.iter().any(|h| password::verify(&candidate, h)))
            .await?;
        if reused {
            return Err(ServiceError::Invalid(crate::domain::Invalid::new(
                "password_reused",
                format!("Choose a password you have not used for this account before (the last {PASSWORD_HISTORY} are remembered)."),
            )));
        }
        let hash = self
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
            .with_mail(self.notice(
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
        self.invalidate_keys(&format!("account:{}", account.id))
            .await?;
        self.store.throttle_clear(&key).await?;
        Ok(ended)
    }

    // ---- authenticator reset and recovery ------------------------------------------

    /// Removes the authenticator app at once, proved with a backup code; withdrawals are
    /// locked for 48 h. A new app can then be set up.
    pub async fn reset_totp_with_backup_code(
        &self,
        auth: &SessionAuth,
        backup_code: &str,
        client: &Client,
    ) -> ServiceResult<WithdrawalLock> {
        let account = &auth.account;
        if !self.factors(&account.id).await?.totp {
            return Err(ServiceError::NotFound(
                "not_found",
                "No authenticator app is set up.".into(),
            ));
        }
        let key = self
            .throttle_session_factor(auth, client, "totp.reset")
            .await?;
        let normalized = normalize_backup_code(backup_code);
        let ok = normalized.len() == 10
            && self
                .store
                .use_backup_code(
                    &account.id,
                    &self.backup_mac(&account.id, &normalized),
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
            .with_mail(self.notice(
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
        self.invalidate_keys(&format!("account:{}", account.id))
            .await?;
        Ok(lock)
    }

    /// Asks for an authenticator reset through the recovery review (when the backup codes
    /// are lost too). The request is recorded for an operator; the answer is the same for
    /// every address and password, so it reveals nothing.
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
        self.throttle(&[(format!("ip:{}", client.ip), self.ip_policy())])
            .await?;
        let account = self.store.account_by_email(email.as_str()).await?;
        let stored = account
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |a| a.password_hash.clone());
        let attempt = password.to_owned();
        let ok = self
            .argon2(move || password::verify(&attempt, &stored))
            .await?;
        let Some(account) = account.filter(|_| ok) else {
            return Ok(());
        };
        let request = RecoveryRequest {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account.id.clone(),
            kind: "authenticator_reset".into(),
            reason,
            status: "pending_review".into(),
            created_at: self.now(),
        };
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), "anonymous".into(), "recovery.requested", json!({"kind": "authenticator_reset", "request_id": request.id})))
            .with_mail(self.notice(
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

    // ---- incomplete sign-in alert --------------------------------------------------

    /// Alerts owners whose right password was not followed by a second factor within
    /// three minutes (the job calls this). Returns how many alerts were queued.
    pub async fn alert_incomplete_signins(&self) -> ServiceResult<usize> {
        let now = self.now();
        let mut n = 0;
        for c in self
            .store
            .incomplete_signins(now - INCOMPLETE_SIGNIN_ALERT_AFTER, 100)
            .await?
        {
            let Some(account) = self.store.account_by_id(&c.account_id).await? else {
                continue;
            };
            let who: ChallengeClient = serde_json::from_str(&c.client).unwrap_or(ChallengeClient {
                ip: "unknown".into(),
                device: "unknown device".into(),
                location: "unknown".into(),
            });
            let url = self.composer.public_url.trim_end_matches('/');
            // One "someone has your password" mail an hour, shared with the wrong-code alert:
            // an attacker opening challenge after challenge must not flood the owner.
            let alert = self
                .may_send(
                    &format!("alert:password_known:{}", account.id),
                    PASSWORD_KNOWN_ALERT_INTERVAL,
                )
                .await?;
            let mut fx = Effects::audit(self.event(
                None,
                Some(&account.id),
                "system".into(),
                "signin.incomplete_alerted",
                json!({"challenge_created_at": c.created_at, "ip": who.ip, "owner_alerted": alert}),
            ));
            if alert {
                fx = fx.with_mail(self.notice(
                    &account,
                    "Someone has your password",
                    &format!(
                        "At {} your correct password was entered from {} at {} ({}), but the second step was never completed.\n\n\
                         If this was not you, someone knows your password. Change it now and review your devices:\n{url}/security\n\n\
                         Your second factor stopped them this time.",
                        format_utc(c.created_at),
                        who.device,
                        who.location,
                        who.ip
                    ),
                ));
            }
            if self.store.signin_alerted(&c.id, now, &fx).await? && alert {
                n += 1;
            }
        }
        Ok(n)
    }
}

impl ServiceError {
    fn with_message_for_enrolment(self) -> Self {
        ServiceError::Invalid(crate::domain::Invalid::new(
            "invalid_code",
            "That code does not match. Check the time on your phone and enter the current 6-digit code.",
        ))
    }
}
