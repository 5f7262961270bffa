//! PostgreSQL, for several instances on one database. Rows that serialise writers (the
//! audit chain's head, throttle counters) are locked with `FOR UPDATE`; outbox claims use
//! `FOR UPDATE SKIP LOCKED` so instances never take the same mail.
//!
//! The SQL is the shared `store/sql/*.rs`, compiled here against [`dialect`].

// `store/sql/*.rs` is compiled once per backend on purpose: each copy is checked
// against its own `dialect::Db`.
#![allow(clippy::duplicate_mod)]

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use async_trait::async_trait;

use crate::domain::backend::Backend;
use crate::store::{InvalidationSink, SqlStore, Store};

/// What PostgreSQL adds: row locks that serialise instances, and `NOTIFY`.
mod dialect {
    pub type Db = sqlx::Postgres;
    pub type Tx<'c> = sqlx::Transaction<'c, Db>;
    /// Appended to a `SELECT` that reads a row the transaction will write.
    pub const FOR_UPDATE: &str = "FOR UPDATE";
    /// Appended to an outbox claim's inner `SELECT`: instances never take the same row.
    pub const SKIP_LOCKED: &str = "FOR UPDATE SKIP LOCKED";
    /// The statement that tells other instances to drop cached keys (`$1`: what).
    pub const NOTIFY: Option<&str> = Some("SELECT pg_notify('rampart_cache', $1)");
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

/// The `NOTIFY` channel of cache invalidations.
const CHANNEL: &str = "rampart_cache";

pub type PostgresStore = SqlStore<sqlx::Postgres>;

impl PostgresStore {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
        Ok(Self {
            write: pool.clone(),
            read: pool,
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.write)
            .await?;
        Ok(())
    }

    async fn listen_invalidations(&self, sink: InvalidationSink) -> anyhow::Result<()> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.write).await?;
        listener.listen(CHANNEL).await?;
        tokio::spawn(async move {
            loop {
                // Wake up now and then to notice an app that has gone away.
                let Ok(received) =
                    tokio::time::timeout(Duration::from_secs(10), listener.try_recv()).await
                else {
                    if !sink("ping") {
                        return;
                    }
                    continue;
                };
                match received {
                    Ok(Some(n)) => {
                        if !sink(n.payload()) {
                            return;
                        }
                    }
                    // The connection dropped and was re-established: anything could have
                    // been missed, so forget everything cached.
                    Ok(None) => {
                        if !sink("all") {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("cache invalidation listener: {e}; retrying");
                        if !sink("all") {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }

    async fn close(&self) {
        self.write.close().await;
    }
}
