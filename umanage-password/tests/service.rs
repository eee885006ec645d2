//! PasswordService: policy, history, minimum age, expiry, rehash on login, races.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::Arc;
use std::time::Duration;

use umanage_core::{Clock, ManualClock, UserId};
use umanage_password::hash::{HasherConfig, PasswordHasher};
use umanage_password::policy::{PasswordPolicy, UserInfo, ViolationCode};
use umanage_password::pool::{HashingPool, PoolConfig};
use umanage_password::service::{ChangeOutcome, ExpiryStatus, LoginOutcome, PasswordService};
use umanage_password::store::{CredentialStore, MemoryCredentialStore};
use umanage_password::{HashedPassword, NormalizedPassword, PepperSet};

const DAY: Duration = Duration::from_secs(86_400);

fn pw(s: &str) -> NormalizedPassword {
    NormalizedPassword::new(s).unwrap()
}

fn cheap(m: u32) -> HasherConfig {
    HasherConfig::builder()
        .m_cost_kib(m)
        .t_cost(1)
        .p_cost(1)
        .build()
        .unwrap()
}

fn policy() -> PasswordPolicy {
    PasswordPolicy::builder()
        .min_length(10)
        .history_count(3)
        .min_age_days(Some(1))
        .expiry_days(Some(90))
        .build()
        .unwrap()
}

struct Fixture {
    service: PasswordService,
    store: Arc<dyn CredentialStore>,
    clock: ManualClock,
}

fn fixture_with(policy: PasswordPolicy, hasher: PasswordHasher) -> Fixture {
    let clock = ManualClock::default();
    let store: Arc<dyn CredentialStore> = Arc::new(MemoryCredentialStore::new());
    let pool = HashingPool::new(hasher, PoolConfig::new(2, Duration::from_secs(10)).unwrap());
    let service = PasswordService::new(policy, pool, Arc::clone(&store), clock.shared());
    Fixture {
        service,
        store,
        clock,
    }
}

fn fixture() -> Fixture {
    fixture_with(policy(), PasswordHasher::new(cheap(64)))
}

fn info() -> UserInfo {
    UserInfo::new()
        .with_username("marguerite")
        .with_email("marguerite@example.org")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_then_login() {
    let f = fixture();
    let u = UserId::new();
    let out = f
        .service
        .set_password(&u, &info(), &pw("tangerine orbit lantern"))
        .await
        .unwrap();
    assert!(
        matches!(out, ChangeOutcome::Changed { version: 1, .. }),
        "{out:?}"
    );
    let ok = f
        .service
        .verify_login(&u, &pw("tangerine orbit lantern"))
        .await
        .unwrap();
    assert!(
        matches!(
            ok,
            LoginOutcome::Success {
                rehashed: false,
                expiry: ExpiryStatus::Valid { .. }
            }
        ),
        "{ok:?}"
    );
    assert_eq!(
        f.service
            .verify_login(&u, &pw("tangerine orbit lanterN"))
            .await
            .unwrap(),
        LoginOutcome::Failure
    );
    // unknown users fail the same way
    assert_eq!(
        f.service
            .verify_login(&UserId::new(), &pw("tangerine orbit lantern"))
            .await
            .unwrap(),
        LoginOutcome::Failure
    );
    // the stored hash is of the normalised password
    let c = f.store.get(&u).await.unwrap().unwrap();
    assert!(c.hash.as_str().starts_with("$argon2id$"));
    assert_eq!(c.changed_at, f.clock.now());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_violations_are_data() {
    let f = fixture();
    let u = UserId::new();
    let out = f
        .service
        .set_password(&u, &info(), &pw("short"))
        .await
        .unwrap();
    let ChangeOutcome::PolicyViolation(report) = out else {
        panic!("{out:?}")
    };
    assert!(report.has(ViolationCode::TooShort), "{:?}", report.codes());
    assert!(f.store.get(&u).await.unwrap().is_none());
    let out = f
        .service
        .set_password(&u, &info(), &pw("marguerite2024!"))
        .await
        .unwrap();
    assert!(matches!(out, ChangeOutcome::PolicyViolation(_)), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_checks_current_password_min_age_and_history() {
    let f = fixture();
    let u = UserId::new();
    let p = [
        "tangerine orbit lantern",
        "copper meadow violin",
        "saffron glacier tunnel",
        "velvet harbor compass",
    ];
    assert!(
        f.service
            .set_password(&u, &info(), &pw(p[0]))
            .await
            .unwrap()
            .is_changed()
    );

    // wrong current password
    let out = f
        .service
        .change_password(&u, &info(), &pw("nope nope nope"), &pw(p[1]))
        .await
        .unwrap();
    assert_eq!(out, ChangeOutcome::WrongCurrentPassword);

    // minimum age: one day
    let out = f
        .service
        .change_password(&u, &info(), &pw(p[0]), &pw(p[1]))
        .await
        .unwrap();
    let ChangeOutcome::TooSoon { allowed_at } = out else {
        panic!("{out:?}")
    };
    assert_eq!(allowed_at, f.clock.now() + chrono::TimeDelta::days(1));
    f.clock.advance(DAY);
    let out = f
        .service
        .change_password(&u, &info(), &pw(p[0]), &pw(p[1]))
        .await
        .unwrap();
    assert!(
        matches!(out, ChangeOutcome::Changed { version: 2, .. }),
        "{out:?}"
    );

    // history 3: the current and the two before it are refused
    f.clock.advance(DAY);
    for reused in [p[1], p[0]] {
        let out = f
            .service
            .change_password(&u, &info(), &pw(p[1]), &pw(reused))
            .await
            .unwrap();
        assert_eq!(out, ChangeOutcome::ReusedPassword, "{reused}");
    }
    assert!(
        f.service
            .change_password(&u, &info(), &pw(p[1]), &pw(p[2]))
            .await
            .unwrap()
            .is_changed()
    );
    f.clock.advance(DAY);
    assert!(
        f.service
            .change_password(&u, &info(), &pw(p[2]), &pw(p[3]))
            .await
            .unwrap()
            .is_changed()
    );
    f.clock.advance(DAY);
    // p[0] is now the 4th most recent: allowed again; p[1] (3rd) is not
    let out = f
        .service
        .change_password(&u, &info(), &pw(p[3]), &pw(p[1]))
        .await
        .unwrap();
    assert_eq!(out, ChangeOutcome::ReusedPassword);
    assert!(
        f.service
            .change_password(&u, &info(), &pw(p[3]), &pw(p[0]))
            .await
            .unwrap()
            .is_changed()
    );
    let c = f.store.get(&u).await.unwrap().unwrap();
    assert_eq!(
        c.history.len(),
        2,
        "history keeps history_count - 1 entries"
    );

    // set_password (reset) skips the minimum age but still checks history
    let out = f
        .service
        .set_password(&u, &info(), &pw(p[3]))
        .await
        .unwrap();
    assert_eq!(out, ChangeOutcome::ReusedPassword);
    assert!(
        f.service
            .set_password(&u, &info(), &pw("juniper beacon quartz"))
            .await
            .unwrap()
            .is_changed()
    );
    // a change for a user without a password
    let out = f
        .service
        .change_password(&UserId::new(), &info(), &pw(p[0]), &pw(p[1]))
        .await
        .unwrap();
    assert_eq!(out, ChangeOutcome::NoCredential);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_follows_the_clock() {
    let f = fixture();
    let u = UserId::new();
    assert_eq!(f.service.expiry_status(&u).await.unwrap(), None);
    let _ = f
        .service
        .set_password(&u, &info(), &pw("tangerine orbit lantern"))
        .await
        .unwrap();
    let expires = f.clock.now() + chrono::TimeDelta::days(90);
    assert_eq!(
        f.service.expiry_status(&u).await.unwrap(),
        Some(ExpiryStatus::Valid {
            expires_at: expires
        })
    );
    f.clock.advance(DAY * 90);
    assert_eq!(
        f.service.expiry_status(&u).await.unwrap(),
        Some(ExpiryStatus::Expired {
            expired_at: expires
        })
    );
    // an expired password still logs in, and says so
    let out = f
        .service
        .verify_login(&u, &pw("tangerine orbit lantern"))
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            LoginOutcome::Success {
                expiry: ExpiryStatus::Expired { .. },
                ..
            }
        ),
        "{out:?}"
    );

    let never = fixture_with(
        PasswordPolicy::builder().min_length(10).build().unwrap(),
        PasswordHasher::new(cheap(64)),
    );
    let _ = never
        .service
        .set_password(&u, &info(), &pw("tangerine orbit lantern"))
        .await
        .unwrap();
    assert_eq!(
        never.service.expiry_status(&u).await.unwrap(),
        Some(ExpiryStatus::NeverExpires)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_upgrades_obsolete_hashes_and_history_still_matches() {
    let old = fixture_with(policy(), PasswordHasher::new(cheap(64)));
    let u = UserId::new();
    let _ = old
        .service
        .set_password(&u, &info(), &pw("tangerine orbit lantern"))
        .await
        .unwrap();
    // the same store under a stronger, peppered configuration
    let peppered =
        PasswordHasher::new(cheap(128)).with_peppers(PepperSet::new("k1", vec![5u8; 32]).unwrap());
    let pool = HashingPool::new(peppered, PoolConfig::default());
    let clock = ManualClock::default();
    let service = PasswordService::new(policy(), pool, Arc::clone(&old.store), clock.shared());
    let out = service
        .verify_login(&u, &pw("tangerine orbit lantern"))
        .await
        .unwrap();
    assert!(
        matches!(out, LoginOutcome::Success { rehashed: true, .. }),
        "{out:?}"
    );
    let c = old.store.get(&u).await.unwrap().unwrap();
    assert!(
        c.hash.as_str().contains("m=128") && c.hash.as_str().contains("pepper=k1"),
        "{:?}",
        c.hash
    );
    assert_eq!(c.version, 2);
    let again = service
        .verify_login(&u, &pw("tangerine orbit lantern"))
        .await
        .unwrap();
    assert!(matches!(
        again,
        LoginOutcome::Success {
            rehashed: false,
            ..
        }
    ));

    // a migrated bcrypt hash (crypt_blowfish test vector, password "U*U") as history entry
    let v = c.version;
    let bcrypt =
        HashedPassword::new("$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW");
    assert!(old.store.upgrade_hash(&u, v, bcrypt).await.unwrap());
    let out = service.verify_login(&u, &pw("U*U")).await.unwrap();
    assert!(
        matches!(out, LoginOutcome::Success { rehashed: true, .. }),
        "{out:?}"
    );
    assert!(
        old.store
            .get(&u)
            .await
            .unwrap()
            .unwrap()
            .hash
            .as_str()
            .starts_with("$argon2id$")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_changes_have_one_winner() {
    let f = fixture_with(
        PasswordPolicy::builder()
            .min_length(10)
            .history_count(3)
            .build()
            .unwrap(),
        PasswordHasher::new(cheap(64)),
    );
    let u = UserId::new();
    let _ = f
        .service
        .set_password(&u, &info(), &pw("tangerine orbit lantern"))
        .await
        .unwrap();
    let candidates = [
        "copper meadow violin",
        "saffron glacier tunnel",
        "velvet harbor compass",
        "juniper beacon quartz",
    ];
    let tasks: Vec<_> = candidates
        .iter()
        .map(|c| {
            let s = f.service.clone();
            let c = (*c).to_owned();
            tokio::spawn(async move {
                s.change_password(&u, &info(), &pw("tangerine orbit lantern"), &pw(&c))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut changed = 0;
    for t in tasks {
        match t.await.unwrap() {
            ChangeOutcome::Changed { .. } => changed += 1,
            // a loser either lost the store race or read after the winner and then failed
            // to verify the (now old) current password
            ChangeOutcome::Conflict | ChangeOutcome::WrongCurrentPassword => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(changed, 1);
    assert_eq!(f.store.get(&u).await.unwrap().unwrap().version, 2);
}
