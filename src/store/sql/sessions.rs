//! Sign-ins, sessions, devices and the login history.

use async_trait::async_trait;
use sqlx::Row as _;

use super::dialect::{Db, Tx};
use super::effects::write_effects;
use crate::clock::Millis;
use crate::domain::sign_in::SignInMethod;
use crate::store::{
    Account, Device, Effects, Login, Session, SessionAuth, SessionStore, SignInRecord, SqlStore,
    StoreError, StoreResult,
};

pub(super) const DEVICE_COLUMNS: &str = "id, account_id, token_hash, fingerprint, model, os, \
     browser, user_agent, ip, city, country, first_seen, last_active, trusted_at";

#[async_trait]
impl SessionStore for SqlStore<Db> {
    async fn record_sign_in(&self, r: &SignInRecord, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        insert_sign_in(&mut tx, r).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_failed_login(&self, login: &Login, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        insert_login(&mut tx, login).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn device_by_token(
        &self,
        account_id: &str,
        token_hash: &str,
    ) -> StoreResult<Option<Device>> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS}
             FROM devices
             WHERE token_hash = $1 AND account_id = $2 AND removed_at IS NULL"
        );
        Ok(sqlx::query_as(&sql)
            .bind(token_hash)
            .bind(account_id)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn session_auth(&self, session_id: &str) -> StoreResult<Option<SessionAuth>> {
        let row = sqlx::query(
            "SELECT s.id, s.account_id, s.device_id, s.created_at AS s_created_at,
                 s.last_seen_at, s.expires_at, s.stepped_up_at, s.method, s.confirm_token_hash,
                 s.confirmed_at, s.ended_at, a.uid, a.email, a.password_hash,
                 a.email_confirmed_at, a.anti_phishing_code, a.created_at, a.frozen_at,
                 a.require_passkey, a.recovery_required
             FROM sessions s
             JOIN accounts a ON a.id = s.account_id
             WHERE s.id = $1",
        )
        .bind(session_id)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let session = Session {
            id: row.try_get("id")?,
            account_id: row.try_get("account_id")?,
            device_id: row.try_get("device_id")?,
            created_at: row.try_get("s_created_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
            expires_at: row.try_get("expires_at")?,
            stepped_up_at: row.try_get("stepped_up_at")?,
            method: {
                let method: String = row.try_get("method")?;
                SignInMethod::parse(&method)
                    .map_err(|e| StoreError::Corrupt(format!("session {session_id}: {e}")))?
            },
            confirm_token_hash: {
                let confirmed: Option<Millis> = row.try_get("confirmed_at")?;
                let pending: Option<String> = row.try_get("confirm_token_hash")?;
                pending.filter(|_| confirmed.is_none())
            },
            ended_at: row.try_get("ended_at")?,
        };
        let account = Account {
            id: session.account_id.clone(),
            uid: row.try_get("uid")?,
            email: row.try_get("email")?,
            password_hash: row.try_get("password_hash")?,
            email_confirmed_at: row.try_get("email_confirmed_at")?,
            anti_phishing_code: row.try_get("anti_phishing_code")?,
            created_at: row.try_get("created_at")?,
            frozen_at: row.try_get("frozen_at")?,
            require_passkey: row.try_get("require_passkey")?,
            recovery_required: row.try_get("recovery_required")?,
        };
        Ok(Some(SessionAuth { session, account }))
    }

    async fn touch_session(
        &self,
        session_id: &str,
        device_id: &str,
        now: Millis,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "UPDATE sessions
             SET last_seen_at = $1
             WHERE id = $2 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE devices SET last_active = $1 WHERE id = $2 AND last_active < $3")
            .bind(now)
            .bind(device_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn end_session(
        &self,
        session_id: &str,
        reason: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "UPDATE sessions
             SET ended_at = $1, end_reason = $2
             WHERE id = $3 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn devices(&self, account_id: &str, since: Millis) -> StoreResult<Vec<Device>> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS}
             FROM devices
             WHERE account_id = $1 AND last_active >= $2 AND removed_at IS NULL
             ORDER BY last_active DESC, id"
        );
        Ok(sqlx::query_as(&sql)
            .bind(account_id)
            .bind(since)
            .fetch_all(&self.read)
            .await?)
    }

    async fn logins(&self, account_id: &str, limit: i64) -> StoreResult<Vec<Login>> {
        Ok(sqlx::query_as(
            "SELECT id, account_id, success, reason, ip, city, country, device_id, model, os,
                 browser, at, method
             FROM logins
             WHERE account_id = $1
             ORDER BY at DESC, id LIMIT $2",
        )
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }
}

/// The device (new or refreshed), the session and the login row of a sign-in.
pub(super) async fn insert_sign_in(tx: &mut Tx<'_>, r: &SignInRecord) -> StoreResult<()> {
    let d = &r.device;
    if r.device_is_new {
        sqlx::query(
            "INSERT INTO devices (id, account_id, token_hash, fingerprint, model, os, browser,
                 user_agent, ip, city, country, first_seen, last_active)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&d.id)
        .bind(&d.account_id)
        .bind(&d.token_hash)
        .bind(&d.fingerprint)
        .bind(&d.model)
        .bind(&d.os)
        .bind(&d.browser)
        .bind(&d.user_agent)
        .bind(&d.ip)
        .bind(&d.city)
        .bind(&d.country)
        .bind(d.first_seen)
        .bind(d.last_active)
        .execute(&mut **tx)
        .await?;
    } else {
        sqlx::query(
            "UPDATE devices
             SET fingerprint = $1, model = $2, os = $3, browser = $4, user_agent = $5, ip = $6,
                 city = $7, country = $8, last_active = $9
             WHERE id = $10 AND account_id = $11",
        )
        .bind(&d.fingerprint)
        .bind(&d.model)
        .bind(&d.os)
        .bind(&d.browser)
        .bind(&d.user_agent)
        .bind(&d.ip)
        .bind(&d.city)
        .bind(&d.country)
        .bind(d.last_active)
        .bind(&d.id)
        .bind(&d.account_id)
        .execute(&mut **tx)
        .await?;
    }
    let s = &r.session;
    sqlx::query(
        "INSERT INTO sessions (id, account_id, device_id, created_at, last_seen_at, expires_at,
             stepped_up_at, method, confirm_token_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&s.id)
    .bind(&s.account_id)
    .bind(&s.device_id)
    .bind(s.created_at)
    .bind(s.last_seen_at)
    .bind(s.expires_at)
    .bind(s.stepped_up_at)
    .bind(s.method.as_str())
    .bind(&s.confirm_token_hash)
    .execute(&mut **tx)
    .await?;
    insert_login(tx, &r.login).await?;
    Ok(())
}

pub(super) async fn insert_login(tx: &mut Tx<'_>, l: &Login) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO logins (id, account_id, success, reason, ip, city, country, device_id,
             model, os, browser, at, method)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&l.id)
    .bind(&l.account_id)
    .bind(l.success)
    .bind(&l.reason)
    .bind(&l.ip)
    .bind(&l.city)
    .bind(&l.country)
    .bind(&l.device_id)
    .bind(&l.model)
    .bind(&l.os)
    .bind(&l.browser)
    .bind(l.at)
    .bind(l.method.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
