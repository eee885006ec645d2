//! umanage-ratelimit benches: the memory limiter's keyed GCRA check beside governor's keyed
//! check, 1,000,000 distinct keys (time, peak memory, the eviction bound), and the Redis
//! limiter at 50 concurrent tasks.
//!
//! `cargo bench --bench ratelimit` (Redis: `UMANAGE_BENCH_REDIS_URL`, default
//! `redis://127.0.0.1:6379`; the Redis group is skipped if it does not answer).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::items_after_statements
)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use umanage_ratelimit::{MemoryRateLimiter, RateLimitStore, RedisRateLimiter, Strategy};

/// A GCRA quota a loop never exhausts (1 per µs, bursts of 10^9), like governor's
/// `Quota::per_second(u32::MAX)` in the peer bench.
fn open_gcra() -> Strategy {
    Strategy::gcra(1_000_000, Duration::from_secs(1), 1_000_000_000).unwrap()
}

/// Polls a future that completes without waiting (the memory limiter's).
fn now_or_never<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("memory limiter future was pending"),
    }
}

fn keyed_gcra(c: &mut Criterion) {
    let mut g = c.benchmark_group("keyed_gcra_check");
    g.throughput(Throughput::Elements(1));

    g.bench_function("system_clock_now", |b| {
        use umanage_core::Clock as _;
        let clock = umanage_core::SystemClock;
        b.iter(|| black_box(clock.now()));
    });
    g.bench_function("instant_now", |b| {
        b.iter(|| black_box(Instant::now()));
    });
    let gov: DefaultKeyedRateLimiter<u64> = RateLimiter::keyed(Quota::per_second(NonZeroU32::MAX));
    g.bench_function(BenchmarkId::new("governor", "hot_key"), |b| {
        b.iter(|| gov.check_key(black_box(&42u64)).is_ok());
    });
    let ours = MemoryRateLimiter::new();
    let s = open_gcra();
    g.bench_function(BenchmarkId::new("umanage_memory", "hot_key"), |b| {
        b.iter(|| {
            ours.check_sync(black_box("user:42"), &s, 1)
                .unwrap()
                .allowed
        });
    });
    let dynamic: Arc<dyn RateLimitStore> = Arc::new(MemoryRateLimiter::new());
    g.bench_function(BenchmarkId::new("umanage_memory_dyn", "hot_key"), |b| {
        b.iter(|| {
            now_or_never(dynamic.check(black_box("user:42"), &s, 1))
                .unwrap()
                .allowed
        });
    });

    const KEYS: usize = 10_000;
    let names: Vec<String> = (0..KEYS).map(|i| format!("user:{i}")).collect();
    let mut i = 0usize;
    g.bench_function(BenchmarkId::new("governor", "10k_keys"), |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            gov.check_key(black_box(&(i as u64))).is_ok()
        });
    });
    let gov_str: DefaultKeyedRateLimiter<String> =
        RateLimiter::keyed(Quota::per_second(NonZeroU32::MAX));
    g.bench_function(BenchmarkId::new("governor_string_keys", "10k_keys"), |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            gov_str.check_key(black_box(&names[i])).is_ok()
        });
    });
    g.bench_function(BenchmarkId::new("umanage_memory", "10k_keys"), |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            ours.check_sync(black_box(&names[i]), &s, 1)
                .unwrap()
                .allowed
        });
    });
    g.finish();
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn distinct_keys(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let names: Vec<String> = (0..N)
        .map(|i| format!("ip:10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    // 10 per hour: no key's state expires during the run, so every key is really held
    // (until the bound evicts)
    let s = Strategy::gcra(10, Duration::from_secs(3600), 10).unwrap();
    // Peak memory, measured once before the timed runs: the default bound (1M keys) and a
    // limiter capped at 100k keys that sees the same 1M keys.
    let before = vm_hwm_kib();
    let full = MemoryRateLimiter::new();
    for k in &names {
        full.check_sync(k, &s, 1).unwrap();
    }
    let after_full = vm_hwm_kib();
    eprintln!(
        "ratelimit_memory_1m_keys: held {} keys, VmHWM {:.1} MiB (+{:.1} MiB, {:.0} bytes/key)",
        full.len(),
        after_full as f64 / 1024.0,
        (after_full - before) as f64 / 1024.0,
        (after_full - before) as f64 * 1024.0 / N as f64
    );
    drop(full);
    let capped = MemoryRateLimiter::builder()
        .max_keys(100_000)
        .build()
        .unwrap();
    for k in &names {
        capped.check_sync(k, &s, 1).unwrap();
    }
    eprintln!(
        "ratelimit_memory_1m_keys_capped_100k: held {} keys (capacity {})",
        capped.len(),
        capped.capacity()
    );
    drop(capped);

    let mut g = c.benchmark_group("distinct_1m_new_keys");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("umanage_memory", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let lim = MemoryRateLimiter::new();
                let t = Instant::now();
                for k in &names {
                    black_box(lim.check_sync(k, &s, 1).unwrap());
                }
                total += t.elapsed();
            }
            total
        });
    });
    g.bench_function("governor", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let lim: DefaultKeyedRateLimiter<u64> =
                    RateLimiter::keyed(Quota::per_hour(NonZeroU32::new(10).unwrap()));
                let t = Instant::now();
                for k in 0..N as u64 {
                    black_box(lim.check_key(&k).is_ok());
                }
                total += t.elapsed();
            }
            total
        });
    });
    g.finish();
}

fn redis_concurrent(c: &mut Criterion) {
    const TASKS: u64 = 50;
    let url = std::env::var("UMANAGE_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn = rt.block_on(async {
        let cfg = umanage_core::redis::RedisConfig::builder(&url)
            .key_prefix("umanage-bench-rl")
            .build()
            .ok()?;
        let conn = cfg.connect().await.ok()?;
        conn.ping().await.ok()?;
        Some(conn)
    });
    let Some(conn) = conn else {
        eprintln!("skipping the Redis bench: {url} does not answer");
        return;
    };
    let limiter = Arc::new(RedisRateLimiter::new(conn));
    // like the peers: every hit allowed, 10,000 distinct keys
    let s = Strategy::gcra(1_000_000, Duration::from_secs(60), 1_000_000).unwrap();
    let mut g = c.benchmark_group("redis_check_50_tasks");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.bench_function("umanage_redis_gcra", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let limiter = Arc::clone(&limiter);
            async move {
                let per_task = iters.div_ceil(TASKS);
                let t = Instant::now();
                let mut tasks = Vec::new();
                for task in 0..TASKS {
                    let limiter = Arc::clone(&limiter);
                    tasks.push(tokio::spawn(async move {
                        for i in 0..per_task {
                            let key = format!("k{}", (task * 7919 + i) % 10_000);
                            black_box(limiter.check(&key, &s, 1).await.unwrap());
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                t.elapsed()
                    .mul_f64(iters as f64 / (per_task * TASKS) as f64)
            }
        });
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------
// Instruction counts: `RATELIMIT_PROFILE=<n>` runs each loop below `n` times and exits, for
// `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*prof_*'` (see
// benches/ratelimit_callgrind.sh, which reports instructions per check of each loop).

#[inline(never)]
fn prof_governor_hot(lim: &DefaultKeyedRateLimiter<u64>, n: u64) -> u64 {
    (0..n)
        .filter(|_| lim.check_key(black_box(&42u64)).is_ok())
        .count() as u64
}

#[inline(never)]
fn prof_umanage_hot(lim: &MemoryRateLimiter, s: &Strategy, n: u64) -> u64 {
    (0..n)
        .filter(|_| lim.check_sync(black_box("user:42"), s, 1).unwrap().allowed)
        .count() as u64
}

#[inline(never)]
fn prof_governor_string_10k(
    lim: &DefaultKeyedRateLimiter<String>,
    names: &[String],
    n: u64,
) -> u64 {
    let mut i = 0;
    (0..n)
        .filter(|_| {
            i = (i + 7919) % names.len();
            lim.check_key(black_box(&names[i])).is_ok()
        })
        .count() as u64
}

#[inline(never)]
fn prof_umanage_10k(lim: &MemoryRateLimiter, s: &Strategy, names: &[String], n: u64) -> u64 {
    let mut i = 0;
    (0..n)
        .filter(|_| {
            i = (i + 7919) % names.len();
            lim.check_sync(black_box(&names[i]), s, 1).unwrap().allowed
        })
        .count() as u64
}

fn profile(n: u64) {
    let s = open_gcra();
    let names: Vec<String> = (0..10_000).map(|i| format!("user:{i}")).collect();
    let gov: DefaultKeyedRateLimiter<u64> = RateLimiter::keyed(Quota::per_second(NonZeroU32::MAX));
    let gov_str: DefaultKeyedRateLimiter<String> =
        RateLimiter::keyed(Quota::per_second(NonZeroU32::MAX));
    let ours = MemoryRateLimiter::new();
    // warm: every key present before the counted loops
    prof_governor_string_10k(&gov_str, &names, 10_000);
    prof_umanage_10k(&ours, &s, &names, 10_000);
    let total = prof_governor_hot(&gov, n)
        + prof_umanage_hot(&ours, &s, n)
        + prof_governor_string_10k(&gov_str, &names, n)
        + prof_umanage_10k(&ours, &s, &names, n);
    eprintln!("profiled {n} checks per loop ({total} allowed)");
}

/// `RATELIMIT_INTERLEAVED=<rounds>`: governor's and umanage's hot-key and 10k-key checks
/// timed alternately (1,000,000 checks each per round), so a burst of load from other
/// processes hits both; prints each round's ns per check and the median ratios.
fn interleaved(rounds: usize) {
    const N: u64 = 1_000_000;
    let s = open_gcra();
    let names: Vec<String> = (0..10_000).map(|i| format!("user:{i}")).collect();
    let gov: DefaultKeyedRateLimiter<u64> = RateLimiter::keyed(Quota::per_second(NonZeroU32::MAX));
    let gov_str: DefaultKeyedRateLimiter<String> =
        RateLimiter::keyed(Quota::per_second(NonZeroU32::MAX));
    let ours = MemoryRateLimiter::new();
    prof_governor_string_10k(&gov_str, &names, 20_000);
    prof_umanage_10k(&ours, &s, &names, 20_000);
    let time = |f: &mut dyn FnMut() -> u64| {
        let t = Instant::now();
        black_box(f());
        t.elapsed().as_nanos() as f64 / N as f64
    };
    let (mut hot, mut many) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let g = time(&mut || prof_governor_hot(&gov, N));
        let u = time(&mut || prof_umanage_hot(&ours, &s, N));
        let gs = time(&mut || prof_governor_string_10k(&gov_str, &names, N));
        let us = time(&mut || prof_umanage_10k(&ours, &s, &names, N));
        println!(
            "round {round}: hot key governor {g:.1} ns umanage {u:.1} ns ({:.2}x); 10k keys governor(String) {gs:.1} ns umanage {us:.1} ns ({:.2}x)",
            u / g,
            us / gs
        );
        hot.push(u / g);
        many.push(us / gs);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median ratio umanage/governor: hot key {:.2}x, 10k keys {:.2}x",
        median(&mut hot),
        median(&mut many)
    );
}

criterion_group!(benches, keyed_gcra, distinct_keys, redis_concurrent);

// ---------------------------------------------------------------------------------------
// Redis load driver: `RATELIMIT_LOAD_ONLY=1` runs CONCURRENCY (50) tasks checking GCRA on
// KEYS (10,000) keys for DURATION (5) s after WARMUP (1) s, over CONNS (1) connections, and
// prints `umanage_ratelimit_redis_gcra_c<conns> ops_per_sec=.. p50_ms=.. p99_ms=..` in the
// peers' format (benches/ratelimit_compare.sh runs it beside redis-benchmark and
// rate-limiter-flexible).

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn redis_load() {
    let url = std::env::var("UMANAGE_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let tasks: usize = env_or("CONCURRENCY", 50);
    let keys: u64 = env_or("KEYS", 10_000);
    let conns: usize = env_or("CONNS", 1);
    let duration = Duration::from_secs_f64(env_or("DURATION", 5.0));
    let warmup = Duration::from_secs_f64(env_or("WARMUP", 1.0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let prefix = format!("umanage-bench-rl-{}", std::process::id());
        let cfg = umanage_core::redis::RedisConfig::builder(&url)
            .key_prefix(&prefix)
            .connections(conns.max(1))
            .build()
            .unwrap();
        let connection = cfg.connect().await.expect("redis connection");
        let limiter = Arc::new(RedisRateLimiter::new(connection));
        let s = Strategy::gcra(1_000_000, Duration::from_secs(60), 1_000_000).unwrap();
        let start = Instant::now();
        let measure_from = start + warmup;
        let stop = measure_from + duration;
        let mut handles = Vec::new();
        for task in 0..tasks as u64 {
            let limiter = Arc::clone(&limiter);
            handles.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                let mut key = String::with_capacity(16);
                let mut i = task * 7919;
                loop {
                    use std::fmt::Write as _;
                    key.clear();
                    write!(key, "k{}", i % keys).unwrap();
                    i += 1;
                    let t = Instant::now();
                    assert!(limiter.check(&key, &s, 1).await.unwrap().allowed);
                    let done = Instant::now();
                    if done >= stop {
                        break;
                    }
                    if t >= measure_from {
                        lat.push(done - t);
                    }
                }
                lat
            }));
        }
        let mut lat: Vec<Duration> = Vec::new();
        for h in handles {
            lat.extend(h.await.unwrap());
        }
        lat.sort_unstable();
        let pct = |p: f64| {
            let rank = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
            lat[rank - 1].as_secs_f64() * 1000.0
        };
        println!(
            "umanage_ratelimit_redis_gcra_c{conns} ops_per_sec={:.1} p50_ms={:.3} p99_ms={:.3}",
            lat.len() as f64 / duration.as_secs_f64(),
            pct(0.50),
            pct(0.99)
        );
        // clean up the keys this run wrote
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut c)
            .await
            .unwrap();
        for chunk in found.chunks(500) {
            let _: i64 = redis::cmd("DEL")
                .arg(chunk)
                .query_async(&mut c)
                .await
                .unwrap();
        }
    });
}

fn main() {
    if let Some(rounds) = std::env::var("RATELIMIT_INTERLEAVED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        interleaved(rounds);
        return;
    }
    if std::env::var("RATELIMIT_LOAD_ONLY").is_ok_and(|v| v == "1") {
        redis_load();
        return;
    }
    if let Some(n) = std::env::var("RATELIMIT_PROFILE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        profile(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
