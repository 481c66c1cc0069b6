//! [`RetryPolicy`]: how often and how far apart a failing transition is tried again.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::{Deserialize, Serialize};

/// Bounded exponential backoff with jitter. Nothing is ever retried without a bound.
///
/// A step's policy applies to its retryable errors; a retriable step (after the pivot) retries
/// every error up to `max_attempts`, then the saga is stuck. Compensations follow the engine's
/// compensation policy ([`RetryPolicy::COMPENSATION`] unless configured otherwise), since a
/// rollback must not give up on a short outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt (`"50ms"` in a config file).
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Upper bound of any delay (`"2s"` in a config file).
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The policy of a step that names none: 3 attempts, 50 ms then 100 ms apart.
    pub const DEFAULT: RetryPolicy =
        RetryPolicy::new(3, Duration::from_millis(50), Duration::from_secs(2));

    /// The policy of a compensation or retriable step that names none: 10 attempts, from
    /// 50 ms doubling up to 2 s apart.
    pub const PERSISTENT: RetryPolicy =
        RetryPolicy::new(10, Duration::from_millis(50), Duration::from_secs(2));

    /// The default policy of every compensation: 20 attempts, from 100 ms doubling up to 30 s
    /// apart (about 7 minutes in all), so an upstream outage of a few minutes during a rollback
    /// does not leave the saga stuck.
    pub const COMPENSATION: RetryPolicy =
        RetryPolicy::new(20, Duration::from_millis(100), Duration::from_secs(30));

    /// No retry: one attempt.
    pub const NONE: RetryPolicy = RetryPolicy::new(1, Duration::ZERO, Duration::ZERO);

    /// A policy of `max_attempts` attempts (raised to 1 if 0), doubling from
    /// `initial_backoff` up to `max_backoff`.
    pub const fn new(max_attempts: u32, initial_backoff: Duration, max_backoff: Duration) -> Self {
        Self {
            max_attempts: if max_attempts == 0 { 1 } else { max_attempts },
            initial_backoff,
            max_backoff,
        }
    }

    /// The delay to wait after failed attempt `attempt` (from 1), or `None` when the bound
    /// is reached and no attempt is left.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        if self.initial_backoff.is_zero() {
            return Some(Duration::ZERO);
        }
        ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff.max(self.initial_backoff))
            .with_max_times(self.max_attempts as usize)
            .with_jitter()
            .build()
            .nth(attempt.saturating_sub(1) as usize)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}
