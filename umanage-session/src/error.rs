//! The crate's error type.

use umanage_core::BackendError;

/// Errors of the session crate.
///
/// Expected outcomes (an unknown or expired token, a limit that was reached, a reused
/// refresh token) are values of the operation's outcome type, not errors. What remains here
/// is input that cannot be a token, a configuration that contradicts itself, and a backend
/// that failed. [`Error::is_unavailable`] tells the host to answer 503.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not a token issued by this crate (wrong length or alphabet). The token
    /// itself is never part of the message.
    #[error("malformed {kind} token")]
    MalformedToken {
        /// `"session"` or `"refresh"`.
        kind: &'static str,
    },
    /// The configuration contradicts itself or has a zero duration where one is needed.
    #[error("invalid session configuration: {0}")]
    Config(String),
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Rng(String),
    /// The store already holds the id or token hash given for a new record (a duplicate
    /// 256-bit secret or UUID means the random source is broken).
    #[error("session id or token already exists")]
    Duplicate,
    /// A geo-location database could not be opened or read.
    #[error("geo-location database: {0}")]
    Geo(String),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl Error {
    /// Whether the backend is unreachable or timed out (the host answers 503 and retries
    /// later; the Redis connection re-establishes itself).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Backend(e) if e.is_unavailable())
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
