//! PostgreSQL, for several instances on one database. Rows that serialise writers (the
//! audit chain's head, throttle counters) are locked with `FOR UPDATE`; outbox claims use
//! `FOR UPDATE SKIP LOCKED` so instances never take the same mail.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use crate::domain::backend::Backend;

/// The `NOTIFY` channel of cache invalidations.
const CHANNEL: &str = "rampart_cache";

pub struct PostgresStore {
    write: sqlx::PgPool,
    read: sqlx::PgPool,
}

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

sql_store!(PostgresStore, sqlx::Postgres, for_update: "FOR UPDATE", skip_locked: "FOR UPDATE SKIP LOCKED", notify_sql: "SELECT pg_notify('rampart_cache', $1)");

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
