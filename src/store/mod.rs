//! Storage, by area. Each area is a trait; [`Store`] is all of them. Two native
//! implementations share one body of SQL (the common subset: `$N` placeholders, integer
//! Unix-ms timestamps, UUIDs as text) through the [`sql_store!`] macro in `sql.rs`:
//! [`sqlite::SqliteStore`] and [`postgres::PostgresStore`], each with its own migrations.
//!
//! Every mutating method that matters for security takes [`Effects`]: the audit events and
//! mails that belong to the change are written in the same transaction (the outbox), so a
//! crash never leaves a change without its audit record or its notification.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::clock::Millis;
use crate::config::Backend;
use crate::domain::audit::AuditRecord;
use crate::domain::throttle::ThrottlePolicy;

#[macro_use]
mod sql;
pub mod postgres;
pub mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value (email, public UID) is already taken.
    #[error("conflict on {0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Account {
    pub id: String,
    pub uid: String,
    pub email: String,
    pub password_hash: String,
    pub email_confirmed_at: Option<Millis>,
    pub anti_phishing_code: Option<String>,
    pub created_at: Millis,
    pub frozen_at: Option<Millis>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Confirmation {
    pub account_id: String,
    pub code_mac: String,
    pub expires_at: Millis,
    pub attempts: i64,
    pub created_at: Millis,
}

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
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub id: String,
    pub account_id: String,
    pub device_id: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
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
}

/// An audit event to append; the store assigns `seq` and the chain hash.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: Millis,
    pub account_id: Option<String>,
    /// `account:<uid>`, `anonymous`, `system`, `operator:<name>`.
    pub actor: String,
    /// Dotted verb, e.g. `signin.succeeded`.
    pub action: String,
    pub ip: Option<String>,
    pub device: Option<String>,
    pub detail: serde_json::Value,
}

/// A mail to queue in the outbox.
#[derive(Debug, Clone)]
pub struct NewMail {
    pub id: String,
    pub account_id: Option<String>,
    pub to: String,
    pub subject: String,
    pub body_text: String,
    pub created_at: Millis,
}

/// A mail as the outbox holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxMail {
    pub id: String,
    pub account_id: Option<String>,
    pub to_addr: String,
    pub subject: String,
    pub body_text: String,
    pub created_at: Millis,
    pub attempts: i64,
    pub sent_at: Option<Millis>,
    pub dead_at: Option<Millis>,
    pub last_error: Option<String>,
}

/// What a change brings with it, written in the change's own transaction.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    pub audit: Vec<AuditEvent>,
    pub mails: Vec<NewMail>,
}

impl Effects {
    pub fn audit(event: AuditEvent) -> Self {
        Self {
            audit: vec![event],
            mails: Vec::new(),
        }
    }
    pub fn with_mail(mut self, mail: NewMail) -> Self {
        self.mails.push(mail);
        self
    }
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
pub trait AccountStore {
    /// Inserts an account with its pending email confirmation.
    async fn create_account(
        &self,
        account: &Account,
        confirmation: &Confirmation,
        fx: &Effects,
    ) -> StoreResult<()>;
    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>>;
    async fn account_by_id(&self, id: &str) -> StoreResult<Option<Account>>;
    async fn confirmation(&self, account_id: &str) -> StoreResult<Option<Confirmation>>;
    /// Replaces the pending confirmation (a new code was sent).
    async fn replace_confirmation(
        &self,
        confirmation: &Confirmation,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// Counts one wrong code; returns the attempts so far.
    async fn confirmation_failed(&self, account_id: &str, fx: &Effects) -> StoreResult<i64>;
    async fn confirm_email(&self, account_id: &str, now: Millis, fx: &Effects) -> StoreResult<()>;
    async fn set_anti_phishing_code(
        &self,
        account_id: &str,
        code: &str,
        fx: &Effects,
    ) -> StoreResult<()>;
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

#[async_trait]
pub trait ThrottleStore {
    /// Atomically: if `key` may try now under `policy`, charges the try as a failure and
    /// answers `Ok(())`; otherwise answers `Err(retry_after_ms)` without charging. Charging
    /// before the password is checked means parallel guesses cannot slip past the counter.
    async fn throttle_attempt(
        &self,
        key: &str,
        policy: &ThrottlePolicy,
        now: Millis,
    ) -> StoreResult<Result<(), Millis>>;
    /// Forgets the failures of `key` (after a successful sign-in).
    async fn throttle_clear(&self, key: &str) -> StoreResult<()>;
    /// Gives back one charged try (it turned out to be a success), so busy shared
    /// addresses are not slowed down by their own successful sign-ins.
    async fn throttle_refund(&self, key: &str) -> StoreResult<()>;
}

#[async_trait]
pub trait AuditStore {
    /// Appends events on their own (when no other change goes with them).
    async fn append_audit(&self, fx: &Effects) -> StoreResult<()>;
    /// Events with `seq > after`, in order, at most `limit`.
    async fn audit_events(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditRecord>>;
    async fn audit_for_account(
        &self,
        account_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<AuditRecord>>;
    /// The last event's sequence number and hash, as the chain head records them.
    async fn audit_head(&self) -> StoreResult<(i64, String)>;
}

#[async_trait]
pub trait OutboxStore {
    /// Leases up to `limit` due mails until `lease_until`; a crashed worker's lease runs out
    /// and another worker takes the mail.
    async fn claim_mails(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: i64,
    ) -> StoreResult<Vec<OutboxMail>>;
    async fn mail_sent(&self, id: &str, now: Millis) -> StoreResult<()>;
    /// A failed try: retry at `retry_at`, or give up (`dead`).
    async fn mail_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Millis,
        dead: bool,
        now: Millis,
    ) -> StoreResult<()>;
    /// Newest first, for the local mailbox page and tests.
    async fn recent_mails(&self, limit: i64) -> StoreResult<Vec<OutboxMail>>;
}

/// All storage areas together.
#[async_trait]
pub trait Store:
    AccountStore + SessionStore + ThrottleStore + AuditStore + OutboxStore + Send + Sync + 'static
{
    fn backend(&self) -> Backend;
    async fn migrate(&self) -> anyhow::Result<()>;
    async fn close(&self);
}

pub type SharedStore = Arc<dyn Store>;

/// Connects to the database the URL names (creating a SQLite file if missing) and applies
/// pending migrations.
pub async fn connect(url: &str) -> anyhow::Result<SharedStore> {
    let store: SharedStore = match Backend::of(url)? {
        Backend::Sqlite => Arc::new(sqlite::SqliteStore::connect(url).await?),
        Backend::Postgres => Arc::new(postgres::PostgresStore::connect(url).await?),
    };
    store.migrate().await?;
    Ok(store)
}

/// `true` when a sqlx error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
