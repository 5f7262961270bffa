//! Second factors: the authenticator app, backup codes, passkeys, WebAuthn ceremonies and
//! the "require a passkey" setting.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::store::{Effects, StoreResult};

/// An authenticator-app secret (encrypted) and its replay guard.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TotpRecord {
    pub account_id: String,
    pub secret_enc: String,
    pub enabled_at: Option<Millis>,
    /// The highest 30-second step accepted so far; codes of that step or earlier are refused.
    pub last_step: i64,
    pub created_at: Millis,
}

/// A registered passkey or security key. `passkey` is webauthn-rs's serialised credential:
/// public key, counter and flags, never a private key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PasskeyRecord {
    pub id: String,
    pub account_id: String,
    pub credential_id: String,
    pub name: String,
    pub passkey: String,
    pub counter: i64,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    pub removed_at: Option<Millis>,
}

/// Second factors and their ceremonies.
#[async_trait]
pub trait FactorStore {
    async fn totp(&self, account_id: &str) -> StoreResult<Option<TotpRecord>>;
    /// In one read: authenticator app enabled, live passkeys, unused backup codes.
    async fn factor_counts(&self, account_id: &str) -> StoreResult<(bool, i64, i64)>;
    /// Stores a not yet confirmed secret, replacing an earlier unconfirmed one. Refuses
    /// (`Conflict`) when an enabled secret exists.
    async fn totp_begin(&self, record: &TotpRecord, fx: &Effects) -> StoreResult<()>;
    /// Enables the secret, records the accepted step and, when given, replaces the backup codes.
    async fn totp_enable(
        &self,
        account_id: &str,
        step: i64,
        backup_code_macs: Option<&[String]>,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// Accepts `step` only if it is later than every step accepted before (atomic).
    async fn totp_use_step(&self, account_id: &str, step: i64) -> StoreResult<bool>;
    async fn replace_backup_codes(
        &self,
        account_id: &str,
        macs: &[String],
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// Marks an unused code used (atomic: a code works once).
    async fn use_backup_code(&self, account_id: &str, mac: &str, now: Millis) -> StoreResult<bool>;
    async fn backup_codes_left(&self, account_id: &str) -> StoreResult<i64>;

    /// Live (not removed) passkeys of an account.
    async fn passkeys(&self, account_id: &str) -> StoreResult<Vec<PasskeyRecord>>;
    async fn passkey_by_credential(
        &self,
        credential_id: &str,
    ) -> StoreResult<Option<PasskeyRecord>>;
    async fn add_passkey(
        &self,
        record: &PasskeyRecord,
        backup_code_macs: Option<&[String]>,
        fx: &Effects,
    ) -> StoreResult<()>;
    async fn passkey_used(
        &self,
        id: &str,
        passkey: &str,
        counter: i64,
        now: Millis,
    ) -> StoreResult<()>;
    async fn rename_passkey(
        &self,
        account_id: &str,
        id: &str,
        name: &str,
        fx: &Effects,
    ) -> StoreResult<bool>;

    async fn put_ceremony(
        &self,
        id: &str,
        account_id: Option<&str>,
        kind: &str,
        state: &str,
        expires_at: Millis,
    ) -> StoreResult<()>;
    /// Takes a ceremony out (single use): its account, kind and state; `None` if unknown or
    /// expired.
    async fn take_ceremony(
        &self,
        id: &str,
        now: Millis,
    ) -> StoreResult<Option<(Option<String>, String, String)>>;

    async fn set_require_passkey(
        &self,
        account_id: &str,
        on: bool,
        fx: &Effects,
    ) -> StoreResult<()>;
}
