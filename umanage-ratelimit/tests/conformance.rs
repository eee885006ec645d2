//! The limiter conformance suite on every backend, and through the forwarding impls.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::Arc;

use umanage_core::testkit::{self, TimeControl};
use umanage_ratelimit::testing::LimiterHarness;

mod memory {
    use super::*;

    async fn harness() -> Option<LimiterHarness> {
        Some(umanage_ratelimit::testing::memory_harness())
    }
    umanage_ratelimit::ratelimit_conformance!(harness);
}

/// The memory limiter behind `Box<Arc<_>>`: the forwarding impls keep the contract.
mod memory_forwarding {
    use super::*;
    use umanage_core::ManualClock;
    use umanage_ratelimit::{MemoryRateLimiter, RateLimitStore};

    async fn harness() -> Option<LimiterHarness> {
        let clock = ManualClock::default();
        let inner = Arc::new(MemoryRateLimiter::with_clock(clock.shared()));
        let boxed: Box<dyn RateLimitStore> = Box::new(inner);
        Some(LimiterHarness::new(
            Arc::new(boxed),
            TimeControl::Manual(clock),
        ))
    }
    umanage_ratelimit::ratelimit_conformance!(harness);
}

mod redis {
    use super::*;
    use umanage_ratelimit::RedisRateLimiter;

    async fn harness() -> Option<LimiterHarness> {
        let ns = testkit::redis().await?;
        let store = RedisRateLimiter::new(ns.connection().clone());
        Some(LimiterHarness::new(Arc::new(store), TimeControl::Real).with_guard(ns))
    }
    umanage_ratelimit::ratelimit_conformance!(harness);
}
