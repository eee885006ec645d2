//! The Postgres [`CredentialStore`] (feature `postgres`).
//!
//! Tables `umanage_credentials` and `umanage_credential_history`, created by [`migrate`].
//! A change locks the user's row (`SELECT ... FOR UPDATE`) in one transaction, checks the
//! version, moves the old hash to history, trims history and writes the new hash, so
//! concurrent changes on several app instances serialise and only one of them wins.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use umanage_core::postgres::{Migration, MigrationReport, Migrator};
use umanage_core::{BackendError, UserId};

use super::{Credential, CredentialStore, NewCredential, ReplaceOutcome};
use crate::error::Result;
use crate::hash::HashedPassword;

/// The migrations of this crate (component `umanage-password`).
pub static MIGRATOR: Migrator = Migrator::new(
    "umanage-password",
    &[Migration {
        version: 1,
        description: "credentials and credential history",
        sql: include_str!("../../migrations/0001_credentials.sql"),
    }],
);

/// Creates or updates this crate's tables.
///
/// # Errors
///
/// [`PasswordError::Backend`](crate::PasswordError::Backend) when a migration fails or the
/// database cannot be reached.
pub async fn migrate(pool: &PgPool) -> Result<MigrationReport> {
    Ok(MIGRATOR.run(pool).await?)
}

/// Credentials in Postgres.
#[derive(Debug, Clone)]
pub struct PostgresCredentialStore {
    pool: PgPool,
}

impl PostgresCredentialStore {
    /// A store on `pool` (run [`migrate`] once first).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// [`migrate`] on this store's pool.
    ///
    /// # Errors
    ///
    /// As [`migrate`].
    pub async fn migrate(&self) -> Result<MigrationReport> {
        migrate(&self.pool).await
    }
}

fn version_from_db(v: i64) -> Result<u64> {
    u64::try_from(v)
        .map_err(|_| BackendError::Protocol(format!("credential version {v} is negative")).into())
}

fn version_to_db(v: u64) -> Result<i64> {
    i64::try_from(v)
        .map_err(|_| BackendError::Protocol(format!("credential version {v} is too large")).into())
}

fn db(e: sqlx::Error) -> crate::PasswordError {
    BackendError::from(e).into()
}

#[async_trait]
impl CredentialStore for PostgresCredentialStore {
    #[tracing::instrument(name = "password.store.get", skip_all, fields(user = %user))]
    async fn get(&self, user: &UserId) -> Result<Option<Credential>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // REPEATABLE READ: the row and its history are one snapshot.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let row = sqlx::query(
            "SELECT hash, changed_at, version FROM umanage_credentials WHERE user_id = $1",
        )
        .bind(user.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            tx.commit().await.map_err(db)?;
            return Ok(None);
        };
        let history: Vec<String> = sqlx::query_scalar(
            "SELECT hash FROM umanage_credential_history WHERE user_id = $1 ORDER BY seq DESC",
        )
        .bind(user.as_uuid())
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let hash: String = row.try_get("hash").map_err(db)?;
        let changed_at: DateTime<Utc> = row.try_get("changed_at").map_err(db)?;
        let version: i64 = row.try_get("version").map_err(db)?;
        Ok(Some(Credential {
            hash: HashedPassword::new(hash),
            changed_at,
            version: version_from_db(version)?,
            history: history.into_iter().map(HashedPassword::new).collect(),
        }))
    }

    #[tracing::instrument(name = "password.store.replace", skip_all, fields(user = %user, expected))]
    async fn replace(
        &self,
        user: &UserId,
        expected: Option<u64>,
        new: NewCredential,
    ) -> Result<ReplaceOutcome> {
        let keep = i64::try_from(new.keep_history).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let Some(expected) = expected else {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO umanage_credentials (user_id, hash, changed_at, version)
                 VALUES ($1, $2, $3, 1)
                 ON CONFLICT (user_id) DO NOTHING
                 RETURNING version",
            )
            .bind(user.as_uuid())
            .bind(new.hash.as_str())
            .bind(new.changed_at)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if inserted.is_some() {
                tx.commit().await.map_err(db)?;
                return Ok(ReplaceOutcome::Replaced { version: 1 });
            }
            let current: Option<i64> =
                sqlx::query_scalar("SELECT version FROM umanage_credentials WHERE user_id = $1")
                    .bind(user.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            tx.rollback().await.map_err(db)?;
            return Ok(ReplaceOutcome::Conflict {
                current: current.map(version_from_db).transpose()?,
            });
        };

        let row = sqlx::query(
            "SELECT hash, version FROM umanage_credentials WHERE user_id = $1 FOR UPDATE",
        )
        .bind(user.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(db)?;
            return Ok(ReplaceOutcome::Conflict { current: None });
        };
        let old_hash: String = row.try_get("hash").map_err(db)?;
        let current = version_from_db(row.try_get("version").map_err(db)?)?;
        if current != expected {
            tx.rollback().await.map_err(db)?;
            return Ok(ReplaceOutcome::Conflict {
                current: Some(current),
            });
        }
        let next = current + 1;
        if keep > 0 {
            sqlx::query(
                "INSERT INTO umanage_credential_history (user_id, seq, hash) VALUES ($1, $2, $3)",
            )
            .bind(user.as_uuid())
            .bind(version_to_db(current)?)
            .bind(&old_hash)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        sqlx::query(
            "DELETE FROM umanage_credential_history
             WHERE user_id = $1 AND seq NOT IN (
                 SELECT seq FROM umanage_credential_history
                 WHERE user_id = $1 ORDER BY seq DESC LIMIT $2)",
        )
        .bind(user.as_uuid())
        .bind(keep)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "UPDATE umanage_credentials
             SET hash = $2, changed_at = $3, version = $4, updated_at = now()
             WHERE user_id = $1",
        )
        .bind(user.as_uuid())
        .bind(new.hash.as_str())
        .bind(new.changed_at)
        .bind(version_to_db(next)?)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(ReplaceOutcome::Replaced { version: next })
    }

    #[tracing::instrument(name = "password.store.upgrade_hash", skip_all, fields(user = %user, expected))]
    async fn upgrade_hash(
        &self,
        user: &UserId,
        expected: u64,
        hash: HashedPassword,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE umanage_credentials
             SET hash = $3, version = version + 1, updated_at = now()
             WHERE user_id = $1 AND version = $2",
        )
        .bind(user.as_uuid())
        .bind(version_to_db(expected)?)
        .bind(hash.as_str())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "password.store.delete", skip_all, fields(user = %user))]
    async fn delete(&self, user: &UserId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM umanage_credentials WHERE user_id = $1")
            .bind(user.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }
}
