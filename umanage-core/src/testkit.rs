//! The test kit: real services, isolated per test, and the conformance-suite pattern.
//!
//! # Services
//!
//! Backend tests talk to real Redis and Postgres servers named by environment variables
//! read at run time:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `UMANAGE_TEST_REDIS_URL` | e.g. `redis://127.0.0.1:6379` |
//! | `UMANAGE_TEST_DATABASE_URL` | e.g. `postgres://postgres@127.0.0.1:5432/test` |
//! | `UMANAGE_REQUIRE_SERVICES` | `1`: a missing or unreachable service **fails** the test |
//!
//! Without `UMANAGE_REQUIRE_SERVICES=1`, a test whose service is not configured prints why
//! and returns early (it counts as passed, so read the output). CI sets all three.
//!
//! [`redis()`] gives each test its own key prefix and deletes every key under it when the
//! [`TestRedis`] is dropped; [`postgres()`] creates a fresh schema, points a pool's
//! `search_path` at it, and drops it (cascade) when the [`TestPostgres`] is dropped. Tests
//! therefore run in parallel and leave nothing behind, even when they panic.
//!
//! # Conformance suites
//!
//! A backend trait's contract is written once, as plain `async fn`s taking a [`Harness`]
//! that holds the trait object (see [`crate::testing::kv`]). [`conformance_tests!`](crate::conformance_tests) stamps out one
//! `#[tokio::test]` per function for a given harness constructor, so every backend runs the
//! same suite:
//!
//! ```text
//! mod memory {
//!     async fn harness() -> Option<KvHarness> { Some(kv::memory_harness()) }
//!     umanage_core::kv_conformance!(harness);
//! }
//! mod redis {
//!     async fn harness() -> Option<KvHarness> { /* testkit::redis().await ... */ }
//!     umanage_core::kv_conformance!(harness);
//! }
//! ```
//!
//! A constructor returning `None` means "service not configured": the test returns early
//! after the kit printed why.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use uuid::Uuid;

use crate::ManualClock;
use crate::postgres::PgConfig;
use crate::redact::redact_url;
use crate::redis::{RedisConfig, RedisConnection};

/// The variable naming the test Redis.
pub const REDIS_URL_VAR: &str = "UMANAGE_TEST_REDIS_URL";
/// The variable naming the test Postgres database.
pub const DATABASE_URL_VAR: &str = "UMANAGE_TEST_DATABASE_URL";
/// The variable that turns a missing service into a failure.
pub const REQUIRE_VAR: &str = "UMANAGE_REQUIRE_SERVICES";

/// Where the test services are, as read from the environment (or given by a test).
#[derive(Debug, Clone, Default)]
pub struct ServiceEnv {
    /// `UMANAGE_TEST_REDIS_URL`.
    pub redis_url: Option<String>,
    /// `UMANAGE_TEST_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `UMANAGE_REQUIRE_SERVICES=1`.
    pub require: bool,
}

impl ServiceEnv {
    /// Reads the three variables. Empty values count as unset.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (for tests of the kit itself).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        Self {
            redis_url: get(REDIS_URL_VAR),
            database_url: get(DATABASE_URL_VAR),
            require: get(REQUIRE_VAR).is_some_and(|v| v.trim() == "1"),
        }
    }
}

/// Why a required service cannot be used. Its message names the variable to fix.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The variable is not set although services are required.
    #[error("{var} is not set, but {REQUIRE_VAR}=1 requires this service")]
    Missing {
        /// The unset variable.
        var: &'static str,
    },
    /// The service named by the variable cannot be used.
    #[error("{var}={url} is unreachable or unusable ({REQUIRE_VAR}=1): {reason}")]
    Unreachable {
        /// The variable.
        var: &'static str,
        /// Its value, with any password hidden.
        url: String,
        /// What failed.
        reason: String,
    },
}

fn unique_suffix() -> String {
    Uuid::new_v4().simple().to_string()
}

fn skip_or_fail<T>(env: &ServiceEnv, err: TestkitError) -> Result<Option<T>, TestkitError> {
    if env.require {
        Err(err)
    } else {
        eprintln!("skipping: {err} (set {REQUIRE_VAR}=1 to make this a failure)");
        Ok(None)
    }
}

/// A Redis namespace private to one test: a connection whose key prefix is unique.
/// Dropping it deletes every key under the prefix.
#[derive(Debug)]
pub struct TestRedis {
    conn: RedisConnection,
    url: String,
    prefix: String,
}

impl TestRedis {
    /// The connection (its key builder uses the private prefix).
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    /// The unique prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The server URL (for tests that need a second, independent connection).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A config for the same server and prefix, for building another connection (another
    /// "app instance").
    ///
    /// # Panics
    ///
    /// Never in practice: the URL and prefix were validated when the namespace was made.
    #[allow(clippy::expect_used)]
    pub fn config(&self) -> RedisConfig {
        RedisConfig::builder(&self.url)
            .key_prefix(&self.prefix)
            .build()
            .expect("validated when the namespace was created")
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}:*", self.prefix);
        run_detached(move || async move {
            let client = redis::Client::open(url.as_str())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut conn)
                    .await?;
                if !keys.is_empty() {
                    let () = redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async(&mut conn)
                        .await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            Ok::<(), redis::RedisError>(())
        });
    }
}

/// A Postgres schema private to one test, with a pool whose `search_path` is that schema.
/// Dropping it drops the schema and everything in it.
#[derive(Debug)]
pub struct TestPostgres {
    pool: sqlx::PgPool,
    url: String,
    schema: String,
}

impl TestPostgres {
    /// The pool (every connection's `search_path` is the private schema).
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }

    /// The schema name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The database URL (without the schema setting).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Opens another pool on the same schema (another "app instance").
    ///
    /// # Errors
    ///
    /// [`crate::BackendError`] when the server cannot be reached.
    pub async fn new_pool(
        &self,
        max_connections: u32,
    ) -> Result<sqlx::PgPool, crate::BackendError> {
        schema_pool(&self.url, &self.schema, max_connections).await
    }
}

async fn schema_pool(
    url: &str,
    schema: &str,
    max_connections: u32,
) -> Result<sqlx::PgPool, crate::BackendError> {
    let cfg = PgConfig::builder(url)
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // The schema name doubles as application_name, so clean-up can find and end every
        // connection of this test (an idle-in-transaction one would block DROP SCHEMA).
        .application_name(schema)
        .build()?;
    let opts = cfg.connect_options()?.options([("search_path", schema)]);
    Ok(cfg.pool_options().connect_with(opts).await?)
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        drop_schema(self.url.clone(), self.schema.clone());
    }
}

/// Runs clean-up on its own thread and runtime (Drop cannot be async), waiting for it.
/// A failed clean-up is reported, not raised: it must not mask the test's own result.
fn run_detached<M, F, E>(make: M)
where
    M: FnOnce() -> F + Send + 'static,
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let handle = std::thread::spawn(move || {
        let fut = make();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        match rt {
            Ok(rt) => {
                if let Err(e) = rt.block_on(fut) {
                    eprintln!("testkit clean-up failed: {e}");
                }
            }
            Err(e) => eprintln!("testkit clean-up: no runtime: {e}"),
        }
    });
    let _ = handle.join();
}

/// An isolated Redis namespace from the environment, or `None` (after printing why) when
/// `UMANAGE_TEST_REDIS_URL` is unset and services are not required.
///
/// # Panics
///
/// When `UMANAGE_REQUIRE_SERVICES=1` and the variable is unset or the server unreachable;
/// the message names the variable.
pub async fn redis() -> Option<TestRedis> {
    or_panic(redis_with(&ServiceEnv::from_env()).await)
}

/// [`redis()`] with an explicit [`ServiceEnv`].
///
/// # Errors
///
/// [`TestkitError`] when the service is required but missing or unreachable.
pub async fn redis_with(env: &ServiceEnv) -> Result<Option<TestRedis>, TestkitError> {
    let Some(url) = env.redis_url.clone() else {
        return skip_or_fail(env, TestkitError::Missing { var: REDIS_URL_VAR });
    };
    let prefix = format!("umtest-{}", unique_suffix());
    let unreachable = |reason: String| TestkitError::Unreachable {
        var: REDIS_URL_VAR,
        url: redact_url(&url),
        reason,
    };
    let cfg = match RedisConfig::builder(&url)
        .key_prefix(&prefix)
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(5))
        .reconnect_attempts(1)
        .build()
    {
        Ok(cfg) => cfg,
        Err(e) => return skip_or_fail(env, unreachable(e.to_string())),
    };
    let conn = match cfg.connect().await {
        Ok(c) => c,
        Err(e) => return skip_or_fail(env, unreachable(e.to_string())),
    };
    if let Err(e) = conn.ping().await {
        return skip_or_fail(env, unreachable(e.to_string()));
    }
    Ok(Some(TestRedis { conn, url, prefix }))
}

/// An isolated Postgres schema from the environment, or `None` (after printing why) when
/// `UMANAGE_TEST_DATABASE_URL` is unset and services are not required.
///
/// # Panics
///
/// When `UMANAGE_REQUIRE_SERVICES=1` and the variable is unset or the server unreachable;
/// the message names the variable.
pub async fn postgres() -> Option<TestPostgres> {
    or_panic(postgres_with(&ServiceEnv::from_env()).await)
}

/// Turns a kit error into the loud failure the env-reading entry points promise.
fn or_panic<T>(result: Result<Option<T>, TestkitError>) -> Option<T> {
    match result {
        Ok(v) => v,
        Err(e) => panic!("umanage testkit: {e}"),
    }
}

/// [`postgres()`] with an explicit [`ServiceEnv`].
///
/// # Errors
///
/// [`TestkitError`] when the service is required but missing or unreachable.
pub async fn postgres_with(env: &ServiceEnv) -> Result<Option<TestPostgres>, TestkitError> {
    use sqlx::Connection as _;
    let Some(url) = env.database_url.clone() else {
        return skip_or_fail(
            env,
            TestkitError::Missing {
                var: DATABASE_URL_VAR,
            },
        );
    };
    let unreachable = |reason: String| TestkitError::Unreachable {
        var: DATABASE_URL_VAR,
        url: redact_url(&url),
        reason,
    };
    let schema = format!("umtest_{}", unique_suffix());
    let create = async {
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        sqlx::raw_sql(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok::<(), sqlx::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(10), create).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return skip_or_fail(env, unreachable(e.to_string())),
        Err(_) => return skip_or_fail(env, unreachable("timed out after 10s".into())),
    }
    match schema_pool(&url, &schema, 5).await {
        Ok(pool) => Ok(Some(TestPostgres { pool, url, schema })),
        Err(e) => {
            drop_schema(url.clone(), schema);
            skip_or_fail(env, unreachable(e.to_string()))
        }
    }
}

fn drop_schema(url: String, schema: String) {
    run_detached(move || async move {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&schema)
        .execute(&mut conn)
        .await?;
        sqlx::raw_sql(&format!(
            "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        ))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Ok::<(), sqlx::Error>(())
    });
}

/// A `redis-server` of the test's own, on a free loopback port, for tests that must kill
/// the server mid-run and bring it back (outage and recovery). It keeps nothing on disk
/// (`--save "" --appendonly no`, in a private temporary directory) and is killed on drop.
///
/// Never used for ordinary backend tests: those share the service from
/// [`REDIS_URL_VAR`] through [`redis()`].
#[derive(Debug)]
pub struct RedisServer {
    child: Option<std::process::Child>,
    port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    /// Starts one and waits until it answers `PING`. Returns `None` (after printing why)
    /// when `redis-server` cannot be run and services are not required.
    ///
    /// # Panics
    ///
    /// When `UMANAGE_REQUIRE_SERVICES=1` and `redis-server` cannot be started, or when it
    /// does not answer within 10 seconds.
    pub async fn start() -> Option<Self> {
        let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => addr.port(),
            Err(e) => panic!("umanage testkit: no free loopback port: {e}"),
        };
        let dir = std::env::temp_dir().join(format!("umanage-redis-{}", unique_suffix()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("umanage testkit: cannot create {}: {e}", dir.display());
        }
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        if let Err(e) = server.spawn() {
            assert!(
                !ServiceEnv::from_env().require,
                "umanage testkit: cannot start redis-server ({REQUIRE_VAR}=1): {e}"
            );
            eprintln!("skipping: cannot start redis-server: {e}");
            return None;
        }
        server.wait_ready().await;
        Some(server)
    }

    /// The port it listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (an abrupt outage, as a crash would be).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty, and waits until it answers.
    ///
    /// # Panics
    ///
    /// When it cannot be started again or does not answer within 10 seconds.
    pub async fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("umanage testkit: cannot restart redis-server: {e}");
        }
        self.wait_ready().await;
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
            ])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&self) {
        let url = self.url();
        for _ in 0..200 {
            if let Ok(client) = redis::Client::open(url.as_str())
                && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "umanage testkit: redis-server did not answer on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Keeps something alive (usually a [`TestRedis`] or [`TestPostgres`], whose `Drop` cleans
/// up) for as long as a harness lives.
#[derive(Default)]
pub struct Guard(Option<Box<dyn std::any::Any + Send + Sync>>);

impl Guard {
    /// Holds `value`.
    pub fn new(value: impl std::any::Any + Send + Sync) -> Self {
        Self(Some(Box::new(value)))
    }

    /// Holds nothing.
    pub fn none() -> Self {
        Self(None)
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Guard(held)"
        } else {
            "Guard(empty)"
        })
    }
}

/// What every conformance case of a store-shaped suite receives: the store under test,
/// how time passes for it, and whatever keeps its test namespace alive.
///
/// `S` is the store trait object, e.g. `Harness<dyn KvStore>`; each suite names its
/// instance with an alias (`KvHarness`, `SessionHarness`, ...) and offers its memory
/// harness as a free function (`memory_harness()`), since an inherent `memory()` cannot be
/// added to a foreign type.
#[derive(Debug)]
pub struct Harness<S: ?Sized> {
    /// The store under test, as a trait object. It starts empty.
    pub store: std::sync::Arc<S>,
    /// How to let time pass for it.
    pub time: TimeControl,
    /// Keeps the test's namespace (and so its clean-up) alive until the case ends.
    pub guard: Guard,
}

impl<S: ?Sized> Harness<S> {
    /// A harness over `store` (which must be empty), holding no guard.
    pub fn new(store: std::sync::Arc<S>, time: TimeControl) -> Self {
        Self {
            store,
            time,
            guard: Guard::none(),
        }
    }

    /// Keeps `guard` (a [`TestRedis`], [`TestPostgres`], ...) alive as long as the harness.
    #[must_use]
    pub fn with_guard(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self.guard = Guard::new(guard);
        self
    }
}

/// How a conformance test moves time forward.
///
/// Memory backends take a [`ManualClock`], so "advance" is instant and exact. Redis and
/// Postgres take time from the server, so the suite really waits; keep such durations short
/// (a few hundred milliseconds) and assert only what must hold after the wait.
#[derive(Debug, Clone)]
pub enum TimeControl {
    /// Time is a [`ManualClock`] the test advances.
    Manual(ManualClock),
    /// Time is the server's: advancing means sleeping.
    Real,
}

impl TimeControl {
    /// Lets `by` pass.
    pub fn advance(&self, by: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            match self {
                Self::Manual(clock) => clock.advance(by),
                Self::Real => tokio::time::sleep(by).await,
            }
        })
    }
}

/// Stamps out one `#[tokio::test]` per conformance case.
///
/// `conformance_tests!(setup; path::to::suite; case_a, case_b)` expands to
///
/// ```text
/// #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// async fn case_a() {
///     let Some(harness) = setup().await else { return };
///     path::to::suite::case_a(&harness).await;
/// }
/// ```
///
/// Each crate wraps it in a macro listing its suite's cases (see
/// [`kv_conformance!`](crate::kv_conformance)), so a new case is added in one place and
/// every backend runs it.
#[macro_export]
macro_rules! conformance_tests {
    ($setup:path; $suite:path; $($case:ident),+ $(,)?) => {
        use $suite as __conformance_suite;
        $(
            #[$crate::__private::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(harness) = $setup().await else { return };
                __conformance_suite::$case(&harness).await;
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> ServiceEnv {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ServiceEnv::from_lookup(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn env_parsing() {
        let e = env(&[
            (REQUIRE_VAR, "1"),
            (REDIS_URL_VAR, " "),
            (DATABASE_URL_VAR, "postgres://x"),
        ]);
        assert!(e.require);
        assert_eq!(e.redis_url, None);
        assert_eq!(e.database_url.as_deref(), Some("postgres://x"));
        assert!(!env(&[(REQUIRE_VAR, "0")]).require);
        assert!(!env(&[]).require);
    }

    #[tokio::test]
    async fn unset_services_skip_unless_required() {
        let relaxed = env(&[]);
        assert!(redis_with(&relaxed).await.unwrap().is_none());
        assert!(postgres_with(&relaxed).await.unwrap().is_none());

        let strict = env(&[(REQUIRE_VAR, "1")]);
        let err = redis_with(&strict).await.unwrap_err();
        assert!(err.to_string().contains(REDIS_URL_VAR), "{err}");
        let err = postgres_with(&strict).await.unwrap_err();
        assert!(err.to_string().contains(DATABASE_URL_VAR), "{err}");
    }

    #[tokio::test]
    async fn wrong_urls_fail_loudly_when_required() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let strict = env(&[
            (REQUIRE_VAR, "1"),
            (REDIS_URL_VAR, "redis://127.0.0.1:1"),
            (DATABASE_URL_VAR, "postgres://postgres:pw@127.0.0.1:1/test"),
        ]);
        let err = redis_with(&strict).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                TestkitError::Unreachable {
                    var: REDIS_URL_VAR,
                    ..
                }
            ),
            "{msg}"
        );
        assert!(
            msg.contains(REDIS_URL_VAR) && msg.contains("127.0.0.1:1"),
            "{msg}"
        );

        let err = postgres_with(&strict).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(DATABASE_URL_VAR), "{msg}");
        assert!(!msg.contains(":pw@"), "password leaked: {msg}");

        // The same URLs without the requirement: skipped, not failed.
        let relaxed = env(&[
            (REDIS_URL_VAR, "redis://127.0.0.1:1"),
            (DATABASE_URL_VAR, "postgres://postgres@127.0.0.1:1/test"),
        ]);
        assert!(redis_with(&relaxed).await.unwrap().is_none());
        assert!(postgres_with(&relaxed).await.unwrap().is_none());
    }

    #[tokio::test]
    #[should_panic(expected = "UMANAGE_TEST_REDIS_URL")]
    async fn the_panicking_entry_point_names_the_variable() {
        let strict = env(&[(REQUIRE_VAR, "1"), (REDIS_URL_VAR, "redis://127.0.0.1:1")]);
        let _ = or_panic(redis_with(&strict).await);
    }
}
