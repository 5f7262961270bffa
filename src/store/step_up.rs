//! Sign-in challenges (a right password waiting for its second factor), step-up and mailed
//! action codes.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::store::{Effects, SignInRecord, StoreResult};

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

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActionCode {
    pub account_id: String,
    pub purpose: String,
    pub code_mac: String,
    pub expires_at: Millis,
    pub attempts: i64,
    pub created_at: Millis,
}

/// Completing sign-ins and proving a second factor again.
#[async_trait]
pub trait StepUpStore {
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
}
