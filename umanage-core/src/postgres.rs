//! PostgreSQL support: pool configuration and a migration runner shared by every crate.
//!
//! Each umanage crate that keeps data in Postgres owns plain SQL files under its
//! `migrations/` folder and a [`Migrator`] listing them. All crates record what they applied
//! in one table, `umanage_migrations`, keyed by **(component, version)**, so two crates can
//! both have a "version 1" without colliding, and a host can run the migrations of the
//! crates it uses in any order. (sqlx's own migrator keeps one version sequence per
//! database, which is why it is not used here.)
//!
//! A run is one transaction holding a transaction-level advisory lock, so several app
//! instances starting at once apply each migration exactly once, and a failing migration
//! leaves nothing half-applied. Migrations run in the connection's `search_path` schema,
//! which is how the test kit gives every test its own schema.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor as _, PgPool, Row};

use crate::BackendError;
use crate::redact::redact_url;

/// How to reach Postgres. `Debug` hides any password in the URL.
///
/// ```
/// use umanage_core::postgres::PgConfig;
///
/// let cfg: PgConfig = toml::from_str(r#"
///     url = "postgres://app@127.0.0.1:5432/app"
///     max_connections = 20
///     statement_timeout = "5s"
/// "#).unwrap();
/// assert_eq!(cfg.max_connections(), 20);
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "RawPgConfig", into = "RawPgConfig")]
pub struct PgConfig {
    url: String,
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    statement_timeout: Option<Duration>,
    application_name: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPgConfig {
    url: String,
    #[serde(default = "default_max")]
    max_connections: u32,
    #[serde(default)]
    min_connections: u32,
    #[serde(with = "crate::duration", default = "default_acquire")]
    acquire_timeout: Duration,
    #[serde(with = "crate::duration::option", default)]
    statement_timeout: Option<Duration>,
    #[serde(default = "default_app_name")]
    application_name: String,
}

fn default_max() -> u32 {
    PgConfig::DEFAULT_MAX_CONNECTIONS
}
fn default_acquire() -> Duration {
    PgConfig::DEFAULT_ACQUIRE_TIMEOUT
}
fn default_app_name() -> String {
    PgConfig::DEFAULT_APPLICATION_NAME.to_owned()
}

impl TryFrom<RawPgConfig> for PgConfig {
    type Error = BackendError;
    fn try_from(raw: RawPgConfig) -> Result<Self, Self::Error> {
        let mut b = PgConfig::builder(raw.url)
            .max_connections(raw.max_connections)
            .min_connections(raw.min_connections)
            .acquire_timeout(raw.acquire_timeout)
            .application_name(raw.application_name);
        if let Some(t) = raw.statement_timeout {
            b = b.statement_timeout(t);
        }
        b.build()
    }
}

impl From<PgConfig> for RawPgConfig {
    fn from(c: PgConfig) -> Self {
        Self {
            url: c.url,
            max_connections: c.max_connections,
            min_connections: c.min_connections,
            acquire_timeout: c.acquire_timeout,
            statement_timeout: c.statement_timeout,
            application_name: c.application_name,
        }
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("application_name", &self.application_name)
            .finish()
    }
}

impl PgConfig {
    /// Default pool size.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
    /// Default time to wait for a free pooled connection.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default `application_name` reported to the server.
    pub const DEFAULT_APPLICATION_NAME: &'static str = "umanage";

    /// A builder for the database at `url` (`postgres://user[:password]@host[:port]/db`).
    pub fn builder(url: impl Into<String>) -> PgConfigBuilder {
        PgConfigBuilder {
            inner: PgConfig {
                url: url.into(),
                max_connections: Self::DEFAULT_MAX_CONNECTIONS,
                min_connections: 0,
                acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
                statement_timeout: None,
                application_name: Self::DEFAULT_APPLICATION_NAME.to_owned(),
            },
        }
    }

    /// The URL (may contain a password: do not log it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The pool size.
    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }

    /// Connection options for sqlx, with `statement_timeout` and `application_name` set.
    ///
    /// # Errors
    ///
    /// [`BackendError::Postgres`] for a URL sqlx cannot parse.
    pub fn connect_options(&self) -> Result<PgConnectOptions, BackendError> {
        let mut opts: PgConnectOptions = self.url.parse()?;
        opts = opts.application_name(&self.application_name);
        if let Some(t) = self.statement_timeout {
            opts = opts.options([("statement_timeout", format!("{}", t.as_millis()))]);
        }
        Ok(opts)
    }

    /// Pool options (sizes and timeouts) to combine with [`connect_options`](Self::connect_options).
    pub fn pool_options(&self) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(self.acquire_timeout)
    }

    /// Opens a pool and checks that the server answers.
    ///
    /// # Errors
    ///
    /// [`BackendError::Postgres`] when the URL is invalid or the server cannot be reached
    /// ([`BackendError::is_unavailable`]).
    pub async fn connect(&self) -> Result<PgPool, BackendError> {
        let pool = self
            .pool_options()
            .connect_with(self.connect_options()?)
            .await?;
        tracing::debug!(url = %redact_url(&self.url), "postgres connected");
        Ok(pool)
    }
}

/// Builder for [`PgConfig`].
#[derive(Clone)]
#[must_use]
pub struct PgConfigBuilder {
    inner: PgConfig,
}

impl fmt::Debug for PgConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PgConfigBuilder").field(&self.inner).finish()
    }
}

impl PgConfigBuilder {
    /// Pool size (at least 1).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.inner.max_connections = n;
        self
    }

    /// Connections kept open when idle.
    pub fn min_connections(mut self, n: u32) -> Self {
        self.inner.min_connections = n;
        self
    }

    /// Time to wait for a free connection.
    pub fn acquire_timeout(mut self, t: Duration) -> Self {
        self.inner.acquire_timeout = t;
        self
    }

    /// Server-side limit for each statement.
    pub fn statement_timeout(mut self, t: Duration) -> Self {
        self.inner.statement_timeout = Some(t);
        self
    }

    /// `application_name` shown in `pg_stat_activity`.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.inner.application_name = name.into();
        self
    }

    /// Validates and builds the config.
    ///
    /// # Errors
    ///
    /// [`BackendError::Config`] for a non-Postgres URL, a pool size of zero, more minimum
    /// than maximum connections, or a zero timeout.
    pub fn build(self) -> Result<PgConfig, BackendError> {
        let c = self.inner;
        if !(c.url.starts_with("postgres://") || c.url.starts_with("postgresql://")) {
            return Err(BackendError::Config(format!(
                "postgres url {} must start with postgres:// or postgresql://",
                redact_url(&c.url)
            )));
        }
        if c.max_connections == 0 {
            return Err(BackendError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
        if c.min_connections > c.max_connections {
            return Err(BackendError::Config(format!(
                "min_connections ({}) exceeds max_connections ({})",
                c.min_connections, c.max_connections
            )));
        }
        if c.acquire_timeout.is_zero() || c.statement_timeout.is_some_and(|t| t.is_zero()) {
            return Err(BackendError::Config(
                "postgres timeouts must be greater than zero".into(),
            ));
        }
        Ok(c)
    }
}

/// One migration: a version (strictly increasing within a component), a short
/// description, and the SQL (several statements allowed).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version, unique and increasing within the component.
    pub version: i64,
    /// What it does, recorded in the bookkeeping table.
    pub description: &'static str,
    /// The SQL, usually `include_str!("../migrations/0001_init.sql")`.
    pub sql: &'static str,
}

/// The migrations of one component (crate).
///
/// ```
/// use umanage_core::postgres::{Migration, Migrator};
///
/// static MIGRATOR: Migrator = Migrator::new("my-component", &[Migration {
///     version: 1,
///     description: "create widgets",
///     sql: "CREATE TABLE IF NOT EXISTS umanage_widgets (id bigint PRIMARY KEY)",
/// }]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Migrator {
    component: &'static str,
    migrations: &'static [Migration],
}

/// What a [`Migrator::run`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    /// Versions applied by this run.
    pub applied: Vec<i64>,
    /// Versions found already applied (checksums verified).
    pub already_applied: Vec<i64>,
}

impl Migrator {
    /// The migrations of `component`, in version order.
    pub const fn new(component: &'static str, migrations: &'static [Migration]) -> Self {
        Self {
            component,
            migrations,
        }
    }

    /// The component name.
    pub const fn component(&self) -> &'static str {
        self.component
    }

    /// The migrations.
    pub const fn migrations(&self) -> &'static [Migration] {
        self.migrations
    }

    /// Applies every migration not yet applied, in one transaction.
    ///
    /// Versions recorded in the database but unknown to this build (a newer release already
    /// migrated the database) are left alone, so an older instance can still start during
    /// a rolling deploy.
    ///
    /// # Errors
    ///
    /// * [`BackendError::Migration`] when versions are not strictly increasing, when an
    ///   applied migration's SQL changed since (checksum mismatch), or when a statement fails;
    ///   nothing of the run is kept then.
    /// * [`BackendError::Postgres`] when the database cannot be reached.
    pub async fn run(&self, pool: &PgPool) -> Result<MigrationReport, BackendError> {
        self.check_order()?;
        let mut tx = pool.begin().await?;
        match self.apply(&mut tx).await {
            Ok(report) => {
                tx.commit().await?;
                if !report.applied.is_empty() {
                    tracing::info!(component = self.component, applied = ?report.applied, "migrations applied");
                }
                Ok(report)
            }
            Err(err) => {
                // Roll back now rather than on drop, so the connection goes back to the
                // pool without locks on half-created objects.
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(component = self.component, error = %rollback, "migration rollback failed");
                }
                Err(err)
            }
        }
    }

    async fn apply(&self, tx: &mut sqlx::PgConnection) -> Result<MigrationReport, BackendError> {
        // One lock per schema: concurrent runs in one schema wait for each other.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('umanage_migrations:' || current_schema(), 0))")
            .execute(&mut *tx)
            .await?;
        (&mut *tx)
            .execute(
                "CREATE TABLE IF NOT EXISTS umanage_migrations (
                    component   text        NOT NULL,
                    version     bigint      NOT NULL,
                    description text        NOT NULL,
                    checksum    bytea       NOT NULL,
                    applied_at  timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (component, version)
                )",
            )
            .await?;
        let rows =
            sqlx::query("SELECT version, checksum FROM umanage_migrations WHERE component = $1")
                .bind(self.component)
                .fetch_all(&mut *tx)
                .await?;
        let applied: std::collections::HashMap<i64, Vec<u8>> = rows
            .iter()
            .map(|r| Ok((r.try_get("version")?, r.try_get("checksum")?)))
            .collect::<Result<_, sqlx::Error>>()?;

        let mut report = MigrationReport::default();
        for m in self.migrations {
            let checksum = Sha256::digest(m.sql.as_bytes()).to_vec();
            if let Some(existing) = applied.get(&m.version) {
                if *existing != checksum {
                    return Err(self.error(
                        m.version,
                        "applied migration was modified since (checksum mismatch)".into(),
                    ));
                }
                report.already_applied.push(m.version);
                continue;
            }
            (&mut *tx)
                .execute(m.sql)
                .await
                .map_err(|e| self.error(m.version, e.to_string()))?;
            sqlx::query(
                "INSERT INTO umanage_migrations (component, version, description, checksum) VALUES ($1, $2, $3, $4)",
            )
            .bind(self.component)
            .bind(m.version)
            .bind(m.description)
            .bind(&checksum)
            .execute(&mut *tx)
            .await?;
            report.applied.push(m.version);
        }
        Ok(report)
    }

    fn check_order(&self) -> Result<(), BackendError> {
        for pair in self.migrations.windows(2) {
            if pair[1].version <= pair[0].version {
                return Err(self.error(
                    pair[1].version,
                    "versions must be strictly increasing".into(),
                ));
            }
        }
        Ok(())
    }

    fn error(&self, version: i64, reason: String) -> BackendError {
        BackendError::Migration {
            component: self.component,
            version,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        assert!(PgConfig::builder("postgres://u@h/db").build().is_ok());
        assert!(PgConfig::builder("mysql://u@h/db").build().is_err());
        assert!(
            PgConfig::builder("postgres://u@h/db")
                .max_connections(0)
                .build()
                .is_err()
        );
        assert!(
            PgConfig::builder("postgres://u@h/db")
                .max_connections(2)
                .min_connections(3)
                .build()
                .is_err()
        );
        assert!(
            PgConfig::builder("postgres://u@h/db")
                .statement_timeout(Duration::ZERO)
                .build()
                .is_err()
        );
    }

    #[test]
    fn debug_redacts_and_serde_rejects_unknown() {
        let cfg = PgConfig::builder("postgres://app:s3cret@db/app")
            .build()
            .unwrap();
        assert!(!format!("{cfg:?}").contains("s3cret"));
        assert!(serde_json::from_str::<PgConfig>(r#"{"url":"postgres://h/d","pool":3}"#).is_err());
    }

    #[test]
    fn out_of_order_versions_are_rejected_before_touching_the_database() {
        static BAD: Migrator = Migrator::new(
            "bad",
            &[
                Migration {
                    version: 2,
                    description: "b",
                    sql: "SELECT 1",
                },
                Migration {
                    version: 1,
                    description: "a",
                    sql: "SELECT 1",
                },
            ],
        );
        let err = BAD.check_order().unwrap_err();
        assert!(matches!(
            err,
            BackendError::Migration {
                component: "bad",
                version: 1,
                ..
            }
        ));
    }
}
