//! The [`AccountStore`] conformance suite (feature `testing`).
//!
//! Plain async fns over an [`AccountHarness`], stamped out per backend by
//! [`account_store_conformance!`](crate::account_store_conformance). Every case panics
//! (fails the test) when the backend breaks the contract written on [`AccountStore`].
//!
//! ```text
//! mod memory {
//!     async fn harness() -> Option<umanage_account::testing::AccountHarness> {
//!         Some(umanage_account::testing::memory_harness())
//!     }
//!     umanage_account::account_store_conformance!(harness);
//! }
//! ```
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use umanage_core::UserId;
use umanage_core::testkit::{Harness, TimeControl};

use crate::{Account, AccountCursor, AccountError, AccountStatus, AccountStore, NewAccount, Role};

/// What every case receives.
pub type AccountHarness = Harness<dyn AccountStore>;

/// A harness over a [`MemoryAccountStore`](crate::MemoryAccountStore) on a fresh
/// [`ManualClock`](umanage_core::ManualClock).
#[cfg(feature = "memory")]
pub fn memory_harness() -> AccountHarness {
    let clock = umanage_core::ManualClock::default();
    let store = crate::MemoryAccountStore::with_clock(clock.shared());
    Harness::new(Arc::new(store), TimeControl::Manual(clock))
}

/// Stamps out every case for `$setup`, an `async fn() -> Option<AccountHarness>`.
#[macro_export]
macro_rules! account_store_conformance {
    ($setup:path) => {
        $crate::__private::umanage_core::conformance_tests!(
            $setup;
            $crate::testing;
            create_then_get_round_trips,
            usernames_are_unique_case_insensitively,
            emails_are_unique_case_insensitively,
            email_local_part_case_is_preserved,
            login_by_username_or_email,
            optimistic_concurrency,
            unknown_ids_are_not_found,
            status_round_trips,
            update_email_moves_the_unique_key,
            display_name_updates,
            delete_frees_username_and_email,
            updates_advance_updated_at,
            concurrent_creates_have_one_winner,
            pagination_covers_everything_once,
            count_with_role_counts,
            hostile_input_gets_typed_errors,
            create_with_compensates_a_failed_follow_up,
        );
    };
}

fn role(name: &str) -> Role {
    Role::new(name).unwrap()
}

/// A time with microsecond precision (what Postgres keeps).
fn instant(unix: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(unix, 123_456_000).unwrap()
}

async fn create(h: &AccountHarness, username: &str, email: &str) -> Account {
    h.store
        .create(NewAccount::new(username, email))
        .await
        .unwrap()
}

/// `create` normalises and returns the stored account; `get` returns the same one.
pub async fn create_then_get_round_trips(h: &AccountHarness) {
    let new = NewAccount::new("  Alice ", " Alice@Example.COM ")
        .display_name(" Alice Liddell ")
        .role(role("admin"))
        .role(role("support"));
    let created = h.store.create(new).await.unwrap();
    assert_eq!(created.username.as_str(), "alice");
    assert_eq!(created.email.as_str(), "Alice@example.com");
    assert_eq!(created.display_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(
        created.roles,
        BTreeSet::from([role("admin"), role("support")])
    );
    assert_eq!(created.status, AccountStatus::Active);
    assert_eq!(created.version, 1);
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(
        h.store.get(created.id).await.unwrap(),
        Some(created.clone())
    );

    let plain = create(h, "bob", "bob@example.com").await;
    assert_ne!(plain.id, created.id);
    assert_eq!(plain.display_name, None);
    assert!(plain.roles.is_empty());
    assert_eq!(h.store.get(plain.id).await.unwrap(), Some(plain));
    assert_eq!(h.store.get(UserId::new()).await.unwrap(), None);
}

/// `Alice`, `alice`, ` ALICE ` and full-width `Ａｌｉｃｅ` are one username.
pub async fn usernames_are_unique_case_insensitively(h: &AccountHarness) {
    create(h, "Alice", "alice@example.com").await;
    for (i, again) in ["alice", " ALICE ", "Ａｌｉｃｅ", "aLiCe"]
        .iter()
        .enumerate()
    {
        let err = h
            .store
            .create(NewAccount::new(*again, format!("other{i}@example.com")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountError::UsernameTaken),
            "{again:?}: {err:?}"
        );
    }
    create(h, "alice2", "other@example.com").await;
}

/// `Bob@Example.COM` and `bob@example.com` are one address for uniqueness.
pub async fn emails_are_unique_case_insensitively(h: &AccountHarness) {
    create(h, "bob", "Bob@Example.COM").await;
    for (i, again) in ["bob@example.com", " BOB@EXAMPLE.COM", "bOb@eXample.com"]
        .iter()
        .enumerate()
    {
        let err = h
            .store
            .create(NewAccount::new(format!("bob{i}"), *again))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountError::EmailTaken),
            "{again:?}: {err:?}"
        );
    }
    create(h, "bobby", "bob@example.org").await;
}

/// The local part comes back as typed, whatever case the lookup used.
pub async fn email_local_part_case_is_preserved(h: &AccountHarness) {
    let created = create(h, "carol", "Carol.Smith+News@EXAMPLE.com").await;
    assert_eq!(created.email.as_str(), "Carol.Smith+News@example.com");
    assert_eq!(created.email.local_part(), "Carol.Smith+News");
    let read = h.store.get(created.id).await.unwrap().unwrap();
    assert_eq!(read.email.as_str(), "Carol.Smith+News@example.com");
    let found = h
        .store
        .find_by_email("carol.smith+news@example.COM")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, created.id);
    assert_eq!(found.email.as_str(), "Carol.Smith+News@example.com");
    assert_eq!(found.email.key(), "carol.smith+news@example.com");
}

/// `find_by_login` takes a username or an email, normalised like `create` does.
pub async fn login_by_username_or_email(h: &AccountHarness) {
    let dave = create(h, "Dave", "Dave@Example.com").await;
    create(h, "erin", "erin@example.com").await;
    for login in [
        "dave",
        " DAVE ",
        "Ｄａｖｅ",
        "dave@example.com",
        "DAVE@EXAMPLE.COM ",
    ] {
        let found = h.store.find_by_login(login).await.unwrap();
        assert_eq!(found.map(|a| a.id), Some(dave.id), "{login:?}");
    }
    assert_eq!(
        h.store
            .find_by_username("DAVE")
            .await
            .unwrap()
            .map(|a| a.id),
        Some(dave.id)
    );
    assert_eq!(
        h.store
            .find_by_email("dave@EXAMPLE.com")
            .await
            .unwrap()
            .map(|a| a.id),
        Some(dave.id)
    );
    // A username is not an email and the other way round.
    assert_eq!(h.store.find_by_email("dave").await.unwrap(), None);
    assert_eq!(
        h.store.find_by_username("dave@example.com").await.unwrap(),
        None
    );
    for unknown in ["mallory", "mallory@example.com", "", "a b", "@", "x@y"] {
        assert_eq!(
            h.store.find_by_login(unknown).await.unwrap(),
            None,
            "{unknown:?}"
        );
    }
}

/// A change based on a stale version fails with `VersionConflict` and changes nothing.
pub async fn optimistic_concurrency(h: &AccountHarness) {
    let a = create(h, "frank", "frank@example.com").await;
    let locked = AccountStatus::locked(None, "suspicious activity");
    let v2 = h
        .store
        .update_status(a.id, locked.clone(), 1)
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.status, locked);

    let err = h
        .store
        .update_status(a.id, AccountStatus::Disabled, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AccountError::VersionConflict { id, expected: 1, actual: 2 } if id == a.id),
        "{err:?}"
    );
    let err = h
        .store
        .set_roles(a.id, BTreeSet::from([role("admin")]), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AccountError::VersionConflict { .. }),
        "{err:?}"
    );
    let err = h
        .store
        .update_email(a.id, "frank@example.org", 3)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AccountError::VersionConflict {
                expected: 3,
                actual: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let err = h
        .store
        .update_status(a.id, AccountStatus::Active, u64::MAX)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AccountError::VersionConflict { actual: 2, .. }),
        "{err:?}"
    );
    assert_eq!(h.store.get(a.id).await.unwrap(), Some(v2.clone()));

    let v3 = h
        .store
        .set_roles(a.id, BTreeSet::from([role("admin")]), 2)
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
    assert_eq!(v3.status, locked, "set_roles touched the status");
    let v4 = h
        .store
        .update_email(a.id, "Frank@example.org", 3)
        .await
        .unwrap();
    assert_eq!(v4.version, 4);
    assert_eq!(v4.roles, BTreeSet::from([role("admin")]));
    assert_eq!(h.store.get(a.id).await.unwrap(), Some(v4));

    // Two writers racing on one version: exactly one wins.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&h.store);
            let id = a.id;
            tokio::spawn(async move {
                store
                    .set_roles(id, BTreeSet::from([role(&format!("r{i}"))]), 4)
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(acc) => {
                wins += 1;
                assert_eq!(acc.version, 5);
            }
            Err(AccountError::VersionConflict { actual: 5, .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(wins, 1);
}

/// Changes of an id that does not exist are `NotFound`; deleting it reports `false`.
pub async fn unknown_ids_are_not_found(h: &AccountHarness) {
    let ghost = UserId::new();
    let err = h
        .store
        .update_status(ghost, AccountStatus::Disabled, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AccountError::NotFound { id } if id == ghost),
        "{err:?}"
    );
    let err = h
        .store
        .set_roles(ghost, BTreeSet::new(), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::NotFound { .. }), "{err:?}");
    let err = h
        .store
        .update_email(ghost, "ghost@example.com", 1)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::NotFound { .. }), "{err:?}");
    assert!(!h.store.delete(ghost).await.unwrap());
}

/// Every status (with a lock's deadline and reason) is stored and read back exactly.
pub async fn status_round_trips(h: &AccountHarness) {
    let a = h
        .store
        .create(
            NewAccount::new("grace", "grace@example.com").status(AccountStatus::locked(
                Some(instant(1_900_000_000)),
                "  pending review ",
            )),
        )
        .await
        .unwrap();
    let expected = AccountStatus::locked(Some(instant(1_900_000_000)), "pending review");
    assert_eq!(a.status, expected);
    assert_eq!(h.store.get(a.id).await.unwrap().unwrap().status, expected);

    let mut version = a.version;
    for status in [
        AccountStatus::Disabled,
        AccountStatus::locked(None, "brute force"),
        AccountStatus::locked(Some(instant(1_800_000_000)), "cool-down"),
        AccountStatus::Active,
    ] {
        let updated = h
            .store
            .update_status(a.id, status.clone(), version)
            .await
            .unwrap();
        version = updated.version;
        assert_eq!(updated.status, status);
        assert_eq!(h.store.get(a.id).await.unwrap().unwrap().status, status);
    }
    let err = h
        .store
        .update_status(a.id, AccountStatus::locked(None, "bad\0reason"), version)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AccountError::InvalidLockReason { .. }),
        "{err:?}"
    );
    assert_eq!(h.store.get(a.id).await.unwrap().unwrap().version, version);
}

/// `update_email` is checked against other accounts' keys, allows a case change of one's
/// own address, and frees the old address.
pub async fn update_email_moves_the_unique_key(h: &AccountHarness) {
    let a = create(h, "heidi", "heidi@example.com").await;
    let b = create(h, "ivan", "ivan@example.com").await;
    let err = h
        .store
        .update_email(a.id, "IVAN@example.com", 1)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::EmailTaken), "{err:?}");
    let err = h
        .store
        .update_email(a.id, "not-an-email", 1)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::InvalidEmail { .. }), "{err:?}");
    assert_eq!(h.store.get(a.id).await.unwrap(), Some(a.clone()));

    let a2 = h
        .store
        .update_email(a.id, "Heidi@Example.com", 1)
        .await
        .unwrap();
    assert_eq!(a2.email.as_str(), "Heidi@example.com");
    let a3 = h
        .store
        .update_email(a.id, "heidi@example.org", 2)
        .await
        .unwrap();
    assert_eq!(
        h.store.find_by_email("heidi@example.com").await.unwrap(),
        None
    );
    assert_eq!(
        h.store
            .find_by_email("HEIDI@example.org")
            .await
            .unwrap()
            .map(|x| x.id),
        Some(a3.id)
    );
    // The freed address can be taken by someone else.
    create(h, "judy", "heidi@example.com").await;
    assert_eq!(h.store.get(b.id).await.unwrap(), Some(b));
}

/// `update_display_name` sets, trims, clears and validates, with the version check.
pub async fn display_name_updates(h: &AccountHarness) {
    let a = create(h, "mia", "mia@example.com").await;
    let b = h
        .store
        .update_display_name(a.id, Some("  Mia Wong "), 1)
        .await
        .unwrap();
    assert_eq!(b.display_name.as_deref(), Some("Mia Wong"));
    assert_eq!(b.version, 2);
    for bad in ["", "x\0y", "\u{202E}gnow"] {
        let err = h
            .store
            .update_display_name(a.id, Some(bad), 2)
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountError::InvalidDisplayName { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let err = h
        .store
        .update_display_name(a.id, None, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AccountError::VersionConflict { actual: 2, .. }),
        "{err:?}"
    );
    let err = h
        .store
        .update_display_name(UserId::new(), None, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::NotFound { .. }), "{err:?}");
    let c = h.store.update_display_name(a.id, None, 2).await.unwrap();
    assert_eq!(c.display_name, None);
    assert_eq!(h.store.get(a.id).await.unwrap(), Some(c));
}

/// Deleting removes the account and frees both unique keys.
pub async fn delete_frees_username_and_email(h: &AccountHarness) {
    let a = create(h, "kim", "kim@example.com").await;
    assert!(h.store.delete(a.id).await.unwrap());
    assert_eq!(h.store.get(a.id).await.unwrap(), None);
    assert_eq!(h.store.find_by_login("kim").await.unwrap(), None);
    assert!(!h.store.delete(a.id).await.unwrap());
    let again = create(h, "KIM", "Kim@Example.com").await;
    assert_ne!(again.id, a.id);
}

/// `updated_at` moves with each change; `created_at` stays.
pub async fn updates_advance_updated_at(h: &AccountHarness) {
    let a = create(h, "leo", "leo@example.com").await;
    h.time.advance(Duration::from_millis(50)).await;
    let b = h
        .store
        .set_roles(a.id, BTreeSet::from([role("staff")]), 1)
        .await
        .unwrap();
    assert_eq!(b.created_at, a.created_at);
    assert!(b.updated_at > a.updated_at, "{b:?} vs {a:?}");
    h.time.advance(Duration::from_millis(50)).await;
    let c = h
        .store
        .update_status(a.id, AccountStatus::Disabled, 2)
        .await
        .unwrap();
    assert!(c.updated_at > b.updated_at);
    assert_eq!(c.created_at, a.created_at);
}

/// 20 concurrent creates of one username (and then of one email in different cases):
/// exactly one winner each time, the others get the typed conflict.
pub async fn concurrent_creates_have_one_winner(h: &AccountHarness) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&h.store);
            let name = if i % 2 == 0 { "Racer" } else { "racer" };
            tokio::spawn(async move {
                store
                    .create(NewAccount::new(name, format!("racer{i}@example.com")))
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(a) => winners.push(a),
            Err(AccountError::UsernameTaken) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let found = h.store.find_by_username("racer").await.unwrap().unwrap();
    assert_eq!(found.id, winners[0].id);

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&h.store);
            let email = if i % 2 == 0 {
                "Same@Example.com"
            } else {
                "same@example.COM"
            };
            tokio::spawn(async move {
                store
                    .create(NewAccount::new(format!("same{i}"), email))
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(AccountError::EmailTaken) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(wins, 1);
    let page = h.store.list(None, 100).await.unwrap();
    assert_eq!(page.accounts.len(), 2);
}

/// Following `next_cursor` visits every account exactly once, in id order; limits are
/// clamped to `1..=MAX_PAGE_SIZE`; the cursor's text form round-trips.
pub async fn pagination_covers_everything_once(h: &AccountHarness) {
    let empty = h.store.list(None, 10).await.unwrap();
    assert!(empty.accounts.is_empty());
    assert_eq!(empty.next_cursor, None);

    let mut expected = HashSet::new();
    for i in 0..23 {
        expected.insert(
            create(h, &format!("user{i:02}"), &format!("u{i}@example.com"))
                .await
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = h.store.list(cursor, 5).await.unwrap();
        pages += 1;
        assert!(page.accounts.len() <= 5);
        seen.extend(page.accounts.iter().map(|a| a.id));
        match page.next_cursor {
            Some(next) => {
                assert_eq!(page.accounts.len(), 5);
                // Through the text form, as an HTTP client would pass it.
                cursor = Some(next.to_string().parse::<AccountCursor>().unwrap());
            }
            None => break,
        }
        assert!(pages <= 10, "pagination does not end");
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 23);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "not in id order");
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), expected);

    // Exactly a full last page: no cursor pointing at an empty page.
    let all = h.store.list(None, 23).await.unwrap();
    assert_eq!(all.accounts.len(), 23);
    assert_eq!(all.next_cursor, None);
    let one = h.store.list(None, 0).await.unwrap();
    assert_eq!(one.accounts.len(), 1, "limit 0 is clamped to 1");
    assert!(one.next_cursor.is_some());
    let huge = h.store.list(None, usize::MAX).await.unwrap();
    assert_eq!(huge.accounts.len(), 23);
    let after_last = h
        .store
        .list(Some(AccountCursor::after(*seen.last().unwrap())), 5)
        .await
        .unwrap();
    assert!(after_last.accounts.is_empty());
}

/// `count_with_role` follows creates, role changes and deletes.
pub async fn count_with_role_counts(h: &AccountHarness) {
    let admin = Role::admin();
    assert_eq!(h.store.count_with_role(&admin).await.unwrap(), 0);
    let a = h
        .store
        .create(NewAccount::new("root", "root@example.com").role(admin.clone()))
        .await
        .unwrap();
    h.store
        .create(
            NewAccount::new("ops", "ops@example.com")
                .role(admin.clone())
                .role(role("ops")),
        )
        .await
        .unwrap();
    create(h, "user", "user@example.com").await;
    assert_eq!(h.store.count_with_role(&admin).await.unwrap(), 2);
    assert_eq!(h.store.count_with_role(&role("ops")).await.unwrap(), 1);
    assert_eq!(h.store.count_with_role(&role("adm")).await.unwrap(), 0);
    h.store
        .set_roles(a.id, BTreeSet::from([role("auditor")]), 1)
        .await
        .unwrap();
    assert_eq!(h.store.count_with_role(&admin).await.unwrap(), 1);
    let ops = h.store.find_by_username("ops").await.unwrap().unwrap();
    assert!(h.store.delete(ops.id).await.unwrap());
    assert_eq!(h.store.count_with_role(&admin).await.unwrap(), 0);
}

/// Empty, huge, NUL, bidi, emoji and SQL-looking input: typed errors (or `None` for
/// lookups), nothing stored, never a panic or a raw backend error; valid unusual input
/// round-trips unchanged.
pub async fn hostile_input_gets_typed_errors(h: &AccountHarness) {
    let mib = "a".repeat(1 << 20);
    let bad_usernames = [
        "",
        "   ",
        mib.as_str(),
        "nul\0name",
        "\u{202E}evil",
        "zero\u{200B}width",
        "emoji😀",
        "'; DROP TABLE umanage_accounts; --",
        "robert'); DELETE FROM umanage_accounts;",
        "a%_",
        "ab",
        "\u{0430}dmin",
    ];
    for (i, name) in bad_usernames.iter().enumerate() {
        let err = h
            .store
            .create(NewAccount::new(*name, format!("ok{i}@example.com")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountError::InvalidUsername { .. }),
            "{name:?}: {err:?}"
        );
        assert_eq!(h.store.find_by_login(name).await.unwrap(), None);
        assert_eq!(h.store.find_by_username(name).await.unwrap(), None);
    }
    let mib_email = format!("{mib}@example.com");
    let bad_emails = [
        "",
        mib_email.as_str(),
        "nul\0@example.com",
        "x@exam\0ple.com",
        "'; DROP TABLE umanage_accounts; --@example.com",
        "x@example.com'; --",
        "\u{202E}moc.elpmaxe@x",
        "😀@😀.com",
        "a@b",
    ];
    for (i, email) in bad_emails.iter().enumerate() {
        let err = h
            .store
            .create(NewAccount::new(format!("okname{i}"), *email))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountError::InvalidEmail { .. }),
            "{email:?}: {err:?}"
        );
        assert_eq!(h.store.find_by_login(email).await.unwrap(), None);
        assert_eq!(h.store.find_by_email(email).await.unwrap(), None);
    }
    for name in ["", "nul\0", "\u{202E}x", mib.as_str()] {
        let err = h
            .store
            .create(NewAccount::new("okname", "ok@example.com").display_name(name))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountError::InvalidDisplayName { .. }),
            "{err:?}"
        );
    }
    let err = h
        .store
        .create(
            NewAccount::new("okname", "ok@example.com")
                .status(AccountStatus::locked(None, mib.as_str())),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AccountError::InvalidLockReason { .. }),
        "{err:?}"
    );
    assert!(
        h.store.list(None, 10).await.unwrap().accounts.is_empty(),
        "invalid input stored"
    );

    // Unusual but valid: right-to-left and CJK letters, SQL metacharacters that are legal
    // in a local part, a name of 64 characters.
    let long = "b".repeat(64);
    for (name, email, display) in [
        ("שלום123", "O'Brien--x@example.com", "مرحبا 👋"),
        ("山田太郎", "user%test@例え.jp", "'); DROP TABLE x; --"),
        (
            long.as_str(),
            "a+b=c{d}@sub.example.com",
            "Zoë \"Z\" O'Neil",
        ),
    ] {
        let a = h
            .store
            .create(NewAccount::new(name, email).display_name(display))
            .await
            .unwrap();
        let read = h.store.get(a.id).await.unwrap().unwrap();
        assert_eq!(read, a);
        assert_eq!(read.username.as_str(), name);
        assert_eq!(read.email.as_str(), email);
        assert_eq!(read.display_name.as_deref(), Some(display));
        assert_eq!(
            h.store.find_by_login(email).await.unwrap().map(|x| x.id),
            Some(a.id)
        );
        assert_eq!(
            h.store.find_by_login(name).await.unwrap().map(|x| x.id),
            Some(a.id)
        );
    }
}

/// [`create_with`](crate::create_with): a failed follow-up removes the account again (the
/// names are free, nothing is found), a successful one returns both results.
pub async fn create_with_compensates_a_failed_follow_up(h: &AccountHarness) {
    use crate::{CreateWithError, create_with};
    let store: &dyn crate::AccountStore = &*h.store;
    let mut seen = None;
    let failed = create_with(store, NewAccount::new("rollback", "rb@example.com"), |a| {
        seen = Some(a.id);
        async { Err::<(), _>("follow-up failed") }
    })
    .await;
    assert!(
        matches!(failed, Err(CreateWithError::FollowUp("follow-up failed"))),
        "{failed:?}"
    );
    let id = seen.unwrap();
    assert_eq!(h.store.get(id).await.unwrap(), None);
    assert_eq!(h.store.find_by_login("rollback").await.unwrap(), None);
    assert_eq!(h.store.find_by_login("rb@example.com").await.unwrap(), None);
    let (account, value) = create_with(
        store,
        NewAccount::new("ROLLBACK", "RB@example.com"),
        |a| async move { Ok::<_, ()>(a.id) },
    )
    .await
    .unwrap();
    assert_eq!(value, account.id);
    assert_ne!(account.id, id);
    assert_eq!(h.store.get(account.id).await.unwrap(), Some(account));
    // The account error is passed through untouched (a follow-up that ran would turn it into
    // `FollowUp`).
    let taken = create_with(
        store,
        NewAccount::new("rollback", "other@example.com"),
        |_| async { Err::<(), ()>(()) },
    )
    .await;
    assert!(
        matches!(
            taken,
            Err(CreateWithError::<()>::Account(
                crate::AccountError::UsernameTaken
            ))
        ),
        "{taken:?}"
    );
}
