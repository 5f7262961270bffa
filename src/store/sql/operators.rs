//! The console's operators, enrolment links and console sessions.

use async_trait::async_trait;
use sqlx::Row as _;

use super::dialect::Db;
use super::effects::write_effects;
use crate::clock::Millis;
use crate::store::constraint::{self, Constraint};
use crate::store::operators::{
    EnrolmentRecord, OperatorRecord, OperatorSession, OperatorStore, RecoveryRequestSummary,
};
use crate::store::{Account, AccountStore as _, Effects, SqlStore, StoreError, StoreResult};

const OPERATOR_COLUMNS: &str = "id, email, role, password_hash, totp_secret, totp_last_step, \
                                enrolled_at, disabled_at, created_at";

#[async_trait]
impl OperatorStore for SqlStore<Db> {
    async fn account_by_uid(&self, uid: &str) -> StoreResult<Option<Account>> {
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM accounts WHERE uid = $1")
            .bind(uid)
            .fetch_optional(&self.read)
            .await?;
        match id {
            Some(id) => self.account_by_id(&id).await,
            None => Ok(None),
        }
    }

    async fn recovery_requests_of(
        &self,
        account_id: &str,
    ) -> StoreResult<Vec<RecoveryRequestSummary>> {
        Ok(sqlx::query_as(
            "SELECT id, kind, status, created_at FROM recovery_requests
             WHERE account_id = $1 ORDER BY created_at DESC, id",
        )
        .bind(account_id)
        .fetch_all(&self.read)
        .await?)
    }

    async fn audit_hashes(&self, seqs: &[i64]) -> StoreResult<Vec<(i64, String)>> {
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT seq, hash FROM audit_events WHERE seq IN ({})",
                placeholders.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for seq in chunk {
                q = q.bind(*seq);
            }
            for row in q.fetch_all(&self.read).await? {
                out.push((row.try_get("seq")?, row.try_get("hash")?));
            }
        }
        Ok(out)
    }

    async fn insert_operator(
        &self,
        operator: &OperatorRecord,
        enrolment_token_hash: &str,
        expires_at: Millis,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO operators (id, email, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&operator.id)
        .bind(&operator.email)
        .bind(operator.role.as_str())
        .bind(operator.created_at)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            return Err(match constraint::violated(&e) {
                Some(Constraint::OperatorEmail) => StoreError::Conflict("email"),
                _ => e.into(),
            });
        }
        sqlx::query(
            "INSERT INTO operator_enrolments (token_hash, operator_id, expires_at, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(enrolment_token_hash)
        .bind(&operator.id)
        .bind(expires_at)
        .bind(operator.created_at)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn operator_by_email(&self, email: &str) -> StoreResult<Option<OperatorRecord>> {
        let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE email = $1");
        Ok(sqlx::query_as(&sql)
            .bind(email)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn operator_by_id(&self, id: &str) -> StoreResult<Option<OperatorRecord>> {
        let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn operators(&self) -> StoreResult<Vec<OperatorRecord>> {
        let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators ORDER BY created_at, email");
        Ok(sqlx::query_as(&sql).fetch_all(&self.read).await?)
    }

    async fn operator_enrolment(&self, token_hash: &str) -> StoreResult<Option<EnrolmentRecord>> {
        Ok(sqlx::query_as(
            "SELECT operator_id, password_hash, totp_secret, expires_at, used_at
             FROM operator_enrolments WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn stage_operator_enrolment(
        &self,
        token_hash: &str,
        password_hash: &str,
        totp_secret: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE operator_enrolments SET password_hash = $1, totp_secret = $2
             WHERE token_hash = $3 AND used_at IS NULL",
        )
        .bind(password_hash)
        .bind(totp_secret)
        .bind(token_hash)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete_operator_enrolment(
        &self,
        token_hash: &str,
        step: i64,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let spent = sqlx::query(
            "UPDATE operator_enrolments SET used_at = $1
             WHERE token_hash = $2 AND used_at IS NULL
               AND password_hash IS NOT NULL AND totp_secret IS NOT NULL",
        )
        .bind(now)
        .bind(token_hash)
        .execute(&mut *tx)
        .await?;
        if spent.rows_affected() != 1 {
            return Ok(false);
        }
        let row = sqlx::query(
            "SELECT operator_id, password_hash, totp_secret FROM operator_enrolments
             WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_one(&mut *tx)
        .await?;
        let operator_id: String = row.try_get("operator_id")?;
        let password_hash: Option<String> = row.try_get("password_hash")?;
        let totp_secret: Option<String> = row.try_get("totp_secret")?;
        sqlx::query(
            "UPDATE operators
             SET password_hash = $1, totp_secret = $2, totp_last_step = $3, enrolled_at = $4
             WHERE id = $5",
        )
        .bind(password_hash)
        .bind(totp_secret)
        .bind(step)
        .bind(now)
        .bind(&operator_id)
        .execute(&mut *tx)
        .await?;
        // Other links of the same operator can no longer be used.
        sqlx::query(
            "UPDATE operator_enrolments SET used_at = $1
             WHERE operator_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(&operator_id)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn operator_use_step(&self, operator_id: &str, step: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE operators SET totp_last_step = $1
             WHERE id = $2 AND totp_last_step < $3 AND disabled_at IS NULL",
        )
        .bind(step)
        .bind(operator_id)
        .bind(step)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn open_operator_session(
        &self,
        token_hash: &str,
        operator_id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO operator_sessions (token_hash, operator_id, created_at, last_active_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(operator_id)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn operator_session(&self, token_hash: &str) -> StoreResult<Option<OperatorSession>> {
        let sql = "SELECT s.created_at AS session_created_at, s.last_active_at,
                    o.id, o.email, o.role, o.password_hash, o.totp_secret, o.totp_last_step,
                    o.enrolled_at, o.disabled_at, o.created_at
             FROM operator_sessions s JOIN operators o ON o.id = s.operator_id
             WHERE s.token_hash = $1";
        let Some(row) = sqlx::query(sql)
            .bind(token_hash)
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        let operator = <OperatorRecord as sqlx::FromRow<_>>::from_row(&row)?;
        Ok(Some(OperatorSession {
            operator,
            created_at: row.try_get("session_created_at")?,
            last_active_at: row.try_get("last_active_at")?,
        }))
    }

    async fn touch_operator_session(&self, token_hash: &str, now: Millis) -> StoreResult<()> {
        sqlx::query("UPDATE operator_sessions SET last_active_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(token_hash)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn end_operator_session(&self, token_hash: &str, fx: &Effects) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query("DELETE FROM operator_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 1 {
            write_effects(&mut tx, fx).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn disable_operator(
        &self,
        operator_id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Option<bool>> {
        let mut tx = self.write.begin().await?;
        let exists = sqlx::query("SELECT disabled_at FROM operators WHERE id = $1")
            .bind(operator_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = exists else {
            return Ok(None);
        };
        let disabled_at: Option<Millis> = row.try_get("disabled_at")?;
        if disabled_at.is_some() {
            return Ok(Some(false));
        }
        sqlx::query("UPDATE operators SET disabled_at = $1 WHERE id = $2")
            .bind(now)
            .bind(operator_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM operator_sessions WHERE operator_id = $1")
            .bind(operator_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE operator_enrolments SET used_at = $1
             WHERE operator_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(operator_id)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(Some(true))
    }
}
