//! Postgres [`KvStore`].

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;

use super::{KvError, KvStore, Result};
use crate::BackendError;
use crate::postgres::{Migration, MigrationReport, Migrator};

/// The migrations of the core crate.
pub static MIGRATOR: Migrator = Migrator::new(
    "umanage-core",
    &[Migration {
        version: 1,
        description: "key-value table",
        sql: include_str!("../../migrations/0001_kv.sql"),
    }],
);

/// A [`KvStore`] in the table `umanage_kv`. Expiry is compared with the server's `now()`,
/// so all app instances agree on it whatever their clocks say. Expired rows are invisible
/// at once and removed by [`purge_expired`](Self::purge_expired) (run it from a periodic
/// job) or overwritten by the next write of the key.
#[derive(Debug, Clone)]
pub struct PostgresKvStore {
    pool: PgPool,
}

fn ttl_secs(ttl: Option<Duration>) -> Option<f64> {
    ttl.map(|t| t.as_secs_f64().max(0.001))
}

impl PostgresKvStore {
    /// A store on `pool`. Run [`migrate`](Self::migrate) once first.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates the table (idempotent; see [`Migrator::run`]).
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the migration fails.
    pub async fn migrate(pool: &PgPool) -> Result<MigrationReport, BackendError> {
        MIGRATOR.run(pool).await
    }

    /// Deletes expired rows; returns how many.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the query fails.
    pub async fn purge_expired(&self) -> Result<u64, BackendError> {
        let done = sqlx::query("DELETE FROM umanage_kv WHERE expires_at <= now()")
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl KvStore for PostgresKvStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let value: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT value FROM umanage_kv WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(BackendError::from)?;
        Ok(value)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        sqlx::query(
            "INSERT INTO umanage_kv (key, value, expires_at)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at",
        )
        .bind(key)
        .bind(value)
        .bind(ttl_secs(ttl))
        .execute(&self.pool)
        .await
        .map_err(BackendError::from)?;
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool> {
        // Inserts, or takes over an expired row; a live row makes the WHERE false and
        // nothing is returned.
        let stored: Option<i32> = sqlx::query_scalar(
            "INSERT INTO umanage_kv AS kv (key, value, expires_at)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
             WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()
             RETURNING 1",
        )
        .bind(key)
        .bind(value)
        .bind(ttl_secs(ttl))
        .fetch_optional(&self.pool)
        .await
        .map_err(BackendError::from)?;
        Ok(stored.is_some())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let removed: Option<bool> = sqlx::query_scalar(
            "DELETE FROM umanage_kv WHERE key = $1 RETURNING (expires_at IS NULL OR expires_at > now())",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(BackendError::from)?;
        Ok(removed.unwrap_or(false))
    }

    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64> {
        // One statement: insert a new counter, restart an expired one, or add to a live
        // integer. A live non-integer makes the WHERE false (no row back); the regex
        // guarantees the cast cannot fail, and an overflow raises 22003.
        let result: std::result::Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
            r"INSERT INTO umanage_kv AS kv (key, value, expires_at)
              VALUES ($1, convert_to($2::bigint::text, 'UTF8'), now() + make_interval(secs => $3))
              ON CONFLICT (key) DO UPDATE SET
                value = convert_to((CASE WHEN kv.expires_at <= now() THEN 0
                                         ELSE encode(kv.value, 'escape')::numeric END
                                    + $2::bigint)::bigint::text, 'UTF8'),
                expires_at = CASE WHEN kv.expires_at IS NULL OR kv.expires_at <= now()
                                  THEN EXCLUDED.expires_at ELSE kv.expires_at END
              WHERE (kv.expires_at IS NOT NULL AND kv.expires_at <= now())
                 OR encode(kv.value, 'escape') ~ '^-?[0-9]{1,19}$'
              RETURNING encode(value, 'escape')::bigint",
        )
        .bind(key)
        .bind(by)
        .bind(ttl.as_secs_f64().max(0.001))
        .fetch_optional(&self.pool)
        .await;
        match result {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(KvError::NotAnInteger),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("22003") => {
                Err(KvError::NotAnInteger)
            }
            Err(e) => Err(BackendError::from(e).into()),
        }
    }
}
