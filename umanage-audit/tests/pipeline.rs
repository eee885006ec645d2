//! The logger pipeline: retries, draining, backpressure, redaction before storage.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use umanage_audit::testing::CollectingDestination;
use umanage_audit::{
    ActorType, AuditChain, AuditDestination, AuditEvent, AuditFilter, AuditLogger, AuditQuery,
    AuditStorage, Backpressure, CheckpointKey, Error, Keyring, LoggerConfig, MemoryAuditStorage,
    Recorded, Redactor, StorageDestination, event_types,
};
use umanage_core::ManualClock;

/// Fails its first `fail` deliveries, then stores (idempotently) into memory storage.
#[derive(Debug)]
struct Flaky {
    fail: usize,
    calls: AtomicUsize,
    inner: StorageDestination,
}

#[async_trait]
impl AuditDestination for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    async fn deliver(&self, events: &[AuditEvent]) -> umanage_audit::Result<()> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail {
            return Err(Error::Destination {
                destination: "flaky".into(),
                reason: "down".into(),
            });
        }
        self.inner.deliver(events).await
    }
}

fn config() -> umanage_audit::pipeline::LoggerConfigBuilder {
    LoggerConfig::builder()
        .batch_size(10)
        .queue_capacity(100)
        .batch_delay(Duration::from_millis(20))
        .retry(Duration::from_millis(5), Duration::from_millis(20))
}

fn events(clock: &ManualClock, n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            clock.advance(Duration::from_millis(1));
            AuditEvent::builder(event_types::LOGIN_SUCCESS, clock)
                .actor(ActorType::User, format!("u{i}"))
                .build()
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_failing_n_times_loses_nothing() {
    let clock = ManualClock::default();
    let storage: Arc<dyn AuditStorage> = Arc::new(MemoryAuditStorage::new());
    let collect = Arc::new(CollectingDestination::default());
    let logger = AuditLogger::builder(config().build().unwrap())
        .destination(Flaky {
            fail: 5,
            calls: AtomicUsize::new(0),
            inner: StorageDestination::new(Arc::clone(&storage), "c"),
        })
        .destination(Arc::clone(&collect))
        .start()
        .unwrap();
    for e in events(&clock, 55) {
        assert_eq!(logger.record(e).await.unwrap(), Recorded::Queued);
    }
    logger.flush().await.unwrap();
    let stats = logger.stats();
    assert_eq!((stats.queued, stats.written), (55, 55), "{stats:?}");
    assert!(stats.retried >= 5, "{stats:?}");
    assert_eq!(storage.count(&AuditFilter::new()).await.unwrap(), 55);
    // the healthy destination got each batch once, not once per retry
    assert_eq!(collect.events.lock().len(), 55);
    let key = CheckpointKey::new("k", vec![1; 32]).unwrap();
    let chain = AuditChain::new(storage, Keyring::new(key), clock.shared());
    assert!(chain.verify("c", ..).await.unwrap().is_intact());
    logger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_the_queue_and_then_refuses() {
    let clock = ManualClock::default();
    let collect = Arc::new(CollectingDestination::default());
    let logger = AuditLogger::builder(
        config()
            .batch_delay(Duration::from_secs(3600))
            .batch_size(50)
            .build()
            .unwrap(),
    )
    .destination(Arc::clone(&collect))
    .start()
    .unwrap();
    for e in events(&clock, 37) {
        logger.record(e).await.unwrap();
    }
    let stats = logger.shutdown().await.unwrap();
    assert_eq!(stats.written, 37);
    assert_eq!(collect.events.lock().len(), 37);
    let late = events(&clock, 1).pop().unwrap();
    assert!(matches!(logger.record(late).await, Err(Error::Closed)));
}

/// A destination that blocks until released.
#[derive(Debug)]
struct Gate(tokio::sync::Semaphore, CollectingDestination);

#[async_trait]
impl AuditDestination for Gate {
    fn name(&self) -> &'static str {
        "gate"
    }
    async fn deliver(&self, events: &[AuditEvent]) -> umanage_audit::Result<()> {
        let _p = self.0.acquire().await.unwrap();
        self.1.deliver(events).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_rejects_loudly_or_spills() {
    let clock = ManualClock::default();
    let gate = Arc::new(Gate(
        tokio::sync::Semaphore::new(0),
        CollectingDestination::default(),
    ));
    let logger = AuditLogger::builder(
        config()
            .queue_capacity(2)
            .batch_size(1)
            .backpressure(Backpressure::Wait(Duration::from_millis(20)))
            .build()
            .unwrap(),
    )
    .destination(Arc::clone(&gate))
    .start()
    .unwrap();
    let mut rejected = 0;
    for e in events(&clock, 10) {
        if let Err(err) = logger.record(e).await {
            assert!(matches!(err, Error::QueueFull(_)), "{err:?}");
            rejected += 1;
        }
    }
    assert!(rejected > 0);
    assert_eq!(logger.stats().dropped, rejected);
    gate.0.add_permits(1000);
    logger.shutdown().await.unwrap();
    assert_eq!(gate.1.events.lock().len() as u64, 10 - rejected);

    // The same with a spill file: nothing is rejected, everything arrives.
    let dir = std::env::temp_dir().join(format!("umanage-audit-spill-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let gate = Arc::new(Gate(
        tokio::sync::Semaphore::new(0),
        CollectingDestination::default(),
    ));
    let logger = AuditLogger::builder(
        config()
            .queue_capacity(2)
            .batch_size(1)
            .backpressure(Backpressure::Spill {
                wait: Duration::from_millis(10),
                path: dir.join("spill.jsonl"),
            })
            .build()
            .unwrap(),
    )
    .destination(Arc::clone(&gate))
    .start()
    .unwrap();
    let sent = events(&clock, 10);
    let mut spilled = 0;
    for e in sent.clone() {
        if logger.record(e).await.unwrap() == Recorded::Spilled {
            spilled += 1;
        }
    }
    assert!(spilled > 0);
    gate.0.add_permits(1000);
    let stats = logger.shutdown().await.unwrap();
    assert_eq!((stats.spilled, stats.dropped), (spilled, 0));
    let mut got: Vec<_> = gate.1.events.lock().iter().map(|e| e.id).collect();
    let mut want: Vec<_> = sent.iter().map(|e| e.id).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_sampling_never_drop_security_events() {
    let clock = ManualClock::default();
    let collect = Arc::new(CollectingDestination::default());
    let logger = AuditLogger::builder(config().build().unwrap())
        .filter(umanage_audit::pipeline::Sampler::new(0.0).unwrap())
        .enricher(umanage_audit::pipeline::HostEnricher::new(
            "h1", "svc", "1.2.3",
        ))
        .destination(Arc::clone(&collect))
        .start()
        .unwrap();
    for e in events(&clock, 5) {
        assert_eq!(logger.record(e).await.unwrap(), Recorded::Filtered);
    }
    let fail = AuditEvent::builder(event_types::LOGIN_FAILURE, &clock)
        .build()
        .unwrap();
    assert_eq!(logger.record(fail).await.unwrap(), Recorded::Queued);
    logger.flush().await.unwrap();
    let got = collect.events.lock().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].hostname.as_deref(), Some("h1"));
    assert_eq!(logger.stats().filtered, 5);
    logger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_happens_before_the_postgres_row_is_written_and_hashed() {
    let Some(db) = umanage_core::testkit::postgres().await else {
        return;
    };
    umanage_audit::PostgresAuditStorage::migrate(db.pool())
        .await
        .unwrap();
    let storage: Arc<dyn AuditStorage> =
        Arc::new(umanage_audit::PostgresAuditStorage::new(db.pool().clone()));
    let clock = ManualClock::default();
    let logger = AuditLogger::builder(config().build().unwrap())
        .transformer(Redactor::standard())
        .destination(StorageDestination::new(Arc::clone(&storage), "c"))
        .start()
        .unwrap();
    let e = AuditEvent::builder(event_types::PASSWORD_CHANGED, &clock)
        .actor(ActorType::User, "u1")
        .change(
            serde_json::json!({"password": "old-secret-pw", "email": "ann@example.com"}),
            serde_json::json!({"password": "new-secret-pw", "email": "ann@example.org"}),
        )
        .build()
        .unwrap();
    logger.record(e).await.unwrap();
    logger.shutdown().await.unwrap();
    let raw: String = sqlx::query_scalar("SELECT event::text FROM umanage_audit_events")
        .fetch_one(db.pool())
        .await
        .unwrap();
    for secret in ["old-secret-pw", "new-secret-pw", "ann@"] {
        assert!(!raw.contains(secret), "{secret} stored: {raw}");
    }
    assert!(raw.contains("a***@example.com"), "{raw}");
    let page = storage
        .query(&AuditQuery::new(AuditFilter::new()))
        .await
        .unwrap();
    let stored = &page.events[0];
    assert_eq!(stored.recompute().unwrap(), stored.hash);
}

type Received = Arc<parking_lot::Mutex<Vec<(String, Vec<u8>)>>>;

/// A tiny HTTP/1.1 server: answers 503 to the first `fail` requests, then 200, and keeps
/// every accepted body.
async fn hook_server(fail: usize) -> (u16, Received) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Received = Arc::default();
    let seen = Arc::clone(&got);
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, len) = loop {
                let k = s.read(&mut chunk).await.unwrap();
                if k == 0 {
                    break (0, 0);
                }
                buf.extend_from_slice(&chunk[..k]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    break (p + 4, len);
                }
            };
            while buf.len() < head_end + len {
                let k = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..k]);
            }
            n += 1;
            let status = if n <= fail {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            if n > fail {
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                seen.lock().push((head, buf[head_end..].to_vec()));
            }
            let _ = s
                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                .await;
        }
    });
    (port, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_posts_batches_and_is_retried() {
    let (port, got) = hook_server(3).await;
    let clock = ManualClock::default();
    let hook = umanage_audit::WebhookDestination::new(&format!("http://127.0.0.1:{port}/audit"))
        .unwrap()
        .signing_secret("hook-secret");
    let logger = AuditLogger::builder(config().build().unwrap())
        .destination(hook)
        .start()
        .unwrap();
    let sent = events(&clock, 25);
    for e in sent.clone() {
        logger.record(e).await.unwrap();
    }
    let stats = logger.shutdown().await.unwrap();
    assert!(stats.retried >= 3, "{stats:?}");
    let got = got.lock().clone();
    let mut ids = Vec::new();
    for (head, body) in &got {
        assert!(head.starts_with("post /audit "), "{head}");
        assert!(head.contains("x-umanage-signature: sha256="), "{head}");
        assert!(head.contains("idempotency-key: "), "{head}");
        let batch: Vec<AuditEvent> = serde_json::from_slice(body).unwrap();
        ids.extend(batch.into_iter().map(|e| e.id));
    }
    assert_eq!(ids, sent.iter().map(|e| e.id).collect::<Vec<_>>());
}

/// Never accepts anything.
#[derive(Debug)]
struct Dead;

#[async_trait]
impl AuditDestination for Dead {
    fn name(&self) -> &'static str {
        "dead"
    }
    async fn deliver(&self, _: &[AuditEvent]) -> umanage_audit::Result<()> {
        Err(Error::Destination {
            destination: "dead".into(),
            reason: "down".into(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_its_timeout_spills_or_reports_what_is_left() {
    let clock = ManualClock::default();
    // Without a spill file: an error naming the count, and `dropped` says so.
    let logger = AuditLogger::builder(
        config()
            .shutdown_timeout(Duration::from_millis(200))
            .build()
            .unwrap(),
    )
    .destination(Dead)
    .start()
    .unwrap();
    for e in events(&clock, 7) {
        logger.record(e).await.unwrap();
    }
    let err = logger.shutdown().await.unwrap_err();
    assert!(err.to_string().contains("7 events"), "{err}");
    assert_eq!(logger.stats().dropped, 7);

    // With a spill file: everything goes there, and a later logger delivers it.
    let dir = std::env::temp_dir().join(format!("umanage-audit-spill-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let spill = Backpressure::Spill {
        wait: Duration::from_millis(10),
        path: dir.join("spill.jsonl"),
    };
    let logger = AuditLogger::builder(
        config()
            .backpressure(spill.clone())
            .shutdown_timeout(Duration::from_millis(200))
            .build()
            .unwrap(),
    )
    .destination(Dead)
    .start()
    .unwrap();
    let sent = events(&clock, 9);
    for e in sent.clone() {
        logger.record(e).await.unwrap();
    }
    let stats = logger.shutdown().await.unwrap();
    assert_eq!((stats.spilled, stats.dropped), (9, 0), "{stats:?}");

    let collect = Arc::new(CollectingDestination::default());
    let next = AuditLogger::builder(config().backpressure(spill).build().unwrap())
        .destination(Arc::clone(&collect))
        .start()
        .unwrap();
    next.flush().await.unwrap();
    let got: Vec<_> = collect.events.lock().iter().map(|e| e.id).collect();
    assert_eq!(got, sent.iter().map(|e| e.id).collect::<Vec<_>>());
    next.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
