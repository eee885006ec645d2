//! The limiter trait and its backends.
//!
//! | backend | type | feature | time comes from |
//! | --- | --- | --- | --- |
//! | memory | [`MemoryRateLimiter`] | `memory` | the injected [`Clock`](umanage_core::Clock) |
//! | Redis | [`RedisRateLimiter`] | `redis` | the Redis server (`TIME` inside the script) |
//! | resilient | [`ResilientLimiter`] | always | wraps one of the above with a [`FailurePolicy`] |

#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
pub mod resilient;
#[cfg(feature = "memory")]
mod siphash;

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::model::{Decision, Strategy};

#[cfg(feature = "memory")]
pub use memory::{MemoryRateLimiter, MemoryRateLimiterBuilder};
#[cfg(feature = "redis")]
pub use redis::RedisRateLimiter;
pub use resilient::{FailurePolicy, ResilientLimiter};

/// The longest rate-limit key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 512;
/// The most rules one [`RateLimitStore::check_all`] accepts.
pub const MAX_RULES_PER_CHECK: usize = 16;

/// One rule of a [`RateLimitStore::check_all`]: a key, its strategy and the cost to charge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check<'a> {
    /// The limited key (for example `"login:ip:192.0.2.1/32"`).
    pub key: &'a str,
    /// The strategy of the rule.
    pub strategy: &'a Strategy,
    /// Units to charge (at least 1).
    pub cost: u32,
}

impl<'a> Check<'a> {
    /// A check of cost 1.
    pub fn new(key: &'a str, strategy: &'a Strategy) -> Self {
        Self {
            key,
            strategy,
            cost: 1,
        }
    }

    /// Sets the cost.
    #[must_use]
    pub fn with_cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }
}

/// A rate limiter over shared state.
///
/// # Contract
///
/// * State is per `(key, strategy kind)`: the same key under two strategies of different
///   kinds is two counters; changing a strategy's parameters keeps the key's state.
/// * Every decision equals the [reference model](crate::model::reference)'s for the same
///   sequence of requests (with time taken from the backend's clock).
/// * A rejected request charges nothing, for every strategy.
/// * [`check_all`](Self::check_all) is all or nothing: if any check is rejected, none is
///   charged; it is atomic with respect to concurrent checks of the same keys (on every
///   instance sharing the backend).
/// * Under any number of concurrent callers the strategy's bound holds.
/// * Idle keys are forgotten (memory reclaimed, Redis keys expire) once their state is
///   equivalent to a fresh key's.
#[async_trait]
pub trait RateLimitStore: Send + Sync + std::fmt::Debug {
    /// Checks and (if admitted) charges one request.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroCost`], [`Error::InvalidKey`]; [`Error::Backend`] when the backend fails.
    async fn check(&self, key: &str, strategy: &Strategy, cost: u32) -> Result<Decision>;

    /// Checks several rules at once, all or nothing. Returns one decision per check, in
    /// order. When any is rejected nothing is charged; the decisions of the checks that
    /// would have passed keep `allowed == true` and show what admitting them would have
    /// left, so the caller sees which rule rejected.
    ///
    /// # Errors
    ///
    /// [`Error::RuleCount`] for 0 or more than [`MAX_RULES_PER_CHECK`] checks,
    /// [`Error::DuplicateCheck`] when two checks share a key and strategy kind, and as for
    /// [`check`](Self::check).
    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Vec<Decision>>;
}

/// Validates a key and a cost, as every backend does first.
///
/// # Errors
///
/// [`Error::InvalidKey`] or [`Error::ZeroCost`].
pub(crate) fn validate(key: &str, cost: u32) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidKey {
            got: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    if cost == 0 {
        return Err(Error::ZeroCost);
    }
    Ok(())
}

/// Validates a `check_all` batch.
///
/// # Errors
///
/// As [`validate`], and [`Error::RuleCount`].
pub(crate) fn validate_all(checks: &[Check<'_>]) -> Result<()> {
    if checks.is_empty() || checks.len() > MAX_RULES_PER_CHECK {
        return Err(Error::RuleCount {
            got: checks.len(),
            max: MAX_RULES_PER_CHECK,
        });
    }
    checks.iter().try_for_each(|c| validate(c.key, c.cost))?;
    for (i, a) in checks.iter().enumerate() {
        if checks[..i]
            .iter()
            .any(|b| b.key == a.key && b.strategy.kind() == a.strategy.kind())
        {
            return Err(Error::DuplicateCheck);
        }
    }
    Ok(())
}

macro_rules! forward_store {
    ($($ty:ty),+) => {$(
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<S: RateLimitStore + ?Sized> RateLimitStore for $ty {
            async fn check(&self, key: &str, strategy: &Strategy, cost: u32) -> Result<Decision> {
                (**self).check(key, strategy, cost).await
            }
            async fn check_all(&self, checks: &[Check<'_>]) -> Result<Vec<Decision>> {
                (**self).check_all(checks).await
            }
        }
    )+};
}

forward_store!(Arc<S>, Box<S>);
