//! Conformance suites for the traits of this crate (feature `testkit`).
//!
//! Each suite is a module of plain `async fn`s over a harness holding the trait object,
//! plus a macro that stamps them out as tests for one backend. Backend crates (and hosts
//! with their own backends) run the same functions, so "passes the suite" means the same
//! thing everywhere.

pub mod kv {
    //! The [`KvStore`] contract.
    //!
    //! Every case panics (fails the test) when the backend breaks the contract.
    #![allow(clippy::unwrap_used, clippy::missing_panics_doc)]
    //!
    //! ```text
    //! mod memory {
    //!     async fn harness() -> Option<umanage_core::testing::kv::KvHarness> {
    //!         Some(umanage_core::testing::kv::memory_harness())
    //!     }
    //!     umanage_core::kv_conformance!(harness);
    //! }
    //! ```

    use std::sync::Arc;
    use std::time::Duration;

    use crate::kv::{KvError, KvStore};
    use crate::testkit::Harness;

    /// What every KV conformance case receives.
    pub type KvHarness = Harness<dyn KvStore>;

    /// A harness over a memory store on a fresh [`ManualClock`](crate::ManualClock).
    #[cfg(feature = "memory")]
    pub fn memory_harness() -> KvHarness {
        let clock = crate::ManualClock::default();
        let store = crate::kv::MemoryKvStore::with_clock(clock.shared());
        Harness::new(Arc::new(store), crate::testkit::TimeControl::Manual(clock))
    }

    /// Stamps out every KV case for `$setup`, an `async fn() -> Option<KvHarness>`.
    #[macro_export]
    macro_rules! kv_conformance {
        ($setup:path) => {
            $crate::conformance_tests!(
                $setup;
                $crate::testing::kv;
                missing_key_is_none,
                set_then_get_round_trips_bytes,
                set_overwrites_value_and_ttl,
                delete_reports_live_values,
                entries_expire,
                set_if_absent_wins_once_and_after_expiry,
                increment_counts_from_zero,
                increment_keeps_the_window_deadline,
                increment_gives_a_ttl_to_keys_without_one,
                increment_rejects_non_integers,
                concurrent_increments_lose_nothing,
                concurrent_set_if_absent_has_one_winner,
                keys_with_special_characters_are_distinct,
            );
        };
    }

    /// The unit of "a little time" for real-time backends: long enough to be robust on a
    /// loaded CI machine, short enough to keep the suite quick.
    const TICK: Duration = Duration::from_millis(400);

    /// A key that was never written reads as `None`; deleting it reports `false`.
    pub async fn missing_key_is_none(h: &KvHarness) {
        assert_eq!(h.store.get("never-written").await.unwrap(), None);
        assert!(!h.store.delete("never-written").await.unwrap());
    }

    /// Values are bytes, returned exactly (NUL, 0xFF, empty).
    pub async fn set_then_get_round_trips_bytes(h: &KvHarness) {
        for (key, value) in [("a", &b"hello"[..]), ("b", b"\x00\xff\x00"), ("c", b"")] {
            h.store.set(key, value, None).await.unwrap();
            assert_eq!(
                h.store.get(key).await.unwrap().as_deref(),
                Some(value),
                "{key}"
            );
        }
    }

    /// `set` replaces the value and the expiry (a later `set` without TTL keeps it forever).
    pub async fn set_overwrites_value_and_ttl(h: &KvHarness) {
        h.store.set("k", b"one", Some(TICK)).await.unwrap();
        h.store.set("k", b"two", None).await.unwrap();
        h.time.advance(TICK * 2).await;
        assert_eq!(
            h.store.get("k").await.unwrap().as_deref(),
            Some(&b"two"[..])
        );
    }

    /// `delete` removes, and reports whether a live value was there.
    pub async fn delete_reports_live_values(h: &KvHarness) {
        h.store.set("k", b"v", None).await.unwrap();
        assert!(h.store.delete("k").await.unwrap());
        assert_eq!(h.store.get("k").await.unwrap(), None);
        assert!(!h.store.delete("k").await.unwrap());
        h.store.set("short", b"v", Some(TICK)).await.unwrap();
        h.time.advance(TICK * 2).await;
        assert!(
            !h.store.delete("short").await.unwrap(),
            "expired value reported as live"
        );
    }

    /// An entry is readable before its TTL and never after.
    pub async fn entries_expire(h: &KvHarness) {
        h.store.set("k", b"v", Some(TICK * 3)).await.unwrap();
        h.time.advance(TICK).await;
        assert!(
            h.store.get("k").await.unwrap().is_some(),
            "expired too early"
        );
        h.time.advance(TICK * 3).await;
        assert_eq!(
            h.store.get("k").await.unwrap(),
            None,
            "expired entry returned"
        );
    }

    /// `set_if_absent` stores once; it succeeds again after the value expired.
    pub async fn set_if_absent_wins_once_and_after_expiry(h: &KvHarness) {
        assert!(
            h.store
                .set_if_absent("lock", b"a", Some(TICK))
                .await
                .unwrap()
        );
        assert!(
            !h.store
                .set_if_absent("lock", b"b", Some(TICK))
                .await
                .unwrap()
        );
        assert_eq!(
            h.store.get("lock").await.unwrap().as_deref(),
            Some(&b"a"[..])
        );
        h.time.advance(TICK * 2).await;
        assert!(h.store.set_if_absent("lock", b"c", None).await.unwrap());
        assert_eq!(
            h.store.get("lock").await.unwrap().as_deref(),
            Some(&b"c"[..])
        );
    }

    /// Counters start at zero, accept negative steps, and read back as decimal text;
    /// `increment` also works on a value `set` as decimal text.
    pub async fn increment_counts_from_zero(h: &KvHarness) {
        let ttl = Duration::from_secs(60);
        assert_eq!(h.store.increment("c", 1, ttl).await.unwrap(), 1);
        assert_eq!(h.store.increment("c", 5, ttl).await.unwrap(), 6);
        assert_eq!(h.store.increment("c", -8, ttl).await.unwrap(), -2);
        assert_eq!(h.store.get("c").await.unwrap().as_deref(), Some(&b"-2"[..]));
        h.store.set("t", b"41", None).await.unwrap();
        assert_eq!(h.store.increment("t", 1, ttl).await.unwrap(), 42);
        let big = (1_i64 << 53) + 1;
        h.store
            .set("big", big.to_string().as_bytes(), None)
            .await
            .unwrap();
        assert_eq!(
            h.store.increment("big", 1, ttl).await.unwrap(),
            big + 1,
            "precision lost"
        );
    }

    /// The TTL of a counter is set when it is created and not extended by later increments
    /// (a fixed window); after it passes, counting restarts at zero.
    pub async fn increment_keeps_the_window_deadline(h: &KvHarness) {
        let window = TICK * 3;
        assert_eq!(h.store.increment("w", 1, window).await.unwrap(), 1);
        h.time.advance(TICK * 2).await;
        assert_eq!(h.store.increment("w", 1, window).await.unwrap(), 2);
        h.time.advance(TICK * 2).await;
        assert_eq!(
            h.store.increment("w", 1, window).await.unwrap(),
            1,
            "window was extended"
        );
    }

    /// A key stored without expiry gets the counter's TTL on its first increment, so a
    /// counter can never be left without one.
    pub async fn increment_gives_a_ttl_to_keys_without_one(h: &KvHarness) {
        h.store.set("n", b"10", None).await.unwrap();
        assert_eq!(h.store.increment("n", 1, TICK).await.unwrap(), 11);
        h.time.advance(TICK * 2).await;
        assert_eq!(h.store.get("n").await.unwrap(), None, "counter kept no TTL");
    }

    /// Incrementing a non-integer or overflowing fails with `NotAnInteger` and changes nothing.
    pub async fn increment_rejects_non_integers(h: &KvHarness) {
        let ttl = Duration::from_secs(60);
        for (key, value) in [("s", &b"abc"[..]), ("f", b"1.5"), ("e", b""), ("sp", b" 1")] {
            h.store.set(key, value, None).await.unwrap();
            let err = h.store.increment(key, 1, ttl).await.unwrap_err();
            assert!(matches!(err, KvError::NotAnInteger), "{key}: {err:?}");
            assert_eq!(
                h.store.get(key).await.unwrap().as_deref(),
                Some(value),
                "{key} changed"
            );
        }
        h.store
            .set("max", i64::MAX.to_string().as_bytes(), None)
            .await
            .unwrap();
        let err = h.store.increment("max", 1, ttl).await.unwrap_err();
        assert!(matches!(err, KvError::NotAnInteger), "overflow: {err:?}");
        assert_eq!(
            h.store.get("max").await.unwrap().as_deref(),
            Some(i64::MAX.to_string().as_bytes())
        );
    }

    /// 16 tasks x 25 increments: exactly 400, nothing lost.
    pub async fn concurrent_increments_lose_nothing(h: &KvHarness) {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = Arc::clone(&h.store);
                tokio::spawn(async move {
                    for _ in 0..25 {
                        store
                            .increment("hits", 1, Duration::from_secs(60))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            h.store.get("hits").await.unwrap().as_deref(),
            Some(&b"400"[..])
        );
    }

    /// 32 racing `set_if_absent` calls: exactly one wins, and its value is the one stored.
    pub async fn concurrent_set_if_absent_has_one_winner(h: &KvHarness) {
        let tasks: Vec<_> = (0..32_u8)
            .map(|i| {
                let store = Arc::clone(&h.store);
                tokio::spawn(async move {
                    let won = store.set_if_absent("once", &[i], None).await.unwrap();
                    won.then_some(i)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            if let Some(i) = t.await.unwrap() {
                winners.push(i);
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        assert_eq!(h.store.get("once").await.unwrap(), Some(vec![winners[0]]));
    }

    /// Keys are opaque: braces, colons, globs, unicode and near-duplicates never collide.
    pub async fn keys_with_special_characters_are_distinct(h: &KvHarness) {
        let keys = ["a}b", "a%7Db", "{a}", "a:b", "a*", "ключ", "a", "a ", ""];
        for (i, key) in keys.iter().enumerate() {
            h.store
                .set(key, i.to_string().as_bytes(), None)
                .await
                .unwrap();
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(
                h.store.get(key).await.unwrap(),
                Some(i.to_string().into_bytes()),
                "{key:?}"
            );
        }
    }
}
