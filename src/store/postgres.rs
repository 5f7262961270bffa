//! PostgreSQL, for several instances on one database. Rows that serialise writers (the
//! audit chain's head, throttle counters) are locked with `FOR UPDATE`; outbox claims use
//! `FOR UPDATE SKIP LOCKED` so instances never take the same mail.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use crate::config::Backend;

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

sql_store!(PostgresStore, sqlx::Postgres, for_update: "FOR UPDATE", skip_locked: "FOR UPDATE SKIP LOCKED");

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

    async fn close(&self) {
        self.write.close().await;
    }
}
