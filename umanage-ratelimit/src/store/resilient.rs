//! What to do when the shared backend is down.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use umanage_core::{SharedClock, SystemClock};

use crate::error::{Error, Result};
use crate::model::{Decision, Micros, Strategy};
use crate::store::{Check, RateLimitStore};

/// What a [`ResilientLimiter`] answers while its backend is unavailable
/// ([`Error::is_unavailable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Admit every request (availability over protection). Decisions show full capacity.
    FailOpen,
    /// Reject every request, with `retry_after` = the probe interval.
    FailClosed,
    /// Check against a local limiter of this process (per-instance limits, usually the
    /// memory limiter), so protection degrades to per-instance instead of disappearing.
    #[default]
    Fallback,
}

/// Wraps a shared limiter (usually [`RedisRateLimiter`](crate::RedisRateLimiter)) with a
/// [`FailurePolicy`].
///
/// When a check fails because the backend is unavailable, the limiter applies the policy
/// and stops calling the backend for `probe_interval` (so a dead Redis costs one timeout per
/// interval, not one per request); the first check after the interval probes the backend
/// again, and recovery is automatic. Other errors (invalid input, a script error) are
/// returned as they are. Time for the interval comes from the injected clock.
pub struct ResilientLimiter {
    primary: Arc<dyn RateLimitStore>,
    fallback: Option<Arc<dyn RateLimitStore>>,
    policy: FailurePolicy,
    probe_interval: Duration,
    clock: SharedClock,
    down_until: Mutex<Option<Micros>>,
}

impl fmt::Debug for ResilientLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilientLimiter")
            .field("primary", &self.primary)
            .field("policy", &self.policy)
            .field("probe_interval", &self.probe_interval)
            .field("degraded", &self.is_degraded())
            .finish_non_exhaustive()
    }
}

/// Builder for [`ResilientLimiter`].
#[must_use]
pub struct ResilientLimiterBuilder {
    primary: Arc<dyn RateLimitStore>,
    fallback: Option<Arc<dyn RateLimitStore>>,
    policy: FailurePolicy,
    probe_interval: Duration,
    clock: SharedClock,
}

impl fmt::Debug for ResilientLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilientLimiterBuilder")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ResilientLimiterBuilder {
    /// The policy (default [`FailurePolicy::Fallback`]).
    pub fn policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The local limiter for [`FailurePolicy::Fallback`] (default: a
    /// [`MemoryRateLimiter`](crate::MemoryRateLimiter) on the same clock, with feature
    /// `memory`).
    pub fn fallback(mut self, local: Arc<dyn RateLimitStore>) -> Self {
        self.fallback = Some(local);
        self
    }

    /// How long to stop calling a backend that failed (default 1 s).
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// The clock for the probe interval (default: the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for [`FailurePolicy::Fallback`] without a local limiter
    /// (only possible without feature `memory`), or a zero probe interval.
    pub fn build(self) -> Result<ResilientLimiter> {
        if self.probe_interval.is_zero() {
            return Err(Error::InvalidConfig(
                "probe_interval must be greater than zero".into(),
            ));
        }
        #[cfg(feature = "memory")]
        let fallback = self.fallback.or_else(|| {
            (self.policy == FailurePolicy::Fallback).then(|| {
                Arc::new(crate::MemoryRateLimiter::with_clock(self.clock.clone()))
                    as Arc<dyn RateLimitStore>
            })
        });
        #[cfg(not(feature = "memory"))]
        let fallback = self.fallback;
        if self.policy == FailurePolicy::Fallback && fallback.is_none() {
            return Err(Error::InvalidConfig(
                "the fallback policy needs a local limiter".into(),
            ));
        }
        Ok(ResilientLimiter {
            primary: self.primary,
            fallback,
            policy: self.policy,
            probe_interval: self.probe_interval,
            clock: self.clock,
            down_until: Mutex::new(None),
        })
    }
}

impl ResilientLimiter {
    /// Default probe interval.
    pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

    /// A builder around `primary`.
    pub fn builder(primary: Arc<dyn RateLimitStore>) -> ResilientLimiterBuilder {
        ResilientLimiterBuilder {
            primary,
            fallback: None,
            policy: FailurePolicy::default(),
            probe_interval: Self::DEFAULT_PROBE_INTERVAL,
            clock: SystemClock::shared(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> FailurePolicy {
        self.policy
    }

    /// True while the backend is considered down (within a probe interval of a failure).
    pub fn is_degraded(&self) -> bool {
        let now = self.clock.now().timestamp_micros();
        self.down_until.lock().is_some_and(|until| until > now)
    }

    /// The primary store itself: calling through `&Arc<dyn RateLimitStore>` would pick the
    /// `Arc` forwarding impl and box every call's future twice.
    fn primary(&self) -> &dyn RateLimitStore {
        &*self.primary
    }

    fn skip_primary(&self, now: Micros) -> bool {
        self.down_until.lock().is_some_and(|until| until > now)
    }

    fn mark(&self, result: &Result<Vec<Decision>>, now: Micros) -> bool {
        match result {
            Ok(_) => {
                let mut down = self.down_until.lock();
                if down.take().is_some() {
                    tracing::info!("rate-limit backend recovered");
                }
                false
            }
            Err(err) if err.is_unavailable() => {
                tracing::warn!(error = %err, policy = ?self.policy, "rate-limit backend unavailable");
                *self.down_until.lock() = Some(now + self.probe_interval.as_micros() as Micros);
                true
            }
            Err(_) => false,
        }
    }

    async fn degraded(&self, checks: &[Check<'_>]) -> Result<Vec<Decision>> {
        match (self.policy, &self.fallback) {
            // `**local`: through `&dyn`, not the `Arc` forwarding impl
            (FailurePolicy::Fallback, Some(local)) => (**local).check_all(checks).await,
            (FailurePolicy::FailClosed, _) => Ok(checks
                .iter()
                .map(|c| Decision {
                    allowed: false,
                    limit: c.strategy.capacity(),
                    remaining: 0,
                    reset_after: self.probe_interval,
                    retry_after: Some(self.probe_interval),
                })
                .collect()),
            _ => Ok(checks
                .iter()
                .map(|c| Decision {
                    allowed: true,
                    limit: c.strategy.capacity(),
                    remaining: c.strategy.capacity(),
                    reset_after: Duration::ZERO,
                    retry_after: None,
                })
                .collect()),
        }
    }
}

#[async_trait]
impl RateLimitStore for ResilientLimiter {
    async fn check(&self, key: &str, strategy: &Strategy, cost: u32) -> Result<Decision> {
        let mut out = self
            .check_all(&[Check {
                key,
                strategy,
                cost,
            }])
            .await?;
        out.pop().ok_or_else(|| {
            Error::Backend(umanage_core::BackendError::Protocol("empty reply".into()))
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(rules = checks.len()))]
    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Vec<Decision>> {
        crate::store::validate_all(checks)?;
        let now = self.clock.now().timestamp_micros();
        if self.skip_primary(now) {
            return self.degraded(checks).await;
        }
        let result = self.primary().check_all(checks).await;
        if self.mark(&result, now) {
            return self.degraded(checks).await;
        }
        result
    }
}
