//! Argon2id hashing at the plan's parameters (t=3, m=64 MiB, p=4, 32-byte output) and at
//! OWASP's (t=2, m=19 MiB, p=1), plus the bounded hashing pool under concurrent logins.
//!
//! `cargo bench -p umanage-password --bench argon2_hash -- --warm-up-time 1 --measurement-time 5`
//!
//! `benches/argon2_vs_c.sh` runs this beside the C reference implementation (argon2-cffi, the
//! peer bench in `/work/shared/peers/compute/argon2`) in interleaved rounds and prints the
//! ratio. Target (issue 3): at most 1.0× the C reference's wall time.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use umanage_password::hash::{HasherConfig, PasswordHasher};
use umanage_password::normalize::NormalizedPassword;
use umanage_password::pool::{HashingPool, PoolConfig};

/// The password and parameter sets of the peer bench (same names).
const PASSWORD: &str = "correct horse battery staple";

fn sets() -> Vec<(&'static str, HasherConfig)> {
    vec![
        ("t3_m65536_p4", HasherConfig::default()),
        (
            "owasp_t2_m19456_p1",
            HasherConfig::builder()
                .t_cost(2)
                .m_cost_kib(19_456)
                .p_cost(1)
                .build()
                .unwrap(),
        ),
    ]
}

fn hashing(c: &mut Criterion) {
    let password = NormalizedPassword::new(PASSWORD).unwrap();
    let mut group = c.benchmark_group("argon2id");
    group.sample_size(10);
    for (name, config) in sets() {
        assert_eq!(config.output_len(), 32);
        let hasher = PasswordHasher::new(config);
        group.bench_function(name, |b| {
            b.iter(|| black_box(hasher.hash(black_box(&password)).unwrap()));
        });
    }
    group.finish();
}

/// Four logins hashing at once through a pool of `max_concurrent` = number of CPUs: the
/// time for the batch (the lanes of all hashes share rayon's pool).
fn pool(c: &mut Criterion) {
    let password = NormalizedPassword::new(PASSWORD).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hasher = PasswordHasher::new(HasherConfig::default());
    let pool = HashingPool::new(
        hasher,
        PoolConfig::new(PoolConfig::default_concurrency(), Duration::from_secs(60)).unwrap(),
    );
    let mut group = c.benchmark_group("argon2id_pool");
    group.sample_size(10);
    group.bench_function("t3_m65536_p4_batch_of_4", |b| {
        b.to_async(&rt).iter(|| {
            let pool = pool.clone();
            let password = password.clone();
            async move {
                let mut tasks = Vec::new();
                for _ in 0..4 {
                    let pool = pool.clone();
                    let password = password.clone();
                    tasks.push(tokio::spawn(async move { pool.hash(password).await }));
                }
                for t in tasks {
                    black_box(t.await.unwrap().unwrap());
                }
            }
        });
    });
    group.finish();
}

criterion_group!(benches, hashing, pool);
criterion_main!(benches);
