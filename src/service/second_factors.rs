//! What second factors an account has, checking a code against them (authenticator app
//! with replay guard, then the single-use backup codes), and making backup codes.

use super::{Clocked, ServiceResult};
use crate::clock::SharedClock;
use crate::domain::secret::{normalize_backup_code, SecretBox, ServerKey};
use crate::domain::sign_in::SecondFactor;
use crate::domain::totp;
use crate::store::{Account, SharedStore};
use std::sync::Arc;

pub const BACKUP_CODE_COUNT: usize = 10;

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

/// The account's second factors as a whole (used by sign-in, step-up and enrolment).
pub struct SecondFactors {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) key: ServerKey,
    pub(crate) secret_box: Arc<SecretBox>,
}

impl Clocked for SecondFactors {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl SecondFactors {
    pub async fn factors(&self, account_id: &str) -> ServiceResult<Factors> {
        let (totp, passkeys, backup_codes_left) = self.store.factor_counts(account_id).await?;
        Ok(Factors {
            totp,
            passkeys: usize::try_from(passkeys).unwrap_or(0),
            backup_codes_left,
        })
    }

    pub fn backup_mac(&self, account_id: &str, code: &str) -> String {
        self.key.mac(
            "backup-code",
            &format!("{account_id}:{}", normalize_backup_code(code)),
        )
    }

    /// Checks a code against the authenticator app (replay-guarded) or, failing that, the
    /// unused backup codes (each works once). Returns the method that matched.
    pub async fn check_second_factor_code(
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

    pub fn new_backup_codes_for(&self, account_id: &str) -> (Vec<String>, Vec<String>) {
        let codes: Vec<String> = (0..BACKUP_CODE_COUNT)
            .map(|_| crate::domain::secret::backup_code())
            .collect();
        let macs = codes
            .iter()
            .map(|c| {
                self.key.mac(
                    "backup-code",
                    &format!(
                        "{account_id}:{}",
                        crate::domain::secret::normalize_backup_code(c)
                    ),
                )
            })
            .collect();
        (codes, macs)
    }
}
