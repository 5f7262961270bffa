//! Reading the audit chain (appending is the effects writer's job).

use async_trait::async_trait;
use sqlx::Row as _;

use super::dialect::Db;
use super::effects::write_effects;
use crate::domain::audit::AuditRecord;
use crate::store::{AuditStore, Effects, SqlStore, StoreResult};

const AUDIT_COLUMNS: &str =
    "seq, at, account_id, actor, action, ip, device, detail, prev_hash, hash";

fn audit_record(row: &<Db as sqlx::Database>::Row) -> Result<AuditRecord, sqlx::Error> {
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        account_id: row.try_get("account_id")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        ip: row.try_get("ip")?,
        device: row.try_get("device")?,
        detail: row.try_get("detail")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

#[async_trait]
impl AuditStore for SqlStore<Db> {
    async fn append_audit(&self, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_events(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS}
             FROM audit_events
             WHERE seq > $1
             ORDER BY seq LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(audit_record).collect::<Result<_, _>>()?)
    }

    async fn audit_head(&self) -> StoreResult<(i64, String)> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.read)
            .await?;
        Ok((row.try_get("seq")?, row.try_get("hash")?))
    }

    async fn audit_for_account(
        &self,
        account_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<AuditRecord>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS}
             FROM audit_events
             WHERE account_id = $1
             ORDER BY seq DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(account_id)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(audit_record).collect::<Result<_, _>>()?)
    }

    async fn audit_since(
        &self,
        account_id: &str,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditRecord>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS}
             FROM audit_events
             WHERE account_id = $1 AND at >= $2
             ORDER BY seq LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(account_id)
            .bind(since)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(audit_record).collect::<Result<_, _>>()?)
    }
}
