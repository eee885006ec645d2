//! Injected time.
//!
//! Every umanage component that needs "now" takes a [`Clock`] instead of calling
//! `Utc::now()`, so tests can drive time with a [`ManualClock`]. [`SystemClock`] is the
//! only place in the workspace that reads the wall clock.
//!
//! Distributed backends that must agree across several application instances do *not*
//! use this clock: they take time from the server (Redis `TIME`, Postgres `now()`), and
//! say so on their type.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use parking_lot::Mutex;

/// A source of the current time.
///
/// Implementations must be cheap to call: hot paths (session validation, rate-limit
/// checks) read the clock on every request.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// A clock shared between components, as hosts usually hold it.
pub type SharedClock = Arc<dyn Clock>;

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for &'static C {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

/// The wall clock of this machine.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SystemClock;

impl SystemClock {
    /// A [`SharedClock`] reading the system time.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to, for tests.
///
/// Clones share the same time, so a test can keep one handle and give another to the
/// component under test:
///
/// ```
/// use std::time::Duration;
/// use umanage_core::{Clock, ManualClock};
///
/// let clock = ManualClock::default();
/// let handle = clock.clone();
/// let before = clock.now();
/// handle.advance(Duration::from_secs(90));
/// assert_eq!((clock.now() - before).num_seconds(), 90);
/// ```
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// The time a [`ManualClock::default`] starts at: 2025-01-01T00:00:00Z.
    pub const DEFAULT_START_UNIX: i64 = 1_735_689_600;

    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward by `by`.
    ///
    /// A duration too large for the calendar saturates at the latest representable time.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock();
        let delta = chrono::TimeDelta::from_std(by).unwrap_or(chrono::TimeDelta::MAX);
        *now = now
            .checked_add_signed(delta)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }

    /// Moves the clock backward by `by` (to test code that must survive a clock step back).
    pub fn rewind(&self, by: Duration) {
        let mut now = self.now.lock();
        let delta = chrono::TimeDelta::from_std(by).unwrap_or(chrono::TimeDelta::MAX);
        *now = now
            .checked_sub_signed(delta)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
    }

    /// Sets the clock to `to` (forward or backward).
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock() = to;
    }

    /// This clock as a [`SharedClock`] (sharing the same time).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        let start = Utc
            .timestamp_opt(Self::DEFAULT_START_UNIX, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        Self::new(start)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_advances_sets_and_rewinds() {
        let clock = ManualClock::default();
        let start = clock.now();
        assert_eq!(start.timestamp(), ManualClock::DEFAULT_START_UNIX);
        clock.advance(Duration::from_millis(1500));
        assert_eq!((clock.now() - start).num_milliseconds(), 1500);
        clock.rewind(Duration::from_millis(500));
        assert_eq!((clock.now() - start).num_milliseconds(), 1000);
        let target = start + chrono::TimeDelta::days(3);
        clock.set(target);
        assert_eq!(clock.now(), target);
    }

    #[test]
    fn clones_share_time() {
        let a = ManualClock::default();
        let shared: SharedClock = a.shared();
        a.advance(Duration::from_secs(10));
        assert_eq!(shared.now(), a.now());
    }

    #[test]
    fn advance_saturates_instead_of_panicking() {
        let clock = ManualClock::default();
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC);
        let clock = ManualClock::default();
        clock.rewind(Duration::MAX);
        assert_eq!(clock.now(), DateTime::<Utc>::MIN_UTC);
    }

    #[test]
    fn system_clock_moves_forward() {
        let a = SystemClock.now();
        let b = SystemClock.now();
        assert!(b >= a);
    }
}
