//! The application: settings, backends, the router and its state.
//!
//! `main.rs` parses the command line and picks the backends, then calls [`build`]; the
//! end-to-end tests include this module (`#[path = "../examples/server/app/mod.rs"]`) and
//! build the same router. The handlers live in one module per area:
//!
//! - [`users`]: registration and `GET /v1/me` (with its short-lived account cache);
//! - [`sessions`]: login (rate limits per account, spray detection), logout, my sessions;
//! - [`password`]: password change and the strength meter;
//! - [`admin`]: the audit trail and session administration;
//! - [`health`]: liveness, readiness and the fallback 404;
//!
//! and the plumbing they share:
//!
//! - [`problem`]: RFC 9457 error bodies, SDK errors mapped to them, strict JSON parsing;
//! - [`auth`]: the bearer token or session cookie of a request, the admin check;
//! - [`edge`]: the outer middleware (request id, client address, security headers), the
//!   rate-limit rejection hook and audit recording;
//! - [`openapi`]: the document served at `/openapi.json` and its response types.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware;
use axum::routing::{delete, get, post, put};

use umanage::account::{AccountStore, CreateWithError, NewAccount, Role, create_with};
use umanage::audit::{
    AuditChain, AuditLogger, AuditStorage, CheckpointKey, Keyring, LoggerConfig, Redactor,
    StorageDestination, verify::CheckpointerHandle,
};
use umanage::core::{ClientIpResolver, SharedClock};
use umanage::password::pool::{HashingPool, PoolConfig};
use umanage::password::service::{ChangeOutcome, PasswordService};
use umanage::password::spray::{MemorySprayDetector, SprayConfig, SprayDetector, SprayKey};
use umanage::password::store::CredentialStore;
use umanage::password::{
    HasherConfig, NormalizedPassword, PasswordHasher, PasswordPolicy, UserInfo,
};
use umanage::ratelimit::{RateLimitLayer, RateLimitRule, RateLimitStore, RuleSet, Strategy};
use umanage::session::{SessionConfig, SessionManager, SessionStore};

mod admin;
mod auth;
mod edge;
mod health;
mod openapi;
mod password;
mod problem;
mod sessions;
mod users;

use admin::{admin_audit, admin_revoke_all, admin_sessions, admin_verify};
use edge::rate_limited;
use health::{healthz, not_found, readyz};
use openapi::openapi_json;
use password::{change_password, strength};
use sessions::{list_sessions, login, logout, revoke_session};
use users::{AccountCache, me, register};

/// The session cookie's name.
pub const COOKIE: &str = "umanage_session";
/// The audit chain every event goes to.
pub const CHAIN: &str = "default";

/// Tunables of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The password policy (default: `nist()` with a history of 5, no minimum age).
    pub policy: PasswordPolicy,
    /// Argon2id parameters.
    pub hasher: HasherConfig,
    /// How many hashes run at once and how long a request waits for a slot.
    pub hashing_pool: PoolConfig,
    /// Session timeouts and limits.
    pub sessions: SessionConfig,
    /// Who may set `X-Forwarded-For`.
    pub resolver: ClientIpResolver,
    /// Requests per minute and client IP on every route.
    pub requests_per_minute: u64,
    /// Login attempts per minute and client IP.
    pub logins_per_minute: u64,
    /// Login attempts per 15 minutes and account.
    pub logins_per_account: u64,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// The `Secure` attribute on the session cookie.
    pub secure_cookie: bool,
    /// How long `/readyz` waits for each backend.
    pub readiness_timeout: Duration,
    /// Password-spray detection thresholds.
    pub spray: SprayConfig,
    /// How long `/v1/me` may use a cached account (zero: never).
    pub account_cache_ttl: Duration,
    /// Audit checkpoints: keys and interval.
    pub audit: AuditSettings,
}

/// Signed audit checkpoints. `Debug` is safe: [`CheckpointKey`] redacts its secret.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The signing key and the retired keys still accepted.
    pub keyring: Keyring,
    /// False when the signing key is random (not configured): checkpoints written now do
    /// not verify after a restart.
    pub key_configured: bool,
    /// How often the chain head is signed.
    pub checkpoint_interval: Duration,
}

impl AuditSettings {
    /// The keys `[audit]` asks for (a random signing key when none is configured).
    ///
    /// # Errors
    ///
    /// A message naming the bad key or interval (never the key's text).
    pub fn from_config(cfg: &crate::config::AuditSection) -> Result<Self, String> {
        if cfg.checkpoint_interval.is_zero() {
            return Err("[audit] checkpoint_interval must be positive".into());
        }
        let (secret, key_configured) = if let Some(text) = &cfg.checkpoint_key {
            (
                crate::config::decode_key(
                    "[audit] checkpoint_key / UMANAGE_AUDIT_CHECKPOINT_KEY",
                    text,
                )?,
                true,
            )
        } else {
            let mut k = vec![0u8; 32];
            for chunk in k.chunks_mut(16) {
                chunk.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..chunk.len()]);
            }
            (k, false)
        };
        let current = CheckpointKey::new(cfg.checkpoint_key_id.clone(), secret)
            .map_err(|e| format!("[audit] checkpoint_key / UMANAGE_AUDIT_CHECKPOINT_KEY: {e}"))?;
        let mut keyring = Keyring::new(current);
        for (i, p) in cfg.previous_keys.iter().enumerate() {
            if p.id == cfg.checkpoint_key_id {
                return Err(format!(
                    "[audit] previous_keys[{i}]: id {:?} is the current key's",
                    p.id
                ));
            }
            let what = format!("[audit] previous_keys[{i}]");
            let secret = crate::config::decode_key(&what, &p.key)?;
            let key =
                CheckpointKey::new(p.id.clone(), secret).map_err(|e| format!("{what}: {e}"))?;
            keyring = keyring.with_previous(key);
        }
        Ok(Self {
            keyring,
            key_configured,
            checkpoint_interval: cfg.checkpoint_interval,
        })
    }
}

impl Settings {
    /// The defaults a newcomer runs with (an empty config file).
    ///
    /// # Errors
    ///
    /// A message when a preset cannot be built (never with the bundled presets).
    #[allow(dead_code)] // the end-to-end tests; `main` applies the environment first
    pub fn defaults() -> Result<Self, String> {
        Self::from_config(&crate::config::ServerConfig::default())
    }

    /// The settings a config file asks for.
    ///
    /// # Errors
    ///
    /// A message naming the section whose values contradict each other.
    pub fn from_config(cfg: &crate::config::ServerConfig) -> Result<Self, String> {
        let policy = cfg.password.policy()?;
        let audit = AuditSettings::from_config(&cfg.audit)?;
        let limits = &cfg.rate_limits;
        for (name, v) in [
            ("requests_per_minute", limits.requests_per_minute),
            ("logins_per_minute", limits.logins_per_minute),
            ("logins_per_account", limits.logins_per_account),
        ] {
            if v == 0 {
                return Err(format!("[rate_limits] {name} must be at least 1"));
            }
        }
        if cfg.http.max_body_bytes < 1024 {
            return Err("[http] max_body_bytes must be at least 1024".into());
        }
        if cfg.http.readiness_timeout.is_zero() {
            return Err("[http] readiness_timeout must be positive".into());
        }
        Ok(Self {
            policy,
            hasher: cfg.hashing.argon2,
            hashing_pool: cfg.hashing.pool,
            sessions: cfg.sessions.clone().unwrap_or_default(),
            resolver: cfg.proxies.clone(),
            requests_per_minute: limits.requests_per_minute,
            logins_per_minute: limits.logins_per_minute,
            logins_per_account: limits.logins_per_account,
            max_body_bytes: cfg.http.max_body_bytes,
            secure_cookie: cfg.http.secure_cookie,
            readiness_timeout: cfg.http.readiness_timeout,
            spray: cfg.spray.clone(),
            account_cache_ttl: cfg.http.account_cache_ttl,
            audit,
        })
    }
}

/// The backends, as trait objects (picked at run time).
#[derive(Clone)]
pub struct Stores {
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// Password hashes, when they were set, and their history.
    pub credentials: Arc<dyn CredentialStore>,
    /// Sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Rate-limit counters.
    pub limiter: Arc<dyn RateLimitStore>,
    /// The audit trail.
    pub audit: Arc<dyn AuditStorage>,
    /// What `/readyz` pings.
    pub probes: Vec<Probe>,
    /// Redis for spray detection (in memory when `None`).
    #[cfg(feature = "redis")]
    pub redis: Option<umanage::core::redis::RedisConnection>,
    /// The key of the spray detector's account digests (env `UMANAGE_SPRAY_KEY`): required
    /// with Redis (every instance needs the same one); in memory a random key when `None`.
    pub spray_key: Option<SprayKey>,
}

/// A backend connection `/readyz` checks.
#[derive(Clone)]
#[non_exhaustive]
pub enum Probe {
    /// `PING`.
    #[cfg(feature = "redis")]
    Redis(umanage::core::redis::RedisConnection),
    /// `SELECT 1`.
    #[cfg(feature = "postgres")]
    Postgres(umanage::postgres::PgPool),
}

impl Probe {
    fn name(&self) -> &'static str {
        match *self {
            #[cfg(feature = "redis")]
            Self::Redis(_) => "redis",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "postgres",
        }
    }

    #[cfg_attr(
        not(any(feature = "redis", feature = "postgres")),
        allow(clippy::unused_async, unused_variables)
    )]
    async fn check(&self, timeout: Duration) -> Result<(), umanage::core::BackendError> {
        match *self {
            #[cfg(feature = "redis")]
            Self::Redis(ref conn) => match tokio::time::timeout(timeout, conn.ping()).await {
                Ok(r) => r,
                Err(_) => Err(umanage::core::BackendError::Timeout {
                    operation: "redis ping",
                    after: timeout,
                }),
            },
            #[cfg(feature = "postgres")]
            Self::Postgres(ref pool) => umanage::postgres::ping(pool, timeout).await,
        }
    }
}

impl Stores {
    /// Everything in memory.
    pub fn memory(clock: &SharedClock) -> Self {
        Self {
            accounts: Arc::new(umanage::account::MemoryAccountStore::with_clock(
                clock.clone(),
            )),
            credentials: Arc::new(umanage::password::store::MemoryCredentialStore::new()),
            sessions: Arc::new(umanage::session::MemorySessionStore::with_clock(
                clock.clone(),
            )),
            limiter: Arc::new(umanage::ratelimit::MemoryRateLimiter::with_clock(
                clock.clone(),
            )),
            audit: Arc::new(umanage::audit::MemoryAuditStorage::new()),
            probes: Vec::new(),
            #[cfg(feature = "redis")]
            redis: None,
            spray_key: None,
        }
    }

    /// The spray detector's account-digest key (see [`Stores::spray_key`]).
    #[must_use]
    pub fn with_spray_key(mut self, key: SprayKey) -> Self {
        self.spray_key = Some(key);
        self
    }

    /// Sessions and rate limits on Redis.
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn with_redis(mut self, conn: &umanage::core::redis::RedisConnection) -> Self {
        self.sessions = Arc::new(umanage::session::RedisSessionStore::new(conn.clone()));
        self.limiter = Arc::new(umanage::ratelimit::RedisRateLimiter::new(conn.clone()));
        self.probes.push(Probe::Redis(conn.clone()));
        self.redis = Some(conn.clone());
        self
    }

    /// The spray detector: Redis when configured (shared by every instance, so it needs
    /// the shared key), else memory (a random key unless one is set).
    #[cfg_attr(not(feature = "redis"), allow(clippy::unnecessary_wraps))]
    fn spray(
        &self,
        config: SprayConfig,
        clock: &SharedClock,
    ) -> Result<Arc<dyn SprayDetector>, String> {
        #[cfg(feature = "redis")]
        if let Some(conn) = &self.redis {
            let key = self.spray_key.clone().ok_or(
                "spray detection on Redis needs UMANAGE_SPRAY_KEY (base64 of 16-64 random \
                 bytes, the same on every instance, e.g. `openssl rand -base64 32`)",
            )?;
            return Ok(Arc::new(umanage::password::spray::RedisSprayDetector::new(
                conn.clone(),
                config,
                key,
            )));
        }
        let memory = MemorySprayDetector::with_clock(config, clock.clone());
        Ok(Arc::new(match &self.spray_key {
            Some(key) => memory.with_key(key.clone()),
            None => memory,
        }))
    }

    /// Accounts, credentials and audit on Postgres, after applying every migration.
    ///
    /// # Errors
    ///
    /// The backend error when a migration fails.
    #[cfg(feature = "postgres")]
    pub async fn with_postgres(
        mut self,
        pool: umanage::postgres::PgPool,
    ) -> Result<Self, umanage::core::BackendError> {
        umanage::postgres::migrate_all(&pool).await?;
        self.accounts = Arc::new(umanage::account::PostgresAccountStore::new(pool.clone()));
        self.credentials = Arc::new(umanage::password::store::PostgresCredentialStore::new(
            pool.clone(),
        ));
        self.audit = Arc::new(umanage::audit::PostgresAuditStorage::new(pool.clone()));
        self.probes.push(Probe::Postgres(pool));
        Ok(self)
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    stores: Stores,
    clock: SharedClock,
    passwords: PasswordService,
    spray: Arc<dyn SprayDetector>,
    accounts_seen: AccountCache,
    sessions: SessionManager,
    logger: AuditLogger,
    chain: AuditChain,
    account_limit: Strategy,
}

/// The running application: the router and what shutdown must flush.
pub struct App {
    /// The router (serve it with `into_make_service_with_connect_info::<SocketAddr>()`).
    pub router: Router,
    /// Call [`AuditShutdown::finish`] after the server stops.
    pub audit: AuditShutdown,
    /// The handlers' state (for [`bootstrap_admin`]).
    pub state: AppState,
}

/// Builds the application over `stores`.
///
/// # Errors
///
/// A message when the settings are contradictory or the audit logger cannot start.
pub fn build(settings: Settings, stores: Stores, clock: SharedClock) -> Result<App, String> {
    let pool = HashingPool::new(PasswordHasher::new(settings.hasher), settings.hashing_pool);
    let passwords = PasswordService::new(
        settings.policy.clone(),
        pool,
        Arc::clone(&stores.credentials),
        clock.clone(),
    );
    let logger = AuditLogger::builder(LoggerConfig::builder().build().map_err(|e| e.to_string())?)
        .transformer(Redactor::standard())
        .destination(StorageDestination::new(Arc::clone(&stores.audit), CHAIN))
        .start()
        .map_err(|e| e.to_string())?;
    let chain = AuditChain::new(
        Arc::clone(&stores.audit),
        settings.audit.keyring.clone(),
        clock.clone(),
    );
    let checkpointer = chain
        .spawn_checkpointer(vec![CHAIN.to_owned()], settings.audit.checkpoint_interval)
        .map_err(|e| e.to_string())?;
    let sessions = SessionManager::new(Arc::clone(&stores.sessions), settings.sessions.clone());
    let account_limit =
        Strategy::sliding_log(settings.logins_per_account, Duration::from_secs(900))
            .map_err(|e| e.to_string())?;
    let rules = RuleSet::new(vec![
        RateLimitRule::new(
            "per-ip",
            "/*",
            Strategy::sliding_counter(settings.requests_per_minute, Duration::from_secs(60))
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?,
        RateLimitRule::new(
            "login-per-ip",
            "/v1/sessions",
            Strategy::sliding_log(settings.logins_per_minute, Duration::from_secs(60))
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?
        .with_methods([Method::POST]),
    ])
    .map_err(|e| e.to_string())?;
    let limiter = Arc::clone(&stores.limiter);
    let spray = stores.spray(settings.spray.clone(), &clock)?;
    let max_body = settings.max_body_bytes;
    let state = AppState {
        inner: Arc::new(Inner {
            settings,
            stores,
            clock,
            passwords,
            spray,
            accounts_seen: AccountCache::default(),
            sessions,
            logger: logger.clone(),
            chain,
            account_limit,
        }),
    };
    // Rejections are audited with the request's context, then answered with the layer's
    // RFC 9457 problem plus our `code` and the request id.
    let hook_state = state.clone();
    let rate_layer = RateLimitLayer::builder(limiter, rules)
        .on_reject_async(move |parts, rejection| {
            let state = hook_state.clone();
            async move { rate_limited(&state.inner, &parts, &rejection).await }
        })
        .build()
        .map_err(|e| e.to_string())?;
    let mut router = Router::new();
    for (method, path, handler) in routes() {
        let _ = method;
        router = router.route(path, handler);
    }
    let router = router
        .fallback(not_found)
        .layer(rate_layer)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), edge::edge))
        .with_state(state.clone());
    Ok(App {
        router,
        audit: AuditShutdown {
            logger,
            chain: state.inner.chain.clone(),
            checkpointer,
        },
        state,
    })
}

/// What graceful shutdown finishes: the audit queue, then the checkpointer, then a last
/// signed checkpoint of the flushed head.
pub struct AuditShutdown {
    logger: AuditLogger,
    chain: AuditChain,
    checkpointer: CheckpointerHandle,
}

impl AuditShutdown {
    /// Flushes the audit logger, stops the checkpoint task and signs the final head.
    /// Returns the logger's statistics as text.
    ///
    /// # Errors
    ///
    /// A message when the flush or the last checkpoint fails (the task is stopped anyway).
    pub async fn finish(self) -> Result<String, String> {
        let flushed = self.logger.shutdown().await;
        self.checkpointer.stop().await;
        let stats = flushed.map_err(|e| format!("audit flush: {e}"))?;
        let cp = self
            .chain
            .checkpoint(CHAIN)
            .await
            .map_err(|e| format!("final audit checkpoint: {e}"))?;
        Ok(format!("{stats:?}; last checkpoint at seq {}", cp.seq))
    }
}

/// Every route: method, path, handler. The router is built from this table and the
/// OpenAPI test checks the document against it, so neither can drift from the other.
pub fn routes() -> Vec<(Method, &'static str, axum::routing::MethodRouter<AppState>)> {
    vec![
        (Method::GET, "/healthz", get(healthz)),
        (Method::GET, "/readyz", get(readyz)),
        (Method::GET, "/openapi.json", get(openapi_json)),
        (Method::POST, "/v1/users", post(register)),
        (Method::POST, "/v1/sessions", post(login)),
        (Method::GET, "/v1/sessions", get(list_sessions)),
        (Method::DELETE, "/v1/sessions/current", delete(logout)),
        (Method::DELETE, "/v1/sessions/{id}", delete(revoke_session)),
        (Method::GET, "/v1/me", get(me)),
        (Method::PUT, "/v1/me/password", put(change_password)),
        (Method::POST, "/v1/password/strength", post(strength)),
        (Method::GET, "/v1/admin/audit", get(admin_audit)),
        (Method::GET, "/v1/admin/audit/verify", get(admin_verify)),
        (
            Method::GET,
            "/v1/admin/users/{id}/sessions",
            get(admin_sessions),
        ),
        (
            Method::DELETE,
            "/v1/admin/users/{id}/sessions",
            delete(admin_revoke_all),
        ),
    ]
}

/// Creates the first admin from the given credentials when no admin exists.
///
/// # Errors
///
/// A message when the password fails the policy or a backend fails.
pub async fn bootstrap_admin(
    state: &AppState,
    username: &str,
    email: &str,
    password: &str,
) -> Result<bool, String> {
    let s = &state.inner;
    let admins = (*s.stores.accounts)
        .count_with_role(&Role::admin())
        .await
        .map_err(|e| e.to_string())?;
    if admins > 0 {
        return Ok(false);
    }
    let pw = NormalizedPassword::new(password).map_err(|e| e.to_string())?;
    let info = UserInfo::new().with_username(username).with_email(email);
    let new = NewAccount::new(username, email).role(Role::admin());
    create_with(&*s.stores.accounts, new, |account| {
        let passwords = s.passwords.clone();
        async move {
            match passwords.set_password(&account.id, &info, &pw).await {
                Ok(ChangeOutcome::Changed { .. }) => Ok(()),
                Ok(ChangeOutcome::PolicyViolation(report)) => {
                    let codes: Vec<&str> =
                        report.violations.iter().map(|v| v.code.as_str()).collect();
                    Err(format!(
                        "admin password rejected by the policy: {}",
                        codes.join(", ")
                    ))
                }
                Ok(other) => Err(format!("admin password not stored: {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|e| match e {
        CreateWithError::FollowUp(msg) => msg,
        other => other.to_string(),
    })?;
    Ok(true)
}
