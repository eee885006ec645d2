//! The conformance suites of umanage-password on every backend, and through forwarding impls.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::Arc;

use umanage_core::testkit::{self, TimeControl};
use umanage_password::testing::credentials::CredentialHarness;

mod memory {
    use super::*;

    async fn harness() -> Option<CredentialHarness> {
        Some(umanage_password::testing::credentials::memory_harness())
    }
    umanage_password::credential_store_conformance!(harness);
}

/// The memory store behind `Box<Arc<_>>` inside an `Arc<dyn _>`: the forwarding impls keep
/// the contract.
mod memory_forwarding {
    use super::*;
    use umanage_password::store::{CredentialStore, MemoryCredentialStore};

    async fn harness() -> Option<CredentialHarness> {
        let inner = Arc::new(MemoryCredentialStore::new());
        let boxed: Box<dyn CredentialStore> = Box::new(inner);
        Some(CredentialHarness::new(Arc::new(boxed), TimeControl::Real))
    }
    umanage_password::credential_store_conformance!(harness);
}

mod postgres {
    use super::*;
    use umanage_password::store::PostgresCredentialStore;

    async fn harness() -> Option<CredentialHarness> {
        let db = testkit::postgres().await?;
        umanage_password::store::postgres::migrate(db.pool())
            .await
            .unwrap();
        let store = PostgresCredentialStore::new(db.pool().clone());
        Some(CredentialHarness::new(Arc::new(store), TimeControl::Real).with_guard(db))
    }
    umanage_password::credential_store_conformance!(harness);
}

mod spray_memory {
    use umanage_password::testing::spray::SprayHarness;

    async fn harness() -> Option<SprayHarness> {
        Some(SprayHarness::memory())
    }
    umanage_password::spray_conformance!(harness);
}

/// The memory detector behind `Box<Arc<_>>` inside an `Arc<dyn _>`.
mod spray_memory_forwarding {
    use super::*;
    use std::time::Duration;
    use umanage_core::ManualClock;
    use umanage_core::testkit::TimeControl;
    use umanage_password::spray::{MemorySprayDetector, SprayDetector};
    use umanage_password::testing::spray::SprayHarness;

    async fn harness() -> Option<SprayHarness> {
        let clock = ManualClock::default();
        let shared = clock.shared();
        Some(SprayHarness::new(
            Box::new(move |cfg| {
                let inner = Arc::new(MemorySprayDetector::with_clock(cfg, shared.clone()));
                let boxed: Box<dyn SprayDetector> = Box::new(inner);
                Arc::new(boxed)
            }),
            TimeControl::Manual(clock),
            Duration::from_secs(60),
        ))
    }
    umanage_password::spray_conformance!(harness);
}

mod spray_redis {
    use super::*;
    use std::time::Duration;
    use umanage_core::testkit::TimeControl;
    use umanage_password::spray::{RedisSprayDetector, SprayKey};
    use umanage_password::testing::spray::SprayHarness;

    async fn harness() -> Option<SprayHarness> {
        let ns = testkit::redis().await?;
        let conn = ns.connection().clone();
        let key = SprayKey::random();
        Some(
            SprayHarness::new(
                Box::new(move |cfg| {
                    Arc::new(RedisSprayDetector::new(conn.clone(), cfg, key.clone()))
                }),
                TimeControl::Real,
                // long enough that a late wake-up of a loaded machine cannot move evidence
                // across a window edge (the timing cases keep >= 0.2 unit of slack)
                Duration::from_secs(2),
            )
            .with_guard(ns),
        )
    }
    umanage_password::spray_conformance!(harness);
}
