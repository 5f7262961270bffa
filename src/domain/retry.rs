//! When to try again after a delivery failed: the mail outbox and webhook delivery share
//! one schedule.

use crate::clock::{Millis, HOUR, SECOND};

/// Delay before try `attempts + 1`: 30 s, 1 min, 2 min, … capped at 1 h.
pub fn backoff(attempts: i64) -> Millis {
    let doublings = u32::try_from((attempts - 1).clamp(0, 20)).unwrap_or(20);
    (30 * SECOND).saturating_mul(1 << doublings).min(HOUR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MINUTE;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), 30 * SECOND);
        assert_eq!(backoff(2), MINUTE);
        assert_eq!(backoff(3), 2 * MINUTE);
        assert_eq!(backoff(50), HOUR);
    }
}
