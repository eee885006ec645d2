//! A fast monotonic clock for the memory limiter.

use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use umanage_core::{Clock, SharedClock, SystemClock};

/// Wall time read once (from [`SystemClock`]) at creation, then advanced by the
/// monotonic [`Instant`]: cheaper to read than the system clock and never stepped back by
/// NTP, which suits a limiter (a clock step must neither reopen nor freeze windows). It
/// drifts from the wall clock by whatever the wall clock is later adjusted by.
///
/// [`MemoryRateLimiter::new`](crate::MemoryRateLimiter::new) uses it; tests inject a
/// [`ManualClock`](umanage_core::ManualClock) instead.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    wall: DateTime<Utc>,
    start: Instant,
}

impl MonotonicClock {
    /// A clock starting at the system time now.
    pub fn new() -> Self {
        Self {
            wall: SystemClock.now(),
            start: Instant::now(),
        }
    }

    /// This clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        std::sync::Arc::new(Self::new())
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.start.elapsed();
        let delta = TimeDelta::new(elapsed.as_secs() as i64, elapsed.subsec_nanos())
            .unwrap_or(TimeDelta::MAX);
        self.wall
            .checked_add_signed(delta)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_wall_clock_and_never_goes_back() {
        let c = MonotonicClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        let drift = (SystemClock.now() - c.now()).num_milliseconds().abs();
        assert!(drift < 1000, "{drift} ms");
    }
}
