//! The domain types: strategies, decisions and rules.
//!
//! Time inside the algorithms is an integer number of **microseconds since the Unix epoch**
//! (`i64`), the same unit on every backend (the Redis scripts read `TIME`, which has
//! microsecond resolution), so the memory and Redis backends and the reference model
//! compute the same decisions from the same timestamps.

pub mod reference;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// The longest window or period a strategy accepts: 366 days.
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);
/// The shortest window or period a strategy accepts: 1 ms.
pub const MIN_WINDOW: Duration = Duration::from_millis(1);
/// The largest `limit` or `burst` a strategy accepts (one billion).
pub const MAX_LIMIT: u64 = 1_000_000_000;
/// The largest `limit` of a [`Strategy::SlidingLog`]: it stores one timestamp per admitted
/// unit, so its memory (and its Redis script's work) grows with the limit.
pub const MAX_LOG_LIMIT: u64 = 10_000;

/// The longest time a bucket or GCRA may take to recover fully, in µs (2^50 µs, about 35
/// years): keeps every timestamp exact in the Redis scripts' double-precision numbers.
const MAX_SPAN_US: u128 = 1 << 50;

/// Which algorithm a [`Strategy`] uses, without its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// See [`Strategy::FixedWindow`].
    FixedWindow,
    /// See [`Strategy::SlidingLog`].
    SlidingLog,
    /// See [`Strategy::SlidingCounter`].
    SlidingCounter,
    /// See [`Strategy::TokenBucket`].
    TokenBucket,
    /// See [`Strategy::LeakyBucket`].
    LeakyBucket,
    /// See [`Strategy::Gcra`].
    Gcra,
}

impl StrategyKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::FixedWindow,
        Self::SlidingLog,
        Self::SlidingCounter,
        Self::TokenBucket,
        Self::LeakyBucket,
        Self::Gcra,
    ];

    /// A short stable name (`"gcra"`), used in Redis keys and the `RateLimit-Policy` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FixedWindow => "fixed_window",
            Self::SlidingLog => "sliding_log",
            Self::SlidingCounter => "sliding_counter",
            Self::TokenBucket => "token_bucket",
            Self::LeakyBucket => "leaky_bucket",
            Self::Gcra => "gcra",
        }
    }

    /// A stable small number per kind (1 to 6, in declaration order), which the Redis
    /// script dispatches on.
    pub fn code(self) -> u8 {
        match self {
            Self::FixedWindow => 1,
            Self::SlidingLog => 2,
            Self::SlidingCounter => 3,
            Self::TokenBucket => 4,
            Self::LeakyBucket => 5,
            Self::Gcra => 6,
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rate-limiting algorithm with its parameters.
///
/// Build one with the validated constructors ([`Strategy::gcra`], [`Strategy::builder`], ...)
/// or load it with serde; the variants cannot be constructed directly outside this crate, so
/// every `Strategy` value is valid. **No strategy charges a rejected request**: a client that
/// keeps retrying while limited does not push its own recovery further away.
///
/// | strategy | admits | bound on admitted cost | rejected request consumes capacity |
/// | --- | --- | --- | --- |
/// | `FixedWindow` | `limit` per window aligned to the Unix epoch | `limit` per aligned window, `2 × limit` in any sliding window of that length | no |
/// | `SlidingLog` | `limit` in the last `window` (exact, one timestamp per admitted unit) | `limit` in any window of that length | no |
/// | `SlidingCounter` | `limit` in the last `window`, estimated from the previous aligned window's count weighted by its overlap | `limit` per aligned window, `2 × limit` in any sliding window | no |
/// | `TokenBucket` | bursts up to `burst`; `limit` tokens are added every `interval` (in steps) | `burst + limit × ⌈L / interval⌉` in any span `L` | no (must not) |
/// | `LeakyBucket` | the bucket (`burst` deep) drains continuously at `limit` per `period` | `burst + limit × L / period` in any span `L` | no (must not) |
/// | `Gcra` | `limit` per `period` evenly spaced, bursts up to `burst` | `burst + L / T` in any span `L`, `T = period / limit` | no (must not) |
///
/// Serde form (TOML shown; `period` is an alias of `window`, durations are strings):
///
/// ```
/// use umanage_ratelimit::{Strategy, StrategyKind};
///
/// let s: Strategy = toml::from_str(r#"
///     strategy = "gcra"
///     limit = 100
///     period = "1m"
///     burst = 10
/// "#).unwrap();
/// assert_eq!(s.kind(), StrategyKind::Gcra);
/// assert_eq!(s.capacity(), 10);
/// assert!(toml::from_str::<Strategy>("strategy = \"gcra\"\nlimit = 0\nperiod = \"1s\"").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawStrategy", into = "RawStrategy")]
pub enum Strategy {
    /// At most `limit` units per window; windows are aligned to the Unix epoch, so every
    /// instance agrees on where a window starts.
    #[non_exhaustive]
    FixedWindow {
        /// Units per window.
        limit: u64,
        /// The window length.
        window: Duration,
    },
    /// At most `limit` units in any trailing `window`: every admitted unit's time is kept
    /// until it leaves the window (`limit` ≤ [`MAX_LOG_LIMIT`]).
    #[non_exhaustive]
    SlidingLog {
        /// Units per window.
        limit: u64,
        /// The window length.
        window: Duration,
    },
    /// The sliding-window approximation of Cloudflare and Figma: the count of the current
    /// aligned window plus the previous window's count weighted by how much of it still
    /// overlaps the trailing window (rounded down). Two counters per key.
    #[non_exhaustive]
    SlidingCounter {
        /// Units per window.
        limit: u64,
        /// The window length.
        window: Duration,
    },
    /// A bucket of `burst` tokens, refilled by `limit` tokens every `interval` (in whole
    /// steps). The refill clock starts when a full bucket is first drawn from.
    #[non_exhaustive]
    TokenBucket {
        /// Tokens added per interval.
        limit: u64,
        /// The refill interval.
        interval: Duration,
        /// The bucket's capacity (the largest burst).
        burst: u64,
    },
    /// A bucket `burst` units deep that leaks continuously at `limit` units per `period`
    /// (the "leaky bucket as a meter"); a request fits if it does not overflow the bucket.
    #[non_exhaustive]
    LeakyBucket {
        /// Units drained per period.
        limit: u64,
        /// The drain period.
        period: Duration,
        /// The bucket's depth (the largest burst).
        burst: u64,
    },
    /// The generic cell rate algorithm: one unit every `T = period / limit` (whole
    /// microseconds), with up to `burst` units at once. One timestamp per key.
    #[non_exhaustive]
    Gcra {
        /// Units per period.
        limit: u64,
        /// The period.
        period: Duration,
        /// The largest burst.
        burst: u64,
    },
}

impl Strategy {
    /// A builder for a strategy of `kind` (set `limit` and `window`; `burst` for buckets and
    /// GCRA defaults to `limit`).
    pub fn builder(kind: StrategyKind) -> StrategyBuilder {
        StrategyBuilder {
            kind,
            limit: 0,
            window: Duration::ZERO,
            burst: None,
        }
    }

    /// [`Strategy::FixedWindow`] of `limit` per `window`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when a parameter is out of range.
    pub fn fixed_window(limit: u64, window: Duration) -> Result<Self> {
        Self::builder(StrategyKind::FixedWindow)
            .limit(limit)
            .window(window)
            .build()
    }

    /// [`Strategy::SlidingLog`] of `limit` per `window`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when a parameter is out of range.
    pub fn sliding_log(limit: u64, window: Duration) -> Result<Self> {
        Self::builder(StrategyKind::SlidingLog)
            .limit(limit)
            .window(window)
            .build()
    }

    /// [`Strategy::SlidingCounter`] of `limit` per `window`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when a parameter is out of range.
    pub fn sliding_counter(limit: u64, window: Duration) -> Result<Self> {
        Self::builder(StrategyKind::SlidingCounter)
            .limit(limit)
            .window(window)
            .build()
    }

    /// [`Strategy::TokenBucket`]: `limit` tokens every `interval`, holding `burst`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when a parameter is out of range.
    pub fn token_bucket(limit: u64, interval: Duration, burst: u64) -> Result<Self> {
        Self::builder(StrategyKind::TokenBucket)
            .limit(limit)
            .window(interval)
            .burst(burst)
            .build()
    }

    /// [`Strategy::LeakyBucket`]: drains `limit` per `period`, `burst` deep.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when a parameter is out of range.
    pub fn leaky_bucket(limit: u64, period: Duration, burst: u64) -> Result<Self> {
        Self::builder(StrategyKind::LeakyBucket)
            .limit(limit)
            .window(period)
            .burst(burst)
            .build()
    }

    /// [`Strategy::Gcra`]: `limit` per `period`, bursts of `burst`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when a parameter is out of range, or `period / limit` is
    /// below one microsecond.
    pub fn gcra(limit: u64, period: Duration, burst: u64) -> Result<Self> {
        Self::builder(StrategyKind::Gcra)
            .limit(limit)
            .window(period)
            .burst(burst)
            .build()
    }

    /// The algorithm.
    pub fn kind(&self) -> StrategyKind {
        match self {
            Self::FixedWindow { .. } => StrategyKind::FixedWindow,
            Self::SlidingLog { .. } => StrategyKind::SlidingLog,
            Self::SlidingCounter { .. } => StrategyKind::SlidingCounter,
            Self::TokenBucket { .. } => StrategyKind::TokenBucket,
            Self::LeakyBucket { .. } => StrategyKind::LeakyBucket,
            Self::Gcra { .. } => StrategyKind::Gcra,
        }
    }

    /// The `limit` parameter (units per window, refill per interval, drain per period).
    pub fn limit(&self) -> u64 {
        match *self {
            Self::FixedWindow { limit, .. }
            | Self::SlidingLog { limit, .. }
            | Self::SlidingCounter { limit, .. }
            | Self::TokenBucket { limit, .. }
            | Self::LeakyBucket { limit, .. }
            | Self::Gcra { limit, .. } => limit,
        }
    }

    /// The window, interval or period.
    pub fn window(&self) -> Duration {
        match *self {
            Self::FixedWindow { window, .. }
            | Self::SlidingLog { window, .. }
            | Self::SlidingCounter { window, .. } => window,
            Self::TokenBucket { interval, .. } => interval,
            Self::LeakyBucket { period, .. } | Self::Gcra { period, .. } => period,
        }
    }

    /// The burst for buckets and GCRA; `None` for the window strategies.
    pub fn burst(&self) -> Option<u64> {
        match *self {
            Self::TokenBucket { burst, .. }
            | Self::LeakyBucket { burst, .. }
            | Self::Gcra { burst, .. } => Some(burst),
            _ => None,
        }
    }

    /// The most that can be admitted at one instant from a fresh key: `limit` for windows,
    /// `burst` otherwise. This is [`Decision::limit`].
    pub fn capacity(&self) -> u64 {
        self.burst().unwrap_or_else(|| self.limit())
    }

    /// The window, interval or period in microseconds.
    pub fn window_us(&self) -> Micros {
        self.window().as_micros() as Micros
    }

    /// GCRA's emission interval `T` in microseconds.
    pub(crate) fn emission_us(&self) -> Micros {
        (self.window_us() / self.limit().max(1) as Micros).max(1)
    }

    /// A copy with `limit` and `burst` multiplied by `factor` (rounded, at least 1, at
    /// most what the kind accepts). Tiers, geo rules, time-of-day windows and the adaptive
    /// limiter use this to adjust a base strategy.
    #[must_use]
    pub fn scaled(&self, factor: f64) -> Self {
        let factor = if factor.is_finite() && factor > 0.0 {
            factor
        } else {
            1.0
        };
        let scale = |v: u64| ((v as f64 * factor).round() as u64).clamp(1, MAX_LIMIT);
        let mut out = *self;
        match &mut out {
            Self::FixedWindow { limit, .. } | Self::SlidingCounter { limit, .. } => {
                *limit = scale(*limit);
            }
            Self::SlidingLog { limit, .. } => *limit = scale(*limit).min(MAX_LOG_LIMIT),
            Self::TokenBucket { limit, burst, .. } | Self::LeakyBucket { limit, burst, .. } => {
                *limit = scale(*limit);
                *burst = scale(*burst);
            }
            Self::Gcra {
                limit,
                period,
                burst,
            } => {
                let max = (period.as_micros() as u64).clamp(1, MAX_LIMIT);
                *limit = scale(*limit).min(max);
                *burst = scale(*burst);
            }
        }
        out
    }

    /// A copy with `limit` (and `burst`, in proportion) set to `limit`.
    #[must_use]
    pub fn with_limit(&self, limit: u64) -> Self {
        let base = self.limit().max(1) as f64;
        self.scaled(limit.max(1) as f64 / base)
    }
}

/// Builder for [`Strategy`]; see [`Strategy::builder`].
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct StrategyBuilder {
    kind: StrategyKind,
    limit: u64,
    window: Duration,
    burst: Option<u64>,
}

impl StrategyBuilder {
    /// Units per window (refill per interval, drain per period).
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// The window, interval or period.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The burst (buckets and GCRA only).
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `limit` is 0 or above [`MAX_LIMIT`] (above
    /// [`MAX_LOG_LIMIT`] for a sliding log), the window is outside
    /// [`MIN_WINDOW`]..=[`MAX_WINDOW`], a burst is given to a window strategy or is out of
    /// range, or a GCRA emission interval would be below 1 µs.
    pub fn build(self) -> Result<Strategy> {
        let Self {
            kind,
            limit,
            window,
            burst,
        } = self;
        let bad = |msg: String| Err(Error::InvalidConfig(format!("{kind}: {msg}")));
        if limit == 0 || limit > MAX_LIMIT {
            return bad(format!("limit must be 1..={MAX_LIMIT}, got {limit}"));
        }
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
            return bad(format!(
                "window must be between 1ms and 366 days, got {window:?}"
            ));
        }
        let windowed = matches!(
            kind,
            StrategyKind::FixedWindow | StrategyKind::SlidingLog | StrategyKind::SlidingCounter
        );
        if windowed && burst.is_some() {
            return bad("burst applies only to token_bucket, leaky_bucket and gcra".into());
        }
        let burst = burst.unwrap_or(limit);
        if burst == 0 || burst > MAX_LIMIT {
            return bad(format!("burst must be 1..={MAX_LIMIT}, got {burst}"));
        }
        Ok(match kind {
            StrategyKind::FixedWindow => Strategy::FixedWindow { limit, window },
            StrategyKind::SlidingLog => {
                if limit > MAX_LOG_LIMIT {
                    return bad(format!(
                        "limit must be at most {MAX_LOG_LIMIT} (one entry per unit), got {limit}"
                    ));
                }
                Strategy::SlidingLog { limit, window }
            }
            StrategyKind::SlidingCounter => Strategy::SlidingCounter { limit, window },
            StrategyKind::TokenBucket => {
                if u128::from(burst.div_ceil(limit)) * window.as_micros() > MAX_SPAN_US {
                    return bad("⌈burst / limit⌉ × interval must be at most 2^50 µs".into());
                }
                Strategy::TokenBucket {
                    limit,
                    interval: window,
                    burst,
                }
            }
            StrategyKind::LeakyBucket => {
                if u128::from(burst) * window.as_micros() / u128::from(limit) > MAX_SPAN_US {
                    return bad("burst × period / limit must be at most 2^50 µs".into());
                }
                Strategy::LeakyBucket {
                    limit,
                    period: window,
                    burst,
                }
            }
            StrategyKind::Gcra => {
                if window.as_micros() < u128::from(limit) {
                    return bad(format!(
                        "period / limit must be at least 1µs ({limit} per {window:?})"
                    ));
                }
                let emission = window.as_micros() / u128::from(limit);
                if emission * u128::from(burst) > MAX_SPAN_US {
                    return bad("burst × period / limit must be at most 2^50 µs".into());
                }
                Strategy::Gcra {
                    limit,
                    period: window,
                    burst,
                }
            }
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    strategy: StrategyKind,
    limit: u64,
    #[serde(with = "umanage_core::duration", alias = "period", alias = "interval")]
    window: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burst: Option<u64>,
}

impl TryFrom<RawStrategy> for Strategy {
    type Error = Error;
    fn try_from(raw: RawStrategy) -> Result<Self> {
        let mut b = Strategy::builder(raw.strategy)
            .limit(raw.limit)
            .window(raw.window);
        if let Some(burst) = raw.burst {
            b = b.burst(burst);
        }
        b.build()
    }
}

impl From<Strategy> for RawStrategy {
    fn from(s: Strategy) -> Self {
        Self {
            strategy: s.kind(),
            limit: s.limit(),
            window: s.window(),
            burst: s.burst(),
        }
    }
}

/// The outcome of a check: data, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request is admitted (and was charged).
    pub allowed: bool,
    /// The strategy's capacity ([`Strategy::capacity`]).
    pub limit: u64,
    /// Units still available right now, after this request if it was admitted.
    pub remaining: u64,
    /// Time until the key is back to its full capacity (nothing left to forget).
    #[serde(with = "umanage_core::duration")]
    pub reset_after: Duration,
    /// For a rejected request: the earliest time after which the same request could be
    /// admitted (if nothing else is charged meanwhile). `None` when admitted, or when the
    /// cost exceeds the capacity and can never be admitted.
    #[serde(with = "umanage_core::duration::option", default)]
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// When the key is back to full capacity, given the time the decision was made.
    pub fn reset_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        add(now, self.reset_after)
    }

    /// When to retry, given the time the decision was made (`None` as for `retry_after`).
    pub fn retry_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.retry_after.map(|d| add(now, d))
    }

    /// The decision a client should see for several rules checked together: rejected if any
    /// is, with the longest `retry_after` among the rejections; otherwise the one with the
    /// fewest `remaining`. `None` for an empty list.
    pub fn most_restrictive<'a>(decisions: impl IntoIterator<Item = &'a Decision>) -> Option<Self> {
        decisions
            .into_iter()
            .copied()
            .reduce(|a, b| match (a.allowed, b.allowed) {
                (true, false) => b,
                (false, true) => a,
                (false, false) => {
                    if b.retry_after.unwrap_or(Duration::MAX)
                        > a.retry_after.unwrap_or(Duration::MAX)
                    {
                        b
                    } else {
                        a
                    }
                }
                (true, true) => {
                    if b.remaining < a.remaining {
                        b
                    } else {
                        a
                    }
                }
            })
    }
}

fn add(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A path pattern of a [`RateLimitRule`].
///
/// * `/login` matches exactly that path;
/// * `/users/{id}/posts` matches one arbitrary segment where `{id}` stands;
/// * `/api/*` matches `/api` and everything below it (`*` only as the last segment).
///
/// Paths are compared segment by segment with empty segments dropped, so `/api//x/` and
/// `/api/x` are the same path (for a limiter, matching more spellings is the safe side).
/// The query string is not part of the path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PathPattern {
    source: String,
    segments: Vec<Segment>,
    prefix: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Literal(String),
    Param,
}

impl PathPattern {
    /// Parses a pattern.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when it does not start with `/`, has `*` anywhere but as
    /// the whole last segment, or a malformed `{param}`.
    pub fn new(pattern: &str) -> Result<Self> {
        let bad = |why: &str| {
            Err(Error::InvalidConfig(format!(
                "path pattern {pattern:?}: {why}"
            )))
        };
        if !pattern.starts_with('/') {
            return bad("must start with '/'");
        }
        let parts: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut prefix = false;
        for (i, part) in parts.iter().enumerate() {
            if *part == "*" {
                if i + 1 != parts.len() {
                    return bad("'*' may only be the last segment");
                }
                prefix = true;
            } else if part.starts_with('{') && part.ends_with('}') && part.len() > 2 {
                let name = &part[1..part.len() - 1];
                if name.contains(['{', '}', '*']) {
                    return bad("malformed parameter");
                }
                segments.push(Segment::Param);
            } else if part.contains(['{', '}', '*']) {
                return bad("'{', '}' and '*' must form a whole segment");
            } else {
                segments.push(Segment::Literal((*part).to_owned()));
            }
        }
        Ok(Self {
            source: pattern.to_owned(),
            segments,
            prefix,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `path` (without query string) matches.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let mut parts = path.split('/').filter(|s| !s.is_empty());
        for seg in &self.segments {
            match (seg, parts.next()) {
                (_, None) => return false,
                (Segment::Param, Some(_)) => {}
                (Segment::Literal(lit), Some(part)) => {
                    if lit != part {
                        return false;
                    }
                }
            }
        }
        self.prefix || parts.next().is_none()
    }
}

impl TryFrom<String> for PathPattern {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(&s)
    }
}

impl From<PathPattern> for String {
    fn from(p: PathPattern) -> Self {
        p.source
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A rule: which requests it applies to, how they are keyed, and the strategy.
///
/// ```
/// use umanage_ratelimit::RateLimitRule;
///
/// let rule: RateLimitRule = toml::from_str(r#"
///     name = "login"
///     path = "/auth/login"
///     methods = ["POST"]
///     strategy = "sliding_log"
///     limit = 5
///     window = "1m"
///     key = ["ip"]
/// "#).unwrap();
/// assert!(rule.matches(&http::Method::POST, "/auth/login"));
/// assert!(!rule.matches(&http::Method::GET, "/auth/login"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRule", into = "RawRule")]
pub struct RateLimitRule {
    name: String,
    path: PathPattern,
    methods: Vec<http::Method>,
    strategy: Strategy,
    key: crate::key::KeySpec,
    cost: u32,
}

impl RateLimitRule {
    /// The longest rule name accepted.
    pub const MAX_NAME_LEN: usize = 64;

    /// A rule named `name` for requests whose path matches `path` (any method, keyed by
    /// client IP, cost 1).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an empty or over-long name (or one with characters
    /// other than ASCII letters, digits, `-`, `_`, `.`) or a malformed path pattern.
    pub fn new(name: impl Into<String>, path: &str, strategy: Strategy) -> Result<Self> {
        let name = name.into();
        if name.is_empty()
            || name.len() > Self::MAX_NAME_LEN
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(Error::InvalidConfig(format!(
                "rule name {name:?} must be 1-64 ASCII letters, digits, '-', '_' or '.'"
            )));
        }
        Ok(Self {
            name,
            path: PathPattern::new(path)?,
            methods: Vec::new(),
            strategy,
            key: crate::key::KeySpec::default(),
            cost: 1,
        })
    }

    /// Restricts the rule to these methods (empty = any method).
    #[must_use]
    pub fn with_methods(mut self, methods: impl IntoIterator<Item = http::Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Sets how requests are keyed.
    #[must_use]
    pub fn with_key(mut self, key: crate::key::KeySpec) -> Self {
        self.key = key;
        self
    }

    /// Sets the cost charged per request.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroCost`] for 0.
    pub fn with_cost(mut self, cost: u32) -> Result<Self> {
        if cost == 0 {
            return Err(Error::ZeroCost);
        }
        self.cost = cost;
        Ok(self)
    }

    /// The rule's name (part of every key it charges).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path pattern.
    pub fn path(&self) -> &PathPattern {
        &self.path
    }

    /// The methods (empty = any).
    pub fn methods(&self) -> &[http::Method] {
        &self.methods
    }

    /// The strategy.
    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }

    /// How requests are keyed.
    pub fn key(&self) -> &crate::key::KeySpec {
        &self.key
    }

    /// The cost per request.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Whether the rule applies to a request.
    pub fn matches(&self, method: &http::Method, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method)) && self.path.matches(path)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    methods: Vec<String>,
    strategy: StrategyKind,
    limit: u64,
    #[serde(with = "umanage_core::duration", alias = "period", alias = "interval")]
    window: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burst: Option<u64>,
    #[serde(default)]
    key: crate::key::KeySpec,
    #[serde(default = "one")]
    cost: u32,
}

fn one() -> u32 {
    1
}

impl TryFrom<RawRule> for RateLimitRule {
    type Error = Error;
    fn try_from(raw: RawRule) -> Result<Self> {
        let strategy = RawStrategy {
            strategy: raw.strategy,
            limit: raw.limit,
            window: raw.window,
            burst: raw.burst,
        }
        .try_into()?;
        let methods = raw
            .methods
            .iter()
            .map(|m| {
                http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| Error::InvalidConfig(format!("invalid HTTP method {m:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(raw.name, &raw.path, strategy)?
            .with_methods(methods)
            .with_key(raw.key)
            .with_cost(raw.cost)
    }
}

impl From<RateLimitRule> for RawRule {
    fn from(r: RateLimitRule) -> Self {
        Self {
            name: r.name,
            path: r.path.source,
            methods: r.methods.iter().map(ToString::to_string).collect(),
            strategy: r.strategy.kind(),
            limit: r.strategy.limit(),
            window: r.strategy.window(),
            burst: r.strategy.burst(),
            key: r.key,
            cost: r.cost,
        }
    }
}

/// An ordered set of rules; every rule matching a request applies to it (checked together,
/// all or nothing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRuleSet", into = "RawRuleSet")]
pub struct RuleSet {
    rules: Vec<RateLimitRule>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleSet {
    #[serde(default)]
    rules: Vec<RateLimitRule>,
}

impl TryFrom<RawRuleSet> for RuleSet {
    type Error = Error;
    fn try_from(raw: RawRuleSet) -> Result<Self> {
        Self::new(raw.rules)
    }
}

impl From<RuleSet> for RawRuleSet {
    fn from(s: RuleSet) -> Self {
        Self { rules: s.rules }
    }
}

impl RuleSet {
    /// A rule set.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when two rules share a name (the name is part of the key).
    pub fn new(rules: Vec<RateLimitRule>) -> Result<Self> {
        let mut names = std::collections::HashSet::new();
        for r in &rules {
            if !names.insert(r.name.as_str()) {
                return Err(Error::InvalidConfig(format!(
                    "duplicate rule name {:?}",
                    r.name
                )));
            }
        }
        Ok(Self { rules })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[RateLimitRule] {
        &self.rules
    }

    /// The rules that apply to a request.
    pub fn matching<'a>(
        &'a self,
        method: &'a http::Method,
        path: &'a str,
    ) -> impl Iterator<Item = &'a RateLimitRule> + 'a {
        self.rules.iter().filter(move |r| r.matches(method, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        let s = Duration::from_secs(1);
        assert!(Strategy::gcra(10, s, 5).is_ok());
        assert!(Strategy::gcra(0, s, 5).is_err());
        assert!(Strategy::gcra(10, s, 0).is_err());
        assert!(Strategy::gcra(2_000_000, s, 1).is_err(), "T below 1µs");
        assert!(Strategy::fixed_window(10, Duration::ZERO).is_err());
        assert!(Strategy::fixed_window(10, MAX_WINDOW + s).is_err());
        assert!(Strategy::sliding_log(MAX_LOG_LIMIT + 1, s).is_err());
        assert!(
            Strategy::builder(StrategyKind::FixedWindow)
                .limit(3)
                .window(s)
                .burst(4)
                .build()
                .is_err()
        );
        let tb = Strategy::builder(StrategyKind::TokenBucket)
            .limit(3)
            .window(s)
            .build()
            .unwrap();
        assert_eq!(tb.burst(), Some(3));
        assert!(matches!(
            Strategy::fixed_window(0, s),
            Err(Error::InvalidConfig(m)) if m.contains("limit")
        ));
    }

    #[test]
    fn serde_round_trip_and_unknown_fields() {
        for kind in StrategyKind::ALL {
            let mut b = Strategy::builder(kind)
                .limit(7)
                .window(Duration::from_millis(1500));
            if kind.code() >= 4 {
                b = b.burst(3);
            }
            let s = b.build().unwrap();
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(
                serde_json::from_str::<Strategy>(&json).unwrap(),
                s,
                "{json}"
            );
        }
        let err = serde_json::from_str::<Strategy>(
            r#"{"strategy":"gcra","limit":1,"window":"1s","brust":2}"#,
        );
        assert!(err.is_err());
        let err =
            serde_json::from_str::<Strategy>(r#"{"strategy":"gcra","limit":1,"window":"soon"}"#);
        assert!(err.is_err());
    }

    #[test]
    fn scaling_stays_valid() {
        let g = Strategy::gcra(100, Duration::from_millis(1), 10).unwrap();
        let big = g.scaled(1000.0);
        assert_eq!(big.limit(), 1000, "clamped to 1 per µs");
        assert_eq!(g.scaled(0.0001).limit(), 1);
        assert_eq!(g.scaled(f64::NAN), g);
        let log = Strategy::sliding_log(9_000, Duration::from_secs(1)).unwrap();
        assert_eq!(log.scaled(2.0).limit(), MAX_LOG_LIMIT);
        let tb = Strategy::token_bucket(10, Duration::from_secs(1), 20).unwrap();
        let half = tb.with_limit(5);
        assert_eq!((half.limit(), half.burst()), (5, Some(10)));
    }

    #[test]
    fn path_patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("/login", "/login", true),
            ("/login", "/login/", true),
            ("/login", "/login?x=1", true),
            ("/login", "/login/x", false),
            ("/login", "/logins", false),
            ("/api/*", "/api", true),
            ("/api/*", "/api/v1/users", true),
            ("/api/*", "/apix", false),
            ("/users/{id}/posts", "/users/42/posts", true),
            ("/users/{id}/posts", "/users//42/posts", true),
            ("/users/{id}/posts", "/users/posts", false),
            ("/users/{id}/posts", "/users/1/2/posts", false),
            ("/*", "/anything/at/all", true),
            ("/", "/", true),
            ("/", "/x", false),
        ];
        for (pat, path, want) in cases {
            assert_eq!(
                PathPattern::new(pat).unwrap().matches(path),
                *want,
                "{pat} vs {path}"
            );
        }
        for bad in ["login", "/a/*/b", "/a*", "/{x", "/{}", "/a/{b}c"] {
            assert!(PathPattern::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_load_and_match() {
        let set: RuleSet = toml::from_str(
            r#"
            [[rules]]
            name = "api"
            path = "/api/*"
            strategy = "gcra"
            limit = 100
            period = "1m"
            burst = 20

            [[rules]]
            name = "post"
            path = "/api/posts/{id}"
            methods = ["post", "PUT"]
            strategy = "fixed_window"
            limit = 10
            window = "10s"
            cost = 2
            "#,
        )
        .unwrap();
        let names = |m: &http::Method, p: &str| {
            set.matching(m, p)
                .map(|r| r.name().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&http::Method::POST, "/api/posts/9"), ["api", "post"]);
        assert_eq!(names(&http::Method::GET, "/api/posts/9"), ["api"]);
        assert!(names(&http::Method::GET, "/health").is_empty());
        assert_eq!(set.rules()[1].cost(), 2);
        let dup = RuleSet::new(vec![set.rules()[0].clone(), set.rules()[0].clone()]);
        assert!(dup.is_err());
        let back: RuleSet = toml::from_str(&toml::to_string(&set).unwrap()).unwrap();
        assert_eq!(back, set);
        assert!(
            toml::from_str::<RateLimitRule>(
                "name='a'\npath='/'\nstrategy='gcra'\nlimit=1\nwindow='1s'\nmethod='GET'"
            )
            .is_err()
        );
        assert!(RateLimitRule::new("a b", "/", set.rules()[0].strategy().to_owned()).is_err());
    }

    #[test]
    fn decisions_combine() {
        let ok = |remaining| Decision {
            allowed: true,
            limit: 10,
            remaining,
            reset_after: Duration::from_secs(1),
            retry_after: None,
        };
        let no = |secs| Decision {
            allowed: false,
            retry_after: Some(Duration::from_secs(secs)),
            ..ok(0)
        };
        assert_eq!(
            Decision::most_restrictive(&[ok(5), ok(2), ok(7)]),
            Some(ok(2))
        );
        assert_eq!(
            Decision::most_restrictive(&[ok(5), no(3), no(9), ok(1)]),
            Some(no(9))
        );
        assert_eq!(Decision::most_restrictive(&[]), None);
        let now = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(no(2).retry_at(now).unwrap().timestamp(), 2);
        assert_eq!(ok(1).reset_at(now).timestamp(), 1);
    }
}
