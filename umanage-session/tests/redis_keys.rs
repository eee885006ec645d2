//! What the Redis store leaves in Redis: every key expires, the index heals when read,
//! validation slides by key expiry (no Lua on the common path), and a record Redis still
//! holds past a deadline is never returned.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::time::Duration;

use umanage_core::UserId;
use umanage_core::redis::{RedisConfig, RedisConnection};
use umanage_core::testkit;
use umanage_session::{
    BindingPolicy, CreateOutcome, NewSession, RedisSessionStore, RefreshOutcome, RefreshRequest,
    RefreshToken, Session, SessionStore, SessionToken, Touch, TouchOutcome,
};

async fn keys(conn: &RedisConnection, pattern: &str) -> Vec<String> {
    let mut c = conn.manager();
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut c)
        .await
        .unwrap()
}

async fn login_for(
    store: &RedisSessionStore,
    user: UserId,
    idle: Duration,
    life: Duration,
) -> (Session, SessionToken) {
    let token = SessionToken::generate(user, idle).unwrap();
    let mut session = Session::new(user, "u");
    session.ip = Some("192.0.2.1".parse().unwrap());
    session.fingerprint = Some("fp|with|bars".into());
    let new = NewSession {
        session,
        token: token.hash(),
        idle_timeout: idle,
        lifetime: life,
        limit: None,
    };
    match store.create(new).await.unwrap() {
        CreateOutcome::Created { session, .. } => (Session::clone(&session), token),
        other => panic!("{other:?}"),
    }
}

async fn login(store: &RedisSessionStore, user: UserId, idle_ms: u64) -> (Session, SessionToken) {
    login_for(
        store,
        user,
        Duration::from_millis(idle_ms),
        Duration::from_secs(60),
    )
    .await
}

async fn pttl(c: &mut redis::aio::ConnectionManager, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(c).await.unwrap()
}

async fn valid(store: &RedisSessionStore, token: &SessionToken, touch: Touch) -> Session {
    match store.touch(token, touch).await.unwrap() {
        TouchOutcome::Valid(s) => Session::clone(&s),
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
    valid(&store, &token, Touch::default()).await;
    let refresh = RefreshToken::generate(user, token.idle_timeout()).unwrap();
    store
        .start_family(user, session.id, &refresh.hash())
        .await
        .unwrap()
        .unwrap();
    store.bump_epoch(user).await.unwrap();
    let (_, _) = login(&store, user, 30_000).await;

    let all = keys(ns.connection(), &format!("{}:*", ns.prefix())).await;
    assert!(all.len() >= 7, "{all:?}");
    let tag = format!("{{{user}}}");
    let mut c = ns.connection().manager();
    for key in &all {
        assert!(key.contains(&tag), "{key} outside the user's hash tag");
        let ttl = pttl(&mut c, key).await;
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
    // No token in clear anywhere: only its hash.
    for key in &all {
        assert!(!key.contains(token.expose()));
    }
    let record: Vec<u8> = redis::cmd("GET")
        .arg(format!(
            "{}t:{}",
            store.user_base(user),
            token.hash().to_hex()
        ))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&record).contains(token.expose()),
        "token in the record"
    );
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
    let base = store.user_base(user);
    let mut c = ns.connection().manager();
    let card = |c: &mut redis::aio::ConnectionManager, cmd: &'static str, key: String| {
        let mut c = c.clone();
        async move {
            let n: i64 = redis::cmd(cmd).arg(&key).query_async(&mut c).await.unwrap();
            n
        }
    };
    assert_eq!(card(&mut c, "ZCARD", format!("{base}idx")).await, 6);
    assert_eq!(card(&mut c, "HLEN", format!("{base}map")).await, 6);
    // The idle-expired records are gone by Redis expiry; their absolute markers wait.
    assert_eq!(keys(ns.connection(), &format!("{base}t:*")).await.len(), 1);
    assert_eq!(keys(ns.connection(), &format!("{base}a:*")).await.len(), 6);
    assert_eq!(store.list(user).await.unwrap().len(), 1);
    assert_eq!(
        card(&mut c, "ZCARD", format!("{base}idx")).await,
        1,
        "expired members stayed in the index"
    );
    assert_eq!(card(&mut c, "HLEN", format!("{base}map")).await, 1);
    assert_eq!(keys(ns.connection(), &format!("{base}a:*")).await.len(), 1);
}

/// Past the absolute deadline the record may still be in Redis (it expires one idle
/// timeout after its last validation); it is not returned and is deleted on the spot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_past_its_absolute_deadline_is_not_returned_while_redis_still_holds_it() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let store = RedisSessionStore::new(ns.connection().clone());
    let user = UserId::new();
    let (_, token) = login_for(
        &store,
        user,
        Duration::from_secs(30),
        Duration::from_millis(300),
    )
    .await;
    let record = format!("{}t:{}", store.user_base(user), token.hash().to_hex());
    let mut c = ns.connection().manager();
    let s = valid(&store, &token, Touch::default()).await;
    assert_eq!(
        s.idle_expires_at, s.expires_at,
        "slid past the absolute deadline"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(pttl(&mut c, &record).await > 0, "the record should linger");
    let out = store.touch(&token, Touch::default()).await.unwrap();
    assert!(matches!(out, TouchOutcome::Invalid), "{out:?}");
    assert_eq!(pttl(&mut c, &record).await, -2, "the dead record was kept");
    assert!(store.list(user).await.unwrap().is_empty());
    assert!(
        keys(ns.connection(), &format!("{}*", store.user_base(user)))
            .await
            .is_empty()
    );
}

/// Every validation moves the record's TTL to the idle timeout (that TTL is the idle
/// deadline, less the millisecond Redis keeps a key through), also across a rotation; the
/// absolute marker never moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_ttl_is_the_idle_deadline() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let store = RedisSessionStore::new(ns.connection().clone());
    let user = UserId::new();
    let idle_ms: i64 = 800;
    let (session, mut token) = login(&store, user, idle_ms.unsigned_abs()).await;
    let base = store.user_base(user);
    let mut c = ns.connection().manager();
    let life_left = |s: &Session| (s.expires_at - chrono::Utc::now()).num_milliseconds();
    for round in 0..12 {
        tokio::time::sleep(Duration::from_millis(70)).await;
        let mut t = Touch::default();
        let next =
            (round == 5).then(|| SessionToken::generate(user, token.idle_timeout()).unwrap());
        t.rotate_to = next.as_ref().map(SessionToken::hash);
        let s = valid(&store, &token, t).await;
        if let Some(next) = next {
            let old = format!("{base}t:{}", token.hash().to_hex());
            assert_eq!(pttl(&mut c, &old).await, -2, "old record name kept");
            token = next;
        }
        assert_eq!(s.id, session.id);
        let record = format!("{base}t:{}", token.hash().to_hex());
        let marker = format!("{base}a:{}", token.hash().to_hex());
        let ttl = pttl(&mut c, &record).await;
        assert!(
            ttl <= idle_ms && ttl >= idle_ms - 60,
            "round {round}: record expires in {ttl} ms"
        );
        let mttl = pttl(&mut c, &marker).await;
        assert!(
            (mttl - life_left(&s)).abs() < 60,
            "round {round}: marker {mttl} ms vs {} ms left",
            life_left(&s)
        );
        assert!(pttl(&mut c, &format!("{base}idx")).await >= mttl - 2);
        assert!(pttl(&mut c, &format!("{base}map")).await >= mttl - 2);
    }
    // Unused, the session dies at its idle deadline; list() clears what is left.
    tokio::time::sleep(Duration::from_millis((idle_ms + 50).unsigned_abs())).await;
    assert!(matches!(
        store.touch(&token, Touch::default()).await.unwrap(),
        TouchOutcome::Invalid
    ));
    assert!(store.list(user).await.unwrap().is_empty());
    assert!(keys(ns.connection(), &format!("{base}*")).await.is_empty());
}

async fn evalsha_calls(conn: &RedisConnection) -> u64 {
    let mut c = conn.manager();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// The common validation (no flag to write, no rotation) runs no script: it is the
/// `GETEX` + `EXISTS` + `GET` pipeline. A first IP change and a fingerprint to flag go through the
/// script once; then the pipeline again. A private server, so no other test's scripts
/// count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_common_validation_runs_no_script() {
    let Some(server) = testkit::RedisServer::start().await else {
        return;
    };
    let conn = RedisConfig::builder(server.url())
        .key_prefix("nolua")
        .build()
        .unwrap()
        .connect()
        .await
        .unwrap();
    let store = RedisSessionStore::new(conn.clone());
    let user = UserId::new();
    let (_, warm) = login(&store, user, 30_000).await;
    let (_, token) = login(&store, user, 30_000).await;
    let at = |ip: &str, fp: &str| Touch {
        ip: Some(ip.parse().unwrap()),
        fingerprint: Some(fp.into()),
        binding: BindingPolicy::Flag,
        rotate_to: None,
    };
    // Loads the script (a first EVALSHA may be answered NOSCRIPT and sent again).
    valid(&store, &warm, at("203.0.113.1", "x")).await;
    let before = evalsha_calls(&conn).await;
    for _ in 0..50 {
        let s = valid(&store, &token, at("192.0.2.1", "fp|with|bars")).await;
        assert!(!s.ip_changed && !s.device_mismatch);
    }
    assert_eq!(
        evalsha_calls(&conn).await,
        before,
        "a plain validation ran a script"
    );
    let s = valid(&store, &token, at("198.51.100.9", "other")).await;
    assert!(s.ip_changed && s.device_mismatch);
    assert_eq!(s.last_ip, Some("198.51.100.9".parse().unwrap()));
    assert_eq!(evalsha_calls(&conn).await, before + 1);
    for _ in 0..20 {
        let s = valid(&store, &token, at("198.51.100.9", "other")).await;
        assert!(s.ip_changed && s.device_mismatch, "a flag was lost");
    }
    assert_eq!(evalsha_calls(&conn).await, before + 1, "flags rewritten");
}

/// `Reject` on a mismatching fingerprint changes nothing: not even the idle deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_device_does_not_slide_the_session() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let store = RedisSessionStore::new(ns.connection().clone());
    let user = UserId::new();
    let (session, token) = login(&store, user, 1_000).await;
    let record = format!("{}t:{}", store.user_base(user), token.hash().to_hex());
    let mut c = ns.connection().manager();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let thief = Touch {
        ip: Some("203.0.113.66".parse().unwrap()),
        fingerprint: Some("thief".into()),
        binding: BindingPolicy::Reject,
        rotate_to: None,
    };
    let out = store.touch(&token, thief).await.unwrap();
    assert!(
        matches!(out, TouchOutcome::DeviceMismatch(id) if id == session.id),
        "{out:?}"
    );
    let ttl = pttl(&mut c, &record).await;
    assert!(
        ttl < 750,
        "a rejected request slid the session ({ttl} ms left)"
    );
    let owner = Touch {
        fingerprint: Some("fp|with|bars".into()),
        binding: BindingPolicy::Reject,
        ..Touch::default()
    };
    let s = valid(&store, &token, owner).await;
    assert!(
        !s.ip_changed && !s.device_mismatch,
        "the rejected request was recorded"
    );
    assert!(pttl(&mut c, &record).await > 900);
}

/// Records that are not this store's (another format, garbage) are a typed protocol
/// error, never a panic or a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_record_is_a_protocol_error() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let store = RedisSessionStore::new(ns.connection().clone());
    let user = UserId::new();
    let (_, token) = login(&store, user, 30_000).await;
    let record = format!("{}t:{}", store.user_base(user), token.hash().to_hex());
    let mut c = ns.connection().manager();
    for garbage in [
        &b"2|x"[..],
        b"",
        b"1|||||||||||",
        b"1|not-a-uuid|1|0|1|2|30000|0|0||||{}",
    ] {
        let () = redis::cmd("SET")
            .arg(&record)
            .arg(garbage)
            .arg("KEEPTTL")
            .query_async(&mut c)
            .await
            .unwrap();
        let err = store.touch(&token, Touch::default()).await.unwrap_err();
        assert!(
            matches!(err, umanage_session::Error::Backend(_)),
            "{garbage:?}: {err:?}"
        );
        assert!(!err.to_string().contains(token.expose()));
    }
}

async fn pexpiretime(c: &mut redis::aio::ConnectionManager, key: &str) -> i64 {
    redis::cmd("PEXPIRETIME")
        .arg(key)
        .query_async(c)
        .await
        .unwrap()
}

async fn server_ms(c: &mut redis::aio::ConnectionManager) -> i64 {
    let (s, us): (i64, i64) = redis::cmd("TIME").query_async(c).await.unwrap();
    s * 1000 + us / 1000
}

/// Redis keeps a key through its expiry millisecond, so a record whose expiry were the
/// idle deadline would still be returned at that deadline, when the session is no longer
/// live: like the absolute marker, the record expires one millisecond before. Checked on
/// every path that sets the record's TTL (create, the script, a rotation, a refresh, the
/// pipeline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_is_gone_at_the_idle_deadline() {
    let Some(ns) = testkit::redis().await else {
        return;
    };
    let store = RedisSessionStore::new(ns.connection().clone());
    let user = UserId::new();
    let idle = Duration::from_secs(30);
    let (created, mut token) = login_for(&store, user, idle, Duration::from_secs(60)).await;
    let base = store.user_base(user);
    let record = |t: &SessionToken| format!("{base}t:{}", t.hash().to_hex());
    let mut c = ns.connection().manager();
    let deadline = |s: &Session| s.idle_expires_at.timestamp_millis();
    assert!(
        pexpiretime(&mut c, &record(&token)).await < deadline(&created),
        "create: the record outlives the idle deadline"
    );
    let moved = Touch {
        ip: Some("198.51.100.1".parse().unwrap()),
        ..Touch::default()
    };
    let s = valid(&store, &token, moved).await;
    assert!(
        pexpiretime(&mut c, &record(&token)).await < deadline(&s),
        "script: the record outlives the idle deadline"
    );
    let next = SessionToken::generate(user, token.idle_timeout()).unwrap();
    let rotate = Touch {
        rotate_to: Some(next.hash()),
        ..Touch::default()
    };
    let s = valid(&store, &token, rotate).await;
    token = next;
    assert!(
        pexpiretime(&mut c, &record(&token)).await < deadline(&s),
        "rotation: the record outlives the idle deadline"
    );
    let r1 = RefreshToken::generate(user, token.idle_timeout()).unwrap();
    store
        .start_family(user, created.id, &r1.hash())
        .await
        .unwrap()
        .unwrap();
    let next = SessionToken::generate(user, token.idle_timeout()).unwrap();
    let request = RefreshRequest {
        user,
        presented: r1.hash(),
        next_refresh: RefreshToken::generate(user, token.idle_timeout())
            .unwrap()
            .hash(),
        next_session: next.hash(),
        fingerprint: None,
        grace: Duration::ZERO,
    };
    let RefreshOutcome::Rotated(s) = store.refresh(request).await.unwrap() else {
        panic!("not rotated")
    };
    token = next;
    assert!(
        pexpiretime(&mut c, &record(&token)).await < deadline(&s),
        "refresh: the record outlives the idle deadline"
    );
    // The pipeline slides on the server's clock: in a round where the server's
    // millisecond did not change around the validation, it ran in that millisecond.
    let idle_ms = i64::try_from(idle.as_millis()).unwrap();
    let mut checked = 0;
    for _ in 0..500 {
        let before = server_ms(&mut c).await;
        valid(&store, &token, Touch::default()).await;
        let expiry = pexpiretime(&mut c, &record(&token)).await;
        if server_ms(&mut c).await != before {
            continue;
        }
        assert!(
            expiry < before + idle_ms,
            "pipeline: the record outlives the idle deadline ({expiry} vs {})",
            before + idle_ms
        );
        checked += 1;
        if checked == 5 {
            break;
        }
    }
    assert!(checked > 0, "no round within one server millisecond");
    let listed = store.list(user).await.unwrap();
    assert!(pexpiretime(&mut c, &record(&token)).await < deadline(&listed[0]));
}
