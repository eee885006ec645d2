//! The OpenAPI 3.1 document served at `/openapi.json`. Request bodies are the handlers'
//! own types; response shapes are the `*Doc` types below (the e2e test checks real
//! responses against their property lists), and the problem responses are shared types
//! ([`BadRequest`], [`Unauthorized`], ...) each route lists in `responses(...)`.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;

use super::COOKIE;
use super::password::{ChangePasswordBody, StrengthBody};
use super::sessions::LoginBody;
use super::users::RegisterBody;

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    description = "This document (OpenAPI 3.1), generated from the handlers' annotations.",
    responses(
        (status = 200, description = "the OpenAPI document", body = Object),
        RateLimited,
    )
)]
pub(crate) async fn openapi_json() -> Response {
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

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "umanage example server",
        description = "User management over HTTP on the umanage SDK. Every error is an RFC 9457 `application/problem+json` with a stable `code`.",
        version = "0.1.0",
    ),
    paths(
        super::health::healthz,
        super::health::readyz,
        openapi_json,
        super::users::register,
        super::sessions::login,
        super::sessions::list_sessions,
        super::sessions::logout,
        super::sessions::revoke_session,
        super::users::me,
        super::password::change_password,
        super::password::strength,
        super::admin::admin_audit,
        super::admin::admin_verify,
        super::admin::admin_sessions,
        super::admin::admin_revoke_all,
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

pub(crate) struct SecuritySchemes;

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
pub(crate) struct ProblemDoc {
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
pub(crate) struct ViolationDoc {
    /// Stable code (`too_short`, `password_reused`, `invalid_username`, ...).
    code: String,
    message: String,
    #[schema(value_type = Option<Object>)]
    params: Option<()>,
}

/// An account.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct AccountDoc {
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
pub(crate) struct LoginDoc {
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
pub(crate) struct SessionRefDoc {
    id: String,
    #[schema(format = DateTime)]
    expires_at: String,
    #[schema(format = DateTime)]
    idle_expires_at: String,
}

/// A session.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct SessionDoc {
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
pub(crate) struct SessionListDoc {
    sessions: Vec<SessionDoc>,
}

/// A strength estimate.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct StrengthDoc {
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
pub(crate) struct AuditPageDoc {
    events: Vec<AuditItemDoc>,
    next_cursor: Option<String>,
}

/// One stored audit event.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct AuditItemDoc {
    seq: u64,
    #[schema(value_type = Object)]
    event: (),
}

/// The audit chain verification.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct VerifyDoc {
    /// No broken link and every checkpoint signed by a known key and matching its row.
    ok: bool,
    /// Events verified.
    checked: u64,
    /// Signed checkpoints verified (a checkpoint beyond the last row means truncation).
    checkpoints_checked: u64,
    /// The first break (sequence number and kind), when not ok.
    first_bad: Option<String>,
}

/// Readiness.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ReadyDoc {
    ready: bool,
    #[schema(value_type = Object)]
    checks: (),
}

/// Liveness.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct HealthDoc {
    status: String,
}

// Problem responses: one type per status and meaning. Each route lists the ones it can
// return in `responses(...)` next to its success response; utoipa inlines them, so the
// document is the same as if every route spelled them out.

/// Declares problem+json responses (`IntoResponses` types with a `ProblemDoc` body).
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident = $status:tt, $description:tt;)*) => {$(
        $(#[$doc])*
        #[derive(utoipa::IntoResponses)]
        #[response(status = $status, description = $description, content_type = "application/problem+json")]
        #[allow(dead_code)] // only its type is used, by the `responses(...)` lists
        pub(crate) struct $name(ProblemDoc);
    )*};
}

problem_responses! {
    /// 400: the body or the query is not well-formed.
    BadRequest = 400,
        "malformed JSON, invalid UTF-8 or a bad query (`malformed_json`, `invalid_utf8`, `invalid_query`)";
    /// 401: no valid session, or wrong credentials.
    Unauthorized = 401,
        "no valid session, or wrong credentials (`unauthenticated`, `invalid_credentials`)";
    /// 403: the admin role is required.
    Forbidden = 403,
        "the admin role is required (`forbidden`)";
    /// 404: no such session or user.
    NotFound = 404,
        "no such session or user (`not_found`, `session_not_found`)";
    /// 409: the state forbids it (taken username or email, session limit).
    Conflict = 409,
        "conflict (`username_taken`, `email_taken`, `session_limit`, `conflict`)";
    /// 413: the body is over the limit.
    PayloadTooLarge = 413,
        "the body is larger than the limit (`body_too_large`)";
    /// 415: the body is not JSON.
    UnsupportedMediaType = 415,
        "the body is not `application/json` (`unsupported_media_type`)";
    /// 422: validation failed.
    Unprocessable = 422,
        "validation failed: every violation in `violations` (`validation_failed`, `invalid_fields`)";
    /// 429: a rate limit, with `Retry-After`.
    RateLimited = 429,
        "rate limited, with `Retry-After` (`rate_limited`)";
    /// 429 on login: a rate limit or spray protection, with `Retry-After`.
    LoginThrottled = 429,
        "rate limited or blocked by spray protection, with `Retry-After` (`rate_limited`, `spray_blocked`, `spray_slow_down`, `challenge_required`)";
    /// 503: a backend or the hashing pool; retry later.
    Unavailable = 503,
        "a backend or the hashing pool is unavailable; retry later (`unavailable`, `busy`, `not_ready`)";
}
