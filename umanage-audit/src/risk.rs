//! A pluggable risk scorer filling [`AuditEvent::risk_score`] and
//! [`AuditEvent::anomalies`].
//!
//! [`RiskEngine`] keeps a small behaviour profile per actor (known IPs and countries,
//! recent failures, an hour-of-day histogram) **in process memory**, runs its
//! [`RiskRule`]s against it, and adds their points (capped at 100). It is a
//! [`Transformer`], so it plugs into the [`AuditLogger`](crate::AuditLogger); add it
//! *before* the [`Redactor`](crate::Redactor), which may mask the IP. Time is the event's
//! own timestamp, so scoring is deterministic and replayable.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use parking_lot::Mutex;

use crate::model::{AuditEvent, Outcome};
use crate::pipeline::Transformer;

/// Maps an IP address to a country code (plug in a GeoIP database).
pub trait GeoLookup: Send + Sync + fmt::Debug {
    /// The ISO country code of `ip`, when known.
    fn country(&self, ip: IpAddr) -> Option<String>;
}

/// What is known about an actor's past behaviour.
#[derive(Debug, Clone, Default)]
pub struct ActorProfile {
    /// Events seen.
    pub events: u64,
    /// IPs seen (at most [`RiskEngine::MAX_REMEMBERED`]).
    pub ips: HashSet<IpAddr>,
    /// Countries seen.
    pub countries: HashSet<String>,
    /// Times of recent failures (oldest first).
    pub failures: VecDeque<DateTime<Utc>>,
    /// Events per UTC hour of day.
    pub hours: [u64; 24],
}

/// One rule: given the event, its country and the actor's profile so far, an anomaly name
/// and points, or `None`.
pub trait RiskRule: Send + Sync + fmt::Debug {
    /// Assesses `event`.
    fn assess(
        &self,
        event: &AuditEvent,
        country: Option<&str>,
        profile: &ActorProfile,
    ) -> Option<(&'static str, u8)>;
}

/// An IP the actor never used before (after at least one earlier event). 30 points.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewIp;

impl RiskRule for NewIp {
    fn assess(
        &self,
        e: &AuditEvent,
        _: Option<&str>,
        p: &ActorProfile,
    ) -> Option<(&'static str, u8)> {
        let ip = e.ip?;
        (p.events > 0 && !p.ips.contains(&ip)).then_some(("new_ip", 30))
    }
}

/// A country the actor never acted from before. 40 points.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewCountry;

impl RiskRule for NewCountry {
    fn assess(
        &self,
        _: &AuditEvent,
        c: Option<&str>,
        p: &ActorProfile,
    ) -> Option<(&'static str, u8)> {
        let c = c?;
        (p.events > 0 && !p.countries.contains(c)).then_some(("new_country", 40))
    }
}

/// At least `threshold` failures (including this one) within `window`. 40 points.
#[derive(Debug, Clone, Copy)]
pub struct FailureBurst {
    /// Failures that make a burst.
    pub threshold: usize,
    /// Window they must fall in.
    pub window: Duration,
}

impl Default for FailureBurst {
    fn default() -> Self {
        Self {
            threshold: 5,
            window: Duration::from_secs(300),
        }
    }
}

impl RiskRule for FailureBurst {
    fn assess(
        &self,
        e: &AuditEvent,
        _: Option<&str>,
        p: &ActorProfile,
    ) -> Option<(&'static str, u8)> {
        if e.result != Outcome::Failure {
            return None;
        }
        let window = chrono::TimeDelta::from_std(self.window).unwrap_or(chrono::TimeDelta::MAX);
        let recent = p
            .failures
            .iter()
            .filter(|t| e.timestamp.signed_duration_since(**t) <= window)
            .count();
        (recent + 1 >= self.threshold).then_some(("failure_burst", 40))
    }
}

/// Activity in an hour of day that holds under `max_share` of the actor's history, once
/// there are `min_events` of history. 20 points.
#[derive(Debug, Clone, Copy)]
pub struct UnusualHour {
    /// History needed before the rule fires.
    pub min_events: u64,
    /// An hour with at most this share of past events is unusual.
    pub max_share: f64,
}

impl Default for UnusualHour {
    fn default() -> Self {
        Self {
            min_events: 20,
            max_share: 0.02,
        }
    }
}

impl RiskRule for UnusualHour {
    fn assess(
        &self,
        e: &AuditEvent,
        _: Option<&str>,
        p: &ActorProfile,
    ) -> Option<(&'static str, u8)> {
        if p.events < self.min_events {
            return None;
        }
        let in_hour = p.hours[e.timestamp.hour() as usize] as f64;
        (in_hour / p.events as f64 <= self.max_share).then_some(("unusual_hour", 20))
    }
}

/// The scorer (see the [module docs](self)).
pub struct RiskEngine {
    rules: Vec<Box<dyn RiskRule>>,
    geo: Option<Box<dyn GeoLookup>>,
    profiles: Mutex<HashMap<String, ActorProfile>>,
    max_actors: usize,
}

impl fmt::Debug for RiskEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RiskEngine")
            .field("rules", &self.rules)
            .field("geo", &self.geo)
            .field("actors", &self.profiles.lock().len())
            .field("max_actors", &self.max_actors)
            .finish()
    }
}

impl Default for RiskEngine {
    fn default() -> Self {
        Self::standard()
    }
}

impl RiskEngine {
    /// IPs and failures remembered per actor.
    pub const MAX_REMEMBERED: usize = 64;
    /// Actors remembered by default (beyond it, an arbitrary profile is forgotten).
    pub const DEFAULT_MAX_ACTORS: usize = 100_000;

    /// No rules.
    pub fn empty() -> Self {
        Self {
            rules: Vec::new(),
            geo: None,
            profiles: Mutex::new(HashMap::new()),
            max_actors: Self::DEFAULT_MAX_ACTORS,
        }
    }

    /// The built-in rules with their defaults: [`NewIp`], [`NewCountry`],
    /// [`FailureBurst`], [`UnusualHour`].
    pub fn standard() -> Self {
        Self::empty()
            .rule(NewIp)
            .rule(NewCountry)
            .rule(FailureBurst::default())
            .rule(UnusualHour::default())
    }

    /// Adds a rule.
    #[must_use]
    pub fn rule(mut self, rule: impl RiskRule + 'static) -> Self {
        self.rules.push(Box::new(rule));
        self
    }

    /// Sets the IP-to-country lookup (without one, the event's `metadata["country"]` is used).
    #[must_use]
    pub fn geo(mut self, geo: impl GeoLookup + 'static) -> Self {
        self.geo = Some(Box::new(geo));
        self
    }

    /// Scores `event` against its actor's profile, then adds it to the profile.
    pub fn score(&self, event: &mut AuditEvent) {
        let Some(actor) = event.actor_id.clone() else {
            return;
        };
        let country = event
            .ip
            .and_then(|ip| self.geo.as_ref().and_then(|g| g.country(ip)))
            .or_else(|| {
                event
                    .metadata
                    .get("country")
                    .and_then(|c| c.as_str())
                    .map(str::to_owned)
            });
        let mut profiles = self.profiles.lock();
        if !profiles.contains_key(&actor)
            && profiles.len() >= self.max_actors
            && let Some(k) = profiles.keys().next().cloned()
        {
            profiles.remove(&k);
        }
        let profile = profiles.entry(actor).or_default();
        let mut total: u32 = 0;
        for rule in &self.rules {
            if let Some((name, points)) = rule.assess(event, country.as_deref(), profile) {
                total += u32::from(points);
                if !event.anomalies.iter().any(|a| a == name) {
                    event.anomalies.push(name.to_owned());
                }
            }
        }
        if !self.rules.is_empty() {
            let prior = u32::from(event.risk_score.unwrap_or(0));
            event.risk_score = Some((prior + total).min(100) as u8);
        }
        profile.events += 1;
        profile.hours[event.timestamp.hour() as usize] += 1;
        if let Some(ip) = event.ip
            && profile.ips.len() < Self::MAX_REMEMBERED
        {
            profile.ips.insert(ip);
        }
        if let Some(c) = country
            && profile.countries.len() < Self::MAX_REMEMBERED
        {
            profile.countries.insert(c);
        }
        if event.result == Outcome::Failure {
            profile.failures.push_back(event.timestamp);
            if profile.failures.len() > Self::MAX_REMEMBERED {
                profile.failures.pop_front();
            }
        }
    }
}

impl Transformer for RiskEngine {
    fn transform(&self, event: &mut AuditEvent) {
        self.score(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActorType;
    use umanage_core::ManualClock;

    #[derive(Debug)]
    struct ByFirstOctet;
    impl GeoLookup for ByFirstOctet {
        fn country(&self, ip: IpAddr) -> Option<String> {
            match ip {
                IpAddr::V4(v4) if v4.octets()[0] == 10 => Some("DE".into()),
                IpAddr::V4(_) => Some("US".into()),
                IpAddr::V6(_) => None,
            }
        }
    }

    fn ev(clock: &ManualClock, ip: &str, result: Outcome) -> AuditEvent {
        AuditEvent::builder("auth.login", clock)
            .actor(ActorType::User, "u1")
            .ip(ip.parse().unwrap())
            .result(result)
            .build()
            .unwrap()
    }

    #[test]
    fn new_ip_country_bursts_and_odd_hours_score() {
        let clock = ManualClock::default(); // 2025-01-01T00:00Z
        clock.advance(Duration::from_secs(9 * 3600)); // 09:00
        let engine = RiskEngine::standard().geo(ByFirstOctet);
        let mut first = ev(&clock, "10.0.0.1", Outcome::Success);
        engine.score(&mut first);
        assert_eq!((first.risk_score, first.anomalies.len()), (Some(0), 0));
        let mut same = ev(&clock, "10.0.0.1", Outcome::Success);
        engine.score(&mut same);
        assert_eq!(same.risk_score, Some(0));
        let mut new_ip = ev(&clock, "10.0.0.2", Outcome::Success);
        engine.score(&mut new_ip);
        assert_eq!(new_ip.anomalies, ["new_ip"]);
        let mut abroad = ev(&clock, "8.8.8.8", Outcome::Success);
        engine.score(&mut abroad);
        assert_eq!(abroad.anomalies, ["new_ip", "new_country"]);
        assert_eq!(abroad.risk_score, Some(70));

        let mut last = None;
        for _ in 0..5 {
            clock.advance(Duration::from_secs(10));
            let mut f = ev(&clock, "10.0.0.1", Outcome::Failure);
            engine.score(&mut f);
            last = Some(f);
        }
        assert!(
            last.unwrap()
                .anomalies
                .contains(&"failure_burst".to_owned())
        );

        for _ in 0..30 {
            let mut e = ev(&clock, "10.0.0.1", Outcome::Success);
            engine.score(&mut e);
        }
        clock.advance(Duration::from_secs(12 * 3600)); // 21:00
        let mut night = ev(&clock, "10.0.0.1", Outcome::Success);
        engine.score(&mut night);
        assert_eq!(night.anomalies, ["unusual_hour"]);
        assert_eq!(night.risk_score, Some(20));
    }
}
