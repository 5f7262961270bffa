//! Accounts and their email confirmation.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::store::{Effects, StoreResult};

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
    /// Set by an approved recovery: a new password and a new second factor come before
    /// anything else; cleared when a second factor is enrolled.
    pub recovery_required: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Confirmation {
    pub account_id: String,
    pub code_mac: String,
    pub expires_at: Millis,
    pub attempts: i64,
    pub created_at: Millis,
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
