//! A limiter whose effective limit follows the host's health (AIMD).
//!
//! [`AdaptiveRateLimiter`] wraps any [`RateLimitStore`] and scales every strategy by a
//! factor between [`AdaptiveConfig::min_factor`] and [`AdaptiveConfig::max_factor`]:
//!
//! * the host feeds **response times and errors** ([`record_response`](AdaptiveRateLimiter::record_response),
//!   smoothed by an exponentially weighted moving average) and the **queue depth**
//!   ([`set_queue_depth`](AdaptiveRateLimiter::set_queue_depth)); **CPU and memory** come from
//!   [`SystemSignals`] (feature `adaptive`, sysinfo) or from the host;
//! * on every [`adjust`](AdaptiveRateLimiter::adjust) the factor is **multiplied** by
//!   `decrease` if any signal is over its threshold, and otherwise **increased** by
//!   `increase` (additive increase, multiplicative decrease, as TCP congestion control),
//!   within the bounds.
//! * Adjustments run when the host calls `adjust`, or on an interval with a background
//!   [`AdaptiveDriver`] ([`AdaptiveRateLimiter::drive`]), which samples a [`LoadSignal`]
//!   (a closure returning [`Signals`], or [`SystemSignals`]) each tick. Dropping the driver
//!   (or the limiter) stops it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use umanage_ratelimit::adaptive::{AdaptiveConfig, AdaptiveRateLimiter, Signals};
//! use umanage_ratelimit::MemoryRateLimiter;
//!
//! let limiter = Arc::new(
//!     AdaptiveRateLimiter::new(Arc::new(MemoryRateLimiter::new()), AdaptiveConfig::default())
//!         .unwrap(),
//! );
//! let queue = Arc::new(std::sync::atomic::AtomicU64::new(0));
//! let depth = Arc::clone(&queue);
//! // every second: the host's queue depth (latency and errors still come from record_response)
//! let driver = limiter.drive(Duration::from_secs(1), move || Signals {
//!     queue_depth: Some(depth.load(std::sync::atomic::Ordering::Relaxed)),
//!     ..Signals::default()
//! });
//! // ... serve; the driver stops when dropped
//! drop(driver);
//! # }
//! ```

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Decision, Strategy};
use crate::store::{Check, RateLimitStore};

/// Bounds, steps and thresholds of the adaptive limiter. Every field has a documented
/// default (`AdaptiveConfig::default()`); load with serde (unknown fields rejected).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// The lowest factor (default 0.1: never below a tenth of the configured limit).
    pub min_factor: f64,
    /// The highest factor (default 1.0: never above the configured limit).
    pub max_factor: f64,
    /// Added per healthy adjustment (default 0.05).
    pub increase: f64,
    /// Multiplied in per overloaded adjustment (default 0.5).
    pub decrease: f64,
    /// CPU use (0..=1) above which the host is overloaded (default 0.85).
    pub cpu_high: f64,
    /// Memory use (0..=1) above which the host is overloaded (default 0.90).
    pub memory_high: f64,
    /// Smoothed response time above which the host is overloaded (default 500 ms).
    #[serde(with = "umanage_core::duration")]
    pub latency_high: Duration,
    /// Smoothed error rate (0..=1) above which the host is overloaded (default 0.05).
    pub error_rate_high: f64,
    /// Queue depth above which the host is overloaded (default 100).
    pub queue_high: u64,
    /// Weight of a new sample in the moving averages (default 0.2).
    pub smoothing: f64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            min_factor: 0.1,
            max_factor: 1.0,
            increase: 0.05,
            decrease: 0.5,
            cpu_high: 0.85,
            memory_high: 0.90,
            latency_high: Duration::from_millis(500),
            error_rate_high: 0.05,
            queue_high: 100,
            smoothing: 0.2,
        }
    }
}

impl AdaptiveConfig {
    /// Checks the bounds.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] unless `0 < min_factor <= max_factor <= 1000`,
    /// `increase > 0`, `0 < decrease < 1`, `0 < smoothing <= 1` and the ratios are in (0, 1].
    pub fn validate(&self) -> Result<()> {
        let unit = |v: f64| v > 0.0 && v <= 1.0;
        let ok = self.min_factor > 0.0
            && self.min_factor <= self.max_factor
            && self.max_factor <= 1000.0
            && self.increase > 0.0
            && self.increase.is_finite()
            && self.decrease > 0.0
            && self.decrease < 1.0
            && unit(self.smoothing)
            && unit(self.cpu_high)
            && unit(self.memory_high)
            && unit(self.error_rate_high)
            && !self.latency_high.is_zero();
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidConfig(format!(
                "adaptive config out of range: {self:?}"
            )))
        }
    }
}

/// One reading of the host's health; `None` = not measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signals {
    /// CPU use, 0..=1.
    pub cpu: Option<f64>,
    /// Memory use, 0..=1.
    pub memory: Option<f64>,
    /// Smoothed response time.
    pub latency: Option<Duration>,
    /// Smoothed error rate, 0..=1.
    pub error_rate: Option<f64>,
    /// Requests waiting.
    pub queue_depth: Option<u64>,
}

#[derive(Debug, Default)]
struct Fed {
    latency_us: Option<f64>,
    error_rate: Option<f64>,
    queue_depth: Option<u64>,
}

/// Scales every check's strategy by a factor that follows the host's health.
pub struct AdaptiveRateLimiter {
    inner: Arc<dyn RateLimitStore>,
    config: AdaptiveConfig,
    factor: Mutex<f64>,
    fed: Mutex<Fed>,
}

impl fmt::Debug for AdaptiveRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveRateLimiter")
            .field("inner", &self.inner)
            .field("factor", &self.factor())
            .finish_non_exhaustive()
    }
}

impl AdaptiveRateLimiter {
    /// Wraps `inner`; the factor starts at `max_factor`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] from [`AdaptiveConfig::validate`].
    pub fn new(inner: Arc<dyn RateLimitStore>, config: AdaptiveConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            inner,
            factor: Mutex::new(config.max_factor),
            config,
            fed: Mutex::new(Fed::default()),
        })
    }

    /// The wrapped store itself: calling through `&Arc<dyn RateLimitStore>` would pick the
    /// `Arc` forwarding impl and box every call's future twice.
    fn backend(&self) -> &dyn RateLimitStore {
        &*self.inner
    }

    /// The factor in force.
    pub fn factor(&self) -> f64 {
        *self.factor.lock()
    }

    /// `strategy` as it is enforced now.
    pub fn effective(&self, strategy: &Strategy) -> Strategy {
        strategy.scaled(self.factor())
    }

    /// Feeds one response: its duration and whether it was a server error.
    pub fn record_response(&self, latency: Duration, error: bool) {
        let a = self.config.smoothing;
        let mut fed = self.fed.lock();
        let lat = latency.as_micros() as f64;
        fed.latency_us = Some(fed.latency_us.map_or(lat, |v| v + a * (lat - v)));
        let e = if error { 1.0 } else { 0.0 };
        fed.error_rate = Some(fed.error_rate.map_or(e, |v| v + a * (e - v)));
    }

    /// Feeds the current queue depth.
    pub fn set_queue_depth(&self, depth: u64) {
        self.fed.lock().queue_depth = Some(depth);
    }

    /// The host-fed signals (no CPU/memory).
    pub fn fed_signals(&self) -> Signals {
        let fed = self.fed.lock();
        Signals {
            latency: fed.latency_us.map(|us| Duration::from_micros(us as u64)),
            error_rate: fed.error_rate,
            queue_depth: fed.queue_depth,
            ..Signals::default()
        }
    }

    /// Whether `s` shows overload under the thresholds.
    pub fn overloaded(&self, s: &Signals) -> bool {
        let c = &self.config;
        s.cpu.is_some_and(|v| v > c.cpu_high)
            || s.memory.is_some_and(|v| v > c.memory_high)
            || s.latency.is_some_and(|v| v > c.latency_high)
            || s.error_rate.is_some_and(|v| v > c.error_rate_high)
            || s.queue_depth.is_some_and(|v| v > c.queue_high)
    }

    /// One AIMD step from `cpu`/`memory` (e.g. from [`SystemSignals`], or `None`) plus the
    /// host-fed signals. Returns the new factor.
    pub fn adjust(&self, cpu: Option<f64>, memory: Option<f64>) -> f64 {
        let signals = Signals {
            cpu,
            memory,
            ..self.fed_signals()
        };
        self.adjust_with(&signals)
    }

    /// One AIMD step from explicit signals. Returns the new factor.
    pub fn adjust_with(&self, signals: &Signals) -> f64 {
        let c = &self.config;
        let overloaded = self.overloaded(signals);
        let mut f = self.factor.lock();
        let next = if overloaded {
            *f * c.decrease
        } else {
            *f + c.increase
        };
        *f = next.clamp(c.min_factor, c.max_factor);
        if overloaded {
            tracing::debug!(factor = *f, ?signals, "adaptive limit decreased");
        }
        *f
    }
}

/// A source of load readings for the [`AdaptiveDriver`], sampled once per tick. Fields it
/// leaves `None` are taken from what the host fed the limiter
/// ([`record_response`](AdaptiveRateLimiter::record_response),
/// [`set_queue_depth`](AdaptiveRateLimiter::set_queue_depth)).
pub trait LoadSignal: Send + 'static {
    /// The current reading.
    fn sample(&mut self) -> Signals;
}

impl<F: FnMut() -> Signals + Send + 'static> LoadSignal for F {
    fn sample(&mut self) -> Signals {
        self()
    }
}

#[cfg(feature = "adaptive")]
impl LoadSignal for SystemSignals {
    fn sample(&mut self) -> Signals {
        let (cpu, memory) = SystemSignals::sample(self);
        Signals {
            cpu,
            memory,
            ..Signals::default()
        }
    }
}

/// The background task of [`AdaptiveRateLimiter::drive`]: one AIMD step per interval.
/// Dropping it (or calling [`stop`](Self::stop)) ends the task; so does dropping the
/// limiter (the task holds it weakly).
#[derive(Debug)]
#[must_use = "the driver stops when dropped"]
pub struct AdaptiveDriver {
    task: tokio::task::JoinHandle<()>,
}

impl AdaptiveDriver {
    /// Stops the task.
    pub fn stop(self) {}

    /// Whether the task has ended (stopped, or the limiter was dropped).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for AdaptiveDriver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AdaptiveRateLimiter {
    /// Starts a tokio task that, every `interval` (the first step one interval from now;
    /// missed ticks are not caught up), samples `signal`, fills the fields it leaves
    /// `None` from the host-fed signals, and runs one [`adjust_with`](Self::adjust_with).
    /// Time is tokio's, so tests drive it with a paused clock.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn`), or if `interval` is zero.
    pub fn drive(
        self: &Arc<Self>,
        interval: Duration,
        mut signal: impl LoadSignal,
    ) -> AdaptiveDriver {
        let limiter: Weak<Self> = Arc::downgrade(self);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let task = tokio::spawn(async move {
            loop {
                ticks.tick().await;
                let Some(limiter) = limiter.upgrade() else {
                    return;
                };
                let s = signal.sample();
                let fed = limiter.fed_signals();
                let merged = Signals {
                    cpu: s.cpu,
                    memory: s.memory,
                    latency: s.latency.or(fed.latency),
                    error_rate: s.error_rate.or(fed.error_rate),
                    queue_depth: s.queue_depth.or(fed.queue_depth),
                };
                limiter.adjust_with(&merged);
            }
        });
        AdaptiveDriver { task }
    }
}

#[async_trait]
impl RateLimitStore for AdaptiveRateLimiter {
    async fn check(&self, key: &str, strategy: &Strategy, cost: u32) -> Result<Decision> {
        let s = self.effective(strategy);
        self.backend().check(key, &s, cost).await
    }

    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Vec<Decision>> {
        let scaled: Vec<Strategy> = checks.iter().map(|c| self.effective(c.strategy)).collect();
        let checks: Vec<Check<'_>> = checks
            .iter()
            .zip(&scaled)
            .map(|(c, s)| Check {
                key: c.key,
                strategy: s,
                cost: c.cost,
            })
            .collect();
        self.backend().check_all(&checks).await
    }
}

/// CPU and memory use of this machine, read with sysinfo (feature `adaptive`).
#[cfg(feature = "adaptive")]
pub struct SystemSignals {
    sys: sysinfo::System,
}

#[cfg(feature = "adaptive")]
impl fmt::Debug for SystemSignals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemSignals").finish_non_exhaustive()
    }
}

#[cfg(feature = "adaptive")]
impl SystemSignals {
    /// A sampler (the first CPU reading is relative to this moment).
    ///
    /// # Errors
    ///
    /// [`Error::SystemInfo`] when this platform's statistics cannot be read.
    pub fn new() -> Result<Self> {
        let mut sys = sysinfo::System::new().map_err(|e| Error::SystemInfo(Box::new(e)))?;
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        Ok(Self { sys })
    }

    /// `(cpu, memory)` use in 0..=1 since the previous sample. Call it no more often than
    /// [`sysinfo::MINIMUM_CPU_UPDATE_INTERVAL`].
    pub fn sample(&mut self) -> (Option<f64>, Option<f64>) {
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        let cpu = f64::from(self.sys.global_cpu_usage()) / 100.0;
        let total = self.sys.total_memory();
        let mem = (total > 0).then(|| self.sys.used_memory() as f64 / total as f64);
        (cpu.is_finite().then_some(cpu.clamp(0.0, 1.0)), mem)
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;
    use crate::MemoryRateLimiter;

    fn limiter() -> AdaptiveRateLimiter {
        AdaptiveRateLimiter::new(
            Arc::new(MemoryRateLimiter::new()),
            AdaptiveConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn aimd_within_bounds() {
        let a = limiter();
        assert_eq!(a.factor(), 1.0);
        let hot = Signals {
            cpu: Some(0.95),
            ..Signals::default()
        };
        assert_eq!(a.adjust_with(&hot), 0.5);
        assert_eq!(a.adjust_with(&hot), 0.25);
        for _ in 0..10 {
            a.adjust_with(&hot);
        }
        assert_eq!(a.factor(), 0.1, "floor");
        let calm = Signals {
            cpu: Some(0.2),
            memory: Some(0.3),
            ..Signals::default()
        };
        assert!((a.adjust_with(&calm) - 0.15).abs() < 1e-9, "additive");
        for _ in 0..100 {
            a.adjust_with(&calm);
        }
        assert_eq!(a.factor(), 1.0, "ceiling");
        for s in [
            Signals {
                memory: Some(0.95),
                ..Signals::default()
            },
            Signals {
                latency: Some(Duration::from_secs(1)),
                ..Signals::default()
            },
            Signals {
                error_rate: Some(0.2),
                ..Signals::default()
            },
            Signals {
                queue_depth: Some(1000),
                ..Signals::default()
            },
        ] {
            assert!(a.overloaded(&s), "{s:?}");
        }
        assert!(!a.overloaded(&Signals::default()));
    }

    #[tokio::test]
    async fn fed_signals_drive_the_limit() {
        let a = limiter();
        let s = Strategy::gcra(100, Duration::from_secs(60), 100).unwrap();
        for _ in 0..20 {
            a.record_response(Duration::from_secs(2), false);
        }
        assert!(a.fed_signals().latency.unwrap() > Duration::from_millis(500));
        a.adjust(None, None);
        assert_eq!(a.effective(&s).capacity(), 50);
        let d = a.check("k", &s, 1).await.unwrap();
        assert_eq!((d.limit, d.remaining), (50, 49));
        // healthy again: latency average falls, queue empty
        for _ in 0..40 {
            a.record_response(Duration::from_millis(10), false);
        }
        a.set_queue_depth(3);
        assert_eq!(a.adjust(Some(0.1), Some(0.1)), 0.55);
        a.set_queue_depth(500);
        assert_eq!(a.adjust(Some(0.1), Some(0.1)), 0.275);
        for _ in 0..30 {
            a.record_response(Duration::from_millis(10), true);
        }
        assert!(a.fed_signals().error_rate.unwrap() > 0.9);
        let bad = AdaptiveConfig {
            decrease: 1.5,
            ..AdaptiveConfig::default()
        };
        assert!(AdaptiveRateLimiter::new(Arc::new(MemoryRateLimiter::new()), bad).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_driver_adjusts_on_its_interval_and_stops_when_dropped() {
        let a = Arc::new(limiter());
        let cpu = Arc::new(Mutex::new(0.95));
        let reading = Arc::clone(&cpu);
        let driver = a.drive(Duration::from_secs(1), move || Signals {
            cpu: Some(*reading.lock()),
            ..Signals::default()
        });
        let step = || tokio::time::sleep(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(a.factor(), 1.0, "no step before the first interval");
        step().await; // t = 1.5 s: one step at 1 s
        assert_eq!(a.factor(), 0.5);
        step().await;
        assert_eq!(a.factor(), 0.25);
        *cpu.lock() = 0.2;
        step().await;
        assert!((a.factor() - 0.30).abs() < 1e-9, "{}", a.factor());
        // host-fed latency fills what the signal leaves out
        for _ in 0..20 {
            a.record_response(Duration::from_secs(2), false);
        }
        step().await;
        assert!((a.factor() - 0.15).abs() < 1e-9, "{}", a.factor());
        // ten intervals without stepping in between: ten steps, not more
        for _ in 0..40 {
            a.record_response(Duration::from_millis(1), false);
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!((a.factor() - 0.65).abs() < 1e-9, "{}", a.factor());
        drop(driver);
        let before = a.factor();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(a.factor(), before, "stopped when dropped");

        // a driver whose limiter is gone ends by itself
        let b = Arc::new(limiter());
        let driver = b.drive(Duration::from_secs(1), Signals::default);
        drop(b);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(driver.is_finished());
    }

    #[cfg(feature = "adaptive")]
    #[test]
    fn system_signals_are_ratios() {
        let mut s = SystemSignals::new().unwrap();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let (cpu, mem) = s.sample();
        assert!(cpu.is_some_and(|c| (0.0..=1.0).contains(&c)));
        assert!(mem.is_some_and(|m| m > 0.0 && m <= 1.0));
    }
}
