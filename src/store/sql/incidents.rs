//! Incident response: "Secure my account" in one transaction, the settings lock, suspended
//! keys, incidents and official channels.

use async_trait::async_trait;
use sqlx::Row as _;

use super::changes::insert_lock;
use super::dialect::{Db, FOR_UPDATE};
use super::effects::write_effects;
use super::withdrawals::cancel_all_pending;
use crate::clock::Millis;
use crate::domain::incident::{ChannelKind, SettingsLock};
use crate::store::incidents::{
    IncidentRecord, IncidentStore, OfficialChannel, SecureOutcome, SecureRequest,
};
use crate::store::{AuditEvent, Effects, SqlStore, StoreError, StoreResult};

fn lock_from(row: &<Db as sqlx::Database>::Row) -> Result<SettingsLock, sqlx::Error> {
    Ok(SettingsLock {
        locked_at: row.try_get("locked_at")?,
        until: row.try_get("until")?,
        early_end_delay: row.try_get("early_end_delay")?,
        end_requested_at: row.try_get("end_requested_at")?,
    })
}

#[async_trait]
impl IncidentStore for SqlStore<Db> {
    async fn secure_account(
        &self,
        req: &SecureRequest<'_>,
        fx: &Effects,
    ) -> StoreResult<Option<SecureOutcome>> {
        let mut tx = self.write.begin().await?;
        let now = req.now;
        if let Some(hash) = req.link_hash {
            let spent = sqlx::query(
                "UPDATE freeze_links SET used_at = $1
                 WHERE token_hash = $2 AND account_id = $3 AND used_at IS NULL AND expires_at > $1",
            )
            .bind(now)
            .bind(hash)
            .bind(req.account_id)
            .execute(&mut *tx)
            .await?;
            if spent.rows_affected() != 1 {
                return Ok(None);
            }
        }
        // The account row first: a withdrawal decision holds it too, so none can slip
        // between the cancellations below and the lock.
        sqlx::query(&format!(
            "SELECT id FROM accounts WHERE id = $1 {FOR_UPDATE}"
        ))
        .bind(req.account_id)
        .fetch_one(&mut *tx)
        .await?;
        let sessions_ended = sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = 'account_secured'
             WHERE account_id = $2 AND ended_at IS NULL AND id <> $3",
        )
        .bind(now)
        .bind(req.account_id)
        .bind(req.keep_session.unwrap_or(""))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let keys_suspended = sqlx::query(
            "UPDATE api_keys SET suspended_at = $1
             WHERE account_id = $2 AND deleted_at IS NULL AND suspended_at IS NULL",
        )
        .bind(now)
        .bind(req.account_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let (withdrawals_cancelled, withdrawals_recalled) =
            cancel_all_pending(&mut tx, req.account_id, "account_secured", now).await?;
        insert_lock(&mut tx, req.lock).await?;
        let outcome = SecureOutcome {
            sessions_ended,
            keys_suspended,
            withdrawals_cancelled,
            withdrawals_recalled,
        };
        let steps = serde_json::json!({
            "sessions_ended": outcome.sessions_ended,
            "keys_suspended": outcome.keys_suspended,
            "withdrawals_cancelled": outcome.withdrawals_cancelled,
            "withdrawals_recalled": outcome.withdrawals_recalled,
            "withdrawals_locked_until": req.lock.until,
        });
        sqlx::query(
            "INSERT INTO incidents (id, account_id, opened_at, via, steps)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(req.incident_id)
        .bind(req.account_id)
        .bind(now)
        .bind(req.via)
        .bind(steps.to_string())
        .execute(&mut *tx)
        .await?;
        let mut fx = fx.clone();
        for e in &mut fx.audit {
            if e.action == "account.secured" {
                e.detail["steps"] = steps.clone();
            }
        }
        if !outcome.withdrawals_cancelled.is_empty() || !outcome.withdrawals_recalled.is_empty() {
            fx.audit.push(AuditEvent {
                at: now,
                account_id: Some(req.account_id.to_owned()),
                actor: "system".into(),
                action: "withdrawals.cancelled_by_secure".into(),
                ip: None,
                device: None,
                detail: serde_json::json!({
                    "cancelled": outcome.withdrawals_cancelled,
                    "recalled": outcome.withdrawals_recalled,
                }),
            });
        }
        write_effects(&mut tx, &fx).await?;
        tx.commit().await?;
        Ok(Some(outcome))
    }

    async fn incidents(&self, account_id: &str) -> StoreResult<Vec<IncidentRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, account_id, opened_at, via, steps FROM incidents
             WHERE account_id = $1 ORDER BY opened_at DESC",
        )
        .bind(account_id)
        .fetch_all(&self.read)
        .await?)
    }

    async fn live_devices(
        &self,
        account_id: &str,
        now: Millis,
        idle_since: Millis,
    ) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT device_id FROM sessions
             WHERE account_id = $1 AND ended_at IS NULL AND expires_at > $2
               AND last_seen_at > $3",
        )
        .bind(account_id)
        .bind(now)
        .bind(idle_since)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("device_id")?))
            .collect()
    }

    async fn settings_lock(&self, account_id: &str) -> StoreResult<Option<SettingsLock>> {
        let row = sqlx::query(
            "SELECT locked_at, until, early_end_delay, end_requested_at
             FROM settings_locks WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(lock_from).transpose()?)
    }

    async fn put_settings_lock(
        &self,
        account_id: &str,
        lock: &SettingsLock,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        // Replaces only an ended lock: one in force stays as it is.
        sqlx::query("DELETE FROM settings_locks WHERE account_id = $1 AND until <= $2")
            .bind(account_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query(
            "INSERT INTO settings_locks (account_id, locked_at, until, early_end_delay,
                 end_requested_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (account_id) DO NOTHING",
        )
        .bind(account_id)
        .bind(lock.locked_at)
        .bind(lock.until)
        .bind(lock.early_end_delay)
        .bind(lock.end_requested_at)
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

    async fn update_settings_lock(
        &self,
        account_id: &str,
        lock: &SettingsLock,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "UPDATE settings_locks SET until = $1, end_requested_at = $2
             WHERE account_id = $3 AND until > $4 AND locked_at = $5",
        )
        .bind(lock.until)
        .bind(lock.end_requested_at)
        .bind(account_id)
        .bind(now)
        .bind(lock.locked_at)
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

    async fn set_key_suspended(
        &self,
        account_id: &str,
        api_key: &str,
        suspended: bool,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "UPDATE api_keys SET suspended_at = $1
             WHERE account_id = $2 AND api_key = $3 AND deleted_at IS NULL",
        )
        .bind(suspended.then_some(now))
        .bind(account_id)
        .bind(api_key)
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

    async fn official_channels(&self) -> StoreResult<Vec<OfficialChannel>> {
        let rows = sqlx::query(
            "SELECT id, kind, normalized, display, note, added_at, added_by
             FROM official_channels ORDER BY kind, display",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                Ok(OfficialChannel {
                    id: r.try_get("id")?,
                    kind: ChannelKind::parse(&kind)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    normalized: r.try_get("normalized")?,
                    display: r.try_get("display")?,
                    note: r.try_get("note")?,
                    added_at: r.try_get("added_at")?,
                    added_by: r.try_get("added_by")?,
                })
            })
            .collect()
    }

    async fn add_official_channel(&self, c: &OfficialChannel, fx: &Effects) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "INSERT INTO official_channels (id, kind, normalized, display, note, added_at, added_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (kind, normalized) DO NOTHING",
        )
        .bind(&c.id)
        .bind(c.kind.as_str())
        .bind(&c.normalized)
        .bind(&c.display)
        .bind(&c.note)
        .bind(c.added_at)
        .bind(&c.added_by)
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

    async fn remove_official_channel(&self, id: &str, fx: &Effects) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query("DELETE FROM official_channels WHERE id = $1")
            .bind(id)
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
}
