//! Accounts and their email confirmation.

use async_trait::async_trait;
use sqlx::Row as _;

use super::dialect::{Db, Tx};
use super::effects::write_effects;
use crate::clock::Millis;
use crate::store::constraint::{self, Constraint};
use crate::store::{
    Account, AccountStore, Confirmation, Effects, SqlStore, StoreError, StoreResult,
};

const ACCOUNT_COLUMNS: &str = "id, uid, email, password_hash, email_confirmed_at, \
     anti_phishing_code, created_at, frozen_at, require_passkey, recovery_required";

pub(super) async fn insert_confirmation(tx: &mut Tx<'_>, c: &Confirmation) -> StoreResult<()> {
    sqlx::query("DELETE FROM email_confirmations WHERE account_id = $1")
        .bind(&c.account_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO email_confirmations (account_id, code_mac, expires_at, attempts, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&c.account_id)
    .bind(&c.code_mac)
    .bind(c.expires_at)
    .bind(c.attempts)
    .bind(c.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl AccountStore for SqlStore<Db> {
    async fn create_account(&self, a: &Account, c: &Confirmation, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO accounts (id, uid, email, password_hash, email_confirmed_at,
                 anti_phishing_code, created_at, frozen_at, require_passkey)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&a.id)
        .bind(&a.uid)
        .bind(&a.email)
        .bind(&a.password_hash)
        .bind(a.email_confirmed_at)
        .bind(&a.anti_phishing_code)
        .bind(a.created_at)
        .bind(a.frozen_at)
        .bind(a.require_passkey)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            return Err(match constraint::violated(&e) {
                Some(Constraint::AccountUid) => StoreError::Conflict("uid"),
                Some(Constraint::AccountEmail) => StoreError::Conflict("email"),
                _ => e.into(),
            });
        }
        insert_confirmation(&mut tx, c).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = $1");
        Ok(sqlx::query_as(&sql)
            .bind(email)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn account_by_id(&self, id: &str) -> StoreResult<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn confirmation(&self, account_id: &str) -> StoreResult<Option<Confirmation>> {
        Ok(sqlx::query_as(
            "SELECT account_id, code_mac, expires_at, attempts, created_at
             FROM email_confirmations
             WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_optional(&self.write)
        .await?)
    }

    async fn replace_confirmation(&self, c: &Confirmation, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        insert_confirmation(&mut tx, c).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn confirmation_failed(&self, account_id: &str, fx: &Effects) -> StoreResult<i64> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "UPDATE email_confirmations
             SET attempts = attempts + 1
             WHERE account_id = $1
             RETURNING attempts",
        )
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        let attempts = match row {
            Some(r) => r.try_get("attempts")?,
            None => 0,
        };
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(attempts)
    }

    async fn confirm_email(&self, account_id: &str, now: Millis, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "UPDATE accounts
             SET email_confirmed_at = $1
             WHERE id = $2 AND email_confirmed_at IS NULL",
        )
        .bind(now)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM email_confirmations WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_anti_phishing_code(
        &self,
        account_id: &str,
        code: &str,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE accounts SET anti_phishing_code = $1 WHERE id = $2")
            .bind(code)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_account(&self, account_id: &str, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM outbox WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }
}
