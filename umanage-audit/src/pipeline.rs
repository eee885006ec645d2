//! [`AuditLogger`]: enrich -> filter -> transform (redact) -> bounded queue -> batches ->
//! fan-out to destinations with retry.
//!
//! # Delivery guarantees
//!
//! * Enrichers, filters and transformers run inside [`AuditLogger::record`], before the
//!   event is queued, so no unredacted value ever reaches the queue, a spill file, a
//!   destination, a hash or a table.
//! * The queue is bounded. When it is full, `record` waits up to
//!   [`Backpressure`]'s timeout; then it either spills the event to a local JSON-lines
//!   file (replayed into the queue's destinations later) or returns
//!   [`Error::QueueFull`] and counts the event as dropped. No event is ever dropped
//!   silently.
//! * The worker delivers batches (by size or age) to every destination; a failing
//!   destination is retried with exponential backoff until it accepts the batch, without
//!   resending to destinations that already did. Destinations are idempotent by event id
//!   (storage) or at-least-once (files, logs), so a retry never duplicates a stored event.
//! * [`AuditLogger::flush`] returns once everything recorded before it is delivered;
//!   [`AuditLogger::shutdown`] drains the queue and the spill file, and after its timeout
//!   spills (or reports as dropped) what still could not be delivered.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use umanage_core::RequestContext;

use crate::error::{Error, Result};
use crate::model::{AuditEvent, Severity};
use crate::store::AuditStorage;

/// Adds information to an event (host, service, request context).
pub trait Enricher: Send + Sync + fmt::Debug {
    /// Fills fields of `event`.
    fn enrich(&self, event: &mut AuditEvent);
}

/// Decides whether an event is kept.
pub trait Filter: Send + Sync + fmt::Debug {
    /// `true` keeps the event.
    fn keep(&self, event: &AuditEvent) -> bool;
}

/// Rewrites an event (redaction, normalisation) before it is queued.
pub trait Transformer: Send + Sync + fmt::Debug {
    /// Rewrites `event` in place.
    fn transform(&self, event: &mut AuditEvent);
}

/// Somewhere batches of events go: storage, archive files, a log, a webhook.
///
/// Adding a destination (S3, Elasticsearch, Kafka) is one impl of this trait. `deliver`
/// may be called again with the same batch after a failure, so a destination must either
/// be idempotent by [`AuditEvent::id`] or document at-least-once delivery.
#[async_trait]
pub trait AuditDestination: Send + Sync + fmt::Debug {
    /// A short name for logs and errors.
    fn name(&self) -> &str;

    /// Delivers a batch (all or nothing from the logger's view: on `Err` it is retried).
    ///
    /// # Errors
    ///
    /// Any [`Error`]; the logger retries it with backoff.
    async fn deliver(&self, events: &[AuditEvent]) -> Result<()>;
}

#[async_trait]
impl<D: AuditDestination + ?Sized> AuditDestination for Arc<D> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn deliver(&self, events: &[AuditEvent]) -> Result<()> {
        (**self).deliver(events).await
    }
}

/// Sets `hostname`, `service` and `version` where they are empty.
#[derive(Debug, Clone, Default)]
pub struct HostEnricher {
    hostname: Option<String>,
    service: Option<String>,
    version: Option<String>,
}

impl HostEnricher {
    /// Explicit values.
    pub fn new(
        hostname: impl Into<String>,
        service: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        Self {
            hostname: Some(hostname.into()),
            service: Some(service.into()),
            version: Some(version.into()),
        }
    }

    /// The hostname from `$HOSTNAME` or `/etc/hostname` (when readable), with `service`
    /// and `version`.
    pub fn detect(service: impl Into<String>, version: impl Into<String>) -> Self {
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        Self {
            hostname,
            service: Some(service.into()),
            version: Some(version.into()),
        }
    }
}

impl Enricher for HostEnricher {
    fn enrich(&self, event: &mut AuditEvent) {
        for (slot, value) in [
            (&mut event.hostname, &self.hostname),
            (&mut event.service, &self.service),
            (&mut event.version, &self.version),
        ] {
            if slot.is_none() {
                slot.clone_from(value);
            }
        }
    }
}

/// Keeps events whose type starts with one of `include` (all when empty) and with none
/// of `exclude`.
#[derive(Debug, Clone, Default)]
pub struct EventTypeFilter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl EventTypeFilter {
    /// Types starting with any of `prefixes`.
    pub fn include<I: IntoIterator<Item = S>, S: Into<String>>(prefixes: I) -> Self {
        Self {
            include: prefixes.into_iter().map(Into::into).collect(),
            exclude: Vec::new(),
        }
    }

    /// Also drops types starting with any of `prefixes`.
    #[must_use]
    pub fn exclude<I: IntoIterator<Item = S>, S: Into<String>>(mut self, prefixes: I) -> Self {
        self.exclude = prefixes.into_iter().map(Into::into).collect();
        self
    }
}

impl Filter for EventTypeFilter {
    fn keep(&self, e: &AuditEvent) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| e.event_type.starts_with(p)))
            && !self.exclude.iter().any(|p| e.event_type.starts_with(p))
    }
}

/// Keeps events at or above a severity.
#[derive(Debug, Clone, Copy)]
pub struct MinSeverity(pub Severity);

impl Filter for MinSeverity {
    fn keep(&self, e: &AuditEvent) -> bool {
        e.severity >= self.0
    }
}

/// Keeps a fraction of events, deterministically by event id (a retried `record` of the
/// same event decides the same way). [Security events](AuditEvent::is_security) are
/// always kept.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    threshold: u64,
}

impl Sampler {
    /// Keeps `rate` (0.0..=1.0) of non-security events.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a rate outside 0..=1 or NaN.
    pub fn new(rate: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(Error::Config(format!("sample rate {rate} outside 0..=1")));
        }
        Ok(Self {
            threshold: if rate >= 1.0 {
                u64::MAX
            } else {
                (rate * u64::MAX as f64) as u64
            },
        })
    }
}

impl Filter for Sampler {
    fn keep(&self, e: &AuditEvent) -> bool {
        if e.is_security() || self.threshold == u64::MAX {
            return true;
        }
        let d = Sha256::digest(e.id.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        u64::from_be_bytes(b) < self.threshold
    }
}

/// What `record` does when the queue is full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Backpressure {
    /// Wait up to this long for room, then fail with [`Error::QueueFull`] (counted as
    /// dropped; the caller decides).
    Wait(#[serde(with = "umanage_core::duration")] Duration),
    /// Wait up to `wait`, then append the event to the JSON-lines file `path`; the worker
    /// replays it to the destinations once they keep up.
    Spill {
        /// How long to wait for room first.
        #[serde(with = "umanage_core::duration")]
        wait: Duration,
        /// The spill file.
        path: PathBuf,
    },
}

/// Logger settings. Build with [`LoggerConfig::builder`], or deserialize (every field
/// optional, defaults as on the builder, validated the same way):
///
/// ```
/// let cfg: umanage_audit::LoggerConfig = serde_json::from_str(r#"{
///     "queue_capacity": 2000, "batch_size": 100, "batch_delay": "50ms",
///     "backpressure": {"spill": {"wait": "20ms", "path": "/var/spool/audit.jsonl"}}
/// }"#).unwrap();
/// assert!(serde_json::from_str::<umanage_audit::LoggerConfig>(r#"{"batch_size": 0}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawLoggerConfig", into = "RawLoggerConfig")]
pub struct LoggerConfig {
    queue_capacity: usize,
    batch_size: usize,
    batch_delay: Duration,
    backpressure: Backpressure,
    retry_initial: Duration,
    retry_max: Duration,
    shutdown_timeout: Duration,
}

impl LoggerConfig {
    /// Default queue capacity (events).
    pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;
    /// Default batch size.
    pub const DEFAULT_BATCH_SIZE: usize = 500;
    /// Default longest time an event waits for its batch.
    pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_millis(200);
    /// Default first retry delay (doubling up to the max).
    pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_millis(50);
    /// Default longest retry delay.
    pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(5);
    /// Default time `shutdown` keeps trying to deliver.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

    /// A builder with the defaults (backpressure: wait 100 ms, then fail).
    pub fn builder() -> LoggerConfigBuilder {
        LoggerConfigBuilder(Self {
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
            batch_size: Self::DEFAULT_BATCH_SIZE,
            batch_delay: Self::DEFAULT_BATCH_DELAY,
            backpressure: Backpressure::Wait(Duration::from_millis(100)),
            retry_initial: Self::DEFAULT_RETRY_INITIAL,
            retry_max: Self::DEFAULT_RETRY_MAX,
            shutdown_timeout: Self::DEFAULT_SHUTDOWN_TIMEOUT,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawLoggerConfig {
    queue_capacity: usize,
    batch_size: usize,
    #[serde(with = "umanage_core::duration")]
    batch_delay: Duration,
    backpressure: Backpressure,
    #[serde(with = "umanage_core::duration")]
    retry_initial: Duration,
    #[serde(with = "umanage_core::duration")]
    retry_max: Duration,
    #[serde(with = "umanage_core::duration")]
    shutdown_timeout: Duration,
}

impl Default for RawLoggerConfig {
    fn default() -> Self {
        LoggerConfig::builder().0.into()
    }
}

impl From<LoggerConfig> for RawLoggerConfig {
    fn from(c: LoggerConfig) -> Self {
        Self {
            queue_capacity: c.queue_capacity,
            batch_size: c.batch_size,
            batch_delay: c.batch_delay,
            backpressure: c.backpressure,
            retry_initial: c.retry_initial,
            retry_max: c.retry_max,
            shutdown_timeout: c.shutdown_timeout,
        }
    }
}

impl TryFrom<RawLoggerConfig> for LoggerConfig {
    type Error = Error;
    fn try_from(r: RawLoggerConfig) -> Result<Self> {
        LoggerConfig::builder()
            .queue_capacity(r.queue_capacity)
            .batch_size(r.batch_size)
            .batch_delay(r.batch_delay)
            .backpressure(r.backpressure)
            .retry(r.retry_initial, r.retry_max)
            .shutdown_timeout(r.shutdown_timeout)
            .build()
    }
}

/// Builder of [`LoggerConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct LoggerConfigBuilder(LoggerConfig);

impl LoggerConfigBuilder {
    /// Queue capacity in events.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.0.queue_capacity = n;
        self
    }
    /// Largest batch.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.0.batch_size = n;
        self
    }
    /// Longest time an event waits for its batch to fill.
    pub fn batch_delay(mut self, d: Duration) -> Self {
        self.0.batch_delay = d;
        self
    }
    /// What `record` does when the queue is full.
    pub fn backpressure(mut self, b: Backpressure) -> Self {
        self.0.backpressure = b;
        self
    }
    /// Retry backoff: first delay and cap.
    pub fn retry(mut self, initial: Duration, max: Duration) -> Self {
        self.0.retry_initial = initial;
        self.0.retry_max = max;
        self
    }
    /// How long `shutdown` keeps trying.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.0.shutdown_timeout = d;
        self
    }

    /// Validates.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a zero capacity, batch size or delay, a batch larger than
    /// the queue, or an initial retry delay of zero or above the maximum.
    pub fn build(self) -> Result<LoggerConfig> {
        let c = self.0;
        if c.queue_capacity == 0 || c.batch_size == 0 || c.batch_delay.is_zero() {
            return Err(Error::Config(
                "queue capacity, batch size and batch delay must be > 0".into(),
            ));
        }
        if c.batch_size > c.queue_capacity {
            return Err(Error::Config("batch size exceeds queue capacity".into()));
        }
        if c.retry_initial.is_zero() || c.retry_initial > c.retry_max {
            return Err(Error::Config(
                "retry delays must satisfy 0 < initial <= max".into(),
            ));
        }
        Ok(c)
    }
}

/// A snapshot of the logger's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LoggerStats {
    /// Events accepted into the queue.
    pub queued: u64,
    /// Events delivered to every destination.
    pub written: u64,
    /// Failed delivery attempts that were retried (per destination and batch).
    pub retried: u64,
    /// Events written to the spill file.
    pub spilled: u64,
    /// Events not accepted (queue full without spill) or given up at shutdown.
    pub dropped: u64,
    /// Events removed by a filter.
    pub filtered: u64,
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    written: AtomicU64,
    retried: AtomicU64,
    spilled: AtomicU64,
    dropped: AtomicU64,
    filtered: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> LoggerStats {
        LoggerStats {
            queued: self.queued.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            spilled: self.spilled.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
        }
    }
}

/// What [`AuditLogger::record`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Queued for delivery.
    Queued,
    /// Written to the spill file (queue full); it will be delivered later.
    Spilled,
    /// Removed by a filter.
    Filtered,
}

enum Msg {
    Event(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

#[derive(Debug)]
struct Spill {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Spill {
    fn append(&self, event: &AuditEvent) -> Result<()> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        let _g = self.lock.lock();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&line)?;
        f.sync_data()?;
        Ok(())
    }

    /// Takes the spilled events (the file is renamed while held, so `append` starts a new
    /// one). Unparseable lines are reported and kept in a `.bad` file.
    fn take(&self) -> Result<Vec<AuditEvent>> {
        let replay = self.path.with_extension("replay");
        {
            let _g = self.lock.lock();
            if !replay.exists() {
                match std::fs::rename(&self.path, &replay) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let file = std::fs::File::open(&replay)?;
        let mut out = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<AuditEvent>(&line) {
                Ok(e) => out.push(e),
                Err(err) => {
                    tracing::error!(error = %err, "unreadable line in audit spill file kept aside");
                    let bad = self.path.with_extension("bad");
                    let mut f = OpenOptions::new().create(true).append(true).open(bad)?;
                    writeln!(f, "{line}")?;
                }
            }
        }
        Ok(out)
    }

    fn done(&self) -> Result<()> {
        match std::fs::remove_file(self.path.with_extension("replay")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

struct Stages {
    enrichers: Vec<Box<dyn Enricher>>,
    filters: Vec<Box<dyn Filter>>,
    transformers: Vec<Box<dyn Transformer>>,
}

/// Builder of an [`AuditLogger`].
#[must_use]
pub struct AuditLoggerBuilder {
    config: LoggerConfig,
    stages: Stages,
    destinations: Vec<Box<dyn AuditDestination>>,
}

impl fmt::Debug for AuditLoggerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLoggerBuilder")
            .field("config", &self.config)
            .field("destinations", &self.destinations.len())
            .finish_non_exhaustive()
    }
}

impl AuditLoggerBuilder {
    /// Adds an enricher (run in order).
    pub fn enricher(mut self, e: impl Enricher + 'static) -> Self {
        self.stages.enrichers.push(Box::new(e));
        self
    }
    /// Adds a filter (all must keep the event).
    pub fn filter(mut self, f: impl Filter + 'static) -> Self {
        self.stages.filters.push(Box::new(f));
        self
    }
    /// Adds a transformer (run in order, after the filters).
    pub fn transformer(mut self, t: impl Transformer + 'static) -> Self {
        self.stages.transformers.push(Box::new(t));
        self
    }
    /// Adds a destination.
    pub fn destination(mut self, d: impl AuditDestination + 'static) -> Self {
        self.destinations.push(Box::new(d));
        self
    }

    /// Starts the worker task (needs a Tokio runtime).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] without any destination.
    pub fn start(self) -> Result<AuditLogger> {
        if self.destinations.is_empty() {
            return Err(Error::Config("an audit logger needs a destination".into()));
        }
        let (tx, rx) = mpsc::channel(self.config.queue_capacity);
        let counters = Arc::new(Counters::default());
        let spill = match &self.config.backpressure {
            Backpressure::Spill { path, .. } => Some(Arc::new(Spill {
                path: path.clone(),
                lock: Mutex::new(()),
            })),
            Backpressure::Wait(_) => None,
        };
        let (abort_tx, abort_rx) = watch::channel(false);
        let worker = Worker {
            rx,
            destinations: self.destinations,
            config: self.config.clone(),
            counters: Arc::clone(&counters),
            spill: spill.clone(),
            abort: abort_rx,
        };
        let task = tokio::spawn(worker.run());
        Ok(AuditLogger {
            inner: Arc::new(LoggerInner {
                tx: Mutex::new(Some(tx)),
                stages: self.stages,
                config: self.config,
                counters,
                spill,
                task: tokio::sync::Mutex::new(Some(task)),
                abort: abort_tx,
            }),
        })
    }
}

struct LoggerInner {
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    stages: Stages,
    config: LoggerConfig,
    counters: Arc<Counters>,
    spill: Option<Arc<Spill>>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    abort: watch::Sender<bool>,
}

/// The audit pipeline (see the [module docs](self)). Cheap to clone; clones share the
/// queue and worker.
#[derive(Clone)]
pub struct AuditLogger {
    inner: Arc<LoggerInner>,
}

impl fmt::Debug for AuditLogger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLogger")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl AuditLogger {
    /// A builder with `config`.
    pub fn builder(config: LoggerConfig) -> AuditLoggerBuilder {
        AuditLoggerBuilder {
            config,
            stages: Stages {
                enrichers: Vec::new(),
                filters: Vec::new(),
                transformers: Vec::new(),
            },
            destinations: Vec::new(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> LoggerStats {
        self.inner.counters.snapshot()
    }

    fn sender(&self) -> Result<mpsc::Sender<Msg>> {
        self.inner.tx.lock().clone().ok_or(Error::Closed)
    }

    /// [`record`](Self::record) after filling empty fields from `ctx`.
    ///
    /// # Errors
    ///
    /// As [`record`](Self::record).
    pub async fn record_with(
        &self,
        mut event: AuditEvent,
        ctx: &RequestContext,
    ) -> Result<Recorded> {
        event.apply_context(ctx);
        self.record(event).await
    }

    /// Runs the stages on `event` and queues it. Waits at most the backpressure timeout.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEvent`] when the event (after the stages) is invalid,
    /// [`Error::QueueFull`] when the queue stayed full and no spill file is configured,
    /// [`Error::Io`] when spilling failed (the event is counted as dropped), and
    /// [`Error::Closed`] after shutdown.
    #[tracing::instrument(level = "debug", skip_all, fields(event_type = %event.event_type))]
    pub async fn record(&self, mut event: AuditEvent) -> Result<Recorded> {
        let stages = &self.inner.stages;
        let counters = &self.inner.counters;
        for e in &stages.enrichers {
            e.enrich(&mut event);
        }
        if !stages.filters.iter().all(|f| f.keep(&event)) {
            counters.filtered.fetch_add(1, Ordering::Relaxed);
            return Ok(Recorded::Filtered);
        }
        for t in &stages.transformers {
            t.transform(&mut event);
        }
        event.normalize();
        event.validate()?;
        let tx = self.sender()?;
        let wait = match &self.inner.config.backpressure {
            Backpressure::Wait(w) | Backpressure::Spill { wait: w, .. } => *w,
        };
        match tx.send_timeout(Msg::Event(Box::new(event)), wait).await {
            Ok(()) => {
                counters.queued.fetch_add(1, Ordering::Relaxed);
                Ok(Recorded::Queued)
            }
            Err(
                mpsc::error::SendTimeoutError::Closed(_)
                | mpsc::error::SendTimeoutError::Timeout(Msg::Flush(_)),
            ) => Err(Error::Closed),
            Err(mpsc::error::SendTimeoutError::Timeout(Msg::Event(event))) => {
                if let Some(spill) = &self.inner.spill {
                    let spill = Arc::clone(spill);
                    let res = tokio::task::spawn_blocking(move || spill.append(&event))
                        .await
                        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
                    match res {
                        Ok(()) => {
                            counters.spilled.fetch_add(1, Ordering::Relaxed);
                            Ok(Recorded::Spilled)
                        }
                        Err(err) => {
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(error = %err, "audit event could not be spilled");
                            Err(err)
                        }
                    }
                } else {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("audit queue full: event rejected");
                    Err(Error::QueueFull(wait))
                }
            }
        }
    }

    /// Waits until every event recorded before the call (and every spilled one) has been
    /// delivered to every destination.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after shutdown.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn flush(&self) -> Result<()> {
        let tx = self.sender()?;
        let (ack, done) = oneshot::channel();
        tx.send(Msg::Flush(ack)).await.map_err(|_| Error::Closed)?;
        done.await.map_err(|_| Error::Closed)
    }

    /// Stops accepting events, delivers everything queued and spilled, and stops the
    /// worker. After the shutdown timeout, what still cannot be delivered is spilled (with
    /// a spill file) or counted as dropped. Returns the final counters.
    ///
    /// # Errors
    ///
    /// [`Error::Destination`] when events had to be given up (the count is in the message
    /// and in `dropped`).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn shutdown(&self) -> Result<LoggerStats> {
        drop(self.inner.tx.lock().take());
        let Some(mut task) = self.inner.task.lock().await.take() else {
            return Ok(self.stats());
        };
        let before = self.stats().dropped;
        if tokio::time::timeout(self.inner.config.shutdown_timeout, &mut task)
            .await
            .is_err()
        {
            let _ = self.inner.abort.send(true);
            let _ = task.await;
        }
        let stats = self.stats();
        if stats.dropped > before {
            return Err(Error::Destination {
                destination: "shutdown".into(),
                reason: format!("{} events could not be delivered", stats.dropped - before),
            });
        }
        Ok(stats)
    }
}

struct Worker {
    rx: mpsc::Receiver<Msg>,
    destinations: Vec<Box<dyn AuditDestination>>,
    config: LoggerConfig,
    counters: Arc<Counters>,
    spill: Option<Arc<Spill>>,
    abort: watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self) {
        let mut batch: Vec<AuditEvent> = Vec::with_capacity(self.config.batch_size);
        let mut deadline = tokio::time::Instant::now() + self.config.batch_delay;
        let mut spill_tick =
            tokio::time::interval(self.config.batch_delay.max(Duration::from_millis(100)) * 5);
        spill_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                msg = self.rx.recv() => match msg {
                    Some(Msg::Event(e)) => {
                        if batch.is_empty() {
                            deadline = tokio::time::Instant::now() + self.config.batch_delay;
                        }
                        batch.push(*e);
                        if batch.len() >= self.config.batch_size {
                            self.deliver(std::mem::take(&mut batch)).await;
                        }
                    }
                    Some(Msg::Flush(ack)) => {
                        self.deliver(std::mem::take(&mut batch)).await;
                        self.replay_spill().await;
                        let _ = ack.send(());
                    }
                    None => {
                        self.deliver(std::mem::take(&mut batch)).await;
                        self.replay_spill().await;
                        return;
                    }
                },
                () = tokio::time::sleep_until(deadline), if !batch.is_empty() => {
                    self.deliver(std::mem::take(&mut batch)).await;
                }
                _ = spill_tick.tick(), if self.spill.is_some() => {
                    self.replay_spill().await;
                }
            }
        }
    }

    async fn replay_spill(&mut self) {
        let Some(spill) = self.spill.clone() else {
            return;
        };
        let taken = {
            let s = Arc::clone(&spill);
            tokio::task::spawn_blocking(move || s.take()).await
        };
        let events = match taken {
            Ok(Ok(events)) => events,
            Ok(Err(err)) => {
                tracing::error!(error = %err, "audit spill file unreadable");
                return;
            }
            Err(err) => {
                tracing::error!(error = %err, "audit spill replay task failed");
                return;
            }
        };
        if events.is_empty() {
            let _ = spill.done();
            return;
        }
        let mut all_delivered = true;
        for chunk in events.chunks(self.config.batch_size) {
            all_delivered &= self.deliver_inner(chunk.to_vec(), false).await;
        }
        if all_delivered && let Err(err) = spill.done() {
            tracing::error!(error = %err, "audit spill replay file not removed");
        }
    }

    async fn deliver(&mut self, batch: Vec<AuditEvent>) {
        self.deliver_inner(batch, true).await;
    }

    /// Delivers `batch` to every destination, retrying each failed one with backoff.
    /// Returns `false` when aborted before every destination accepted it; then the batch
    /// is spilled (if `spill_on_abort` and a spill file exists) or counted as dropped.
    async fn deliver_inner(&mut self, batch: Vec<AuditEvent>, spill_on_abort: bool) -> bool {
        if batch.is_empty() {
            return true;
        }
        let mut pending: Vec<usize> = (0..self.destinations.len()).collect();
        let mut delay = self.config.retry_initial;
        loop {
            let mut still = Vec::new();
            for &i in &pending {
                let d = &self.destinations[i];
                if let Err(err) = d.deliver(&batch).await {
                    tracing::warn!(destination = d.name(), error = %err, n = batch.len(), "audit delivery failed; will retry");
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    still.push(i);
                }
            }
            if still.is_empty() {
                self.counters
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                return true;
            }
            pending = still;
            if *self.abort.borrow() {
                self.give_up(&batch, spill_on_abort);
                return false;
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = self.abort.changed() => {}
            }
            if *self.abort.borrow() {
                // One last attempt happens on the next loop turn only if not aborted.
                self.give_up(&batch, spill_on_abort);
                return false;
            }
            delay = (delay * 2).min(self.config.retry_max);
        }
    }

    fn give_up(&self, batch: &[AuditEvent], spill_on_abort: bool) {
        if spill_on_abort && let Some(spill) = &self.spill {
            let mut ok = 0;
            for e in batch {
                if spill.append(e).is_ok() {
                    ok += 1;
                }
            }
            self.counters.spilled.fetch_add(ok, Ordering::Relaxed);
            self.counters
                .dropped
                .fetch_add(batch.len() as u64 - ok, Ordering::Relaxed);
            tracing::error!(
                spilled = ok,
                "audit shutdown timed out: undelivered events spilled"
            );
        } else if spill_on_abort || self.spill.is_none() {
            self.counters
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::error!(
                n = batch.len(),
                "audit shutdown timed out: events not delivered"
            );
        }
        // A spill replay that is aborted leaves its replay file in place for the next start.
    }
}

/// Delivers to an [`AuditStorage`] chain (idempotent by event id).
#[derive(Debug, Clone)]
pub struct StorageDestination {
    storage: Arc<dyn AuditStorage>,
    chain_id: String,
    name: String,
}

impl StorageDestination {
    /// Appends to `chain_id` of `storage`.
    pub fn new(storage: Arc<dyn AuditStorage>, chain_id: impl Into<String>) -> Self {
        let chain_id = chain_id.into();
        Self {
            name: format!("storage:{chain_id}"),
            storage,
            chain_id,
        }
    }
}

#[async_trait]
impl AuditDestination for StorageDestination {
    fn name(&self) -> &str {
        &self.name
    }
    async fn deliver(&self, events: &[AuditEvent]) -> Result<()> {
        // `*self.storage`: through `&dyn`, not the `Arc` forwarding impl (one boxed future)
        (*self.storage)
            .append(&self.chain_id, events)
            .await
            .map(|_| ())
    }
}

/// Writes each event to the `tracing` log (target `umanage_audit`, level INFO) as JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingDestination;

#[async_trait]
impl AuditDestination for TracingDestination {
    fn name(&self) -> &'static str {
        "tracing"
    }
    async fn deliver(&self, events: &[AuditEvent]) -> Result<()> {
        for e in events {
            let json = serde_json::to_string(e)?;
            tracing::info!(
                target: "umanage_audit",
                id = %e.id,
                event_type = %e.event_type,
                result = e.result.as_str(),
                event = %json,
                "audit"
            );
        }
        Ok(())
    }
}
