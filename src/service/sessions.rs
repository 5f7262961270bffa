//! Sessions: opening one (with its device, login row and new-device mail), checking the
//! session behind a cookie, signing out, and the device and login lists.

use std::sync::Arc;

use serde_json::json;

use super::notices::Notices;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{Millis, SharedClock, DAY, HOUR, MINUTE, SECOND};
use crate::domain::rules::Rules;
use crate::domain::secret::{random_token, token_hash};
use crate::domain::sign_in::SignInMethod;
use crate::store::{
    Account, Device, Effects, Login, Session, SessionAuth, SharedStore, SignInRecord,
};

/// A session is marked active at most this often, so reads stay reads.
const TOUCH_INTERVAL: Millis = MINUTE;

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

/// Live sessions and the devices and logins behind them.
pub struct Sessions {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) rules: Rules,
    pub(crate) notices: Arc<Notices>,
}

impl Clocked for Sessions {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl Sessions {
    pub fn login_row(
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

    /// The device this browser already has for the account (by its device cookie).
    pub async fn known_device(
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

    /// Writes a new session (and its device and login row) for `account`, consuming the
    /// sign-in challenge if one is given.
    pub async fn open_session(
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
            fx.mails.push(
                self.notices
                    .new_device_mail(account, client, confirm_token.as_deref()),
            );
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

    /// The live session behind a cookie. Expired sessions (idle or absolute) are ended on
    /// sight; a frozen account's sessions are refused.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
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

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
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
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn devices(&self, auth: &SessionAuth) -> ServiceResult<Vec<Device>> {
        let since = self.now() - self.rules.device_history_days * DAY;
        Ok(self.store.devices(&auth.account.id, since).await?)
    }

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
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
