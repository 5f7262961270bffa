//! API keys as stored, and what the gateway reads to authenticate one.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::api_key::{Allowlist, ExpiryWarning, KeyAccess, KeyType, Permissions};
use crate::store::{Effects, StoreResult};

/// An API key as stored. `secret_enc` (HMAC) is sealed; `public_key` (Ed25519/RSA) is PEM.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub api_key: String,
    pub account_id: String,
    pub label: String,
    /// `None`: the stored type is not one Rampart knows (a damaged row; the key is refused).
    pub key_type: Option<KeyType>,
    pub secret_enc: Option<String>,
    pub public_key: Option<String>,
    /// Stored as `permissions` and `ip_allowlist` text.
    pub access: KeyAccess,
    pub created_at: Millis,
    pub created_ip: String,
    pub created_device: String,
    /// Created from a device that is not one of the owner's usual ones.
    pub created_unusual: bool,
    pub expires_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
    pub last_used_ip: Option<String>,
    pub warned_7d_at: Option<Millis>,
    pub warned_1d_at: Option<Millis>,
    pub deleted_at: Option<Millis>,
    /// Suspended by its owner ("Secure my account"): refused until resumed.
    pub suspended_at: Option<Millis>,
}

/// What the gateway needs to authenticate with a key: the key and its account's state.
#[derive(Debug, Clone)]
pub struct ApiKeyAuth {
    pub key: ApiKeyRecord,
    pub uid: String,
    pub frozen: bool,
    /// The end of the account's latest withdrawal lock, past or future (the caller compares
    /// with its clock, so a cached entry stays right as time passes).
    pub withdrawals_locked_until: Option<Millis>,
}

#[async_trait]
pub trait ApiKeyStore {
    async fn create_api_key(&self, key: &ApiKeyRecord, fx: &Effects) -> StoreResult<()>;
    /// A live (not deleted) key with its account's UID and freeze state: one read.
    async fn api_key_auth(&self, api_key: &str) -> StoreResult<Option<ApiKeyAuth>>;
    /// Live keys of an account, newest first.
    async fn api_keys(&self, account_id: &str) -> StoreResult<Vec<ApiKeyRecord>>;
    async fn update_api_key(
        &self,
        account_id: &str,
        api_key: &str,
        permissions: Permissions,
        allowlist: &Allowlist,
        expires_at: Option<Millis>,
        fx: &Effects,
    ) -> StoreResult<bool>;
    async fn delete_api_key(
        &self,
        account_id: &str,
        api_key: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;
    async fn delete_all_api_keys(
        &self,
        account_id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<u64>;
    /// Records last use in one batch: `(key, at, ip)`.
    async fn api_keys_used(&self, uses: &[(String, Millis, String)]) -> StoreResult<()>;
    /// Live keys expiring before `before` that have not had the warning `which`.
    async fn api_keys_to_warn(
        &self,
        which: ExpiryWarning,
        before: Millis,
        now: Millis,
    ) -> StoreResult<Vec<ApiKeyRecord>>;
    async fn api_key_warned(
        &self,
        api_key: &str,
        which: ExpiryWarning,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// Tells every instance to drop cached keys (`key:<api_key>` or `account:<id>`):
    /// PostgreSQL `NOTIFY`; a no-op on SQLite, which has one instance.
    async fn broadcast_invalidation(&self, what: &str) -> StoreResult<()>;
}
