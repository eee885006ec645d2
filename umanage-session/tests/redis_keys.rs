//! What the Redis store leaves in Redis: every key expires, the index heals when read,
//! and the scripts' own deadline checks hold even while Redis still has the record.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::time::Duration;

use umanage_core::UserId;
use umanage_core::testkit;
use umanage_session::{
    CreateOutcome, NewSession, RedisSessionStore, RefreshToken, Session, SessionStore,
    SessionToken, Touch, TouchOutcome,
};

async fn keys(conn: &umanage_core::redis::RedisConnection, pattern: &str) -> Vec<String> {
    let mut c = conn.manager();
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut c)
        .await
        .unwrap()
}

async fn login(store: &RedisSessionStore, user: UserId, idle_ms: u64) -> (Session, SessionToken) {
    let token = SessionToken::generate(user).unwrap();
    let new = NewSession {
        session: Session::new(user, "u"),
        token: token.hash(),
        idle_timeout: Duration::from_millis(idle_ms),
        lifetime: Duration::from_secs(60),
        limit: None,
    };
    match store.create(new).await.unwrap() {
        CreateOutcome::Created { session, .. } => (Session::clone(&session), token),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_has_a_ttl_and_shares_the_users_hash_tag() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let store = RedisSessionStore::new(ns.connection().clone());
    let user = UserId::new();
    let (session, token) = login(&store, user, 30_000).await;
    store
        .touch(user, &token.hash(), Touch::default())
        .await
        .unwrap();
    let refresh = RefreshToken::generate(user).unwrap();
    store
        .start_family(user, session.id, &refresh.hash())
        .await
        .unwrap()
        .unwrap();
    store.bump_epoch(user).await.unwrap();
    let (_, _) = login(&store, user, 30_000).await;

    let all = keys(ns.connection(), &format!("{}:*", ns.prefix())).await;
    assert!(all.len() >= 6, "{all:?}");
    let tag = format!("{{{user}}}");
    let mut c = ns.connection().manager();
    for key in &all {
        assert!(key.contains(&tag), "{key} outside the user's hash tag");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
    // No token in clear anywhere: only its hash.
    for key in &all {
        assert!(!key.contains(token.expose()));
    }
    let pointer = format!("t:{}", token.hash().to_hex());
    assert!(all.iter().any(|k| k.ends_with(&pointer)), "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_is_pruned_when_read() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let store = RedisSessionStore::new(ns.connection().clone());
    let user = UserId::new();
    for _ in 0..5 {
        login(&store, user, 200).await;
    }
    login(&store, user, 30_000).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let idx = format!("{}idx", store.user_base(user));
    let mut c = ns.connection().manager();
    let card = |c: &mut redis::aio::ConnectionManager| {
        let mut c = c.clone();
        let idx = idx.clone();
        async move {
            let n: i64 = redis::cmd("ZCARD")
                .arg(&idx)
                .query_async(&mut c)
                .await
                .unwrap();
            n
        }
    };
    assert_eq!(card(&mut c).await, 6, "nothing read the index yet");
    assert_eq!(store.list(user).await.unwrap().len(), 1);
    assert_eq!(card(&mut c).await, 1, "expired members stayed in the index");
    let records = keys(ns.connection(), &format!("{}s:*", store.user_base(user))).await;
    assert_eq!(records.len(), 1, "{records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_past_its_deadline_is_not_returned_while_redis_still_holds_it() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let store = RedisSessionStore::new(ns.connection().clone());
    let user = UserId::new();
    let (session, token) = login(&store, user, 30_000).await;
    // Move the idle deadline into the past but leave the key's TTL alone, as if Redis had
    // not evicted the record yet.
    let key = format!("{}s:{}", store.user_base(user), session.id);
    let mut c = ns.connection().manager();
    let past = session.created_at.timestamp_millis() - 1;
    let () = redis::cmd("HSET")
        .arg(&key)
        .arg("iexp")
        .arg(past)
        .query_async(&mut c)
        .await
        .unwrap();
    let out = store
        .touch(user, &token.hash(), Touch::default())
        .await
        .unwrap();
    assert!(matches!(out, TouchOutcome::Invalid), "{out:?}");
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(exists, 0, "the dead record was kept");
    assert!(store.list(user).await.unwrap().is_empty());
}

async fn pttl(c: &mut redis::aio::ConnectionManager, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(c).await.unwrap()
}

/// Validations move the key TTLs lazily (only once the idle deadline passes the last TTL
/// set), so check what that must never break: the record, its token pointer and its index
/// entry always outlive the idle deadline, also across a rotation, and they never outlive
/// it by more than the slack (`min(idle / 8, 60 s)`), nor the absolute deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_ttls_cover_the_idle_deadline_and_stay_close_to_it() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let store = RedisSessionStore::new(ns.connection().clone());
    let user = UserId::new();
    let idle_ms: i64 = 800;
    let slack_ms = idle_ms / 8;
    let (session, mut token) = login(&store, user, idle_ms.unsigned_abs()).await;
    let base = store.user_base(user);
    let record = format!("{base}s:{}", session.id);
    let mut c = ns.connection().manager();
    for round in 0..12 {
        tokio::time::sleep(Duration::from_millis(70)).await;
        let mut t = Touch::default();
        let next = (round == 5).then(|| SessionToken::generate(user).unwrap());
        t.rotate_to = next.as_ref().map(SessionToken::hash);
        let s = match store.touch(user, &token.hash(), t).await.unwrap() {
            TouchOutcome::Valid(s) => s,
            other => panic!("round {round}: {other:?}"),
        };
        if let Some(next) = next {
            token = next;
        }
        let pointer = format!("{base}t:{}", token.hash().to_hex());
        let now: Vec<String> = redis::cmd("TIME").query_async(&mut c).await.unwrap();
        let now_ms = now[0].parse::<i64>().unwrap() * 1000 + now[1].parse::<i64>().unwrap() / 1000;
        let left = s.idle_expires_at.timestamp_millis() - now_ms;
        for key in [&record, &pointer] {
            let ttl = pttl(&mut c, key).await;
            assert!(
                ttl >= left - 2,
                "round {round}: {key} expires in {ttl} ms, the session in {left}"
            );
            assert!(
                ttl <= left + slack_ms + 2,
                "round {round}: {key} lingers {ttl} ms (session {left})"
            );
        }
        let score: f64 = redis::cmd("ZSCORE")
            .arg(format!("{base}idx"))
            .arg(session.id.to_string())
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(
            score as i64 >= s.idle_expires_at.timestamp_millis(),
            "round {round}: index score below the deadline"
        );
        assert!(
            pttl(&mut c, &format!("{base}idx")).await >= left - 2,
            "round {round}: index expires first"
        );
    }
    // Unused, the session dies at its idle deadline and its keys follow within the slack.
    tokio::time::sleep(Duration::from_millis(
        (idle_ms + slack_ms + 50).unsigned_abs(),
    ))
    .await;
    assert!(keys(ns.connection(), &format!("{base}*")).await.is_empty());
}
