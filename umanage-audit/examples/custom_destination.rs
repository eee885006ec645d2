//! Adding a destination is one trait impl. This one stands in for S3 / Kafka /
//! Elasticsearch: it writes each batch as newline-delimited JSON to stdout, keyed by the
//! batch's first event id (what an object key or a message key would be).
//!
//! ```sh
//! cargo run -p umanage-audit --example custom_destination
//! ```

use std::io::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use umanage_audit::{
    ActorType, AuditDestination, AuditEvent, AuditLogger, AuditStorage, LoggerConfig,
    MemoryAuditStorage, Redactor, StorageDestination, event_types,
};
use umanage_core::SystemClock;

/// Newline-delimited JSON to stdout, one "object" per batch.
#[derive(Debug)]
struct NdjsonStdout;

#[async_trait]
impl AuditDestination for NdjsonStdout {
    fn name(&self) -> &'static str {
        "ndjson-stdout"
    }

    async fn deliver(&self, events: &[AuditEvent]) -> umanage_audit::Result<()> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "# object audit/{}.ndjson", first.id)?;
        for e in events {
            serde_json::to_writer(&mut out, e)?;
            writeln!(out)?;
        }
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> umanage_audit::Result<()> {
    let clock = SystemClock::shared();
    let storage: Arc<dyn AuditStorage> = Arc::new(MemoryAuditStorage::new());
    let logger = AuditLogger::builder(LoggerConfig::builder().build()?)
        .transformer(Redactor::standard())
        .destination(StorageDestination::new(Arc::clone(&storage), "default"))
        .destination(NdjsonStdout)
        .start()?;
    for user in ["ann", "bob"] {
        let event = AuditEvent::builder(event_types::LOGIN_SUCCESS, &*clock)
            .actor(ActorType::User, user)
            .meta("email", format!("{user}@example.com"))
            .build()?;
        logger.record(event).await?;
    }
    let stats = logger.shutdown().await?;
    eprintln!("{stats:?}");
    Ok(())
}
