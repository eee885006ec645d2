//! How a request becomes a rate-limit key.
//!
//! A [`KeySpec`] lists the parts of a key (`["ip"]`, `["user"]`, `["api_key", "route"]`);
//! a [`KeyExtractor`] builds the key of a request from it. Parts are joined with `|` after
//! the rule name, so `login|ip=192.0.2.1/32` and `login|user=…` never collide.
//!
//! * `ip`: the client address resolved through trusted proxies
//!   ([`ClientIpResolver`]) and reduced to its network by the [`IpKeyPolicy`] (IPv4 /32 and
//!   IPv6 /64 by default; IPv4-mapped IPv6 clients count as their IPv4 address).
//! * `user`: the authenticated user of the [`RequestContext`].
//! * `api_key` / `api_key:<header>`: the API key header (default `x-api-key`), **hashed**
//!   (SHA-256, first 16 bytes in hex) so the secret never reaches a backend key or a log.
//! * `header:<name>`: any header's value (up to 128 bytes).
//! * `route`: the matched route pattern (or the path when no route is known).
//! * `method`: the HTTP method.

use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use umanage_core::{ClientIpResolver, IpKeyPolicy, RequestContext};

use crate::error::{Error, Result};

/// One part of a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeyPart {
    /// The client's network.
    Ip,
    /// The authenticated user.
    User,
    /// A hash of the API key in this header.
    ApiKey(http::HeaderName),
    /// The value of this header.
    Header(http::HeaderName),
    /// The route.
    Route,
    /// The method.
    Method,
}

impl KeyPart {
    /// The default API key header.
    pub const DEFAULT_API_KEY_HEADER: &'static str = "x-api-key";
    /// The longest header value used in a key (longer values are hashed).
    pub const MAX_HEADER_VALUE: usize = 128;
}

impl TryFrom<String> for KeyPart {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        let header = |name: &str| {
            http::HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| Error::InvalidConfig(format!("invalid header name in key part {s:?}")))
        };
        Ok(match s.split_once(':') {
            None => match s.as_str() {
                "ip" => Self::Ip,
                "user" => Self::User,
                "api_key" => Self::ApiKey(header(Self::DEFAULT_API_KEY_HEADER)?),
                "route" => Self::Route,
                "method" => Self::Method,
                _ => {
                    return Err(Error::InvalidConfig(format!(
                        "unknown key part {s:?} (ip, user, api_key[:header], header:<name>, route, method)"
                    )));
                }
            },
            Some(("api_key", name)) => Self::ApiKey(header(name)?),
            Some(("header", name)) => Self::Header(header(name)?),
            Some(_) => return Err(Error::InvalidConfig(format!("unknown key part {s:?}"))),
        })
    }
}

impl From<KeyPart> for String {
    fn from(p: KeyPart) -> Self {
        p.to_string()
    }
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip => f.write_str("ip"),
            Self::User => f.write_str("user"),
            Self::ApiKey(h) if h.as_str() == Self::DEFAULT_API_KEY_HEADER => f.write_str("api_key"),
            Self::ApiKey(h) => write!(f, "api_key:{h}"),
            Self::Header(h) => write!(f, "header:{h}"),
            Self::Route => f.write_str("route"),
            Self::Method => f.write_str("method"),
        }
    }
}

/// The parts of a key, in order (a composite when more than one). Defaults to `["ip"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<KeyPart>", into = "Vec<KeyPart>")]
pub struct KeySpec(Vec<KeyPart>);

impl Default for KeySpec {
    fn default() -> Self {
        Self(vec![KeyPart::Ip])
    }
}

impl TryFrom<Vec<KeyPart>> for KeySpec {
    type Error = Error;
    fn try_from(parts: Vec<KeyPart>) -> Result<Self> {
        Self::new(parts)
    }
}

impl From<KeySpec> for Vec<KeyPart> {
    fn from(k: KeySpec) -> Self {
        k.0
    }
}

impl KeySpec {
    /// A key of these parts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for no parts, more than 8, or a part given twice.
    pub fn new(parts: Vec<KeyPart>) -> Result<Self> {
        if parts.is_empty() || parts.len() > 8 {
            return Err(Error::InvalidConfig("a key needs 1 to 8 parts".into()));
        }
        for (i, p) in parts.iter().enumerate() {
            if parts[..i].contains(p) {
                return Err(Error::InvalidConfig(format!("key part {p} given twice")));
            }
        }
        Ok(Self(parts))
    }

    /// One part.
    pub fn single(part: KeyPart) -> Self {
        Self(vec![part])
    }

    /// The parts.
    pub fn parts(&self) -> &[KeyPart] {
        &self.0
    }
}

/// What the key extractor sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// The method.
    pub method: &'a http::Method,
    /// The path (without query).
    pub path: &'a str,
    /// The matched route pattern, when the router knows it.
    pub route: Option<&'a str>,
    /// The headers.
    pub headers: &'a http::HeaderMap,
    /// The TCP peer address.
    pub peer: Option<IpAddr>,
    /// The request context (authenticated user, ...).
    pub context: Option<&'a RequestContext>,
}

/// Builds keys from requests: client IP resolution and network policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyExtractor {
    /// Which proxies to trust for the forwarded client address.
    pub resolver: ClientIpResolver,
    /// How client addresses are reduced to networks.
    pub ip_policy: IpKeyPolicy,
}

impl KeyExtractor {
    /// An extractor.
    pub fn new(resolver: ClientIpResolver, ip_policy: IpKeyPolicy) -> Self {
        Self {
            resolver,
            ip_policy,
        }
    }

    /// The resolved client address of a request (the context's, else the peer through the
    /// trusted proxies).
    pub fn client_ip(&self, req: &RequestInfo<'_>) -> Option<IpAddr> {
        req.context
            .and_then(|c| c.client_ip)
            .map(umanage_core::net::canonical_ip)
            .or_else(|| {
                req.peer
                    .map(|peer| self.resolver.resolve(peer, req.headers))
            })
    }

    /// The key of `req` for a rule named `rule` keyed by `spec`; `None` when a part is
    /// missing (no client address, an anonymous request for `user`, no API key header), in
    /// which case the rule does not apply to the request.
    pub fn key(&self, rule: &str, spec: &KeySpec, req: &RequestInfo<'_>) -> Option<String> {
        let mut out = String::with_capacity(64);
        out.push_str(rule);
        for part in spec.parts() {
            out.push('|');
            match part {
                KeyPart::Ip => {
                    let ip = self.client_ip(req)?;
                    let _ = write!(out, "ip={}", self.ip_policy.key(ip));
                }
                KeyPart::User => {
                    let user = req.context.and_then(|c| c.user_id)?;
                    let _ = write!(out, "user={user}");
                }
                KeyPart::ApiKey(name) => {
                    let value = req.headers.get(name)?.as_bytes();
                    if value.is_empty() {
                        return None;
                    }
                    out.push_str("key=");
                    out.push_str(&short_hash(value));
                }
                KeyPart::Header(name) => {
                    let value = req.headers.get(name)?.as_bytes();
                    let _ = write!(out, "{name}=");
                    if value.len() <= KeyPart::MAX_HEADER_VALUE && !value.contains(&b'|') {
                        out.push_str(&String::from_utf8_lossy(value));
                    } else {
                        out.push('#');
                        out.push_str(&short_hash(value));
                    }
                }
                KeyPart::Route => {
                    let _ = write!(out, "route={}", req.route.unwrap_or(req.path));
                }
                KeyPart::Method => {
                    let _ = write!(out, "method={}", req.method);
                }
            }
        }
        Some(out)
    }
}

fn short_hash(value: &[u8]) -> String {
    hex::encode(&Sha256::digest(value)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(parts: &[&str]) -> KeySpec {
        serde_json::from_value(serde_json::json!(parts)).unwrap()
    }

    #[test]
    fn ipv6_and_mapped_clients_land_in_the_right_keys() {
        let proxies = ClientIpResolver::new(
            ["10.0.0.0/8".parse().unwrap()],
            umanage_core::ForwardedHeader::XForwardedFor,
        );
        let ex = KeyExtractor::new(proxies, IpKeyPolicy::default());
        let headers = http::HeaderMap::new();
        let key = |peer: &str, xff: Option<&str>| {
            let mut h = headers.clone();
            if let Some(v) = xff {
                h.insert("x-forwarded-for", v.parse().unwrap());
            }
            let req = RequestInfo {
                method: &http::Method::GET,
                path: "/",
                route: None,
                headers: &h,
                peer: Some(peer.parse().unwrap()),
                context: None,
            };
            ex.key("r", &KeySpec::default(), &req).unwrap()
        };
        assert_eq!(key("192.0.2.1", None), "r|ip=192.0.2.1/32");
        assert_eq!(key("::ffff:192.0.2.1", None), "r|ip=192.0.2.1/32");
        assert_eq!(
            key("10.0.0.1", Some("::ffff:192.0.2.1")),
            "r|ip=192.0.2.1/32"
        );
        assert_eq!(key("2001:db8::1", None), key("2001:db8::ffff:1", None));
        assert_eq!(key("2001:db8::1", None), "r|ip=2001:db8::/64");
        assert_ne!(key("2001:db8::1", None), key("2001:db8:0:1::1", None));
        assert_eq!(
            key("10.0.0.1", Some("2001:db8:5::9")),
            "r|ip=2001:db8:5::/64"
        );
        // an untrusted peer cannot choose its key with a spoofed header
        assert_eq!(key("203.0.113.9", Some("192.0.2.1")), "r|ip=203.0.113.9/32");
    }

    #[test]
    fn parts_and_composites() {
        let user = umanage_core::UserId::new();
        let ctx = RequestContext::new().with_user_id(user);
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", "s3cret-token".parse().unwrap());
        h.insert("x-tenant", "acme".parse().unwrap());
        let req = RequestInfo {
            method: &http::Method::POST,
            path: "/v1/items/7",
            route: Some("/v1/items/{id}"),
            headers: &h,
            peer: Some("198.51.100.4".parse().unwrap()),
            context: Some(&ctx),
        };
        let ex = KeyExtractor::default();
        let k = ex
            .key(
                "r",
                &spec(&["user", "route", "method", "header:x-tenant"]),
                &req,
            )
            .unwrap();
        assert_eq!(
            k,
            format!("r|user={user}|route=/v1/items/{{id}}|method=POST|x-tenant=acme")
        );
        let k = ex.key("r", &spec(&["api_key"]), &req).unwrap();
        assert!(!k.contains("s3cret"), "{k}");
        assert_eq!(k.len(), "r|key=".len() + 32);
        let anon = RequestInfo {
            context: None,
            ..req
        };
        assert_eq!(ex.key("r", &spec(&["user"]), &anon), None);
        assert_eq!(ex.key("r", &spec(&["header:x-missing"]), &req), None);
        assert!(serde_json::from_value::<KeySpec>(serde_json::json!(["ip", "ip"])).is_err());
        assert!(serde_json::from_value::<KeySpec>(serde_json::json!(["cookie"])).is_err());
        assert!(serde_json::from_value::<KeySpec>(serde_json::json!([])).is_err());
        let s = spec(&["api_key:authorization", "ip"]);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!(["api_key:authorization", "ip"])
        );
    }
}
