//! The Redis helpers against a live server: scripts (NOSCRIPT reload, no re-send after a
//! timeout), reconnection, and namespace clean-up.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::time::Duration;

use umanage_core::redis::{RedisConfig, RedisScript};
use umanage_core::testkit;

/// Counts its own executions in `KEYS[1]`, then spins for `ARGV[1]` milliseconds of server
/// time: long enough for the client's response timeout to pass.
const SLOW_COUNTER: &str = r"
redis.call('INCR', KEYS[1])
local t = redis.call('TIME')
local start = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
while true do
  local n = redis.call('TIME')
  local now = tonumber(n[1]) * 1000 + math.floor(tonumber(n[2]) / 1000)
  if now - start >= tonumber(ARGV[1]) then break end
end
return redis.call('GET', KEYS[1])
";

#[tokio::test]
async fn script_sha_matches_the_server_and_noscript_reloads_without_double_apply() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let conn = ns.connection();
    // A script unique to this test, so flushing other tests' scripts is not needed:
    // a fresh source is never in the cache, so the first call takes the NOSCRIPT path.
    let source = format!("-- {}\nreturn redis.call('INCR', KEYS[1])", ns.prefix());
    let script = RedisScript::new("unique_incr", source);
    let key = conn.keys().key("test", "noscript");
    let first: i64 = script.call().key(&key).invoke(conn).await.unwrap();
    assert_eq!(first, 1, "NOSCRIPT reload must run the script exactly once");
    let second: i64 = script.call().key(&key).invoke(conn).await.unwrap();
    assert_eq!(second, 2);
    // The SHA we compute is the one the server computes.
    let mut m = conn.manager();
    let exists: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(script.sha())
        .query_async(&mut m)
        .await
        .unwrap();
    assert_eq!(exists, vec![1]);
}

#[tokio::test]
async fn a_timed_out_script_is_reported_as_timeout_and_not_re_sent() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let cfg = RedisConfig::builder(ns.url())
        .key_prefix(ns.prefix())
        .response_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let conn = cfg.connect().await.unwrap();
    let script = RedisScript::new("slow_counter", SLOW_COUNTER);
    script.load(&mut conn.manager()).await.unwrap();
    let key = conn.keys().key("test", "slow");

    let err = script
        .call()
        .key(&key)
        .arg(400)
        .invoke::<i64>(&conn)
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "expected a timeout, got {err:?}");
    assert!(err.is_unavailable());

    // Let the script finish on the server, then count its executions.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut check = ns.connection().manager();
    let runs: i64 = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut check)
        .await
        .unwrap();
    assert_eq!(runs, 1, "a timed-out call was re-sent");

    // The connection is still usable afterwards.
    conn.ping().await.unwrap();
}

#[tokio::test]
async fn script_errors_are_typed_and_not_retried() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let conn = ns.connection();
    let script = RedisScript::new(
        "fails",
        "redis.call('INCR', KEYS[1]) return redis.error_reply('boom')",
    );
    let key = conn.keys().key("test", "err");
    let err = script
        .call()
        .key(&key)
        .invoke::<i64>(conn)
        .await
        .unwrap_err();
    assert!(
        matches!(err, umanage_core::BackendError::Redis(_)),
        "{err:?}"
    );
    assert!(!err.is_unavailable() && !err.is_timeout());
    let mut m = conn.manager();
    let runs: i64 = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut m)
        .await
        .unwrap();
    assert_eq!(runs, 1);
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let cfg = RedisConfig::builder("redis://127.0.0.1:1")
        .connect_timeout(Duration::from_millis(200))
        .reconnect_attempts(0)
        .build()
        .unwrap();
    let err = cfg.connect().await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

#[tokio::test]
async fn dropping_a_namespace_deletes_its_keys() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let url = ns.url().to_owned();
    let mut m = ns.connection().manager();
    let keys: Vec<String> = (0..1200)
        .map(|i| ns.connection().keys().key("test", &i.to_string()))
        .collect();
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.cmd("SET").arg(k).arg(1).ignore();
    }
    let () = pipe.query_async(&mut m).await.unwrap();
    let pattern = ns.connection().keys().pattern();
    drop(ns);

    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(left.is_empty(), "{} keys left under {pattern}", left.len());
}

/// A connection of `connections(3)` opens three TCP connections and sends each command to
/// the next one; a write awaited on one is seen by the next read, on another.
#[tokio::test]
async fn commands_spread_over_the_configured_connections() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let conn = RedisConfig::builder(ns.url())
        .key_prefix(ns.prefix())
        .connections(3)
        .build()
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(conn.connections(), 3);
    let mut ids = std::collections::HashSet::new();
    for _ in 0..6 {
        let mut c = conn.manager();
        let id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut c)
            .await
            .unwrap();
        ids.insert(id);
    }
    assert_eq!(ids.len(), 3, "{ids:?}");
    let key = conn.keys().key("spread", "k");
    for i in 0..30_i64 {
        let mut w = conn.manager();
        let () = redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .query_async(&mut w)
            .await
            .unwrap();
        let mut r = conn.manager();
        let got: i64 = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut r)
            .await
            .unwrap();
        assert_eq!(got, i);
    }
    conn.ping().await.unwrap();
}
