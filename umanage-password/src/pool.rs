//! A bounded pool for password hashing, so logins cannot starve the async runtime.
//!
//! Argon2 at the default cost takes tens of milliseconds of CPU and 64 MiB of memory per
//! call. Run on an async worker thread, a burst of logins would stall every other request;
//! run without a bound, it would exhaust memory. [`HashingPool`] runs each hash on Tokio's
//! blocking threads (`spawn_blocking`), admitting at most
//! [`max_concurrent`](PoolConfig::max_concurrent) at once through a semaphore. A call that
//! cannot get a slot within [`queue_timeout`](PoolConfig::queue_timeout) fails with
//! [`PasswordError::Busy`], which a host maps to "503, try again".
//!
//! A hash that has started always runs to completion and releases its slot, even when the
//! caller's future is dropped, so the bound holds under cancellation too.
//!
//! # Argon2 lanes and rayon
//!
//! The `argon2` crate is built with its `parallel` feature: the `p` lanes of one hash run
//! on **rayon's global thread pool** (one thread per CPU), not on the blocking thread that
//! called it. That thread hands the lanes of each slice to rayon and waits (4 slices per
//! pass), so two pools are involved:
//!
//! * CPU spent on hashing is capped by rayon's pool: however many hashes are in flight,
//!   their lanes share its threads. `max_concurrent` above the CPU count therefore adds no
//!   throughput, only memory (`max_concurrent × m`) and latency per hash; the default
//!   (the CPU count) keeps every core busy during a burst.
//! * `max_concurrent` is what bounds memory and queueing: a burst beyond it waits for a
//!   slot (or gets [`PasswordError::Busy`]) instead of allocating more Argon2 matrices.
//! * Hashing lanes and any other work the host runs on rayon's global pool queue behind
//!   each other. A host that needs them apart can size the global pool with
//!   `rayon::ThreadPoolBuilder::build_global` before the first hash.
//!
//! Without `parallel` the lanes would run one after another on the blocking thread (about
//! 1.4× the C reference's wall time at p=4 on a 2-core machine); with it, one hash at the
//! default parameters is on par with the C reference (see the crate README's benchmarks).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::error::{PasswordError, Result};
use crate::hash::{HashedPassword, PasswordHasher, VerifyOutcome};
use crate::normalize::NormalizedPassword;

/// Limits of a [`HashingPool`].
///
/// ```
/// use umanage_password::pool::PoolConfig;
///
/// let cfg: PoolConfig = serde_json::from_str(r#"{"max_concurrent": 2, "queue_timeout": "2s"}"#).unwrap();
/// assert_eq!(cfg.max_concurrent(), 2);
/// assert!(PoolConfig::new(0, std::time::Duration::from_secs(1)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPoolConfig", into = "RawPoolConfig")]
pub struct PoolConfig {
    max_concurrent: usize,
    queue_timeout: Duration,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoolConfig {
    #[serde(default = "PoolConfig::default_concurrency")]
    max_concurrent: usize,
    #[serde(
        default = "PoolConfig::default_timeout",
        with = "umanage_core::duration"
    )]
    queue_timeout: Duration,
}

impl TryFrom<RawPoolConfig> for PoolConfig {
    type Error = PasswordError;
    fn try_from(r: RawPoolConfig) -> Result<Self> {
        Self::new(r.max_concurrent, r.queue_timeout)
    }
}

impl From<PoolConfig> for RawPoolConfig {
    fn from(c: PoolConfig) -> Self {
        Self {
            max_concurrent: c.max_concurrent,
            queue_timeout: c.queue_timeout,
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_concurrent: Self::default_concurrency(),
            queue_timeout: Self::DEFAULT_QUEUE_TIMEOUT,
        }
    }
}

impl PoolConfig {
    /// Default queue timeout: 5 seconds.
    pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
    /// The largest concurrency accepted.
    pub const MAX_CONCURRENT: usize = 1024;
    /// The longest queue timeout accepted: 5 minutes.
    pub const MAX_QUEUE_TIMEOUT: Duration = Duration::from_secs(300);

    /// Default concurrency: the number of CPUs (at least 1). With Argon2's `parallel`
    /// lanes each hash already uses several cores, so more would only queue inside.
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    }

    fn default_timeout() -> Duration {
        Self::DEFAULT_QUEUE_TIMEOUT
    }

    /// A pool configuration.
    ///
    /// # Errors
    ///
    /// [`PasswordError::InvalidConfig`] when `max_concurrent` is 0 or above
    /// [`MAX_CONCURRENT`](Self::MAX_CONCURRENT), or `queue_timeout` is zero or above
    /// [`MAX_QUEUE_TIMEOUT`](Self::MAX_QUEUE_TIMEOUT).
    pub fn new(max_concurrent: usize, queue_timeout: Duration) -> Result<Self> {
        let fail = |reason: String| {
            Err(PasswordError::InvalidConfig {
                component: "pool",
                reason,
            })
        };
        if !(1..=Self::MAX_CONCURRENT).contains(&max_concurrent) {
            return fail(format!(
                "max_concurrent must be 1..={}, got {max_concurrent}",
                Self::MAX_CONCURRENT
            ));
        }
        if queue_timeout.is_zero() || queue_timeout > Self::MAX_QUEUE_TIMEOUT {
            return fail(format!(
                "queue_timeout must be above zero and at most {:?}",
                Self::MAX_QUEUE_TIMEOUT
            ));
        }
        Ok(Self {
            max_concurrent,
            queue_timeout,
        })
    }

    /// How many hashes run at once.
    pub const fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// How long a call waits for a slot before [`PasswordError::Busy`].
    pub const fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }
}

/// A [`PasswordHasher`] behind a bounded blocking pool. Cheap to clone (clones share the
/// slots).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use umanage_password::hash::{HasherConfig, PasswordHasher};
/// use umanage_password::pool::{HashingPool, PoolConfig};
/// use umanage_password::NormalizedPassword;
///
/// let hasher = PasswordHasher::new(HasherConfig::builder().m_cost_kib(64).t_cost(1).p_cost(1).build().unwrap());
/// let pool = HashingPool::new(hasher, PoolConfig::default());
/// let pw = NormalizedPassword::new("hunter2 but longer").unwrap();
/// let stored = pool.hash(pw.clone()).await.unwrap();
/// assert!(pool.verify(pw, stored).await.unwrap());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HashingPool {
    hasher: PasswordHasher,
    config: PoolConfig,
    slots: Arc<Semaphore>,
}

impl HashingPool {
    /// A pool running `hasher` under `config`'s limits.
    pub fn new(hasher: PasswordHasher, config: PoolConfig) -> Self {
        Self {
            hasher,
            config,
            slots: Arc::new(Semaphore::new(config.max_concurrent)),
        }
    }

    /// The hasher (for cheap, non-hashing calls such as `needs_rehash`).
    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// The limits.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Free slots right now (for metrics).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }

    /// Runs `work` with the hasher on a blocking thread once a slot is free.
    ///
    /// # Errors
    ///
    /// * [`PasswordError::Busy`] when no slot frees up within the queue timeout;
    /// * [`PasswordError::HashingFailed`] when the task panicked or the runtime is shutting
    ///   down;
    /// * whatever `work` returns.
    pub async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&PasswordHasher) -> Result<T> + Send + 'static,
    {
        let waited = self.config.queue_timeout;
        let acquire = tokio::time::timeout(waited, Arc::clone(&self.slots).acquire_owned());
        // The semaphore is never closed; were it, that is treated like a full queue.
        let Ok(Ok(permit)) = acquire.await else {
            tracing::warn!(?waited, "password hashing pool busy");
            return Err(PasswordError::Busy { waited });
        };
        let hasher = self.hasher.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _slot = permit; // released when the work is done, even if the caller left
            work(&hasher)
        });
        task.await.map_err(|e| PasswordError::HashingFailed {
            reason: if e.is_panic() {
                "hashing task panicked".into()
            } else {
                "hashing task was cancelled".into()
            },
        })?
    }

    /// [`PasswordHasher::hash`] on the pool.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run) and [`PasswordHasher::hash`].
    #[tracing::instrument(name = "password.hash", skip_all)]
    pub async fn hash(&self, password: NormalizedPassword) -> Result<HashedPassword> {
        self.run(move |h| h.hash(&password)).await
    }

    /// [`PasswordHasher::verify`] on the pool.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run) and [`PasswordHasher::verify`].
    #[tracing::instrument(name = "password.verify", skip_all)]
    pub async fn verify(
        &self,
        password: NormalizedPassword,
        stored: HashedPassword,
    ) -> Result<bool> {
        self.run(move |h| h.verify(&password, stored.as_str()))
            .await
    }

    /// [`PasswordHasher::verify_and_upgrade`] on the pool.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run) and [`PasswordHasher::verify_and_upgrade`].
    #[tracing::instrument(name = "password.verify_and_upgrade", skip_all)]
    pub async fn verify_and_upgrade(
        &self,
        password: NormalizedPassword,
        stored: HashedPassword,
    ) -> Result<VerifyOutcome> {
        self.run(move |h| h.verify_and_upgrade(&password, stored.as_str()))
            .await
    }
}
