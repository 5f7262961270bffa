//! Sign-in, session checks, sign-out, and the device and login lists.

use serde_json::json;

use super::{Client, Core, ServiceError, ServiceResult};
use crate::clock::{Millis, DAY, HOUR, MINUTE, SECOND};
use crate::domain::email::Email;
use crate::domain::password;
use crate::domain::secret::{random_token, token_hash};
use crate::domain::throttle::ThrottlePolicy;
use crate::store::{Device, Effects, Login, Session, SessionAuth, SignInRecord};

/// A session is marked active at most this often, so reads stay reads.
const TOUCH_INTERVAL: Millis = MINUTE;

/// What a successful sign-in hands back to the edge, which sets the cookies.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session_token: String,
    /// Set when this browser had no device cookie for this account yet.
    pub new_device_token: Option<String>,
    pub uid: String,
}

impl Core {
    fn account_policy(&self) -> ThrottlePolicy {
        ThrottlePolicy {
            free_failures: self.rules.signin_account_free_failures,
            window: self.rules.signin_window_minutes * MINUTE,
            max_delay: self.rules.signin_max_delay_minutes * MINUTE,
        }
    }

    fn ip_policy(&self) -> ThrottlePolicy {
        ThrottlePolicy {
            free_failures: self.rules.signin_ip_free_failures,
            ..self.account_policy()
        }
    }

    fn login_row(
        &self,
        account_id: &str,
        client: &Client,
        device_id: Option<&str>,
        success: bool,
        reason: &str,
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
        }
    }

    /// Email + password sign-in. Unknown email and wrong password give the same answer
    /// after the same work (an argon2 verification either way).
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: &Client,
    ) -> ServiceResult<SignedIn> {
        let email = Email::parse(email).map_err(|_| ServiceError::InvalidCredentials)?;
        let now = self.now();
        let ip_key = format!("ip:{}", client.ip);
        if let Err(wait) = self
            .store
            .throttle_attempt(&ip_key, &self.ip_policy(), now)
            .await?
        {
            return Err(ServiceError::TooManyAttempts {
                retry_after_ms: wait,
            });
        }
        let account = self.store.account_by_email(email.as_str()).await?;
        let known_device = match (&account, &client.device_token) {
            (Some(a), Some(token)) => {
                self.store
                    .device_by_token(&a.id, &token_hash(token))
                    .await?
            }
            _ => None,
        };
        // A browser that already signed in to this account has its own counter: strangers'
        // guesses cannot slow the owner's known devices down.
        let mut account_key = format!("acct:{}", self.key.mac("throttle", email.as_str()));
        if let Some(d) = &known_device {
            account_key.push_str(&format!(":dev:{}", d.id));
        }
        if let Err(wait) = self
            .store
            .throttle_attempt(&account_key, &self.account_policy(), now)
            .await?
        {
            if let Some(a) = &account {
                let fx = Effects::audit(self.event(
                    Some(client),
                    Some(&a.id),
                    "anonymous".into(),
                    "signin.throttled",
                    json!({"retry_after_ms": wait}),
                ));
                self.store
                    .record_failed_login(
                        &self.login_row(
                            &a.id,
                            client,
                            known_device.as_ref().map(|d| d.id.as_str()),
                            false,
                            "throttled",
                        ),
                        &fx,
                    )
                    .await?;
            }
            return Err(ServiceError::TooManyAttempts {
                retry_after_ms: wait,
            });
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
                let fx = Effects::audit(self.event(
                Some(client),
                account_id,
                "anonymous".to_owned(),
                "signin.failed",
                json!({"reason": if account_id.is_some() { "wrong_password" } else { "unknown_account" }}),
            ));
                match account_id {
                    Some(id) => {
                        let row = self.login_row(
                            id,
                            client,
                            known_device.as_ref().map(|d| d.id.as_str()),
                            false,
                            "wrong_password",
                        );
                        self.store.record_failed_login(&row, &fx).await?;
                    }
                    None => self.store.append_audit(&fx).await?,
                }
                return Err(ServiceError::InvalidCredentials);
            }
        };
        self.store.throttle_clear(&account_key).await?;
        self.store.throttle_refund(&ip_key).await?;
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
            self.store
                .record_failed_login(
                    &self.login_row(&account.id, client, None, false, "email_not_confirmed"),
                    &fx,
                )
                .await?;
            return Err(ServiceError::EmailNotConfirmed);
        }

        let now = self.now();
        let (device, device_is_new, new_device_token) = match known_device {
            Some(mut d) => {
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
                };
                (d, true, Some(token))
            }
        };
        let session_token = random_token();
        let session = Session {
            id: token_hash(&session_token),
            account_id: account.id.clone(),
            device_id: device.id.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.rules.session_absolute_hours * HOUR,
        };
        let login = self.login_row(&account.id, client, Some(&device.id), true, "signed_in");
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            format!("account:{}", account.uid),
            "signin.succeeded",
            json!({"device_id": device.id, "new_device": device_is_new}),
        ));
        self.store
            .record_sign_in(
                &SignInRecord {
                    device,
                    device_is_new,
                    session,
                    login,
                },
                &fx,
            )
            .await?;
        Ok(SignedIn {
            session_token,
            new_device_token,
            uid: account.uid,
        })
    }

    /// The live session behind a cookie. Expired sessions (idle or absolute) are ended on
    /// sight; a frozen account's sessions are refused.
    pub async fn authenticate(&self, session_token: &str) -> ServiceResult<SessionAuth> {
        let id = token_hash(session_token);
        let Some(auth) = self.store.session_auth(&id).await? else {
            return Err(ServiceError::Unauthenticated);
        };
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
                json!({"reason": reason}),
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
            format!("account:{}", auth.account.uid),
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
