//! SQLite: an embedded file, WAL journal, busy timeout, created if missing. All writes go
//! through a single-connection pool, so transactions never race each other for the write
//! lock; reads use their own pool and run in parallel under WAL.
//!
//! The SQL is the shared `store/sql/*.rs`, compiled here against [`dialect`].

// `store/sql/*.rs` is compiled once per backend on purpose: each copy is checked
// against its own `dialect::Db`.
#![allow(clippy::duplicate_mod)]

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use async_trait::async_trait;

use crate::domain::backend::Backend;
use crate::store::{InvalidationSink, SqlStore, Store};

/// What SQLite differs in: nothing to lock (one writer at a time already), no `NOTIFY`
/// (one instance per file).
mod dialect {
    pub type Db = sqlx::Sqlite;
    pub type Tx<'c> = sqlx::Transaction<'c, Db>;
    /// Appended to a `SELECT` that reads a row the transaction will write.
    pub const FOR_UPDATE: &str = "";
    /// Appended to an outbox claim's inner `SELECT`.
    pub const SKIP_LOCKED: &str = "";
    /// The statement that tells other instances to drop cached keys (`$1`: what).
    pub const NOTIFY: Option<&str> = None;
}

#[path = "sql/accounts.rs"]
mod accounts;
#[path = "sql/api_keys.rs"]
mod api_keys;
#[path = "sql/audit.rs"]
mod audit;
#[path = "sql/changes.rs"]
mod changes;
#[path = "sql/effects.rs"]
mod effects;
#[path = "sql/factors.rs"]
mod factors;
#[path = "sql/incidents.rs"]
mod incidents;
#[path = "sql/operators.rs"]
mod operators;
#[path = "sql/outbox.rs"]
mod outbox;
#[path = "sql/protection.rs"]
mod protection;
#[path = "sql/sessions.rs"]
mod sessions;
#[path = "sql/step_up.rs"]
mod step_up;
#[path = "sql/support.rs"]
mod support;
#[path = "sql/throttle.rs"]
mod throttle;
#[path = "sql/withdrawals.rs"]
mod withdrawals;

pub type SqliteStore = SqlStore<sqlx::Sqlite>;

impl SqliteStore {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("invalid SQLite URL {url:?}: {e}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot open SQLite database {url:?}: {e}"))?;
        let readers = std::thread::available_parallelism().map_or(4, |n| n.get() * 2) as u32;
        let read = SqlitePoolOptions::new()
            .max_connections(readers)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { write, read })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.write)
            .await?;
        Ok(())
    }

    async fn listen_invalidations(&self, _sink: InvalidationSink) -> anyhow::Result<()> {
        Ok(())
    }

    async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}
