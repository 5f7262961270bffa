//! Second factors: the authenticator app, backup codes, passkeys and WebAuthn ceremonies.

use async_trait::async_trait;
use sqlx::Row as _;

use super::dialect::{Db, Tx, FOR_UPDATE};
use super::effects::write_effects;
use crate::clock::Millis;
use crate::store::constraint::{self, Constraint};
use crate::store::{
    Effects, FactorStore, PasskeyRecord, SqlStore, StoreError, StoreResult, TotpRecord,
};

const TOTP_COLUMNS: &str = "account_id, secret_enc, enabled_at, last_step, created_at";
const PASSKEY_COLUMNS: &str =
    "id, account_id, credential_id, name, passkey, counter, created_at, last_used_at, removed_at";

pub(super) async fn insert_backup_codes(
    tx: &mut Tx<'_>,
    account_id: &str,
    macs: &[String],
    now: Millis,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM backup_codes WHERE account_id = $1")
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    for mac in macs {
        sqlx::query(
            "INSERT INTO backup_codes (account_id, code_mac, created_at)
             VALUES ($1, $2, $3)",
        )
        .bind(account_id)
        .bind(mac)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A new second factor completes an approved recovery (the password was set first).
async fn recovery_factor_enrolled(tx: &mut Tx<'_>, account_id: &str) -> StoreResult<()> {
    sqlx::query("UPDATE accounts SET recovery_required = FALSE WHERE id = $1")
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn delete_totp(tx: &mut Tx<'_>, account_id: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM totp_secrets WHERE account_id = $1")
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Without any second factor left, backup codes have nothing to stand in for.
pub(super) async fn drop_orphan_backup_codes(tx: &mut Tx<'_>, account_id: &str) -> StoreResult<()> {
    sqlx::query(
        "DELETE FROM backup_codes
         WHERE account_id = $1
           AND NOT EXISTS (SELECT 1 FROM totp_secrets
                           WHERE account_id = $2 AND enabled_at IS NOT NULL)
           AND NOT EXISTS (SELECT 1 FROM passkeys
                           WHERE account_id = $3 AND removed_at IS NULL)",
    )
    .bind(account_id)
    .bind(account_id)
    .bind(account_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl FactorStore for SqlStore<Db> {
    async fn factor_counts(&self, account_id: &str) -> StoreResult<(bool, i64, i64)> {
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM totp_secrets
                WHERE account_id = $1 AND enabled_at IS NOT NULL) AS totp,
               (SELECT COUNT(*) FROM passkeys
                WHERE account_id = $2 AND removed_at IS NULL) AS passkeys,
               (SELECT COUNT(*) FROM backup_codes
                WHERE account_id = $3 AND used_at IS NULL) AS codes",
        )
        .bind(account_id)
        .bind(account_id)
        .bind(account_id)
        .fetch_one(&self.read)
        .await?;
        let totp: i64 = row.try_get("totp")?;
        Ok((totp > 0, row.try_get("passkeys")?, row.try_get("codes")?))
    }

    async fn totp(&self, account_id: &str) -> StoreResult<Option<TotpRecord>> {
        let sql = format!("SELECT {TOTP_COLUMNS} FROM totp_secrets WHERE account_id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(account_id)
            .fetch_optional(&self.write)
            .await?)
    }

    async fn totp_begin(&self, r: &TotpRecord, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        let enabled = sqlx::query(&format!(
            "SELECT enabled_at
             FROM totp_secrets
             WHERE account_id = $1 AND enabled_at IS NOT NULL {FOR_UPDATE}"
        ))
        .bind(&r.account_id)
        .fetch_optional(&mut *tx)
        .await?;
        if enabled.is_some() {
            return Err(StoreError::Conflict("totp"));
        }
        delete_totp(&mut tx, &r.account_id).await?;
        sqlx::query(
            "INSERT INTO totp_secrets (account_id, secret_enc, enabled_at, last_step, created_at)
             VALUES ($1, $2, NULL, 0, $3)",
        )
        .bind(&r.account_id)
        .bind(&r.secret_enc)
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn totp_enable(
        &self,
        account_id: &str,
        step: i64,
        macs: Option<&[String]>,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE totp_secrets
             SET enabled_at = $1, last_step = $2
             WHERE account_id = $3 AND enabled_at IS NULL",
        )
        .bind(now)
        .bind(step)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict("totp"));
        }
        if let Some(macs) = macs {
            insert_backup_codes(&mut tx, account_id, macs, now).await?;
        }
        recovery_factor_enrolled(&mut tx, account_id).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn totp_use_step(&self, account_id: &str, step: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE totp_secrets
             SET last_step = $1
             WHERE account_id = $2 AND enabled_at IS NOT NULL AND last_step < $3",
        )
        .bind(step)
        .bind(account_id)
        .bind(step)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn replace_backup_codes(
        &self,
        account_id: &str,
        macs: &[String],
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        insert_backup_codes(&mut tx, account_id, macs, now).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn use_backup_code(&self, account_id: &str, mac: &str, now: Millis) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE backup_codes
             SET used_at = $1
             WHERE account_id = $2 AND code_mac = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(account_id)
        .bind(mac)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn backup_codes_left(&self, account_id: &str) -> StoreResult<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n
             FROM backup_codes
             WHERE account_id = $1 AND used_at IS NULL",
        )
        .bind(account_id)
        .fetch_one(&self.read)
        .await?;
        Ok(row.try_get("n")?)
    }

    async fn passkeys(&self, account_id: &str) -> StoreResult<Vec<PasskeyRecord>> {
        let sql = format!(
            "SELECT {PASSKEY_COLUMNS}
             FROM passkeys
             WHERE account_id = $1 AND removed_at IS NULL
             ORDER BY created_at, id"
        );
        Ok(sqlx::query_as(&sql)
            .bind(account_id)
            .fetch_all(&self.write)
            .await?)
    }

    async fn passkey_by_credential(
        &self,
        credential_id: &str,
    ) -> StoreResult<Option<PasskeyRecord>> {
        let sql = format!(
            "SELECT {PASSKEY_COLUMNS}
             FROM passkeys
             WHERE credential_id = $1 AND removed_at IS NULL"
        );
        Ok(sqlx::query_as(&sql)
            .bind(credential_id)
            .fetch_optional(&self.write)
            .await?)
    }

    async fn add_passkey(
        &self,
        p: &PasskeyRecord,
        macs: Option<&[String]>,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        let inserted = sqlx::query(
        "INSERT INTO passkeys (id, account_id, credential_id, name, passkey, counter, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&p.id)
    .bind(&p.account_id)
    .bind(&p.credential_id)
    .bind(&p.name)
    .bind(&p.passkey)
    .bind(p.counter)
    .bind(p.created_at)
    .execute(&mut *tx)
    .await;
        if let Err(e) = inserted {
            return Err(match constraint::violated(&e) {
                Some(Constraint::PasskeyCredential) => StoreError::Conflict("credential_id"),
                _ => e.into(),
            });
        }
        recovery_factor_enrolled(&mut tx, &p.account_id).await?;
        if let Some(macs) = macs {
            insert_backup_codes(&mut tx, &p.account_id, macs, p.created_at).await?;
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn passkey_used(
        &self,
        id: &str,
        passkey: &str,
        counter: i64,
        now: Millis,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE passkeys
             SET passkey = $1, counter = $2, last_used_at = $3
             WHERE id = $4",
        )
        .bind(passkey)
        .bind(counter)
        .bind(now)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn rename_passkey(
        &self,
        account_id: &str,
        id: &str,
        name: &str,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE passkeys
             SET name = $1
             WHERE id = $2 AND account_id = $3 AND removed_at IS NULL",
        )
        .bind(name)
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

    async fn put_ceremony(
        &self,
        id: &str,
        account_id: Option<&str>,
        kind: &str,
        state: &str,
        expires_at: Millis,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO ceremonies (id, account_id, kind, state, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(account_id)
        .bind(kind)
        .bind(state)
        .bind(expires_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn take_ceremony(
        &self,
        id: &str,
        now: Millis,
    ) -> StoreResult<Option<(Option<String>, String, String)>> {
        let row = sqlx::query(
            "DELETE FROM ceremonies
             WHERE id = $1
             RETURNING account_id, kind, state, expires_at",
        )
        .bind(id)
        .fetch_optional(&self.write)
        .await?;
        // Expired ceremonies of anyone are cleaned up on the way.
        sqlx::query("DELETE FROM ceremonies WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.write)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: Millis = row.try_get("expires_at")?;
        if expires_at <= now {
            return Ok(None);
        }
        Ok(Some((
            row.try_get("account_id")?,
            row.try_get("kind")?,
            row.try_get("state")?,
        )))
    }

    async fn set_require_passkey(
        &self,
        account_id: &str,
        on: bool,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE accounts SET require_passkey = $1 WHERE id = $2")
            .bind(on)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }
}
