//! The error every backend returns when the *backend* (not the caller's input) fails.

use std::error::Error as StdError;
use std::time::Duration;

/// A failure of a storage backend: Redis, Postgres, serialisation, or a timeout.
///
/// The source error is kept (never flattened to a `String`), so hosts can log it or
/// downcast it. Two questions let a caller pick a fail-open or fail-closed policy without
/// knowing which backend is behind a trait object:
///
/// * [`is_unavailable`](Self::is_unavailable): the backend could not serve the request now
///   (unreachable, connection dropped, overloaded, timed out). Retrying later may work.
/// * [`is_timeout`](Self::is_timeout): the backend did not answer in time. The operation
///   **may have been applied**: umanage never re-sends such a call by itself, because a
///   second execution of a non-idempotent script would double-apply it.
///
/// Every timeout is also "unavailable". Errors such as a malformed reply or a constraint
/// the schema does not expect are neither: they point at a bug or a misconfiguration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// An error from the Redis client or server.
    #[cfg(feature = "redis")]
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),

    /// An error from sqlx / the Postgres server.
    #[cfg(feature = "postgres")]
    #[error("postgres error: {0}")]
    Postgres(#[from] sqlx::Error),

    /// A value could not be encoded or decoded.
    #[error("serialization error: {0}")]
    Serialization(#[source] Box<dyn StdError + Send + Sync + 'static>),

    /// An operation did not finish within its deadline (one umanage enforces itself).
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The deadline that passed.
        after: Duration,
    },

    /// The backend answered with something this version of umanage does not understand
    /// (a reply of the wrong shape, a schema from another version).
    #[error("unexpected backend reply: {0}")]
    Protocol(String),

    /// A database migration could not be applied or does not match what was applied before.
    #[error("migration {component} v{version}: {reason}")]
    Migration {
        /// The crate whose migration failed (`"umanage-session"`).
        component: &'static str,
        /// The migration's version.
        version: i64,
        /// What went wrong.
        reason: String,
    },

    /// Invalid backend configuration (a malformed URL, a bad key prefix).
    #[error("invalid backend configuration: {0}")]
    Config(String),
}

/// Result alias for backend operations.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

impl BackendError {
    /// A serialisation error from any serde format.
    pub fn serialization(err: impl StdError + Send + Sync + 'static) -> Self {
        Self::Serialization(Box::new(err))
    }

    /// True when the backend could not serve the request right now: it is unreachable, the
    /// connection was dropped or refused, it is loading or overloaded, or it timed out.
    ///
    /// This is the question a fail-open / fail-closed policy asks.
    pub fn is_unavailable(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(err) => redis_unavailable(err),
            #[cfg(feature = "postgres")]
            Self::Postgres(err) => postgres_unavailable(err),
            Self::Timeout { .. } => true,
            Self::Serialization(_)
            | Self::Protocol(_)
            | Self::Migration { .. }
            | Self::Config(_) => false,
        }
    }

    /// True when the backend did not answer in time. The operation may have been applied.
    pub fn is_timeout(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(err) => err.is_timeout(),
            #[cfg(feature = "postgres")]
            Self::Postgres(err) => postgres_timeout(err),
            Self::Timeout { .. } => true,
            Self::Serialization(_)
            | Self::Protocol(_)
            | Self::Migration { .. }
            | Self::Config(_) => false,
        }
    }
}

impl From<serde_json::Error> for BackendError {
    fn from(err: serde_json::Error) -> Self {
        Self::serialization(err)
    }
}

#[cfg(feature = "redis")]
fn redis_unavailable(err: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    if err.is_timeout()
        || err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
    {
        return true;
    }
    match err.kind() {
        ErrorKind::Server(
            ServerErrorKind::ClusterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::BusyLoading
            | ServerErrorKind::MasterDown,
        )
        | ErrorKind::ClusterConnectionNotFound => true,
        _ => err
            .code()
            .is_some_and(|code| code == "BUSY" || code == "LOADING"),
    }
}

#[cfg(feature = "postgres")]
fn postgres_sqlstate(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(std::borrow::Cow::into_owned),
        _ => None,
    }
}

#[cfg(feature = "postgres")]
fn postgres_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(_) => postgres_sqlstate(err).is_some_and(|code| {
            // 08: connection exception; 53: insufficient resources;
            // 57P01-57P03: admin/crash shutdown, cannot connect now; 57014: query canceled
            // (statement_timeout); 40001/40P01 are not unavailability, they are retryable
            // conflicts the store handles itself.
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(code.as_str(), "57P01" | "57P02" | "57P03" | "57014")
        }),
        _ => false,
    }
}

#[cfg(feature = "postgres")]
fn postgres_timeout(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::TimedOut,
        sqlx::Error::Database(_) => postgres_sqlstate(err).as_deref() == Some("57014"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_variants_classify() {
        let t = BackendError::Timeout {
            operation: "kv.get",
            after: Duration::from_millis(5),
        };
        assert!(t.is_timeout() && t.is_unavailable());
        assert_eq!(t.to_string(), "kv.get timed out after 5ms");
        let p = BackendError::Protocol("bad".into());
        assert!(!p.is_timeout() && !p.is_unavailable());
        let s: BackendError = serde_json::from_str::<u8>("x").unwrap_err().into();
        assert!(matches!(s, BackendError::Serialization(_)));
        assert!(std::error::Error::source(&s).is_some());
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_io_errors_are_unavailable() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = BackendError::from(redis::RedisError::from(io));
        assert!(err.is_unavailable());
        assert!(!err.is_timeout());
        let io = std::io::Error::from(std::io::ErrorKind::TimedOut);
        let err = BackendError::from(redis::RedisError::from(io));
        assert!(err.is_unavailable() && err.is_timeout());
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_pool_errors_classify() {
        let err = BackendError::from(sqlx::Error::PoolTimedOut);
        assert!(err.is_unavailable() && err.is_timeout());
        let err = BackendError::from(sqlx::Error::RowNotFound);
        assert!(!err.is_unavailable() && !err.is_timeout());
    }
}
