//! Device fingerprints from configurable request attributes.
//!
//! A fingerprint is the SHA-256 (first 16 bytes, hex) of the attributes a host chose:
//! user agent, the client's network (an [`IpKeyPolicy`] prefix, so an IPv6 client moving
//! inside its /64 keeps its fingerprint), the device id and any request headers (e.g.
//! `accept-language`). It is compared with the login's under a
//! [`BindingPolicy`](crate::BindingPolicy).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use umanage_core::{IpKeyPolicy, RequestContext};

/// What a request says about the client: the host's [`RequestContext`] (client IP already
/// resolved behind trusted proxies) plus any headers named in the fingerprint config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The request context.
    pub context: RequestContext,
    /// Extra request attributes by lower-case header name.
    pub headers: BTreeMap<String, String>,
}

impl ClientInfo {
    /// Client info from a request context.
    pub fn new(context: RequestContext) -> Self {
        Self {
            context,
            headers: BTreeMap::new(),
        }
    }

    /// Adds a header value (the name is lower-cased).
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), value.into());
        self
    }

    /// The client address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.context.client_ip
    }
}

/// Which attributes make up the device fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FingerprintConfig {
    /// Include the user agent.
    pub user_agent: bool,
    /// Include the client's network, grouped by this policy (`None`: leave IPs out, which
    /// suits mobile clients; IP changes are flagged on the session either way).
    pub ip: Option<IpKeyPolicy>,
    /// Include the device id.
    pub device_id: bool,
    /// Include these request headers (lower-case names), e.g. `accept-language`.
    pub headers: Vec<String>,
}

impl Default for FingerprintConfig {
    /// User agent, device id and `accept-language`; no IP.
    fn default() -> Self {
        Self {
            user_agent: true,
            ip: None,
            device_id: true,
            headers: vec!["accept-language".into()],
        }
    }
}

impl FingerprintConfig {
    /// A config that fingerprints nothing (binding effectively off).
    pub fn none() -> Self {
        Self {
            user_agent: false,
            ip: None,
            device_id: false,
            headers: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        !self.user_agent && self.ip.is_none() && !self.device_id && self.headers.is_empty()
    }

    /// The fingerprint of `client`, or `None` when the config selects nothing.
    ///
    /// ```
    /// use umanage_core::RequestContext;
    /// use umanage_session::{ClientInfo, FingerprintConfig};
    ///
    /// let cfg = FingerprintConfig::default();
    /// let a = ClientInfo::new(RequestContext::new().with_user_agent("Firefox"))
    ///     .with_header("Accept-Language", "en-GB");
    /// let b = a.clone().with_header("accept-language", "de-DE");
    /// assert_ne!(cfg.fingerprint(&a), cfg.fingerprint(&b));
    /// assert_eq!(cfg.fingerprint(&a).unwrap().len(), 32);
    /// ```
    pub fn fingerprint(&self, client: &ClientInfo) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut h = Sha256::new();
        let mut field = |name: &str, value: Option<&str>| {
            // Length-prefixed so that no two attribute lists hash alike.
            let value = value.unwrap_or("");
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            h.update((value.len() as u64).to_be_bytes());
            h.update(value.as_bytes());
        };
        let ctx = &client.context;
        if self.user_agent {
            field("ua", ctx.user_agent.as_deref());
        }
        if let Some(policy) = &self.ip {
            field("ip", ctx.client_ip.map(|ip| policy.key(ip)).as_deref());
        }
        if self.device_id {
            field("device", ctx.device_id.as_deref());
        }
        for name in &self.headers {
            // Header names in `ClientInfo` are lower case; configured ones usually are too,
            // so only a mixed-case name costs an allocation here.
            let name: std::borrow::Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                name.to_ascii_lowercase().into()
            } else {
                name.as_str().into()
            };
            field(&name, client.headers.get(name.as_ref()).map(String::as_str));
        }
        let mut text = [0_u8; 32];
        hex::encode_to_slice(&h.finalize()[..16], &mut text).ok()?;
        std::str::from_utf8(&text).ok().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_the_configured_attributes() {
        let ctx = RequestContext::new()
            .with_user_agent("UA")
            .with_client_ip("2001:db8::1".parse().unwrap())
            .with_device_id("d1");
        let a = ClientInfo::new(ctx.clone());
        let moved = ClientInfo::new(ctx.clone().with_client_ip("2001:db8::2".parse().unwrap()));
        let far = ClientInfo::new(ctx.with_client_ip("2001:db9::1".parse().unwrap()));
        let mut cfg = FingerprintConfig::default();
        assert_eq!(
            cfg.fingerprint(&a),
            cfg.fingerprint(&far),
            "IP not configured"
        );
        cfg.ip = Some(IpKeyPolicy::default());
        assert_eq!(cfg.fingerprint(&a), cfg.fingerprint(&moved), "same /64");
        assert_ne!(cfg.fingerprint(&a), cfg.fingerprint(&far));
        assert_eq!(FingerprintConfig::none().fingerprint(&a), None);
        let cfg: FingerprintConfig =
            serde_json::from_str(r#"{"user_agent":false,"headers":["x-client"]}"#).unwrap();
        assert!(!cfg.user_agent);
        assert_eq!(cfg.headers, ["x-client"]);
        assert!(cfg.device_id, "missing fields take the defaults");
        assert!(serde_json::from_str::<FingerprintConfig>(r#"{"ua":true}"#).is_err());
    }
}
