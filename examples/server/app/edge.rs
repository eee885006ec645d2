//! What wraps every request: the edge middleware (request id, client address, security
//! headers, problem bodies for bare error statuses), the rate limiter's rejection hook,
//! and [`audit`], which records one audit event with the request's context.

use std::net::SocketAddr;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use umanage::audit::{ActorType, AuditEvent, Outcome, event_types};
use umanage::core::{RequestContext, UserId};
use umanage::ratelimit::Rejection;

use super::problem::Problem;
use super::{AppState, Inner};

pub(crate) async fn rate_limited(
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

pub(crate) async fn edge(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
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

pub(crate) async fn audit(
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
