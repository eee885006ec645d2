#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
pub mod chain;
pub mod error;
pub mod event_types;
pub mod model;
pub mod pipeline;
pub mod redact;
pub mod risk;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verify;
pub mod webhook;

pub use archive::{ArchiveConfig, JsonlArchive, read_archive};
pub use chain::{
    BreakKind, ChainBreak, ChainHead, Checkpoint, CheckpointKey, Digest, Keyring, StoredEvent,
    VerifyReport,
};
pub use error::{Error, Result};
pub use model::{
    ActorType, AuditEvent, AuditEventBuilder, DataClass, Outcome, Regulation, Severity,
};
pub use pipeline::{
    AuditDestination, AuditLogger, Backpressure, LoggerConfig, LoggerStats, Recorded,
    StorageDestination, TracingDestination,
};
pub use redact::{RedactAction, Redactor};
pub use risk::{RiskEngine, RiskRule};
#[cfg(feature = "memory")]
pub use store::memory::MemoryAuditStorage;
#[cfg(feature = "postgres")]
pub use store::postgres::PostgresAuditStorage;
pub use store::{AppendReport, AuditFilter, AuditQuery, AuditStorage, Order, Page};
pub use verify::{AuditChain, PruneReport};
pub use webhook::WebhookDestination;
