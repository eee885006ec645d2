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
    //!         Some(umanage_password::testing::credentials::CredentialHarness::memory())
    //!     }
    //!     umanage_password::credential_store_conformance!(harness);
    //! }
    //! ```
    #![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

    use std::sync::Arc;

    use chrono::{DateTime, TimeDelta, Utc};
    use umanage_core::UserId;
    use umanage_core::testkit::Guard;

    use crate::hash::HashedPassword;
    use crate::store::{CredentialStore, NewCredential, ReplaceOutcome};

    /// What every credential-store case receives.
    #[derive(Debug)]
    pub struct CredentialHarness {
        /// The store under test.
        pub store: Arc<dyn CredentialStore>,
        /// Keeps the test's namespace alive until the case ends.
        pub guard: Guard,
    }

    impl CredentialHarness {
        /// A harness over `store`.
        pub fn new(store: Arc<dyn CredentialStore>) -> Self {
            Self {
                store,
                guard: Guard::none(),
            }
        }

        /// Keeps `guard` (a `TestPostgres`, ...) alive as long as the harness.
        #[must_use]
        pub fn with_guard(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
            self.guard = Guard::new(guard);
            self
        }

        /// A fresh memory store.
        pub fn memory() -> Self {
            Self::new(Arc::new(crate::store::MemoryCredentialStore::new()))
        }
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
