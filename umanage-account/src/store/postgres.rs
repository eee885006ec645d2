//! Postgres [`AccountStore`].

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use umanage_core::BackendError;
use umanage_core::UserId;
use umanage_core::postgres::{Migration, MigrationReport, Migrator};
use uuid::Uuid;

use super::{AccountStore, page_size};
use crate::error::{AccountError, Result};
use crate::model::{
    Account, AccountCursor, AccountPage, AccountStatus, Email, Login, NewAccount, Role, Username,
};

/// The migrations of this crate (component `umanage-account`).
pub static MIGRATOR: Migrator = Migrator::new(
    "umanage-account",
    &[Migration {
        version: 1,
        description: "accounts table",
        sql: include_str!("../../migrations/0001_accounts.sql"),
    }],
);

/// Creates or upgrades the `umanage_accounts` table (idempotent, safe to run from several
/// instances at once; see [`Migrator::run`]).
///
/// # Errors
///
/// [`BackendError`] when a migration fails or the database cannot be reached.
pub async fn migrate(pool: &PgPool) -> std::result::Result<MigrationReport, BackendError> {
    MIGRATOR.run(pool).await
}

const USERNAME_CONSTRAINT: &str = "umanage_accounts_username_key_unique";
const EMAIL_CONSTRAINT: &str = "umanage_accounts_email_key_unique";

const COLUMNS: &str = "id, username, email, email_key, display_name, roles, status, \
                       locked_until, lock_reason, created_at, updated_at, version";

/// An [`AccountStore`] in the table `umanage_accounts` (run [`migrate`] first).
///
/// Uniqueness is enforced by the `UNIQUE (username_key)` and `UNIQUE (email_key)`
/// constraints, so it holds across any number of app instances; their violations become
/// [`AccountError::UsernameTaken`] / [`AccountError::EmailTaken`]. `created_at` and
/// `updated_at` come from the server's `now()` (the start of the statement's transaction),
/// so every instance agrees whatever its own clock says; times have microsecond precision.
#[derive(Debug, Clone)]
pub struct PostgresAccountStore {
    pool: PgPool,
}

impl PostgresAccountStore {
    /// A store on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Runs this crate's migrations on `pool` (same as [`migrate`]).
    ///
    /// # Errors
    ///
    /// [`BackendError`] when a migration fails or the database cannot be reached.
    pub async fn migrate(pool: &PgPool) -> std::result::Result<MigrationReport, BackendError> {
        migrate(pool).await
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn find_where(&self, column: &str, value: &str) -> Result<Option<Account>> {
        let sql = format!("SELECT {COLUMNS} FROM umanage_accounts WHERE {column} = $1");
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(from_row).transpose()
    }

    /// Runs an `UPDATE ... WHERE id = $1 AND version = $2 RETURNING` built by `query`; when
    /// no row matched, tells `NotFound` from `VersionConflict`.
    async fn update(
        &self,
        id: UserId,
        expected: u64,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Account> {
        let row = query
            .fetch_optional(&self.pool)
            .await
            .map_err(write_error)?;
        if let Some(row) = row {
            return from_row(&row);
        }
        let actual: Option<i64> =
            sqlx::query_scalar("SELECT version FROM umanage_accounts WHERE id = $1")
                .bind(id.into_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        match actual {
            None => Err(AccountError::NotFound { id }),
            Some(actual) => Err(AccountError::VersionConflict {
                id,
                expected,
                actual: version_from_db(actual)?,
            }),
        }
    }
}

/// A version no row has (versions are >= 1) when `expected` does not fit in `bigint`.
fn version_to_db(expected: u64) -> i64 {
    i64::try_from(expected).unwrap_or(-1)
}

fn version_from_db(v: i64) -> Result<u64> {
    u64::try_from(v)
        .map_err(|_| BackendError::Protocol(format!("account version {v} is negative")).into())
}

fn backend(e: sqlx::Error) -> AccountError {
    AccountError::Backend(BackendError::from(e))
}

/// Unique violations of the two named constraints become typed conflicts.
fn write_error(e: sqlx::Error) -> AccountError {
    if let sqlx::Error::Database(db) = &e
        && db.code().as_deref() == Some("23505")
    {
        match db.constraint() {
            Some(USERNAME_CONSTRAINT) => return AccountError::UsernameTaken,
            Some(EMAIL_CONSTRAINT) => return AccountError::EmailTaken,
            _ => {}
        }
    }
    backend(e)
}

fn status_columns(status: &AccountStatus) -> (&'static str, Option<DateTime<Utc>>, Option<&str>) {
    match status {
        AccountStatus::Active => ("active", None, None),
        AccountStatus::Locked { until, reason } => ("locked", *until, Some(reason.as_str())),
        AccountStatus::Disabled => ("disabled", None, None),
    }
}

fn roles_column(roles: &BTreeSet<Role>) -> Vec<String> {
    roles.iter().map(|r| r.as_str().to_owned()).collect()
}

fn from_row(row: &PgRow) -> Result<Account> {
    let corrupt = |what: &str| {
        AccountError::from(BackendError::Protocol(format!(
            "umanage_accounts row has {what}"
        )))
    };
    let get = |e: sqlx::Error| backend(e);
    let id: Uuid = row.try_get("id").map_err(get)?;
    let username: String = row.try_get("username").map_err(get)?;
    let email: String = row.try_get("email").map_err(get)?;
    let email_key: String = row.try_get("email_key").map_err(get)?;
    let roles: Vec<String> = row.try_get("roles").map_err(get)?;
    let status: String = row.try_get("status").map_err(get)?;
    let status = match status.as_str() {
        "active" => AccountStatus::Active,
        "disabled" => AccountStatus::Disabled,
        "locked" => AccountStatus::Locked {
            until: row.try_get("locked_until").map_err(get)?,
            reason: row
                .try_get::<Option<String>, _>("lock_reason")
                .map_err(get)?
                .unwrap_or_default(),
        },
        _ => return Err(corrupt("an unknown status")),
    };
    Ok(Account {
        id: UserId::from_uuid(id),
        username: Username::from_stored(username),
        email: Email::from_stored(email, email_key)
            .ok_or_else(|| corrupt("an email without '@'"))?,
        display_name: row.try_get("display_name").map_err(get)?,
        roles: roles.into_iter().map(Role::from_stored).collect(),
        status,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
        version: version_from_db(row.try_get("version").map_err(get)?)?,
    })
}

#[async_trait]
impl AccountStore for PostgresAccountStore {
    #[tracing::instrument(name = "account.create", skip_all, fields(backend = "postgres"))]
    async fn create(&self, new: NewAccount) -> Result<Account> {
        let valid = new.validate()?;
        let (status, locked_until, lock_reason) = status_columns(&valid.status);
        let sql = format!(
            "INSERT INTO umanage_accounts
                 (id, username, username_key, email, email_key, display_name, roles,
                  status, locked_until, lock_reason)
             VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9)
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(Uuid::new_v4())
            .bind(valid.username.as_str())
            .bind(valid.email.as_str())
            .bind(valid.email.key())
            .bind(valid.display_name.as_deref())
            .bind(roles_column(&valid.roles))
            .bind(status)
            .bind(locked_until)
            .bind(lock_reason)
            .fetch_one(&self.pool)
            .await
            .map_err(write_error)?;
        from_row(&row)
    }

    #[tracing::instrument(name = "account.get", skip_all, fields(backend = "postgres", %id))]
    async fn get(&self, id: UserId) -> Result<Option<Account>> {
        let sql = format!("SELECT {COLUMNS} FROM umanage_accounts WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.into_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(from_row).transpose()
    }

    #[tracing::instrument(name = "account.find_by_login", skip_all, fields(backend = "postgres"))]
    async fn find_by_login(&self, login: &str) -> Result<Option<Account>> {
        match Login::parse(login) {
            Some(Login::Username(u)) => self.find_where("username_key", u.as_str()).await,
            Some(Login::Email(e)) => self.find_where("email_key", e.key()).await,
            None => Ok(None),
        }
    }

    #[tracing::instrument(
        name = "account.find_by_username",
        skip_all,
        fields(backend = "postgres")
    )]
    async fn find_by_username(&self, username: &str) -> Result<Option<Account>> {
        match Username::parse(username) {
            Ok(u) => self.find_where("username_key", u.as_str()).await,
            Err(_) => Ok(None),
        }
    }

    #[tracing::instrument(name = "account.find_by_email", skip_all, fields(backend = "postgres"))]
    async fn find_by_email(&self, email: &str) -> Result<Option<Account>> {
        match Email::parse(email) {
            Ok(e) => self.find_where("email_key", e.key()).await,
            Err(_) => Ok(None),
        }
    }

    #[tracing::instrument(name = "account.update_status", skip_all, fields(backend = "postgres", %id))]
    async fn update_status(
        &self,
        id: UserId,
        status: AccountStatus,
        expected_version: u64,
    ) -> Result<Account> {
        let status = status.normalized()?;
        let (state, until, reason) = status_columns(&status);
        let sql = format!(
            "UPDATE umanage_accounts
             SET status = $3, locked_until = $4, lock_reason = $5,
                 version = version + 1, updated_at = now()
             WHERE id = $1 AND version = $2
             RETURNING {COLUMNS}"
        );
        let query = sqlx::query(&sql)
            .bind(id.into_uuid())
            .bind(version_to_db(expected_version))
            .bind(state)
            .bind(until)
            .bind(reason);
        self.update(id, expected_version, query).await
    }

    #[tracing::instrument(name = "account.set_roles", skip_all, fields(backend = "postgres", %id))]
    async fn set_roles(
        &self,
        id: UserId,
        roles: BTreeSet<Role>,
        expected_version: u64,
    ) -> Result<Account> {
        let sql = format!(
            "UPDATE umanage_accounts
             SET roles = $3, version = version + 1, updated_at = now()
             WHERE id = $1 AND version = $2
             RETURNING {COLUMNS}"
        );
        let query = sqlx::query(&sql)
            .bind(id.into_uuid())
            .bind(version_to_db(expected_version))
            .bind(roles_column(&roles));
        self.update(id, expected_version, query).await
    }

    #[tracing::instrument(name = "account.update_email", skip_all, fields(backend = "postgres", %id))]
    async fn update_email(
        &self,
        id: UserId,
        email: &str,
        expected_version: u64,
    ) -> Result<Account> {
        let email = Email::parse(email)?;
        let sql = format!(
            "UPDATE umanage_accounts
             SET email = $3, email_key = $4, version = version + 1, updated_at = now()
             WHERE id = $1 AND version = $2
             RETURNING {COLUMNS}"
        );
        let query = sqlx::query(&sql)
            .bind(id.into_uuid())
            .bind(version_to_db(expected_version))
            .bind(email.as_str())
            .bind(email.key());
        self.update(id, expected_version, query).await
    }

    #[tracing::instrument(name = "account.update_display_name", skip_all, fields(backend = "postgres", %id))]
    async fn update_display_name(
        &self,
        id: UserId,
        display_name: Option<&str>,
        expected_version: u64,
    ) -> Result<Account> {
        let display_name = display_name
            .map(NewAccount::normalize_display_name)
            .transpose()?;
        let sql = format!(
            "UPDATE umanage_accounts
             SET display_name = $3, version = version + 1, updated_at = now()
             WHERE id = $1 AND version = $2
             RETURNING {COLUMNS}"
        );
        let query = sqlx::query(&sql)
            .bind(id.into_uuid())
            .bind(version_to_db(expected_version))
            .bind(display_name);
        self.update(id, expected_version, query).await
    }

    #[tracing::instrument(name = "account.delete", skip_all, fields(backend = "postgres", %id))]
    async fn delete(&self, id: UserId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM umanage_accounts WHERE id = $1")
            .bind(id.into_uuid())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(name = "account.list", skip_all, fields(backend = "postgres", limit = limit))]
    async fn list(&self, cursor: Option<AccountCursor>, limit: usize) -> Result<AccountPage> {
        let limit = page_size(limit);
        // Two statements rather than `$1 IS NULL OR id > $1`, so each page is a primary-key
        // range scan whatever plan the server caches.
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let rows = match cursor {
            None => {
                let sql = format!("SELECT {COLUMNS} FROM umanage_accounts ORDER BY id LIMIT $1");
                sqlx::query(&sql).bind(fetch).fetch_all(&self.pool).await
            }
            Some(c) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM umanage_accounts WHERE id > $1 ORDER BY id LIMIT $2"
                );
                sqlx::query(&sql)
                    .bind(c.last_id().into_uuid())
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(backend)?;
        let mut accounts = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        let next_cursor = if accounts.len() > limit {
            accounts.truncate(limit);
            accounts.last().map(|a| AccountCursor::after(a.id))
        } else {
            None
        };
        Ok(AccountPage {
            accounts,
            next_cursor,
        })
    }

    #[tracing::instrument(name = "account.count_with_role", skip_all, fields(backend = "postgres", role = %role))]
    async fn count_with_role(&self, role: &Role) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM umanage_accounts WHERE roles @> ARRAY[$1::text]",
        )
        .bind(role.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
