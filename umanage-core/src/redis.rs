//! Redis support: configuration, an auto-reconnecting connection, and scripts.
//!
//! * [`RedisConfig`] holds the URL, timeouts and key prefix, validates them, and
//!   [`connect`](RedisConfig::connect)s to a [`RedisConnection`]: a cheap-to-clone handle over
//!   the `redis` crate's `ConnectionManager`, one multiplexed connection that reconnects by
//!   itself after the server goes away.
//! * [`RedisScript`] runs a Lua script with `EVALSHA`, loading it on `NOSCRIPT` (after a
//!   server restart or `SCRIPT FLUSH`) and **never** re-sending a call that failed any other
//!   way. In particular a call that timed out is reported as a timeout
//!   ([`BackendError::is_timeout`]) and not retried: the server may have run it, and running
//!   a rate-limit or session script twice would double-apply it.
//!
//! Keys are built with the connection's [`KeyBuilder`], so all keys of one entity share a
//! Redis Cluster hash tag.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, ToRedisArgs};
use serde::{Deserialize, Serialize};

use crate::redact::redact_url;
use crate::{BackendError, KeyBuilder};

/// How to reach Redis.
///
/// Loadable from config files (durations as `"2s"`, `"500ms"`):
///
/// ```
/// use umanage_core::redis::RedisConfig;
///
/// let cfg: RedisConfig = toml::from_str(r#"
///     url = "redis://127.0.0.1:6379/0"
///     key_prefix = "myapp"
///     response_timeout = "250ms"
/// "#).unwrap();
/// assert_eq!(cfg.key_prefix(), "myapp");
/// ```
///
/// `Debug` hides any password in the URL.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "RawRedisConfig", into = "RawRedisConfig")]
pub struct RedisConfig {
    url: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    reconnect_attempts: usize,
    connections: usize,
    keys: KeyBuilder,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedisConfig {
    url: String,
    #[serde(with = "crate::duration", default = "default_connect")]
    connect_timeout: Duration,
    #[serde(with = "crate::duration", default = "default_response")]
    response_timeout: Duration,
    #[serde(default = "default_attempts")]
    reconnect_attempts: usize,
    #[serde(default = "default_connections")]
    connections: usize,
    #[serde(default = "default_prefix")]
    key_prefix: String,
}

fn default_connect() -> Duration {
    RedisConfig::DEFAULT_CONNECT_TIMEOUT
}
fn default_response() -> Duration {
    RedisConfig::DEFAULT_RESPONSE_TIMEOUT
}
fn default_attempts() -> usize {
    RedisConfig::DEFAULT_RECONNECT_ATTEMPTS
}
fn default_connections() -> usize {
    RedisConfig::DEFAULT_CONNECTIONS
}
fn default_prefix() -> String {
    KeyBuilder::DEFAULT_PREFIX.to_owned()
}

impl TryFrom<RawRedisConfig> for RedisConfig {
    type Error = BackendError;
    fn try_from(raw: RawRedisConfig) -> Result<Self, Self::Error> {
        RedisConfig::builder(raw.url)
            .connect_timeout(raw.connect_timeout)
            .response_timeout(raw.response_timeout)
            .reconnect_attempts(raw.reconnect_attempts)
            .connections(raw.connections)
            .key_prefix(raw.key_prefix)
            .build()
    }
}

impl From<RedisConfig> for RawRedisConfig {
    fn from(cfg: RedisConfig) -> Self {
        Self {
            url: cfg.url,
            connect_timeout: cfg.connect_timeout,
            response_timeout: cfg.response_timeout,
            reconnect_attempts: cfg.reconnect_attempts,
            connections: cfg.connections,
            key_prefix: cfg.keys.prefix().to_owned(),
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("reconnect_attempts", &self.reconnect_attempts)
            .field("connections", &self.connections)
            .field("key_prefix", &self.keys.prefix())
            .finish()
    }
}

impl RedisConfig {
    /// Default time allowed to open a connection.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default time allowed for one reply. Hot operations are one round trip, so a
    /// healthy server answers in well under a millisecond on a LAN.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
    /// Default number of reconnect attempts (with exponential backoff) after a connection
    /// is lost, before an operation fails as unavailable. Later operations try again.
    pub const DEFAULT_RECONNECT_ATTEMPTS: usize = 3;
    /// Default number of multiplexed connections a [`RedisConnection`] spreads commands
    /// over. One connection is driven by one task, which parses every reply; on a
    /// multi-threaded runtime a second connection lets both cores do that work (see the
    /// session crate's benchmarks).
    pub const DEFAULT_CONNECTIONS: usize = 2;
    /// Most connections one [`RedisConnection`] may open.
    pub const MAX_CONNECTIONS: usize = 64;

    /// A builder for the server at `url` (`redis://[:password@]host[:port][/db]`).
    pub fn builder(url: impl Into<String>) -> RedisConfigBuilder {
        RedisConfigBuilder {
            url: url.into(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            reconnect_attempts: Self::DEFAULT_RECONNECT_ATTEMPTS,
            connections: Self::DEFAULT_CONNECTIONS,
            key_prefix: KeyBuilder::DEFAULT_PREFIX.to_owned(),
        }
    }

    /// The server URL (it may contain a password: do not log it; `Debug` redacts it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The per-reply timeout.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// How many multiplexed connections [`connect`](Self::connect) opens.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Opens the connections ([`connections`](Self::connections) of them).
    ///
    /// # Errors
    ///
    /// [`BackendError::Redis`] when the URL is invalid or the server cannot be reached
    /// within the connect timeout and reconnect attempts ([`BackendError::is_unavailable`]).
    pub async fn connect(&self) -> Result<RedisConnection, BackendError> {
        let client = redis::Client::open(self.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(self.reconnect_attempts)
            .set_max_delay(Duration::from_secs(2));
        let mut managers = Vec::with_capacity(self.connections);
        for _ in 0..self.connections {
            managers.push(
                client
                    .get_connection_manager_with_config(config.clone())
                    .await?,
            );
        }
        tracing::debug!(
            url = %redact_url(&self.url),
            prefix = self.keys.prefix(),
            connections = self.connections,
            "redis connected"
        );
        Ok(RedisConnection::from_managers(managers, self.keys.clone()))
    }
}

/// Builder for [`RedisConfig`].
#[derive(Clone)]
#[must_use]
pub struct RedisConfigBuilder {
    url: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    reconnect_attempts: usize,
    connections: usize,
    key_prefix: String,
}

impl fmt::Debug for RedisConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfigBuilder")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisConfigBuilder {
    /// Time allowed to open a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for one reply.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Reconnect attempts after a lost connection.
    pub fn reconnect_attempts(mut self, attempts: usize) -> Self {
        self.reconnect_attempts = attempts;
        self
    }

    /// How many multiplexed connections to open (1 to
    /// [`MAX_CONNECTIONS`](RedisConfig::MAX_CONNECTIONS); default
    /// [`DEFAULT_CONNECTIONS`](RedisConfig::DEFAULT_CONNECTIONS)). Each command goes to
    /// the next one in turn.
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// The key prefix (see [`KeyBuilder::new`] for what is allowed).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Validates and builds the config.
    ///
    /// # Errors
    ///
    /// [`BackendError::Config`] for a URL that is not `redis://`/`rediss://`/`unix://`, a
    /// zero timeout, or an invalid key prefix.
    pub fn build(self) -> Result<RedisConfig, BackendError> {
        let scheme_ok = ["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|s| self.url.starts_with(s));
        if !scheme_ok {
            return Err(BackendError::Config(format!(
                "redis url {} must start with redis://, rediss:// or unix://",
                redact_url(&self.url)
            )));
        }
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() {
            return Err(BackendError::Config(
                "redis connect_timeout and response_timeout must be greater than zero".into(),
            ));
        }
        if !(1..=RedisConfig::MAX_CONNECTIONS).contains(&self.connections) {
            return Err(BackendError::Config(format!(
                "redis connections must be 1 to {}, not {}",
                RedisConfig::MAX_CONNECTIONS,
                self.connections
            )));
        }
        let keys =
            KeyBuilder::new(self.key_prefix).map_err(|e| BackendError::Config(e.to_string()))?;
        Ok(RedisConfig {
            url: self.url,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            reconnect_attempts: self.reconnect_attempts,
            connections: self.connections,
            keys,
        })
    }
}

/// A shared, auto-reconnecting Redis connection with its key prefix.
///
/// Clones share the same multiplexed TCP connections (one by default; see
/// [`RedisConfigBuilder::connections`]); concurrent commands are pipelined on them, and
/// each command (or pipeline, or script call) goes to the next connection in turn. A
/// caller that awaits one command before sending the next sees its own writes whichever
/// connection each went to. After the server goes away, commands fail with an error for
/// which [`BackendError::is_unavailable`] is true, and the connections are re-established
/// in the background, each on its own: just after the server returns, a command that goes
/// to a connection not yet back can still fail as unavailable. No command is re-sent.
#[derive(Clone)]
pub struct RedisConnection {
    managers: Arc<[ConnectionManager]>,
    next: Arc<AtomicUsize>,
    keys: KeyBuilder,
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("key_prefix", &self.keys.prefix())
            .field("connections", &self.managers.len())
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Wraps an existing connection manager (for hosts that build their own).
    pub fn from_manager(manager: ConnectionManager, keys: KeyBuilder) -> Self {
        Self::from_managers(vec![manager], keys)
    }

    /// Wraps connection managers to use in turn (callers pass at least one).
    fn from_managers(managers: Vec<ConnectionManager>, keys: KeyBuilder) -> Self {
        Self {
            managers: managers.into(),
            next: Arc::new(AtomicUsize::new(0)),
            keys,
        }
    }

    /// The key builder for this connection's prefix.
    pub fn keys(&self) -> &KeyBuilder {
        &self.keys
    }

    /// A handle to send commands on: the next of the shared connections, in turn (a cheap
    /// clone).
    pub fn manager(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.managers.len();
        self.managers[i].clone()
    }

    /// How many multiplexed connections commands are spread over.
    pub fn connections(&self) -> usize {
        self.managers.len()
    }

    /// Sends `PING` on every connection.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the server does not answer.
    pub async fn ping(&self) -> Result<(), BackendError> {
        for manager in self.managers.iter() {
            let mut conn = manager.clone();
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        }
        Ok(())
    }
}

/// A Lua script run with `EVALSHA`.
///
/// Create one per script as a `static` (via [`std::sync::LazyLock`]) or a field; the SHA-1
/// is computed once.
///
/// ```no_run
/// # async fn demo(conn: umanage_core::redis::RedisConnection) -> Result<(), umanage_core::BackendError> {
/// use umanage_core::redis::RedisScript;
///
/// static INCR_WITH_TTL: std::sync::LazyLock<RedisScript> = std::sync::LazyLock::new(|| {
///     RedisScript::new(
///         "incr_with_ttl",
///         "local v = redis.call('INCR', KEYS[1]) \
///          if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end \
///          return v",
///     )
/// });
///
/// let key = conn.keys().key("hits", "user-1");
/// let hits: i64 = INCR_WITH_TTL.call().key(&key).arg(60_000).invoke(&conn).await?;
/// # Ok(()) }
/// ```
pub struct RedisScript {
    name: &'static str,
    source: String,
    sha: String,
}

impl fmt::Debug for RedisScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisScript")
            .field("name", &self.name)
            .field("sha", &self.sha)
            .finish_non_exhaustive()
    }
}

impl RedisScript {
    /// A script with a short `name` (used in traces) and its Lua `source`.
    pub fn new(name: &'static str, source: impl Into<String>) -> Self {
        let source = source.into();
        let sha = redis::Script::new(&source).get_hash().to_owned();
        Self { name, source, sha }
    }

    /// The script's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The SHA-1 of the source, as `EVALSHA` wants it.
    pub fn sha(&self) -> &str {
        &self.sha
    }

    /// Starts a call; add keys and arguments, then [`invoke`](ScriptCall::invoke).
    pub fn call(&self) -> ScriptCall<'_> {
        ScriptCall {
            script: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Loads the script into the server's cache (`SCRIPT LOAD`). Not needed before calls
    /// (they load on `NOSCRIPT`), but useful to fail fast at start-up.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the server rejects the script or is unreachable.
    pub async fn load<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<(), BackendError> {
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(&self.source)
            .query_async(conn)
            .await?;
        if sha.eq_ignore_ascii_case(&self.sha) {
            Ok(())
        } else {
            Err(BackendError::Protocol(format!(
                "SCRIPT LOAD of {} returned sha {sha}, expected {}",
                self.name, self.sha
            )))
        }
    }
}

/// One invocation of a [`RedisScript`].
#[must_use]
pub struct ScriptCall<'a> {
    script: &'a RedisScript,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl fmt::Debug for ScriptCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Arguments may carry token hashes or other sensitive values: only counts are shown.
        f.debug_struct("ScriptCall")
            .field("script", &self.script.name)
            .field("keys", &self.keys.len())
            .field("args", &self.args.len())
            .finish()
    }
}

impl ScriptCall<'_> {
    /// Adds a key (`KEYS[n]`).
    pub fn key(mut self, key: impl ToRedisArgs) -> Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    /// Adds an argument (`ARGV[n]`).
    pub fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    /// Runs the script on a [`RedisConnection`].
    ///
    /// # Errors
    ///
    /// See [`invoke_on`](Self::invoke_on).
    pub async fn invoke<T: FromRedisValue>(
        self,
        conn: &RedisConnection,
    ) -> Result<T, BackendError> {
        let mut manager = conn.manager();
        self.invoke_on(&mut manager).await
    }

    /// Runs the script on any async connection: `EVALSHA`; on `NOSCRIPT` only, `SCRIPT LOAD`
    /// and `EVALSHA` once more. Any other failure (including a timeout) is returned as is
    /// and the call is not repeated.
    ///
    /// # Errors
    ///
    /// [`BackendError::Redis`] for connection failures, timeouts and script errors.
    pub async fn invoke_on<T, C>(self, conn: &mut C) -> Result<T, BackendError>
    where
        T: FromRedisValue,
        C: ConnectionLike + Send,
    {
        let cmd = self.evalsha();
        match cmd.query_async::<T>(conn).await {
            Ok(value) => Ok(value),
            Err(err)
                if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                tracing::debug!(script = self.script.name, "NOSCRIPT: loading script");
                self.script.load(conn).await?;
                Ok(cmd.query_async::<T>(conn).await?)
            }
            Err(err) => {
                if err.is_timeout() {
                    tracing::warn!(
                        script = self.script.name,
                        "redis script timed out; not re-sent"
                    );
                }
                Err(err.into())
            }
        }
    }

    fn evalsha(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.script.sha).arg(self.keys.len());
        for key in &self.keys {
            cmd.arg(key.as_slice());
        }
        for arg in &self.args {
            cmd.arg(arg.as_slice());
        }
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        assert!(RedisConfig::builder("redis://127.0.0.1").build().is_ok());
        assert!(matches!(
            RedisConfig::builder("http://x").build(),
            Err(BackendError::Config(_))
        ));
        assert!(
            RedisConfig::builder("redis://x")
                .response_timeout(Duration::ZERO)
                .build()
                .is_err()
        );
        assert!(
            RedisConfig::builder("redis://x")
                .key_prefix("a{b}")
                .build()
                .is_err()
        );
        for bad in [0, RedisConfig::MAX_CONNECTIONS + 1] {
            assert!(matches!(
                RedisConfig::builder("redis://x").connections(bad).build(),
                Err(BackendError::Config(_))
            ));
        }
        let cfg: RedisConfig =
            serde_json::from_str(r#"{"url":"redis://h","connections":4}"#).unwrap();
        assert_eq!(cfg.connections(), 4);
        assert!(
            serde_json::from_str::<RedisConfig>(r#"{"url":"redis://h","connections":0}"#).is_err()
        );
    }

    #[test]
    fn serde_uses_readable_durations_and_rejects_unknown_fields() {
        let cfg: RedisConfig =
            serde_json::from_str(r#"{"url":"redis://h","connect_timeout":"3s","key_prefix":"p"}"#)
                .unwrap();
        assert_eq!(cfg.connect_timeout(), Duration::from_secs(3));
        assert_eq!(
            cfg.response_timeout(),
            RedisConfig::DEFAULT_RESPONSE_TIMEOUT
        );
        assert!(
            serde_json::from_str::<RedisConfig>(r#"{"url":"redis://h","prefix":"p"}"#).is_err()
        );
        assert!(
            serde_json::from_str::<RedisConfig>(r#"{"url":"redis://h","key_prefix":"*"}"#).is_err()
        );
        let back = serde_json::to_string(&cfg).unwrap();
        assert!(back.contains(r#""connect_timeout":"3s""#), "{back}");
    }

    #[test]
    fn debug_redacts_passwords() {
        let cfg = RedisConfig::builder("redis://user:hunter2@cache:6379/1")
            .build()
            .unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("redis://user:***@cache:6379/1"), "{dbg}");
        let err = RedisConfig::builder("http://:pw@h").build().unwrap_err();
        assert!(!err.to_string().contains("pw@"), "{err}");
    }

    #[test]
    fn script_sha_is_sha1_of_source() {
        // SHA-1("return 1"), as `redis-cli SCRIPT LOAD "return 1"` prints it.
        let s = RedisScript::new("one", "return 1");
        assert_eq!(s.sha(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
