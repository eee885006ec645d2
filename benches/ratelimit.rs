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

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
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
    let s = Strategy::gcra(10, Duration::from_secs(1), 10).unwrap();
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
                    RateLimiter::keyed(Quota::per_second(NonZeroU32::new(10).unwrap()));
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

criterion_group!(benches, keyed_gcra, distinct_keys, redis_concurrent);
criterion_main!(benches);
