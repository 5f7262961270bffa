//! Sign-in throttling, pure. Each key (an account's email, an account's known device, a
//! source IP) has a failure counter in a window. After the free failures, each further try
//! waits twice as long as the last, capped at `max_delay`; the counter resets when the
//! window ends. Throttling therefore *delays* guessing but never locks the owner out for
//! good, and a device that already signed in to the account has its own counter, so
//! strangers' guesses do not slow the owner's known devices at all.

use crate::clock::{Millis, SECOND};

/// What the store keeps per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    pub failures: i64,
    pub window_start: Millis,
    pub last_failure: Millis,
}

#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    pub free_failures: i64,
    pub window: Millis,
    pub max_delay: Millis,
}

impl ThrottlePolicy {
    /// `Err(retry_after_ms)` when a try now would come too soon.
    pub fn check(&self, state: Option<ThrottleState>, now: Millis) -> Result<(), Millis> {
        let Some(s) = state else { return Ok(()) };
        if now - s.window_start >= self.window || s.failures < self.free_failures {
            return Ok(());
        }
        let doublings = u32::try_from((s.failures - self.free_failures).min(30)).unwrap_or(30);
        let delay = (SECOND << doublings).min(self.max_delay);
        let ready_at = s.last_failure + delay;
        if now >= ready_at {
            Ok(())
        } else {
            Err(ready_at - now)
        }
    }

    /// The state after one more failure at `now`.
    pub fn fail(&self, state: Option<ThrottleState>, now: Millis) -> ThrottleState {
        match state {
            Some(s) if now - s.window_start < self.window => ThrottleState {
                failures: s.failures + 1,
                window_start: s.window_start,
                last_failure: now,
            },
            _ => ThrottleState {
                failures: 1,
                window_start: now,
                last_failure: now,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MINUTE;

    const P: ThrottlePolicy = ThrottlePolicy {
        free_failures: 5,
        window: 15 * MINUTE,
        max_delay: 15 * MINUTE,
    };

    #[test]
    fn free_failures_then_doubling_delays_then_reset() {
        let mut s = None;
        for _ in 0..5 {
            assert!(P.check(s, 0).is_ok());
            s = Some(P.fail(s, 0));
        }
        assert_eq!(P.check(s, 0), Err(SECOND));
        assert!(P.check(s, SECOND).is_ok());
        s = Some(P.fail(s, SECOND));
        assert_eq!(P.check(s, SECOND), Err(2 * SECOND));
        for i in 0..40 {
            s = Some(P.fail(s, 2 * SECOND + i));
        }
        let wait = P.check(s, 2 * SECOND + 40).expect_err("throttled");
        assert!(wait <= 15 * MINUTE, "never more than the cap");
        // The window ends: the owner can try again, whatever strangers did.
        assert!(P.check(s, 15 * MINUTE).is_ok());
        assert_eq!(P.fail(s, 15 * MINUTE).failures, 1);
    }
}
