//! Throttle counters and "at most once per interval" marks.

use async_trait::async_trait;
use sqlx::Row as _;

use super::dialect::{Db, FOR_UPDATE};
use crate::clock::Millis;
use crate::domain::throttle::{ThrottlePolicy, ThrottleState};
use crate::store::{SqlStore, StoreResult, ThrottleStore};

#[async_trait]
impl ThrottleStore for SqlStore<Db> {
    async fn throttle_attempt(
        &self,
        key: &str,
        policy: &ThrottlePolicy,
        now: Millis,
    ) -> StoreResult<Result<i64, Millis>> {
        Ok(self
            .throttle_attempts(&[(key.to_owned(), *policy)], now)
            .await?
            .map(|failures| failures.first().copied().unwrap_or(0))
            .map_err(|(_, wait)| wait))
    }

    async fn throttle_attempts(
        &self,
        keys: &[(String, ThrottlePolicy)],
        now: Millis,
    ) -> StoreResult<Result<Vec<i64>, (usize, Millis)>> {
        let mut tx = self.write.begin().await?;
        let mut next = Vec::with_capacity(keys.len());
        for (i, (key, policy)) in keys.iter().enumerate() {
            sqlx::query(
                "INSERT INTO throttle (key, failures, window_start, last_failure)
                 VALUES ($1, 0, $2, $3)
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query(&format!(
                "SELECT failures, window_start, last_failure
                 FROM throttle
                 WHERE key = $1 {FOR_UPDATE}"
            ))
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            let failures: i64 = row.try_get("failures")?;
            let state = if failures > 0 {
                Some(ThrottleState {
                    failures,
                    window_start: row.try_get("window_start")?,
                    last_failure: row.try_get("last_failure")?,
                })
            } else {
                None
            };
            if let Err(wait) = policy.check(state, now) {
                tx.commit().await?;
                return Ok(Err((i, wait)));
            }
            next.push((key, policy.fail(state, now)));
        }
        let mut counted = Vec::with_capacity(next.len());
        for (key, n) in next {
            sqlx::query(
                "UPDATE throttle
                 SET failures = $1, window_start = $2, last_failure = $3
                 WHERE key = $4",
            )
            .bind(n.failures)
            .bind(n.window_start)
            .bind(n.last_failure)
            .bind(key)
            .execute(&mut *tx)
            .await?;
            counted.push(n.failures);
        }
        tx.commit().await?;
        Ok(Ok(counted))
    }

    async fn throttle_settle(&self, clear: &[String], refund: &[String]) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        for key in clear {
            sqlx::query("DELETE FROM throttle WHERE key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        for key in refund {
            sqlx::query(
                "UPDATE throttle
                 SET failures = failures - 1
                 WHERE key = $1 AND failures > 0",
            )
            .bind(key)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn throttle_clear(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM throttle WHERE key = $1")
            .bind(key)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn throttle_refund(&self, key: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE throttle
             SET failures = failures - 1
             WHERE key = $1 AND failures > 0",
        )
        .bind(key)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn once_per_interval(
        &self,
        key: &str,
        interval: Millis,
        now: Millis,
    ) -> StoreResult<bool> {
        // One statement: a new key is inserted; an existing one is moved to `now` only
        // if its last mark is old enough. A concurrent caller waits for the row and
        // then sees the fresh mark, so it changes nothing and loses.
        let done = sqlx::query(
            "INSERT INTO send_marks (key, last_at)
             VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE
                 SET last_at = excluded.last_at
                 WHERE send_marks.last_at <= $3",
        )
        .bind(key)
        .bind(now)
        .bind(now - interval)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
