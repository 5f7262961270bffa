//! Sessions, devices, sign-ins and the login history.

use async_trait::async_trait;
use serde::Serialize;

use crate::clock::Millis;
use crate::domain::sign_in::SignInMethod;
use crate::store::{Account, Effects, StoreResult};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Device {
    pub id: String,
    pub account_id: String,
    #[serde(skip)]
    pub token_hash: Option<String>,
    pub fingerprint: String,
    pub model: String,
    pub os: String,
    pub browser: String,
    pub user_agent: String,
    pub ip: String,
    pub city: Option<String>,
    pub country: Option<String>,
    pub first_seen: Millis,
    pub last_active: Millis,
    /// On the owner's trusted-devices list (at most 3).
    pub trusted_at: Option<Millis>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub id: String,
    pub account_id: String,
    pub device_id: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
    /// The last time this session proved a second factor (sign-in or step-up).
    pub stepped_up_at: Option<Millis>,
    /// How it was opened.
    #[sqlx(try_from = "String")]
    pub method: SignInMethod,
    /// Set while a sign-in from an unrecognised device waits for its mailed confirmation
    /// (SHA-256 of the link's token); the session is unusable until then.
    pub confirm_token_hash: Option<String>,
    /// When it ended (signed out, expired, device removed, account frozen), if it did.
    pub ended_at: Option<Millis>,
}

/// A live session with its account, read in one query on every authenticated request.
#[derive(Debug, Clone)]
pub struct SessionAuth {
    pub session: Session,
    pub account: Account,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Login {
    pub id: String,
    pub account_id: String,
    pub success: bool,
    /// `signed_in`, `wrong_password`, `email_not_confirmed`, `throttled`.
    pub reason: String,
    pub ip: String,
    pub city: Option<String>,
    pub country: Option<String>,
    pub device_id: Option<String>,
    pub model: String,
    pub os: String,
    pub browser: String,
    pub at: Millis,
    #[sqlx(try_from = "String")]
    pub method: SignInMethod,
}

/// Everything a successful sign-in writes, in one transaction.
#[derive(Debug, Clone)]
pub struct SignInRecord {
    /// An existing device of the account (recognised by its device cookie) to refresh, or a
    /// new one to insert.
    pub device: Device,
    pub device_is_new: bool,
    pub session: Session,
    pub login: Login,
}

#[async_trait]
pub trait SessionStore {
    async fn record_sign_in(&self, record: &SignInRecord, fx: &Effects) -> StoreResult<()>;
    async fn record_failed_login(&self, login: &Login, fx: &Effects) -> StoreResult<()>;
    async fn device_by_token(
        &self,
        account_id: &str,
        token_hash: &str,
    ) -> StoreResult<Option<Device>>;
    /// The live (not ended) session with this id, with its account.
    async fn session_auth(&self, session_id: &str) -> StoreResult<Option<SessionAuth>>;
    /// Marks the session and its device as active at `now`.
    async fn touch_session(
        &self,
        session_id: &str,
        device_id: &str,
        now: Millis,
    ) -> StoreResult<()>;
    async fn end_session(
        &self,
        session_id: &str,
        reason: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// Devices active since `since`, most recent first.
    async fn devices(&self, account_id: &str, since: Millis) -> StoreResult<Vec<Device>>;
    async fn logins(&self, account_id: &str, limit: i64) -> StoreResult<Vec<Login>>;
}
