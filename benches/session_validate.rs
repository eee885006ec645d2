//! Session validation speed (`umanage-session`).
//!
//! * criterion `session_validate/memory/*`: validate + slide on the memory store (target
//!   < 1 µs), through the store and through the manager (which also hashes the token and
//!   the device fingerprint).
//! * criterion `session_validate/redis/sequential`: one validation in flight at a time
//!   (round-trip latency), when `UMANAGE_BENCH_REDIS_URL` is set.
//! * a load driver, when `UMANAGE_BENCH_REDIS_URL` is set: `CONCURRENCY` (50) tokio tasks
//!   validating (with sliding: one `GETEX` + `MGET` pipeline each) `SESSIONS` (10000) sessions round-robin
//!   for `DURATION` seconds (5, after 1 s warm-up), printing
//!   `umanage_session_validate ops_per_sec=… p50_ms=… p99_ms=…` like the peers in
//!   `shared/peers/redis`. `CONNS` (2, the `RedisConfig` default) multiplexed connections are shared by the tasks;
//!   `SERIALIZER=msgpack` (with the `msgpack` feature) stores the sessions as MessagePack.
//! * `SESSION_RAW=<what>`: the same tasks and connections with no client-side work, for the
//!   ceilings on this machine: `noop` (`EVALSHA` of `return 1`), `get` (a 400-byte `GET`),
//!   `getex` (`GETEX … PX`), `pipeline` (`GETEX` + `MGET`), `pipeline2` (`GETEX` + a
//!   two-key `EXISTS`), `pipeline3` (the validation's `GETEX` + `EXISTS` + `GET`), `script`
//!   (a Lua script making the same two calls);
//!   `SESSION_CALLGRIND=<n>`: `n` memory validations for callgrind (see below).
//!
//! `benches/session_compare.sh` runs it beside `redis-benchmark -t get -c 50` and the
//! tower-sessions peer of `shared/peers/redis`, interleaved, and prints the ratios.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use umanage::core::redis::RedisConfig;
use umanage::session::{
    ClientInfo, FingerprintConfig, Login, LoginOutcome, MemorySessionStore, RedisSessionStore,
    SessionConfig, SessionManager, SessionStore, SessionToken, Touch, TouchOutcome, Validation,
};
use umanage::{ManualClock, RequestContext, UserId};

fn client() -> ClientInfo {
    ClientInfo::new(
        RequestContext::new()
            .with_user_agent("Mozilla/5.0 (X11; Linux x86_64) bench")
            .with_client_ip(
                "203.0.113.20"
                    .parse()
                    .unwrap_or(std::net::IpAddr::from([0; 4])),
            ),
    )
    .with_header("accept-language", "en-GB,en;q=0.9")
}

fn config() -> SessionConfig {
    SessionConfig::builder().build().unwrap_or_default()
}

/// `n` sessions of `n` users, with a user id and a role like the peers' ~80-byte payload.
async fn populate(m: &SessionManager, n: usize) -> Vec<SessionToken> {
    let c = client();
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let login = Login::new(UserId::new(), "bench-user").with_roles(["member"]);
        match m.login(login, &c).await {
            Ok(LoginOutcome::Created { token, .. }) => tokens.push(token),
            other => panic!("bench login failed: {other:?}"),
        }
    }
    tokens
}

fn memory(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let clock = ManualClock::default();
    let store = Arc::new(MemorySessionStore::with_clock(clock.shared()));
    let manager = SessionManager::new(store.clone(), config());
    let tokens = rt.block_on(populate(&manager, 1000));
    let c_info = client();
    let mut g = c.benchmark_group("session_validate/memory");
    let mut i = 0;
    g.bench_function("store_touch", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % tokens.len();
            let (token, store) = (&tokens[i], &store);
            async move {
                match store.touch(token, Touch::default()).await {
                    Ok(TouchOutcome::Valid(s)) => s,
                    other => panic!("{other:?}"),
                }
            }
        });
    });
    // What a request does: parse the presented text (base64 and the token's SHA-256),
    // then validate (device fingerprint SHA-256 and the store).
    let texts: Vec<String> = tokens.iter().map(|t| t.expose().to_owned()).collect();
    let mut i = 0;
    g.bench_function("manager_validate", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % texts.len();
            let text = texts[i].as_str();
            let (manager, c_info) = (&manager, &c_info);
            async move {
                let token = SessionToken::parse(text).unwrap_or_else(|e| panic!("{e}"));
                match manager.validate(&token, c_info).await {
                    Ok(Validation::Valid(s)) => s,
                    other => panic!("{other:?}"),
                }
            }
        });
    });
    let plain = SessionManager::new(
        store.clone(),
        SessionConfig::builder()
            .fingerprint(FingerprintConfig::none())
            .build()
            .unwrap_or_default(),
    );
    let mut i = 0;
    g.bench_function("manager_validate_no_fingerprint", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % texts.len();
            let text = texts[i].as_str();
            let (plain, c_info) = (&plain, &c_info);
            async move {
                let token = SessionToken::parse(text).unwrap_or_else(|e| panic!("{e}"));
                match plain.validate(&token, c_info).await {
                    Ok(Validation::Valid(s)) => s,
                    other => panic!("{other:?}"),
                }
            }
        });
    });
    g.finish();
}

fn redis_url() -> Option<String> {
    std::env::var("UMANAGE_BENCH_REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn redis_managers(url: &str, conns: usize) -> Vec<Arc<SessionManager>> {
    let cfg = RedisConfig::builder(url)
        .key_prefix(format!("umbench-{}", std::process::id()))
        .connections(conns.max(1))
        .build()
        .unwrap_or_else(|e| panic!("redis config: {e}"));
    let conn = cfg
        .connect()
        .await
        .unwrap_or_else(|e| panic!("redis connect: {e}"));
    let store = RedisSessionStore::new(conn);
    #[cfg(feature = "msgpack")]
    let store = if std::env::var("SERIALIZER").as_deref() == Ok("msgpack") {
        store.with_serializer(umanage::session::MsgpackSerializer)
    } else {
        store
    };
    let store: Arc<dyn SessionStore> = Arc::new(store);
    vec![Arc::new(SessionManager::new(store, config()))]
}

async fn cleanup(m: &SessionManager, tokens: &[SessionToken]) {
    for t in tokens {
        let _ = m.store().revoke_all(t.user_id(), None).await;
    }
}

fn redis_sequential(c: &mut Criterion) {
    let Some(url) = redis_url() else {
        eprintln!("session_validate/redis: UMANAGE_BENCH_REDIS_URL not set, skipped");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let managers = rt.block_on(redis_managers(&url, 1));
    let manager = Arc::clone(&managers[0]);
    let tokens = rt.block_on(populate(&manager, 1000));
    let c_info = client();
    let mut i = 0;
    c.benchmark_group("session_validate/redis")
        .bench_function("sequential", |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % tokens.len();
                let token = &tokens[i];
                let (manager, c_info) = (&manager, &c_info);
                async move {
                    match manager.validate(token, c_info).await {
                        Ok(Validation::Valid(s)) => s,
                        other => panic!("{other:?}"),
                    }
                }
            });
        });
    rt.block_on(cleanup(&manager, &tokens));
}

static NOOP: std::sync::LazyLock<umanage::core::redis::RedisScript> =
    std::sync::LazyLock::new(|| umanage::core::redis::RedisScript::new("noop", "return 1"));

static MINI: std::sync::LazyLock<umanage::core::redis::RedisScript> =
    std::sync::LazyLock::new(|| {
        umanage::core::redis::RedisScript::new(
            "mini",
            "local r = redis.call('GETEX', KEYS[1], 'PX', ARGV[1]) \
             if not r then return false end \
             local m = redis.call('MGET', KEYS[2], KEYS[3]) \
             return {r, m[1], m[2]}",
        )
    });

/// `SESSION_RAW=<what>`: the same tasks and connections sending one fixed command shape
/// with no client work (see the module docs for the shapes).
fn redis_raw(what: &str) {
    let Some(url) = redis_url() else { return };
    let concurrency = env_num("CONCURRENCY", 50);
    let conns = env_num("CONNS", 2);
    let duration = Duration::from_secs_f64(env_num("DURATION", 5) as f64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let what = what.to_owned();
    rt.block_on(async move {
        let cfg = RedisConfig::builder(&url)
            .connections(conns.max(1))
            .build()
            .unwrap_or_else(|e| panic!("redis config: {e}"));
        let conn = cfg.connect().await.unwrap_or_else(|e| panic!("{e}"));
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let conn = conn.clone();
                let (count, stop) = (Arc::clone(&count), Arc::clone(&stop));
                let what = what.clone();
                tokio::spawn(async move {
                    let mut m = conn.manager();
                    let base = format!("umrawbench:{{u{t}}}:");
                    let (record, marker, epoch) = (
                        format!("{base}t:r"),
                        format!("{base}a:r"),
                        format!("{base}epoch"),
                    );
                    let ttl = 600_000;
                    let _: redis::RedisResult<()> = redis::pipe()
                        .cmd("SET")
                        .arg(&record)
                        .arg("x".repeat(400))
                        .arg("PX")
                        .arg(ttl)
                        .cmd("SET")
                        .arg(&marker)
                        .arg("1")
                        .arg("PX")
                        .arg(ttl)
                        .query_async(&mut m)
                        .await;
                    while !stop.load(Ordering::Relaxed) {
                        let ok = match what.as_str() {
                            // The validation's commands without the client's work.
                            "pipeline" => redis::pipe()
                                .cmd("GETEX")
                                .arg(&record)
                                .arg("PX")
                                .arg(ttl)
                                .cmd("MGET")
                                .arg(&marker)
                                .arg(&epoch)
                                .query_async::<redis::Value>(&mut m)
                                .await
                                .is_ok(),
                            "script" => MINI
                                .call()
                                .key(&record)
                                .key(&marker)
                                .key(&epoch)
                                .arg(ttl)
                                .invoke::<redis::Value>(&conn)
                                .await
                                .is_ok(),
                            "pipeline3" => redis::pipe()
                                .cmd("GETEX")
                                .arg(&record)
                                .arg("PX")
                                .arg(ttl)
                                .cmd("EXISTS")
                                .arg(&marker)
                                .cmd("GET")
                                .arg(&epoch)
                                .query_async::<redis::Value>(&mut m)
                                .await
                                .is_ok(),
                            "pipeline2" => redis::pipe()
                                .cmd("GETEX")
                                .arg(&record)
                                .arg("PX")
                                .arg(ttl)
                                .cmd("EXISTS")
                                .arg(&marker)
                                .arg(&epoch)
                                .query_async::<redis::Value>(&mut m)
                                .await
                                .is_ok(),
                            "getex" => redis::cmd("GETEX")
                                .arg(&record)
                                .arg("PX")
                                .arg(ttl)
                                .query_async::<redis::Value>(&mut m)
                                .await
                                .is_ok(),
                            "get" => redis::cmd("GET")
                                .arg(&record)
                                .query_async::<Option<Vec<u8>>>(&mut m)
                                .await
                                .is_ok(),
                            _ => NOOP.call().key("k").invoke::<i64>(&conn).await.is_ok(),
                        };
                        if ok {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let c0 = count.load(Ordering::Relaxed);
        let begin = Instant::now();
        tokio::time::sleep(duration).await;
        let n = count.load(Ordering::Relaxed) - c0;
        let wall = begin.elapsed();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        println!(
            "raw_{what} ops_per_sec={:.1} (concurrency={concurrency} conns={conns})",
            n as f64 / wall.as_secs_f64()
        );
    });
}

/// The 50-task load driver (see the module docs).
fn redis_load() {
    let Some(url) = redis_url() else { return };
    let concurrency = env_num("CONCURRENCY", 50);
    let sessions = env_num("SESSIONS", 10_000);
    let conns = env_num("CONNS", 2);
    let duration = Duration::from_secs_f64(env_num("DURATION", 5) as f64);
    let warmup = Duration::from_secs(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(async {
        let managers = redis_managers(&url, conns).await;
        let tokens = Arc::new(populate(&managers[0], sessions).await);
        let next = Arc::new(AtomicUsize::new(0));
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let m = Arc::clone(&managers[t % managers.len()]);
                let (tokens, next) = (Arc::clone(&tokens), Arc::clone(&next));
                let (measuring, stop) = (Arc::clone(&measuring), Arc::clone(&stop));
                tokio::spawn(async move {
                    let c = client();
                    let mut lat = Vec::with_capacity(1 << 16);
                    let mut errors = 0_u64;
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed) % tokens.len();
                        let start = Instant::now();
                        let ok = matches!(m.validate(&tokens[i], &c).await, Ok(Validation::Valid(_)));
                        if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                            if ok {
                                lat.push(start.elapsed());
                            } else {
                                errors += 1;
                            }
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        tokio::time::sleep(warmup).await;
        measuring.store(true, Ordering::Relaxed);
        let begin = Instant::now();
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
        let wall = begin.elapsed();
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (lat, e) = t.await.unwrap_or_default();
            all.extend(lat);
            errors += e;
        }
        all.sort_unstable();
        let pct = |p: f64| {
            let rank = ((p * all.len() as f64).ceil() as usize).clamp(1, all.len().max(1));
            all.get(rank - 1).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "umanage_session_validate ops_per_sec={:.1} p50_ms={:.3} p99_ms={:.3} (concurrency={concurrency} conns={conns} sessions={sessions} serializer={} errors={errors})",
            all.len() as f64 / wall.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            std::env::var("SERIALIZER").unwrap_or_else(|_| "json".into()),
        );
        cleanup(&managers[0], &tokens).await;
    });
}

/// `SESSION_CALLGRIND=<n>`: `n` memory validations and nothing else, for
/// `valgrind --tool=callgrind` (instructions per validation = the difference between two
/// runs with different `n`, divided by the difference in `n`: set-up cancels out).
/// `SESSION_CALLGRIND_WHAT` = `store` (`store.touch`, the default), `manager`
/// (`SessionManager::validate`) or `plain` (the manager without a device fingerprint).
fn callgrind(n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let clock = ManualClock::default();
    let store = Arc::new(MemorySessionStore::with_clock(clock.shared()));
    let what = std::env::var("SESSION_CALLGRIND_WHAT").unwrap_or_default();
    let fingerprint = if what == "plain" {
        FingerprintConfig::none()
    } else {
        FingerprintConfig::default()
    };
    let manager = SessionManager::new(
        store.clone(),
        SessionConfig::builder()
            .fingerprint(fingerprint)
            .build()
            .unwrap_or_default(),
    );
    let tokens = rt.block_on(populate(&manager, 1000));
    let c_info = client();
    rt.block_on(async {
        for i in 0..n {
            let token = &tokens[i % tokens.len()];
            let ok = if what.is_empty() || what == "store" {
                matches!(
                    store.touch(token, Touch::default()).await,
                    Ok(TouchOutcome::Valid(_))
                )
            } else {
                matches!(
                    manager.validate(token, &c_info).await,
                    Ok(Validation::Valid(_))
                )
            };
            assert!(ok, "validation {i} failed");
        }
    });
}

criterion_group!(benches, memory, redis_sequential);

fn main() {
    if let Ok(n) = std::env::var("SESSION_CALLGRIND") {
        callgrind(n.parse().unwrap_or(0));
        return;
    }
    if let Ok(what) = std::env::var("SESSION_RAW") {
        redis_raw(&what);
        return;
    }
    if std::env::var("SESSION_LOAD_ONLY").is_ok() {
        redis_load();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    redis_load();
}
