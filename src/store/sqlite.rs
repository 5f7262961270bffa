//! SQLite: an embedded file, WAL journal, busy timeout, created if missing. All writes go
//! through a single-connection pool, so transactions never race each other for the write
//! lock; reads use their own pool and run in parallel under WAL.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::domain::backend::Backend;

pub struct SqliteStore {
    write: sqlx::SqlitePool,
    read: sqlx::SqlitePool,
}

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

sql_store!(SqliteStore, sqlx::Sqlite, for_update: "", skip_locked: "", notify_sql: "");

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
