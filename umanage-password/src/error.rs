//! The error type of umanage-password.

use umanage_core::BackendError;

/// Everything that can go wrong in this crate.
///
/// Expected outcomes are *not* errors: a password that breaks the policy is a
/// [`ValidationReport`](crate) value, a wrong password is a `false`/`Mismatch` value.
/// These variants are the failures: input that cannot be processed at all, untrusted data
/// that is rejected, or a backend that failed.
///
/// No variant ever carries a password, a hash or a pepper.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The password is longer than the hard cap, in bytes, checked before any other work
    /// (normalisation, policy, hashing) so a huge input costs nothing.
    #[error("password is longer than {max_bytes} bytes")]
    TooLarge {
        /// The cap, [`MAX_PASSWORD_BYTES`](crate::normalize::MAX_PASSWORD_BYTES).
        max_bytes: usize,
    },

    /// A stored password hash could not be parsed (it is not a well-formed PHC or bcrypt
    /// string, or it uses a feature this crate does not support). The hash is untrusted
    /// input: it is rejected before any hashing work.
    #[error("malformed stored password hash: {reason}")]
    MalformedHash {
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A stored hash asks for more work than the configured caps allow
    /// ([`VerifyLimits`](crate::hash::VerifyLimits)), or less than the algorithm permits.
    /// Rejected before hashing, so a hostile hash cannot exhaust memory or time.
    #[error("stored hash parameter {param}={value} is outside the accepted range {min}..={max}")]
    HashParamOutOfRange {
        /// The parameter (`m`, `t`, `p`, `output length`, `salt length`, `bcrypt cost`).
        param: &'static str,
        /// The value found in the stored hash.
        value: u64,
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
    },

    /// bcrypt only reads the first 72 bytes of a password; a longer one is refused rather
    /// than silently truncated.
    #[error("bcrypt cannot check passwords longer than {max_bytes} bytes")]
    BcryptPasswordTooLong {
        /// The bcrypt input limit, 72.
        max_bytes: usize,
    },

    /// A password with a NUL byte cannot be checked against a bcrypt hash: C implementations
    /// stop at the first NUL, so accepting it could make two passwords equal.
    #[error("bcrypt cannot check passwords that contain a NUL character")]
    BcryptNulByte,

    /// A stored hash was made with a pepper key id that is not configured.
    #[error("the pepper key {key_id:?} of the stored hash is not configured")]
    UnknownPepper {
        /// The key id recorded in the hash (an identifier, not the key).
        key_id: String,
    },

    /// A hashing, pepper, pool or spray-detection configuration is contradictory or out of
    /// range.
    #[error("invalid {component} configuration: {reason}")]
    InvalidConfig {
        /// Which configuration (`"hasher"`, `"pepper"`, `"pool"`, `"spray"`, ...).
        component: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// The hashing pool had no free slot within its queue timeout: the host is overloaded.
    /// Callers usually answer "try again later" (HTTP 503).
    #[error("password hashing is busy: no free slot within {waited:?}")]
    Busy {
        /// The queue timeout that passed.
        waited: std::time::Duration,
    },

    /// The hashing primitive or the random source failed (not caused by the password).
    #[error("password hashing failed: {reason}")]
    HashingFailed {
        /// What failed.
        reason: String,
    },

    /// An offline breach index file is not valid (wrong magic, size or bucket table).
    #[error("invalid breach index: {reason}")]
    InvalidBreachIndex {
        /// What is wrong.
        reason: &'static str,
    },

    /// A line of a `SHA1:COUNT` breach corpus could not be parsed.
    #[error("breach corpus line {line}: {reason}")]
    InvalidBreachInput {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: &'static str,
    },

    /// Reading or writing a local file (breach index, corpus) failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// A password policy is contradictory or out of range.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),

    /// A storage backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Result alias for this crate.
pub type Result<T, E = PasswordError> = std::result::Result<T, E>;
