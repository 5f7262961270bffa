//! The console's operators: identities, enrolment links, console sessions.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::operator::{Operator, Role};
use crate::store::{Effects, StoreResult};

/// An operator as stored. `password_hash` and `totp_secret` (sealed) are set by enrolment.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OperatorRecord {
    pub id: String,
    pub email: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub password_hash: Option<String>,
    pub totp_secret: Option<String>,
    pub totp_last_step: i64,
    pub enrolled_at: Option<Millis>,
    pub disabled_at: Option<Millis>,
    pub created_at: Millis,
}

impl OperatorRecord {
    pub fn operator(&self) -> Operator {
        Operator {
            id: self.id.clone(),
            email: self.email.clone(),
            role: self.role,
        }
    }
}

/// An enrolment link as stored, with what its first step chose (password hash, sealed
/// seed) until the code confirms it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnrolmentRecord {
    pub operator_id: String,
    pub password_hash: Option<String>,
    pub totp_secret: Option<String>,
    pub expires_at: Millis,
    pub used_at: Option<Millis>,
}

/// A console session with its operator, read in one query per request.
#[derive(Debug, Clone)]
pub struct OperatorSession {
    pub operator: OperatorRecord,
    pub created_at: Millis,
    pub last_active_at: Millis,
}

/// A recovery request as the console's lookup lists it (the support queues read more).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct RecoveryRequestSummary {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub created_at: Millis,
}

#[async_trait]
pub trait OperatorStore {
    /// The account with this public UID.
    async fn account_by_uid(&self, uid: &str) -> StoreResult<Option<crate::store::Account>>;
    /// The account's recovery requests, newest first.
    async fn recovery_requests_of(
        &self,
        account_id: &str,
    ) -> StoreResult<Vec<RecoveryRequestSummary>>;
    /// The stored hash of each of these audit events (those that exist).
    async fn audit_hashes(&self, seqs: &[i64]) -> StoreResult<Vec<(i64, String)>>;
    /// Adds an operator with its first enrolment link. `Conflict("email")` if the address
    /// is taken.
    async fn insert_operator(
        &self,
        operator: &OperatorRecord,
        enrolment_token_hash: &str,
        expires_at: Millis,
        fx: &Effects,
    ) -> StoreResult<()>;
    async fn operator_by_email(&self, email: &str) -> StoreResult<Option<OperatorRecord>>;
    async fn operator_by_id(&self, id: &str) -> StoreResult<Option<OperatorRecord>>;
    /// Every operator, oldest first.
    async fn operators(&self) -> StoreResult<Vec<OperatorRecord>>;
    async fn operator_enrolment(&self, token_hash: &str) -> StoreResult<Option<EnrolmentRecord>>;
    /// Records the password hash and sealed seed chosen at the first step of an unused
    /// enrolment (again if the step is repeated); `false` if the link was used meanwhile.
    async fn stage_operator_enrolment(
        &self,
        token_hash: &str,
        password_hash: &str,
        totp_secret: &str,
    ) -> StoreResult<bool>;
    /// Spends the link and gives its operator the staged password and seed (with the step
    /// of the confirming code as the replay guard), in one transaction; `false` if the
    /// link was spent meanwhile.
    async fn complete_operator_enrolment(
        &self,
        token_hash: &str,
        step: i64,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool>;
    /// Moves the replay guard to `step` if it is later than the last one; `false` if a
    /// code of this step (or a later one) was already used.
    async fn operator_use_step(&self, operator_id: &str, step: i64) -> StoreResult<bool>;
    async fn open_operator_session(
        &self,
        token_hash: &str,
        operator_id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()>;
    async fn operator_session(&self, token_hash: &str) -> StoreResult<Option<OperatorSession>>;
    async fn touch_operator_session(&self, token_hash: &str, now: Millis) -> StoreResult<()>;
    /// Ends a console session; `false` if it was not there.
    async fn end_operator_session(&self, token_hash: &str, fx: &Effects) -> StoreResult<bool>;
    /// Disables an operator and ends every session of theirs at once; `None` if no such
    /// operator, `Some(false)` if already disabled.
    async fn disable_operator(
        &self,
        operator_id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Option<bool>>;
}
