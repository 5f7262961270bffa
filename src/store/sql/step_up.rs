//! Sign-in challenges, step-up and mailed action codes.

use async_trait::async_trait;
use sqlx::Row as _;

use super::dialect::Db;
use super::effects::write_effects;
use super::sessions::insert_sign_in;
use crate::clock::Millis;
use crate::store::{
    ActionCode, Effects, SignInChallenge, SignInRecord, SqlStore, StepUpStore, StoreResult,
};

const CHALLENGE_COLUMNS: &str =
    "id, account_id, client, created_at, expires_at, attempts, completed_at, alerted_at";

#[async_trait]
impl StepUpStore for SqlStore<Db> {
    async fn put_signin_challenge(&self, c: &SignInChallenge, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
        "INSERT INTO signin_challenges (id, account_id, client, created_at, expires_at, attempts)
         VALUES ($1, $2, $3, $4, $5, 0)",
    )
    .bind(&c.id)
    .bind(&c.account_id)
    .bind(&c.client)
    .bind(c.created_at)
    .bind(c.expires_at)
    .execute(&mut *tx)
    .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn signin_challenge(&self, id: &str) -> StoreResult<Option<SignInChallenge>> {
        let sql = format!("SELECT {CHALLENGE_COLUMNS} FROM signin_challenges WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.write)
            .await?)
    }

    async fn signin_challenge_failed(&self, id: &str) -> StoreResult<i64> {
        let row = sqlx::query(
            "UPDATE signin_challenges
             SET attempts = attempts + 1
             WHERE id = $1
             RETURNING attempts",
        )
        .bind(id)
        .fetch_optional(&self.write)
        .await?;
        Ok(match row {
            Some(r) => r.try_get("attempts")?,
            None => 0,
        })
    }

    async fn incomplete_signins(
        &self,
        before: Millis,
        limit: i64,
    ) -> StoreResult<Vec<SignInChallenge>> {
        let sql = format!(
            "SELECT {CHALLENGE_COLUMNS}
             FROM signin_challenges
             WHERE completed_at IS NULL AND alerted_at IS NULL AND created_at <= $1
             ORDER BY created_at, id LIMIT $2"
        );
        Ok(sqlx::query_as(&sql)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.write)
            .await?)
    }

    async fn signin_alerted(&self, id: &str, now: Millis, fx: &Effects) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE signin_challenges
             SET alerted_at = $1
             WHERE id = $2 AND alerted_at IS NULL AND completed_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn complete_sign_in(
        &self,
        challenge_id: Option<&str>,
        r: &SignInRecord,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        if let Some(id) = challenge_id {
            let done = sqlx::query(
                "UPDATE signin_challenges
                 SET completed_at = $1
                 WHERE id = $2 AND completed_at IS NULL",
            )
            .bind(r.session.created_at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
        }
        insert_sign_in(&mut tx, r).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn session_stepped_up(
        &self,
        session_id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "UPDATE sessions
             SET stepped_up_at = $1
             WHERE id = $2 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_action_code(&self, c: &ActionCode, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM action_codes WHERE account_id = $1 AND purpose = $2")
            .bind(&c.account_id)
            .bind(&c.purpose)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO action_codes (account_id, purpose, code_mac, expires_at, attempts,
                 created_at)
             VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(&c.account_id)
        .bind(&c.purpose)
        .bind(&c.code_mac)
        .bind(c.expires_at)
        .bind(c.created_at)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn action_code(
        &self,
        account_id: &str,
        purpose: &str,
    ) -> StoreResult<Option<ActionCode>> {
        Ok(sqlx::query_as(
            "SELECT account_id, purpose, code_mac, expires_at, attempts, created_at
             FROM action_codes
             WHERE account_id = $1 AND purpose = $2",
        )
        .bind(account_id)
        .bind(purpose)
        .fetch_optional(&self.write)
        .await?)
    }

    async fn action_code_failed(&self, account_id: &str, purpose: &str) -> StoreResult<i64> {
        let row = sqlx::query(
            "UPDATE action_codes
             SET attempts = attempts + 1
             WHERE account_id = $1 AND purpose = $2
             RETURNING attempts",
        )
        .bind(account_id)
        .bind(purpose)
        .fetch_optional(&self.write)
        .await?;
        Ok(match row {
            Some(r) => r.try_get("attempts")?,
            None => 0,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn step_up_with_action_code(
        &self,
        account_id: &str,
        purpose: &str,
        code_mac: &str,
        max_attempts: i64,
        session_id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let spent = sqlx::query(
            "DELETE FROM action_codes
             WHERE account_id = $1 AND purpose = $2 AND code_mac = $3 AND expires_at > $4
               AND attempts < $5",
        )
        .bind(account_id)
        .bind(purpose)
        .bind(code_mac)
        .bind(now)
        .bind(max_attempts)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if spent == 0 {
            return Ok(false);
        }
        let stepped = sqlx::query(
            "UPDATE sessions
             SET stepped_up_at = $1
             WHERE id = $2 AND account_id = $3 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(session_id)
        .bind(account_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if stepped == 0 {
            return Ok(false);
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }
}
