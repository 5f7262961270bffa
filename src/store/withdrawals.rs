//! The withdrawal guard as stored: platform tokens, withdrawals and their feed, the owner's
//! allowlist and settings, per-key rules, known addresses, transfers, deposits and the
//! cases operators open while following stolen funds.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::withdrawal::{
    Decision, KeyWithdrawRules, Reason, Situation, Via, WithdrawalState,
};
use crate::store::{Effects, FreezeOutcome, StoreResult};

/// A platform's bearer credential (only its SHA-256 is stored).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct PlatformToken {
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub token_hash: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
}

/// A withdrawal as stored.
#[derive(Debug, Clone)]
pub struct WithdrawalRecord {
    pub id: String,
    pub request_id: String,
    pub request_hash: String,
    pub account_id: String,
    pub asset: String,
    pub network: String,
    pub amount: String,
    pub address: String,
    pub memo: Option<String>,
    pub via: Via,
    pub api_key: Option<String>,
    pub state: WithdrawalState,
    /// The answer given to the request, as sent (JSON): a repeated request gets it again.
    pub answer: String,
    /// Why it is held (or was refused, or cancelled).
    pub reasons: Vec<Reason>,
    pub release_at: Option<Millis>,
    pub cancel_reason: Option<String>,
    pub txid: Option<String>,
    pub created_at: Millis,
    pub released_at: Option<Millis>,
    pub broadcast_at: Option<Millis>,
    pub confirmed_at: Option<Millis>,
    pub cancelled_at: Option<Millis>,
}

/// A request to decide: what is stored whatever the answer.
#[derive(Debug, Clone)]
pub struct NewWithdrawal {
    pub id: String,
    pub request_id: String,
    pub request_hash: String,
    pub account_id: String,
    pub asset: String,
    pub network: String,
    pub amount: crate::domain::withdrawal::Amount,
    pub precision: u32,
    pub address: String,
    pub memo: Option<String>,
    pub lookalike_key: String,
    pub via: Via,
    pub api_key: Option<String>,
    pub cancel_token_hash: String,
    pub created_at: Millis,
}

/// What the decision closure returns: the decision, the answer to store and send, and the
/// effects (audit, the owner's mail) that go with it.
pub struct Decided {
    pub decision: Decision,
    pub answer: String,
    pub fx: Effects,
}

/// Decides inside the store's transaction, on the situation read there.
pub type Decide<'a> = dyn Fn(&Situation) -> Decided + Send + Sync + 'a;

/// The outcome of a request: decided now, or the answer stored for its `request_id`.
#[derive(Debug, Clone)]
pub enum DecideOutcome {
    New(WithdrawalRecord),
    Existing(WithdrawalRecord),
}

/// One entry of the platform's feed: a release to pay out, or a recall (do not pay).
#[derive(Debug, Clone)]
pub struct FeedEntry {
    pub seq: i64,
    pub event: String,
    pub at: Millis,
    pub withdrawal: WithdrawalRecord,
}

/// What releasing a due withdrawal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released,
    /// A lock came into force while it was held: held on until the lock ends.
    HeldUntil(Millis),
    /// Already released, cancelled or gone (another worker, a freeze, the owner).
    NotHeld,
}

/// The owner's withdrawal settings (defaults: allowlist off, no delay).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WithdrawalSettings {
    pub allowlist_enabled: bool,
    pub delay_days: i64,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AllowlistEntry {
    pub id: String,
    #[serde(skip)]
    pub account_id: String,
    pub asset: String,
    pub network: String,
    pub address: String,
    pub memo: Option<String>,
    pub label: String,
    pub created_at: Millis,
    pub usable_at: Millis,
}

/// An internal transfer or a deposit the platform reported.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TransferRecord {
    pub id: String,
    #[serde(skip)]
    pub request_id: String,
    #[serde(skip)]
    pub request_hash: String,
    pub from_account_id: String,
    pub to_account_id: String,
    pub asset: String,
    pub amount: String,
    pub state: String,
    #[serde(skip)]
    pub answer: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DepositRecord {
    pub id: String,
    #[serde(skip)]
    pub request_id: String,
    #[serde(skip)]
    pub request_hash: String,
    #[serde(skip)]
    pub account_id: String,
    pub asset: String,
    pub network: String,
    pub amount: String,
    pub address: Option<String>,
    pub txid: String,
    pub created_at: Millis,
}

/// A case an operator opened on an account that received funds from a compromised one.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct CaseRecord {
    pub id: String,
    pub account_id: String,
    pub source_account_id: String,
    pub reason: String,
    pub operator: String,
    pub created_at: Millis,
}

/// The transfer's sender state, read in the transfer's transaction.
#[derive(Debug, Clone, Copy)]
pub struct SenderState {
    pub frozen: bool,
    pub recovery_required: bool,
    pub locked_until: Option<Millis>,
}

#[async_trait]
pub trait WithdrawalStore {
    async fn add_platform_token(&self, token: &PlatformToken, fx: &Effects) -> StoreResult<()>;
    async fn platform_tokens(&self) -> StoreResult<Vec<PlatformToken>>;
    /// Revokes by name; `false` if there is no live token of that name.
    async fn revoke_platform_token(
        &self,
        name: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;
    /// A live (not revoked) token by its hash.
    async fn platform_token(&self, token_hash: &str) -> StoreResult<Option<PlatformToken>>;

    async fn withdrawal_by_request(
        &self,
        request_id: &str,
    ) -> StoreResult<Option<WithdrawalRecord>>;
    /// Reads the account's situation and decides, in one transaction with the account row
    /// locked (a freeze waits for it, or it sees the freeze); stores the withdrawal, its
    /// feed entry if released, the destination as known if released, and the effects.
    async fn decide_withdrawal(
        &self,
        w: &NewWithdrawal,
        decide: &Decide<'_>,
    ) -> StoreResult<DecideOutcome>;
    async fn withdrawal(&self, id: &str) -> StoreResult<Option<WithdrawalRecord>>;
    async fn withdrawal_by_cancel_token(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<WithdrawalRecord>>;
    /// The account's withdrawals, newest first, before `before` (a `created_at` cursor).
    async fn account_withdrawals(
        &self,
        account_id: &str,
        before: Option<Millis>,
        limit: i64,
    ) -> StoreResult<Vec<WithdrawalRecord>>;
    async fn withdrawal_feed(&self, after: i64, limit: i64) -> StoreResult<Vec<FeedEntry>>;
    /// `released` → `broadcast` with the TxID; `Err(state)` when it is not released (a
    /// recall won, or it was never released).
    async fn mark_broadcast(
        &self,
        id: &str,
        txid: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Result<WithdrawalRecord, Option<WithdrawalState>>>;
    async fn mark_confirmed(
        &self,
        id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Result<WithdrawalRecord, Option<WithdrawalState>>>;
    /// Cancels a held withdrawal; `false` if it is not held (any more).
    async fn cancel_withdrawal(
        &self,
        id: &str,
        reason: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;
    /// Held withdrawals due for release, oldest due first.
    async fn due_withdrawals(&self, now: Millis, limit: i64) -> StoreResult<Vec<WithdrawalRecord>>;
    /// Releases one due withdrawal in its own transaction (held → released, once).
    async fn release_withdrawal(
        &self,
        id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<ReleaseOutcome>;

    async fn withdrawal_settings(&self, account_id: &str) -> StoreResult<WithdrawalSettings>;
    /// Strengthening, applied at once: allowlist on, or a longer delay.
    async fn set_withdrawal_settings(
        &self,
        account_id: &str,
        settings: WithdrawalSettings,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()>;
    async fn allowlist(&self, account_id: &str) -> StoreResult<Vec<AllowlistEntry>>;
    /// Adds an address (and records it as known); `false` if the same destination is
    /// already listed.
    async fn add_allowlist_address(
        &self,
        entry: &AllowlistEntry,
        lookalike_key: &str,
        fx: &Effects,
    ) -> StoreResult<bool>;
    async fn remove_allowlist_address(
        &self,
        account_id: &str,
        id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Option<AllowlistEntry>>;

    async fn key_withdraw_rules(&self, api_key: &str) -> StoreResult<Option<KeyWithdrawRules>>;
    /// Sets (or with `None` clears) a key's rules; `false` if the key is not the account's.
    async fn set_key_withdraw_rules(
        &self,
        account_id: &str,
        api_key: &str,
        rules: Option<&KeyWithdrawRules>,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;

    async fn transfer_by_request(&self, request_id: &str) -> StoreResult<Option<TransferRecord>>;
    /// Records a transfer; `decide` sees the sender's state in the same transaction and
    /// returns the state (`completed` or `refused`), the answer and the effects.
    async fn record_transfer(
        &self,
        t: &TransferRecord,
        decide: &(dyn Fn(SenderState) -> (String, String, Effects) + Send + Sync),
    ) -> StoreResult<Option<TransferRecord>>;
    async fn deposit_by_request(&self, request_id: &str) -> StoreResult<Option<DepositRecord>>;
    /// Records a deposit; `false` if its `request_id` is taken.
    async fn record_deposit(&self, d: &DepositRecord, fx: &Effects) -> StoreResult<bool>;
    async fn account_transfers(
        &self,
        account_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<TransferRecord>>;
    async fn account_deposits(
        &self,
        account_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<DepositRecord>>;
    /// Completed transfers out of any of these accounts since `since`, oldest first.
    async fn transfers_out_of(
        &self,
        account_ids: &[String],
        since: Millis,
        limit: i64,
    ) -> StoreResult<Vec<TransferRecord>>;
    /// Freezes an account and opens a case linking it to the source account, in one
    /// transaction.
    async fn freeze_with_case(&self, case: &CaseRecord, fx: &Effects)
        -> StoreResult<FreezeOutcome>;
    async fn cases(&self, account_id: &str) -> StoreResult<Vec<CaseRecord>>;
}
