//! The bounded hashing pool: results, the busy path, cancellation keeps the bound.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::mpsc;
use std::time::Duration;

use umanage_password::hash::{HasherConfig, PasswordHasher, VerifyOutcome};
use umanage_password::pool::{HashingPool, PoolConfig};
use umanage_password::{NormalizedPassword, PasswordError};

fn pool(concurrency: usize, timeout: Duration) -> HashingPool {
    let cheap = HasherConfig::builder()
        .m_cost_kib(64)
        .t_cost(1)
        .p_cost(1)
        .build()
        .unwrap();
    HashingPool::new(
        PasswordHasher::new(cheap),
        PoolConfig::new(concurrency, timeout).unwrap(),
    )
}

fn pw(s: &str) -> NormalizedPassword {
    NormalizedPassword::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_and_verifies_off_the_runtime() {
    let p = pool(2, Duration::from_secs(5));
    let stored = p.hash(pw("pool password")).await.unwrap();
    assert!(p.verify(pw("pool password"), stored.clone()).await.unwrap());
    assert!(!p.verify(pw("other"), stored.clone()).await.unwrap());
    assert_eq!(
        p.verify_and_upgrade(pw("pool password"), stored)
            .await
            .unwrap(),
        VerifyOutcome::Match
    );
    // errors of the work come back typed
    let err = p
        .verify(pw("x"), umanage_password::HashedPassword::new("$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PasswordError::HashParamOutOfRange { param: "m", .. }),
        "{err:?}"
    );
    assert_eq!(p.available(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pool_answers_busy_after_the_queue_timeout() {
    let p = pool(1, Duration::from_millis(50));
    let (release, wait) = mpsc::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let holder = {
        let p = p.clone();
        tokio::spawn(async move {
            p.run(move |_| {
                started_tx.send(()).unwrap();
                wait.recv().unwrap();
                Ok(7_u32)
            })
            .await
        })
    };
    started.await.unwrap();
    assert_eq!(p.available(), 0);

    let err = p.hash(pw("queued")).await.unwrap_err();
    assert!(
        matches!(err, PasswordError::Busy { waited } if waited == Duration::from_millis(50)),
        "{err:?}"
    );

    release.send(()).unwrap();
    assert_eq!(holder.await.unwrap().unwrap(), 7);
    // the slot is free again
    assert!(p.hash(pw("queued")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_caller_keeps_its_slot_until_the_work_ends() {
    let p = pool(1, Duration::from_millis(50));
    let (release, wait) = mpsc::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let caller = {
        let p = p.clone();
        tokio::spawn(async move {
            p.run(move |_| {
                started_tx.send(()).unwrap();
                wait.recv().unwrap();
                Ok(())
            })
            .await
        })
    };
    started.await.unwrap();
    caller.abort();
    let _ = caller.await;
    // the blocking work still runs, so the bound still holds
    assert!(matches!(
        p.hash(pw("x")).await,
        Err(PasswordError::Busy { .. })
    ));
    release.send(()).unwrap();
    // once it ends the slot comes back (wait for it without a timing assert)
    loop {
        if p.available() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(p.hash(pw("x")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_work_is_a_typed_error_and_frees_the_slot() {
    let p = pool(1, Duration::from_secs(5));
    let err = p
        .run(|_| -> Result<(), PasswordError> { panic!("boom") })
        .await
        .unwrap_err();
    assert!(
        matches!(err, PasswordError::HashingFailed { .. }),
        "{err:?}"
    );
    assert_eq!(p.available(), 1);
}

#[test]
fn config_is_validated() {
    assert!(PoolConfig::new(0, Duration::from_secs(1)).is_err());
    assert!(PoolConfig::new(1, Duration::ZERO).is_err());
    assert!(PoolConfig::new(PoolConfig::MAX_CONCURRENT + 1, Duration::from_secs(1)).is_err());
    assert!(PoolConfig::new(1, Duration::from_secs(301)).is_err());
    assert!(serde_json::from_str::<PoolConfig>(r#"{"max_concurrent": 0}"#).is_err());
    assert!(serde_json::from_str::<PoolConfig>(r#"{"threads": 2}"#).is_err());
    let c: PoolConfig = serde_json::from_str(r#"{"queue_timeout": "250ms"}"#).unwrap();
    assert_eq!(c.queue_timeout(), Duration::from_millis(250));
    assert!(c.max_concurrent() >= 1);
}
