//! Freezing, device removal and trust, new-device confirmation, the inbox and mail
//! preferences.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::mail_kind::MailKind;
use crate::store::{Device, Effects, StoreResult};

/// What a freeze did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeOutcome {
    Frozen { sessions_ended: u64 },
    AlreadyFrozen { since: Millis },
}

/// A freeze link as stored: its account, expiry and use.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FreezeLinkRow {
    pub account_id: String,
    pub expires_at: Millis,
    pub used_at: Option<Millis>,
}

/// A blocked device: its fingerprint, when it was blocked, and what it looked like.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct BlockedDevice {
    pub fingerprint: String,
    pub blocked_at: Millis,
    pub model: Option<String>,
    pub os: Option<String>,
    pub browser: Option<String>,
    pub ip: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Notification {
    pub id: String,
    #[serde(skip)]
    pub account_id: String,
    pub subject: String,
    pub body: String,
    pub created_at: Millis,
    pub read_at: Option<Millis>,
}

/// Freezing, device removal and trust, new-device confirmation, the notification inbox
/// and mail preferences.
#[async_trait]
pub trait ProtectionStore {
    /// Freezes the account and ends every session, once; later calls answer
    /// `AlreadyFrozen` and write nothing.
    async fn freeze_account(
        &self,
        account_id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<FreezeOutcome>;
    async fn freeze_link(&self, token_hash: &str) -> StoreResult<Option<FreezeLinkRow>>;
    /// Spends a freeze link (single use, unexpired) and freezes its account in one
    /// transaction; `None` if the link was spent or expired meanwhile.
    async fn spend_freeze_link(
        &self,
        token_hash: &str,
        account_id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Option<FreezeOutcome>>;
    async fn device(&self, account_id: &str, device_id: &str) -> StoreResult<Option<Device>>;
    /// Removes a device (its sessions end) and, with `block`, refuses its fingerprint from
    /// then on. `None` if the device is not the account's.
    async fn remove_device(
        &self,
        account_id: &str,
        device_id: &str,
        block: bool,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Option<u64>>;
    async fn fingerprint_blocked(&self, account_id: &str, fingerprint: &str) -> StoreResult<bool>;
    /// The blocked devices, newest first, each described by the last device seen with that
    /// fingerprint.
    async fn blocked_devices(&self, account_id: &str) -> StoreResult<Vec<BlockedDevice>>;
    /// Lets a blocked fingerprint sign in again; `false` if it was not blocked.
    async fn unblock_fingerprint(
        &self,
        account_id: &str,
        fingerprint: &str,
        fx: &Effects,
    ) -> StoreResult<bool>;
    /// Whether the account has any (not removed) device: one indexed probe.
    async fn has_devices(&self, account_id: &str) -> StoreResult<bool>;
    async fn end_other_sessions(
        &self,
        account_id: &str,
        keep: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<u64>;
    /// Trusts (at most `max` per account) or untrusts a device. `Ok(false)` when the list is full.
    async fn set_device_trusted(
        &self,
        account_id: &str,
        device_id: &str,
        trusted: bool,
        max: i64,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Option<bool>>;
    /// The account whose live session waits for this confirmation token.
    async fn pending_session_account(&self, token_hash: &str) -> StoreResult<Option<String>>;
    /// Confirms the pending session behind a mailed link, once; `false` if already done.
    async fn confirm_session(
        &self,
        token_hash: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;
    async fn notifications(&self, account_id: &str, limit: i64) -> StoreResult<Vec<Notification>>;
    async fn mark_notifications_read(&self, account_id: &str, now: Millis) -> StoreResult<u64>;
    /// Mail kinds the account switched off.
    async fn mail_mutes(&self, account_id: &str) -> StoreResult<Vec<MailKind>>;
    /// Switches a mail kind back on (and cancels a pending switch-off).
    async fn unmute_mail(&self, account_id: &str, kind: MailKind, fx: &Effects) -> StoreResult<()>;
}
