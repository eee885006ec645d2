//! The request context every crate receives.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::UserId;

/// What is known about the request an operation runs for.
///
/// Hosts build one per incoming request (the tower layers of the umanage crates do it for
/// axum apps) and pass it to sessions, rate limits, spray detection and audit, so every
/// component sees the same client address and correlation ids. All fields are optional:
/// a background job has no client IP.
///
/// `client_ip` should be the *resolved* client address (see
/// [`ClientIpResolver`](crate::ClientIpResolver)), not blindly the TCP peer.
///
/// ```
/// use umanage_core::RequestContext;
///
/// let ctx = RequestContext::new()
///     .with_client_ip("2001:db8::7".parse().unwrap())
///     .with_user_agent("curl/8.5.0")
///     .with_request_id("req-1");
/// assert_eq!(ctx.request_id.as_deref(), Some("req-1"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RequestContext {
    /// The client's address, after trusted-proxy resolution.
    pub client_ip: Option<IpAddr>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// A request id (for example `X-Request-Id`), for correlation.
    pub request_id: Option<String>,
    /// The session the request is authenticated with (its public id, never its token).
    pub session_id: Option<String>,
    /// The authenticated user, when known.
    pub user_id: Option<UserId>,
    /// W3C trace id, when the request is traced.
    pub trace_id: Option<String>,
    /// W3C span id, when the request is traced.
    pub span_id: Option<String>,
    /// A device identifier (fingerprint or client-supplied id).
    pub device_id: Option<String>,
}

impl RequestContext {
    /// An empty context (a background task, a test).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the client address. IPv4-mapped IPv6 addresses are unwrapped to IPv4, so the
    /// same client always appears the same way.
    #[must_use]
    pub fn with_client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(crate::net::canonical_ip(ip));
        self
    }

    /// Sets the user agent.
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Sets the request id.
    #[must_use]
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Sets the session id.
    #[must_use]
    pub fn with_session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Sets the authenticated user.
    #[must_use]
    pub fn with_user_id(mut self, user_id: UserId) -> Self {
        self.user_id = Some(user_id);
        self
    }

    /// Sets the trace and span ids.
    #[must_use]
    pub fn with_trace(mut self, trace_id: impl Into<String>, span_id: impl Into<String>) -> Self {
        self.trace_id = Some(trace_id.into());
        self.span_id = Some(span_id.into());
        self
    }

    /// Sets the device id.
    #[must_use]
    pub fn with_device_id(mut self, device_id: impl Into<String>) -> Self {
        self.device_id = Some(device_id.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_every_field_and_unwraps_mapped_ips() {
        let user = UserId::new();
        let ctx = RequestContext::new()
            .with_client_ip("::ffff:192.0.2.1".parse().unwrap())
            .with_user_agent("ua")
            .with_request_id("r")
            .with_session_id("s")
            .with_user_id(user)
            .with_trace("t", "sp")
            .with_device_id("d");
        assert_eq!(ctx.client_ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(ctx.user_agent.as_deref(), Some("ua"));
        assert_eq!(ctx.session_id.as_deref(), Some("s"));
        assert_eq!(ctx.user_id, Some(user));
        assert_eq!(ctx.trace_id.as_deref(), Some("t"));
        assert_eq!(ctx.span_id.as_deref(), Some("sp"));
        assert_eq!(ctx.device_id.as_deref(), Some("d"));
        let json = serde_json::to_string(&ctx).unwrap();
        assert_eq!(serde_json::from_str::<RequestContext>(&json).unwrap(), ctx);
    }

    #[test]
    fn serde_rejects_unknown_fields() {
        assert!(serde_json::from_str::<RequestContext>(r#"{"client_ipp":"1.2.3.4"}"#).is_err());
        let empty: RequestContext = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, RequestContext::new());
    }
}
