//! Per-request limits: which strategy applies to a request, decided by a chain of
//! [`LimitAdjuster`]s.
//!
//! A rule has a base strategy; the adjusters of the rule (given to the tower layer with
//! [`RateLimitLayerBuilder::adjust`](crate::layer::RateLimitLayerBuilder::adjust), or
//! called by a host directly) run in order, each getting the strategy so far and the
//! request ([`LimitRequest`]) and returning the strategy to use. Provided:
//!
//! | adjuster | decides by | effect |
//! | --- | --- | --- |
//! | [`TierAdjuster`](crate::tier::TierAdjuster) | a [`Tier`](crate::tier::Tier) / [`UserPlan`](crate::tier::UserPlan) request extension, else a [`TierResolver`](crate::tier::TierResolver) lookup of the user | replaces the strategy (tier's or user's custom) |
//! | [`NetworkLimits`] | the client address (longest matching network) | replaces the strategy |
//! | [`GeoAdjuster`] | the client's country ([`CountryResolver`]) | multiplies the limit ([`GeoLimits`]) |
//! | [`TimeOfDay`] | the time ([`LimitRequest::now`], from the layer's injected clock) in an IANA zone | multiplies the limit |
//!
//! Factors are applied with [`Strategy::scaled`]. A changed limit keeps the key's state
//! (state is per key and strategy kind), so a user moving to another tier is not reset.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use umanage_core::UserId;

use crate::error::{Error, Result};
use crate::model::{RateLimitRule, Strategy};

/// What an adjuster sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct LimitRequest<'a> {
    /// The rule being adjusted.
    pub rule: &'a RateLimitRule,
    /// The request's method, URI, headers and extensions.
    pub parts: &'a http::request::Parts,
    /// The client address, resolved through the trusted proxies (and canonical: an
    /// IPv4-mapped IPv6 address is its IPv4 address).
    pub client_ip: Option<IpAddr>,
    /// The authenticated user (from the [`RequestContext`](umanage_core::RequestContext)).
    pub user: Option<UserId>,
    /// Now, from the injected clock.
    pub now: DateTime<Utc>,
}

/// Decides the strategy a rule applies to one request; see the [module docs](self).
#[async_trait]
pub trait LimitAdjuster: Send + Sync + fmt::Debug {
    /// The strategy to apply, given the strategy so far.
    ///
    /// # Errors
    ///
    /// When a lookup fails ([`Error::Backend`]); the tower layer then logs it and keeps
    /// the strategy as it was before this adjuster.
    async fn adjust(&self, strategy: Strategy, req: &LimitRequest<'_>) -> Result<Strategy>;
}

#[async_trait]
impl<A: LimitAdjuster + ?Sized> LimitAdjuster for std::sync::Arc<A> {
    async fn adjust(&self, strategy: Strategy, req: &LimitRequest<'_>) -> Result<Strategy> {
        (**self).adjust(strategy, req).await
    }
}

/// Strategies by client network (an internal network, a partner's range, a known
/// abusive block): the longest matching network's strategy replaces the rule's; clients
/// in none keep it.
///
/// ```
/// use std::time::Duration;
/// use umanage_ratelimit::adjust::NetworkLimits;
/// use umanage_ratelimit::Strategy;
///
/// let nets: NetworkLimits = serde_json::from_str(r#"[
///     {"network": "10.0.0.0/8", "limit": {"strategy": "gcra", "limit": 6000, "period": "1m"}},
///     {"network": "10.9.0.0/16", "limit": {"strategy": "gcra", "limit": 6, "period": "1m"}}
/// ]"#).unwrap();
/// assert_eq!(nets.lookup("10.9.1.1".parse().unwrap()).unwrap().limit(), 6);
/// assert_eq!(nets.lookup("::ffff:10.1.1.1".parse().unwrap()).unwrap().limit(), 6000);
/// assert!(nets.lookup("192.0.2.1".parse().unwrap()).is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<NetworkLimit>", into = "Vec<NetworkLimit>")]
pub struct NetworkLimits {
    nets: Vec<NetworkLimit>,
}

/// One entry of [`NetworkLimits`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkLimit {
    /// The network (`"10.0.0.0/8"`, `"2001:db8::/32"`).
    pub network: IpNet,
    /// The strategy for clients in it.
    pub limit: Strategy,
}

impl From<Vec<NetworkLimit>> for NetworkLimits {
    fn from(nets: Vec<NetworkLimit>) -> Self {
        Self::new(nets.into_iter().map(|n| (n.network, n.limit)))
    }
}

impl From<NetworkLimits> for Vec<NetworkLimit> {
    fn from(n: NetworkLimits) -> Self {
        n.nets
    }
}

impl NetworkLimits {
    /// Strategies by network (longest prefix wins).
    pub fn new(nets: impl IntoIterator<Item = (IpNet, Strategy)>) -> Self {
        let mut nets: Vec<NetworkLimit> = nets
            .into_iter()
            .map(|(network, limit)| NetworkLimit {
                network: network.trunc(),
                limit,
            })
            .collect();
        nets.sort_by_key(|n| std::cmp::Reverse(n.network.prefix_len()));
        Self { nets }
    }

    /// The strategy for a client address, if a network matches.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Strategy> {
        let ip = umanage_core::net::canonical_ip(ip);
        self.nets
            .iter()
            .find(|n| n.network.contains(&ip))
            .map(|n| &n.limit)
    }
}

#[async_trait]
impl LimitAdjuster for NetworkLimits {
    async fn adjust(&self, strategy: Strategy, req: &LimitRequest<'_>) -> Result<Strategy> {
        Ok(req
            .client_ip
            .and_then(|ip| self.lookup(ip))
            .copied()
            .unwrap_or(strategy))
    }
}

/// An ISO 3166-1 alpha-2 country code (`"DE"`), upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Parses a code (case-insensitive).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] unless it is two ASCII letters.
    pub fn new(code: &str) -> Result<Self> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Ok(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => Err(Error::InvalidConfig(format!(
                "country code {code:?} must be two letters"
            ))),
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for CountryCode {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(&s)
    }
}

impl From<CountryCode> for String {
    fn from(c: CountryCode) -> Self {
        c.as_str().to_owned()
    }
}

/// Finds the country of a client address (a GeoIP database, a CDN header).
pub trait CountryResolver: Send + Sync + fmt::Debug {
    /// The country of `ip`, if known.
    fn country(&self, ip: IpAddr) -> Option<CountryCode>;
}

/// A resolver over a table of networks (longest prefix wins).
#[derive(Debug, Clone, Default)]
pub struct NetworkCountryResolver {
    nets: Vec<(IpNet, CountryCode)>,
}

impl NetworkCountryResolver {
    /// A resolver over `nets`.
    pub fn new(nets: impl IntoIterator<Item = (IpNet, CountryCode)>) -> Self {
        let mut nets: Vec<_> = nets.into_iter().collect();
        nets.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        Self { nets }
    }
}

impl CountryResolver for NetworkCountryResolver {
    fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        let ip = umanage_core::net::canonical_ip(ip);
        self.nets
            .iter()
            .find(|(n, _)| n.contains(&ip))
            .map(|(_, c)| *c)
    }
}

/// Per-country factors on a limit (`{ "CN" = 0.5, "DE" = 2.0 }`); unlisted countries and
/// unknown locations get `default_factor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawGeo", into = "RawGeo")]
pub struct GeoLimits {
    factors: HashMap<CountryCode, f64>,
    default_factor: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeo {
    #[serde(default)]
    factors: HashMap<CountryCode, f64>,
    #[serde(default = "one")]
    default_factor: f64,
}

fn one() -> f64 {
    1.0
}

fn check_factor(f: f64) -> Result<f64> {
    if f.is_finite() && f > 0.0 && f <= 1000.0 {
        Ok(f)
    } else {
        Err(Error::InvalidConfig(format!(
            "a limit factor must be in (0, 1000], got {f}"
        )))
    }
}

impl TryFrom<RawGeo> for GeoLimits {
    type Error = Error;
    fn try_from(raw: RawGeo) -> Result<Self> {
        Self::new(raw.factors, raw.default_factor)
    }
}

impl From<GeoLimits> for RawGeo {
    fn from(g: GeoLimits) -> Self {
        Self {
            factors: g.factors,
            default_factor: g.default_factor,
        }
    }
}

impl GeoLimits {
    /// Factors by country.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a factor not in (0, 1000].
    pub fn new(factors: HashMap<CountryCode, f64>, default_factor: f64) -> Result<Self> {
        for f in factors.values() {
            check_factor(*f)?;
        }
        Ok(Self {
            factors,
            default_factor: check_factor(default_factor)?,
        })
    }

    /// The factor for a client.
    pub fn factor(&self, resolver: &dyn CountryResolver, ip: Option<IpAddr>) -> f64 {
        ip.and_then(|ip| resolver.country(ip))
            .and_then(|c| self.factors.get(&c).copied())
            .unwrap_or(self.default_factor)
    }

    /// `strategy` adjusted for a client.
    pub fn apply(
        &self,
        strategy: &Strategy,
        resolver: &dyn CountryResolver,
        ip: Option<IpAddr>,
    ) -> Strategy {
        strategy.scaled(self.factor(resolver, ip))
    }
}

/// [`GeoLimits`] with the resolver that finds a client's country, as a [`LimitAdjuster`].
#[derive(Debug, Clone)]
pub struct GeoAdjuster {
    limits: GeoLimits,
    resolver: std::sync::Arc<dyn CountryResolver>,
}

impl GeoAdjuster {
    /// Factors `limits` for the countries `resolver` finds.
    pub fn new(limits: GeoLimits, resolver: std::sync::Arc<dyn CountryResolver>) -> Self {
        Self { limits, resolver }
    }
}

#[async_trait]
impl LimitAdjuster for GeoAdjuster {
    async fn adjust(&self, strategy: Strategy, req: &LimitRequest<'_>) -> Result<Strategy> {
        Ok(self
            .limits
            .apply(&strategy, self.resolver.as_ref(), req.client_ip))
    }
}

/// One time-of-day window: on `days` (all days if empty), from `start` to `end` local
/// time (crossing midnight when `end <= start`; the part after midnight belongs to the
/// day the window started), the limit is multiplied by `factor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// Days of the week the window starts on (`["mon", "tue"]`); empty = every day.
    #[serde(default, with = "weekdays")]
    pub days: Vec<Weekday>,
    /// Local start time (`"09:00"`).
    #[serde(with = "hhmm")]
    pub start: NaiveTime,
    /// Local end time (`"17:30"`), exclusive.
    #[serde(with = "hhmm")]
    pub end: NaiveTime,
    /// The factor on the limit.
    pub factor: f64,
}

impl TimeWindow {
    fn contains(&self, local: &DateTime<Tz>) -> bool {
        let t = local.time();
        let day_ok = |d: Weekday| self.days.is_empty() || self.days.contains(&d);
        if self.start < self.end {
            t >= self.start && t < self.end && day_ok(local.weekday())
        } else {
            (t >= self.start && day_ok(local.weekday()))
                || (t < self.end && day_ok(local.weekday().pred()))
        }
    }
}

/// Time-of-day adjustments in one IANA time zone; the first matching window wins.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use umanage_ratelimit::adjust::TimeOfDay;
///
/// let tod: TimeOfDay = toml::from_str(r#"
///     zone = "Europe/Berlin"
///     [[windows]]
///     days = ["mon", "tue", "wed", "thu", "fri"]
///     start = "09:00"
///     end = "18:00"
///     factor = 0.5
/// "#).unwrap();
/// // Monday 2025-01-06 08:30 UTC is 09:30 in Berlin (CET, UTC+1): office hours.
/// assert_eq!(tod.factor(Utc.with_ymd_and_hms(2025, 1, 6, 8, 30, 0).unwrap()), 0.5);
/// // Monday 2025-07-07 07:30 UTC is 09:30 in Berlin (CEST, UTC+2): office hours too.
/// assert_eq!(tod.factor(Utc.with_ymd_and_hms(2025, 7, 7, 7, 30, 0).unwrap()), 0.5);
/// assert_eq!(tod.factor(Utc.with_ymd_and_hms(2025, 7, 5, 7, 30, 0).unwrap()), 1.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawTod", into = "RawTod")]
pub struct TimeOfDay {
    zone: Tz,
    windows: Vec<TimeWindow>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTod {
    zone: String,
    #[serde(default)]
    windows: Vec<TimeWindow>,
}

impl TryFrom<RawTod> for TimeOfDay {
    type Error = Error;
    fn try_from(raw: RawTod) -> Result<Self> {
        let zone: Tz = raw
            .zone
            .parse()
            .map_err(|_| Error::InvalidConfig(format!("unknown time zone {:?}", raw.zone)))?;
        Self::new(zone, raw.windows)
    }
}

impl From<TimeOfDay> for RawTod {
    fn from(t: TimeOfDay) -> Self {
        Self {
            zone: t.zone.name().to_owned(),
            windows: t.windows,
        }
    }
}

impl TimeOfDay {
    /// Windows in `zone`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a factor not in (0, 1000] or an empty window
    /// (`start == end`).
    pub fn new(zone: Tz, windows: Vec<TimeWindow>) -> Result<Self> {
        for w in &windows {
            check_factor(w.factor)?;
            if w.start == w.end {
                return Err(Error::InvalidConfig(
                    "a time window must not be empty".into(),
                ));
            }
        }
        Ok(Self { zone, windows })
    }

    /// The factor in force at `now`.
    pub fn factor(&self, now: DateTime<Utc>) -> f64 {
        let local = now.with_timezone(&self.zone);
        self.windows
            .iter()
            .find(|w| w.contains(&local))
            .map_or(1.0, |w| w.factor)
    }

    /// `strategy` adjusted for `now`.
    pub fn apply(&self, strategy: &Strategy, now: DateTime<Utc>) -> Strategy {
        strategy.scaled(self.factor(now))
    }
}

#[async_trait]
impl LimitAdjuster for TimeOfDay {
    async fn adjust(&self, strategy: Strategy, req: &LimitRequest<'_>) -> Result<Strategy> {
        Ok(self.apply(&strategy, req.now))
    }
}

mod hhmm {
    use super::{NaiveTime, Timelike};
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    #[allow(clippy::trivially_copy_pass_by_ref)] // the signature serde's `with` expects
    pub(super) fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:02}:{:02}", t.hour(), t.minute()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let text = String::deserialize(d)?;
        NaiveTime::parse_from_str(&text, "%H:%M").map_err(D::Error::custom)
    }
}

mod weekdays {
    use super::Weekday;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

    pub(super) fn serialize<S: Serializer>(days: &[Weekday], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            days.iter()
                .map(|d| NAMES[d.num_days_from_monday() as usize]),
        )
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Weekday>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| {
                let lower = s.to_ascii_lowercase();
                NAMES
                    .iter()
                    .position(|n| lower.starts_with(n))
                    .and_then(|i| Weekday::try_from(i as u8).ok())
                    .ok_or_else(|| D::Error::custom(format!("unknown weekday {s:?}")))
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // factors are exact configured constants
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;

    #[test]
    fn countries_scale_limits() {
        let r = NetworkCountryResolver::new([
            (
                "192.0.2.0/24".parse().unwrap(),
                CountryCode::new("de").unwrap(),
            ),
            (
                "192.0.2.128/25".parse().unwrap(),
                CountryCode::new("FR").unwrap(),
            ),
            (
                "2001:db8::/32".parse().unwrap(),
                CountryCode::new("JP").unwrap(),
            ),
        ]);
        let geo: GeoLimits =
            serde_json::from_str(r#"{"factors": {"DE": 2.0, "JP": 0.5}, "default_factor": 0.25}"#)
                .unwrap();
        let s = Strategy::gcra(100, Duration::from_secs(60), 20).unwrap();
        let at = |ip: &str| geo.apply(&s, &r, Some(ip.parse().unwrap())).limit();
        assert_eq!(at("192.0.2.1"), 200);
        assert_eq!(at("::ffff:192.0.2.1"), 200, "mapped address");
        assert_eq!(at("192.0.2.200"), 25, "FR: longest prefix, not listed");
        assert_eq!(at("2001:db8::5"), 50);
        assert_eq!(at("198.51.100.1"), 25);
        assert_eq!(geo.apply(&s, &r, None).limit(), 25);
        assert!(serde_json::from_str::<GeoLimits>(r#"{"factors": {"DEU": 1.0}}"#).is_err());
        assert!(serde_json::from_str::<GeoLimits>(r#"{"factors": {"DE": 0}}"#).is_err());
        assert!(serde_json::from_str::<GeoLimits>(r#"{"factor": {}}"#).is_err());
    }

    #[test]
    fn night_window_crosses_midnight_and_dst() {
        let tod: TimeOfDay = serde_json::from_str(
            r#"{"zone": "America/New_York", "windows": [
                {"days": ["fri"], "start": "22:00", "end": "06:00", "factor": 3.0},
                {"start": "09:00", "end": "17:00", "factor": 0.5}
            ]}"#,
        )
        .unwrap();
        let utc = |y, mo, d, h, mi| Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
        // Friday 2025-01-10 23:00 EST = Sat 04:00 UTC
        assert_eq!(tod.factor(utc(2025, 1, 11, 4, 0)), 3.0);
        // Saturday 05:00 EST (belongs to Friday's night window) = 10:00 UTC
        assert_eq!(tod.factor(utc(2025, 1, 11, 10, 0)), 3.0);
        // Saturday 23:00 EST: not a Friday night
        assert_eq!(tod.factor(utc(2025, 1, 12, 4, 0)), 1.0);
        // 09:30 local in winter (UTC-5) and in summer (UTC-4)
        assert_eq!(tod.factor(utc(2025, 1, 14, 14, 30)), 0.5);
        assert_eq!(tod.factor(utc(2025, 7, 15, 13, 30)), 0.5);
        assert_eq!(tod.factor(utc(2025, 1, 14, 13, 30)), 1.0, "08:30 EST");
        let back: TimeOfDay = serde_json::from_str(&serde_json::to_string(&tod).unwrap()).unwrap();
        assert_eq!(back, tod);
        assert!(serde_json::from_str::<TimeOfDay>(r#"{"zone": "Mars/Olympus"}"#).is_err());
        assert!(
            serde_json::from_str::<TimeOfDay>(
                r#"{"zone": "UTC", "windows": [{"start": "10:00", "end": "10:00", "factor": 1}]}"#
            )
            .is_err()
        );
    }
}
