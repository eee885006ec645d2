//! AccountStore hot paths, written once and run per backend (labelled by backend):
//! `get` (what `/v1/me` needs), `find_by_login` by username and by email (login), and
//! `create` (registration). Postgres runs when `UMANAGE_TEST_DATABASE_URL` is set, in a
//! private schema dropped afterwards.
//!
//! `cargo bench -p umanage-account --all-features --bench store`

#![allow(missing_docs, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use umanage_account::{AccountStore, MemoryAccountStore, NewAccount};

const ACCOUNTS: usize = 2_000;

fn bench_store(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    label: &str,
    store: &Arc<dyn AccountStore>,
) {
    let ids: Vec<_> = rt.block_on(async {
        let mut ids = Vec::with_capacity(ACCOUNTS);
        for i in 0..ACCOUNTS {
            let a = store
                .create(NewAccount::new(
                    format!("user{i}"),
                    format!("User{i}@Example.com"),
                ))
                .await
                .unwrap();
            ids.push(a.id);
        }
        ids
    });
    let mut group = c.benchmark_group(format!("account/{label}"));
    let mut n = 0_usize;
    group.bench_function("get", |b| {
        b.to_async(rt).iter(|| {
            n = (n + 7) % ACCOUNTS;
            let (store, id) = (Arc::clone(store), ids[n]);
            async move { black_box(store.get(id).await.unwrap()) }
        });
    });
    let mut n = 0_usize;
    group.bench_function("find_by_login/username", |b| {
        b.to_async(rt).iter(|| {
            n = (n + 7) % ACCOUNTS;
            let (store, login) = (Arc::clone(store), format!("USER{n}"));
            async move { black_box(store.find_by_login(&login).await.unwrap()) }
        });
    });
    let mut n = 0_usize;
    group.bench_function("find_by_login/email", |b| {
        b.to_async(rt).iter(|| {
            n = (n + 7) % ACCOUNTS;
            let (store, login) = (Arc::clone(store), format!("user{n}@example.COM"));
            async move { black_box(store.find_by_login(&login).await.unwrap()) }
        });
    });
    let counter = Arc::new(AtomicU64::new(0));
    group.bench_function("create", |b| {
        b.to_async(rt).iter(|| {
            let i = counter.fetch_add(1, Ordering::Relaxed);
            let store = Arc::clone(store);
            async move {
                black_box(
                    store
                        .create(NewAccount::new(
                            format!("new{i}"),
                            format!("new{i}@example.com"),
                        ))
                        .await
                        .unwrap(),
                )
            }
        });
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let memory: Arc<dyn AccountStore> = Arc::new(MemoryAccountStore::new());
    bench_store(c, &rt, "memory", &memory);

    #[cfg(feature = "postgres")]
    if let Some(db) = rt.block_on(umanage_core::testkit::postgres()) {
        rt.block_on(umanage_account::postgres::migrate(db.pool()))
            .unwrap();
        let store = umanage_account::PostgresAccountStore::new(db.pool().clone());
        let store: Arc<dyn AccountStore> = Arc::new(store);
        bench_store(c, &rt, "postgres", &store);
        drop(db);
    }
}

criterion_group!(account, benches);
criterion_main!(account);
