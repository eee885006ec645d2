//! Sessions: login (`POST /v1/sessions`: per-account rate limit, spray detection,
//! timing-equal answers for unknown users, rehash, the session cookie), logout, listing
//! and revoking my sessions.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use umanage::audit::{Outcome, event_types};
use umanage::core::{RequestContext, UserId};
use umanage::password::NormalizedPassword;
use umanage::password::service::{ExpiryStatus, LoginOutcome as PasswordLogin};
use umanage::password::spray::{LoginAttempt, SprayAction};
use umanage::ratelimit::{Check, Decision};
use umanage::session::{ClientInfo, Login, LoginOutcome, Session, SessionId};

use super::auth::{Ctx, authenticate};
use super::edge::audit;
use super::openapi::{
    BadRequest, Conflict, LoginDoc, LoginThrottled, NotFound, PayloadTooLarge, RateLimited,
    SessionListDoc, Unauthorized, Unavailable, Unprocessable, UnsupportedMediaType,
};
use super::problem::{Problem, account_err, parse_json, password_err, session_err};
use super::{AppState, COOKIE, Inner};

/// `POST /v1/sessions`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
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
        BadRequest, Unauthorized, Conflict, PayloadTooLarge, UnsupportedMediaType, Unprocessable, LoginThrottled, Unavailable,
    )
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let body: LoginBody = parse_json(&headers, &body)?;
    let pw = NormalizedPassword::new(body.password.expose_secret()).ok();
    let account = if body.login.len() > 320 {
        None
    } else {
        (*s.stores.accounts)
            .find_by_login(&body.login)
            .await
            .map_err(|e| account_err(&e))?
    };
    // Per-account throttle (before any hashing, so a locked-out account costs nothing).
    if let Some(account) = &account {
        let key = format!("login-account:{}", account.id);
        let decisions = (*s.stores.limiter)
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
        match (*s.spray).assess(&LoginAttempt::new(ip, &login_key)).await {
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
            (*s.spray).record_success(&attempt).await
        } else {
            (*s.spray).record_failure(&attempt).await
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

pub(crate) async fn spray_rejection(
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

pub(crate) fn too_many(d: &Decision) -> Response {
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

pub(crate) fn session_json(session: &Session, current: Option<SessionId>) -> Value {
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
        Unauthorized, RateLimited, Unavailable,
    )
)]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let s = &state.inner;
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
        Unauthorized, RateLimited, Unavailable,
    )
)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let s = &state.inner;
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
        Unauthorized, NotFound, RateLimited, Unavailable,
    )
)]
pub(crate) async fn revoke_session(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let s = &state.inner;
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
