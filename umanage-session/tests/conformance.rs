//! The session-store conformance suite on every backend, and through the forwarding impls.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::Arc;

use umanage_core::testkit::{self, TimeControl};
use umanage_session::testing::SessionHarness;

mod memory {
    use super::*;

    async fn harness() -> Option<SessionHarness> {
        Some(umanage_session::testing::memory_harness())
    }
    umanage_session::session_conformance!(harness);
}

/// The memory store behind `Box<dyn _>` inside an `Arc`: the forwarding impls keep the contract.
mod memory_forwarding {
    use super::*;
    use umanage_core::ManualClock;
    use umanage_session::{MemorySessionStore, SessionStore};

    async fn harness() -> Option<SessionHarness> {
        let clock = ManualClock::default();
        let inner = Arc::new(MemorySessionStore::with_clock(clock.shared()));
        let boxed: Box<dyn SessionStore> = Box::new(inner);
        Some(SessionHarness::new(
            Arc::new(boxed),
            TimeControl::Manual(clock),
        ))
    }
    umanage_session::session_conformance!(harness);
}

mod redis {
    use super::*;
    use umanage_session::RedisSessionStore;

    async fn harness() -> Option<SessionHarness> {
        let ns = testkit::redis().await?;
        let store = RedisSessionStore::new(ns.connection().clone());
        Some(SessionHarness::new(Arc::new(store), TimeControl::Real).with_guard(ns))
    }
    umanage_session::session_conformance!(harness);
}

/// Redis with the MessagePack serializer.
mod redis_msgpack {
    use super::*;
    use umanage_session::{MsgpackSerializer, RedisSessionStore};

    async fn harness() -> Option<SessionHarness> {
        let ns = testkit::redis().await?;
        let store =
            RedisSessionStore::new(ns.connection().clone()).with_serializer(MsgpackSerializer);
        Some(SessionHarness::new(Arc::new(store), TimeControl::Real).with_guard(ns))
    }
    umanage_session::session_conformance!(harness);
}
