//! The crate's error type.

use umanage_core::BackendError;

/// Everything that can go wrong in umanage-audit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An event (or a field of it) is not acceptable: a NUL byte in a text field, a string
    /// longer than [`crate::model::MAX_TEXT_LEN`], a timestamp Postgres cannot store.
    #[error("invalid audit event: {0}")]
    InvalidEvent(String),

    /// A configuration value is contradictory or out of range.
    #[error("invalid audit configuration: {0}")]
    Config(String),

    /// A pagination cursor that this crate did not produce (or that was altered).
    #[error("invalid pagination cursor")]
    InvalidCursor,

    /// The same event id was already stored in another chain.
    #[error("event {id} already belongs to chain {chain_id}")]
    IdConflict {
        /// The event id.
        id: uuid::Uuid,
        /// The chain that holds it.
        chain_id: String,
    },

    /// [`AuditLogger::record`](crate::AuditLogger::record) could not queue the event within
    /// the backpressure timeout and no spill file is configured. The event was **not**
    /// accepted; the `dropped` counter was incremented.
    #[error("audit queue full: event not accepted within {0:?}")]
    QueueFull(std::time::Duration),

    /// The logger was shut down.
    #[error("audit logger is shut down")]
    Closed,

    /// A destination failed to accept a batch.
    #[error("destination {destination} failed: {reason}")]
    Destination {
        /// The destination's name.
        destination: String,
        /// What failed (never event contents).
        reason: String,
    },

    /// Local file I/O (archives, spill file) failed.
    #[error("audit file i/o: {0}")]
    Io(#[from] std::io::Error),

    /// A storage backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl Error {
    /// True when retrying later may succeed (backend unavailable, I/O, destination down).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Backend(b) => b.is_unavailable(),
            Self::Io(_) | Self::Destination { .. } | Self::QueueFull(_) => true,
            _ => false,
        }
    }
}

#[cfg(feature = "postgres")]
impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Self::Backend(BackendError::Postgres(err))
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Self::Backend(BackendError::serialization(err))
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
