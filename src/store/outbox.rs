//! The mail outbox and webhook deliveries: work claimed with a lease, retried, given up.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::store::StoreResult;

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

/// A webhook delivery claimed for sending, with its endpoint.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub url: String,
    pub secret_enc: String,
    pub event: String,
    pub attempts: i64,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct WebhookLogEntry {
    pub id: String,
    pub endpoint_id: String,
    pub created_at: Millis,
    pub attempts: i64,
    pub delivered_at: Option<Millis>,
    pub dead_at: Option<Millis>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// Mails and webhook deliveries waiting to go out.
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
    async fn add_webhook_endpoint(
        &self,
        id: &str,
        url: &str,
        secret_enc: &str,
        now: Millis,
    ) -> StoreResult<()>;
    async fn claim_webhooks(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>>;
    async fn webhook_delivered(&self, id: &str, status: i64, now: Millis) -> StoreResult<()>;
    async fn webhook_failed(
        &self,
        id: &str,
        status: Option<i64>,
        error: &str,
        retry_at: Millis,
        dead: bool,
        now: Millis,
    ) -> StoreResult<()>;
    async fn webhook_log(&self, limit: i64) -> StoreResult<Vec<WebhookLogEntry>>;
}
