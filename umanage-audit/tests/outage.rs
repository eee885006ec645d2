//! Postgres goes away mid-load (through a TCP proxy the test controls) and comes back:
//! nothing recorded is lost, nothing is duplicated, the chain verifies.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use umanage_audit::{
    ActorType, AuditChain, AuditEvent, AuditFilter, AuditLogger, AuditStorage, CheckpointKey,
    Keyring, LoggerConfig, PostgresAuditStorage, StorageDestination, event_types,
};
use umanage_core::{ManualClock, testkit};

/// A loopback TCP proxy to `upstream` that the test can cut (existing connections are
/// killed, new ones are closed at once) and restore.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (d, c) = (Arc::clone(&down), Arc::clone(&conns));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                c.lock().push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self {
            port,
            down,
            conns,
            accept,
        }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_load_loses_nothing() {
    let Some(db) = testkit::postgres().await else {
        return;
    };
    PostgresAuditStorage::migrate(db.pool()).await.unwrap();
    let direct: PgConnectOptions = db.url().parse().unwrap();
    let upstream = format!("{}:{}", direct.get_host(), direct.get_port());
    let proxy = Proxy::start(upstream).await;
    let via_proxy = direct
        .host("127.0.0.1")
        .port(proxy.port)
        .application_name(db.schema())
        .options([("search_path", db.schema())]);
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_millis(500))
        .connect_with(via_proxy)
        .await
        .unwrap();
    let storage: Arc<dyn AuditStorage> = Arc::new(PostgresAuditStorage::new(pool));
    let logger = AuditLogger::builder(
        LoggerConfig::builder()
            .queue_capacity(5000)
            .batch_size(50)
            .batch_delay(Duration::from_millis(10))
            .retry(Duration::from_millis(20), Duration::from_millis(200))
            .build()
            .unwrap(),
    )
    .destination(StorageDestination::new(Arc::clone(&storage), "c"))
    .start()
    .unwrap();

    let clock = ManualClock::default();
    let mut ids = Vec::new();
    for phase in 0..3 {
        for i in 0..300 {
            clock.advance(Duration::from_millis(1));
            let e = AuditEvent::builder(event_types::LOGIN_SUCCESS, &clock)
                .actor(ActorType::User, format!("u{}", i % 7))
                .build()
                .unwrap();
            ids.push(e.id);
            logger.record(e).await.unwrap();
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        match phase {
            0 => proxy.cut(),
            1 => {
                // stay down long enough for several failed attempts
                tokio::time::sleep(Duration::from_millis(800)).await;
                proxy.restore();
            }
            _ => {}
        }
    }
    let stats = logger.shutdown().await.unwrap();
    assert_eq!(
        (stats.queued, stats.written, stats.dropped),
        (900, 900, 0),
        "{stats:?}"
    );
    assert!(stats.retried > 0, "the outage caused no retry: {stats:?}");

    // Check through the direct pool.
    let direct_store = PostgresAuditStorage::new(db.pool().clone());
    assert_eq!(direct_store.count(&AuditFilter::new()).await.unwrap(), 900);
    let stored: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM umanage_audit_events ORDER BY id")
            .fetch_all(db.pool())
            .await
            .unwrap();
    ids.sort();
    assert_eq!(stored, ids);
    let key = CheckpointKey::new("k", vec![9; 32]).unwrap();
    let chain = AuditChain::new(Arc::new(direct_store), Keyring::new(key), clock.shared());
    let r = chain.verify("c", ..).await.unwrap();
    assert!(r.is_intact() && r.events_checked == 900, "{r:?}");
}
