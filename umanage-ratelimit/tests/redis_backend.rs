//! Redis-specific behaviour: several instances agree, keys carry TTLs (repaired if lost),
//! keys are cluster-safe.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::Arc;
use std::time::Duration;

use umanage_core::testkit;
use umanage_ratelimit::{Check, RateLimitStore, RedisRateLimiter, Strategy, StrategyKind};

fn strategies() -> Vec<Strategy> {
    let hour = Duration::from_secs(3600);
    StrategyKind::ALL
        .iter()
        .map(|&k| {
            let b = Strategy::builder(k).limit(25).window(hour);
            if matches!(
                k,
                StrategyKind::TokenBucket | StrategyKind::LeakyBucket | StrategyKind::Gcra
            ) {
                b.burst(25).build().unwrap()
            } else {
                b.build().unwrap()
            }
        })
        .collect()
}

/// Four limiter instances, each with its own connection, 64 concurrent callers: never
/// more than the limit admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_instances_never_admit_more_than_the_limit() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let mut instances = Vec::new();
    for _ in 0..4 {
        let conn = ns.config().connect().await.unwrap();
        instances.push(Arc::new(RedisRateLimiter::new(conn)));
    }
    for s in strategies() {
        let key = format!("shared-{}", s.kind());
        let mut tasks = Vec::new();
        for caller in 0..64 {
            let limiter = Arc::clone(&instances[caller % 4]);
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let mut admitted = 0u64;
                for _ in 0..4 {
                    if limiter.check(&key, &s, 1).await.unwrap().allowed {
                        admitted += 1;
                    }
                }
                admitted
            }));
        }
        let mut admitted = 0;
        for t in tasks {
            admitted += t.await.unwrap();
        }
        // A fixed window (or the counter's window) may roll over once per hour: then two
        // windows' worth is the bound.
        let windowed = matches!(
            s.kind(),
            StrategyKind::FixedWindow | StrategyKind::SlidingCounter
        );
        assert!(
            admitted == 25 || (windowed && admitted <= 50),
            "{s:?}: {admitted} admitted of 256 requests, limit 25"
        );
    }
}

/// Every key the script writes has a TTL, and one that lost it gets it back.
#[tokio::test]
async fn keys_have_ttls_and_lost_ttls_are_repaired() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let limiter = RedisRateLimiter::new(ns.connection().clone());
    let mut conn = ns.connection().manager();
    for s in strategies() {
        let d = limiter.check("ttl", &s, 1).await.unwrap();
        assert!(d.allowed);
        let key = limiter.redis_key("ttl", &s);
        assert!(key.contains("{ttl}"), "{key}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 3_600_000 * 2, "{s:?}: ttl {ttl}");
        let _: i64 = redis::cmd("PERSIST")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        // a rejected check (cost above the capacity) writes nothing but repairs the TTL
        let d = limiter.check("ttl", &s, 1000).await.unwrap();
        assert!(!d.allowed);
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "{s:?}: ttl not repaired ({ttl})");
    }
}

/// Keys expire when the state is back to fresh: a short GCRA key is gone after its period.
#[tokio::test]
async fn idle_keys_expire() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let limiter = RedisRateLimiter::new(ns.connection().clone());
    let s = Strategy::gcra(10, Duration::from_millis(200), 2).unwrap();
    limiter.check("idle", &s, 2).await.unwrap();
    let key = limiter.redis_key("idle", &s);
    let mut conn = ns.connection().manager();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        exists, 0,
        "a GCRA key outlived its theoretical arrival time"
    );
}

/// `check_all_tagged` keeps a batch in one slot and is all or nothing.
#[tokio::test]
async fn tagged_batches_share_one_hash_tag() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let limiter = RedisRateLimiter::new(ns.connection().clone());
    let hour = Duration::from_secs(3600);
    let one = Strategy::fixed_window(1, hour).unwrap();
    let many = Strategy::gcra(10, hour, 10).unwrap();
    let batch = [Check::new("ip:1.2.3.4", &one), Check::new("user:7", &many)];
    let first = limiter.check_all_tagged("user-7", &batch).await.unwrap();
    assert!(first.iter().all(|d| d.allowed));
    let second = limiter.check_all_tagged("user-7", &batch).await.unwrap();
    assert!(!second[0].allowed && second[1].allowed);
    let mut conn = ns.connection().manager();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:rlt:*", ns.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k.contains(":{user-7}:")), "{keys:?}");
    let third = limiter.check("user:7", &many, 1).await.unwrap();
    assert_eq!(third.remaining, 9, "untagged keys are separate state");
}

/// A single GCRA check (its own short script) and a batch (the general script) share the
/// key's state; a key of another type (an older version's hash) counts as fresh and is
/// replaced; several connections share it too.
#[tokio::test]
async fn gcra_check_and_batch_share_state() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let one = RedisRateLimiter::new(ns.connection().clone());
    // Three multiplexed connections, used in turn.
    let many = RedisRateLimiter::new(
        umanage_core::redis::RedisConfig::builder(ns.url())
            .key_prefix(ns.prefix())
            .connections(3)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let s = Strategy::gcra(4, Duration::from_secs(3600), 4).unwrap();
    let mut conn = ns.connection().manager();
    let key = one.redis_key("shared", &s);
    let _: i64 = redis::cmd("HSET")
        .arg(&key)
        .arg("a")
        .arg("99999999999999999")
        .query_async(&mut conn)
        .await
        .unwrap();
    let d = one.check("shared", &s, 1).await.unwrap();
    assert!(
        d.allowed,
        "a hash left by an older version counts as no state"
    );
    assert_eq!(d.remaining, 3);
    let d = one.check_all(&[Check::new("shared", &s)]).await.unwrap();
    assert_eq!((d[0].allowed, d[0].remaining), (true, 2));
    let d = many.check("shared", &s, 1).await.unwrap();
    assert_eq!((d.allowed, d.remaining), (true, 1));
    let d = many.check_all(&[Check::new("shared", &s)]).await.unwrap();
    assert_eq!((d[0].allowed, d[0].remaining), (true, 0));
    for _ in 0..3 {
        let d = many.check("shared", &s, 1).await.unwrap();
        assert!(!d.allowed);
        let retry = d.retry_after.unwrap();
        assert!(
            retry > Duration::from_secs(890) && retry <= Duration::from_secs(900),
            "{retry:?}"
        );
    }
    let kind: String = redis::cmd("TYPE")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "string");
}
