//! Client addresses: keys for rate limiting and spray detection, and the real client IP
//! behind trusted proxies.
//!
//! Two rules make addresses safe to count on:
//!
//! * **One client, one key.** IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, also written
//!   `::ffff:c000:201`) are unwrapped to IPv4 first, and an IPv6 client is keyed by its
//!   /64 by default, because a single host is normally given a whole /64 and can rotate
//!   through it at will. See [`IpKeyPolicy`].
//! * **Only trusted proxies speak for the client.** `X-Forwarded-For` and `Forwarded` are
//!   read only when the TCP peer is a configured proxy, and then only as far back as the
//!   chain of trusted proxies goes. See [`ClientIpResolver`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::HeaderMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// Unwraps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to IPv4; other addresses are
/// returned as they are.
///
/// ```
/// use umanage_core::net::canonical_ip;
///
/// let mapped = "::ffff:c000:0201".parse().unwrap();
/// assert_eq!(canonical_ip(mapped), "192.0.2.1".parse::<std::net::IpAddr>().unwrap());
/// ```
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// A prefix length outside what the address family allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {family} prefix length /{len}: must be between /{min} and /{max}")]
pub struct IpPolicyError {
    family: &'static str,
    len: u8,
    min: u8,
    max: u8,
}

/// How client addresses are grouped into keys.
///
/// By default an IPv4 client is its own /32 and an IPv6 client is its /64. Hosts that see
/// carrier-grade NAT may want a coarser IPv4 grouping for spray detection; ISPs that hand
/// out /56 prefixes may warrant `/56` for IPv6.
///
/// ```
/// use umanage_core::IpKeyPolicy;
///
/// let policy = IpKeyPolicy::default();
/// let a = policy.key("2001:db8::1".parse().unwrap());
/// let b = policy.key("2001:db8::ffff".parse().unwrap());
/// assert_eq!(a, b);
/// assert_eq!(a, "2001:db8::/64");
/// assert_eq!(policy.key("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1/32");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawIpKeyPolicy", into = "RawIpKeyPolicy")]
pub struct IpKeyPolicy {
    ipv4_prefix: u8,
    ipv6_prefix: u8,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIpKeyPolicy {
    #[serde(default = "default_v4")]
    ipv4_prefix: u8,
    #[serde(default = "default_v6")]
    ipv6_prefix: u8,
}

fn default_v4() -> u8 {
    IpKeyPolicy::DEFAULT_IPV4_PREFIX
}
fn default_v6() -> u8 {
    IpKeyPolicy::DEFAULT_IPV6_PREFIX
}

impl TryFrom<RawIpKeyPolicy> for IpKeyPolicy {
    type Error = IpPolicyError;
    fn try_from(raw: RawIpKeyPolicy) -> Result<Self, Self::Error> {
        Self::new(raw.ipv4_prefix, raw.ipv6_prefix)
    }
}

impl From<IpKeyPolicy> for RawIpKeyPolicy {
    fn from(p: IpKeyPolicy) -> Self {
        Self {
            ipv4_prefix: p.ipv4_prefix,
            ipv6_prefix: p.ipv6_prefix,
        }
    }
}

impl Default for IpKeyPolicy {
    fn default() -> Self {
        Self {
            ipv4_prefix: Self::DEFAULT_IPV4_PREFIX,
            ipv6_prefix: Self::DEFAULT_IPV6_PREFIX,
        }
    }
}

impl IpKeyPolicy {
    /// Default IPv4 grouping: each address on its own.
    pub const DEFAULT_IPV4_PREFIX: u8 = 32;
    /// Default IPv6 grouping: the /64 a single host is usually given.
    pub const DEFAULT_IPV6_PREFIX: u8 = 64;
    /// The coarsest IPv4 grouping accepted (a /8).
    pub const MIN_IPV4_PREFIX: u8 = 8;
    /// The coarsest IPv6 grouping accepted (a /16).
    pub const MIN_IPV6_PREFIX: u8 = 16;

    /// A policy grouping IPv4 by `/ipv4_prefix` and IPv6 by `/ipv6_prefix`.
    ///
    /// # Errors
    ///
    /// [`IpPolicyError`] when a length is longer than the family allows (32, 128) or so
    /// short that whole regions would share one key (below /8 or /16).
    pub fn new(ipv4_prefix: u8, ipv6_prefix: u8) -> Result<Self, IpPolicyError> {
        if !(Self::MIN_IPV4_PREFIX..=32).contains(&ipv4_prefix) {
            return Err(IpPolicyError {
                family: "IPv4",
                len: ipv4_prefix,
                min: Self::MIN_IPV4_PREFIX,
                max: 32,
            });
        }
        if !(Self::MIN_IPV6_PREFIX..=128).contains(&ipv6_prefix) {
            return Err(IpPolicyError {
                family: "IPv6",
                len: ipv6_prefix,
                min: Self::MIN_IPV6_PREFIX,
                max: 128,
            });
        }
        Ok(Self {
            ipv4_prefix,
            ipv6_prefix,
        })
    }

    /// The IPv4 prefix length.
    pub const fn ipv4_prefix(&self) -> u8 {
        self.ipv4_prefix
    }

    /// The IPv6 prefix length.
    pub const fn ipv6_prefix(&self) -> u8 {
        self.ipv6_prefix
    }

    /// The network a client address belongs to (mapped IPv6 unwrapped first).
    pub fn network(&self, ip: IpAddr) -> IpNet {
        match canonical_ip(ip) {
            IpAddr::V4(v4) => IpNet::V4(
                Ipv4Net::new(v4, self.ipv4_prefix)
                    .map_or_else(|_| Ipv4Net::from(v4), |n| n.trunc()),
            ),
            IpAddr::V6(v6) => IpNet::V6(
                Ipv6Net::new(v6, self.ipv6_prefix)
                    .map_or_else(|_| Ipv6Net::from(v6), |n| n.trunc()),
            ),
        }
    }

    /// The key of a client address: its network in CIDR notation (`192.0.2.1/32`,
    /// `2001:db8::/64`).
    pub fn key(&self, ip: IpAddr) -> String {
        self.network(ip).to_string()
    }
}

/// Which header the trusted proxies set.
///
/// Pick the one your proxies write. Reading a header the proxy merely passes through
/// would let a client choose its own address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
}

/// Resolves the real client address of a request.
///
/// When the TCP peer is not a trusted proxy, the peer *is* the client and all forwarding
/// headers are ignored (an attacker connecting directly can write anything in them).
/// When it is trusted, the chosen header is read from right to left, skipping trusted
/// proxies; the first untrusted address is the client. A hop that cannot be parsed (for
/// example `unknown` or an obfuscated RFC 7239 identifier) stops the walk, and the last
/// trusted hop seen is returned, since nothing further left can be believed.
///
/// ```
/// use http::HeaderMap;
/// use umanage_core::{ClientIpResolver, ForwardedHeader};
///
/// let resolver = ClientIpResolver::new(
///     ["10.0.0.0/8".parse().unwrap()],
///     ForwardedHeader::XForwardedFor,
/// );
/// let mut headers = HeaderMap::new();
/// headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
///
/// // Through the trusted proxy: the forwarded client.
/// let via_proxy = resolver.resolve("10.0.0.1".parse().unwrap(), &headers);
/// assert_eq!(via_proxy, "203.0.113.9".parse::<std::net::IpAddr>().unwrap());
///
/// // Straight from the internet: the header is a lie and is ignored.
/// let direct = resolver.resolve("198.51.100.7".parse().unwrap(), &headers);
/// assert_eq!(direct, "198.51.100.7".parse::<std::net::IpAddr>().unwrap());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawResolver", into = "RawResolver")]
pub struct ClientIpResolver {
    trusted_proxies: Vec<IpNet>,
    header: ForwardedHeader,
}

/// The serde form: `{ "trusted_proxies": ["10.0.0.0/8"], "header": "x-forwarded-for" }`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResolver {
    #[serde(default)]
    trusted_proxies: Vec<IpNet>,
    #[serde(default)]
    header: ForwardedHeader,
}

impl From<RawResolver> for ClientIpResolver {
    fn from(raw: RawResolver) -> Self {
        Self::new(raw.trusted_proxies, raw.header)
    }
}

impl From<ClientIpResolver> for RawResolver {
    fn from(r: ClientIpResolver) -> Self {
        Self {
            trusted_proxies: r.trusted_proxies,
            header: r.header,
        }
    }
}

/// The most hops read from a forwarding header; a longer chain is cut on the left (the
/// part an attacker controls), so a huge header costs bounded work.
pub const MAX_FORWARDED_HOPS: usize = 32;

impl ClientIpResolver {
    /// A resolver trusting the given proxy networks.
    pub fn new(trusted_proxies: impl IntoIterator<Item = IpNet>, header: ForwardedHeader) -> Self {
        Self {
            trusted_proxies: trusted_proxies.into_iter().map(canonical_net).collect(),
            header,
        }
    }

    /// A resolver that trusts no proxy: the TCP peer is always the client.
    pub fn direct() -> Self {
        Self::default()
    }

    /// A resolver trusting proxies on loopback (`127.0.0.0/8`, `::1`), the usual setup
    /// with a reverse proxy on the same host.
    pub fn loopback_proxy(header: ForwardedHeader) -> Self {
        Self::new(
            [
                IpNet::V4(Ipv4Net::new(Ipv4Addr::LOCALHOST, 8).unwrap_or_default()),
                IpNet::V6(Ipv6Net::from(Ipv6Addr::LOCALHOST)),
            ],
            header,
        )
    }

    /// The header the trusted proxies set.
    pub fn header(&self) -> ForwardedHeader {
        self.header
    }

    /// The trusted proxy networks.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }

    /// Whether `ip` belongs to a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request that arrived from `peer` with `headers`.
    /// The result is canonical (IPv4-mapped addresses unwrapped).
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical_ip(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut hops: Vec<Option<IpAddr>> = Vec::new();
        match self.header {
            ForwardedHeader::XForwardedFor => {
                for value in headers.get_all("x-forwarded-for") {
                    let Ok(text) = value.to_str() else {
                        hops.push(None);
                        continue;
                    };
                    hops.extend(text.split(',').map(|hop| parse_node(hop.trim())));
                }
            }
            ForwardedHeader::Forwarded => {
                for value in headers.get_all("forwarded") {
                    let Ok(text) = value.to_str() else {
                        hops.push(None);
                        continue;
                    };
                    hops.extend(split_outside_quotes(text, ',').map(forwarded_for));
                }
            }
        }
        self.walk(peer, &hops)
    }

    /// The walk over an already-parsed chain, leftmost hop first (`None` for a hop that
    /// could not be parsed). [`resolve`](Self::resolve) uses it; it is public for hosts that
    /// read the chain from somewhere else (a PROXY protocol header, a custom header).
    pub fn walk(&self, peer: IpAddr, hops: &[Option<IpAddr>]) -> IpAddr {
        let peer = canonical_ip(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let start = hops.len().saturating_sub(MAX_FORWARDED_HOPS);
        let mut client = peer;
        for hop in hops[start..].iter().rev() {
            let Some(ip) = hop else { return client };
            client = canonical_ip(*ip);
            if !self.is_trusted(client) {
                return client;
            }
        }
        client
    }
}

fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        other => other,
    }
}

/// Parses a node as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`, optionally quoted.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']')?;
        if !(tail.is_empty() || tail.starts_with(':')) {
            return None;
        }
        return addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (addr, port) = text.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The `for=` node of one RFC 7239 forwarded-element.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    split_outside_quotes(element, ';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            Some(parse_node(value))
        } else {
            None
        }
    })?
}

fn split_outside_quotes(text: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, ch) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match ch {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == sep && !in_quotes => {
                parts.push(text[start..i].trim());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn normalisation_table() {
        let default = IpKeyPolicy::default();
        let coarse = IpKeyPolicy::new(24, 48).unwrap();
        let cases: &[(&IpKeyPolicy, &str, &str)] = &[
            (&default, "192.0.2.1", "192.0.2.1/32"),
            (&default, "::ffff:192.0.2.1", "192.0.2.1/32"),
            (&default, "::ffff:c000:0201", "192.0.2.1/32"),
            (&default, "::ffff:c000:201", "192.0.2.1/32"),
            (&default, "2001:db8::1", "2001:db8::/64"),
            (&default, "2001:db8::ffff", "2001:db8::/64"),
            (&default, "2001:db8:0:1::1", "2001:db8:0:1::/64"),
            (&default, "::1", "::/64"),
            // IPv4-compatible (deprecated ::a.b.c.d) is not IPv4-mapped: stays IPv6.
            (&default, "::192.0.2.1", "::/64"),
            (&coarse, "192.0.2.200", "192.0.2.0/24"),
            (&coarse, "::ffff:192.0.2.200", "192.0.2.0/24"),
            (&coarse, "2001:db8:1:2::3", "2001:db8:1::/48"),
        ];
        for (policy, input, want) in cases {
            assert_eq!(policy.key(ip(input)), *want, "{input} under {policy:?}");
        }
        assert_eq!(
            default.key(ip("2001:db8::1")),
            default.key(ip("2001:db8::ffff")),
        );
        assert_ne!(
            default.key(ip("2001:db8::1")),
            default.key(ip("2001:db8:0:1::1")),
        );
    }

    #[test]
    fn policy_validation_and_serde() {
        assert!(IpKeyPolicy::new(33, 64).is_err());
        assert!(IpKeyPolicy::new(7, 64).is_err());
        assert!(IpKeyPolicy::new(32, 129).is_err());
        assert!(IpKeyPolicy::new(32, 15).is_err());
        let p: IpKeyPolicy = serde_json::from_str(r#"{"ipv6_prefix": 56}"#).unwrap();
        assert_eq!((p.ipv4_prefix(), p.ipv6_prefix()), (32, 56));
        assert!(serde_json::from_str::<IpKeyPolicy>(r#"{"ipv4_prefix": 40}"#).is_err());
        assert!(serde_json::from_str::<IpKeyPolicy>(r#"{"ipv4": 24}"#).is_err());
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<IpKeyPolicy>(&json).unwrap(), p);
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name, v.parse().unwrap());
        }
        map
    }

    fn resolver(header: ForwardedHeader) -> ClientIpResolver {
        ClientIpResolver::new(
            [
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8:ffff::/48".parse().unwrap(),
            ],
            header,
        )
    }

    #[test]
    fn x_forwarded_for_table() {
        let r = resolver(ForwardedHeader::XForwardedFor);
        let cases: &[(&str, &[&str], &str)] = &[
            // untrusted peer: spoofed header ignored
            ("203.0.113.5", &["1.2.3.4"], "203.0.113.5"),
            ("203.0.113.5", &["10.0.0.1, 1.2.3.4"], "203.0.113.5"),
            // trusted peer, one hop
            ("10.0.0.1", &["198.51.100.7"], "198.51.100.7"),
            // client tried to spoof by prepending; the proxy appended the real address
            ("10.0.0.1", &["6.6.6.6, 198.51.100.7"], "198.51.100.7"),
            // several trusted proxies
            (
                "10.0.0.1",
                &["198.51.100.7, 10.1.1.1, 10.2.2.2"],
                "198.51.100.7",
            ),
            // several header lines are one list
            (
                "10.0.0.1",
                &["6.6.6.6", "198.51.100.7, 10.1.1.1"],
                "198.51.100.7",
            ),
            // ports and brackets
            ("10.0.0.1", &["198.51.100.7:5555"], "198.51.100.7"),
            ("10.0.0.1", &["[2001:db8::9]:443"], "2001:db8::9"),
            ("10.0.0.1", &["2001:db8::9"], "2001:db8::9"),
            // mapped addresses are unwrapped, also for the peer
            ("::ffff:10.0.0.1", &["::ffff:198.51.100.7"], "198.51.100.7"),
            // garbage stops the walk at the last trusted hop
            ("10.0.0.1", &["198.51.100.7, unknown"], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.7, garbage, 10.1.1.1"], "10.1.1.1"),
            // everything trusted: the leftmost
            ("10.0.0.1", &["10.9.9.9, 10.1.1.1"], "10.9.9.9"),
            // no header: the peer
            ("10.0.0.1", &[], "10.0.0.1"),
            // IPv6 proxy network
            ("2001:db8:ffff::1", &["192.0.2.44"], "192.0.2.44"),
        ];
        for (peer, values, want) in cases {
            let got = r.resolve(ip(peer), &headers("x-forwarded-for", values));
            assert_eq!(got, ip(want), "peer {peer} xff {values:?}");
        }
        // A proxy that writes Forwarded is not trusted for X-Forwarded-For and vice versa.
        let forwarded_only = headers("forwarded", &["for=6.6.6.6"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &forwarded_only), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_table() {
        let r = resolver(ForwardedHeader::Forwarded);
        let cases: &[(&str, &[&str], &str)] = &[
            (
                "10.0.0.1",
                &["for=192.0.2.60;proto=http;by=203.0.113.43"],
                "192.0.2.60",
            ),
            (
                "10.0.0.1",
                &[r#"for="[2001:db8:cafe::17]:4711""#],
                "2001:db8:cafe::17",
            ),
            (
                "10.0.0.1",
                &["for=192.0.2.43, for=198.51.100.17"],
                "198.51.100.17",
            ),
            ("10.0.0.1", &["For=\"192.0.2.43:80\""], "192.0.2.43"),
            ("10.0.0.1", &["for=192.0.2.43, for=10.3.3.3"], "192.0.2.43"),
            ("10.0.0.1", &["for=unknown"], "10.0.0.1"),
            ("10.0.0.1", &["for=_hidden, for=10.3.3.3"], "10.3.3.3"),
            // an element without for= cannot be attributed
            ("10.0.0.1", &["proto=https"], "10.0.0.1"),
            // a quoted comma does not split elements
            ("10.0.0.1", &[r#"for=192.0.2.1;ext="a,b""#], "192.0.2.1"),
            ("203.0.113.1", &["for=192.0.2.60"], "203.0.113.1"),
        ];
        for (peer, values, want) in cases {
            let got = r.resolve(ip(peer), &headers("forwarded", values));
            assert_eq!(got, ip(want), "peer {peer} forwarded {values:?}");
        }
    }

    #[test]
    fn hostile_headers_cost_bounded_work() {
        let r = resolver(ForwardedHeader::XForwardedFor);
        let long = std::iter::repeat_n("10.1.1.1", 10_000)
            .collect::<Vec<_>>()
            .join(",");
        let h = headers("x-forwarded-for", &[&long]);
        // the chain is cut to the last 32 hops; all trusted -> leftmost of those
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.1.1.1"));
        let mut map = HeaderMap::new();
        map.insert(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(r.resolve(ip("10.0.0.1"), &map), ip("10.0.0.1"));
    }

    #[test]
    fn mapped_trusted_networks_match_ipv4_peers() {
        let r = ClientIpResolver::new(
            ["::ffff:10.0.0.0/104".parse().unwrap()],
            ForwardedHeader::XForwardedFor,
        );
        assert!(r.is_trusted(ip("10.4.4.4")));
        let loopback = ClientIpResolver::loopback_proxy(ForwardedHeader::XForwardedFor);
        assert!(loopback.is_trusted(ip("127.0.0.1")) && loopback.is_trusted(ip("::1")));
        assert!(!ClientIpResolver::direct().is_trusted(ip("127.0.0.1")));
    }

    #[test]
    fn resolver_serde() {
        let r: ClientIpResolver =
            serde_json::from_str(r#"{"trusted_proxies":["10.0.0.0/8"],"header":"forwarded"}"#)
                .unwrap();
        assert_eq!(r.trusted_proxies().len(), 1);
        assert!(serde_json::from_str::<ClientIpResolver>(r#"{"trusted":[]}"#).is_err());
    }
}
