//! Sensitive changes: delayed weakening, password changes, second-factor resets and the
//! withdrawal locks they leave.

use async_trait::async_trait;
use sqlx::Row as _;

use super::dialect::{Db, Tx};
use super::effects::write_effects;
use super::factors::delete_totp;
use super::factors::drop_orphan_backup_codes;
use super::withdrawals::update_settings;
use crate::clock::Millis;
use crate::domain::change::{ChangeStep, Weakening};
use crate::store::{
    ChangeStore, Effects, PendingChange, RecoveryRequest, SqlStore, StoreError, StoreResult,
    WithdrawalLock,
};

const CHANGE_COLUMNS: &str = "id, account_id, kind, target, cancel_token_hash, requested_at, \
     effective_at, cancelled_at, applied_at";

pub(super) async fn insert_lock(tx: &mut Tx<'_>, l: &WithdrawalLock) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO withdrawal_locks (id, account_id, reason, created_at, until)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&l.id)
    .bind(&l.account_id)
    .bind(&l.reason)
    .bind(l.created_at)
    .bind(l.until)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A `pending_changes` row as stored; [`ChangeRow::decode`] reads its kind and target.
#[derive(sqlx::FromRow)]
struct ChangeRow {
    id: String,
    account_id: String,
    kind: String,
    target: Option<String>,
    cancel_token_hash: String,
    requested_at: Millis,
    effective_at: Millis,
    cancelled_at: Option<Millis>,
    applied_at: Option<Millis>,
}

impl ChangeRow {
    fn decode(self) -> StoreResult<PendingChange> {
        let change = Weakening::decode(&self.kind, self.target.as_deref())
            .map_err(|e| StoreError::Corrupt(format!("pending change {}: {e}", self.id)))?;
        Ok(PendingChange {
            id: self.id,
            account_id: self.account_id,
            change,
            cancel_token_hash: self.cancel_token_hash,
            requested_at: self.requested_at,
            effective_at: self.effective_at,
            cancelled_at: self.cancelled_at,
            applied_at: self.applied_at,
        })
    }
}

/// Writes one step of an applied change.
async fn apply_step(
    tx: &mut Tx<'_>,
    account_id: &str,
    step: &ChangeStep,
    now: Millis,
) -> StoreResult<()> {
    match step {
        ChangeStep::DeleteTotp => delete_totp(tx, account_id).await?,
        ChangeStep::RemovePasskey(id) => {
            sqlx::query("UPDATE passkeys SET removed_at = $1 WHERE id = $2 AND account_id = $3")
                .bind(now)
                .bind(id)
                .bind(account_id)
                .execute(&mut **tx)
                .await?;
        }
        ChangeStep::StopRequiringPasskey => {
            sqlx::query("UPDATE accounts SET require_passkey = FALSE WHERE id = $1")
                .bind(account_id)
                .execute(&mut **tx)
                .await?;
        }
        ChangeStep::StopRequiringPasskeyIfNoneLeft => {
            sqlx::query(
                "UPDATE accounts
                 SET require_passkey = FALSE
                 WHERE id = $1
                   AND NOT EXISTS (SELECT 1 FROM passkeys
                                   WHERE account_id = $2 AND removed_at IS NULL)",
            )
            .bind(account_id)
            .bind(account_id)
            .execute(&mut **tx)
            .await?;
        }
        ChangeStep::MuteMail(kind) => {
            sqlx::query(
                "INSERT INTO mail_mutes (account_id, kind, muted_at)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (account_id, kind) DO NOTHING",
            )
            .bind(account_id)
            .bind(kind.as_str())
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        ChangeStep::DisableAllowlist => {
            update_settings(tx, account_id, now, |s| s.allowlist_enabled = false).await?;
        }
        ChangeStep::SetWithdrawDelay(days) => {
            update_settings(tx, account_id, now, |s| s.delay_days = *days).await?;
        }
        ChangeStep::DropBackupCodesIfNoFactorLeft => {
            drop_orphan_backup_codes(tx, account_id).await?;
        }
    }
    Ok(())
}

#[async_trait]
impl ChangeStore for SqlStore<Db> {
    async fn add_pending_change(&self, c: &PendingChange, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO pending_changes (id, account_id, kind, target, cancel_token_hash,
                 requested_at, effective_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&c.id)
        .bind(&c.account_id)
        .bind(c.change.kind())
        .bind(c.change.target())
        .bind(&c.cancel_token_hash)
        .bind(c.requested_at)
        .bind(c.effective_at)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pending_changes(&self, account_id: &str) -> StoreResult<Vec<PendingChange>> {
        let sql = format!(
            "SELECT {CHANGE_COLUMNS}
             FROM pending_changes
             WHERE account_id = $1 AND cancelled_at IS NULL AND applied_at IS NULL
             ORDER BY effective_at, id"
        );
        let rows: Vec<ChangeRow> = sqlx::query_as(&sql)
            .bind(account_id)
            .fetch_all(&self.write)
            .await?;
        rows.into_iter().map(ChangeRow::decode).collect()
    }

    async fn pending_change_by_token(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<PendingChange>> {
        let sql = format!(
            "SELECT {CHANGE_COLUMNS}
             FROM pending_changes
             WHERE cancel_token_hash = $1"
        );
        let row: Option<ChangeRow> = sqlx::query_as(&sql)
            .bind(token_hash)
            .fetch_optional(&self.write)
            .await?;
        row.map(ChangeRow::decode).transpose()
    }

    async fn cancel_pending_change(
        &self,
        account_id: &str,
        id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE pending_changes
             SET cancelled_at = $1
             WHERE id = $2 AND account_id = $3 AND cancelled_at IS NULL AND applied_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn due_pending_changes(
        &self,
        now: Millis,
        limit: i64,
    ) -> StoreResult<Vec<StoreResult<PendingChange>>> {
        let sql = format!(
            "SELECT {CHANGE_COLUMNS}
             FROM pending_changes
             WHERE cancelled_at IS NULL AND applied_at IS NULL AND effective_at <= $1
             ORDER BY effective_at, id LIMIT $2"
        );
        let rows: Vec<ChangeRow> = sqlx::query_as(&sql)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.write)
            .await?;
        Ok(rows.into_iter().map(ChangeRow::decode).collect())
    }

    async fn apply_pending_change(
        &self,
        c: &PendingChange,
        steps: &[ChangeStep],
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE pending_changes
             SET applied_at = $1
             WHERE id = $2 AND cancelled_at IS NULL AND applied_at IS NULL",
        )
        .bind(now)
        .bind(&c.id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for step in steps {
            apply_step(&mut tx, &c.account_id, step, now).await?;
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn withdrawal_locks(
        &self,
        account_id: &str,
        now: Millis,
    ) -> StoreResult<Vec<WithdrawalLock>> {
        Ok(sqlx::query_as(
            "SELECT id, account_id, reason, created_at, until
             FROM withdrawal_locks
             WHERE account_id = $1 AND until > $2
             ORDER BY until DESC, id",
        )
        .bind(account_id)
        .bind(now)
        .fetch_all(&self.read)
        .await?)
    }

    async fn password_history(&self, account_id: &str, limit: i64) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT password_hash
             FROM (SELECT password_hash, created_at FROM password_history WHERE account_id = $1
                   UNION ALL
                   SELECT password_hash, created_at FROM accounts WHERE id = $2) h
             ORDER BY created_at DESC
             LIMIT $3",
        )
        .bind(account_id)
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.write)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("password_hash"))
            .collect::<Result<_, _>>()?)
    }

    async fn change_password(
        &self,
        account_id: &str,
        new_hash: &str,
        keep_session: &str,
        lock: &WithdrawalLock,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<u64> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO password_history (account_id, password_hash, created_at)
             SELECT id, password_hash, $1
             FROM accounts
             WHERE id = $2",
        )
        .bind(now)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
            .bind(new_hash)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        let ended = sqlx::query(
            "UPDATE sessions
             SET ended_at = $1, end_reason = 'password_changed'
             WHERE account_id = $2 AND id <> $3 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(account_id)
        .bind(keep_session)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM action_codes
             WHERE account_id = $1 AND purpose = 'password_change'",
        )
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        insert_lock(&mut tx, lock).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn reset_totp(
        &self,
        account_id: &str,
        lock: &WithdrawalLock,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        delete_totp(&mut tx, account_id).await?;
        sqlx::query(
            "UPDATE pending_changes
             SET cancelled_at = $1
             WHERE account_id = $2 AND kind = $3 AND cancelled_at IS NULL AND applied_at IS NULL",
        )
        .bind(lock.created_at)
        .bind(account_id)
        .bind(Weakening::DisableTotp.kind())
        .execute(&mut *tx)
        .await?;
        drop_orphan_backup_codes(&mut tx, account_id).await?;
        insert_lock(&mut tx, lock).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_recovery_request(&self, r: &RecoveryRequest, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO recovery_requests (id, account_id, kind, reason, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.id)
        .bind(&r.account_id)
        .bind(&r.kind)
        .bind(&r.reason)
        .bind(&r.status)
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }
}
