//! Throttle counters (brute-force delays) and "at most once per interval" marks.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::throttle::ThrottlePolicy;
use crate::store::StoreResult;

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
