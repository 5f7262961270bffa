//! Incident response as stored: "Secure my account" in one transaction, the settings lock,
//! suspended API keys, incidents, and the platform's official channels.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::incident::{ChannelKind, SettingsLock};
use crate::store::{Effects, StoreResult, WithdrawalLock};

/// What "Secure my account" does, decided by the caller.
#[derive(Debug, Clone)]
pub struct SecureRequest<'a> {
    pub incident_id: &'a str,
    pub account_id: &'a str,
    /// The session that asked (kept signed in); `None` from a mailed link (every session ends).
    pub keep_session: Option<&'a str>,
    /// The mailed link to spend in the same transaction (its token's hash).
    pub link_hash: Option<&'a str>,
    pub via: &'a str,
    pub lock: &'a WithdrawalLock,
    pub now: Millis,
}

/// What it did, step by step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecureOutcome {
    pub sessions_ended: u64,
    pub keys_suspended: u64,
    pub withdrawals_cancelled: Vec<String>,
    pub withdrawals_recalled: Vec<String>,
}

/// An incident the owner opened.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IncidentRecord {
    pub id: String,
    pub account_id: String,
    pub opened_at: Millis,
    pub via: String,
    /// The steps' results, JSON.
    pub steps: String,
}

/// One official channel.
#[derive(Debug, Clone)]
pub struct OfficialChannel {
    pub id: String,
    pub kind: ChannelKind,
    pub normalized: String,
    pub display: String,
    pub note: String,
    pub added_at: Millis,
    pub added_by: String,
}

#[async_trait]
pub trait IncidentStore {
    /// Ends the other sessions, suspends every key, cancels held withdrawals and recalls
    /// released ones not yet broadcast, locks withdrawals and opens the incident, in one
    /// transaction with the account row locked (a withdrawal decision waits for it).
    /// `None` when the mailed link was already spent or has expired.
    async fn secure_account(
        &self,
        req: &SecureRequest<'_>,
        fx: &Effects,
    ) -> StoreResult<Option<SecureOutcome>>;
    async fn incidents(&self, account_id: &str) -> StoreResult<Vec<IncidentRecord>>;
    /// The devices with a session that is live at `now` (not ended, not expired, seen since
    /// `idle_since`).
    async fn live_devices(
        &self,
        account_id: &str,
        now: Millis,
        idle_since: Millis,
    ) -> StoreResult<Vec<String>>;
    /// The account's settings lock, ended or not.
    async fn settings_lock(&self, account_id: &str) -> StoreResult<Option<SettingsLock>>;
    /// Writes the lock. `Ok(false)` if a lock still in force at `now` was there (locks are
    /// not replaced: a thief with a session could otherwise shorten the owner's).
    async fn put_settings_lock(
        &self,
        account_id: &str,
        lock: &SettingsLock,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;
    /// Replaces the lock in force (to end it early); `Ok(false)` if none is in force.
    async fn update_settings_lock(
        &self,
        account_id: &str,
        lock: &SettingsLock,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;
    /// Suspends (`true`) or resumes one live key; `Ok(false)` if it is not the account's.
    async fn set_key_suspended(
        &self,
        account_id: &str,
        api_key: &str,
        suspended: bool,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;
    async fn official_channels(&self) -> StoreResult<Vec<OfficialChannel>>;
    /// Adds a channel; `Ok(false)` if the same kind and value is already listed.
    async fn add_official_channel(&self, c: &OfficialChannel, fx: &Effects) -> StoreResult<bool>;
    async fn remove_official_channel(&self, id: &str, fx: &Effects) -> StoreResult<bool>;
}
