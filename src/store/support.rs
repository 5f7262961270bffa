//! Getting the account back: password-reset and recovery links, support access for an
//! owner who cannot sign in, support tickets with their messages, and the reviewed
//! recovery requests.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::support::{
    LinkPurpose, RecoveryKind, RecoveryStatus, TicketRequest, TicketStatus,
};
use crate::store::{Effects, StoreResult, WithdrawalLock};

/// A single-use link that sets a new password (stored as the SHA-256 of its token).
#[derive(Debug, Clone)]
pub struct PasswordLink {
    pub token_hash: String,
    pub account_id: String,
    pub purpose: LinkPurpose,
    pub expires_at: Millis,
    pub used_at: Option<Millis>,
    pub created_at: Millis,
}

/// A support ticket. `details` is what the owner picked (sign-ins, devices) and the
/// actions already taken, as JSON.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: String,
    pub account_id: String,
    pub status: TicketStatus,
    pub noticed_at: Option<Millis>,
    pub description: String,
    pub details: serde_json::Value,
    pub requests: Vec<TicketRequest>,
    pub recovery_id: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A message on a ticket: `owner` or `operator:<email>`; internal notes are for
/// operators only.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TicketMessage {
    pub id: String,
    pub ticket_id: String,
    pub author: String,
    pub body: String,
    pub internal: bool,
    pub created_at: Millis,
}

/// A recovery request (reactivation of a frozen account, or a lost second factor).
#[derive(Debug, Clone)]
pub struct RecoveryRecord {
    pub id: String,
    pub account_id: String,
    pub kind: RecoveryKind,
    /// What happened, in the owner's words.
    pub reason: String,
    pub status: RecoveryStatus,
    pub created_at: Millis,
    /// When the account was frozen, at the time of the request.
    pub frozen_at: Option<Millis>,
    /// The two-person rule applies.
    pub needs_two: bool,
    pub first_approver: Option<String>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<Millis>,
}

/// A file of identity evidence, as listed (its sealed content is read on its own).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EvidenceRecord {
    pub recovery_id: String,
    pub n: i64,
    pub content_type: String,
    pub size_bytes: i64,
    pub created_at: Millis,
}

#[async_trait]
pub trait SupportStore {
    /// Stores a new link; older unused links of the same account and purpose stop working.
    async fn put_password_link(&self, link: &PasswordLink, fx: &Effects) -> StoreResult<()>;
    async fn password_link(&self, token_hash: &str) -> StoreResult<Option<PasswordLink>>;
    /// Spends the link (unused, unexpired) and sets the password in one transaction: the
    /// old hash goes to the history, every session ends, the lock is added. `false` if
    /// the link was spent or expired meanwhile.
    async fn set_password_by_link(
        &self,
        token_hash: &str,
        account_id: &str,
        new_hash: &str,
        lock: Option<&WithdrawalLock>,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;

    /// Locks withdrawals (a strengthening the owner asked for).
    async fn add_withdrawal_lock(&self, lock: &WithdrawalLock, fx: &Effects) -> StoreResult<()>;

    /// Opens support access and spends the mailed code that proved the mailbox.
    async fn put_support_access(
        &self,
        token_hash: &str,
        account_id: &str,
        expires_at: Millis,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// The account behind a support-access token, if it has not expired.
    async fn support_access(&self, token_hash: &str, now: Millis) -> StoreResult<Option<String>>;

    /// Files a ticket with its first message, and the recovery request it opens, if any.
    async fn create_ticket(
        &self,
        ticket: &Ticket,
        first: &TicketMessage,
        recovery: Option<&RecoveryRecord>,
        fx: &Effects,
    ) -> StoreResult<()>;
    async fn ticket(&self, id: &str) -> StoreResult<Option<Ticket>>;
    async fn tickets_of(&self, account_id: &str) -> StoreResult<Vec<Ticket>>;
    /// Oldest first.
    async fn ticket_queue(
        &self,
        status: Option<TicketStatus>,
        limit: i64,
    ) -> StoreResult<Vec<Ticket>>;
    async fn ticket_messages(&self, ticket_id: &str) -> StoreResult<Vec<TicketMessage>>;
    /// Adds a message and sets the ticket's status.
    async fn add_ticket_message(
        &self,
        message: &TicketMessage,
        status: TicketStatus,
        fx: &Effects,
    ) -> StoreResult<()>;
    async fn set_ticket_status(
        &self,
        id: &str,
        status: TicketStatus,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()>;

    async fn add_recovery(&self, recovery: &RecoveryRecord, fx: &Effects) -> StoreResult<()>;
    /// Attaches a sealed file as number `n`; `Conflict("evidence")` if that number is taken.
    async fn add_evidence(&self, e: &EvidenceRecord, sealed: &str, fx: &Effects)
        -> StoreResult<()>;
    /// The files of a request (without their content).
    async fn evidence_of(&self, recovery_id: &str) -> StoreResult<Vec<EvidenceRecord>>;
    /// One sealed file and its type.
    async fn evidence_file(
        &self,
        recovery_id: &str,
        n: i64,
    ) -> StoreResult<Option<(String, String)>>;
    /// Decided requests (before `decided_before`) that still hold evidence: `(request, account)`.
    async fn evidence_due(
        &self,
        decided_before: Millis,
        limit: i64,
    ) -> StoreResult<Vec<(String, String)>>;
    /// Deletes a request's evidence; returns how many files went.
    async fn delete_evidence(&self, recovery_id: &str, fx: &Effects) -> StoreResult<u64>;
    async fn recovery(&self, id: &str) -> StoreResult<Option<RecoveryRecord>>;
    async fn recoveries_of(&self, account_id: &str) -> StoreResult<Vec<RecoveryRecord>>;
    /// Oldest first; `None`: every open one (submitted or awaiting a second approval).
    async fn recovery_queue(
        &self,
        status: Option<RecoveryStatus>,
        limit: i64,
    ) -> StoreResult<Vec<RecoveryRecord>>;
    /// The first of two approvals: submitted → awaiting_second_approval. `false` if the
    /// request was no longer submitted.
    async fn first_approval(&self, id: &str, operator: &str, fx: &Effects) -> StoreResult<bool>;
    /// Rejects an open request. `false` if it was decided meanwhile.
    async fn reject_recovery(
        &self,
        id: &str,
        operator: &str,
        reason: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;
    /// Approves an open request and does what approval means, in one transaction: the
    /// freeze is lifted (a reactivation), every API key deleted, every session ended,
    /// every second factor and pending change removed, withdrawals locked, the account
    /// marked as needing a new password and second factor, and the recovery link stored.
    /// `false` if the request was decided meanwhile.
    #[allow(clippy::too_many_arguments)]
    async fn approve_recovery(
        &self,
        recovery: &RecoveryRecord,
        operator: &str,
        reason: &str,
        lock: &WithdrawalLock,
        link: &PasswordLink,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;
}

/// An email change: the code mailed to the new address, then the 48-hour window in which
/// the old address can cancel it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EmailChangeRecord {
    pub id: String,
    pub account_id: String,
    pub old_email: String,
    pub new_email: String,
    pub code_mac: String,
    pub attempts: i64,
    pub code_expires_at: Millis,
    pub cancel_token_hash: Option<String>,
    pub confirmed_at: Option<Millis>,
    pub cancel_until: Option<Millis>,
    pub cancelled_at: Option<Millis>,
    pub created_at: Millis,
}

#[async_trait]
pub trait EmailChangeStore {
    /// Starts a change; unconfirmed earlier ones of the account are dropped.
    async fn put_email_change(&self, c: &EmailChangeRecord, fx: &Effects) -> StoreResult<()>;
    /// The account's newest change not yet confirmed.
    async fn pending_email_change(
        &self,
        account_id: &str,
    ) -> StoreResult<Option<EmailChangeRecord>>;
    async fn email_change_failed(&self, id: &str) -> StoreResult<i64>;
    /// A confirmed change whose 48-hour cancel window is still open.
    async fn email_change_in_window(
        &self,
        account_id: &str,
        now: Millis,
    ) -> StoreResult<Option<EmailChangeRecord>>;
    async fn email_change_by_cancel(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<EmailChangeRecord>>;
    /// Confirms: the account's address becomes the new one, the old one keeps security
    /// mail until `cancel_until`, the cancel link is stored, withdrawals are locked.
    /// `Conflict("email")` if the new address is taken.
    #[allow(clippy::too_many_arguments)]
    async fn confirm_email_change(
        &self,
        id: &str,
        account_id: &str,
        new_email: &str,
        cancel_token_hash: &str,
        cancel_until: Millis,
        lock: &WithdrawalLock,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// Cancels a confirmed change inside its window: the old address comes back and every
    /// session ends. `false` if it was cancelled or expired meanwhile.
    async fn cancel_email_change(
        &self,
        c: &EmailChangeRecord,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;
}
