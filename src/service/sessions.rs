//! Sign-in (password, then a second factor when the account has one), session checks,
//! sign-out, and the device and login lists.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Client, Core, ServiceError, ServiceResult};
use crate::clock::{Millis, DAY, HOUR, MINUTE, SECOND};
use crate::domain::email::Email;
use crate::domain::password;
use crate::domain::secret::{random_token, token_hash};
use crate::domain::sign_in::SignInMethod;
use crate::domain::throttle::ThrottlePolicy;
use crate::store::{
    Account, Device, Effects, Login, Session, SessionAuth, SignInChallenge, SignInRecord,
};

/// A session is marked active at most this often, so reads stay reads.
const TOUCH_INTERVAL: Millis = MINUTE;
/// How long a correct password waits for its second factor.
pub const CHALLENGE_TTL: Millis = 5 * MINUTE;
/// Wrong second-factor codes allowed on one challenge.
pub const CHALLENGE_MAX_ATTEMPTS: i64 = 5;
/// "Someone has your password" mails (a wrong code after the right password, a sign-in
/// left unfinished) go to an account at most this often, however many tries an attacker
/// makes; every try is still audited and listed in the login history.
pub const PASSWORD_KNOWN_ALERT_INTERVAL: Millis = HOUR;

/// What a successful sign-in hands back to the edge, which sets the cookies.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session_token: String,
    /// Set when this browser had no device cookie for this account yet.
    pub new_device_token: Option<String>,
    pub uid: String,
    /// The session works only after the mailed new-device confirmation is clicked.
    pub needs_confirmation: bool,
}

/// The answer to a correct password.
#[derive(Debug, Clone)]
pub enum SignInOutcome {
    SignedIn(SignedIn),
    /// The account has a second factor: finish with `POST /api/v1/sessions/second-factor`
    /// (or the passkey ceremony) quoting `challenge`.
    SecondFactorRequired {
        challenge: String,
        methods: Vec<&'static str>,
    },
}

/// The client that typed the password, kept with the challenge for the alert mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChallengeClient {
    pub ip: String,
    pub device: String,
    pub location: String,
}

impl Core {
    pub(crate) fn account_policy(&self) -> ThrottlePolicy {
        ThrottlePolicy {
            free_failures: self.rules.signin_account_free_failures,
            window: self.rules.signin_window_minutes * MINUTE,
            max_delay: self.rules.signin_max_delay_minutes * MINUTE,
        }
    }

    pub(crate) fn ip_policy(&self) -> ThrottlePolicy {
        ThrottlePolicy {
            free_failures: self.rules.signin_ip_free_failures,
            ..self.account_policy()
        }
    }

    /// The second-factor counter for a sign-in: per account for browsers the account has
    /// never seen, and one per known device (by its device cookie), so strangers holding
    /// the password cannot slow down the owner's own devices. Separate from the password
    /// counters, which a right password clears.
    pub(crate) fn signin_factor_key(account_id: &str, known_device: Option<&Device>) -> String {
        match known_device {
            Some(d) => format!("2fa:{account_id}:dev:{}", d.id),
            None => format!("2fa:{account_id}"),
        }
    }

    /// Charges one second-factor try made from a signed-in session (step-up, authenticator
    /// enrolment or reset) against that session's own counter, never the account's sign-in
    /// counters: a thief guessing in a stolen session slows only that session, and
    /// strangers guessing at the sign-in never stop the owner's live session. A refusal is
    /// audited (`{action}.throttled`). Returns the key to clear after a success.
    pub(crate) async fn throttle_session_factor(
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
    pub(crate) async fn may_send(&self, key: &str, interval: Millis) -> ServiceResult<bool> {
        Ok(self
            .store
            .once_per_interval(key, interval, self.now())
            .await?)
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
        let row = self.login_row(
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

    pub(crate) fn login_row(
        &self,
        account_id: &str,
        client: &Client,
        device_id: Option<&str>,
        success: bool,
        reason: &str,
        method: SignInMethod,
    ) -> Login {
        Login {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account_id.to_owned(),
            success,
            reason: reason.to_owned(),
            ip: client.ip.to_string(),
            city: client.location.city.clone(),
            country: client.location.country.clone(),
            device_id: device_id.map(str::to_owned),
            model: client.device.model.clone(),
            os: client.device.os.clone(),
            browser: client.device.browser.clone(),
            at: self.now(),
            method,
        }
    }

    pub(crate) fn account_actor(account: &Account) -> String {
        format!("account:{}", account.uid)
    }

    /// The device this browser already has for the account (by its device cookie).
    pub(crate) async fn known_device(
        &self,
        account_id: &str,
        client: &Client,
    ) -> ServiceResult<Option<Device>> {
        Ok(match &client.device_token {
            Some(token) => {
                self.store
                    .device_by_token(account_id, &token_hash(token))
                    .await?
            }
            None => None,
        })
    }

    /// Throttles a try on every key at once: the source address and, when known, the
    /// account (per known device). Charged before the secret is checked.
    pub(crate) async fn throttle(&self, keys: &[(String, ThrottlePolicy)]) -> ServiceResult<()> {
        match self.store.throttle_attempts(keys, self.now()).await? {
            Ok(_) => Ok(()),
            Err((_, wait)) => Err(ServiceError::TooManyAttempts {
                retry_after_ms: wait,
            }),
        }
    }

    /// Email + password. Unknown email and wrong password give the same answer after the
    /// same work (an argon2 verification either way). A right password on an account with
    /// a second factor opens a challenge instead of a session.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: &Client,
    ) -> ServiceResult<SignInOutcome> {
        let email = Email::parse(email).map_err(|_| ServiceError::InvalidCredentials)?;
        let ip_key = format!("ip:{}", client.ip);
        let account = self.store.account_by_email(email.as_str()).await?;
        let known_device = match &account {
            Some(a) => self.known_device(&a.id, client).await?,
            None => None,
        };
        // A browser that already signed in to this account has its own counter: strangers'
        // guesses cannot slow the owner's known devices down.
        let mut account_key = format!("acct:{}", self.key.mac("throttle", email.as_str()));
        if let Some(d) = &known_device {
            account_key.push_str(&format!(":dev:{}", d.id));
        }
        let device_id = known_device.as_ref().map(|d| d.id.clone());
        // Both counters in one transaction, charged before the password is checked.
        let keys = [
            (ip_key.clone(), self.ip_policy()),
            (account_key.clone(), self.account_policy()),
        ];
        if let Err((which, retry_after_ms)) =
            self.store.throttle_attempts(&keys, self.now()).await?
        {
            if let (1, Some(a)) = (which, &account) {
                self.record_throttled_signin(
                    &a.id,
                    client,
                    device_id.as_deref(),
                    "signin.throttled",
                    retry_after_ms,
                )
                .await?;
            }
            return Err(ServiceError::TooManyAttempts { retry_after_ms });
        }
        let stored = account
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |a| a.password_hash.clone());
        let attempt = password.to_owned();
        let password_ok = self
            .argon2(move || password::verify(&attempt, &stored))
            .await?;
        let account = match account {
            Some(a) if password_ok => a,
            account => {
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
                        let row = self.login_row(
                            id,
                            client,
                            device_id.as_deref(),
                            false,
                            "wrong_password",
                            SignInMethod::Password,
                        );
                        self.store.record_failed_login(&row, &fx).await?;
                    }
                    None => self.store.append_audit(&fx).await?,
                }
                return Err(ServiceError::InvalidCredentials);
            }
        };
        self.store
            .throttle_settle(&[account_key], &[ip_key])
            .await?;
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
            let row = self.login_row(
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

        let factors = self.factors(&account.id).await?;
        if factors.any() {
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
                Self::account_actor(&account),
                "signin.password_accepted",
                json!({"second_factor": factors.methods(account.require_passkey)}),
            ));
            self.store.put_signin_challenge(&challenge, &fx).await?;
            return Ok(SignInOutcome::SecondFactorRequired {
                challenge: token,
                methods: factors.methods(account.require_passkey),
            });
        }
        let signed = self
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

    /// Writes a new session (and its device and login row) for `account`, consuming the
    /// sign-in challenge if one is given.
    pub(crate) async fn open_session(
        &self,
        account: &Account,
        client: &Client,
        known_device: Option<Device>,
        method: SignInMethod,
        challenge_id: Option<&str>,
        extra: Option<Effects>,
    ) -> ServiceResult<SignedIn> {
        let now = self.now();
        let mut moved_country = false;
        let (device, device_is_new, new_device_token) = match known_device {
            Some(mut d) => {
                // A known but untrusted device turning up in another country is confirmed
                // again; trusted devices never are.
                moved_country = d.trusted_at.is_none()
                    && matches!((&d.country, &client.location.country), (Some(was), Some(now)) if was != now);
                d.fingerprint = client.device.fingerprint.clone();
                d.model = client.device.model.clone();
                d.os = client.device.os.clone();
                d.browser = client.device.browser.clone();
                d.user_agent = client.user_agent.clone();
                d.ip = client.ip.to_string();
                d.city = client.location.city.clone();
                d.country = client.location.country.clone();
                d.last_active = now;
                (d, false, None)
            }
            None => {
                let token = random_token();
                let d = Device {
                    id: uuid::Uuid::new_v4().to_string(),
                    account_id: account.id.clone(),
                    token_hash: Some(token_hash(&token)),
                    fingerprint: client.device.fingerprint.clone(),
                    model: client.device.model.clone(),
                    os: client.device.os.clone(),
                    browser: client.device.browser.clone(),
                    user_agent: client.user_agent.clone(),
                    ip: client.ip.to_string(),
                    city: client.location.city.clone(),
                    country: client.location.country.clone(),
                    first_seen: now,
                    last_active: now,
                    trusted_at: None,
                };
                (d, true, Some(token))
            }
        };
        if self
            .store
            .fingerprint_blocked(&account.id, &client.device.fingerprint)
            .await?
        {
            let fx = Effects::audit(self.event(
                Some(client),
                Some(&account.id),
                "anonymous".into(),
                "signin.device_blocked",
                json!({}),
            ));
            let row = self.login_row(&account.id, client, None, false, "device_blocked", method);
            self.store.record_failed_login(&row, &fx).await?;
            return Err(ServiceError::Forbidden(
                "device_blocked",
                "This device was removed and blocked by the account's owner. If that was you, contact support.".into(),
            ));
        }
        // A device never seen on an account that has others must be confirmed from the
        // owner's mailbox before its session works.
        let needs_confirmation = self.rules.new_device_confirmation
            && ((device_is_new && self.store.has_devices(&account.id).await?) || moved_country);
        let confirm_token = needs_confirmation.then(random_token);
        let session_token = random_token();
        let proved_second_factor = method.proves_second_factor();
        let session = Session {
            id: token_hash(&session_token),
            account_id: account.id.clone(),
            device_id: device.id.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.rules.session_absolute_hours * HOUR,
            stepped_up_at: proved_second_factor.then_some(now),
            method,
            confirm_token_hash: confirm_token.as_deref().map(token_hash),
            ended_at: None,
        };
        let login = self.login_row(
            &account.id,
            client,
            Some(&device.id),
            true,
            "signed_in",
            method,
        );
        let mut fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "signin.succeeded",
            json!({"device_id": device.id, "new_device": device_is_new, "method": method.as_str()}),
        ));
        if let Some(extra) = extra {
            fx.audit.extend(extra.audit);
            fx.mails.extend(extra.mails);
        }
        if device_is_new || confirm_token.is_some() {
            fx.mails
                .push(self.new_device_mail(account, client, confirm_token.as_deref()));
        }
        let record = SignInRecord {
            device,
            device_is_new,
            session,
            login,
        };
        if !self
            .store
            .complete_sign_in(challenge_id, &record, &fx)
            .await?
        {
            return Err(ServiceError::ChallengeExpired);
        }
        Ok(SignedIn {
            session_token,
            new_device_token,
            uid: account.uid.clone(),
            needs_confirmation,
        })
    }

    /// The open challenge behind a token, with its account; expired, used or exhausted
    /// challenges are refused.
    pub(crate) async fn open_challenge(
        &self,
        token: &str,
    ) -> ServiceResult<(SignInChallenge, Account)> {
        if token.is_empty() || token.len() > 128 {
            return Err(ServiceError::ChallengeExpired);
        }
        self.open_challenge_by_id(&token_hash(token)).await
    }

    pub(crate) async fn open_challenge_by_id(
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
    pub async fn sign_in_second_factor(
        &self,
        challenge_token: &str,
        code: &str,
        client: &Client,
    ) -> ServiceResult<SignedIn> {
        let (challenge, account) = self.open_challenge(challenge_token).await?;
        if account.require_passkey {
            return Err(ServiceError::Forbidden(
                "passkey_required",
                "This account requires a passkey to sign in. Use your passkey or security key."
                    .into(),
            ));
        }
        let known_device = self.known_device(&account.id, client).await?;
        let device_id = known_device.as_ref().map(|d| d.id.clone());
        let ip_key = format!("ip:{}", client.ip);
        let key = Self::signin_factor_key(&account.id, known_device.as_ref());
        let keys = [
            (ip_key.clone(), self.ip_policy()),
            (key.clone(), self.account_policy()),
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
        match self.check_second_factor_code(&account, code).await? {
            Some(method) => {
                self.store.throttle_settle(&[key], &[ip_key]).await?;
                let mail = self.factor_used_mail(&account, method, client);
                let extra = Effects {
                    audit: vec![],
                    mails: vec![mail],
                };
                self.open_session(
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
                let row = self.login_row(
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

    /// The live session behind a cookie. Expired sessions (idle or absolute) are ended on
    /// sight; a frozen account's sessions are refused.
    pub async fn authenticate(&self, session_token: &str) -> ServiceResult<SessionAuth> {
        let id = token_hash(session_token);
        let Some(auth) = self.store.session_auth(&id).await? else {
            return Err(ServiceError::Unauthenticated);
        };
        if auth.session.ended_at.is_some() {
            // A freeze ends every session; say so rather than just "sign in".
            return Err(if auth.account.frozen_at.is_some() {
                ServiceError::AccountFrozen
            } else {
                ServiceError::Unauthenticated
            });
        }
        if auth.session.confirm_token_hash.is_some() {
            return Err(ServiceError::Forbidden(
                "device_confirmation_required",
                "This device is new to the account: click the confirmation link we mailed to the account's address.".into(),
            ));
        }
        let now = self.now();
        let idle = now - auth.session.last_seen_at >= self.rules.session_idle_minutes * MINUTE;
        if idle || now >= auth.session.expires_at {
            let reason = if idle {
                "idle_timeout"
            } else {
                "absolute_timeout"
            };
            let fx = Effects::audit(self.event(
                None,
                Some(&auth.account.id),
                "system".into(),
                "session.expired",
                json!({ "reason": reason }),
            ));
            self.store.end_session(&id, reason, now, &fx).await?;
            return Err(ServiceError::SessionExpired);
        }
        if auth.account.frozen_at.is_some() {
            return Err(ServiceError::AccountFrozen);
        }
        if now - auth.session.last_seen_at >= TOUCH_INTERVAL {
            self.store
                .touch_session(&id, &auth.session.device_id, now)
                .await?;
        }
        Ok(auth)
    }

    pub async fn sign_out(&self, auth: &SessionAuth, client: &Client) -> ServiceResult<()> {
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&auth.account.id),
            Self::account_actor(&auth.account),
            "signout",
            json!({"device_id": auth.session.device_id}),
        ));
        self.store
            .end_session(&auth.session.id, "signed_out", self.now(), &fx)
            .await?;
        Ok(())
    }

    /// Devices active within the device-history window (90 days by default).
    pub async fn devices(&self, auth: &SessionAuth) -> ServiceResult<Vec<Device>> {
        let since = self.now() - self.rules.device_history_days * DAY;
        Ok(self.store.devices(&auth.account.id, since).await?)
    }

    pub async fn logins(&self, auth: &SessionAuth, limit: i64) -> ServiceResult<Vec<Login>> {
        Ok(self
            .store
            .logins(&auth.account.id, limit.clamp(1, 500))
            .await?)
    }
}

/// Seconds to put in a `Retry-After` header (at least 1).
pub fn retry_after_secs(ms: Millis) -> i64 {
    ((ms + SECOND - 1) / SECOND).max(1)
}
