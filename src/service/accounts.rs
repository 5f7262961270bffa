//! Registration, email confirmation and account settings.

use rand::Rng;
use serde_json::json;

use std::sync::Arc;

use super::hasher::Hasher;
use super::step_up::StepUp;
use super::throttles::Throttles;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{format_utc, Millis, SharedClock, DAY, MINUTE};
use crate::domain::email::Email;
use crate::domain::password::{self, NewPassword};
use crate::domain::rules::Rules;
use crate::domain::secret::{constant_time_eq, six_digit_code, ServerKey};
use crate::domain::throttle::ThrottlePolicy;
use crate::domain::AntiPhishingCode;
use crate::mail::Composer;
use crate::store::{Account, Confirmation, Effects, SessionAuth, SharedStore, StoreError};

/// The same answer whether or not the address was new, so registration cannot be used to
/// learn who has an account: the owner of an existing address gets a mail instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered;

/// A new code may be mailed at most this often.
const RESEND_INTERVAL: Millis = MINUTE;
/// "Someone tried to register with your address" goes to an owner at most this often.
pub const REGISTRATION_REPEATED_MAIL_INTERVAL: Millis = DAY;

fn new_uid() -> String {
    // Ten digits, never starting with 0: what support reads back on the phone.
    rand::thread_rng()
        .gen_range(1_000_000_000u64..10_000_000_000)
        .to_string()
}

/// Registration, email confirmation and account settings.
pub struct Accounts {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) key: ServerKey,
    pub(crate) rules: Rules,
    pub(crate) composer: Composer,
    pub(crate) hasher: Arc<Hasher>,
    pub(crate) throttles: Arc<Throttles>,
    pub(crate) step_up: Arc<StepUp>,
}

impl Clocked for Accounts {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl Accounts {
    fn code_mac(&self, account_id: &str, code: &str) -> String {
        self.key
            .mac("email-confirmation", &format!("{account_id}:{code}"))
    }

    fn confirmation_mail(&self, account: &Account, code: &str) -> crate::store::NewMail {
        let minutes = self.rules.confirm_code_ttl_minutes;
        self.composer.compose_code_mail(
            Some(&account.id),
            &account.email,
            account.anti_phishing_code.as_deref(),
            "Confirm your email address",
            &format!(
                "Your confirmation code is {code}.\n\nEnter it on the confirmation page within {minutes} minutes. \
                 If you did not create a Rampart account, ignore this mail: nothing happens without the code."
            ),
            self.now(),
        )
    }

    fn new_confirmation(&self, account_id: &str) -> (Confirmation, String) {
        let code = six_digit_code();
        let now = self.now();
        let c = Confirmation {
            account_id: account_id.to_owned(),
            code_mac: self.code_mac(account_id, &code),
            expires_at: now + self.rules.confirm_code_ttl_minutes * MINUTE,
            attempts: 0,
            created_at: now,
        };
        (c, code)
    }

    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        client: &Client,
    ) -> ServiceResult<Registered> {
        let email = Email::parse(email)?;
        // Throttled per source and per address before any costly work (the strength
        // estimate, argon2), alike for new and existing addresses.
        self.throttle_registration(&email, client).await?;
        let password = NewPassword::parse(password, &email, &self.rules)?;
        // Hash first, whatever happens next, so both paths take the same time.
        let hash = self
            .hasher
            .argon2(move || password::hash(password.expose()))
            .await??;
        if let Some(existing) = self.store.account_by_email(email.as_str()).await? {
            return self
                .registration_attempt_on_existing(&existing, client)
                .await;
        }
        for _ in 0..5 {
            let account = Account {
                id: uuid::Uuid::new_v4().to_string(),
                uid: new_uid(),
                email: email.as_str().to_owned(),
                password_hash: hash.clone(),
                email_confirmed_at: None,
                anti_phishing_code: None,
                created_at: self.now(),
                frozen_at: None,
                require_passkey: false,
                recovery_required: false,
            };
            let (confirmation, code) = self.new_confirmation(&account.id);
            let fx = Effects::audit(self.event(
                Some(client),
                Some(&account.id),
                Self::account_actor(&account),
                "account.registered",
                json!({"uid": account.uid}),
            ))
            .with_mail(self.confirmation_mail(&account, &code));
            match self
                .store
                .create_account(&account, &confirmation, &fx)
                .await
            {
                Ok(()) => return Ok(Registered),
                Err(StoreError::Conflict("uid")) => continue,
                Err(StoreError::Conflict(_)) => {
                    // Registered concurrently by another request: same answer as above.
                    if let Some(existing) = self.store.account_by_email(email.as_str()).await? {
                        return self
                            .registration_attempt_on_existing(&existing, client)
                            .await;
                    }
                    return Ok(Registered);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Internal(anyhow::anyhow!(
            "could not allocate a unique account UID"
        )))
    }

    fn registration_policy(&self, free: i64) -> ThrottlePolicy {
        ThrottlePolicy {
            free_failures: free,
            window: self.rules.register_window_minutes * MINUTE,
            max_delay: self.rules.register_window_minutes * MINUTE,
        }
    }

    /// Charges one registration to the source address and to the email address. A refusal
    /// (429 with the wait) says nothing about whether the address has an account; it is
    /// audited on the account when there is one, as throttled sign-ins are.
    async fn throttle_registration(&self, email: &Email, client: &Client) -> ServiceResult<()> {
        let keys = [
            (
                format!("register:ip:{}", client.ip),
                self.registration_policy(self.rules.register_ip_free_attempts),
            ),
            (
                format!("register:addr:{}", self.key.mac("throttle", email.as_str())),
                self.registration_policy(self.rules.register_address_free_attempts),
            ),
        ];
        let Err((which, retry_after_ms)) = self.store.throttle_attempts(&keys, self.now()).await?
        else {
            return Ok(());
        };
        if which == 1 {
            if let Some(account) = self.store.account_by_email(email.as_str()).await? {
                let fx = Effects::audit(self.event(
                    Some(client),
                    Some(&account.id),
                    "anonymous".into(),
                    "account.registration_throttled",
                    json!({ "retry_after_ms": retry_after_ms }),
                ));
                self.store.append_audit(&fx).await?;
            }
        }
        Err(ServiceError::TooManyAttempts { retry_after_ms })
    }

    async fn registration_attempt_on_existing(
        &self,
        account: &Account,
        client: &Client,
    ) -> ServiceResult<Registered> {
        // At most one mail a day per address, however often strangers try it.
        let mailed = self
            .throttles
            .may_send(
                &format!("mail:registration_repeated:{}", account.id),
                REGISTRATION_REPEATED_MAIL_INTERVAL,
            )
            .await?;
        let mut fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            "anonymous".into(),
            "account.registration_repeated",
            json!({ "owner_mailed": mailed }),
        ));
        if !mailed {
            self.store.append_audit(&fx).await?;
            return Ok(Registered);
        }
        let mail = self.composer.compose(
            Some(&account.id),
            &account.email,
            account.anti_phishing_code.as_deref(),
            "Someone tried to register with your address",
            &format!(
                "At {} someone tried to create a new Rampart account with this email address, from {} ({}).\n\n\
                 Your account already exists, so nothing was changed. If this was you, sign in instead. \
                 If it was not, you need do nothing, but make sure your password is not used anywhere else.",
                format_utc(self.now()),
                client.device.summary(),
                client.ip,
            ),
            self.now(),
        );
        fx = fx.with_mail(mail);
        self.store.append_audit(&fx).await?;
        Ok(Registered)
    }

    /// The wrong-code counter of an address. It exists for every address, registered or
    /// not, so the answers (tries left, too many tries) are the same whoever asks about
    /// whichever address and cannot be used to find out who is registered.
    fn confirm_attempts_key(&self, email: &Email) -> String {
        format!("confirm:{}", self.key.mac("throttle", email.as_str()))
    }

    /// Checks a confirmation code. Wrong codes count per address; after the allowed number
    /// the code is dead until a new one is requested (or the code's lifetime has passed).
    /// Unknown, already confirmed and awaiting addresses get the same answers: tries left,
    /// then too many tries. Only the right code can learn that it has expired.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn confirm_email(
        &self,
        email: &str,
        code: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        let email = Email::parse(email)?;
        let max = self.rules.confirm_code_max_attempts;
        let ttl = self.rules.confirm_code_ttl_minutes * MINUTE;
        let key = self.confirm_attempts_key(&email);
        // `max` tries in a code's lifetime; the window starts at the first wrong try, after
        // the code was made, so it outlives the code.
        let policy = ThrottlePolicy {
            free_failures: max,
            window: ttl,
            max_delay: ttl,
        };
        let account = self.store.account_by_email(email.as_str()).await?;
        let tries = match self
            .store
            .throttle_attempt(&key, &policy, self.now())
            .await?
        {
            Ok(n) if n <= max => n,
            _ => {
                if let Some(a) = &account {
                    let fx = Effects::audit(self.event(
                        Some(client),
                        Some(&a.id),
                        "anonymous".into(),
                        "account.confirmation_throttled",
                        json!({}),
                    ));
                    self.store.append_audit(&fx).await?;
                }
                return Err(ServiceError::TooManyAttempts { retry_after_ms: 0 });
            }
        };
        let wrong = ServiceError::InvalidCode {
            attempts_left: (max - tries).max(0),
        };
        let Some(account) = account.filter(|a| a.email_confirmed_at.is_none()) else {
            return Err(wrong);
        };
        let Some(pending) = self.store.confirmation(&account.id).await? else {
            return Err(wrong);
        };
        let code = code.trim();
        let given = self.code_mac(&account.id, code);
        if !(code.len() == 6 && constant_time_eq(&given, &pending.code_mac)) {
            let fx = Effects::audit(self.event(
                Some(client),
                Some(&account.id),
                "anonymous".into(),
                "account.confirmation_failed",
                json!({"attempt": tries}),
            ));
            self.store.confirmation_failed(&account.id, &fx).await?;
            return Err(wrong);
        }
        if self.now() >= pending.expires_at {
            return Err(ServiceError::CodeExpired);
        }
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(&account),
            "account.email_confirmed",
            json!({}),
        ));
        self.store
            .confirm_email(&account.id, self.now(), &fx)
            .await?;
        // The right code's try is given back, so the counter holds wrong codes only;
        // clearing it instead would tell a prober that the address was just confirmed.
        self.store.throttle_refund(&key).await?;
        Ok(())
    }

    /// Mails a fresh code to an unconfirmed account, at most once a minute per address,
    /// and gives the address its tries back. Answers the same for every address, and
    /// treats every address alike (the tries come back for unknown ones too).
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn resend_confirmation(&self, email: &str, client: &Client) -> ServiceResult<()> {
        let email = Email::parse(email)?;
        let mark = format!(
            "confirm_resend:{}",
            self.key.mac("throttle", email.as_str())
        );
        if !self.throttles.may_send(&mark, RESEND_INTERVAL).await? {
            return Ok(());
        }
        self.store
            .throttle_clear(&self.confirm_attempts_key(&email))
            .await?;
        let Some(account) = self.store.account_by_email(email.as_str()).await? else {
            return Ok(());
        };
        if account.email_confirmed_at.is_some() {
            return Ok(());
        }
        let (confirmation, code) = self.new_confirmation(&account.id);
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            "anonymous".into(),
            "account.confirmation_resent",
            json!({}),
        ))
        .with_mail(self.confirmation_mail(&account, &code));
        self.store.replace_confirmation(&confirmation, &fx).await?;
        Ok(())
    }

    /// Sets the code shown in every later mail. The mail announcing the change already
    /// carries the new code.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn set_anti_phishing_code(
        &self,
        auth: &SessionAuth,
        code: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        let code = AntiPhishingCode::parse(
            code,
            self.rules.anti_phishing_min_chars,
            self.rules.anti_phishing_max_chars,
        )?;
        let account = &auth.account;
        let replaced = account.anti_phishing_code.is_some();
        if replaced {
            self.step_up
                .require_step_up(
                    auth,
                    crate::domain::step_up::SensitiveAction::ChangeAntiPhishingCode,
                )
                .await?;
        }
        // A replacement is announced under the old code, which the owner trusts; the
        // first one under the new code, which the owner just chose.
        let shown = account
            .anti_phishing_code
            .as_deref()
            .unwrap_or(code.as_str());
        let mail = self.composer.compose(
            Some(&account.id),
            &account.email,
            Some(shown),
            if replaced {
                "Your anti-phishing code was changed"
            } else {
                "Your anti-phishing code was set"
            },
            &format!(
                "Your anti-phishing code was {} at {} from {} ({}, {}).\n\n\
                 From now on every genuine mail from Rampart shows the new code at the top. \
                 If you did not do this, freeze your account at once with the link below.",
                if replaced { "changed" } else { "set" },
                format_utc(self.now()),
                client.device.summary(),
                client.ip,
                crate::geo::Location::label(
                    client.location.city.as_deref(),
                    client.location.country.as_deref()
                ),
            ),
            self.now(),
        );
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "anti_phishing_code.set",
            json!({ "replaced": replaced }),
        ))
        .with_mail(mail);
        self.store
            .set_anti_phishing_code(&account.id, code.as_str(), &fx)
            .await?;
        Ok(())
    }
}
