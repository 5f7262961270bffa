//! Password links, support access, tickets and recovery requests.

use async_trait::async_trait;
use sqlx::Row as _;

use super::changes::insert_lock;
use super::dialect::{Db, Tx};
use super::effects::write_effects;
use crate::clock::Millis;
use crate::domain::support::{
    parse_requests, requests_csv, LinkPurpose, RecoveryKind, RecoveryStatus, TicketStatus,
};
use crate::store::constraint::{self, Constraint};
use crate::store::support::{
    EmailChangeRecord, EmailChangeStore, EvidenceRecord, PasswordLink, RecoveryRecord,
    SupportStore, Ticket, TicketMessage,
};
use crate::store::{Effects, SqlStore, StoreError, StoreResult, WithdrawalLock};

const TICKET_COLUMNS: &str = "id, account_id, status, noticed_at, description, details, requests, \
                              recovery_id, created_at, updated_at";
const RECOVERY_COLUMNS: &str = "id, account_id, kind, reason, status, created_at, frozen_at, \
                                needs_two, first_approver, decided_by, decision_reason, decided_at";

fn corrupt(what: &str, id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what} {id}: {e}"))
}

fn ticket_from(row: &<Db as sqlx::Database>::Row) -> StoreResult<Ticket> {
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let details: String = row.try_get("details")?;
    let requests: String = row.try_get("requests")?;
    Ok(Ticket {
        status: TicketStatus::parse(&status).map_err(|e| corrupt("ticket", &id, e))?,
        details: serde_json::from_str(&details).map_err(|e| corrupt("ticket", &id, e))?,
        requests: parse_requests(&requests).map_err(|e| corrupt("ticket", &id, e))?,
        account_id: row.try_get("account_id")?,
        noticed_at: row.try_get("noticed_at")?,
        description: row.try_get("description")?,
        recovery_id: row.try_get("recovery_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        id,
    })
}

fn recovery_from(row: &<Db as sqlx::Database>::Row) -> StoreResult<RecoveryRecord> {
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    Ok(RecoveryRecord {
        kind: RecoveryKind::parse(&kind).map_err(|e| corrupt("recovery", &id, e))?,
        status: RecoveryStatus::parse(&status).map_err(|e| corrupt("recovery", &id, e))?,
        account_id: row.try_get("account_id")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
        frozen_at: row.try_get("frozen_at")?,
        needs_two: row.try_get("needs_two")?,
        first_approver: row.try_get("first_approver")?,
        decided_by: row.try_get("decided_by")?,
        decision_reason: row.try_get("decision_reason")?,
        decided_at: row.try_get("decided_at")?,
        id,
    })
}

async fn insert_link(tx: &mut Tx<'_>, l: &PasswordLink) -> StoreResult<()> {
    sqlx::query(
        "DELETE FROM password_links
         WHERE account_id = $1 AND purpose = $2 AND used_at IS NULL",
    )
    .bind(&l.account_id)
    .bind(l.purpose.as_str())
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO password_links (token_hash, account_id, purpose, expires_at, used_at, created_at)
         VALUES ($1, $2, $3, $4, NULL, $5)",
    )
    .bind(&l.token_hash)
    .bind(&l.account_id)
    .bind(l.purpose.as_str())
    .bind(l.expires_at)
    .bind(l.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_recovery(tx: &mut Tx<'_>, r: &RecoveryRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO recovery_requests (id, account_id, kind, reason, status, created_at,
             frozen_at, needs_two, first_approver, decided_by, decision_reason, decided_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL, NULL)",
    )
    .bind(&r.id)
    .bind(&r.account_id)
    .bind(r.kind.as_str())
    .bind(&r.reason)
    .bind(r.status.as_str())
    .bind(r.created_at)
    .bind(r.frozen_at)
    .bind(r.needs_two)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_message(tx: &mut Tx<'_>, m: &TicketMessage) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO ticket_messages (id, ticket_id, author, body, internal, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&m.id)
    .bind(&m.ticket_id)
    .bind(&m.author)
    .bind(&m.body)
    .bind(m.internal)
    .bind(m.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl SupportStore for SqlStore<Db> {
    async fn put_password_link(&self, link: &PasswordLink, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        insert_link(&mut tx, link).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn password_link(&self, token_hash: &str) -> StoreResult<Option<PasswordLink>> {
        let row = sqlx::query(
            "SELECT token_hash, account_id, purpose, expires_at, used_at, created_at
             FROM password_links WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.write)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let purpose: String = row.try_get("purpose")?;
        Ok(Some(PasswordLink {
            purpose: LinkPurpose::parse(&purpose).map_err(|e| corrupt("link", "", e))?,
            token_hash: row.try_get("token_hash")?,
            account_id: row.try_get("account_id")?,
            expires_at: row.try_get("expires_at")?,
            used_at: row.try_get("used_at")?,
            created_at: row.try_get("created_at")?,
        }))
    }

    async fn set_password_by_link(
        &self,
        token_hash: &str,
        account_id: &str,
        new_hash: &str,
        lock: Option<&WithdrawalLock>,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let spent = sqlx::query(
            "UPDATE password_links SET used_at = $1
             WHERE token_hash = $2 AND account_id = $3 AND used_at IS NULL AND expires_at > $4",
        )
        .bind(now)
        .bind(token_hash)
        .bind(account_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if spent != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO password_history (account_id, password_hash, created_at)
             SELECT id, password_hash, $1 FROM accounts WHERE id = $2",
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
        sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = 'password_reset'
             WHERE account_id = $2 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        if let Some(lock) = lock {
            insert_lock(&mut tx, lock).await?;
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn add_withdrawal_lock(&self, lock: &WithdrawalLock, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        insert_lock(&mut tx, lock).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_support_access(
        &self,
        token_hash: &str,
        account_id: &str,
        expires_at: Millis,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "DELETE FROM action_codes WHERE account_id = $1 AND purpose = 'support_access'",
        )
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM support_access WHERE account_id = $1 AND expires_at <= $2")
            .bind(account_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO support_access (token_hash, account_id, expires_at, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(account_id)
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn support_access(&self, token_hash: &str, now: Millis) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT account_id FROM support_access WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn create_ticket(
        &self,
        t: &Ticket,
        first: &TicketMessage,
        recovery: Option<&RecoveryRecord>,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        if let Some(r) = recovery {
            insert_recovery(&mut tx, r).await?;
        }
        sqlx::query(
            "INSERT INTO tickets (id, account_id, status, noticed_at, description, details,
                 requests, recovery_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&t.id)
        .bind(&t.account_id)
        .bind(t.status.as_str())
        .bind(t.noticed_at)
        .bind(&t.description)
        .bind(t.details.to_string())
        .bind(requests_csv(&t.requests))
        .bind(&t.recovery_id)
        .bind(t.created_at)
        .bind(t.updated_at)
        .execute(&mut *tx)
        .await?;
        insert_message(&mut tx, first).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ticket(&self, id: &str) -> StoreResult<Option<Ticket>> {
        let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(ticket_from).transpose()
    }

    async fn tickets_of(&self, account_id: &str) -> StoreResult<Vec<Ticket>> {
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE account_id = $1
             ORDER BY created_at DESC, id LIMIT 100"
        );
        let rows = sqlx::query(&sql)
            .bind(account_id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(ticket_from).collect()
    }

    async fn ticket_queue(
        &self,
        status: Option<TicketStatus>,
        limit: i64,
    ) -> StoreResult<Vec<Ticket>> {
        let rows = match status {
            Some(s) => {
                let sql = format!(
                    "SELECT {TICKET_COLUMNS} FROM tickets WHERE status = $1
                     ORDER BY updated_at, id LIMIT $2"
                );
                sqlx::query(&sql)
                    .bind(s.as_str())
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {TICKET_COLUMNS} FROM tickets WHERE status <> 'closed'
                     ORDER BY updated_at, id LIMIT $1"
                );
                sqlx::query(&sql).bind(limit).fetch_all(&self.read).await?
            }
        };
        rows.iter().map(ticket_from).collect()
    }

    async fn ticket_messages(&self, ticket_id: &str) -> StoreResult<Vec<TicketMessage>> {
        Ok(sqlx::query_as(
            "SELECT id, ticket_id, author, body, internal, created_at FROM ticket_messages
             WHERE ticket_id = $1 ORDER BY created_at, id",
        )
        .bind(ticket_id)
        .fetch_all(&self.read)
        .await?)
    }

    async fn add_ticket_message(
        &self,
        m: &TicketMessage,
        status: TicketStatus,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        insert_message(&mut tx, m).await?;
        sqlx::query("UPDATE tickets SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(m.created_at)
            .bind(&m.ticket_id)
            .execute(&mut *tx)
            .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_ticket_status(
        &self,
        id: &str,
        status: TicketStatus,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE tickets SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_recovery(&self, r: &RecoveryRecord, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        insert_recovery(&mut tx, r).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_evidence(
        &self,
        e: &EvidenceRecord,
        sealed: &str,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO recovery_evidence (recovery_id, n, content_type, size_bytes, sealed, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&e.recovery_id)
        .bind(e.n)
        .bind(&e.content_type)
        .bind(e.size_bytes)
        .bind(sealed)
        .bind(e.created_at)
        .execute(&mut *tx)
        .await;
        if let Err(err) = inserted {
            return Err(
                match err.as_database_error().map(|d| d.is_unique_violation()) {
                    Some(true) => StoreError::Conflict("evidence"),
                    _ => err.into(),
                },
            );
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn evidence_of(&self, recovery_id: &str) -> StoreResult<Vec<EvidenceRecord>> {
        Ok(sqlx::query_as(
            "SELECT recovery_id, n, content_type, size_bytes, created_at FROM recovery_evidence
             WHERE recovery_id = $1 ORDER BY n",
        )
        .bind(recovery_id)
        .fetch_all(&self.write)
        .await?)
    }

    async fn evidence_file(
        &self,
        recovery_id: &str,
        n: i64,
    ) -> StoreResult<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT content_type, sealed FROM recovery_evidence WHERE recovery_id = $1 AND n = $2",
        )
        .bind(recovery_id)
        .bind(n)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| Ok((r.try_get("content_type")?, r.try_get("sealed")?)))
            .transpose()
    }

    async fn evidence_due(
        &self,
        decided_before: Millis,
        limit: i64,
    ) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT DISTINCT r.id, r.account_id FROM recovery_requests r
             JOIN recovery_evidence e ON e.recovery_id = r.id
             WHERE r.decided_at IS NOT NULL AND r.decided_at < $1
             LIMIT $2",
        )
        .bind(decided_before)
        .bind(limit)
        .fetch_all(&self.write)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("account_id")?)))
            .collect()
    }

    async fn delete_evidence(&self, recovery_id: &str, fx: &Effects) -> StoreResult<u64> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query("DELETE FROM recovery_evidence WHERE recovery_id = $1")
            .bind(recovery_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn recovery(&self, id: &str) -> StoreResult<Option<RecoveryRecord>> {
        let sql = format!("SELECT {RECOVERY_COLUMNS} FROM recovery_requests WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.write)
            .await?;
        row.as_ref().map(recovery_from).transpose()
    }

    async fn recoveries_of(&self, account_id: &str) -> StoreResult<Vec<RecoveryRecord>> {
        let sql = format!(
            "SELECT {RECOVERY_COLUMNS} FROM recovery_requests WHERE account_id = $1
             ORDER BY created_at DESC, id LIMIT 100"
        );
        let rows = sqlx::query(&sql)
            .bind(account_id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(recovery_from).collect()
    }

    async fn recovery_queue(
        &self,
        status: Option<RecoveryStatus>,
        limit: i64,
    ) -> StoreResult<Vec<RecoveryRecord>> {
        let rows = match status {
            Some(s) => {
                let sql = format!(
                    "SELECT {RECOVERY_COLUMNS} FROM recovery_requests WHERE status = $1
                     ORDER BY created_at, id LIMIT $2"
                );
                sqlx::query(&sql)
                    .bind(s.as_str())
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {RECOVERY_COLUMNS} FROM recovery_requests
                     WHERE status IN ('submitted', 'awaiting_second_approval')
                     ORDER BY created_at, id LIMIT $1"
                );
                sqlx::query(&sql).bind(limit).fetch_all(&self.read).await?
            }
        };
        rows.iter().map(recovery_from).collect()
    }

    async fn first_approval(&self, id: &str, operator: &str, fx: &Effects) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "UPDATE recovery_requests
             SET status = 'awaiting_second_approval', first_approver = $1
             WHERE id = $2 AND status = 'submitted'",
        )
        .bind(operator)
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

    async fn reject_recovery(
        &self,
        id: &str,
        operator: &str,
        reason: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "UPDATE recovery_requests
             SET status = 'rejected', decided_by = $1, decision_reason = $2, decided_at = $3
             WHERE id = $4 AND status IN ('submitted', 'awaiting_second_approval')",
        )
        .bind(operator)
        .bind(reason)
        .bind(now)
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

    async fn approve_recovery(
        &self,
        r: &RecoveryRecord,
        operator: &str,
        reason: &str,
        lock: &WithdrawalLock,
        link: &PasswordLink,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        // Only the state the reviewer saw: a request that moved meanwhile is not approved.
        let n = sqlx::query(
            "UPDATE recovery_requests
             SET status = 'approved', decided_by = $1, decision_reason = $2, decided_at = $3
             WHERE id = $4 AND status = $5",
        )
        .bind(operator)
        .bind(reason)
        .bind(now)
        .bind(&r.id)
        .bind(r.status.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        let account = &r.account_id;
        if r.kind == RecoveryKind::Reactivation {
            sqlx::query("UPDATE accounts SET frozen_at = NULL WHERE id = $1")
                .bind(account)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE accounts SET recovery_required = TRUE, require_passkey = FALSE WHERE id = $1",
        )
        .bind(account)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE api_keys SET deleted_at = $1, secret_enc = NULL
             WHERE account_id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(account)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = 'recovery'
             WHERE account_id = $2 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(account)
        .execute(&mut *tx)
        .await?;
        // A settings lock (perhaps a thief's) must not keep the owner from finishing.
        for table in ["totp_secrets", "backup_codes", "passkeys", "settings_locks"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE account_id = $1"))
                .bind(account)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE pending_changes SET cancelled_at = $1
             WHERE account_id = $2 AND cancelled_at IS NULL AND applied_at IS NULL",
        )
        .bind(now)
        .bind(account)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE recovery_requests
             SET status = 'rejected', decided_by = $1, decided_at = $2,
                 decision_reason = 'Superseded by an approved recovery.'
             WHERE account_id = $3 AND id <> $4
               AND status IN ('submitted', 'awaiting_second_approval')",
        )
        .bind(operator)
        .bind(now)
        .bind(account)
        .bind(&r.id)
        .execute(&mut *tx)
        .await?;
        insert_lock(&mut tx, lock).await?;
        insert_link(&mut tx, link).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }
}

const EMAIL_CHANGE_COLUMNS: &str = "id, account_id, old_email, new_email, code_mac, attempts, \
     code_expires_at, cancel_token_hash, confirmed_at, cancel_until, cancelled_at, created_at";

#[async_trait]
impl EmailChangeStore for SqlStore<Db> {
    async fn put_email_change(&self, c: &EmailChangeRecord, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM email_changes WHERE account_id = $1 AND confirmed_at IS NULL")
            .bind(&c.account_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO email_changes (id, account_id, old_email, new_email, code_mac, attempts,
                 code_expires_at, cancel_token_hash, confirmed_at, cancel_until, cancelled_at,
                 created_at)
             VALUES ($1, $2, $3, $4, $5, 0, $6, NULL, NULL, NULL, NULL, $7)",
        )
        .bind(&c.id)
        .bind(&c.account_id)
        .bind(&c.old_email)
        .bind(&c.new_email)
        .bind(&c.code_mac)
        .bind(c.code_expires_at)
        .bind(c.created_at)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pending_email_change(
        &self,
        account_id: &str,
    ) -> StoreResult<Option<EmailChangeRecord>> {
        let sql = format!(
            "SELECT {EMAIL_CHANGE_COLUMNS} FROM email_changes
             WHERE account_id = $1 AND confirmed_at IS NULL
             ORDER BY created_at DESC LIMIT 1"
        );
        Ok(sqlx::query_as(&sql)
            .bind(account_id)
            .fetch_optional(&self.write)
            .await?)
    }

    async fn email_change_failed(&self, id: &str) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "UPDATE email_changes SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts",
        )
        .bind(id)
        .fetch_optional(&self.write)
        .await?
        .unwrap_or(i64::MAX))
    }

    async fn email_change_in_window(
        &self,
        account_id: &str,
        now: Millis,
    ) -> StoreResult<Option<EmailChangeRecord>> {
        let sql = format!(
            "SELECT {EMAIL_CHANGE_COLUMNS} FROM email_changes
             WHERE account_id = $1 AND confirmed_at IS NOT NULL AND cancelled_at IS NULL
               AND cancel_until > $2
             ORDER BY confirmed_at DESC LIMIT 1"
        );
        Ok(sqlx::query_as(&sql)
            .bind(account_id)
            .bind(now)
            .fetch_optional(&self.write)
            .await?)
    }

    async fn email_change_by_cancel(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<EmailChangeRecord>> {
        let sql = format!(
            "SELECT {EMAIL_CHANGE_COLUMNS} FROM email_changes WHERE cancel_token_hash = $1"
        );
        Ok(sqlx::query_as(&sql)
            .bind(token_hash)
            .fetch_optional(&self.write)
            .await?)
    }

    async fn confirm_email_change(
        &self,
        id: &str,
        account_id: &str,
        new_email: &str,
        cancel_token_hash: &str,
        cancel_until: Millis,
        lock: &WithdrawalLock,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        let changed = sqlx::query(
            "UPDATE accounts
             SET previous_email = email, previous_email_until = $1, email = $2
             WHERE id = $3",
        )
        .bind(cancel_until)
        .bind(new_email)
        .bind(account_id)
        .execute(&mut *tx)
        .await;
        if let Err(e) = changed {
            return Err(match constraint::violated(&e) {
                Some(Constraint::AccountEmail) => StoreError::Conflict("email"),
                _ => e.into(),
            });
        }
        sqlx::query(
            "UPDATE email_changes
             SET confirmed_at = $1, cancel_token_hash = $2, cancel_until = $3
             WHERE id = $4",
        )
        .bind(now)
        .bind(cancel_token_hash)
        .bind(cancel_until)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        insert_lock(&mut tx, lock).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn cancel_email_change(
        &self,
        c: &EmailChangeRecord,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "UPDATE email_changes SET cancelled_at = $1
             WHERE id = $2 AND cancelled_at IS NULL AND cancel_until > $3",
        )
        .bind(now)
        .bind(&c.id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        let restored = sqlx::query(
            "UPDATE accounts SET email = $1, previous_email = NULL, previous_email_until = NULL
             WHERE id = $2 AND email = $3",
        )
        .bind(&c.old_email)
        .bind(&c.account_id)
        .bind(&c.new_email)
        .execute(&mut *tx)
        .await;
        if let Err(e) = restored {
            return Err(match constraint::violated(&e) {
                Some(Constraint::AccountEmail) => StoreError::Conflict("email"),
                _ => e.into(),
            });
        }
        sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = 'email_change_cancelled'
             WHERE account_id = $2 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(&c.account_id)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }
}
