//! A fast monotonic clock for the memory limiter.

use chrono::{DateTime, Utc};
use umanage_core::{Clock, SharedClock, SystemClock};

/// Wall time read once (from [`SystemClock`]) at creation, then advanced by a monotonic
/// counter: the CPU's time-stamp counter where it is invariant (through `quanta`, the
/// clock governor uses; a counter read and one multiply, about a tenth of the cost of a
/// `clock_gettime` plus the calendar arithmetic of a `DateTime`), else the OS monotonic
/// clock. Never stepped back by NTP, which suits a limiter (a clock step must neither
/// reopen nor freeze windows); it drifts from the wall clock by whatever the wall clock is
/// later adjusted by.
///
/// [`MemoryRateLimiter::new`](crate::MemoryRateLimiter::new) uses it and reads
/// [`now_micros`](Self::now_micros) directly; tests inject a
/// [`ManualClock`](umanage_core::ManualClock) instead.
#[derive(Debug, Clone)]
pub struct MonotonicClock {
    wall_us: i64,
    start: u64,
    counter: quanta::Clock,
}

impl MonotonicClock {
    /// A clock starting at the system time now.
    pub fn new() -> Self {
        let counter = quanta::Clock::new();
        let start = counter.raw();
        Self {
            wall_us: SystemClock.now().timestamp_micros(),
            start,
            counter,
        }
    }

    /// This clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        std::sync::Arc::new(Self::new())
    }

    /// Now, in microseconds since the Unix epoch: the limiter's unit of time, without
    /// building a [`DateTime`].
    #[inline]
    pub fn now_micros(&self) -> i64 {
        let ns = self.counter.delta_as_nanos(self.start, self.counter.raw());
        self.wall_us
            .saturating_add(i64::try_from(ns / 1000).unwrap_or(i64::MAX))
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.now_micros()).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_wall_clock_and_never_goes_back() {
        let c = MonotonicClock::new();
        let mut last = c.now_micros();
        for _ in 0..100_000 {
            let t = c.now_micros();
            assert!(t >= last);
            last = t;
        }
        let a = c.now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = c.now();
        assert!((b - a).num_milliseconds() >= 19, "{a} -> {b}");
        let drift = (SystemClock.now() - c.now()).num_milliseconds().abs();
        assert!(drift < 1000, "{drift} ms");
    }
}
