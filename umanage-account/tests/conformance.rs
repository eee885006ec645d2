//! The AccountStore conformance suite on every backend, and through the forwarding impls.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]
#![cfg(feature = "testing")]

use std::sync::Arc;

use umanage_account::testing::AccountHarness;
use umanage_core::testkit::{self, TimeControl};

mod memory {
    use super::*;

    async fn harness() -> Option<AccountHarness> {
        Some(umanage_account::testing::memory_harness())
    }
    umanage_account::account_store_conformance!(harness);
}

/// The memory store behind `Arc<Box<Arc<_>>>`: the forwarding impls keep the contract.
mod memory_forwarding {
    use super::*;
    use umanage_account::{AccountStore, MemoryAccountStore};
    use umanage_core::ManualClock;

    async fn harness() -> Option<AccountHarness> {
        let clock = ManualClock::default();
        let inner = Arc::new(MemoryAccountStore::with_clock(clock.shared()));
        let boxed: Box<dyn AccountStore> = Box::new(inner);
        Some(AccountHarness::new(
            Arc::new(boxed),
            TimeControl::Manual(clock),
        ))
    }
    umanage_account::account_store_conformance!(harness);
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use umanage_account::PostgresAccountStore;

    async fn harness() -> Option<AccountHarness> {
        let db = testkit::postgres().await?;
        umanage_account::postgres::migrate(db.pool()).await.unwrap();
        let store = PostgresAccountStore::new(db.pool().clone());
        Some(AccountHarness::new(Arc::new(store), TimeControl::Real).with_guard(db))
    }
    umanage_account::account_store_conformance!(harness);
}
