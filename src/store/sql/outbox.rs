//! The mail outbox and webhook deliveries: claims with a lease, success, retry.

use async_trait::async_trait;
use sqlx::Row as _;

use super::dialect::{Db, SKIP_LOCKED};
use crate::clock::Millis;
use crate::store::{
    OutboxMail, OutboxStore, SqlStore, StoreResult, WebhookDelivery, WebhookLogEntry,
};

const MAIL_COLUMNS: &str = "id, account_id, to_addr, subject, body_text, created_at, attempts, \
     sent_at, dead_at, last_error";

#[async_trait]
impl OutboxStore for SqlStore<Db> {
    async fn claim_mails(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: i64,
    ) -> StoreResult<Vec<OutboxMail>> {
        let sql = format!(
            "UPDATE outbox
             SET lease_until = $1, attempts = attempts + 1
             WHERE id IN (SELECT id FROM outbox
                          WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $2
                            AND (lease_until IS NULL OR lease_until <= $3)
                          ORDER BY created_at, id
                          LIMIT $4 {SKIP_LOCKED})
             RETURNING {MAIL_COLUMNS}"
        );
        let mut mails: Vec<OutboxMail> = sqlx::query_as(&sql)
            .bind(lease_until)
            .bind(now)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.write)
            .await?;
        mails.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(mails)
    }

    async fn mail_sent(&self, id: &str, now: Millis) -> StoreResult<()> {
        sqlx::query(
            "UPDATE outbox
             SET sent_at = $1, lease_until = NULL, last_error = NULL
             WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn mail_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Millis,
        dead: bool,
        now: Millis,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE outbox
             SET last_error = $1, next_attempt_at = $2, lease_until = NULL, dead_at = $3
             WHERE id = $4",
        )
        .bind(error)
        .bind(retry_at)
        .bind(if dead { Some(now) } else { None })
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn recent_mails(&self, limit: i64) -> StoreResult<Vec<OutboxMail>> {
        let sql = format!(
            "SELECT {MAIL_COLUMNS}
             FROM outbox
             ORDER BY created_at DESC, id DESC LIMIT $1"
        );
        Ok(sqlx::query_as(&sql)
            .bind(limit)
            .fetch_all(&self.read)
            .await?)
    }

    async fn add_webhook_endpoint(
        &self,
        id: &str,
        url: &str,
        secret_enc: &str,
        now: Millis,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, url, secret_enc, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(url)
        .bind(secret_enc)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn claim_webhooks(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let sql = format!(
            "UPDATE webhook_deliveries
             SET lease_until = $1, attempts = attempts + 1
             WHERE id IN (SELECT id FROM webhook_deliveries
                          WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $2
                            AND (lease_until IS NULL OR lease_until <= $3)
                          ORDER BY created_at, id
                          LIMIT $4 {SKIP_LOCKED})
             RETURNING id, endpoint_id, event, attempts"
        );
        let rows = sqlx::query(&sql)
            .bind(lease_until)
            .bind(now)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.write)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let endpoint_id: String = row.try_get("endpoint_id")?;
            let ep = sqlx::query("SELECT url, secret_enc FROM webhook_endpoints WHERE id = $1")
                .bind(&endpoint_id)
                .fetch_one(&self.write)
                .await?;
            out.push(WebhookDelivery {
                id: row.try_get("id")?,
                url: ep.try_get("url")?,
                secret_enc: ep.try_get("secret_enc")?,
                endpoint_id,
                event: row.try_get("event")?,
                attempts: row.try_get("attempts")?,
            });
        }
        Ok(out)
    }

    async fn webhook_delivered(&self, id: &str, status: i64, now: Millis) -> StoreResult<()> {
        sqlx::query(
            "UPDATE webhook_deliveries
             SET delivered_at = $1, last_status = $2, lease_until = NULL, last_error = NULL
             WHERE id = $3",
        )
        .bind(now)
        .bind(status)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn webhook_failed(
        &self,
        id: &str,
        status: Option<i64>,
        error: &str,
        retry_at: Millis,
        dead: bool,
        now: Millis,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE webhook_deliveries
             SET last_status = $1, last_error = $2, next_attempt_at = $3, lease_until = NULL,
                 dead_at = $4
             WHERE id = $5",
        )
        .bind(status)
        .bind(error)
        .bind(retry_at)
        .bind(if dead { Some(now) } else { None })
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn webhook_log(&self, limit: i64) -> StoreResult<Vec<WebhookLogEntry>> {
        Ok(sqlx::query_as(
            "SELECT id, endpoint_id, created_at, attempts, delivered_at, dead_at, last_status,
                 last_error
             FROM webhook_deliveries
             ORDER BY created_at DESC, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }
}
