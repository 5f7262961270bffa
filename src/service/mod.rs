//! Application services: each public function is one thing a person or the platform does
//! (register, confirm, sign in, …). They parse nothing (the edge gives them domain types or
//! raw strings they parse first), read time from the injected clock, and write every change
//! with its audit events and mails in one store call.
//!
//! One service per area, each holding only what it uses: the store, clock and settings it
//! needs, and `Arc`s of the lower services and shared components it calls. Dependencies
//! point one way (see ARCHITECTURE.md for the graph); `app::build` wires them into
//! [`Services`], which is what the HTTP edge, the jobs, the demo and the benchmarks receive.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod console;
pub mod email_change;
pub mod factors;
pub mod gateway;
pub mod hasher;
pub mod incidents;
pub mod key_cache;
pub mod notices;
pub mod passkeys;
pub mod pending;
pub mod protection;
pub mod recovery;
pub mod second_factors;
pub mod sessions;
pub mod sign_in;
pub mod step_up;
pub mod support;
pub mod throttles;
pub mod withdrawals;

use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::{Millis, SharedClock};
use crate::domain::device::DeviceInfo;
use crate::domain::rules::Rules;
use crate::domain::secret::{SecretBox, ServerKey};
use crate::domain::Invalid;
use crate::geo::{Geo, Location};
use crate::mail::Composer;
use crate::store::{Account, AuditEvent, SharedStore, StoreError};

/// What every service has: the clock it reads time from, and with it the audit-event
/// builder (every event carries the time it was made).
pub trait Clocked {
    fn clock(&self) -> &SharedClock;

    fn now(&self) -> Millis {
        self.clock().now()
    }

    /// An audit event at the current time.
    fn event(
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

    /// How an account appears as the actor of the events it causes itself.
    fn account_actor(account: &Account) -> String
    where
        Self: Sized,
    {
        format!("account:{}", account.uid)
    }
}

/// Every service, wired once by `app::build`, plus the few shared parts the edge reads
/// directly (settings for forms, the CSRF key, the geolocation database, the public URL).
#[derive(Clone)]
pub struct Services {
    pub store: SharedStore,
    pub clock: SharedClock,
    pub key: ServerKey,
    pub rules: Rules,
    pub geo: Arc<Geo>,
    pub composer: Composer,
    /// Encrypts TOTP seeds, HMAC key secrets and webhook secrets at rest.
    pub secret_box: Arc<SecretBox>,
    /// API keys ready to verify requests, kept coherent across instances.
    pub key_cache: Arc<key_cache::KeyCache>,
    pub invalidator: Arc<key_cache::CacheInvalidator>,
    pub accounts: Arc<accounts::Accounts>,
    pub sessions: Arc<sessions::Sessions>,
    pub signin: Arc<sign_in::SignIn>,
    pub step_up: Arc<step_up::StepUp>,
    pub pending_changes: Arc<pending::PendingChanges>,
    pub second_factors: Arc<second_factors::SecondFactors>,
    pub factors: Arc<factors::FactorSettings>,
    pub recovery: Arc<recovery::Recovery>,
    pub passkeys: Arc<passkeys::Passkeys>,
    pub api_keys: Arc<api_keys::ApiKeys>,
    pub gateway: Arc<gateway::Gateway>,
    pub protection: Arc<protection::Protection>,
    pub support: Arc<support::Support>,
    pub email_change: Arc<email_change::EmailChange>,
    pub operators: Arc<console::Operators>,
    pub console: Arc<console::Console>,
    pub withdrawals: Arc<withdrawals::Withdrawals>,
    pub incidents: Arc<incidents::Incidents>,
}

impl Services {
    pub fn now(&self) -> Millis {
        self.clock.now()
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
