//! Who is calling: the session token from `Authorization: Bearer` or the session cookie,
//! validated by the session manager, and the admin role check.

use std::sync::Arc;

use axum::http::{HeaderMap, header};

use umanage::account::Role;
use umanage::audit::{Outcome, event_types};
use umanage::core::RequestContext;
use umanage::session::{ClientInfo, Session, SessionToken, Validation};

use super::edge::audit;
use super::problem::{Problem, session_err};
use super::{COOKIE, Inner};

pub(crate) fn presented_token(headers: &HeaderMap) -> Option<String> {
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

pub(crate) async fn authenticate(
    s: &Inner,
    headers: &HeaderMap,
    ctx: &RequestContext,
) -> Result<(Arc<Session>, ClientInfo), Problem> {
    let raw = presented_token(headers).ok_or_else(Problem::unauthorized)?;
    let token = SessionToken::parse(&raw).map_err(|_| Problem::unauthorized())?;
    let client = ClientInfo::new(ctx.clone());
    match s.sessions.validate(&token, &client).await {
        Ok(Validation::Valid(session)) => Ok((session, client)),
        Ok(_) => Err(Problem::unauthorized()),
        Err(e) => Err(session_err(&e)),
    }
}

/// Extracts the request's [`RequestContext`], which the edge middleware puts in the
/// extensions (client address, user agent, request id); a default one when it is absent.
/// Never rejects.
pub(crate) struct Ctx(pub(crate) RequestContext);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<RequestContext>()
                .cloned()
                .unwrap_or_default(),
        ))
    }
}

pub(crate) async fn require_admin(
    s: &Inner,
    headers: &HeaderMap,
    ctx: &RequestContext,
) -> Result<Arc<Session>, Problem> {
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
