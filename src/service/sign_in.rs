//! Signing in: the password step (a session, or a challenge when the account has a second
//! factor), the second step with an authenticator or backup code, the open challenges the
//! passkey second step also uses, and the alert for a right password left unfinished.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::hasher::Hasher;
use super::notices::Notices;
use super::second_factors::SecondFactors;
use super::sessions::{Sessions, SignInOutcome, SignedIn};
use super::throttles::Throttles;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{format_utc, Millis, SharedClock, HOUR, MINUTE};
use crate::domain::email::Email;
use crate::domain::password;
use crate::domain::secret::{random_token, token_hash, ServerKey};
use crate::domain::sign_in::SignInMethod;
use crate::mail::Composer;
use crate::store::{Account, Device, Effects, SharedStore, SignInChallenge};

/// How long a correct password waits for its second factor.
pub const CHALLENGE_TTL: Millis = 5 * MINUTE;

/// Wrong second-factor codes allowed on one challenge.
pub const CHALLENGE_MAX_ATTEMPTS: i64 = 5;

/// "Someone has your password" mails (a wrong code after the right password, a sign-in
/// left unfinished) go to an account at most this often, however many tries an attacker
/// makes; every try is still audited and listed in the login history.
pub const PASSWORD_KNOWN_ALERT_INTERVAL: Millis = HOUR;

/// A right password without its second factor for this long alerts the owner.
pub const INCOMPLETE_SIGNIN_ALERT_AFTER: Millis = 3 * MINUTE;

/// The client that typed the password, kept with the challenge for the alert mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChallengeClient {
    pub ip: String,
    pub device: String,
    pub location: String,
}

/// The password step, the second step, and what follows an unfinished sign-in.
pub struct SignIn {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) key: ServerKey,
    pub(crate) composer: Composer,
    pub(crate) hasher: Arc<Hasher>,
    pub(crate) throttles: Arc<Throttles>,
    pub(crate) notices: Arc<Notices>,
    pub(crate) second_factors: Arc<SecondFactors>,
    pub(crate) sessions: Arc<Sessions>,
}

impl Clocked for SignIn {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl SignIn {
    /// The second-factor counter for a sign-in: per account for browsers the account has
    /// never seen, and one per known device (by its device cookie), so strangers holding
    /// the password cannot slow down the owner's own devices. Separate from the password
    /// counters, which a right password clears.
    pub fn signin_factor_key(account_id: &str, known_device: Option<&Device>) -> String {
        match known_device {
            Some(d) => format!("2fa:{account_id}:dev:{}", d.id),
            None => format!("2fa:{account_id}"),
        }
    }

    /// A throttled sign-in step: in the login history (the owner sees it) and audited.
    async fn record_throttled_signin(
        &self,
        account_id: &str,
        client: &Client,
        device_id: Option<&str>,
        action: &str,
        retry_after_ms: Millis,
    ) -> ServiceResult<()> {
        let fx = Effects::audit(self.event(
            Some(client),
            Some(account_id),
            "anonymous".into(),
            action,
            json!({ "retry_after_ms": retry_after_ms }),
        ));
        let row = self.sessions.login_row(
            account_id,
            client,
            device_id,
            false,
            "throttled",
            SignInMethod::Password,
        );
        self.store.record_failed_login(&row, &fx).await?;
        Ok(())
    }

    /// Email + password. Unknown email and wrong password give the same answer after the
    /// same work (an argon2 verification either way). A right password on an account with
    /// a second factor opens a challenge instead of a session.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(account = tracing::field::Empty),
        err(level = "info")
    )]
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: &Client,
    ) -> ServiceResult<SignInOutcome> {
        let email = Email::parse(email).map_err(|_| ServiceError::InvalidCredentials)?;
        let account = self.store.account_by_email(email.as_str()).await?;
        if let Some(a) = &account {
            tracing::Span::current().record("account", a.id.as_str());
        }
        let known_device = match &account {
            Some(a) => self.sessions.known_device(&a.id, client).await?,
            None => None,
        };
        let device_id = known_device.as_ref().map(|d| d.id.as_str());
        let (ip_key, account_key) = self.signin_throttle_keys(&email, client, device_id);
        self.charge_signin_attempt(&ip_key, &account_key, account.as_ref(), client, device_id)
            .await?;
        let account = self
            .verify_signin_password(account, password, client, device_id)
            .await?;
        self.store
            .throttle_settle(&[account_key], &[ip_key])
            .await?;
        self.refuse_unusable_account(&account, client).await?;
        let factors = self.second_factors.factors(&account.id).await?;
        if factors.any() {
            let methods = factors.methods(account.require_passkey);
            return self.open_signin_challenge(&account, methods, client).await;
        }
        let signed = self
            .sessions
            .open_session(
                &account,
                client,
                known_device,
                SignInMethod::Password,
                None,
                None,
            )
            .await?;
        Ok(SignInOutcome::SignedIn(signed))
    }

    /// The two counters a password try is charged to: the source address, and the
    /// account. A browser that already signed in to this account has its own account
    /// counter: strangers' guesses cannot slow the owner's known devices down.
    fn signin_throttle_keys(
        &self,
        email: &Email,
        client: &Client,
        known_device: Option<&str>,
    ) -> (String, String) {
        let ip_key = format!("ip:{}", client.ip);
        let mut account_key = format!("acct:{}", self.key.mac("throttle", email.as_str()));
        if let Some(device_id) = known_device {
            account_key.push_str(&format!(":dev:{device_id}"));
        }
        (ip_key, account_key)
    }

    /// Charges both counters in one transaction, before the password is checked; a refusal
    /// on the account's counter is recorded in its history.
    async fn charge_signin_attempt(
        &self,
        ip_key: &str,
        account_key: &str,
        account: Option<&Account>,
        client: &Client,
        device_id: Option<&str>,
    ) -> ServiceResult<()> {
        let keys = [
            (ip_key.to_owned(), self.throttles.ip_policy()),
            (account_key.to_owned(), self.throttles.account_policy()),
        ];
        if let Err((which, retry_after_ms)) =
            self.store.throttle_attempts(&keys, self.now()).await?
        {
            if let (1, Some(a)) = (which, account) {
                self.record_throttled_signin(
                    &a.id,
                    client,
                    device_id,
                    "signin.throttled",
                    retry_after_ms,
                )
                .await?;
            }
            return Err(ServiceError::TooManyAttempts { retry_after_ms });
        }
        Ok(())
    }

    /// The account, if the password is its own. An unknown address costs the same argon2
    /// verification (against a dummy hash) and gets the same answer as a wrong password;
    /// both are audited, and a wrong password is listed in the account's history.
    async fn verify_signin_password(
        &self,
        account: Option<Account>,
        password: &str,
        client: &Client,
        device_id: Option<&str>,
    ) -> ServiceResult<Account> {
        let stored = account.as_ref().map_or_else(
            || self.hasher.dummy_hash.clone(),
            |a| a.password_hash.clone(),
        );
        let attempt = password.to_owned();
        let password_ok = self
            .hasher
            .argon2(move || password::verify(&attempt, &stored))
            .await?;
        let account = match account {
            Some(a) if password_ok => return Ok(a),
            account => account,
        };
        let account_id = account.as_ref().map(|a| a.id.as_str());
        let reason = if account_id.is_some() {
            "wrong_password"
        } else {
            "unknown_account"
        };
        let fx = Effects::audit(self.event(
            Some(client),
            account_id,
            "anonymous".to_owned(),
            "signin.failed",
            json!({ "reason": reason }),
        ));
        match account_id {
            Some(id) => {
                let row = self.sessions.login_row(
                    id,
                    client,
                    device_id,
                    false,
                    "wrong_password",
                    SignInMethod::Password,
                );
                self.store.record_failed_login(&row, &fx).await?;
            }
            None => self.store.append_audit(&fx).await?,
        }
        Err(ServiceError::InvalidCredentials)
    }

    /// Refuses a right password on a frozen account, or on one whose address is not
    /// confirmed yet (recorded in its history).
    async fn refuse_unusable_account(
        &self,
        account: &Account,
        client: &Client,
    ) -> ServiceResult<()> {
        if account.frozen_at.is_some() {
            return Err(ServiceError::AccountFrozen);
        }
        if account.email_confirmed_at.is_none() {
            let fx = Effects::audit(self.event(
                Some(client),
                Some(&account.id),
                "anonymous".into(),
                "signin.refused_unconfirmed",
                json!({}),
            ));
            let row = self.sessions.login_row(
                &account.id,
                client,
                None,
                false,
                "email_not_confirmed",
                SignInMethod::Password,
            );
            self.store.record_failed_login(&row, &fx).await?;
            return Err(ServiceError::EmailNotConfirmed);
        }
        Ok(())
    }

    /// A right password on an account with a second factor: stores a challenge (hash of a
    /// random token, with who is signing in for the later alert) and hands the token back
    /// with the ways (`methods`) to finish.
    async fn open_signin_challenge(
        &self,
        account: &Account,
        methods: Vec<&'static str>,
        client: &Client,
    ) -> ServiceResult<SignInOutcome> {
        let token = random_token();
        let now = self.now();
        let who = ChallengeClient {
            ip: client.ip.to_string(),
            device: client.device.summary(),
            location: crate::geo::Location::label(
                client.location.city.as_deref(),
                client.location.country.as_deref(),
            ),
        };
        let challenge = SignInChallenge {
            id: token_hash(&token),
            account_id: account.id.clone(),
            client: serde_json::to_string(&who).map_err(anyhow::Error::from)?,
            created_at: now,
            expires_at: now + CHALLENGE_TTL,
            attempts: 0,
            completed_at: None,
            alerted_at: None,
        };
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "signin.password_accepted",
            json!({ "second_factor": methods }),
        ));
        self.store.put_signin_challenge(&challenge, &fx).await?;
        Ok(SignInOutcome::SecondFactorRequired {
            challenge: token,
            methods,
        })
    }

    /// The open challenge behind a token, with its account; expired, used or exhausted
    /// challenges are refused.
    pub async fn open_challenge(&self, token: &str) -> ServiceResult<(SignInChallenge, Account)> {
        if token.is_empty() || token.len() > 128 {
            return Err(ServiceError::ChallengeExpired);
        }
        self.open_challenge_by_id(&token_hash(token)).await
    }

    pub async fn open_challenge_by_id(
        &self,
        id: &str,
    ) -> ServiceResult<(SignInChallenge, Account)> {
        let Some(challenge) = self.store.signin_challenge(id).await? else {
            return Err(ServiceError::ChallengeExpired);
        };
        if challenge.completed_at.is_some()
            || self.now() >= challenge.expires_at
            || challenge.attempts >= CHALLENGE_MAX_ATTEMPTS
        {
            return Err(ServiceError::ChallengeExpired);
        }
        let account = self
            .store
            .account_by_id(&challenge.account_id)
            .await?
            .ok_or(ServiceError::ChallengeExpired)?;
        if account.frozen_at.is_some() {
            return Err(ServiceError::AccountFrozen);
        }
        Ok((challenge, account))
    }

    /// Finishes a sign-in with an authenticator-app code or a backup code.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(account = tracing::field::Empty),
        err(level = "info")
    )]
    pub async fn sign_in_second_factor(
        &self,
        challenge_token: &str,
        code: &str,
        client: &Client,
    ) -> ServiceResult<SignedIn> {
        let (challenge, account) = self.open_challenge(challenge_token).await?;
        tracing::Span::current().record("account", account.id.as_str());
        if account.require_passkey {
            return Err(ServiceError::Forbidden(
                "passkey_required",
                "This account requires a passkey to sign in. Use your passkey or security key."
                    .into(),
            ));
        }
        let known_device = self.sessions.known_device(&account.id, client).await?;
        let device_id = known_device.as_ref().map(|d| d.id.clone());
        let ip_key = format!("ip:{}", client.ip);
        let key = Self::signin_factor_key(&account.id, known_device.as_ref());
        let keys = [
            (ip_key.clone(), self.throttles.ip_policy()),
            (key.clone(), self.throttles.account_policy()),
        ];
        if let Err((which, retry_after_ms)) =
            self.store.throttle_attempts(&keys, self.now()).await?
        {
            if which == 1 {
                self.record_throttled_signin(
                    &account.id,
                    client,
                    device_id.as_deref(),
                    "signin.second_factor_throttled",
                    retry_after_ms,
                )
                .await?;
            }
            return Err(ServiceError::TooManyAttempts { retry_after_ms });
        }
        match self
            .second_factors
            .check_second_factor_code(&account, code)
            .await?
        {
            Some(method) => {
                self.store.throttle_settle(&[key], &[ip_key]).await?;
                let mail = self.notices.factor_used_mail(&account, method, client);
                let extra = Effects {
                    audit: vec![],
                    mails: vec![mail],
                };
                self.sessions
                    .open_session(
                        &account,
                        client,
                        known_device,
                        SignInMethod::PasswordAnd(method),
                        Some(&challenge.id),
                        Some(extra),
                    )
                    .await
            }
            None => {
                let attempts = self.store.signin_challenge_failed(&challenge.id).await?;
                let alert = self
                    .throttles
                    .may_send(
                        &format!("alert:password_known:{}", account.id),
                        PASSWORD_KNOWN_ALERT_INTERVAL,
                    )
                    .await?;
                let mut fx = Effects::audit(self.event(
                    Some(client),
                    Some(&account.id),
                    "anonymous".into(),
                    "signin.second_factor_failed",
                    json!({"attempt": attempts, "owner_alerted": alert}),
                ));
                if alert {
                    fx = fx.with_mail(self.composer.compose(
                        Some(&account.id),
                        &account.email,
                        account.anti_phishing_code.as_deref(),
                        "A wrong sign-in code was entered",
                        &format!(
                            "Someone entered your correct password and then a wrong second-factor code, from {} ({}).\n\n\
                             If this was not you, your password is known to someone else: change it now and review your devices. \
                             (Further wrong codes within the hour are recorded in your login history without another mail.)",
                            client.device.summary(),
                            client.ip
                        ),
                        self.now(),
                    ));
                }
                let row = self.sessions.login_row(
                    &account.id,
                    client,
                    device_id.as_deref(),
                    false,
                    "wrong_second_factor",
                    SignInMethod::Password,
                );
                self.store.record_failed_login(&row, &fx).await?;
                Err(ServiceError::InvalidCode {
                    attempts_left: (CHALLENGE_MAX_ATTEMPTS - attempts).max(0),
                })
            }
        }
    }

    /// Alerts owners whose right password was not followed by a second factor within
    /// three minutes (the job calls this). Returns how many alerts were queued.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
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
                .throttles
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
                fx = fx.with_mail(self.notices.notice(
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
