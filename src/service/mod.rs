//! Application services: each public function is one thing a person or the platform does
//! (register, confirm, sign in, …). They parse nothing (the edge gives them domain types or
//! raw strings they parse first), read time from the injected clock, and write every change
//! with its audit events and mails in one store call.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod factors;
pub mod passkeys;
pub mod protection;
pub mod sessions;

use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::{Millis, SharedClock};
use crate::domain::device::DeviceInfo;
use crate::domain::rules::Rules;
use crate::domain::secret::ServerKey;
use crate::domain::Invalid;
use crate::geo::{Geo, Location};
use crate::mail::Composer;
use crate::store::{AuditEvent, SharedStore, StoreError};

/// What every service needs.
pub struct Core {
    pub store: SharedStore,
    pub clock: SharedClock,
    pub key: ServerKey,
    pub rules: Rules,
    pub geo: Arc<Geo>,
    pub composer: Composer,
    /// A real argon2id hash of a random password, verified against when the email is
    /// unknown, so that answer takes as long as a wrong password.
    pub dummy_hash: String,
    /// One argon2 computation per core at a time: each takes 19 MiB, so a burst of sign-ins
    /// queues here instead of exhausting memory, and the cores are not time-sliced between
    /// more hashes than they can run (which thrashes their caches).
    argon2_slots: Arc<tokio::sync::Semaphore>,
    /// Encrypts TOTP seeds at rest (key derived from the server key).
    pub secret_box: crate::domain::secret::SecretBox,
    /// The WebAuthn relying party (RP ID and origin from `public_url`).
    pub webauthn: webauthn_rs::Webauthn,
    /// API keys ready to verify requests, kept coherent across instances.
    pub key_cache: api_keys::KeyCache,
    /// Route → permission table of the gateway hook.
    pub gateway_routes: Vec<crate::domain::api_key::RouteRule>,
}

impl Core {
    pub fn new(
        store: SharedStore,
        clock: SharedClock,
        key: ServerKey,
        rules: Rules,
        geo: Arc<Geo>,
        composer: Composer,
    ) -> anyhow::Result<Self> {
        let dummy_hash = crate::domain::password::hash(&crate::domain::secret::random_token())?;
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let argon2_slots = Arc::new(tokio::sync::Semaphore::new(cores));
        let secret_box = crate::domain::secret::SecretBox::new(&key);
        let webauthn = passkeys::relying_party(&composer.public_url)?;
        Ok(Self {
            key_cache: api_keys::KeyCache::default(),
            gateway_routes: crate::domain::api_key::default_routes(),
            secret_box,
            webauthn,
            store,
            clock,
            key,
            rules,
            geo,
            composer,
            dummy_hash,
            argon2_slots,
        })
    }

    /// Runs argon2 work on a blocking thread, at most one per core at a time.
    pub(crate) async fn argon2<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> ServiceResult<T> {
        let _slot = self
            .argon2_slots
            .acquire()
            .await
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("argon2 slots closed: {e}")))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("blocking task failed: {e}")))
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// An audit event at the current time.
    pub fn event(
        &self,
        client: Option<&Client>,
        account_id: Option<&str>,
        actor: String,
        action: &str,
        detail: serde_json::Value,
    ) -> AuditEvent {
        AuditEvent {
            at: self.now(),
            account_id: account_id.map(str::to_owned),
            actor,
            action: action.to_owned(),
            ip: client.map(|c| c.ip.to_string()),
            device: client.map(|c| c.device.summary()),
            detail,
        }
    }
}

/// Who is on the other end of a request: source address (after trusted-proxy handling),
/// what the User-Agent says, and the device cookie if the browser sent one.
#[derive(Debug, Clone)]
pub struct Client {
    pub ip: IpAddr,
    pub user_agent: String,
    pub device: DeviceInfo,
    pub device_token: Option<String>,
    pub location: Location,
}

impl Client {
    pub fn new(ip: IpAddr, user_agent: &str, device_token: Option<String>, geo: &Geo) -> Self {
        Self {
            ip,
            user_agent: crate::domain::device::clean_user_agent(user_agent),
            device: DeviceInfo::from_user_agent(user_agent),
            device_token,
            location: geo.locate(ip),
        }
    }
}

impl DeviceInfo {
    /// "Chrome 118.0 on Windows 10 (Computer)", for audit events and mails.
    pub fn summary(&self) -> String {
        format!("{} on {} ({})", self.browser, self.os, self.model)
    }
}

/// Why a service refused. Each maps to one stable error code at the HTTP edge.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("email or password is wrong")]
    InvalidCredentials,
    #[error("the email address is not confirmed yet")]
    EmailNotConfirmed,
    #[error("too many attempts; retry in {retry_after_ms} ms")]
    TooManyAttempts { retry_after_ms: Millis },
    #[error("the code is not valid")]
    InvalidCode { attempts_left: i64 },
    #[error("the code has expired")]
    CodeExpired,
    #[error("the account is frozen")]
    AccountFrozen,
    #[error("not signed in")]
    Unauthenticated,
    #[error("the session has expired")]
    SessionExpired,
    /// A sensitive action needs a proof made within the last five minutes: the second
    /// factor, or on an account without one the password plus a mailed code.
    #[error("step-up required for {action}")]
    StepUpRequired {
        action: &'static str,
        proof: crate::domain::step_up::Proof,
    },
    /// The sign-in challenge (password step) is unknown, used or older than allowed.
    #[error("the sign-in attempt has expired")]
    ChallengeExpired,
    #[error("{1}")]
    NotFound(&'static str, String),
    #[error("{1}")]
    Conflict(&'static str, String),
    #[error("{1}")]
    Forbidden(&'static str, String),
    /// A WebAuthn ceremony failed (bad signature, wrong origin, unknown credential, …).
    #[error("passkey verification failed: {0}")]
    PasskeyFailed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type ServiceResult<T> = Result<T, ServiceError>;
