//! A small key-value store with expiry, shared by the crates that need one.
//!
//! [`KvStore`] is the smallest useful shared state: values with an optional time to live,
//! an atomic insert-if-absent (for locks and idempotency keys) and an atomic counter whose
//! expiry is set when it is created (a fixed window). It has three backends that pass one
//! conformance suite ([`crate::testing::kv`]):
//!
//! | backend | type | time comes from |
//! | --- | --- | --- |
//! | memory (feature `memory`) | [`MemoryKvStore`] | the injected [`Clock`](crate::Clock) |
//! | Redis (feature `redis`) | [`RedisKvStore`] | the Redis server (key TTLs) |
//! | Postgres (feature `postgres`) | [`PostgresKvStore`] | the Postgres server (`now()`) |
//!
//! Keys are arbitrary strings; backends escape them as needed.

#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::BackendError;

#[cfg(feature = "memory")]
pub use memory::MemoryKvStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresKvStore;
#[cfg(feature = "redis")]
pub use redis::RedisKvStore;

/// Errors of a [`KvStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// [`KvStore::increment`] on a value that is not a decimal `i64`, or an increment
    /// that would overflow `i64`. The stored value is left unchanged.
    #[error("value at key is not an integer, or the increment would overflow")]
    NotAnInteger,
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl KvError {
    /// True when the backend could not serve the request now; see
    /// [`BackendError::is_unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Backend(e) if e.is_unavailable())
    }

    /// True when the backend did not answer in time (the operation may have been applied);
    /// see [`BackendError::is_timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Backend(e) if e.is_timeout())
    }
}

/// Result alias for [`KvStore`] operations.
pub type Result<T, E = KvError> = std::result::Result<T, E>;

/// A key-value store whose entries can expire.
///
/// # Contract
///
/// * An entry past its time to live is never returned, even if the backend still holds it.
/// * [`set_if_absent`](Self::set_if_absent) and [`increment`](Self::increment) are atomic:
///   under any number of concurrent callers (on any number of app instances sharing the
///   backend) exactly one `set_if_absent` of a key wins, and no increment is lost.
/// * Counters are stored as decimal text, so [`get`](Self::get) of a counter returns e.g.
///   `b"42"`, and `increment` works on a value `set` to decimal text.
/// * An increment on a key without expiry (or a new key) gives it the `ttl` passed;
///   increments on a key that already expires keep its deadline (a fixed window).
#[async_trait]
pub trait KvStore: Send + Sync + std::fmt::Debug {
    /// The value at `key`, unless absent or expired.
    ///
    /// # Errors
    ///
    /// [`KvError::Backend`] when the backend fails.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stores `value` at `key`, replacing any value, expiring after `ttl` (never if `None`).
    ///
    /// # Errors
    ///
    /// [`KvError::Backend`] when the backend fails.
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()>;

    /// Stores `value` only if `key` has no live value. Returns whether it was stored.
    ///
    /// # Errors
    ///
    /// [`KvError::Backend`] when the backend fails.
    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool>;

    /// Removes `key`. Returns whether a live value was removed.
    ///
    /// # Errors
    ///
    /// [`KvError::Backend`] when the backend fails.
    async fn delete(&self, key: &str) -> Result<bool>;

    /// Adds `by` to the counter at `key` (a missing or expired key counts as 0) and
    /// returns the new value. See the trait docs for how `ttl` applies.
    ///
    /// # Errors
    ///
    /// [`KvError::NotAnInteger`] when the value is not a decimal `i64` or would overflow;
    /// [`KvError::Backend`] when the backend fails.
    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64>;
}

macro_rules! forward_kv_store {
    ($($ty:ty),+) => {$(
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<S: KvStore + ?Sized> KvStore for $ty {
            async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
                (**self).get(key).await
            }
            async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
                (**self).set(key, value, ttl).await
            }
            async fn set_if_absent(
                &self,
                key: &str,
                value: &[u8],
                ttl: Option<Duration>,
            ) -> Result<bool> {
                (**self).set_if_absent(key, value, ttl).await
            }
            async fn delete(&self, key: &str) -> Result<bool> {
                (**self).delete(key).await
            }
            async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64> {
                (**self).increment(key, by, ttl).await
            }
        }
    )+};
}

forward_kv_store!(Arc<S>, Box<S>);

/// Parses a stored counter the way Redis `INCRBY` does: optional `-`, ASCII digits, no
/// spaces, no `+`, within `i64`.
#[cfg_attr(not(feature = "memory"), allow(dead_code))]
pub(crate) fn parse_counter(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{KvError, parse_counter};
    use crate::BackendError;

    #[test]
    fn errors_classify_like_backend_errors() {
        let timeout = KvError::Backend(BackendError::Timeout {
            operation: "kv.get",
            after: std::time::Duration::from_millis(1),
        });
        assert!(timeout.is_unavailable() && timeout.is_timeout());
        assert!(!KvError::NotAnInteger.is_unavailable() && !KvError::NotAnInteger.is_timeout());
    }

    #[test]
    fn counter_parsing_matches_redis() {
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(b"-7"), Some(-7));
        assert_eq!(parse_counter(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"1.0",
            b"9223372036854775808",
            b"\xff",
        ] {
            assert_eq!(parse_counter(bad), None, "{bad:?}");
        }
    }
}
