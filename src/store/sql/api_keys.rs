//! API keys: creation, the gateway's one-read lookup, updates, use and expiry warnings.

use async_trait::async_trait;
use sqlx::Row as _;

use super::dialect::{Db, NOTIFY};
use super::effects::write_effects;
use crate::clock::Millis;
use crate::domain::api_key::{Allowlist, ExpiryWarning, KeyAccess, KeyType, Permissions};
use crate::store::{ApiKeyAuth, ApiKeyRecord, ApiKeyStore, Effects, SqlStore, StoreResult};

const API_KEY_COLUMNS: &str = "api_key, account_id, label, key_type, secret_enc, public_key, \
     permissions, ip_allowlist, created_at, created_ip, created_device, created_unusual, \
     expires_at, last_used_at, last_used_ip, warned_7d_at, warned_1d_at, deleted_at, suspended_at";

/// An `api_keys` row as stored: the key type decodes or is `None`, and the permissions and
/// allowlist decode into [`KeyAccess`]: a damaged key stays visible (its owner can delete
/// it) and the gateway refuses it.
#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    api_key: String,
    account_id: String,
    label: String,
    key_type: String,
    secret_enc: Option<String>,
    public_key: Option<String>,
    permissions: String,
    ip_allowlist: String,
    created_at: Millis,
    created_ip: String,
    created_device: String,
    created_unusual: bool,
    expires_at: Option<Millis>,
    last_used_at: Option<Millis>,
    last_used_ip: Option<String>,
    warned_7d_at: Option<Millis>,
    warned_1d_at: Option<Millis>,
    deleted_at: Option<Millis>,
    suspended_at: Option<Millis>,
}

impl From<ApiKeyRow> for ApiKeyRecord {
    fn from(r: ApiKeyRow) -> Self {
        ApiKeyRecord {
            access: KeyAccess::decode(r.permissions, r.ip_allowlist),
            api_key: r.api_key,
            account_id: r.account_id,
            label: r.label,
            key_type: KeyType::parse(&r.key_type).ok(),
            secret_enc: r.secret_enc,
            public_key: r.public_key,
            created_at: r.created_at,
            created_ip: r.created_ip,
            created_device: r.created_device,
            created_unusual: r.created_unusual,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            last_used_ip: r.last_used_ip,
            warned_7d_at: r.warned_7d_at,
            warned_1d_at: r.warned_1d_at,
            deleted_at: r.deleted_at,
            suspended_at: r.suspended_at,
        }
    }
}

/// The column that records when a warning went out.
fn warned_column(which: ExpiryWarning) -> &'static str {
    match which {
        ExpiryWarning::SevenDays => "warned_7d_at",
        ExpiryWarning::OneDay => "warned_1d_at",
    }
}

#[async_trait]
impl ApiKeyStore for SqlStore<Db> {
    async fn create_api_key(&self, k: &ApiKeyRecord, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO api_keys (api_key, account_id, label, key_type, secret_enc, public_key,
                 permissions, ip_allowlist, created_at, created_ip, created_device,
                 created_unusual, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&k.api_key)
        .bind(&k.account_id)
        .bind(&k.label)
        .bind(k.key_type.map_or("unknown", KeyType::as_str))
        .bind(&k.secret_enc)
        .bind(&k.public_key)
        .bind(k.access.permissions_csv())
        .bind(k.access.allowlist_csv())
        .bind(k.created_at)
        .bind(&k.created_ip)
        .bind(&k.created_device)
        .bind(k.created_unusual)
        .bind(k.expires_at)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn api_key_auth(&self, api_key: &str) -> StoreResult<Option<ApiKeyAuth>> {
        let sql = format!(
            "SELECT {API_KEY_COLUMNS},
                    (SELECT uid FROM accounts a WHERE a.id = k.account_id) AS uid,
                    (SELECT frozen_at FROM accounts a WHERE a.id = k.account_id) AS frozen_at,
                    (SELECT MAX(until) FROM withdrawal_locks w
                     WHERE w.account_id = k.account_id) AS locked_until
             FROM api_keys k
             WHERE api_key = $1 AND deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(api_key)
            .fetch_optional(&self.read)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let key = ApiKeyRecord::from(<ApiKeyRow as sqlx::FromRow<'_, _>>::from_row(&row)?);
        let frozen: Option<Millis> = row.try_get("frozen_at")?;
        Ok(Some(ApiKeyAuth {
            key,
            uid: row.try_get("uid")?,
            frozen: frozen.is_some(),
            withdrawals_locked_until: row.try_get("locked_until")?,
        }))
    }

    async fn api_keys(&self, account_id: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        let sql = format!(
            "SELECT {API_KEY_COLUMNS}
             FROM api_keys
             WHERE account_id = $1 AND deleted_at IS NULL
             ORDER BY created_at DESC, api_key"
        );
        let rows: Vec<ApiKeyRow> = sqlx::query_as(&sql)
            .bind(account_id)
            .fetch_all(&self.write)
            .await?;
        Ok(rows.into_iter().map(ApiKeyRecord::from).collect())
    }

    async fn update_api_key(
        &self,
        account_id: &str,
        api_key: &str,
        permissions: Permissions,
        allowlist: &Allowlist,
        expires_at: Option<Millis>,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE api_keys
             SET permissions = $1, ip_allowlist = $2, expires_at = $3
             WHERE api_key = $4 AND account_id = $5 AND deleted_at IS NULL",
        )
        .bind(permissions.to_csv())
        .bind(allowlist.to_csv())
        .bind(expires_at)
        .bind(api_key)
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

    async fn delete_api_key(
        &self,
        account_id: &str,
        api_key: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE api_keys
             SET deleted_at = $1, secret_enc = NULL
             WHERE api_key = $2 AND account_id = $3 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(api_key)
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

    async fn delete_all_api_keys(
        &self,
        account_id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<u64> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "UPDATE api_keys
             SET deleted_at = $1, secret_enc = NULL
             WHERE account_id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(account_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn api_keys_used(&self, uses: &[(String, Millis, String)]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut tx = self.write.begin().await?;
        for (key, at, ip) in uses {
            sqlx::query(
                "UPDATE api_keys
                 SET last_used_at = $1, last_used_ip = $2
                 WHERE api_key = $3 AND (last_used_at IS NULL OR last_used_at < $4)",
            )
            .bind(at)
            .bind(ip)
            .bind(key)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn api_keys_to_warn(
        &self,
        which: ExpiryWarning,
        before: Millis,
        now: Millis,
    ) -> StoreResult<Vec<ApiKeyRecord>> {
        let column = warned_column(which);
        let sql = format!(
            "SELECT {API_KEY_COLUMNS}
             FROM api_keys
             WHERE deleted_at IS NULL AND expires_at IS NOT NULL AND expires_at <= $1
               AND expires_at > $2 AND {column} IS NULL
             ORDER BY expires_at LIMIT 200"
        );
        let rows: Vec<ApiKeyRow> = sqlx::query_as(&sql)
            .bind(before)
            .bind(now)
            .fetch_all(&self.write)
            .await?;
        Ok(rows.into_iter().map(ApiKeyRecord::from).collect())
    }

    async fn api_key_warned(
        &self,
        api_key: &str,
        which: ExpiryWarning,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()> {
        let column = warned_column(which);
        let mut tx = self.write.begin().await?;
        sqlx::query(&format!(
            "UPDATE api_keys SET {column} = $1 WHERE api_key = $2"
        ))
        .bind(now)
        .bind(api_key)
        .execute(&mut *tx)
        .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn broadcast_invalidation(&self, what: &str) -> StoreResult<()> {
        if let Some(notify) = NOTIFY {
            sqlx::query(notify).bind(what).execute(&self.write).await?;
        }
        Ok(())
    }
}
