//! The gateway check (`/authz`): authenticating every signed request the platform
//! receives, and Security Center sessions acting at the gateway. The hot path reads keys
//! from the in-process cache (no database read on a hit, no write per request: last use is
//! recorded in batches by the timed job).

use std::net::IpAddr;
use std::sync::Arc;

use super::key_cache::{CachedKey, KeyCache};
use super::sessions::Sessions;
use super::{Clocked, ServiceError, ServiceResult};
use crate::clock::{Millis, SharedClock};
use crate::domain::api_key::{
    self, key_hint, parse_signed, required_permission, timestamp_ok, Allowlist, KeyAccess, KeyType,
    Permission, Permissions, Refusal, RouteRule, Verifier,
};
use crate::domain::secret::SecretBox;
use crate::store::SharedStore;

/// Who a request is, when it is allowed.
#[derive(Debug, Clone)]
pub struct Identity {
    pub uid: String,
    /// The key used, or empty for a session.
    pub api_key: String,
    pub permissions: String,
    /// `api_key` or `session`.
    pub via: &'static str,
    /// Set while a withdrawal lock is in force: when it ends (Unix ms).
    pub withdrawals_locked_until: Option<Millis>,
}

/// A refusal (with its reason) or a failure of ours.
#[derive(Debug)]
pub enum AuthzError {
    Refused(Refusal),
    Failed(ServiceError),
}

impl From<Refusal> for AuthzError {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

/// Decides, per request, whether a key (or a session) may do what it asks.
pub struct Gateway {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) secret_box: Arc<SecretBox>,
    pub(crate) key_cache: Arc<KeyCache>,
    pub(crate) gateway_routes: Vec<RouteRule>,
    pub(crate) sessions: Arc<Sessions>,
}

impl Clocked for Gateway {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl Gateway {
    fn load_key(&self, auth: crate::store::ApiKeyAuth) -> ServiceResult<Arc<CachedKey>> {
        let k = auth.key;
        let verifier = match k.key_type {
            KeyType::Hmac => {
                let sealed = k.secret_enc.as_deref().ok_or_else(|| {
                    ServiceError::Internal(anyhow::anyhow!("HMAC key without secret"))
                })?;
                let secret = self.secret_box.open(sealed, &k.api_key)?;
                Verifier::hmac(&String::from_utf8(secret).map_err(anyhow::Error::from)?)
            }
            other => Verifier::public_key(other, k.public_key.as_deref().unwrap_or_default())?,
        };
        let (permissions, allowlist, unusable) = match k.access {
            KeyAccess::Readable {
                permissions,
                allowlist,
            } => (permissions, allowlist, false),
            KeyAccess::Unreadable { why, .. } => {
                tracing::error!(api_key = %key_hint(&k.api_key), "stored API key settings unreadable, key refused: {why}");
                (Permissions::default(), Allowlist::default(), true)
            }
        };
        Ok(Arc::new(CachedKey {
            permissions,
            allowlist,
            unusable,
            expires_at: k.expires_at,
            frozen: auth.frozen,
            withdrawals_locked_until: auth.withdrawals_locked_until,
            uid: auth.uid,
            account_id: k.account_id,
            api_key: k.api_key,
            verifier,
        }))
    }

    /// The key from the cache, or from the database (one read) into the cache.
    async fn cached_key(&self, api_key: &str) -> Result<Option<Arc<CachedKey>>, ServiceError> {
        if let Some(k) = self.key_cache.get(api_key) {
            return Ok(Some(k));
        }
        let ticket = self.key_cache.begin_fill();
        let Some(auth) = self.store.api_key_auth(api_key).await? else {
            return Ok(None);
        };
        let entry = self.load_key(auth)?;
        self.key_cache.fill(ticket, entry.clone());
        Ok(Some(entry))
    }

    /// Authenticates a signed request (the gateway hook's work). Checks, in order: form,
    /// key, timing, signature, then (only for a proven signature) expiry, freeze, address
    /// and permission, so nothing about a key is told to someone who cannot sign with it.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug", Debug))]
    pub async fn authorize_signed(
        &self,
        api_key: Option<&str>,
        method: &str,
        path: &str,
        query: &str,
        body: &str,
        ip: IpAddr,
    ) -> Result<Identity, AuthzError> {
        let api_key = api_key
            .filter(|k| !k.is_empty())
            .ok_or(Refusal::MissingKey)?;
        let path = api_key::canonical_path(path)?;
        let req = parse_signed(query, body)?;
        if api_key.len() > 128 {
            return Err(Refusal::UnknownKey.into());
        }
        let key = self
            .cached_key(api_key)
            .await
            .map_err(AuthzError::Failed)?
            .ok_or(Refusal::UnknownKey)?;
        let now = self.now();
        if !timestamp_ok(&req, now) {
            return Err(Refusal::TimestampOutsideWindow.into());
        }
        if !key.verifier.verify(req.payload.as_bytes(), &req.signature) {
            return Err(Refusal::BadSignature.into());
        }
        if key.unusable {
            return Err(Refusal::KeyUnusable.into());
        }
        if key.expires_at.is_some_and(|t| now >= t) {
            return Err(Refusal::KeyExpired.into());
        }
        if key.frozen {
            return Err(Refusal::AccountFrozen.into());
        }
        if !key.allowlist.allows(ip) {
            self.key_cache.note_refused_ip(&key.api_key, now, ip);
            return Err(Refusal::IpNotAllowed.into());
        }
        let needed = required_permission(&self.gateway_routes, method, path)
            .ok_or(Refusal::RouteUnmapped)?;
        if !key.permissions.contains(needed) {
            return Err(Refusal::PermissionMissing(needed).into());
        }
        let locked_until = key.withdrawals_locked_until.filter(|&t| t > now);
        check_withdrawal_lock(needed, locked_until)?;
        self.key_cache.note_use(&key.api_key, now, ip);
        Ok(Identity {
            uid: key.uid.clone(),
            api_key: key.api_key.clone(),
            permissions: key.permissions.to_csv(),
            via: "api_key",
            withdrawals_locked_until: locked_until,
        })
    }

    /// The gateway decision for a request carrying a Security Center session cookie (the
    /// platform's own web app acting for its signed-in user): every permission, but the
    /// path must be canonical and withdrawals wait out any lock, exactly as for keys.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug", Debug))]
    pub async fn authorize_session(
        &self,
        session_token: &str,
        method: &str,
        path: &str,
    ) -> Result<Identity, AuthzError> {
        let path = api_key::canonical_path(path)?;
        let auth = self
            .sessions
            .authenticate(session_token)
            .await
            .map_err(AuthzError::Failed)?;
        let now = self.now();
        let locked_until = self
            .store
            .withdrawal_locks(&auth.account.id, now)
            .await
            .map_err(|e| AuthzError::Failed(e.into()))?
            .iter()
            .map(|l| l.until)
            .max();
        if let Some(needed) = required_permission(&self.gateway_routes, method, path) {
            check_withdrawal_lock(needed, locked_until)?;
        }
        Ok(Identity {
            uid: auth.account.uid,
            api_key: String::new(),
            permissions: session_permissions(),
            via: "session",
            withdrawals_locked_until: locked_until,
        })
    }
}

/// A request that needs `withdraw` waits out a withdrawal lock in force.
fn check_withdrawal_lock(needed: Permission, locked_until: Option<Millis>) -> Result<(), Refusal> {
    match locked_until {
        Some(until) if needed == Permission::Withdraw => Err(Refusal::WithdrawalsLocked { until }),
        _ => Ok(()),
    }
}

/// The permissions of a Security Center session at the gateway: all of them (the
/// platform's own web app acts for its signed-in user).
pub fn session_permissions() -> String {
    let mut p = Permissions::default();
    for x in Permission::ALL {
        p.insert(x);
    }
    p.to_csv()
}
