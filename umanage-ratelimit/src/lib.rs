#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "memory")]
pub mod adaptive;
pub mod adjust;
mod algorithm;
pub mod clock;
pub mod error;
pub mod key;
#[cfg(feature = "tower")]
pub mod layer;
pub mod model;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tier;

pub use clock::MonotonicClock;
pub use error::{Error, Result};
pub use key::{KeyExtractor, KeyPart, KeySpec, RequestInfo};
#[cfg(feature = "tower")]
pub use layer::{AppliedRule, HeaderStyle, PeerAddr, RateLimitLayer, Rejection};
pub use model::{
    Decision, PathPattern, RateLimitRule, RuleSet, Strategy, StrategyBuilder, StrategyKind,
};
#[cfg(feature = "redis")]
pub use store::RedisRateLimiter;
pub use store::{
    Check, FailurePolicy, MAX_KEY_LEN, MAX_RULES_PER_CHECK, RateLimitStore, ResilientLimiter,
};
#[cfg(feature = "memory")]
pub use store::{MemoryRateLimiter, MemoryRateLimiterBuilder};
