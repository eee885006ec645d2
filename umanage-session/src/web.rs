//! axum integration (feature `axum`): an extractor that gives handlers the [`Session`].
//!
//! The token is read from `Authorization: Bearer <token>` or, failing that, from the session
//! cookie ([`CookieConfig`]: `Secure`, `HttpOnly`, `SameSite=Lax`, path `/` by default). It is
//! validated with the [`SessionManager`] (one store call, sliding the session). The client
//! is described by a [`RequestContext`] in the request extensions, which the host's own
//! middleware puts there (with the client IP resolved behind trusted proxies by
//! [`ClientIpResolver`](umanage_core::ClientIpResolver)); without one, only the headers are
//! used. Failures become a [`SessionRejection`]: 401 `application/problem+json` for a missing
//! or bad token, 503 when the store is unavailable.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use umanage_session::web::{CurrentSession, SessionAuth};
//! use umanage_session::{MemorySessionStore, SessionConfig, SessionManager};
//!
//! async fn me(CurrentSession { session, .. }: CurrentSession) -> String {
//!     session.username.clone() // `session` is an `Arc<Session>`
//! }
//!
//! let manager = SessionManager::new(Arc::new(MemorySessionStore::new()), SessionConfig::default());
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .with_state(SessionAuth::new(Arc::new(manager)));
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::response::{IntoResponse, Response};
use http::header::{
    AUTHORIZATION, CONTENT_TYPE, COOKIE, RETRY_AFTER, USER_AGENT, WWW_AUTHENTICATE,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use umanage_core::RequestContext;

use crate::device::ClientInfo;
use crate::error::Error;
use crate::manager::{SessionManager, Validation};
use crate::model::Session;
use crate::token::SessionToken;

/// The `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax` (the default).
    #[default]
    Lax,
    /// `SameSite=None` (requires `Secure`).
    None,
}

/// The session cookie's name and attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CookieConfig {
    /// Cookie name (default `umanage_session`).
    pub name: String,
    /// `Secure` (default on).
    pub secure: bool,
    /// `HttpOnly` (default on).
    pub http_only: bool,
    /// `SameSite` (default `Lax`).
    pub same_site: SameSite,
    /// `Path` (default `/`).
    pub path: String,
    /// `Domain` (default none: host-only).
    pub domain: Option<String>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "umanage_session".into(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".into(),
            domain: None,
        }
    }
}

impl CookieConfig {
    fn attributes(&self, out: &mut String) {
        out.push_str("; Path=");
        out.push_str(&self.path);
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if self.secure || self.same_site == SameSite::None {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        out.push_str(match self.same_site {
            SameSite::Strict => "; SameSite=Strict",
            SameSite::Lax => "; SameSite=Lax",
            SameSite::None => "; SameSite=None",
        });
    }

    /// A `Set-Cookie` value carrying `token`; `max_age` `None` makes a browser-session cookie.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the name, path or domain contain characters a header cannot.
    pub fn set_cookie(
        &self,
        token: &SessionToken,
        max_age: Option<Duration>,
    ) -> Result<HeaderValue, Error> {
        let mut v = format!("{}={}", self.name, token.expose());
        self.attributes(&mut v);
        if let Some(age) = max_age {
            v.push_str("; Max-Age=");
            v.push_str(&age.as_secs().to_string());
        }
        HeaderValue::from_str(&v).map_err(|_| Error::Config("cookie name, path or domain".into()))
    }

    /// A `Set-Cookie` value that deletes the cookie (logout).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the name, path or domain contain characters a header cannot.
    pub fn removal(&self) -> Result<HeaderValue, Error> {
        let mut v = format!("{}=", self.name);
        self.attributes(&mut v);
        v.push_str("; Max-Age=0");
        HeaderValue::from_str(&v).map_err(|_| Error::Config("cookie name, path or domain".into()))
    }

    /// The cookie's value in a request's `Cookie` headers.
    pub fn read<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.name)
            .map(|(_, value)| value.trim_matches('"'))
    }
}

/// What the extractor needs: the manager and the cookie config. Put it in the router
/// state (or implement `FromRef` for your state).
#[derive(Debug, Clone)]
pub struct SessionAuth {
    manager: Arc<SessionManager>,
    cookie: CookieConfig,
}

impl SessionAuth {
    /// Reads tokens with the default cookie config.
    pub fn new(manager: Arc<SessionManager>) -> Self {
        Self {
            manager,
            cookie: CookieConfig::default(),
        }
    }

    /// Uses another cookie name or attributes.
    #[must_use]
    pub fn with_cookie(mut self, cookie: CookieConfig) -> Self {
        self.cookie = cookie;
        self
    }

    /// The manager.
    pub fn manager(&self) -> &Arc<SessionManager> {
        &self.manager
    }

    /// The cookie config.
    pub fn cookie(&self) -> &CookieConfig {
        &self.cookie
    }

    /// The client as the fingerprint config sees it.
    pub fn client_info(&self, parts: &Parts) -> ClientInfo {
        let mut context = parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_default();
        if context.user_agent.is_none() {
            context.user_agent = parts
                .headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
        let mut client = ClientInfo::new(context);
        for name in &self.manager.config().fingerprint().headers {
            if let Some(value) = parts
                .headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
            {
                client = client.with_header(name, value);
            }
        }
        client
    }

    fn token_text<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        bearer.or_else(|| self.cookie.read(headers))
    }
}

/// The validated session of the request, and the token it came with (for rotation or
/// logout).
#[derive(Debug, Clone)]
pub struct CurrentSession {
    /// The session (a shared snapshot: see [`Validation::Valid`]).
    pub session: Arc<Session>,
    /// The token presented.
    pub token: SessionToken,
}

/// Why a request has no session.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionRejection {
    /// No bearer token and no session cookie (401).
    Missing,
    /// A token that is malformed, unknown, expired or revoked (401).
    Invalid,
    /// The device does not match the session's and the binding policy rejects (401).
    DeviceMismatch,
    /// The session store failed (503 when unavailable, else 500).
    Store(Error),
}

impl SessionRejection {
    /// The HTTP status of this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Missing | Self::Invalid | Self::DeviceMismatch => StatusCode::UNAUTHORIZED,
            Self::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> &'static str {
        match self {
            Self::Missing => "no session token was presented",
            Self::Invalid => "the session token is not valid",
            Self::DeviceMismatch => "the session belongs to another device",
            Self::Store(e) if e.is_unavailable() => "the session store is unavailable",
            Self::Store(_) => "the session store failed",
        }
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Store(e) = &self {
            tracing::warn!(error = %e, "session store error");
        }
        let body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": self.detail(),
        })
        .to_string();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl<S> FromRequestParts<S> for CurrentSession
where
    S: Send + Sync,
    SessionAuth: FromRef<S>,
{
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = SessionAuth::from_ref(state);
        let text = auth
            .token_text(&parts.headers)
            .ok_or(SessionRejection::Missing)?;
        let token = SessionToken::parse(text).map_err(|_| SessionRejection::Invalid)?;
        let client = auth.client_info(parts);
        match auth.manager.validate(&token, &client).await {
            Ok(Validation::Valid(session)) => Ok(Self { session, token }),
            Ok(Validation::DeviceMismatch) => Err(SessionRejection::DeviceMismatch),
            Ok(Validation::Invalid) => Err(SessionRejection::Invalid),
            Err(e) => Err(SessionRejection::Store(e)),
        }
    }
}
