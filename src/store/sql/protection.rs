//! Freezing, devices (removal, blocking, trust), new-device confirmation, the inbox and
//! mail preferences.

use async_trait::async_trait;
use sqlx::Row as _;

use super::dialect::{Db, Tx, FOR_UPDATE};
use super::effects::write_effects;
use super::sessions::DEVICE_COLUMNS;
use super::withdrawals::cancel_all_pending;
use crate::clock::Millis;
use crate::domain::change::Weakening;
use crate::domain::mail_kind::MailKind;
use crate::store::{
    AuditEvent, BlockedDevice, Device, Effects, FreezeLinkRow, FreezeOutcome, Notification,
    ProtectionStore, SqlStore, StoreError, StoreResult,
};

pub(super) async fn freeze_in(
    tx: &mut Tx<'_>,
    account_id: &str,
    now: Millis,
    fx: &Effects,
) -> StoreResult<FreezeOutcome> {
    let done =
        sqlx::query("UPDATE accounts SET frozen_at = $1 WHERE id = $2 AND frozen_at IS NULL")
            .bind(now)
            .bind(account_id)
            .execute(&mut **tx)
            .await?;
    if done.rows_affected() != 1 {
        let row = sqlx::query("SELECT frozen_at FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_one(&mut **tx)
            .await?;
        let since: Option<Millis> = row.try_get("frozen_at")?;
        return Ok(FreezeOutcome::AlreadyFrozen {
            since: since.unwrap_or(now),
        });
    }
    let sessions_ended = sqlx::query(
        "UPDATE sessions
         SET ended_at = $1, end_reason = 'account_frozen'
         WHERE account_id = $2 AND ended_at IS NULL",
    )
    .bind(now)
    .bind(account_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let (cancelled, recalled) = cancel_all_pending(tx, account_id, "account_frozen", now).await?;
    let mut fx = fx.clone();
    if !cancelled.is_empty() || !recalled.is_empty() {
        fx.audit.push(AuditEvent {
            at: now,
            account_id: Some(account_id.to_owned()),
            actor: "system".into(),
            action: "withdrawals.cancelled_by_freeze".into(),
            ip: None,
            device: None,
            detail: serde_json::json!({"cancelled": cancelled, "recalled": recalled}),
        });
    }
    write_effects(tx, &fx).await?;
    Ok(FreezeOutcome::Frozen { sessions_ended })
}

#[async_trait]
impl ProtectionStore for SqlStore<Db> {
    async fn freeze_account(
        &self,
        account_id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<FreezeOutcome> {
        let mut tx = self.write.begin().await?;
        let outcome = freeze_in(&mut tx, account_id, now, fx).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn freeze_link(&self, token_hash: &str) -> StoreResult<Option<FreezeLinkRow>> {
        Ok(sqlx::query_as(
            "SELECT account_id, expires_at, used_at
             FROM freeze_links
             WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.write)
        .await?)
    }

    async fn spend_freeze_link(
        &self,
        token_hash: &str,
        account_id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Option<FreezeOutcome>> {
        let mut tx = self.write.begin().await?;
        let spent = sqlx::query(
            "UPDATE freeze_links
             SET used_at = $1
             WHERE token_hash = $2 AND account_id = $3 AND used_at IS NULL AND expires_at > $4",
        )
        .bind(now)
        .bind(token_hash)
        .bind(account_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if spent.rows_affected() != 1 {
            return Ok(None);
        }
        let outcome = freeze_in(&mut tx, account_id, now, fx).await?;
        tx.commit().await?;
        Ok(Some(outcome))
    }

    async fn device(&self, account_id: &str, device_id: &str) -> StoreResult<Option<Device>> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS}
             FROM devices
             WHERE id = $1 AND account_id = $2 AND removed_at IS NULL"
        );
        Ok(sqlx::query_as(&sql)
            .bind(device_id)
            .bind(account_id)
            .fetch_optional(&self.write)
            .await?)
    }

    async fn remove_device(
        &self,
        account_id: &str,
        device_id: &str,
        block: bool,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Option<u64>> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "UPDATE devices
             SET removed_at = $1, trusted_at = NULL
             WHERE id = $2 AND account_id = $3 AND removed_at IS NULL
             RETURNING fingerprint",
        )
        .bind(now)
        .bind(device_id)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let fingerprint: String = row.try_get("fingerprint")?;
        let ended = sqlx::query(
            "UPDATE sessions
             SET ended_at = $1, end_reason = 'device_removed'
             WHERE device_id = $2 AND account_id = $3 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(device_id)
        .bind(account_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if block {
            sqlx::query(
                "INSERT INTO blocked_fingerprints (account_id, fingerprint, created_at)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (account_id, fingerprint) DO NOTHING",
            )
            .bind(account_id)
            .bind(&fingerprint)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(Some(ended))
    }

    async fn fingerprint_blocked(&self, account_id: &str, fingerprint: &str) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one
             FROM blocked_fingerprints
             WHERE account_id = $1 AND fingerprint = $2",
        )
        .bind(account_id)
        .bind(fingerprint)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.is_some())
    }

    async fn blocked_devices(&self, account_id: &str) -> StoreResult<Vec<BlockedDevice>> {
        Ok(sqlx::query_as(
            "SELECT b.fingerprint, b.created_at AS blocked_at, d.model, d.os, d.browser, d.ip,
                    d.city, d.country
             FROM blocked_fingerprints b
             LEFT JOIN devices d ON d.id = (
                 SELECT id FROM devices x
                 WHERE x.account_id = b.account_id AND x.fingerprint = b.fingerprint
                 ORDER BY x.last_active DESC LIMIT 1)
             WHERE b.account_id = $1
             ORDER BY b.created_at DESC",
        )
        .bind(account_id)
        .fetch_all(&self.read)
        .await?)
    }

    async fn unblock_fingerprint(
        &self,
        account_id: &str,
        fingerprint: &str,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "DELETE FROM blocked_fingerprints WHERE account_id = $1 AND fingerprint = $2",
        )
        .bind(account_id)
        .bind(fingerprint)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn has_devices(&self, account_id: &str) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one
             FROM devices
             WHERE account_id = $1 AND removed_at IS NULL LIMIT 1",
        )
        .bind(account_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.is_some())
    }

    async fn end_other_sessions(
        &self,
        account_id: &str,
        keep: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<u64> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "UPDATE sessions
             SET ended_at = $1, end_reason = 'signed_out_elsewhere'
             WHERE account_id = $2 AND id <> $3 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(account_id)
        .bind(keep)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn set_device_trusted(
        &self,
        account_id: &str,
        device_id: &str,
        trusted: bool,
        max: i64,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Option<bool>> {
        let mut tx = self.write.begin().await?;
        if trusted {
            // Serialise concurrent trust changes of one account on its row.
            sqlx::query(&format!(
                "SELECT id FROM accounts WHERE id = $1 {FOR_UPDATE}"
            ))
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?;
            let row = sqlx::query(
                "SELECT COUNT(*) AS n
                 FROM devices
                 WHERE account_id = $1 AND trusted_at IS NOT NULL AND removed_at IS NULL
                   AND id <> $2",
            )
            .bind(account_id)
            .bind(device_id)
            .fetch_one(&mut *tx)
            .await?;
            let n: i64 = row.try_get("n")?;
            if n >= max {
                return Ok(Some(false));
            }
        }
        let done = sqlx::query(
            "UPDATE devices
             SET trusted_at = $1
             WHERE id = $2 AND account_id = $3 AND removed_at IS NULL",
        )
        .bind(trusted.then_some(now))
        .bind(device_id)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(Some(true))
    }

    async fn pending_session_account(&self, token_hash: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query(
            "SELECT account_id
             FROM sessions
             WHERE confirm_token_hash = $1 AND confirmed_at IS NULL AND ended_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.write)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("account_id")?),
            None => None,
        })
    }

    async fn confirm_session(
        &self,
        token_hash: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions
             SET confirmed_at = $1
             WHERE confirm_token_hash = $2 AND confirmed_at IS NULL AND ended_at IS NULL",
        )
        .bind(now)
        .bind(token_hash)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn notifications(&self, account_id: &str, limit: i64) -> StoreResult<Vec<Notification>> {
        Ok(sqlx::query_as(
            "SELECT id, account_id, subject, body, created_at, read_at
             FROM notifications
             WHERE account_id = $1
             ORDER BY created_at DESC, id LIMIT $2",
        )
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    async fn mark_notifications_read(&self, account_id: &str, now: Millis) -> StoreResult<u64> {
        Ok(sqlx::query(
            "UPDATE notifications
             SET read_at = $1
             WHERE account_id = $2 AND read_at IS NULL",
        )
        .bind(now)
        .bind(account_id)
        .execute(&self.write)
        .await?
        .rows_affected())
    }

    async fn mail_mutes(&self, account_id: &str) -> StoreResult<Vec<MailKind>> {
        let rows = sqlx::query("SELECT kind FROM mail_mutes WHERE account_id = $1 ORDER BY kind")
            .bind(account_id)
            .fetch_all(&self.read)
            .await?;
        let decode = |r: &<Db as sqlx::Database>::Row| -> StoreResult<MailKind> {
            let kind: String = r.try_get("kind")?;
            MailKind::parse(&kind).map_err(|e| StoreError::Corrupt(format!("mail_mutes: {e}")))
        };
        rows.iter().map(decode).collect()
    }

    async fn unmute_mail(&self, account_id: &str, kind: MailKind, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM mail_mutes WHERE account_id = $1 AND kind = $2")
            .bind(account_id)
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE pending_changes
             SET cancelled_at = $1
             WHERE account_id = $2 AND kind = $3 AND target = $4
               AND cancelled_at IS NULL AND applied_at IS NULL",
        )
        .bind(fx.audit.first().map_or(0, |e| e.at))
        .bind(account_id)
        .bind(Weakening::MuteMail(kind).kind())
        .bind(kind.as_str())
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }
}
