//! Second-factor settings: the authenticator app (TOTP) enrolment and (delayed) removal,
//! backup codes, "require a passkey", and the Security Center's overview of them.

use std::sync::Arc;

use serde_json::json;

use super::notices::Notices;
use super::pending::PendingChanges;
use super::second_factors::SecondFactors;
use super::step_up::StepUp;
use super::throttles::Throttles;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{format_utc, Millis, SharedClock};
use crate::domain::change::Weakening;
use crate::domain::secret::SecretBox;
use crate::domain::step_up::{self, SensitiveAction};
use crate::domain::totp;
use crate::store::{Effects, PendingChange, SessionAuth, SharedStore, TotpRecord, WithdrawalLock};

pub use super::second_factors::{Factors, BACKUP_CODE_COUNT};

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

/// The account's second-factor settings.
pub struct FactorSettings {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) secret_box: Arc<SecretBox>,
    pub(crate) notices: Arc<Notices>,
    pub(crate) throttles: Arc<Throttles>,
    pub(crate) second_factors: Arc<SecondFactors>,
    pub(crate) step_up: Arc<StepUp>,
    pub(crate) pending_changes: Arc<PendingChanges>,
}

impl Clocked for FactorSettings {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl FactorSettings {
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn factor_overview(&self, auth: &SessionAuth) -> ServiceResult<FactorOverview> {
        let id = &auth.account.id;
        Ok(FactorOverview {
            factors: self.second_factors.factors(id).await?,
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

    /// Starts enrolment: a new secret (encrypted at rest), shown once with its QR code.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn totp_begin(
        &self,
        auth: &SessionAuth,
        client: &Client,
    ) -> ServiceResult<TotpEnrolment> {
        let account = &auth.account;
        if self.second_factors.factors(&account.id).await?.totp {
            return Err(ServiceError::Conflict(
                "totp_already_enabled",
                "An authenticator app is already set up. Turn it off or reset it before setting up another.".into(),
            ));
        }
        self.step_up
            .require_step_up(auth, SensitiveAction::AddSecondFactor)
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
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
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
        self.step_up
            .require_step_up(auth, SensitiveAction::AddSecondFactor)
            .await?;
        let key = self
            .throttles
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
        let first = !self.second_factors.factors(&account.id).await?.any();
        let (codes, macs) = self.second_factors.new_backup_codes_for(&account.id);
        let mail = if first {
            self.notices
                .first_factor_mail(account, "an authenticator app", client)
        } else {
            self.notices.notice(
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
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn regenerate_backup_codes(
        &self,
        auth: &SessionAuth,
        client: &Client,
    ) -> ServiceResult<Vec<String>> {
        let account = &auth.account;
        if !self.second_factors.factors(&account.id).await?.any() {
            return Err(ServiceError::Conflict(
                "no_second_factor",
                "Backup codes stand in for a second factor; set one up first.".into(),
            ));
        }
        self.step_up
            .require_step_up(auth, SensitiveAction::RegenerateBackupCodes)
            .await?;
        let (codes, macs) = self.second_factors.new_backup_codes_for(&account.id);
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "backup_codes.regenerated",
            json!({}),
        ))
        .with_mail(self.notices.notice(
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

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn disable_totp(
        &self,
        auth: &SessionAuth,
        client: &Client,
    ) -> ServiceResult<PendingChange> {
        if !self.second_factors.factors(&auth.account.id).await?.totp {
            return Err(ServiceError::NotFound(
                "not_found",
                "No authenticator app is set up.".into(),
            ));
        }
        self.pending_changes
            .schedule_weakening(
                auth,
                Weakening::DisableTotp,
                "Turn off the authenticator app",
                client,
            )
            .await
    }

    /// "Require a passkey for important actions": on at once (a passkey must exist), off
    /// after the weakening delay.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
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
            .with_mail(self.notices.notice(
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
            self.pending_changes
                .schedule_weakening(
                    auth,
                    Weakening::StopRequiringPasskey,
                    "Stop requiring a passkey for important actions",
                    client,
                )
                .await?,
        ))
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
