//! The failure policies against a Redis that really goes away and comes back: the test
//! starts its own `redis-server` on a free loopback port, kills it mid-run and restarts it
//! on the same port.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use umanage_core::redis::RedisConfig;
use umanage_core::testkit::RedisServer;
use umanage_ratelimit::{
    FailurePolicy, RateLimitStore, RedisRateLimiter, ResilientLimiter, Strategy,
};

async fn key_exists(port: u16, key: &str) -> bool {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(&mut c)
        .await
        .is_ok_and(|n| n == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_while_redis_is_down_and_recovery_after() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let port = server.port();

    let conn = RedisConfig::builder(format!("redis://127.0.0.1:{port}"))
        .key_prefix("rl-failure-test")
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .reconnect_attempts(1)
        .build()
        .unwrap()
        .connect()
        .await
        .unwrap();
    let redis = Arc::new(RedisRateLimiter::new(conn.clone()));
    let probe = Duration::from_millis(200);
    let make = |policy| {
        ResilientLimiter::builder(redis.clone())
            .policy(policy)
            .probe_interval(probe)
            .build()
            .unwrap()
    };
    let open = make(FailurePolicy::FailOpen);
    let closed = make(FailurePolicy::FailClosed);
    let fallback = make(FailurePolicy::Fallback);
    let s = Strategy::fixed_window(2, Duration::from_secs(3600)).unwrap();

    // Up: every policy enforces the shared limit.
    for (name, l) in [
        ("open", &open),
        ("closed", &closed),
        ("fallback", &fallback),
    ] {
        let key = format!("up-{name}");
        assert!(l.check(&key, &s, 1).await.unwrap().allowed);
        assert!(l.check(&key, &s, 1).await.unwrap().allowed);
        assert!(!l.check(&key, &s, 1).await.unwrap().allowed, "{name}");
        assert!(key_exists(port, &redis.redis_key(&key, &s)).await);
        assert!(!l.is_degraded());
    }

    server.stop();

    // Down: fail open admits even an exhausted key; fail closed rejects a fresh key;
    // fallback enforces the limit locally.
    for _ in 0..5 {
        assert!(open.check("up-open", &s, 1).await.unwrap().allowed);
    }
    assert!(open.is_degraded());
    let d = closed.check("fresh-closed", &s, 1).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Some(probe));
    assert!(closed.is_degraded());
    assert!(
        fallback
            .check("down-fallback", &s, 1)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        fallback
            .check("down-fallback", &s, 1)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !fallback
            .check("down-fallback", &s, 1)
            .await
            .unwrap()
            .allowed
    );
    assert!(fallback.is_degraded());
    // Invalid input is still an error, not a policy decision.
    assert!(open.check("", &s, 1).await.is_err());

    // Back on the same port (empty: it kept nothing).
    server.restart().await;

    // Each policy returns to Redis by itself: the decisions are Redis's again (fail open
    // would admit a third request; fail closed would reject), and the keys are in Redis.
    for (name, l) in [
        ("open", &open),
        ("closed", &closed),
        ("fallback", &fallback),
    ] {
        let key = format!("back-{name}");
        let deadline = Instant::now() + Duration::from_secs(15);
        // The connection's multiplexed connections (commands go to each in turn) come
        // back one by one: wait for a run of answers from Redis longer than their number.
        let mut answered = 0;
        while answered < 4 {
            tokio::time::sleep(probe).await;
            let _ = l.check("warm-up", &s, 1).await;
            answered = if l.is_degraded() { 0 } else { answered + 1 };
            assert!(Instant::now() < deadline, "{name}: never recovered");
        }
        assert!(l.check(&key, &s, 1).await.unwrap().allowed, "{name}");
        assert!(l.check(&key, &s, 1).await.unwrap().allowed, "{name}");
        assert!(
            !l.check(&key, &s, 1).await.unwrap().allowed,
            "{name}: not Redis's decision"
        );
        assert!(
            key_exists(port, &redis.redis_key(&key, &s)).await,
            "{name}: key not in Redis"
        );
    }
    drop(server);
}

/// The tower layer's failure policy: fail closed rejects (429) while Redis is down, fail
/// open lets requests through, and both enforce Redis's limits again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_failure_policy_with_redis_down() {
    use http::{Request, Response, StatusCode};
    use tower::{Layer, ServiceExt};
    use umanage_ratelimit::{PeerAddr, RateLimitLayer, RuleSet};

    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let port = server.port();
    let conn = RedisConfig::builder(format!("redis://127.0.0.1:{port}"))
        .key_prefix("rl-layer-failure")
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .reconnect_attempts(1)
        .build()
        .unwrap()
        .connect()
        .await
        .unwrap();
    let redis = Arc::new(RedisRateLimiter::new(conn));
    let rules: RuleSet = toml::from_str(
        "[[rules]]\nname = \"all\"\npath = \"/*\"\nstrategy = \"fixed_window\"\nlimit = 1\nwindow = \"1h\"",
    )
    .unwrap();
    let make = |policy| {
        let layer = RateLimitLayer::builder(redis.clone(), rules.clone())
            .failure_policy(policy, Duration::from_millis(100))
            .build()
            .unwrap();
        layer.layer(tower::service_fn(|_r: Request<String>| async {
            Ok::<_, std::convert::Infallible>(Response::new("ok".to_owned()))
        }))
    };
    let closed = make(FailurePolicy::FailClosed);
    let open = make(FailurePolicy::FailOpen);
    async fn call<S>(svc: &S, peer: &str) -> StatusCode
    where
        S: tower::Service<Request<String>, Response = Response<String>> + Clone,
        S::Error: std::fmt::Debug,
    {
        let mut req = Request::builder().uri("/x").body(String::new()).unwrap();
        req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
        svc.clone().oneshot(req).await.unwrap().status()
    }
    assert_eq!(call(&closed, "192.0.2.1").await, StatusCode::OK);
    assert_eq!(
        call(&closed, "192.0.2.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    server.stop();
    // fail closed: rejected (the rejection response), even for a fresh client
    assert_eq!(
        call(&closed, "192.0.2.2").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..3 {
        assert_eq!(call(&open, "192.0.2.1").await, StatusCode::OK, "fail open");
    }
    server.restart().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    // Redis came back empty: the first request of a new client passes, the second is
    // rejected by Redis (fail open would admit it).
    for n in 1.. {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let peer = format!("198.51.100.{n}");
        if call(&open, &peer).await == StatusCode::OK
            && call(&open, &peer).await == StatusCode::TOO_MANY_REQUESTS
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fail-open layer never returned to Redis"
        );
    }
    drop(server);
}
