//! Administration (role `admin`): the audit trail with filters and a cursor, the chain
//! verification, and a user's sessions (list, revoke all).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use umanage::audit::{AuditFilter, AuditQuery, Outcome, event_types};
use umanage::core::UserId;

use super::auth::{Ctx, require_admin};
use super::edge::audit;
use super::openapi::{
    AuditPageDoc, BadRequest, Forbidden, NotFound, RateLimited, SessionListDoc, Unauthorized,
    Unavailable, VerifyDoc,
};
use super::problem::{Problem, backend, session_err};
use super::sessions::session_json;
use super::{AppState, CHAIN};

/// The filters of `GET /v1/admin/audit`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
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
        BadRequest, Unauthorized, Forbidden, RateLimited, Unavailable,
    )
)]
pub(crate) async fn admin_audit(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let s = &state.inner;
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
    let page = (*s.stores.audit).query(&query).await.map_err(|e| match e {
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
        Unauthorized, Forbidden, RateLimited, Unavailable,
    )
)]
pub(crate) async fn admin_verify(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let s = &state.inner;
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
        "checkpoints_checked": report.checkpoints_checked,
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
        Unauthorized, Forbidden, NotFound, RateLimited, Unavailable,
    )
)]
pub(crate) async fn admin_sessions(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let s = &state.inner;
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
        Unauthorized, Forbidden, NotFound, RateLimited, Unavailable,
    )
)]
pub(crate) async fn admin_revoke_all(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let s = &state.inner;
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
