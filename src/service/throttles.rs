//! Throttling shared by every area: the sign-in policies, charging a try against one or
//! more counters, the once-per-interval mail marks, and the per-session second-factor
//! counter used by step-up and authenticator enrolment and reset.

use serde_json::json;

use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{Millis, SharedClock, MINUTE};
use crate::domain::rules::Rules;
use crate::domain::throttle::ThrottlePolicy;
use crate::store::{Effects, SessionAuth, SharedStore};

/// The throttle counters and mail marks (all in the database, so every instance agrees).
pub struct Throttles {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) rules: Rules,
}

impl Clocked for Throttles {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl Throttles {
    pub fn account_policy(&self) -> ThrottlePolicy {
        ThrottlePolicy {
            free_failures: self.rules.signin_account_free_failures,
            window: self.rules.signin_window_minutes * MINUTE,
            max_delay: self.rules.signin_max_delay_minutes * MINUTE,
        }
    }

    pub fn ip_policy(&self) -> ThrottlePolicy {
        ThrottlePolicy {
            free_failures: self.rules.signin_ip_free_failures,
            ..self.account_policy()
        }
    }

    /// Throttles a try on every key at once: the source address and, when known, the
    /// account (per known device). Charged before the secret is checked.
    pub async fn throttle(&self, keys: &[(String, ThrottlePolicy)]) -> ServiceResult<()> {
        match self.store.throttle_attempts(keys, self.now()).await? {
            Ok(_) => Ok(()),
            Err((_, wait)) => Err(ServiceError::TooManyAttempts {
                retry_after_ms: wait,
            }),
        }
    }

    /// Charges one second-factor try made from a signed-in session (step-up, authenticator
    /// enrolment or reset) against that session's own counter, never the account's sign-in
    /// counters: a thief guessing in a stolen session slows only that session, and
    /// strangers guessing at the sign-in never stop the owner's live session. A refusal is
    /// audited (`{action}.throttled`). Returns the key to clear after a success.
    pub async fn throttle_session_factor(
        &self,
        auth: &SessionAuth,
        client: &Client,
        action: &str,
    ) -> ServiceResult<String> {
        let key = format!("2fa:session:{}", auth.session.id);
        if let Err(retry_after_ms) = self
            .store
            .throttle_attempt(&key, &self.account_policy(), self.now())
            .await?
        {
            let fx = Effects::audit(self.event(
                Some(client),
                Some(&auth.account.id),
                Self::account_actor(&auth.account),
                &format!("{action}.throttled"),
                json!({ "retry_after_ms": retry_after_ms }),
            ));
            self.store.append_audit(&fx).await?;
            return Err(ServiceError::TooManyAttempts { retry_after_ms });
        }
        Ok(key)
    }

    /// Whether the mail (or resend) behind `key` may go out now: at most one per
    /// `interval` per key, agreed through the database by every instance.
    pub async fn may_send(&self, key: &str, interval: Millis) -> ServiceResult<bool> {
        Ok(self
            .store
            .once_per_interval(key, interval, self.now())
            .await?)
    }
}
