//! Storage, by area. Each area (`accounts`, `sessions`, `factors`, `step_up`, `changes`,
//! `api_keys`, `protection`, `outbox`, `audit`, `throttle`) is a trait with its row types in
//! `store/<area>.rs`; [`Store`] is all of them. The SQL of each area is a plain file,
//! `store/sql/<area>.rs`, written in the common subset (`$N` placeholders, integer Unix-ms
//! timestamps, UUIDs as text) against a backend alias `Db`, and compiled once per backend by
//! `sqlite.rs` and `postgres.rs`, whose `dialect` modules hold the only differences (row
//! locks, `NOTIFY`). Both implement the traits for one struct, [`SqlStore`].
//!
//! Every mutating method that matters for security takes [`Effects`]: the audit events and
//! mails that belong to the change are written in the same transaction (the outbox), so a
//! crash never leaves a change without its audit record or its notification.

use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::backend::Backend;
use crate::domain::mail_kind::MailKind;

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod changes;
pub(crate) mod constraint;
pub mod factors;
pub mod incidents;
pub mod operators;
pub mod outbox;
pub mod postgres;
pub mod protection;
pub mod sessions;
pub mod sqlite;
pub mod step_up;
pub mod support;
pub mod throttle;
pub mod withdrawals;

pub use accounts::{Account, AccountStore, Confirmation};
pub use api_keys::{ApiKeyAuth, ApiKeyRecord, ApiKeyStore};
pub use audit::AuditStore;
pub use changes::{ChangeStore, PendingChange, RecoveryRequest, WithdrawalLock};
pub use constraint::Constraint;
pub use factors::{FactorStore, PasskeyRecord, TotpRecord};
pub use incidents::IncidentStore;
pub use operators::{
    EnrolmentRecord, OperatorRecord, OperatorSession, OperatorStore, RecoveryRequestSummary,
};
pub use outbox::{OutboxMail, OutboxStore, WebhookDelivery, WebhookLogEntry};
pub use protection::{BlockedDevice, FreezeLinkRow, FreezeOutcome, Notification, ProtectionStore};
pub use sessions::{Device, Login, Session, SessionAuth, SessionStore, SignInRecord};
pub use step_up::{ActionCode, SignInChallenge, StepUpStore};
pub use support::{
    EmailChangeRecord, EmailChangeStore, EvidenceRecord, PasswordLink, RecoveryRecord,
    SupportStore, Ticket, TicketMessage,
};
pub use throttle::ThrottleStore;
pub use withdrawals::WithdrawalStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value (email, public UID, credential) is already taken.
    #[error("conflict on {0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Database(sqlx::Error),
    /// A stored value that does not decode (an unknown kind, a malformed list): the caller
    /// refuses, as an internal error, rather than guess.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    /// A column that does not decode into its type is corrupt data, not a database fault.
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::ColumnDecode { index, source } => {
                Self::Corrupt(format!("column {index}: {source}"))
            }
            e => Self::Database(e),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The pools of one database. SQLite writes through a one-connection pool and reads
/// through another; PostgreSQL uses one pool for both.
pub struct SqlStore<DB: sqlx::Database> {
    write: sqlx::Pool<DB>,
    read: sqlx::Pool<DB>,
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
    /// What the in-app inbox and webhooks show: the message alone, without the mail's
    /// freeze link (a bearer token that freezes the account) and anti-phishing code, which
    /// belong in the owner's mailbox, not in the platform's webhook logs.
    pub event_text: String,
    pub created_at: Millis,
    /// The single-use "Not you? Freeze your account" link this mail carries.
    pub freeze_link: Option<FreezeLink>,
    /// Also shown in the in-app inbox and pushed to webhooks. Off for mails that carry a
    /// code (confirmation, password change): those prove access to the mailbox and must
    /// not be readable from a signed-in session.
    pub inbox: bool,
    /// `Security` (always sent) or an optional kind the owner may switch off.
    pub kind: MailKind,
}

impl NewMail {
    /// Marks a mail as of an optional kind.
    pub fn optional(mut self, kind: MailKind) -> Self {
        self.kind = kind;
        self
    }

    /// Marks a mail that carries a code: mail only, never the inbox or webhooks.
    pub fn carrying_code(mut self) -> Self {
        self.inbox = false;
        self
    }
}

/// A freeze link as stored: the SHA-256 of its token, its account and its expiry.
#[derive(Debug, Clone)]
pub struct FreezeLink {
    pub token_hash: String,
    pub account_id: String,
    pub expires_at: Millis,
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

/// All storage areas together.
#[async_trait]
pub trait Store:
    AccountStore
    + SessionStore
    + ThrottleStore
    + AuditStore
    + OutboxStore
    + FactorStore
    + StepUpStore
    + ChangeStore
    + ApiKeyStore
    + ProtectionStore
    + OperatorStore
    + SupportStore
    + EmailChangeStore
    + WithdrawalStore
    + IncidentStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;
    async fn migrate(&self) -> anyhow::Result<()>;
    /// Calls `sink` with every invalidation another instance broadcasts (and `all` after a
    /// reconnect, when messages may have been missed) until `sink` returns `false`.
    /// SQLite runs one instance and has nothing to listen to.
    async fn listen_invalidations(&self, sink: InvalidationSink) -> anyhow::Result<()>;
    async fn close(&self);
}

pub type SharedStore = Arc<dyn Store>;

/// Receives cache invalidations; returns `false` to stop listening.
pub type InvalidationSink = Box<dyn Fn(&str) -> bool + Send + Sync>;

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
