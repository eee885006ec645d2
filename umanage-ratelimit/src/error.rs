//! The crate's error type.

use umanage_core::BackendError;

/// Everything that can go wrong in this crate. A rejected request is **not** an error: it is
/// a [`Decision`](crate::Decision) with `allowed == false`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A strategy, rule or policy whose parameters contradict each other or are out of range.
    #[error("invalid rate-limit configuration: {0}")]
    InvalidConfig(String),
    /// A check with a cost of zero (every check must charge at least one unit).
    #[error("the cost of a check must be at least 1")]
    ZeroCost,
    /// `check_all` with no rules, or more than the backend accepts in one call.
    #[error("check_all needs between 1 and {max} rules, got {got}")]
    RuleCount {
        /// How many were passed.
        got: usize,
        /// The most accepted.
        max: usize,
    },
    /// `check_all` with two checks of the same key and strategy kind.
    #[error("check_all got the same key twice for one strategy kind")]
    DuplicateCheck,
    /// A rate-limit key that is empty or longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN).
    #[error("rate-limit keys must be 1 to {max} bytes, got {got}")]
    InvalidKey {
        /// The key's length in bytes.
        got: usize,
        /// The longest accepted.
        max: usize,
    },
    /// CPU / memory statistics could not be read (feature `adaptive`).
    #[error("system statistics unavailable: {0}")]
    SystemInfo(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The backend failed (see [`BackendError::is_unavailable`]).
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl Error {
    /// True when the backend could not serve the check now (the question a
    /// [`FailurePolicy`](crate::FailurePolicy) asks).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Backend(err) if err.is_unavailable())
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
