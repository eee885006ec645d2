//! The application: stores, settings, the router and its handlers.
//!
//! `main.rs` parses the command line and picks the backends; the end-to-end tests include
//! this file (`#[path = "../examples/server/app.rs"]`) and build the same router.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use umanage::account::{
    Account, AccountError, AccountStore, CreateWithError, NewAccount, Role, create_with,
};
use umanage::audit::{
    ActorType, AuditChain, AuditEvent, AuditFilter, AuditLogger, AuditQuery, AuditStorage,
    CheckpointKey, Keyring, LoggerConfig, Outcome, Redactor, StorageDestination, event_types,
};
use umanage::core::{ClientIpResolver, RequestContext, SharedClock, UserId};
use umanage::password::pool::{HashingPool, PoolConfig};
use umanage::password::service::{
    ChangeOutcome, ExpiryStatus, LoginOutcome as PasswordLogin, PasswordService,
};
use umanage::password::spray::{
    LoginAttempt, MemorySprayDetector, SprayAction, SprayConfig, SprayDetector,
};
use umanage::password::store::CredentialStore;
use umanage::password::{
    HasherConfig, NormalizedPassword, PasswordError, PasswordHasher, PasswordPolicy, UserInfo,
    Violation,
};
use umanage::ratelimit::{
    Check, Decision, RateLimitLayer, RateLimitRule, RateLimitStore, Rejection, RuleSet, Strategy,
};
use umanage::session::{
    ClientInfo, Login, LoginOutcome, Session, SessionConfig, SessionId, SessionManager,
    SessionStore, SessionToken, Validation,
};

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
    /// The HMAC key for audit checkpoints (random when not configured).
    pub audit_key: Vec<u8>,
}

impl Settings {
    /// The defaults a newcomer runs with (an empty config file).
    ///
    /// # Errors
    ///
    /// A message when a preset cannot be built (never with the bundled presets).
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
        let mut audit_key = vec![0u8; 32];
        for chunk in audit_key.chunks_mut(16) {
            chunk.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..chunk.len()]);
        }
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
            audit_key,
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
        }
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

    /// The spray detector: Redis when configured (shared by every instance), else memory.
    #[cfg_attr(not(feature = "redis"), allow(clippy::unused_self))]
    fn spray(&self, config: SprayConfig, clock: &SharedClock) -> Arc<dyn SprayDetector> {
        #[cfg(feature = "redis")]
        if let Some(conn) = &self.redis {
            return Arc::new(umanage::password::spray::RedisSprayDetector::new(
                conn.clone(),
                config,
            ));
        }
        Arc::new(MemorySprayDetector::with_clock(config, clock.clone()))
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
    /// The audit logger (call `shutdown` after the server stops).
    pub logger: AuditLogger,
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
    let key =
        CheckpointKey::new("server", settings.audit_key.clone()).map_err(|e| e.to_string())?;
    let chain = AuditChain::new(Arc::clone(&stores.audit), Keyring::new(key), clock.clone());
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
    let spray = stores.spray(settings.spray.clone(), &clock);
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
        .layer(middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state.clone());
    Ok(App {
        router,
        logger,
        state,
    })
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
    let admins = s
        .stores
        .accounts
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

// ---------------------------------------------------------------------------------------
// Problems (RFC 9457)

/// An error response: `application/problem+json` with a stable `code`.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    extra: BTreeMap<&'static str, Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            extra: BTreeMap::new(),
            headers: Vec::new(),
        }
    }

    fn with(mut self, key: &'static str, value: Value) -> Self {
        self.extra.insert(key, value);
        self
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            "a valid session is required",
        )
    }

    fn bad_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "Invalid credentials",
            "the login or the password is wrong",
        )
    }

    fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            "the admin role is required",
        )
    }

    fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "a backend did not answer; retry later",
        )
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request could not be completed",
        )
    }

    fn violations(violations: Vec<Value>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "Validation failed",
            "the request breaks one or more rules",
        )
        .with("violations", Value::Array(violations))
    }

    fn for_status(status: StatusCode) -> Self {
        let (code, title) = match status.as_u16() {
            404 => ("not_found", "Not found"),
            405 => ("method_not_allowed", "Method not allowed"),
            413 => ("body_too_large", "Request body too large"),
            415 => ("unsupported_media_type", "Unsupported media type"),
            429 => ("rate_limited", "Too many requests"),
            s if s >= 500 => ("internal", "Internal error"),
            _ => ("bad_request", "Bad request"),
        };
        Self::new(status, code, title, title.to_ascii_lowercase())
    }

    fn body(&self) -> String {
        let mut obj = serde_json::Map::new();
        obj.insert(
            "type".into(),
            json!(format!("urn:umanage:problem:{}", self.code)),
        );
        obj.insert("title".into(), json!(self.title));
        obj.insert("status".into(), json!(self.status.as_u16()));
        obj.insert("code".into(), json!(self.code));
        obj.insert("detail".into(), json!(self.detail));
        for (k, v) in &self.extra {
            obj.insert((*k).into(), v.clone());
        }
        Value::Object(obj).to_string()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut res = Response::new(Body::from(self.body()));
        *res.status_mut() = self.status;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (k, v) in self.headers {
            res.headers_mut().insert(k, v);
        }
        res
    }
}

fn backend(err: &dyn std::fmt::Display, unavailable: bool) -> Problem {
    eprintln!("backend error: {err}");
    if unavailable {
        Problem::unavailable()
    } else {
        Problem::internal()
    }
}

fn account_err(err: &AccountError) -> Problem {
    match err {
        AccountError::Backend(b) => backend(b, b.is_unavailable() || b.is_timeout()),
        e if e.is_invalid_input() => {
            Problem::violations(vec![json!({"code": e.code(), "message": e.to_string()})])
        }
        e => {
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let title = if status == StatusCode::CONFLICT {
                "Conflict"
            } else {
                "Bad request"
            };
            Problem::new(status, e.code(), title, e.to_string())
        }
    }
}

fn session_err(err: &umanage::session::Error) -> Problem {
    backend(err, err.is_unavailable())
}

fn password_err(err: &PasswordError) -> Problem {
    match err {
        PasswordError::Busy { .. } => {
            let mut p = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "Busy",
                "password hashing is saturated; retry later",
            )
            .with("retry_after", json!(1));
            p.headers
                .push((header::RETRY_AFTER, HeaderValue::from_static("1")));
            p
        }
        PasswordError::TooLarge { max_bytes } => Problem::violations(vec![
            json!({"code": "too_long", "message": format!("the password is longer than {max_bytes} bytes")}),
        ]),
        PasswordError::Backend(b) => backend(b, b.is_unavailable() || b.is_timeout()),
        e => backend(e, false),
    }
}

async fn rate_limited(
    s: &Inner,
    parts: &http::request::Parts,
    rejection: &Rejection,
) -> http::Response<String> {
    let ctx = parts
        .extensions
        .get::<RequestContext>()
        .cloned()
        .unwrap_or_default();
    let code = if rejection.backend_degraded {
        "rate_limiter_unavailable"
    } else {
        "rate_limited"
    };
    audit(
        s,
        event_types::RATE_LIMITED,
        &ctx,
        ctx.user_id,
        Outcome::Failure,
        &[
            ("rule", rejection.rule.as_str()),
            ("path", parts.uri.path()),
            ("code", code),
        ],
    )
    .await;
    let mut body = rejection.problem();
    body["code"] = json!(code);
    if let Some(id) = &ctx.request_id {
        body["request_id"] = json!(id);
    }
    let mut res = rejection.problem_response();
    *res.body_mut() = body.to_string();
    res
}

/// Parses a JSON body strictly: UTF-8, an object, the exact fields.
fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Problem> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            v == "application/json" || v.ends_with("+json")
        });
    if !json_type {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            "send Content-Type: application/json",
        ));
    }
    if std::str::from_utf8(body).is_err() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
            "Bad request",
            "the body is not valid UTF-8",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let (status, code) = match e.classify() {
            serde_json::error::Category::Data => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields")
            }
            _ => (StatusCode::BAD_REQUEST, "malformed_json"),
        };
        Problem::new(status, code, "Bad request", e.to_string())
    })
}

// ---------------------------------------------------------------------------------------
// Edge middleware: request id, client address, security headers, problem bodies.

async fn edge(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let mut ctx = RequestContext::new().with_request_id(request_id.clone());
    if let Some(peer) = peer {
        ctx = ctx.with_client_ip(state.inner.settings.resolver.resolve(peer, req.headers()));
    }
    if let Some(ua) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        ctx = ctx.with_user_agent(ua.chars().take(256).collect::<String>());
    }
    req.extensions_mut().insert(ctx.clone());
    let mut res = next.run(req).await;
    let status = res.status();
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if (status.is_client_error() || status.is_server_error()) && !is_problem {
        let keep: Vec<(HeaderName, HeaderValue)> = res
            .headers()
            .iter()
            .filter(|(k, _)| {
                k.as_str().starts_with("ratelimit")
                    || *k == header::RETRY_AFTER
                    || *k == header::ALLOW
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut problem = Problem::for_status(status);
        problem.headers = keep;
        res = problem.into_response();
    }
    let h = res.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    res
}

async fn audit(
    s: &Inner,
    event_type: &str,
    ctx: &RequestContext,
    actor: Option<UserId>,
    outcome: Outcome,
    meta: &[(&str, &str)],
) {
    let mut b = AuditEvent::builder(event_type, &*s.clock)
        .context(ctx)
        .result(outcome);
    b = match actor {
        Some(id) => b.actor(ActorType::User, id.to_string()),
        None => b.actor(ActorType::Anonymous, "anonymous"),
    };
    for (k, v) in meta {
        b = b.meta(*k, *v);
    }
    match b.build() {
        Ok(event) => {
            if let Err(e) = s.logger.record(event).await {
                eprintln!("audit record failed: {e}");
            }
        }
        Err(e) => eprintln!("audit event invalid: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// Passwords

fn violation_json(v: &Violation) -> Value {
    json!({"code": v.code.as_str(), "message": v.message, "params": v.params})
}

// ---------------------------------------------------------------------------------------
// Authentication

fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

async fn authenticate(
    s: &Inner,
    headers: &HeaderMap,
    ctx: &RequestContext,
) -> Result<(Session, ClientInfo), Problem> {
    let raw = presented_token(headers).ok_or_else(Problem::unauthorized)?;
    let token = SessionToken::parse(&raw).map_err(|_| Problem::unauthorized())?;
    let client = ClientInfo::new(ctx.clone());
    match s.sessions.validate(&token, &client).await {
        Ok(Validation::Valid(session)) => Ok((Arc::unwrap_or_clone(session), client)),
        Ok(_) => Err(Problem::unauthorized()),
        Err(e) => Err(session_err(&e)),
    }
}

fn context(req_ctx: Option<&RequestContext>) -> RequestContext {
    req_ctx.cloned().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Handlers

async fn not_found() -> Problem {
    Problem::for_status(StatusCode::NOT_FOUND)
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    description = "This document (OpenAPI 3.1), generated from the handlers' annotations.",
    responses(
        (status = 200, description = "the OpenAPI document", body = Object),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn openapi_json() -> Response {
    static DOC: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use utoipa::OpenApi as _;
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|_| "{}".to_owned())
    });
    let mut res = Response::new(Body::from(DOC.as_str()));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    description = "The process is up.",
    responses(
        (status = 200, description = "up", body = HealthDoc),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    description = "Every backend answers (Redis PING, Postgres SELECT 1) within the readiness timeout.",
    responses(
        (status = 200, description = "ready", body = ReadyDoc),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "a backend or the hashing pool is unavailable; retry later (`unavailable`, `busy`, `not_ready`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(state): State<AppState>) -> Response {
    let s = &state.inner;
    let timeout = s.settings.readiness_timeout;
    let mut checks = serde_json::Map::new();
    let mut ok = true;
    for probe in &s.stores.probes {
        let up = match probe.check(timeout).await {
            Ok(()) => true,
            Err(e) => {
                eprintln!("readyz: {} is down: {e}", probe.name());
                false
            }
        };
        ok &= up;
        checks.insert(probe.name().into(), json!(if up { "up" } else { "down" }));
    }
    if ok {
        axum::Json(json!({"ready": true, "checks": checks})).into_response()
    } else {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "Not ready",
            "a backend did not answer in time",
        )
        .with("checks", Value::Object(checks))
        .into_response()
    }
}

/// `POST /v1/users`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    /// Letters, digits, `.`, `_`, `-`; unique case-insensitively after NFKC.
    username: String,
    /// Unique case-insensitively (the domain is lower-cased, the local part kept).
    email: String,
    /// Checked against the password policy.
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    description = "Registers an account; the password must pass the policy.",
    request_body(content = RegisterBody, content_type = "application/json"),
    responses(
        (status = 201, description = "created", body = AccountDoc),
        (status = 400, description = "malformed JSON, invalid UTF-8 or a bad query (`malformed_json`, `invalid_utf8`, `invalid_query`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "conflict (`username_taken`, `email_taken`, `session_limit`, `conflict`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "the body is larger than the limit (`body_too_large`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json` (`unsupported_media_type`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "validation failed: every violation in `violations` (`validation_failed`, `invalid_fields`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "a backend or the hashing pool is unavailable; retry later (`unavailable`, `busy`, `not_ready`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn register(
    State(state): State<AppState>,
    ctx: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let ctx = context(ctx.as_deref());
    let body: RegisterBody = parse_json(&headers, &body)?;
    let mut violations = Vec::new();
    if let Err(e) = NewAccount::new(&body.username, &body.email).validate() {
        violations.push(json!({"code": e.code(), "message": e.to_string()}));
    }
    let pw = match NormalizedPassword::new(body.password.expose_secret()) {
        Ok(pw) => Some(pw),
        Err(e) => {
            violations.push(json!({"code": "too_long", "message": e.to_string()}));
            None
        }
    };
    if let Some(pw) = &pw {
        let report = s.settings.policy.validate(
            pw,
            &UserInfo::new()
                .with_username(&body.username)
                .with_email(&body.email),
        );
        violations.extend(report.violations.iter().map(violation_json));
    }
    let Some(pw) = pw.filter(|_| violations.is_empty()) else {
        audit(
            s,
            event_types::PASSWORD_REJECTED,
            &ctx,
            None,
            Outcome::Failure,
            &[],
        )
        .await;
        return Err(Problem::violations(violations));
    };
    // Account and credential are two stores: `create_with` deletes the account again when
    // the password cannot be stored, and the pair runs in its own task so a client that
    // disconnects cannot cancel it half-way.
    let info = UserInfo::new()
        .with_username(&body.username)
        .with_email(&body.email);
    let new = NewAccount::new(&body.username, &body.email);
    let task_state = state.clone();
    let created = tokio::spawn(async move {
        let s = &task_state.inner;
        create_with(&*s.stores.accounts, new, |account| {
            let passwords = s.passwords.clone();
            async move {
                match passwords.set_password(&account.id, &info, &pw).await {
                    Ok(ChangeOutcome::Changed { .. }) => Ok(()),
                    Ok(ChangeOutcome::PolicyViolation(report)) => Err(Problem::violations(
                        report.violations.iter().map(violation_json).collect(),
                    )),
                    Ok(_) => Err(Problem::internal()),
                    Err(e) => Err(password_err(&e)),
                }
            }
        })
        .await
    })
    .await
    .map_err(|_| Problem::internal())?;
    let account = match created {
        Ok((account, ())) => account,
        Err(CreateWithError::Account(e)) => return Err(account_err(&e)),
        Err(CreateWithError::FollowUp(p)) => return Err(p),
        Err(e) => {
            eprintln!("registration: {e}");
            return Err(Problem::internal());
        }
    };
    audit(
        s,
        event_types::USER_CREATED,
        &ctx,
        Some(account.id),
        Outcome::Success,
        &[],
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(account_json(&account))).into_response())
}

fn account_json(a: &Account) -> Value {
    json!({
        "id": a.id.to_string(),
        "username": a.username.as_str(),
        "email": a.email.as_str(),
        "roles": a.roles.iter().map(Role::as_str).collect::<Vec<_>>(),
        "created_at": a.created_at,
    })
}

/// `POST /v1/sessions`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    /// The username or the email address.
    login: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    description = "Logs in by username or email; returns a bearer token and sets the session cookie. Unknown users get the same 401 as a wrong password.",
    request_body(content = LoginBody, content_type = "application/json"),
    responses(
        (status = 201, description = "session created", body = LoginDoc),
        (status = 400, description = "malformed JSON, invalid UTF-8 or a bad query (`malformed_json`, `invalid_utf8`, `invalid_query`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no valid session, or wrong credentials (`unauthenticated`, `invalid_credentials`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "conflict (`username_taken`, `email_taken`, `session_limit`, `conflict`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "the body is larger than the limit (`body_too_large`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json` (`unsupported_media_type`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "validation failed: every violation in `violations` (`validation_failed`, `invalid_fields`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "rate limited or blocked by spray protection, with `Retry-After` (`rate_limited`, `spray_blocked`, `spray_slow_down`, `challenge_required`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "a backend or the hashing pool is unavailable; retry later (`unavailable`, `busy`, `not_ready`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn login(
    State(state): State<AppState>,
    ctx: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let ctx = context(ctx.as_deref());
    let body: LoginBody = parse_json(&headers, &body)?;
    let pw = NormalizedPassword::new(body.password.expose_secret()).ok();
    let account = if body.login.len() > 320 {
        None
    } else {
        s.stores
            .accounts
            .find_by_login(&body.login)
            .await
            .map_err(|e| account_err(&e))?
    };
    // Per-account throttle (before any hashing, so a locked-out account costs nothing).
    if let Some(account) = &account {
        let key = format!("login-account:{}", account.id);
        let decisions = s
            .stores
            .limiter
            .check_all(&[Check {
                key: &key,
                strategy: &s.account_limit,
                cost: 1,
            }])
            .await;
        if let Ok(d) = decisions
            && let Some(d) = d.first().filter(|d| !d.allowed)
        {
            audit(
                s,
                event_types::RATE_LIMITED,
                &ctx,
                Some(account.id),
                Outcome::Failure,
                &[("rule", "login-per-account")],
            )
            .await;
            return Ok(too_many(d));
        }
    }
    // Password spraying: one source trying many accounts, many sources on one account, a
    // global failure spike. Judged before any hashing; a backend outage fails open.
    let login_key = body.login.trim().to_lowercase();
    let source = ctx.client_ip;
    if let Some(ip) = source {
        match s.spray.assess(&LoginAttempt::new(ip, &login_key)).await {
            Ok(a) if !a.action.is_allow() => {
                let reasons: Vec<String> = a
                    .reasons
                    .iter()
                    .map(|r| {
                        serde_json::to_value(r)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_else(|| format!("{r:?}"))
                    })
                    .collect();
                return Ok(spray_rejection(s, &ctx, &a.action, &reasons.join(",")).await);
            }
            Ok(_) => {}
            Err(e) => eprintln!("spray detector unavailable, allowing: {e}"),
        }
    }
    // An unknown login is checked against a user that has no credential, which costs the
    // same dummy verification as a real one (timing does not tell who exists).
    let subject = account.as_ref().map_or_else(UserId::new, |a| a.id);
    let verified = match &pw {
        Some(pw) => s
            .passwords
            .verify_login(&subject, pw)
            .await
            .map_err(|e| password_err(&e))?,
        None => PasswordLogin::Failure,
    };
    let now = s.clock.now();
    if let Some(ip) = source {
        let attempt = LoginAttempt::new(ip, &login_key);
        let ok = matches!(verified, PasswordLogin::Success { .. });
        let recorded = if ok {
            s.spray.record_success(&attempt).await
        } else {
            s.spray.record_failure(&attempt).await
        };
        if let Err(e) = recorded {
            eprintln!("spray detector unavailable: {e}");
        }
    }
    let Some(account) = account else {
        audit(
            s,
            event_types::LOGIN_FAILURE,
            &ctx,
            None,
            Outcome::Failure,
            &[("reason", "unknown_login")],
        )
        .await;
        return Err(Problem::bad_credentials());
    };
    let expiry = match verified {
        PasswordLogin::Success { expiry, .. } if account.status.allows_login(now) => expiry,
        other => {
            let reason = if matches!(other, PasswordLogin::Success { .. }) {
                "account_inactive"
            } else {
                "wrong_password"
            };
            audit(
                s,
                event_types::LOGIN_FAILURE,
                &ctx,
                Some(account.id),
                Outcome::Failure,
                &[("reason", reason)],
            )
            .await;
            return Err(Problem::bad_credentials());
        }
    };
    let client = ClientInfo::new(ctx.clone().with_user_id(account.id));
    let login = Login::new(account.id, account.username.as_str())
        .with_roles(account.roles.iter().map(|r| r.as_str().to_owned()));
    let outcome = s
        .sessions
        .login(login, &client)
        .await
        .map_err(|e| session_err(&e))?;
    let (session, token) = match outcome {
        LoginOutcome::Created { session, token, .. } => (session, token),
        LoginOutcome::LimitReached { active } => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "session_limit",
                "Too many sessions",
                format!("{active} sessions are active; log out elsewhere first"),
            ));
        }
        _ => return Err(Problem::internal()),
    };
    let ctx = ctx
        .with_user_id(account.id)
        .with_session_id(session.id.to_string());
    audit(
        s,
        event_types::LOGIN_SUCCESS,
        &ctx,
        Some(account.id),
        Outcome::Success,
        &[],
    )
    .await;
    let max_age = (session.expires_at - now).num_seconds().max(0);
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        token.expose(),
        if s.settings.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    );
    let (password_expired, password_expires_at) = match expiry {
        ExpiryStatus::Expired { expired_at } => (true, Some(expired_at)),
        ExpiryStatus::Valid { expires_at } => (false, Some(expires_at)),
        ExpiryStatus::NeverExpires => (false, None),
    };
    let body = json!({
        "token": token.expose(),
        "session": {
            "id": session.id.to_string(),
            "expires_at": session.expires_at,
            "idle_expires_at": session.idle_expires_at,
        },
        "password_expired": password_expired,
        "password_expires_at": password_expires_at,
    });
    let mut res = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

async fn spray_rejection(
    s: &Inner,
    ctx: &RequestContext,
    action: &SprayAction,
    reasons: &str,
) -> Response {
    let (code, detail, retry) = match action {
        SprayAction::Block { retry_after } => (
            "spray_blocked",
            "too many failed logins across accounts from here; retry later",
            Some(*retry_after),
        ),
        SprayAction::SlowDown { delay } => (
            "spray_slow_down",
            "login attempts are being slowed down; retry after the delay",
            Some(*delay),
        ),
        _ => (
            "challenge_required",
            "suspicious login pattern: a challenge is required, which this server cannot offer; retry later",
            None,
        ),
    };
    let action_name = match action {
        SprayAction::Block { .. } => "block",
        SprayAction::SlowDown { .. } => "slow_down",
        _ => "challenge",
    };
    audit(
        s,
        event_types::SPRAY_DETECTED,
        ctx,
        None,
        Outcome::Failure,
        &[("action", action_name), ("reasons", reasons)],
    )
    .await;
    let mut problem = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        code,
        "Too many requests",
        detail,
    );
    let secs = retry.map(|d| d.as_secs_f64().ceil().max(1.0) as u64);
    if let Some(secs) = secs {
        problem = problem.with("retry_after", json!(secs));
    }
    let mut res = problem.into_response();
    if let Some(v) = secs.and_then(|secs| HeaderValue::from_str(&secs.to_string()).ok()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

fn too_many(d: &Decision) -> Response {
    let retry = d.retry_after.unwrap_or(d.reset_after).as_secs().max(1);
    let mut res = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests",
        "too many login attempts for this account",
    )
    .with("rule", json!("login-per-account"))
    .with("retry_after", json!(retry))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "users",
    description = "The authenticated account.",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "the account", body = AccountDoc),
        (status = 401, description = "no valid session, or wrong credentials (`unauthenticated`, `invalid_credentials`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "a backend or the hashing pool is unavailable; retry later (`unavailable`, `busy`, `not_ready`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn me(
    State(state): State<AppState>,
    ctx: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let ctx = context(ctx.as_deref());
    let (session, _) = authenticate(s, &headers, &ctx).await?;
    let ttl = chrono::Duration::from_std(s.settings.account_cache_ttl).unwrap_or_default();
    let now = s.clock.now();
    if let Some(account) = s.accounts_seen.get(session.user_id, now, ttl) {
        return Ok(axum::Json(account_json(&account)).into_response());
    }
    let account = s
        .stores
        .accounts
        .get(session.user_id)
        .await
        .map_err(|e| account_err(&e))?
        .ok_or_else(Problem::unauthorized)?;
    if !ttl.is_zero() {
        s.accounts_seen.put(&account, now);
    }
    Ok(axum::Json(account_json(&account)).into_response())
}

/// A short-lived copy of recently read accounts, so a hot `GET /v1/me` does not read the
/// account store on every request. Bounded: when full it starts over.
/// When an account was read, and the account.
type Seen = (chrono::DateTime<chrono::Utc>, Arc<Account>);

#[derive(Default)]
struct AccountCache {
    entries: std::sync::Mutex<std::collections::HashMap<UserId, Seen>>,
}

impl AccountCache {
    const MAX_ENTRIES: usize = 10_000;

    fn get(
        &self,
        id: UserId,
        now: chrono::DateTime<chrono::Utc>,
        ttl: chrono::Duration,
    ) -> Option<Arc<Account>> {
        if ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        entries
            .get(&id)
            .filter(|(at, _)| now - *at < ttl)
            .map(|(_, a)| Arc::clone(a))
    }

    fn put(&self, account: &Account, now: chrono::DateTime<chrono::Utc>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(account.id, (now, Arc::new(account.clone())));
        }
    }
}

fn session_json(session: &Session, current: Option<SessionId>) -> Value {
    json!({
        "id": session.id.to_string(),
        "created_at": session.created_at,
        "last_activity": session.last_activity,
        "expires_at": session.expires_at,
        "idle_expires_at": session.idle_expires_at,
        "ip": session.last_ip.or(session.ip),
        "user_agent": session.user_agent,
        "location": session.location,
        "current": current == Some(session.id),
    })
}

#[utoipa::path(
    get,
    path = "/v1/sessions",
    tag = "sessions",
    description = "My active sessions.",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "the sessions", body = SessionListDoc),
        (status = 401, description = "no valid session, or wrong credentials (`unauthenticated`, `invalid_credentials`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "a backend or the hashing pool is unavailable; retry later (`unavailable`, `busy`, `not_ready`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn list_sessions(
    State(state): State<AppState>,
    ctx: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let ctx = context(ctx.as_deref());
    let (current, _) = authenticate(s, &headers, &ctx).await?;
    let list = s
        .sessions
        .list(current.user_id)
        .await
        .map_err(|e| session_err(&e))?;
    let items: Vec<Value> = list
        .iter()
        .map(|x| session_json(x, Some(current.id)))
        .collect();
    Ok(axum::Json(json!({"sessions": items})).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/sessions/current",
    tag = "sessions",
    description = "Logs out (revokes the current session).",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "logged out"),
        (status = 401, description = "no valid session, or wrong credentials (`unauthenticated`, `invalid_credentials`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "a backend or the hashing pool is unavailable; retry later (`unavailable`, `busy`, `not_ready`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn logout(
    State(state): State<AppState>,
    ctx: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let ctx = context(ctx.as_deref());
    let (session, _) = authenticate(s, &headers, &ctx).await?;
    s.sessions
        .logout(&session)
        .await
        .map_err(|e| session_err(&e))?;
    let ctx = ctx
        .with_user_id(session.user_id)
        .with_session_id(session.id.to_string());
    audit(
        s,
        event_types::LOGOUT,
        &ctx,
        Some(session.user_id),
        Outcome::Success,
        &[],
    )
    .await;
    let mut res = StatusCode::NO_CONTENT.into_response();
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

#[utoipa::path(
    delete,
    path = "/v1/sessions/{id}",
    tag = "sessions",
    description = "Revokes one of my sessions.",
    params(("id" = String, Path, description = "the session id")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, description = "no valid session, or wrong credentials (`unauthenticated`, `invalid_credentials`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such session or user (`not_found`, `session_not_found`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "a backend or the hashing pool is unavailable; retry later (`unavailable`, `busy`, `not_ready`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn revoke_session(
    State(state): State<AppState>,
    ctx: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let ctx = context(ctx.as_deref());
    let (session, _) = authenticate(s, &headers, &ctx).await?;
    let id: SessionId = id
        .parse()
        .map_err(|_| Problem::for_status(StatusCode::NOT_FOUND))?;
    let revoked = s
        .sessions
        .revoke(session.user_id, id)
        .await
        .map_err(|e| session_err(&e))?;
    if !revoked {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "Not found",
            "no such session",
        ));
    }
    let ctx = ctx
        .with_user_id(session.user_id)
        .with_session_id(session.id.to_string());
    audit(
        s,
        event_types::SESSION_REVOKED,
        &ctx,
        Some(session.user_id),
        Outcome::Success,
        &[("revoked", &id.to_string())],
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /v1/me/password`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangePasswordBody {
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    new_password: SecretString,
}

#[utoipa::path(
    put,
    path = "/v1/me/password",
    tag = "users",
    description = "Changes my password (policy, history, minimum age); my other sessions are revoked.",
    request_body(content = ChangePasswordBody, content_type = "application/json"),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "changed"),
        (status = 400, description = "malformed JSON, invalid UTF-8 or a bad query (`malformed_json`, `invalid_utf8`, `invalid_query`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no valid session, or wrong credentials (`unauthenticated`, `invalid_credentials`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "conflict (`username_taken`, `email_taken`, `session_limit`, `conflict`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "the body is larger than the limit (`body_too_large`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json` (`unsupported_media_type`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "validation failed: every violation in `violations` (`validation_failed`, `invalid_fields`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "a backend or the hashing pool is unavailable; retry later (`unavailable`, `busy`, `not_ready`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn change_password(
    State(state): State<AppState>,
    ctx: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let ctx = context(ctx.as_deref());
    let (session, _) = authenticate(s, &headers, &ctx).await?;
    let body: ChangePasswordBody = parse_json(&headers, &body)?;
    let ctx = ctx
        .with_user_id(session.user_id)
        .with_session_id(session.id.to_string());
    let account = s
        .stores
        .accounts
        .get(session.user_id)
        .await
        .map_err(|e| account_err(&e))?
        .ok_or_else(Problem::unauthorized)?;
    let info = UserInfo::new()
        .with_username(account.username.as_str())
        .with_email(account.email.as_str());
    let (Ok(current), Ok(new)) = (
        NormalizedPassword::new(body.current_password.expose_secret()),
        NormalizedPassword::new(body.new_password.expose_secret()),
    ) else {
        return Err(Problem::violations(vec![json!({
            "code": "too_long",
            "message": "a password is longer than the largest accepted",
        })]));
    };
    let outcome = s
        .passwords
        .change_password(&account.id, &info, &current, &new)
        .await
        .map_err(|e| password_err(&e))?;
    let violations: Vec<Value> = match outcome {
        ChangeOutcome::Changed { .. } => Vec::new(),
        ChangeOutcome::WrongCurrentPassword | ChangeOutcome::NoCredential => {
            audit(
                s,
                event_types::PASSWORD_CHANGED,
                &ctx,
                Some(account.id),
                Outcome::Failure,
                &[("reason", "wrong_current_password")],
            )
            .await;
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
                "the current password is wrong",
            ));
        }
        ChangeOutcome::PolicyViolation(report) => {
            report.violations.iter().map(violation_json).collect()
        }
        ChangeOutcome::ReusedPassword => {
            let depth = s.settings.policy.history_count();
            vec![json!({
                "code": "password_reused",
                "message": format!("the password is one of the last {depth} passwords"),
                "params": {"history": depth},
            })]
        }
        ChangeOutcome::TooSoon { allowed_at } => vec![json!({
            "code": "password_too_recent",
            "message": "the password was changed too recently",
            "params": {"allowed_at": allowed_at},
        })],
        ChangeOutcome::Conflict => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                "the password was changed at the same time; retry",
            ));
        }
    };
    if !violations.is_empty() {
        audit(
            s,
            event_types::PASSWORD_REJECTED,
            &ctx,
            Some(account.id),
            Outcome::Failure,
            &[],
        )
        .await;
        return Err(Problem::violations(violations));
    }
    let revoked = s
        .sessions
        .revoke_others(&session)
        .await
        .map_err(|e| session_err(&e))?;
    audit(
        s,
        event_types::PASSWORD_CHANGED,
        &ctx,
        Some(account.id),
        Outcome::Success,
        &[("sessions_revoked", &revoked.to_string())],
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/password/strength`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StrengthBody {
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/password/strength",
    tag = "users",
    description = "Strength estimate and policy violations of a candidate password, for a live meter.",
    request_body(content = StrengthBody, content_type = "application/json"),
    responses(
        (status = 200, description = "the estimate", body = StrengthDoc),
        (status = 400, description = "malformed JSON, invalid UTF-8 or a bad query (`malformed_json`, `invalid_utf8`, `invalid_query`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "the body is larger than the limit (`body_too_large`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json` (`unsupported_media_type`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "validation failed: every violation in `violations` (`validation_failed`, `invalid_fields`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn strength(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let body: StrengthBody = parse_json(&headers, &body)?;
    let pw =
        NormalizedPassword::new(body.password.expose_secret()).map_err(|e| password_err(&e))?;
    let mut info = UserInfo::new();
    let mut inputs: Vec<&str> = Vec::new();
    if let Some(u) = &body.username {
        info = info.with_username(u);
        inputs.push(u);
    }
    if let Some(e) = &body.email {
        info = info.with_email(e);
        inputs.push(e);
    }
    let report = s.settings.policy.validate(&pw, &info);
    let estimate = report
        .strength
        .clone()
        .unwrap_or_else(|| umanage::password::strength::estimate(&pw, &inputs));
    Ok(axum::Json(json!({
        "score": estimate.score,
        "guesses_log10": estimate.guesses_log10,
        "feedback": estimate.feedback,
        "violations": report.violations.iter().map(violation_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn require_admin(
    s: &Inner,
    headers: &HeaderMap,
    ctx: &RequestContext,
) -> Result<Session, Problem> {
    let (session, _) = authenticate(s, headers, ctx).await?;
    if session.has_role(Role::ADMIN) {
        Ok(session)
    } else {
        audit(
            s,
            event_types::ACCESS_DENIED,
            ctx,
            Some(session.user_id),
            Outcome::Failure,
            &[],
        )
        .await;
        Err(Problem::forbidden())
    }
}

/// The filters of `GET /v1/admin/audit`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Actor id (a user id, or `anonymous`).
    actor: Option<String>,
    /// Event type, e.g. `auth.login.failure`.
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// `success`, `failure` or `partial`.
    result: Option<String>,
    /// Events at or after this RFC 3339 time.
    from: Option<String>,
    /// Events before this RFC 3339 time.
    to: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1-500 (default 50).
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    tag = "admin",
    description = "Audit events, newest first, with a cursor (role `admin`).",
    params(AuditParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "a page of events", body = AuditPageDoc),
        (status = 400, description = "malformed JSON, invalid UTF-8 or a bad query (`malformed_json`, `invalid_utf8`, `invalid_query`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no valid session, or wrong credentials (`unauthenticated`, `invalid_credentials`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "the admin role is required (`forbidden`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "a backend or the hashing pool is unavailable; retry later (`unavailable`, `busy`, `not_ready`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn admin_audit(
    State(state): State<AppState>,
    ctx: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let ctx = context(ctx.as_deref());
    require_admin(s, &headers, &ctx).await?;
    let Query(p) = params.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "Bad request",
            e.body_text(),
        )
    })?;
    let mut filter = AuditFilter::new().chain(CHAIN);
    if let Some(a) = p.actor {
        filter = filter.actor(a);
    }
    if let Some(t) = p.event_type {
        filter = filter.event_type(t);
    }
    if let Some(r) = p.result {
        let outcome = match r.as_str() {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            "partial" => Outcome::Partial,
            _ => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    "Bad request",
                    "result must be success, failure or partial",
                ));
            }
        };
        filter = filter.result(outcome);
    }
    if p.from.is_some() || p.to.is_some() {
        let parse = |v: Option<&str>, default| match v {
            None => Ok(default),
            Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_query",
                        "Bad request",
                        "from and to must be RFC 3339 times",
                    )
                }),
        };
        let from = parse(p.from.as_deref(), chrono::DateTime::<chrono::Utc>::MIN_UTC)?;
        let to = parse(p.to.as_deref(), chrono::DateTime::<chrono::Utc>::MAX_UTC)?;
        filter = filter.between(from, to);
    }
    let mut query = AuditQuery::new(filter)
        .order(umanage::audit::Order::NewestFirst)
        .limit(p.limit.unwrap_or(50).clamp(1, 500));
    if let Some(c) = p.cursor {
        query = query.after(c);
    }
    s.logger.flush().await.map_err(|e| backend(&e, false))?;
    let page = s.stores.audit.query(&query).await.map_err(|e| match e {
        umanage::audit::Error::Backend(b) => backend(&b, b.is_unavailable()),
        _ => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "Bad request",
            "invalid cursor or filter",
        ),
    })?;
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|e| json!({"seq": e.seq, "event": e.event}))
        .collect();
    Ok(axum::Json(json!({"events": events, "next_cursor": page.next_cursor})).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/admin/audit/verify",
    tag = "admin",
    description = "Verifies the audit hash chain and checkpoints (role `admin`).",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "the verification report", body = VerifyDoc),
        (status = 401, description = "no valid session, or wrong credentials (`unauthenticated`, `invalid_credentials`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "the admin role is required (`forbidden`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "a backend or the hashing pool is unavailable; retry later (`unavailable`, `busy`, `not_ready`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn admin_verify(
    State(state): State<AppState>,
    ctx: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let ctx = context(ctx.as_deref());
    require_admin(s, &headers, &ctx).await?;
    s.logger.flush().await.map_err(|e| backend(&e, false))?;
    let report = s
        .chain
        .verify(CHAIN, ..)
        .await
        .map_err(|e| backend(&e, false))?;
    Ok(axum::Json(json!({
        "ok": report.is_intact(),
        "checked": report.events_checked,
        "first_bad": report.first_break.as_ref().map(|b| format!("{b:?}")),
    }))
    .into_response())
}

#[utoipa::path(
    get,
    path = "/v1/admin/users/{id}/sessions",
    tag = "admin",
    description = "A user's sessions (role `admin`).",
    params(("id" = String, Path, description = "the user id")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "the sessions", body = SessionListDoc),
        (status = 401, description = "no valid session, or wrong credentials (`unauthenticated`, `invalid_credentials`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "the admin role is required (`forbidden`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such session or user (`not_found`, `session_not_found`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "a backend or the hashing pool is unavailable; retry later (`unavailable`, `busy`, `not_ready`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn admin_sessions(
    State(state): State<AppState>,
    ctx: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let ctx = context(ctx.as_deref());
    require_admin(s, &headers, &ctx).await?;
    let user: UserId = id
        .parse()
        .map_err(|_| Problem::for_status(StatusCode::NOT_FOUND))?;
    let list = s.sessions.list(user).await.map_err(|e| session_err(&e))?;
    let items: Vec<Value> = list.iter().map(|x| session_json(x, None)).collect();
    Ok(axum::Json(json!({"sessions": items})).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/admin/users/{id}/sessions",
    tag = "admin",
    description = "Revokes all of a user's sessions (role `admin`).",
    params(("id" = String, Path, description = "the user id")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, description = "no valid session, or wrong credentials (`unauthenticated`, `invalid_credentials`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "the admin role is required (`forbidden`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such session or user (`not_found`, `session_not_found`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "rate limited, with `Retry-After` (`rate_limited`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "a backend or the hashing pool is unavailable; retry later (`unavailable`, `busy`, `not_ready`)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn admin_revoke_all(
    State(state): State<AppState>,
    ctx: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let ctx = context(ctx.as_deref());
    let admin = require_admin(s, &headers, &ctx).await?;
    let user: UserId = id
        .parse()
        .map_err(|_| Problem::for_status(StatusCode::NOT_FOUND))?;
    s.sessions
        .logout_everywhere(user)
        .await
        .map_err(|e| session_err(&e))?;
    let ctx = ctx
        .with_user_id(admin.user_id)
        .with_session_id(admin.id.to_string());
    audit(
        s,
        event_types::SESSION_REVOKED,
        &ctx,
        Some(admin.user_id),
        Outcome::Success,
        &[("target_user", &user.to_string()), ("scope", "all")],
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------
// OpenAPI: the document served at /openapi.json. Request bodies are the handlers' own
// types; response shapes are described by the `*Doc` types below (the e2e test checks
// real responses against their property lists).

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "umanage example server",
        description = "User management over HTTP on the umanage SDK. Every error is an RFC 9457 `application/problem+json` with a stable `code`.",
        version = "0.1.0",
    ),
    paths(
        healthz,
        readyz,
        openapi_json,
        register,
        login,
        list_sessions,
        logout,
        revoke_session,
        me,
        change_password,
        strength,
        admin_audit,
        admin_verify,
        admin_sessions,
        admin_revoke_all,
    ),
    components(schemas(
        RegisterBody,
        LoginBody,
        ChangePasswordBody,
        StrengthBody,
        ProblemDoc,
        ViolationDoc,
        AccountDoc,
        LoginDoc,
        SessionRefDoc,
        SessionDoc,
        SessionListDoc,
        StrengthDoc,
        AuditPageDoc,
        AuditItemDoc,
        VerifyDoc,
        ReadyDoc,
        HealthDoc,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "users", description = "registration, the current account, passwords"),
        (name = "sessions", description = "login, logout, my sessions"),
        (name = "admin", description = "audit trail and session administration (role `admin`)"),
        (name = "health", description = "liveness, readiness, this document"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(COOKIE))),
        );
    }
}

/// An RFC 9457 problem (`application/problem+json`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ProblemDoc {
    /// `urn:umanage:problem:<code>`.
    #[schema(rename = "type")]
    r#type: String,
    title: String,
    status: u16,
    /// Stable machine-readable code.
    code: String,
    detail: String,
    /// Every violated rule (422).
    violations: Option<Vec<ViolationDoc>>,
    /// Seconds to wait (429, busy).
    retry_after: Option<u64>,
    /// The rate-limit rule that rejected the request (429).
    rule: Option<String>,
    /// The request id (also in `X-Request-Id`).
    request_id: Option<String>,
    /// Per-backend state (`/readyz` 503).
    #[schema(value_type = Option<Object>)]
    checks: Option<()>,
}

/// One broken rule.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ViolationDoc {
    /// Stable code (`too_short`, `password_reused`, `invalid_username`, ...).
    code: String,
    message: String,
    #[schema(value_type = Option<Object>)]
    params: Option<()>,
}

/// An account.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct AccountDoc {
    id: String,
    username: String,
    email: String,
    roles: Vec<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

/// A new session.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct LoginDoc {
    /// The bearer token (also set as the `umanage_session` cookie).
    token: String,
    session: SessionRefDoc,
    /// The password has expired and must be changed (the login itself succeeded).
    password_expired: bool,
    #[schema(format = DateTime)]
    password_expires_at: Option<String>,
}

/// The session a login created.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SessionRefDoc {
    id: String,
    #[schema(format = DateTime)]
    expires_at: String,
    #[schema(format = DateTime)]
    idle_expires_at: String,
}

/// A session.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SessionDoc {
    id: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    last_activity: String,
    #[schema(format = DateTime)]
    expires_at: String,
    #[schema(format = DateTime)]
    idle_expires_at: String,
    ip: Option<String>,
    user_agent: Option<String>,
    #[schema(value_type = Option<Object>)]
    location: Option<()>,
    /// Whether this is the session of the request.
    current: bool,
}

/// A list of sessions.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SessionListDoc {
    sessions: Vec<SessionDoc>,
}

/// A strength estimate.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct StrengthDoc {
    /// zxcvbn score 0-4.
    score: u8,
    guesses_log10: f64,
    #[schema(value_type = Object)]
    feedback: (),
    violations: Vec<ViolationDoc>,
}

/// A page of audit events.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct AuditPageDoc {
    events: Vec<AuditItemDoc>,
    next_cursor: Option<String>,
}

/// One stored audit event.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct AuditItemDoc {
    seq: u64,
    #[schema(value_type = Object)]
    event: (),
}

/// The audit chain verification.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct VerifyDoc {
    ok: bool,
    checked: u64,
    first_bad: Option<String>,
}

/// Readiness.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ReadyDoc {
    ready: bool,
    #[schema(value_type = Object)]
    checks: (),
}

/// Liveness.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct HealthDoc {
    status: String,
}
