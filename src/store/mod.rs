//! Storage, by area. Each area is a trait; [`Store`] is all of them. Two native
//! implementations share one body of SQL (the common subset: `$N` placeholders, integer
//! Unix-ms timestamps, UUIDs as text) through the [`sql_store!`] macro in `sql.rs`:
//! [`sqlite::SqliteStore`] and [`postgres::PostgresStore`], each with its own migrations.
//!
//! Every mutating method that matters for security takes [`Effects`]: the audit events and
//! mails that belong to the change are written in the same transaction (the outbox), so a
//! crash never leaves a change without its audit record or its notification.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::clock::Millis;
use crate::domain::audit::AuditRecord;
use crate::domain::backend::Backend;
use crate::domain::throttle::ThrottlePolicy;

#[macro_use]
mod sql;
pub mod postgres;
pub mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value (email, public UID) is already taken.
    #[error("conflict on {0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Account {
    pub id: String,
    pub uid: String,
    pub email: String,
    pub password_hash: String,
    pub email_confirmed_at: Option<Millis>,
    pub anti_phishing_code: Option<String>,
    pub created_at: Millis,
    pub frozen_at: Option<Millis>,
    /// "Require a passkey for important actions" (sign-in and withdrawals).
    pub require_passkey: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Confirmation {
    pub account_id: String,
    pub code_mac: String,
    pub expires_at: Millis,
    pub attempts: i64,
    pub created_at: Millis,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Device {
    pub id: String,
    pub account_id: String,
    #[serde(skip)]
    pub token_hash: Option<String>,
    pub fingerprint: String,
    pub model: String,
    pub os: String,
    pub browser: String,
    pub user_agent: String,
    pub ip: String,
    pub city: Option<String>,
    pub country: Option<String>,
    pub first_seen: Millis,
    pub last_active: Millis,
    /// On the owner's trusted-devices list (at most 3).
    pub trusted_at: Option<Millis>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub id: String,
    pub account_id: String,
    pub device_id: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
    /// The last time this session proved a second factor (sign-in or step-up).
    pub stepped_up_at: Option<Millis>,
    /// How it was opened: `password`, `password+totp`, `password+backup_code`,
    /// `password+passkey`, `passkey`.
    pub method: String,
    /// Set while a sign-in from an unrecognised device waits for its mailed confirmation
    /// (SHA-256 of the link's token); the session is unusable until then.
    pub confirm_token_hash: Option<String>,
    /// When it ended (signed out, expired, device removed, account frozen), if it did.
    pub ended_at: Option<Millis>,
}

/// A live session with its account, read in one query on every authenticated request.
#[derive(Debug, Clone)]
pub struct SessionAuth {
    pub session: Session,
    pub account: Account,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Login {
    pub id: String,
    pub account_id: String,
    pub success: bool,
    /// `signed_in`, `wrong_password`, `email_not_confirmed`, `throttled`.
    pub reason: String,
    pub ip: String,
    pub city: Option<String>,
    pub country: Option<String>,
    pub device_id: Option<String>,
    pub model: String,
    pub os: String,
    pub browser: String,
    pub at: Millis,
    /// `password`, `password+totp`, `passkey`, … (see [`Session::method`]).
    pub method: String,
}

/// An audit event to append; the store assigns `seq` and the chain hash.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: Millis,
    pub account_id: Option<String>,
    /// `account:<uid>`, `anonymous`, `system`, `operator:<name>`.
    pub actor: String,
    /// Dotted verb, e.g. `signin.succeeded`.
    pub action: String,
    pub ip: Option<String>,
    pub device: Option<String>,
    pub detail: serde_json::Value,
}

/// A mail to queue in the outbox.
#[derive(Debug, Clone)]
pub struct NewMail {
    pub id: String,
    pub account_id: Option<String>,
    pub to: String,
    pub subject: String,
    pub body_text: String,
    /// What the in-app inbox and webhooks show: the message alone, without the mail's
    /// freeze link (a bearer token that freezes the account) and anti-phishing code, which
    /// belong in the owner's mailbox, not in the platform's webhook logs.
    pub event_text: String,
    pub created_at: Millis,
    /// The single-use "Not you? Freeze your account" link this mail carries.
    pub freeze_link: Option<FreezeLink>,
    /// Also shown in the in-app inbox and pushed to webhooks. Off for mails that carry a
    /// code (confirmation, password change): those prove access to the mailbox and must
    /// not be readable from a signed-in session.
    pub inbox: bool,
    /// `security` (always sent) or an optional kind the owner may switch off
    /// (see [`OPTIONAL_MAIL_KINDS`]).
    pub kind: &'static str,
}

/// Security mails an owner may switch off (after 48 hours); everything else always goes out.
pub const OPTIONAL_MAIL_KINDS: [(&str, &str); 2] = [
    (
        "signin",
        "a mail for every sign-in (new devices always mail and must be confirmed)",
    ),
    (
        "api_keys",
        "API-key expiry warnings and refused-address alerts",
    ),
];

impl NewMail {
    /// Marks a mail as of an optional kind.
    pub fn optional(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }

    /// Marks a mail that carries a code: mail only, never the inbox or webhooks.
    pub fn carrying_code(mut self) -> Self {
        self.inbox = false;
        self
    }
}

/// A freeze link as stored: the SHA-256 of its token, its account and its expiry.
#[derive(Debug, Clone)]
pub struct FreezeLink {
    pub token_hash: String,
    pub account_id: String,
    pub expires_at: Millis,
}

/// A mail as the outbox holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxMail {
    pub id: String,
    pub account_id: Option<String>,
    pub to_addr: String,
    pub subject: String,
    pub body_text: String,
    pub created_at: Millis,
    pub attempts: i64,
    pub sent_at: Option<Millis>,
    pub dead_at: Option<Millis>,
    pub last_error: Option<String>,
}

/// What a change brings with it, written in the change's own transaction.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    pub audit: Vec<AuditEvent>,
    pub mails: Vec<NewMail>,
}

impl Effects {
    pub fn audit(event: AuditEvent) -> Self {
        Self {
            audit: vec![event],
            mails: Vec::new(),
        }
    }
    pub fn with_mail(mut self, mail: NewMail) -> Self {
        self.mails.push(mail);
        self
    }
}

/// Everything a successful sign-in writes, in one transaction.
#[derive(Debug, Clone)]
pub struct SignInRecord {
    /// An existing device of the account (recognised by its device cookie) to refresh, or a
    /// new one to insert.
    pub device: Device,
    pub device_is_new: bool,
    pub session: Session,
    pub login: Login,
}

#[async_trait]
pub trait AccountStore {
    /// Inserts an account with its pending email confirmation.
    async fn create_account(
        &self,
        account: &Account,
        confirmation: &Confirmation,
        fx: &Effects,
    ) -> StoreResult<()>;
    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>>;
    async fn account_by_id(&self, id: &str) -> StoreResult<Option<Account>>;
    async fn confirmation(&self, account_id: &str) -> StoreResult<Option<Confirmation>>;
    /// Replaces the pending confirmation (a new code was sent).
    async fn replace_confirmation(
        &self,
        confirmation: &Confirmation,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// Counts one wrong code; returns the attempts so far.
    async fn confirmation_failed(&self, account_id: &str, fx: &Effects) -> StoreResult<i64>;
    async fn confirm_email(&self, account_id: &str, now: Millis, fx: &Effects) -> StoreResult<()>;
    async fn set_anti_phishing_code(
        &self,
        account_id: &str,
        code: &str,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// Deletes an account with everything that belongs to it (its mails too); its audit
    /// events stay, so the chain stays whole. Used by the demo's reset.
    async fn delete_account(&self, account_id: &str, fx: &Effects) -> StoreResult<()>;
}

#[async_trait]
pub trait SessionStore {
    async fn record_sign_in(&self, record: &SignInRecord, fx: &Effects) -> StoreResult<()>;
    async fn record_failed_login(&self, login: &Login, fx: &Effects) -> StoreResult<()>;
    async fn device_by_token(
        &self,
        account_id: &str,
        token_hash: &str,
    ) -> StoreResult<Option<Device>>;
    /// The live (not ended) session with this id, with its account.
    async fn session_auth(&self, session_id: &str) -> StoreResult<Option<SessionAuth>>;
    /// Marks the session and its device as active at `now`.
    async fn touch_session(
        &self,
        session_id: &str,
        device_id: &str,
        now: Millis,
    ) -> StoreResult<()>;
    async fn end_session(
        &self,
        session_id: &str,
        reason: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// Devices active since `since`, most recent first.
    async fn devices(&self, account_id: &str, since: Millis) -> StoreResult<Vec<Device>>;
    async fn logins(&self, account_id: &str, limit: i64) -> StoreResult<Vec<Login>>;
}

#[async_trait]
pub trait ThrottleStore {
    /// Atomically: if `key` may try now under `policy`, charges the try as a failure and
    /// answers `Ok(failures)` (this try included); otherwise answers `Err(retry_after_ms)`
    /// without charging. Charging before the secret is checked means parallel guesses
    /// cannot slip past the counter.
    async fn throttle_attempt(
        &self,
        key: &str,
        policy: &ThrottlePolicy,
        now: Millis,
    ) -> StoreResult<Result<i64, Millis>>;
    /// `throttle_attempt` over several keys in one transaction: either every key may try
    /// and each is charged (the answer is each key's failures so far, this try included),
    /// or the first refusing key's index and wait come back and nothing is charged.
    async fn throttle_attempts(
        &self,
        keys: &[(String, ThrottlePolicy)],
        now: Millis,
    ) -> StoreResult<Result<Vec<i64>, (usize, Millis)>>;
    /// After a success, in one transaction: forget the failures of `clear`, give back one
    /// charged try to each of `refund`.
    async fn throttle_settle(&self, clear: &[String], refund: &[String]) -> StoreResult<()>;
    /// Forgets the failures of `key` (after a successful sign-in).
    async fn throttle_clear(&self, key: &str) -> StoreResult<()>;
    /// Gives back one charged try (it turned out to be a success), so busy shared
    /// addresses are not slowed down by their own successful sign-ins.
    async fn throttle_refund(&self, key: &str) -> StoreResult<()>;
    /// "At most one per `interval` per `key`" (alert mails, resends): atomically records
    /// `now` for `key` unless it was recorded less than `interval` ago, and answers whether
    /// this caller won. Of several concurrent callers (on any instance) exactly one wins.
    async fn once_per_interval(
        &self,
        key: &str,
        interval: Millis,
        now: Millis,
    ) -> StoreResult<bool>;
}

#[async_trait]
pub trait AuditStore {
    /// Appends events on their own (when no other change goes with them).
    async fn append_audit(&self, fx: &Effects) -> StoreResult<()>;
    /// Events with `seq > after`, in order, at most `limit`.
    async fn audit_events(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditRecord>>;
    async fn audit_for_account(
        &self,
        account_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<AuditRecord>>;
    /// The last event's sequence number and hash, as the chain head records them.
    async fn audit_head(&self) -> StoreResult<(i64, String)>;
}

#[async_trait]
pub trait OutboxStore {
    /// Leases up to `limit` due mails until `lease_until`; a crashed worker's lease runs out
    /// and another worker takes the mail.
    async fn claim_mails(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: i64,
    ) -> StoreResult<Vec<OutboxMail>>;
    async fn mail_sent(&self, id: &str, now: Millis) -> StoreResult<()>;
    /// A failed try: retry at `retry_at`, or give up (`dead`).
    async fn mail_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Millis,
        dead: bool,
        now: Millis,
    ) -> StoreResult<()>;
    /// Newest first, for the local mailbox page and tests.
    async fn recent_mails(&self, limit: i64) -> StoreResult<Vec<OutboxMail>>;
}

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

/// A password that was right, waiting for its second factor.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SignInChallenge {
    pub id: String,
    pub account_id: String,
    /// JSON of the client that typed the password (address, User-Agent, device cookie).
    pub client: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub attempts: i64,
    pub completed_at: Option<Millis>,
    pub alerted_at: Option<Millis>,
}

/// A weakening change that takes effect later unless cancelled.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingChange {
    pub id: String,
    pub account_id: String,
    /// `totp.disable`, `passkey.remove`, `require_passkey.disable`.
    pub kind: String,
    pub target: Option<String>,
    pub cancel_token_hash: String,
    pub requested_at: Millis,
    pub effective_at: Millis,
    pub cancelled_at: Option<Millis>,
    pub applied_at: Option<Millis>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WithdrawalLock {
    pub id: String,
    pub account_id: String,
    /// `password_changed`, `second_factor_reset`, …
    pub reason: String,
    pub created_at: Millis,
    pub until: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActionCode {
    pub account_id: String,
    pub purpose: String,
    pub code_mac: String,
    pub expires_at: Millis,
    pub attempts: i64,
    pub created_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecoveryRequest {
    pub id: String,
    pub account_id: String,
    /// `authenticator_reset`.
    pub kind: String,
    pub reason: String,
    /// `pending_review`.
    pub status: String,
    pub created_at: Millis,
}

/// Second factors, step-up, delayed weakening and the locks that follow sensitive changes.
#[async_trait]
pub trait SecondFactorStore {
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

    async fn put_signin_challenge(
        &self,
        challenge: &SignInChallenge,
        fx: &Effects,
    ) -> StoreResult<()>;
    async fn signin_challenge(&self, id: &str) -> StoreResult<Option<SignInChallenge>>;
    async fn signin_challenge_failed(&self, id: &str) -> StoreResult<i64>;
    /// Challenges created before `before`, never completed and never alerted.
    async fn incomplete_signins(
        &self,
        before: Millis,
        limit: i64,
    ) -> StoreResult<Vec<SignInChallenge>>;
    /// Marks the alert sent (once: `false` if another worker already did) and queues it.
    async fn signin_alerted(&self, id: &str, now: Millis, fx: &Effects) -> StoreResult<bool>;

    /// Records a sign-in whose challenge (if any) is consumed in the same transaction;
    /// `false` (and nothing written) if the challenge was already used.
    async fn complete_sign_in(
        &self,
        challenge_id: Option<&str>,
        record: &SignInRecord,
        fx: &Effects,
    ) -> StoreResult<bool>;
    /// Marks the session as having proved a second factor at `now`.
    async fn session_stepped_up(
        &self,
        session_id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()>;

    async fn add_pending_change(&self, change: &PendingChange, fx: &Effects) -> StoreResult<()>;
    /// Open (neither cancelled nor applied) changes of an account, soonest first.
    async fn pending_changes(&self, account_id: &str) -> StoreResult<Vec<PendingChange>>;
    async fn pending_change_by_token(&self, token_hash: &str)
        -> StoreResult<Option<PendingChange>>;
    /// Cancels an open change; `false` if it was no longer open.
    async fn cancel_pending_change(
        &self,
        account_id: &str,
        id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;
    async fn due_pending_changes(&self, now: Millis, limit: i64)
        -> StoreResult<Vec<PendingChange>>;
    /// Applies an open change (its effect and its `applied_at`) in one transaction; `false`
    /// if it was no longer open.
    async fn apply_pending_change(
        &self,
        change: &PendingChange,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;

    async fn set_require_passkey(
        &self,
        account_id: &str,
        on: bool,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// Locks still in force at `now`.
    async fn withdrawal_locks(
        &self,
        account_id: &str,
        now: Millis,
    ) -> StoreResult<Vec<WithdrawalLock>>;

    async fn put_action_code(&self, code: &ActionCode, fx: &Effects) -> StoreResult<()>;
    async fn action_code(&self, account_id: &str, purpose: &str)
        -> StoreResult<Option<ActionCode>>;
    async fn action_code_failed(&self, account_id: &str, purpose: &str) -> StoreResult<i64>;
    /// Spends an action code (matching, unexpired, under `max_attempts` tries) and marks the
    /// session stepped up, in one transaction; `false` if the code was no longer usable (a
    /// concurrent request spent it).
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
    ) -> StoreResult<bool>;

    /// The last `limit` password hashes, newest first (the current one included).
    async fn password_history(&self, account_id: &str, limit: i64) -> StoreResult<Vec<String>>;
    /// Sets a new password: history kept, other sessions ended, the action code spent, the
    /// withdrawal lock recorded, all in one transaction. Returns the sessions ended.
    async fn change_password(
        &self,
        account_id: &str,
        new_hash: &str,
        keep_session: &str,
        lock: &WithdrawalLock,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<u64>;
    /// Removes the authenticator app (a reset), spends nothing else, records the lock.
    async fn reset_totp(
        &self,
        account_id: &str,
        lock: &WithdrawalLock,
        fx: &Effects,
    ) -> StoreResult<()>;
    async fn add_recovery_request(
        &self,
        request: &RecoveryRequest,
        fx: &Effects,
    ) -> StoreResult<()>;
}

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

/// A webhook delivery claimed for sending, with its endpoint.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub url: String,
    pub secret_enc: String,
    pub event: String,
    pub attempts: i64,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct WebhookLogEntry {
    pub id: String,
    pub endpoint_id: String,
    pub created_at: Millis,
    pub attempts: i64,
    pub delivered_at: Option<Millis>,
    pub dead_at: Option<Millis>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// Freezing, device removal and trust, new-device confirmation, the notification inbox
/// and webhook delivery.
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
    async fn add_webhook_endpoint(
        &self,
        id: &str,
        url: &str,
        secret_enc: &str,
        now: Millis,
    ) -> StoreResult<()>;
    async fn claim_webhooks(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>>;
    async fn webhook_delivered(&self, id: &str, status: i64, now: Millis) -> StoreResult<()>;
    async fn webhook_failed(
        &self,
        id: &str,
        status: Option<i64>,
        error: &str,
        retry_at: Millis,
        dead: bool,
        now: Millis,
    ) -> StoreResult<()>;
    async fn webhook_log(&self, limit: i64) -> StoreResult<Vec<WebhookLogEntry>>;
    /// Mail kinds the account switched off.
    async fn mail_mutes(&self, account_id: &str) -> StoreResult<Vec<String>>;
    /// Switches a mail kind back on (and cancels a pending switch-off).
    async fn unmute_mail(&self, account_id: &str, kind: &str, fx: &Effects) -> StoreResult<()>;
}

/// All storage areas together.
#[async_trait]
pub trait Store:
    AccountStore
    + SessionStore
    + ThrottleStore
    + AuditStore
    + OutboxStore
    + SecondFactorStore
    + ApiKeyStore
    + ProtectionStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;
    async fn migrate(&self) -> anyhow::Result<()>;
    /// Calls `sink` with every invalidation another instance broadcasts (and `all` after a
    /// reconnect, when messages may have been missed) until `sink` returns `false`.
    /// SQLite runs one instance and has nothing to listen to.
    async fn listen_invalidations(&self, sink: InvalidationSink) -> anyhow::Result<()>;
    async fn close(&self);
}

pub type SharedStore = Arc<dyn Store>;

/// Receives cache invalidations; returns `false` to stop listening.
pub type InvalidationSink = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// Connects to the database the URL names (creating a SQLite file if missing) and applies
/// pending migrations.
pub async fn connect(url: &str) -> anyhow::Result<SharedStore> {
    let store: SharedStore = match Backend::of(url)? {
        Backend::Sqlite => Arc::new(sqlite::SqliteStore::connect(url).await?),
        Backend::Postgres => Arc::new(postgres::PostgresStore::connect(url).await?),
    };
    store.migrate().await?;
    Ok(store)
}

/// `true` when a sqlx error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// An API key as stored. `secret_enc` (HMAC) is sealed; `public_key` (Ed25519/RSA) is PEM.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub api_key: String,
    pub account_id: String,
    pub label: String,
    pub key_type: String,
    pub secret_enc: Option<String>,
    pub public_key: Option<String>,
    /// `read,spot_trade,…`
    pub permissions: String,
    /// `203.0.113.7/32,198.51.100.0/24`
    pub ip_allowlist: String,
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
        permissions: &str,
        allowlist: &str,
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
    /// Live keys expiring before `before` that still lack the warning `which` (`7d`/`1d`).
    async fn api_keys_to_warn(
        &self,
        which: &str,
        before: Millis,
        now: Millis,
    ) -> StoreResult<Vec<ApiKeyRecord>>;
    async fn api_key_warned(
        &self,
        api_key: &str,
        which: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// Tells every instance to drop cached keys (`key:<api_key>` or `account:<id>`):
    /// PostgreSQL `NOTIFY`; a no-op on SQLite, which has one instance.
    async fn broadcast_invalidation(&self, what: &str) -> StoreResult<()>;
}
