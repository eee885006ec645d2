//! Conformance suites for this crate's backend traits (feature `testing`).
//!
//! Each suite is a module of plain `async fn`s over a harness holding the trait object,
//! plus a macro stamping them out as tests for one backend (the pattern of
//! `umanage_core::testing`). Host crates with their own backends run the same functions.

pub mod credentials {
    //! The [`CredentialStore`] contract.
    //!
    //! ```text
    //! mod memory {
    //!     async fn harness() -> Option<umanage_password::testing::credentials::CredentialHarness> {
    //!         Some(umanage_password::testing::credentials::memory_harness())
    //!     }
    //!     umanage_password::credential_store_conformance!(harness);
    //! }
    //! ```
    #![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

    use std::sync::Arc;

    use chrono::{DateTime, TimeDelta, Utc};
    use umanage_core::UserId;
    use umanage_core::testkit::{Harness, TimeControl};

    use crate::hash::HashedPassword;
    use crate::store::{CredentialStore, NewCredential, ReplaceOutcome};

    /// What every credential-store case receives.
    ///
    /// The contract takes every instant from the caller, so no case lets time pass:
    /// build harnesses with [`TimeControl::Real`] (the `time` field goes unused).
    pub type CredentialHarness = Harness<dyn CredentialStore>;

    /// A harness over a fresh memory store.
    pub fn memory_harness() -> CredentialHarness {
        Harness::new(
            Arc::new(crate::store::MemoryCredentialStore::new()),
            TimeControl::Real,
        )
    }

    /// Stamps out every credential-store case for `$setup`, an
    /// `async fn() -> Option<CredentialHarness>`.
    #[macro_export]
    macro_rules! credential_store_conformance {
        ($setup:path) => {
            ::umanage_core::conformance_tests!(
                $setup;
                $crate::testing::credentials;
                missing_user_is_none,
                create_then_get,
                create_twice_conflicts,
                replace_moves_the_old_hash_to_history,
                history_is_trimmed,
                stale_version_conflicts_and_changes_nothing,
                replace_of_a_missing_user_conflicts,
                upgrade_keeps_history_and_changed_at,
                upgrade_with_stale_version_fails,
                delete_removes_everything,
                users_are_independent,
                concurrent_changes_have_one_winner,
                concurrent_creates_have_one_winner,
            );
        };
    }

    /// A fixed instant with microsecond precision (what Postgres keeps).
    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_735_689_600, 123_456_000).unwrap()
    }

    fn h(n: u32) -> HashedPassword {
        HashedPassword::new(format!(
            "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$hash{n:04}AAAAAAAAAAAAAAAAAA"
        ))
    }

    fn new(n: u32, at: DateTime<Utc>, keep: usize) -> NewCredential {
        NewCredential::new(h(n), at, keep)
    }

    /// A user never written reads as `None`; deleting reports `false`; upgrading fails.
    pub async fn missing_user_is_none(hx: &CredentialHarness) {
        let u = UserId::new();
        assert_eq!(hx.store.get(&u).await.unwrap(), None);
        assert!(!hx.store.delete(&u).await.unwrap());
        assert!(!hx.store.upgrade_hash(&u, 1, h(1)).await.unwrap());
    }

    /// Creating stores hash and time exactly, at version 1, with no history.
    pub async fn create_then_get(hx: &CredentialHarness) {
        let u = UserId::new();
        let out = hx.store.replace(&u, None, new(1, t0(), 5)).await.unwrap();
        assert_eq!(out, ReplaceOutcome::Replaced { version: 1 });
        let c = hx.store.get(&u).await.unwrap().unwrap();
        assert_eq!(c.hash, h(1));
        assert_eq!(c.changed_at, t0());
        assert_eq!(c.version, 1);
        assert!(c.history.is_empty());
    }

    /// A second create (expected `None`) loses and reports the current version.
    pub async fn create_twice_conflicts(hx: &CredentialHarness) {
        let u = UserId::new();
        let _ = hx.store.replace(&u, None, new(1, t0(), 5)).await.unwrap();
        let out = hx.store.replace(&u, None, new(2, t0(), 5)).await.unwrap();
        assert_eq!(out, ReplaceOutcome::Conflict { current: Some(1) });
        assert_eq!(hx.store.get(&u).await.unwrap().unwrap().hash, h(1));
    }

    /// Each change pushes the previous hash to the front of history.
    pub async fn replace_moves_the_old_hash_to_history(hx: &CredentialHarness) {
        let u = UserId::new();
        let _ = hx.store.replace(&u, None, new(1, t0(), 5)).await.unwrap();
        let later = t0() + TimeDelta::days(3);
        let out = hx
            .store
            .replace(&u, Some(1), new(2, later, 5))
            .await
            .unwrap();
        assert_eq!(out, ReplaceOutcome::Replaced { version: 2 });
        let out = hx
            .store
            .replace(&u, Some(2), new(3, later, 5))
            .await
            .unwrap();
        assert_eq!(out, ReplaceOutcome::Replaced { version: 3 });
        let c = hx.store.get(&u).await.unwrap().unwrap();
        assert_eq!(c.hash, h(3));
        assert_eq!(c.changed_at, later);
        assert_eq!(c.history, vec![h(2), h(1)]);
    }

    /// History keeps the newest `keep_history`; 0 clears it.
    pub async fn history_is_trimmed(hx: &CredentialHarness) {
        let u = UserId::new();
        let _ = hx.store.replace(&u, None, new(0, t0(), 2)).await.unwrap();
        for n in 1..=4 {
            let out = hx
                .store
                .replace(&u, Some(u64::from(n)), new(n, t0(), 2))
                .await
                .unwrap();
            assert_eq!(
                out,
                ReplaceOutcome::Replaced {
                    version: u64::from(n) + 1
                }
            );
        }
        let c = hx.store.get(&u).await.unwrap().unwrap();
        assert_eq!(c.history, vec![h(3), h(2)]);
        // a larger keep does not bring deleted entries back
        let _ = hx
            .store
            .replace(&u, Some(5), new(5, t0(), 10))
            .await
            .unwrap();
        assert_eq!(
            hx.store.get(&u).await.unwrap().unwrap().history,
            vec![h(4), h(3), h(2)]
        );
        let _ = hx
            .store
            .replace(&u, Some(6), new(6, t0(), 0))
            .await
            .unwrap();
        let c = hx.store.get(&u).await.unwrap().unwrap();
        assert!(c.history.is_empty(), "{:?}", c.history);
        assert_eq!(c.hash, h(6));
    }

    /// A write with an old version changes nothing.
    pub async fn stale_version_conflicts_and_changes_nothing(hx: &CredentialHarness) {
        let u = UserId::new();
        let _ = hx.store.replace(&u, None, new(1, t0(), 5)).await.unwrap();
        let _ = hx
            .store
            .replace(&u, Some(1), new(2, t0(), 5))
            .await
            .unwrap();
        let before = hx.store.get(&u).await.unwrap().unwrap();
        for stale in [0, 1, 3, u64::MAX] {
            let out = hx
                .store
                .replace(&u, Some(stale), new(9, t0(), 5))
                .await
                .unwrap();
            assert_eq!(
                out,
                ReplaceOutcome::Conflict { current: Some(2) },
                "{stale}"
            );
        }
        assert_eq!(hx.store.get(&u).await.unwrap().unwrap(), before);
    }

    /// Expecting a version of a user that has no credential is a conflict with `None`.
    pub async fn replace_of_a_missing_user_conflicts(hx: &CredentialHarness) {
        let u = UserId::new();
        let out = hx
            .store
            .replace(&u, Some(1), new(1, t0(), 5))
            .await
            .unwrap();
        assert_eq!(out, ReplaceOutcome::Conflict { current: None });
        assert_eq!(hx.store.get(&u).await.unwrap(), None);
    }

    /// A rehash swaps the hash in place: version + 1, same time, same history.
    pub async fn upgrade_keeps_history_and_changed_at(hx: &CredentialHarness) {
        let u = UserId::new();
        let _ = hx.store.replace(&u, None, new(1, t0(), 5)).await.unwrap();
        let _ = hx
            .store
            .replace(&u, Some(1), new(2, t0() + TimeDelta::hours(1), 5))
            .await
            .unwrap();
        assert!(hx.store.upgrade_hash(&u, 2, h(20)).await.unwrap());
        let c = hx.store.get(&u).await.unwrap().unwrap();
        assert_eq!(c.hash, h(20));
        assert_eq!(c.version, 3);
        assert_eq!(c.changed_at, t0() + TimeDelta::hours(1));
        assert_eq!(c.history, vec![h(1)]);
        // the next change pushes the upgraded hash
        let _ = hx
            .store
            .replace(&u, Some(3), new(3, t0(), 5))
            .await
            .unwrap();
        assert_eq!(
            hx.store.get(&u).await.unwrap().unwrap().history,
            vec![h(20), h(1)]
        );
    }

    /// A rehash based on an old read does not overwrite a newer password.
    pub async fn upgrade_with_stale_version_fails(hx: &CredentialHarness) {
        let u = UserId::new();
        let _ = hx.store.replace(&u, None, new(1, t0(), 5)).await.unwrap();
        let _ = hx
            .store
            .replace(&u, Some(1), new(2, t0(), 5))
            .await
            .unwrap();
        assert!(!hx.store.upgrade_hash(&u, 1, h(10)).await.unwrap());
        let c = hx.store.get(&u).await.unwrap().unwrap();
        assert_eq!((c.hash, c.version), (h(2), 2));
    }

    /// Delete removes hash and history; a new credential starts over.
    pub async fn delete_removes_everything(hx: &CredentialHarness) {
        let u = UserId::new();
        let _ = hx.store.replace(&u, None, new(1, t0(), 5)).await.unwrap();
        let _ = hx
            .store
            .replace(&u, Some(1), new(2, t0(), 5))
            .await
            .unwrap();
        assert!(hx.store.delete(&u).await.unwrap());
        assert_eq!(hx.store.get(&u).await.unwrap(), None);
        assert!(!hx.store.delete(&u).await.unwrap());
        let out = hx.store.replace(&u, None, new(3, t0(), 5)).await.unwrap();
        assert_eq!(out, ReplaceOutcome::Replaced { version: 1 });
        assert!(hx.store.get(&u).await.unwrap().unwrap().history.is_empty());
    }

    /// Writes to one user never show up on another.
    pub async fn users_are_independent(hx: &CredentialHarness) {
        let (a, b) = (UserId::new(), UserId::new());
        let _ = hx.store.replace(&a, None, new(1, t0(), 5)).await.unwrap();
        let _ = hx.store.replace(&b, None, new(2, t0(), 5)).await.unwrap();
        let _ = hx
            .store
            .replace(&a, Some(1), new(3, t0(), 5))
            .await
            .unwrap();
        let cb = hx.store.get(&b).await.unwrap().unwrap();
        assert_eq!((cb.hash, cb.version, cb.history.len()), (h(2), 1, 0));
        assert!(hx.store.delete(&a).await.unwrap());
        assert!(hx.store.get(&b).await.unwrap().is_some());
    }

    /// 12 changes racing from the same version: exactly one wins, the rest see its version.
    pub async fn concurrent_changes_have_one_winner(hx: &CredentialHarness) {
        let u = UserId::new();
        let _ = hx.store.replace(&u, None, new(0, t0(), 5)).await.unwrap();
        let tasks: Vec<_> = (1..=12)
            .map(|n| {
                let store = Arc::clone(&hx.store);
                tokio::spawn(async move {
                    (
                        n,
                        store.replace(&u, Some(1), new(n, t0(), 5)).await.unwrap(),
                    )
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (n, ReplaceOutcome::Replaced { version }) => {
                    assert_eq!(version, 2);
                    winners.push(n);
                }
                (_, ReplaceOutcome::Conflict { current }) => assert_eq!(current, Some(2)),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let c = hx.store.get(&u).await.unwrap().unwrap();
        assert_eq!(c.hash, h(winners[0]));
        assert_eq!(c.history, vec![h(0)]);
    }

    /// 12 racing creates: exactly one wins.
    pub async fn concurrent_creates_have_one_winner(hx: &CredentialHarness) {
        let u = UserId::new();
        let tasks: Vec<_> = (1..=12)
            .map(|n| {
                let store = Arc::clone(&hx.store);
                tokio::spawn(async move { store.replace(&u, None, new(n, t0(), 5)).await.unwrap() })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), ReplaceOutcome::Replaced { version: 1 }) {
                won += 1;
            }
        }
        assert_eq!(won, 1);
        assert_eq!(hx.store.get(&u).await.unwrap().unwrap().version, 1);
    }
}

pub mod spray {
    //! The [`SprayDetector`] contract.
    //!
    //! A harness builds a fresh detector per case from a [`SprayConfig`], so every case
    //! sets the thresholds it checks. Timing cases run over [`SprayHarness::unit`]: exact
    //! with a manual clock (memory), with slack with server time (Redis).
    //!
    //! ```text
    //! mod memory {
    //!     async fn harness() -> Option<umanage_password::testing::spray::SprayHarness> {
    //!         Some(umanage_password::testing::spray::SprayHarness::memory())
    //!     }
    //!     umanage_password::spray_conformance!(harness);
    //! }
    //! ```
    #![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

    use std::net::IpAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use umanage_core::testkit::{Guard, TimeControl};

    use crate::spray::{
        DistinctRule, GlobalRule, LoginAttempt, SprayAction, SprayConfig, SprayConfigBuilder,
        SprayDetector, SprayReason,
    };

    /// Builds a detector under test from a configuration (a Redis factory gives every
    /// detector of one harness the same [`SprayKey`](crate::spray::SprayKey)).
    pub type DetectorFactory = Box<dyn Fn(SprayConfig) -> Arc<dyn SprayDetector> + Send + Sync>;

    /// What every spray case receives.
    pub struct SprayHarness {
        make: DetectorFactory,
        /// How time passes for the detectors.
        pub time: TimeControl,
        /// The window timing cases use (short for server time, since the suite then sleeps).
        pub unit: Duration,
        /// Keeps the namespace alive.
        pub guard: Guard,
    }

    impl std::fmt::Debug for SprayHarness {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SprayHarness")
                .field("time", &self.time)
                .field("unit", &self.unit)
                .finish_non_exhaustive()
        }
    }

    impl SprayHarness {
        /// A harness over `make`. With [`TimeControl::Real`] `unit` should be about a
        /// second: the timing cases sleep a few units.
        pub fn new(make: DetectorFactory, time: TimeControl, unit: Duration) -> Self {
            Self {
                make,
                time,
                unit,
                guard: Guard::none(),
            }
        }

        /// Keeps `guard` alive as long as the harness.
        #[must_use]
        pub fn with_guard(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
            self.guard = Guard::new(guard);
            self
        }

        /// Memory detectors on one manual clock.
        #[cfg(feature = "memory")]
        pub fn memory() -> Self {
            let clock = umanage_core::ManualClock::default();
            let shared = clock.shared();
            Self::new(
                Box::new(move |cfg| {
                    Arc::new(crate::spray::MemorySprayDetector::with_clock(
                        cfg,
                        shared.clone(),
                    ))
                }),
                TimeControl::Manual(clock),
                Duration::from_secs(600),
            )
        }

        /// A detector with `config`.
        pub fn detector(&self, config: SprayConfig) -> Arc<dyn SprayDetector> {
            (self.make)(config)
        }

        fn exact(&self) -> bool {
            matches!(self.time, TimeControl::Manual(_))
        }

        /// Slack for server-time cases.
        fn margin(&self) -> Duration {
            self.unit / 5
        }
    }

    /// Stamps out every spray case for `$setup`, an `async fn() -> Option<SprayHarness>`.
    #[macro_export]
    macro_rules! spray_conformance {
        ($setup:path) => {
            ::umanage_core::conformance_tests!(
                $setup;
                $crate::testing::spray;
                fresh_attempts_are_allowed,
                assess_changes_nothing,
                source_across_accounts_thresholds,
                repeated_failures_on_one_account_count_once,
                sources_on_account_thresholds,
                ipv6_sources_are_grouped_by_64,
                ipv4_addresses_are_distinct_sources,
                global_failure_spike,
                global_failure_ratio,
                evidence_slides_out_of_the_window,
                block_retry_after_follows_the_oldest_evidence,
                success_removes_only_its_own_pair,
                accounts_are_trimmed_and_case_folded,
                sets_are_capped,
                concurrent_records_lose_nothing,
                hostile_identifiers_are_ordinary_accounts,
            );
        };
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Every rule off, windows of `unit`.
    fn quiet(unit: Duration) -> SprayConfigBuilder {
        SprayConfig::builder()
            .per_source(DistinctRule::new(unit))
            .per_account(DistinctRule::new(unit))
            .global(GlobalRule::new(unit).with_buckets(4))
            .base_delay(Duration::from_secs(1))
            .max_delay(Duration::from_secs(4))
    }

    async fn fail(d: &Arc<dyn SprayDetector>, source: &str, account: &str) -> SprayAction {
        d.record_failure(&LoginAttempt::new(ip(source), account))
            .await
            .unwrap()
            .action
    }

    /// Nothing recorded: every attempt is allowed, all counts are zero.
    pub async fn fresh_attempts_are_allowed(hx: &SprayHarness) {
        let d = hx.detector(SprayConfig::default());
        let a = d
            .assess(&LoginAttempt::new(ip("192.0.2.1"), "alice"))
            .await
            .unwrap();
        assert!(a.is_allow(), "{a:?}");
        assert!(a.reasons.is_empty());
        assert_eq!(a.observed, crate::spray::Observed::default());
        assert_eq!(d.config(), &SprayConfig::default());
    }

    /// `assess` records nothing.
    pub async fn assess_changes_nothing(hx: &SprayHarness) {
        let d = hx.detector(
            quiet(hx.unit)
                .per_source(DistinctRule::new(hx.unit).with_block_at(2))
                .per_account(DistinctRule::new(hx.unit).with_block_at(2))
                .global(GlobalRule::new(hx.unit).with_challenge_at(2))
                .build()
                .unwrap(),
        );
        let at = LoginAttempt::new(ip("192.0.2.1"), "alice");
        for _ in 0..5 {
            let a = d.assess(&at).await.unwrap();
            assert_eq!(a.observed.source_accounts, 0);
            assert_eq!(a.observed.global_failures, 0);
        }
        d.record_failure(&at).await.unwrap();
        for _ in 0..5 {
            let a = d.assess(&at).await.unwrap();
            assert_eq!(a.observed.source_accounts, 1);
            assert_eq!(a.observed.account_sources, 1);
            assert_eq!(a.observed.global_failures, 1);
            assert!(a.is_allow(), "{a:?}");
        }
    }

    /// One source failing on distinct accounts: each threshold applies from exactly its
    /// count; delays double per step and stop at the maximum.
    pub async fn source_across_accounts_thresholds(hx: &SprayHarness) {
        let d = hx.detector(
            quiet(hx.unit)
                .per_source(
                    DistinctRule::new(hx.unit)
                        .with_slow_down_at(2)
                        .with_challenge_at(6)
                        .with_block_at(7),
                )
                .build()
                .unwrap(),
        );
        let s = "198.51.100.7";
        let secs = Duration::from_secs;
        let expected = [
            SprayAction::Allow,
            SprayAction::SlowDown { delay: secs(1) },
            SprayAction::SlowDown { delay: secs(2) },
            SprayAction::SlowDown { delay: secs(4) },
            SprayAction::SlowDown { delay: secs(4) },
            SprayAction::Challenge,
        ];
        for (i, want) in expected.iter().enumerate() {
            let got = fail(&d, s, &format!("user{i}")).await;
            assert_eq!(&got, want, "after {} distinct accounts", i + 1);
        }
        let a = d
            .record_failure(&LoginAttempt::new(ip(s), "user6"))
            .await
            .unwrap();
        assert!(matches!(a.action, SprayAction::Block { .. }), "{a:?}");
        assert_eq!(a.reasons, vec![SprayReason::SourceAcrossAccounts]);
        assert_eq!(a.observed.source_accounts, 7);
        // the source is blocked whatever account it names next; other sources are not
        let next = d
            .assess(&LoginAttempt::new(ip(s), "someone-new"))
            .await
            .unwrap();
        assert!(matches!(next.action, SprayAction::Block { .. }), "{next:?}");
        let other = d
            .assess(&LoginAttempt::new(ip("198.51.100.8"), "user0"))
            .await
            .unwrap();
        assert!(other.is_allow(), "{other:?}");
    }

    /// Failing again and again on one account is one distinct account.
    pub async fn repeated_failures_on_one_account_count_once(hx: &SprayHarness) {
        let d = hx.detector(
            quiet(hx.unit)
                .per_source(DistinctRule::new(hx.unit).with_slow_down_at(2))
                .per_account(DistinctRule::new(hx.unit).with_slow_down_at(2))
                .build()
                .unwrap(),
        );
        for _ in 0..10 {
            assert_eq!(fail(&d, "203.0.113.5", "bob").await, SprayAction::Allow);
        }
        let a = d
            .assess(&LoginAttempt::new(ip("203.0.113.5"), "bob"))
            .await
            .unwrap();
        assert_eq!(a.observed.source_accounts, 1);
        assert_eq!(a.observed.account_sources, 1);
    }

    /// Many sources failing on one account: the account's attempts from any source get the
    /// action; other accounts do not.
    pub async fn sources_on_account_thresholds(hx: &SprayHarness) {
        let d = hx.detector(
            quiet(hx.unit)
                .per_account(
                    DistinctRule::new(hx.unit)
                        .with_slow_down_at(2)
                        .with_challenge_at(4)
                        .with_block_at(6),
                )
                .build()
                .unwrap(),
        );
        let mut actions = Vec::new();
        for i in 1..=6 {
            actions.push(fail(&d, &format!("192.0.2.{i}"), "victim").await);
        }
        assert_eq!(actions[0], SprayAction::Allow);
        assert!(matches!(actions[1], SprayAction::SlowDown { .. }));
        assert!(matches!(actions[2], SprayAction::SlowDown { .. }));
        assert_eq!(actions[3], SprayAction::Challenge);
        assert_eq!(actions[4], SprayAction::Challenge);
        assert!(matches!(actions[5], SprayAction::Block { .. }));
        let fresh = d
            .assess(&LoginAttempt::new(ip("203.0.113.99"), "victim"))
            .await
            .unwrap();
        assert!(matches!(fresh.action, SprayAction::Block { .. }));
        assert_eq!(fresh.reasons, vec![SprayReason::SourcesOnAccount]);
        assert_eq!(fresh.observed.account_sources, 6);
        let other = d
            .assess(&LoginAttempt::new(ip("192.0.2.1"), "bystander"))
            .await
            .unwrap();
        assert!(other.is_allow(), "{other:?}");
    }

    /// IPv6 addresses of one /64 are one source; mapped IPv4 is its IPv4 address.
    pub async fn ipv6_sources_are_grouped_by_64(hx: &SprayHarness) {
        let d = hx.detector(
            quiet(hx.unit)
                .per_source(DistinctRule::new(hx.unit).with_slow_down_at(3))
                .per_account(DistinctRule::new(hx.unit).with_slow_down_at(3))
                .build()
                .unwrap(),
        );
        for addr in [
            "2001:db8:1:2::1",
            "2001:db8:1:2::2",
            "2001:db8:1:2:ffff:ffff:ffff:ffff",
            "2001:db8:1:2:abcd::1",
        ] {
            fail(&d, addr, "carol").await;
        }
        let a = d
            .assess(&LoginAttempt::new(ip("2001:db8:1:2::9"), "carol"))
            .await
            .unwrap();
        assert_eq!(a.observed.account_sources, 1, "{a:?}");
        fail(&d, "2001:db8:1:3::1", "carol").await;
        fail(&d, "::ffff:192.0.2.77", "carol").await;
        fail(&d, "192.0.2.77", "carol").await;
        let a = d
            .assess(&LoginAttempt::new(ip("2001:db8:9::1"), "carol"))
            .await
            .unwrap();
        assert_eq!(a.observed.account_sources, 3, "{a:?}");
        assert!(matches!(a.action, SprayAction::SlowDown { .. }));

        // one /64 spraying from rotating addresses is one source across accounts
        for (i, host) in ["a", "b", "c"].iter().enumerate() {
            fail(&d, &format!("2001:db8:77:1::{host}"), &format!("acct{i}")).await;
        }
        let a = d
            .assess(&LoginAttempt::new(ip("2001:db8:77:1:ffff::1"), "another"))
            .await
            .unwrap();
        assert_eq!(a.observed.source_accounts, 3, "{a:?}");
        assert!(a.reasons.contains(&SprayReason::SourceAcrossAccounts));
    }

    /// Each IPv4 address is its own source by default.
    pub async fn ipv4_addresses_are_distinct_sources(hx: &SprayHarness) {
        let d = hx.detector(
            quiet(hx.unit)
                .per_account(DistinctRule::new(hx.unit).with_slow_down_at(5))
                .build()
                .unwrap(),
        );
        fail(&d, "192.0.2.1", "dave").await;
        fail(&d, "192.0.2.2", "dave").await;
        fail(&d, "192.0.2.2", "dave").await;
        let a = d
            .assess(&LoginAttempt::new(ip("192.0.2.3"), "dave"))
            .await
            .unwrap();
        assert_eq!(a.observed.account_sources, 2);
    }

    /// Site-wide failures from unrelated sources and accounts: every attempt is slowed, then
    /// challenged.
    pub async fn global_failure_spike(hx: &SprayHarness) {
        let d = hx.detector(
            quiet(hx.unit)
                .global(
                    GlobalRule::new(hx.unit)
                        .with_buckets(4)
                        .with_slow_down_at(3)
                        .with_challenge_at(6),
                )
                .build()
                .unwrap(),
        );
        let bystander = LoginAttempt::new(ip("203.0.113.1"), "erin");
        let mut actions = Vec::new();
        for i in 1..=6 {
            fail(&d, &format!("198.51.100.{i}"), &format!("u{i}")).await;
            actions.push(d.assess(&bystander).await.unwrap());
        }
        assert!(actions[1].is_allow(), "{:?}", actions[1]);
        assert_eq!(
            actions[2].action,
            SprayAction::SlowDown {
                delay: Duration::from_secs(1)
            }
        );
        assert_eq!(actions[2].reasons, vec![SprayReason::GlobalFailureSpike]);
        assert_eq!(actions[4].observed.global_failures, 5);
        assert_eq!(actions[5].action, SprayAction::Challenge);
    }

    /// With a minimum failure ratio, successes keep the global signal quiet.
    pub async fn global_failure_ratio(hx: &SprayHarness) {
        let d = hx.detector(
            quiet(hx.unit)
                .global(
                    GlobalRule::new(hx.unit)
                        .with_buckets(4)
                        .with_challenge_at(4)
                        .with_min_failure_ratio(0.5),
                )
                .build()
                .unwrap(),
        );
        for i in 0..5 {
            d.record_success(&LoginAttempt::new(ip("192.0.2.50"), &format!("ok{i}")))
                .await
                .unwrap();
        }
        for i in 0..4 {
            fail(&d, &format!("198.51.100.{i}"), &format!("bad{i}")).await;
        }
        let a = d
            .assess(&LoginAttempt::new(ip("203.0.113.1"), "x"))
            .await
            .unwrap();
        assert_eq!(a.observed.global_failures, 4);
        assert_eq!(a.observed.global_successes, 5);
        assert!(a.is_allow(), "4 of 9 is below half: {a:?}");
        // 5 of 10 is half
        assert_eq!(
            fail(&d, "198.51.100.9", "bad9").await,
            SprayAction::Challenge
        );
    }

    /// Evidence older than the window no longer counts, evidence inside still does.
    pub async fn evidence_slides_out_of_the_window(hx: &SprayHarness) {
        let u = hx.unit;
        let d = hx.detector(
            quiet(u)
                .per_source(DistinctRule::new(u).with_slow_down_at(3))
                .per_account(DistinctRule::new(u).with_slow_down_at(3))
                .global(GlobalRule::new(u).with_buckets(4).with_slow_down_at(10))
                .build()
                .unwrap(),
        );
        let s = "198.51.100.20";
        fail(&d, s, "a0").await;
        fail(&d, s, "a1").await;
        fail(&d, "198.51.100.21", "target").await;
        hx.time.advance(u / 2).await;
        fail(&d, s, "a2").await;
        fail(&d, s, "a3").await;
        let a = d.assess(&LoginAttempt::new(ip(s), "z")).await.unwrap();
        assert_eq!(a.observed.source_accounts, 4);
        assert_eq!(a.observed.global_failures, 5);
        // the first two (and the failure on `target`) leave, the last two stay
        hx.time.advance(u / 2 + hx.margin()).await;
        let a = d.assess(&LoginAttempt::new(ip(s), "target")).await.unwrap();
        assert_eq!(a.observed.source_accounts, 2, "{a:?}");
        assert_eq!(a.observed.account_sources, 0, "{a:?}");
        assert!(a.is_allow(), "{a:?}");
        // everything leaves
        hx.time.advance(u).await;
        let a = d.assess(&LoginAttempt::new(ip(s), "a3")).await.unwrap();
        assert_eq!(a.observed.source_accounts, 0);
        assert_eq!(a.observed.account_sources, 0);
        assert_eq!(a.observed.global_failures, 0);
    }

    /// A block lasts until the oldest evidence that keeps the count at the threshold has
    /// left the window.
    pub async fn block_retry_after_follows_the_oldest_evidence(hx: &SprayHarness) {
        let u = hx.unit;
        let d = hx.detector(
            quiet(u)
                .per_source(DistinctRule::new(u).with_slow_down_at(2).with_block_at(3))
                .build()
                .unwrap(),
        );
        let s = "198.51.100.30";
        fail(&d, s, "a0").await;
        hx.time.advance(u / 4).await;
        fail(&d, s, "a1").await;
        let SprayAction::Block { retry_after } = fail(&d, s, "a2").await else {
            panic!("not blocked at the threshold");
        };
        if hx.exact() {
            assert_eq!(retry_after, u * 3 / 4);
        } else {
            assert!(retry_after <= u * 3 / 4, "{retry_after:?}");
            assert!(retry_after >= u / 2, "{retry_after:?}");
        }
        let again = d.assess(&LoginAttempt::new(ip(s), "a9")).await.unwrap();
        assert!(matches!(again.action, SprayAction::Block { .. }));
        // just past the oldest failure's expiry; the other two are still well inside
        hx.time.advance(retry_after + hx.unit / 20).await;
        let after = d.assess(&LoginAttempt::new(ip(s), "a9")).await.unwrap();
        assert_eq!(after.observed.source_accounts, 2, "{after:?}");
        assert!(
            matches!(after.action, SprayAction::SlowDown { .. }),
            "{after:?}"
        );
    }

    /// A success removes its own (source, account) pair and nothing else.
    pub async fn success_removes_only_its_own_pair(hx: &SprayHarness) {
        let d = hx.detector(
            quiet(hx.unit)
                .per_source(DistinctRule::new(hx.unit).with_slow_down_at(3))
                .per_account(DistinctRule::new(hx.unit).with_slow_down_at(3))
                .build()
                .unwrap(),
        );
        let s = "198.51.100.40";
        for i in 0..4 {
            fail(&d, s, &format!("acct{i}")).await;
        }
        fail(&d, "192.0.2.41", "acct3").await;
        fail(&d, "192.0.2.42", "acct3").await;
        let ok = d
            .record_success(&LoginAttempt::new(ip(s), "acct3"))
            .await
            .unwrap();
        // the sprayer keeps its record on the three other accounts
        assert_eq!(ok.observed.source_accounts, 3, "{ok:?}");
        assert!(ok.reasons.contains(&SprayReason::SourceAcrossAccounts));
        // the account keeps the other sources' failures
        assert_eq!(ok.observed.account_sources, 2, "{ok:?}");
        // a success on a pair with no failures changes nothing
        let ok = d
            .record_success(&LoginAttempt::new(ip("192.0.2.99"), "acct0"))
            .await
            .unwrap();
        assert_eq!(ok.observed.account_sources, 1);
        assert_eq!(ok.observed.source_accounts, 0);
    }

    /// `Alice`, `alice` and ` ALICE ` are one account.
    pub async fn accounts_are_trimmed_and_case_folded(hx: &SprayHarness) {
        let d = hx.detector(
            quiet(hx.unit)
                .per_source(DistinctRule::new(hx.unit).with_slow_down_at(2))
                .per_account(DistinctRule::new(hx.unit).with_slow_down_at(2))
                .build()
                .unwrap(),
        );
        for name in ["Alice", "alice", " ALICE ", "alice\t"] {
            fail(&d, "198.51.100.50", name).await;
        }
        fail(&d, "198.51.100.51", "ALICE").await;
        let a = d
            .assess(&LoginAttempt::new(ip("198.51.100.50"), "aLiCe"))
            .await
            .unwrap();
        assert_eq!(a.observed.source_accounts, 1);
        assert_eq!(a.observed.account_sources, 2);
    }

    /// A set never holds more than `max_members`; the signal stays at the top threshold.
    pub async fn sets_are_capped(hx: &SprayHarness) {
        let d = hx.detector(
            quiet(hx.unit)
                .per_source(DistinctRule::new(hx.unit).with_block_at(5))
                .per_account(DistinctRule::new(hx.unit).with_challenge_at(5))
                .max_members(5)
                .build()
                .unwrap(),
        );
        for i in 0..12 {
            fail(&d, "198.51.100.60", &format!("acct{i}")).await;
            fail(&d, &format!("192.0.2.{}", i + 1), "popular").await;
        }
        let a = d
            .assess(&LoginAttempt::new(ip("198.51.100.60"), "popular"))
            .await
            .unwrap();
        assert_eq!(a.observed.source_accounts, 5);
        assert_eq!(a.observed.account_sources, 5);
        assert!(matches!(a.action, SprayAction::Block { .. }), "{a:?}");
    }

    /// Concurrent records from many tasks: no update is lost.
    pub async fn concurrent_records_lose_nothing(hx: &SprayHarness) {
        const N: usize = 32;
        let d = hx.detector(
            quiet(hx.unit)
                .per_source(DistinctRule::new(hx.unit).with_block_at(200))
                .per_account(DistinctRule::new(hx.unit).with_block_at(200))
                .global(
                    GlobalRule::new(hx.unit)
                        .with_buckets(4)
                        .with_challenge_at(10_000),
                )
                .build()
                .unwrap(),
        );
        let mut tasks = Vec::new();
        for i in 0..N {
            let d = d.clone();
            tasks.push(tokio::spawn(async move {
                let src = format!("10.1.{}.{}", i / 200, i % 200 + 1);
                d.record_failure(&LoginAttempt::new(src.parse().unwrap(), "victim"))
                    .await
                    .unwrap();
                d.record_failure(&LoginAttempt::new(
                    "10.9.9.9".parse().unwrap(),
                    &format!("acct{i}"),
                ))
                .await
                .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let a = d
            .assess(&LoginAttempt::new(ip("10.9.9.9"), "victim"))
            .await
            .unwrap();
        assert_eq!(a.observed.source_accounts, N as u32);
        assert_eq!(a.observed.account_sources, N as u32);
        assert_eq!(a.observed.global_failures, 2 * N as u64);
    }

    /// Empty, NUL, RTL, emoji, combining and 1 MiB account identifiers, and unusual
    /// addresses, are recorded like any other: distinct, no error, no panic.
    pub async fn hostile_identifiers_are_ordinary_accounts(hx: &SprayHarness) {
        let d = hx.detector(
            quiet(hx.unit)
                .per_source(DistinctRule::new(hx.unit).with_block_at(50))
                .per_account(DistinctRule::new(hx.unit).with_block_at(50))
                .build()
                .unwrap(),
        );
        let huge = "x".repeat(1 << 20);
        let accounts = [
            String::new(),
            "\0".to_owned(),
            "a\0b".to_owned(),
            "\u{202e}nimda".to_owned(),
            "👩‍👩‍👧‍👦".to_owned(),
            "e\u{301}\u{301}".to_owned(),
            "{tag}:%7D*".to_owned(),
            huge.clone(),
        ];
        for a in &accounts {
            d.record_failure(&LoginAttempt::new(ip("192.0.2.123"), a))
                .await
                .unwrap();
        }
        let a = d
            .assess(&LoginAttempt::new(ip("192.0.2.123"), &huge))
            .await
            .unwrap();
        assert_eq!(a.observed.source_accounts, accounts.len() as u32);
        assert_eq!(a.observed.account_sources, 1);
        for source in [
            "::",
            "::1",
            "0.0.0.0",
            "255.255.255.255",
            "ff02::1",
            "::ffff:0.0.0.0",
        ] {
            d.record_failure(&LoginAttempt::new(ip(source), "\0"))
                .await
                .unwrap();
        }
        let a = d
            .assess(&LoginAttempt::new(ip("192.0.2.1"), "\0"))
            .await
            .unwrap();
        // 192.0.2.123, ::/64 (both "::" and "::1"), 0.0.0.0 (also "::ffff:0.0.0.0"),
        // 255.255.255.255, ff02::/64
        assert_eq!(a.observed.account_sources, 5, "{a:?}");
    }
}
