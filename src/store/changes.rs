//! Sensitive changes: delayed weakening, password changes, second-factor resets and the
//! withdrawal locks they leave.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::change::{ChangeStep, Weakening};
use crate::store::{Effects, StoreResult};

/// A weakening change that takes effect later unless cancelled.
#[derive(Debug, Clone)]
pub struct PendingChange {
    pub id: String,
    pub account_id: String,
    /// Stored as `kind` and `target`.
    pub change: Weakening,
    pub cancel_token_hash: String,
    pub requested_at: Millis,
    pub effective_at: Millis,
    pub cancelled_at: Option<Millis>,
    pub applied_at: Option<Millis>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WithdrawalLock {
    pub id: String,
    pub account_id: String,
    /// `password_changed`, `second_factor_reset`, …
    pub reason: String,
    pub created_at: Millis,
    pub until: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecoveryRequest {
    pub id: String,
    pub account_id: String,
    /// `authenticator_reset`.
    pub kind: String,
    pub reason: String,
    /// `pending_review`.
    pub status: String,
    pub created_at: Millis,
}

/// Weakening changes, passwords and the locks that follow sensitive changes.
#[async_trait]
pub trait ChangeStore {
    async fn add_pending_change(&self, change: &PendingChange, fx: &Effects) -> StoreResult<()>;
    /// Open (neither cancelled nor applied) changes of an account, soonest first.
    async fn pending_changes(&self, account_id: &str) -> StoreResult<Vec<PendingChange>>;
    async fn pending_change_by_token(&self, token_hash: &str)
        -> StoreResult<Option<PendingChange>>;
    /// Cancels an open change; `false` if it was no longer open.
    async fn cancel_pending_change(
        &self,
        account_id: &str,
        id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;
    /// The open changes whose time has come, oldest first, each decoded on its own: a row
    /// that does not decode is an `Err` in its place, so it cannot hold up the others.
    async fn due_pending_changes(
        &self,
        now: Millis,
        limit: i64,
    ) -> StoreResult<Vec<StoreResult<PendingChange>>>;
    /// Marks an open change applied and writes its `steps`, in order, in one transaction;
    /// `false` (and nothing written) if it was no longer open.
    async fn apply_pending_change(
        &self,
        change: &PendingChange,
        steps: &[ChangeStep],
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;

    /// Locks still in force at `now`.
    async fn withdrawal_locks(
        &self,
        account_id: &str,
        now: Millis,
    ) -> StoreResult<Vec<WithdrawalLock>>;

    /// The last `limit` password hashes, newest first (the current one included).
    async fn password_history(&self, account_id: &str, limit: i64) -> StoreResult<Vec<String>>;
    /// Sets a new password: history kept, other sessions ended, the action code spent, the
    /// withdrawal lock recorded, all in one transaction. Returns the sessions ended.
    async fn change_password(
        &self,
        account_id: &str,
        new_hash: &str,
        keep_session: &str,
        lock: &WithdrawalLock,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<u64>;
    /// Removes the authenticator app (a reset), spends nothing else, records the lock.
    async fn reset_totp(
        &self,
        account_id: &str,
        lock: &WithdrawalLock,
        fx: &Effects,
    ) -> StoreResult<()>;
    async fn add_recovery_request(
        &self,
        request: &RecoveryRequest,
        fx: &Effects,
    ) -> StoreResult<()>;
}
