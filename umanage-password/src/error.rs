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

    /// A storage backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Result alias for this crate.
pub type Result<T, E = PasswordError> = std::result::Result<T, E>;
