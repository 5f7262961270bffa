//! The gateway check (`/authz` and the gateway listener): deciding every request the
//! platform receives by its route's security type (public, key only, signed), and Security
//! Center sessions acting at the gateway. The hot path reads keys
//! from the in-process cache (no database read on a hit, no write per request: last use is
//! recorded in batches by the timed job).

use std::net::IpAddr;
use std::sync::Arc;

use super::key_cache::{CachedKey, KeyCache};
use super::sessions::Sessions;
use super::{Clocked, ServiceError, ServiceResult};
use crate::clock::{Millis, SharedClock};
use crate::domain::api_key::{
    self, key_hint, parse_signed, route_for, timestamp_ok, Allowlist, KeyAccess, KeyType,
    Permission, Permissions, Refusal, Route, RouteRule, Security, Verifier,
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

/// A request as the gateway sees it: the path exactly as sent, the query string without
/// `?`, the body (empty when none).
#[derive(Debug, Clone, Copy)]
pub struct GatewayRequest<'a> {
    pub api_key: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a str,
    pub ip: IpAddr,
}

/// What an allowed request is.
#[derive(Debug, Clone)]
pub enum Access {
    /// A public route: no key asked for, no identity given.
    Public,
    /// A key (proven by its signature on signed routes, by possession on key-only ones).
    Key(Identity),
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
    /// The key's verifier from its stored type and secret or public key.
    fn verifier(&self, k: &crate::store::ApiKeyRecord) -> anyhow::Result<Verifier> {
        match k.key_type {
            None => anyhow::bail!("stored key type unknown"),
            Some(KeyType::Hmac) => {
                let sealed = k
                    .secret_enc
                    .as_deref()
                    .ok_or_else(|| anyhow::anyhow!("HMAC key without secret"))?;
                let secret = self.secret_box.open(sealed, &k.api_key)?;
                Ok(Verifier::hmac(&String::from_utf8(secret)?))
            }
            Some(other) => Ok(Verifier::public_key(
                other,
                k.public_key.as_deref().unwrap_or_default(),
            )?),
        }
    }

    /// A cache entry for a stored key. A key whose stored type, secret or public key cannot
    /// be used gets no verifier and is refused (`key_unusable`) — one damaged row must not
    /// make the gateway fail for every request that names it.
    fn load_key(&self, auth: crate::store::ApiKeyAuth) -> ServiceResult<Arc<CachedKey>> {
        let k = auth.key;
        let verifier = match self.verifier(&k) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(api_key = %key_hint(&k.api_key), "stored API key cannot verify signatures, key refused: {e:#}");
                None
            }
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
            permissions_csv: permissions.to_csv(),
            permissions,
            allowlist,
            unusable: unusable || verifier.is_none(),
            expires_at: k.expires_at,
            frozen: auth.frozen,
            suspended: k.suspended_at.is_some(),
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

    /// Decides a request by its route (the gateway hook's work): a path that is not
    /// canonical or a route the table does not know is refused; public routes pass;
    /// key-only routes need a usable key; signed routes need its signature too.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug", Debug))]
    pub async fn authorize(&self, req: &GatewayRequest<'_>) -> Result<Access, AuthzError> {
        let path = api_key::canonical_path(req.path)?;
        let route =
            route_for(&self.gateway_routes, req.method, path).ok_or(Refusal::UnknownRoute)?;
        match route.security {
            Security::Public => Ok(Access::Public),
            Security::ApiKey => self.key_only(req, route).await.map(Access::Key),
            Security::Signed => self.signed(req, route).await.map(Access::Key),
        }
    }

    fn api_key<'a>(req: &GatewayRequest<'a>) -> Result<&'a str, Refusal> {
        req.api_key
            .filter(|k| !k.is_empty())
            .ok_or(Refusal::MissingKey)
    }

    async fn key(&self, api_key: &str) -> Result<Arc<CachedKey>, AuthzError> {
        if api_key.len() > 128 {
            return Err(Refusal::UnknownKey.into());
        }
        Ok(self
            .cached_key(api_key)
            .await
            .map_err(AuthzError::Failed)?
            .ok_or(Refusal::UnknownKey)?)
    }

    /// A key-only route (user data streams, some market data): the key must exist and be
    /// usable from here, with the route's permission; no signature is asked for.
    async fn key_only(
        &self,
        req: &GatewayRequest<'_>,
        route: Route,
    ) -> Result<Identity, AuthzError> {
        let key = self.key(Self::api_key(req)?).await?;
        Ok(self.admit(&key, route.permission, req.ip)?)
    }

    /// A signed route. Checks, in order: form, key, timing, signature, then (only for a
    /// proven signature) expiry, freeze, address and permission, so nothing about a key is
    /// told to someone who cannot sign with it.
    async fn signed(&self, req: &GatewayRequest<'_>, route: Route) -> Result<Identity, AuthzError> {
        let api_key = Self::api_key(req)?;
        let signed = parse_signed(req.query, req.body)?;
        let key = self.key(api_key).await?;
        if !timestamp_ok(&signed, self.now()) {
            return Err(Refusal::TimestampOutsideWindow.into());
        }
        let Some(verifier) = &key.verifier else {
            return Err(Refusal::KeyUnusable.into());
        };
        if !verifier.verify(signed.payload.as_bytes(), &signed.signature) {
            return Err(Refusal::BadSignature.into());
        }
        Ok(self.admit(&key, route.permission, req.ip)?)
    }

    /// What holds for every key whatever the route: readable settings, an allowed address,
    /// not expired, account not frozen, the permission, and no withdrawal during a lock.
    /// The address comes before expiry and freeze: on key-only routes the key is all a
    /// caller shows, and someone elsewhere who learnt it must not learn the account's state.
    fn admit(&self, key: &CachedKey, needed: Permission, ip: IpAddr) -> Result<Identity, Refusal> {
        let now = self.now();
        if key.unusable {
            return Err(Refusal::KeyUnusable);
        }
        if !key.allowlist.allows(ip) {
            self.key_cache.note_refused_ip(&key.api_key, now, ip);
            return Err(Refusal::IpNotAllowed);
        }
        if key.expires_at.is_some_and(|t| now >= t) {
            return Err(Refusal::KeyExpired);
        }
        if key.frozen {
            return Err(Refusal::AccountFrozen);
        }
        if key.suspended {
            return Err(Refusal::KeySuspended);
        }
        if !key.permissions.contains(needed) {
            return Err(Refusal::PermissionMissing(needed));
        }
        let locked_until = key.withdrawals_locked_until.filter(|&t| t > now);
        check_withdrawal_lock(needed, locked_until)?;
        self.key_cache.note_use(&key.api_key, now, ip);
        Ok(Identity {
            uid: key.uid.clone(),
            api_key: key.api_key.clone(),
            permissions: key.permissions_csv.clone(),
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
        if let Some(route) = route_for(&self.gateway_routes, method, path) {
            check_withdrawal_lock(route.permission, locked_until)?;
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
