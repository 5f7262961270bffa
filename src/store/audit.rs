//! Reading the tamper-evident audit chain; events are appended through `Effects`.

use async_trait::async_trait;

use crate::domain::audit::AuditRecord;
use crate::store::{Effects, StoreResult};

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
    /// The account's events at or after `since`, oldest first, at most `limit`.
    async fn audit_since(
        &self,
        account_id: &str,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditRecord>>;
    /// The last event's sequence number and hash, as the chain head records them.
    async fn audit_head(&self) -> StoreResult<(i64, String)>;
}
