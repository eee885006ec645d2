//! The KV conformance suite on every backend, and through the forwarding impls.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::Arc;

use umanage_core::testing::kv::KvHarness;
use umanage_core::testkit::{self, TimeControl};

mod memory {
    use super::*;

    async fn harness() -> Option<KvHarness> {
        Some(umanage_core::testing::kv::memory_harness())
    }
    umanage_core::kv_conformance!(harness);
}

/// The memory store behind `Arc<Arc<_>>` and `Box<_>`: the forwarding impls keep the contract.
mod memory_forwarding {
    use super::*;
    use umanage_core::ManualClock;
    use umanage_core::kv::{KvStore, MemoryKvStore};

    async fn harness() -> Option<KvHarness> {
        let clock = ManualClock::default();
        let inner = Arc::new(MemoryKvStore::with_clock(clock.shared()));
        let boxed: Box<dyn KvStore> = Box::new(inner);
        Some(KvHarness::new(Arc::new(boxed), TimeControl::Manual(clock)))
    }
    umanage_core::kv_conformance!(harness);
}

mod redis {
    use super::*;
    use umanage_core::kv::RedisKvStore;

    async fn harness() -> Option<KvHarness> {
        let ns = testkit::redis().await?;
        let store = RedisKvStore::new(ns.connection().clone());
        Some(KvHarness::new(Arc::new(store), TimeControl::Real).with_guard(ns))
    }
    umanage_core::kv_conformance!(harness);
}

mod postgres {
    use super::*;
    use umanage_core::kv::PostgresKvStore;

    async fn harness() -> Option<KvHarness> {
        let db = testkit::postgres().await?;
        PostgresKvStore::migrate(db.pool()).await.unwrap();
        let store = PostgresKvStore::new(db.pool().clone());
        Some(KvHarness::new(Arc::new(store), TimeControl::Real).with_guard(db))
    }
    umanage_core::kv_conformance!(harness);
}
