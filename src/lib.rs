#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Shared vocabulary: ids, request context, clocks, backend errors, keys, IP utilities,
/// Redis/Postgres helpers, the key-value store and the test kit.
pub use umanage_core as core;

/// User accounts: usernames and emails unique after normalisation, roles, status.
#[cfg(feature = "account")]
pub use umanage_account as account;

/// Password policy, strength, breach checks, spray detection and hashing.
#[cfg(feature = "password")]
pub use umanage_password as password;

/// Sessions: expiry, devices, limits, rotation and replay protection.
#[cfg(feature = "session")]
pub use umanage_session as session;

/// Rate limiting: six strategies, memory and Redis, tiers, tower layer.
#[cfg(feature = "ratelimit")]
pub use umanage_ratelimit as ratelimit;

/// Audit events, pipeline, storage and tamper evidence.
#[cfg(feature = "audit")]
pub use umanage_audit as audit;

pub use umanage_core::{
    BackendError, ClientIpResolver, Clock, IpKeyPolicy, KeyBuilder, ManualClock, RequestContext,
    SharedClock, SystemClock, UserId,
};

/// Postgres for the whole SDK: the pool type, connecting, and the migrations of every
/// enabled crate in one call.
///
/// ```no_run
/// # async fn demo() -> Result<(), umanage::BackendError> {
/// use umanage::postgres::{PgConfig, connect_and_migrate};
///
/// let pool = connect_and_migrate(&PgConfig::builder("postgres://app@127.0.0.1/app").build()?).await?;
/// umanage::postgres::ping(&pool, std::time::Duration::from_secs(1)).await?;
/// # Ok(()) }
/// ```
#[cfg(feature = "postgres")]
pub mod postgres {
    use std::time::Duration;

    pub use sqlx::PgPool;
    pub use umanage_core::postgres::{MigrationReport, PgConfig, PgConfigBuilder};

    use umanage_core::BackendError;

    /// Applies the migrations of every enabled crate that keeps data in Postgres (accounts,
    /// credentials, audit, and the core key-value table), each once even when several
    /// instances start together (see [`umanage_core::postgres`]). Idempotent.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the database cannot be reached or a migration fails (a failing
    /// migration leaves its crate's schema as it was).
    pub async fn migrate_all(pool: &PgPool) -> Result<Vec<MigrationReport>, BackendError> {
        let mut reports = Vec::new();
        reports.push(umanage_core::kv::PostgresKvStore::migrate(pool).await?);
        #[cfg(feature = "account")]
        reports.push(umanage_account::postgres::MIGRATOR.run(pool).await?);
        #[cfg(feature = "password")]
        reports.push(
            umanage_password::store::postgres::MIGRATOR
                .run(pool)
                .await?,
        );
        #[cfg(feature = "audit")]
        reports.push(umanage_audit::PostgresAuditStorage::migrate(pool).await?);
        Ok(reports)
    }

    /// Connects with `config` and runs [`migrate_all`].
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the database cannot be reached or a migration fails.
    pub async fn connect_and_migrate(config: &PgConfig) -> Result<PgPool, BackendError> {
        let pool = config.connect().await?;
        migrate_all(&pool).await?;
        Ok(pool)
    }

    /// Runs `SELECT 1` within `timeout` (a readiness probe).
    ///
    /// # Errors
    ///
    /// [`BackendError::Timeout`] when no answer came in time, another [`BackendError`] when
    /// the database refused or the pool is closed.
    pub async fn ping(pool: &PgPool, timeout: Duration) -> Result<(), BackendError> {
        match tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(pool)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(BackendError::Postgres(e)),
            Err(_) => Err(BackendError::Timeout {
                operation: "postgres ping",
                after: timeout,
            }),
        }
    }
}
