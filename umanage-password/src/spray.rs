//! Password-spray and credential-stuffing detection.
//!
//! A [`SprayDetector`] records the outcome of every login attempt by **source** (the client
//! address, grouped by [`IpKeyPolicy`]: an IPv4 address on its own, an IPv6 client by its
//! /64, IPv4-mapped IPv6 unwrapped first) and **account** (the identifier the attempt named),
//! and watches three signals, each over a sliding window:
//!
//! | signal | what it counts | typical attack |
//! | --- | --- | --- |
//! | [`SprayReason::SourceAcrossAccounts`] | distinct accounts one source failed on | password spraying, credential stuffing from one host |
//! | [`SprayReason::SourcesOnAccount`] | distinct sources that failed on one account | a distributed guess on one account (botnet) |
//! | [`SprayReason::GlobalFailureSpike`] | failed logins of the whole site | a distributed spray across many accounts |
//!
//! Each signal has up to three thresholds ([`DistinctRule`], [`GlobalRule`]); the
//! [`Assessment`] returned for an attempt carries the strongest [`SprayAction`] any signal
//! reached: [`Allow`](SprayAction::Allow), [`SlowDown`](SprayAction::SlowDown) with a delay
//! (doubling per step above the threshold, capped), [`Challenge`](SprayAction::Challenge)
//! (CAPTCHA, second factor, e-mail link: the host decides) or
//! [`Block`](SprayAction::Block) with the time after which the evidence will have slid out
//! of the window far enough to lift the block.
//!
//! A threshold `n` means: once `n` distinct accounts (sources, failures) are in the window,
//! the attempts that follow get that action. [`record_failure`](SprayDetector::record_failure)
//! returns the assessment *including* the failure just recorded, i.e. the one the next
//! attempt will get; [`assess`](SprayDetector::assess) is the read-only check a host makes
//! before it verifies a password, so a blocked source costs no hashing. The two are
//! separate calls: attempts in flight at the same time are all assessed on the evidence
//! from before any of them is recorded, so a burst can pass a threshold by its own size
//! (bound bursts with a per-source rate limit).
//!
//! # Successful logins
//!
//! A success from source `S` on account `A` removes only the pair `(S, A)`: `A` leaves the
//! set of accounts `S` failed on, and `S` leaves the set of sources that failed on `A` (the
//! owner mistyped, then got it right). It does **not** clear `S`'s failures on other accounts
//! (a sprayer that owns one real account, or guesses one password right, keeps its record),
//! nor other sources' failures on `A` (the owner logging in does not end a distributed attack
//! on the account). Successes are counted by the global signal, whose optional
//! [`min_failure_ratio`](GlobalRule::min_failure_ratio) compares failures with all attempts.
//! Every success counts, so an attacker who controls working accounts can log in to them
//! over and over to hold the ratio down; where that matters, keep the ratio at 0 (the
//! threshold alone decides) and rely on the per-source and per-account signals.
//!
//! # Accounts
//!
//! Pass the identifier the login form named (or the user id once known). It is trimmed and
//! lower-cased, so `Alice` and `alice ` are one account, then kept only as the first 16 bytes
//! of `HMAC-SHA256(key, identifier)` under a secret [`SprayKey`]: neither backend stores the
//! identifier itself, and without the key a list of e-mail addresses cannot be matched
//! against the stored digests (an unkeyed hash could be: hash each address and look it up).
//!
//! # The key
//!
//! * [`MemorySprayDetector::new`] and
//!   [`with_clock`](MemorySprayDetector::with_clock) draw a random key per detector (its
//!   evidence lives in one process anyway); [`with_key`](MemorySprayDetector::with_key)
//!   sets one.
//! * `RedisSprayDetector::new` **requires** a key: every instance that shares evidence in
//!   one Redis namespace must use the same key, or each would see its own digests and the
//!   per-account signal would not add up across instances. There is no default, so a
//!   forgotten key is a start-up error in the host, not a silent split of the evidence.
//! * Load it from a secret store as 16 to 64 random bytes ([`SprayKey::new`]) or standard
//!   base64 ([`SprayKey::from_base64`], e.g. the output of `openssl rand -base64 32`). The
//!   bytes are zeroized on drop and never shown by `Debug`, errors or serde (`SprayKey`
//!   implements neither `Serialize` nor `Deserialize`).
//! * Rotating the key has no key ids: evidence lives at most one window, so after a
//!   rotation the old digests simply age out (attempts in that window are counted afresh).
//!
//! # Backends
//!
//! * [`MemorySprayDetector`] (feature `memory`): one process, injected [`Clock`](umanage_core::Clock),
//!   bounded memory (per-set caps, stale entries swept, a cap on tracked sources/accounts).
//! * `RedisSprayDetector` (feature `redis`): shared by every app instance, server time,
//!   atomic Lua scripts, every key with a TTL. See its docs for the key layout.
//!
//! Both pass the conformance suite in `testing::spray` (feature `testing`).

#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use umanage_core::IpKeyPolicy;

use crate::error::{PasswordError, Result};

#[cfg(feature = "memory")]
pub use memory::MemorySprayDetector;
#[cfg(feature = "redis")]
pub use redis::RedisSprayDetector;

// ---------------------------------------------------------------------------------------
// Attempts and assessments
// ---------------------------------------------------------------------------------------

/// One login attempt: where it came from and which account it named.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LoginAttempt<'a> {
    /// The client address (after [`ClientIpResolver`](umanage_core::ClientIpResolver)).
    pub source: IpAddr,
    /// The account identifier the attempt named (username, e-mail or user id).
    pub account: &'a str,
}

impl<'a> LoginAttempt<'a> {
    /// An attempt from `source` on `account`.
    pub fn new(source: IpAddr, account: &'a str) -> Self {
        Self { source, account }
    }
}

impl fmt::Debug for LoginAttempt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The account identifier may be personal data, and an unkeyed digest of it could be
        // matched against a list of addresses: only its length is shown.
        f.debug_struct("LoginAttempt")
            .field("source", &self.source)
            .field("account_len", &self.account.len())
            .finish()
    }
}

/// What a host should do with an attempt, weakest first (`Ord` follows severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SprayAction {
    /// Proceed normally.
    Allow,
    /// Proceed after waiting `delay` (or answer 429 with `Retry-After`).
    SlowDown {
        /// How long to hold the attempt.
        #[serde(with = "umanage_core::duration")]
        delay: Duration,
    },
    /// Ask for proof of a human or of the owner (CAPTCHA, second factor) before checking the
    /// password.
    Challenge,
    /// Refuse without checking the password; try again after `retry_after`.
    Block {
        /// When the evidence will have slid out of the window enough to lift the block.
        #[serde(with = "umanage_core::duration")]
        retry_after: Duration,
    },
}

impl SprayAction {
    /// True for [`Allow`](Self::Allow).
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow)
    }

    fn rank(&self) -> u8 {
        match self {
            Self::Allow => 0,
            Self::SlowDown { .. } => 1,
            Self::Challenge => 2,
            Self::Block { .. } => 3,
        }
    }

    /// The stronger of two actions (for two delays or two blocks: the longer one).
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        match self.rank().cmp(&other.rank()) {
            std::cmp::Ordering::Less => other,
            std::cmp::Ordering::Greater => self,
            std::cmp::Ordering::Equal => std::cmp::max(self, other),
        }
    }
}

/// Which signal reached a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SprayReason {
    /// One source failed on many distinct accounts.
    SourceAcrossAccounts,
    /// Many distinct sources failed on one account.
    SourcesOnAccount,
    /// The whole site sees a spike of failed logins.
    GlobalFailureSpike,
}

/// The counts an assessment was made from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Observed {
    /// Distinct accounts the attempt's source failed on in the window (at most
    /// [`max_members`](SprayConfig::max_members)); 0 when the rule is disabled.
    pub source_accounts: u32,
    /// Distinct sources that failed on the attempt's account in the window (at most
    /// [`max_members`](SprayConfig::max_members)); 0 when the rule is disabled.
    pub account_sources: u32,
    /// Failed logins of the whole site in the global window; 0 when the rule is disabled.
    pub global_failures: u64,
    /// Successful logins of the whole site in the global window.
    pub global_successes: u64,
}

/// The verdict on one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Assessment {
    /// The strongest action any signal reached.
    pub action: SprayAction,
    /// Every signal that reached at least its first threshold, in the order of
    /// [`SprayReason`]'s variants.
    pub reasons: Vec<SprayReason>,
    /// The counts behind it.
    pub observed: Observed,
}

impl Assessment {
    /// True when no signal reached a threshold.
    pub fn is_allow(&self) -> bool {
        self.action.is_allow()
    }
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// Thresholds on a count of distinct accounts (or sources) in a sliding window.
///
/// A missing threshold is not used; a rule without thresholds is off. Present thresholds
/// must rise strictly: `slow_down_at < challenge_at < block_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistinctRule {
    /// The sliding window.
    #[serde(with = "umanage_core::duration")]
    pub window: Duration,
    /// From this many distinct members: [`SprayAction::SlowDown`].
    #[serde(default)]
    pub slow_down_at: Option<u32>,
    /// From this many: [`SprayAction::Challenge`].
    #[serde(default)]
    pub challenge_at: Option<u32>,
    /// From this many: [`SprayAction::Block`].
    #[serde(default)]
    pub block_at: Option<u32>,
}

impl DistinctRule {
    /// A rule over `window` with no thresholds (off); add them with the `with_*` methods.
    pub const fn new(window: Duration) -> Self {
        Self {
            window,
            slow_down_at: None,
            challenge_at: None,
            block_at: None,
        }
    }

    /// Sets [`slow_down_at`](Self::slow_down_at).
    #[must_use]
    pub const fn with_slow_down_at(mut self, n: u32) -> Self {
        self.slow_down_at = Some(n);
        self
    }

    /// Sets [`challenge_at`](Self::challenge_at).
    #[must_use]
    pub const fn with_challenge_at(mut self, n: u32) -> Self {
        self.challenge_at = Some(n);
        self
    }

    /// Sets [`block_at`](Self::block_at).
    #[must_use]
    pub const fn with_block_at(mut self, n: u32) -> Self {
        self.block_at = Some(n);
        self
    }

    /// True when at least one threshold is set.
    pub const fn is_enabled(&self) -> bool {
        self.slow_down_at.is_some() || self.challenge_at.is_some() || self.block_at.is_some()
    }

    fn highest(&self) -> u32 {
        self.block_at
            .or(self.challenge_at)
            .or(self.slow_down_at)
            .unwrap_or(0)
    }

    fn window_ms(&self) -> i64 {
        duration_ms(self.window)
    }
}

/// Thresholds on the site-wide count of failed logins in a sliding window.
///
/// There is no block threshold: blocking every login would turn an attack into an outage.
/// The window is kept as [`buckets`](Self::buckets) sub-windows, so a failure stops counting
/// between `window × (buckets − 1) / buckets` and `window` after it happened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalRule {
    /// The sliding window.
    #[serde(with = "umanage_core::duration")]
    pub window: Duration,
    /// Sub-windows the window is counted in (2 to [`SprayConfig::MAX_GLOBAL_BUCKETS`], and
    /// at most one per millisecond of the window).
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// From this many failures in the window: [`SprayAction::SlowDown`].
    #[serde(default)]
    pub slow_down_at: Option<u64>,
    /// From this many: [`SprayAction::Challenge`].
    #[serde(default)]
    pub challenge_at: Option<u64>,
    /// The signal fires only while failures are at least this share (0 to 1) of all
    /// attempts in the window; 0 turns the ratio check off. Successes are not deduplicated,
    /// so repeated logins to accounts an attacker owns lower the share (module docs).
    #[serde(default)]
    pub min_failure_ratio: f64,
}

fn default_buckets() -> u32 {
    SprayConfig::DEFAULT_GLOBAL_BUCKETS
}

impl GlobalRule {
    /// A rule over `window` ([`SprayConfig::DEFAULT_GLOBAL_BUCKETS`] sub-windows) with no
    /// thresholds (off).
    pub const fn new(window: Duration) -> Self {
        Self {
            window,
            buckets: SprayConfig::DEFAULT_GLOBAL_BUCKETS,
            slow_down_at: None,
            challenge_at: None,
            min_failure_ratio: 0.0,
        }
    }

    /// Sets [`buckets`](Self::buckets).
    #[must_use]
    pub const fn with_buckets(mut self, n: u32) -> Self {
        self.buckets = n;
        self
    }

    /// Sets [`slow_down_at`](Self::slow_down_at).
    #[must_use]
    pub const fn with_slow_down_at(mut self, n: u64) -> Self {
        self.slow_down_at = Some(n);
        self
    }

    /// Sets [`challenge_at`](Self::challenge_at).
    #[must_use]
    pub const fn with_challenge_at(mut self, n: u64) -> Self {
        self.challenge_at = Some(n);
        self
    }

    /// Sets [`min_failure_ratio`](Self::min_failure_ratio).
    #[must_use]
    pub const fn with_min_failure_ratio(mut self, ratio: f64) -> Self {
        self.min_failure_ratio = ratio;
        self
    }

    /// True when at least one threshold is set.
    pub const fn is_enabled(&self) -> bool {
        self.slow_down_at.is_some() || self.challenge_at.is_some()
    }

    /// The width of one sub-window in milliseconds (at least 1).
    pub(crate) fn bucket_ms(&self) -> i64 {
        (duration_ms(self.window) / i64::from(self.buckets.max(1))).max(1)
    }
}

/// The validated configuration of a [`SprayDetector`].
///
/// Build it with [`SprayConfig::builder`], take [`SprayConfig::default`], or load it with
/// serde (which goes through the same validation and refuses unknown fields):
///
/// ```
/// use std::time::Duration;
/// use umanage_password::spray::{DistinctRule, SprayConfig};
///
/// let cfg: SprayConfig = serde_json::from_str(r#"{
///     "per_source": {"window": "10m", "slow_down_at": 5, "block_at": 20},
///     "base_delay": "500ms"
/// }"#).unwrap();
/// assert_eq!(cfg.per_source().block_at, Some(20));
///
/// // contradictions are refused
/// let bad = SprayConfig::builder()
///     .per_source(DistinctRule::new(Duration::from_secs(60)).with_challenge_at(10).with_block_at(5))
///     .build();
/// assert!(bad.is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawSprayConfig", into = "RawSprayConfig")]
pub struct SprayConfig {
    ip_policy: IpKeyPolicy,
    per_source: DistinctRule,
    per_account: DistinctRule,
    global: GlobalRule,
    base_delay: Duration,
    max_delay: Duration,
    max_members: u32,
    max_tracked: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSprayConfig {
    #[serde(default)]
    ip_policy: IpKeyPolicy,
    #[serde(default = "SprayConfig::default_per_source")]
    per_source: DistinctRule,
    #[serde(default = "SprayConfig::default_per_account")]
    per_account: DistinctRule,
    #[serde(default = "SprayConfig::default_global")]
    global: GlobalRule,
    #[serde(default = "default_base_delay", with = "umanage_core::duration")]
    base_delay: Duration,
    #[serde(default = "default_max_delay", with = "umanage_core::duration")]
    max_delay: Duration,
    #[serde(default = "default_max_members")]
    max_members: u32,
    #[serde(default = "default_max_tracked")]
    max_tracked: usize,
}

fn default_base_delay() -> Duration {
    SprayConfig::DEFAULT_BASE_DELAY
}
fn default_max_delay() -> Duration {
    SprayConfig::DEFAULT_MAX_DELAY
}
fn default_max_members() -> u32 {
    SprayConfig::DEFAULT_MAX_MEMBERS
}
fn default_max_tracked() -> usize {
    SprayConfig::DEFAULT_MAX_TRACKED
}

impl TryFrom<RawSprayConfig> for SprayConfig {
    type Error = PasswordError;
    fn try_from(r: RawSprayConfig) -> Result<Self> {
        SprayConfigBuilder {
            config: Self {
                ip_policy: r.ip_policy,
                per_source: r.per_source,
                per_account: r.per_account,
                global: r.global,
                base_delay: r.base_delay,
                max_delay: r.max_delay,
                max_members: r.max_members,
                max_tracked: r.max_tracked,
            },
        }
        .build()
    }
}

impl From<SprayConfig> for RawSprayConfig {
    fn from(c: SprayConfig) -> Self {
        Self {
            ip_policy: c.ip_policy,
            per_source: c.per_source,
            per_account: c.per_account,
            global: c.global,
            base_delay: c.base_delay,
            max_delay: c.max_delay,
            max_members: c.max_members,
            max_tracked: c.max_tracked,
        }
    }
}

impl Default for SprayConfig {
    fn default() -> Self {
        Self {
            ip_policy: IpKeyPolicy::default(),
            per_source: Self::default_per_source(),
            per_account: Self::default_per_account(),
            global: Self::default_global(),
            base_delay: Self::DEFAULT_BASE_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
            max_members: Self::DEFAULT_MAX_MEMBERS,
            max_tracked: Self::DEFAULT_MAX_TRACKED,
        }
    }
}

impl SprayConfig {
    /// Default window of the per-source and per-account signals: 15 minutes.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);
    /// Default per-source thresholds (distinct accounts failed from one source):
    /// slow down from 5, challenge from 10, block from 20.
    pub const DEFAULT_SOURCE_THRESHOLDS: (u32, u32, u32) = (5, 10, 20);
    /// Default per-account thresholds (distinct sources failing on one account): slow down
    /// from 5, challenge from 10, never block (a block would let anyone lock the owner out).
    pub const DEFAULT_ACCOUNT_THRESHOLDS: (u32, u32) = (5, 10);
    /// Default global window: 5 minutes.
    pub const DEFAULT_GLOBAL_WINDOW: Duration = Duration::from_secs(5 * 60);
    /// Default number of global sub-windows.
    pub const DEFAULT_GLOBAL_BUCKETS: u32 = 10;
    /// The most global sub-windows accepted.
    pub const MAX_GLOBAL_BUCKETS: u32 = 120;
    /// Default global threshold: challenge from 500 failures in the window while failures are
    /// at least half of all attempts. Size it to your traffic.
    pub const DEFAULT_GLOBAL_CHALLENGE_AT: u64 = 500;
    /// Default global failure ratio.
    pub const DEFAULT_GLOBAL_MIN_FAILURE_RATIO: f64 = 0.5;
    /// Default first slow-down delay (it doubles per step above the threshold).
    pub const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(1);
    /// Default longest slow-down delay.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);
    /// The longest delay accepted.
    pub const MAX_DELAY: Duration = Duration::from_secs(300);
    /// Default cap on the members of one source's (account's) set.
    pub const DEFAULT_MAX_MEMBERS: u32 = 256;
    /// The largest member cap accepted.
    pub const MAX_MEMBERS: u32 = 10_000;
    /// Default cap on the sources (and, separately, accounts) the memory backend tracks.
    pub const DEFAULT_MAX_TRACKED: usize = 100_000;
    /// The shortest window accepted.
    pub const MIN_WINDOW: Duration = Duration::from_millis(100);
    /// The longest window accepted: 7 days.
    pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

    fn default_per_source() -> DistinctRule {
        let (s, c, b) = Self::DEFAULT_SOURCE_THRESHOLDS;
        DistinctRule::new(Self::DEFAULT_WINDOW)
            .with_slow_down_at(s)
            .with_challenge_at(c)
            .with_block_at(b)
    }

    fn default_per_account() -> DistinctRule {
        let (s, c) = Self::DEFAULT_ACCOUNT_THRESHOLDS;
        DistinctRule::new(Self::DEFAULT_WINDOW)
            .with_slow_down_at(s)
            .with_challenge_at(c)
    }

    fn default_global() -> GlobalRule {
        GlobalRule::new(Self::DEFAULT_GLOBAL_WINDOW)
            .with_challenge_at(Self::DEFAULT_GLOBAL_CHALLENGE_AT)
            .with_min_failure_ratio(Self::DEFAULT_GLOBAL_MIN_FAILURE_RATIO)
    }

    /// A builder starting from the defaults.
    pub fn builder() -> SprayConfigBuilder {
        SprayConfigBuilder {
            config: Self::default(),
        }
    }

    /// How addresses are grouped into sources.
    pub fn ip_policy(&self) -> IpKeyPolicy {
        self.ip_policy
    }
    /// Distinct accounts per source.
    pub fn per_source(&self) -> &DistinctRule {
        &self.per_source
    }
    /// Distinct sources per account.
    pub fn per_account(&self) -> &DistinctRule {
        &self.per_account
    }
    /// Site-wide failures.
    pub fn global(&self) -> &GlobalRule {
        &self.global
    }
    /// The first slow-down delay.
    pub fn base_delay(&self) -> Duration {
        self.base_delay
    }
    /// The longest slow-down delay.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }
    /// The cap on one set (the oldest members are dropped beyond it).
    pub fn max_members(&self) -> u32 {
        self.max_members
    }
    /// The memory backend's cap on tracked sources and on tracked accounts.
    pub fn max_tracked(&self) -> usize {
        self.max_tracked
    }

    /// The source key of an address (its network in CIDR notation).
    pub fn source_key(&self, ip: IpAddr) -> String {
        self.ip_policy.key(ip)
    }

    /// Turns the raw counts into an assessment (shared by every backend).
    pub(crate) fn assess(&self, raw: &RawCounts) -> Assessment {
        let mut action = SprayAction::Allow;
        let mut reasons = Vec::new();
        let mut observed = Observed::default();
        if let Some(src) = raw.source {
            observed.source_accounts = src.count;
            let a = self.distinct_action(&self.per_source, src);
            if !a.is_allow() {
                reasons.push(SprayReason::SourceAcrossAccounts);
            }
            action = action.max(a);
        }
        if let Some(acct) = raw.account {
            observed.account_sources = acct.count;
            let a = self.distinct_action(&self.per_account, acct);
            if !a.is_allow() {
                reasons.push(SprayReason::SourcesOnAccount);
            }
            action = action.max(a);
        }
        if let Some((failures, successes)) = raw.global {
            observed.global_failures = failures;
            observed.global_successes = successes;
            let a = self.global_action(failures, successes);
            if !a.is_allow() {
                reasons.push(SprayReason::GlobalFailureSpike);
            }
            action = action.max(a);
        }
        Assessment {
            action,
            reasons,
            observed,
        }
    }

    fn distinct_action(&self, rule: &DistinctRule, c: DistinctCount) -> SprayAction {
        if let Some(b) = rule.block_at
            && c.count >= b
        {
            let retry = c.block_retry_ms.max(1);
            return SprayAction::Block {
                retry_after: Duration::from_millis(retry as u64),
            };
        }
        if rule.challenge_at.is_some_and(|t| c.count >= t) {
            return SprayAction::Challenge;
        }
        match rule.slow_down_at {
            Some(t) if c.count >= t => SprayAction::SlowDown {
                delay: self.delay(u64::from(c.count - t)),
            },
            _ => SprayAction::Allow,
        }
    }

    fn global_action(&self, failures: u64, successes: u64) -> SprayAction {
        let rule = &self.global;
        let total = failures + successes;
        if rule.min_failure_ratio > 0.0
            && (total == 0 || (failures as f64) < rule.min_failure_ratio * total as f64)
        {
            return SprayAction::Allow;
        }
        if rule.challenge_at.is_some_and(|t| failures >= t) {
            return SprayAction::Challenge;
        }
        match rule.slow_down_at {
            Some(t) if failures >= t => SprayAction::SlowDown {
                delay: self.delay(failures - t),
            },
            _ => SprayAction::Allow,
        }
    }

    /// `base_delay × 2^steps`, at most `max_delay`.
    fn delay(&self, steps: u64) -> Duration {
        let factor = 1u32.checked_shl(steps.min(31) as u32).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }
}

/// Builds a [`SprayConfig`], refusing contradictions in [`build`](Self::build).
#[derive(Debug, Clone)]
#[must_use]
pub struct SprayConfigBuilder {
    config: SprayConfig,
}

impl SprayConfigBuilder {
    /// How addresses are grouped into sources (default IPv4 /32, IPv6 /64).
    pub fn ip_policy(mut self, policy: IpKeyPolicy) -> Self {
        self.config.ip_policy = policy;
        self
    }
    /// The per-source rule (distinct accounts one source failed on).
    pub fn per_source(mut self, rule: DistinctRule) -> Self {
        self.config.per_source = rule;
        self
    }
    /// The per-account rule (distinct sources that failed on one account).
    pub fn per_account(mut self, rule: DistinctRule) -> Self {
        self.config.per_account = rule;
        self
    }
    /// The global rule.
    pub fn global(mut self, rule: GlobalRule) -> Self {
        self.config.global = rule;
        self
    }
    /// The first slow-down delay.
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.config.base_delay = delay;
        self
    }
    /// The longest slow-down delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.config.max_delay = delay;
        self
    }
    /// The cap on one source's (account's) set.
    pub fn max_members(mut self, n: u32) -> Self {
        self.config.max_members = n;
        self
    }
    /// The memory backend's cap on tracked sources and on tracked accounts.
    pub fn max_tracked(mut self, n: usize) -> Self {
        self.config.max_tracked = n;
        self
    }

    /// Validates the configuration.
    ///
    /// # Errors
    ///
    /// [`PasswordError::InvalidConfig`] (component `"spray"`) when a window is outside
    /// [`MIN_WINDOW`](SprayConfig::MIN_WINDOW)..=[`MAX_WINDOW`](SprayConfig::MAX_WINDOW), a
    /// threshold is 0 or thresholds do not rise strictly, the member cap is below a
    /// threshold it must be able to reach or above [`MAX_MEMBERS`](SprayConfig::MAX_MEMBERS),
    /// the global bucket count or failure ratio is out of range (or the global window is
    /// shorter than 1 ms per sub-window), the base delay is zero or
    /// above the maximum delay, the maximum delay is above
    /// [`MAX_DELAY`](SprayConfig::MAX_DELAY), or `max_tracked` is 0.
    pub fn build(self) -> Result<SprayConfig> {
        let c = self.config;
        let fail = |reason: String| {
            Err(PasswordError::InvalidConfig {
                component: "spray",
                reason,
            })
        };
        for (name, window) in [
            ("per_source.window", c.per_source.window),
            ("per_account.window", c.per_account.window),
            ("global.window", c.global.window),
        ] {
            if window < SprayConfig::MIN_WINDOW || window > SprayConfig::MAX_WINDOW {
                return fail(format!(
                    "{name} must be between {:?} and {:?}, got {window:?}",
                    SprayConfig::MIN_WINDOW,
                    SprayConfig::MAX_WINDOW
                ));
            }
        }
        for (name, rule) in [("per_source", c.per_source), ("per_account", c.per_account)] {
            let steps = [rule.slow_down_at, rule.challenge_at, rule.block_at];
            if let Err(reason) = rising(steps.iter().map(|t| t.map(u64::from))) {
                return fail(format!("{name}: {reason}"));
            }
            if rule.highest() > c.max_members {
                return fail(format!(
                    "{name}: threshold {} can never be reached with max_members {}",
                    rule.highest(),
                    c.max_members
                ));
            }
        }
        if let Err(reason) = rising([c.global.slow_down_at, c.global.challenge_at].into_iter()) {
            return fail(format!("global: {reason}"));
        }
        if !(2..=SprayConfig::MAX_GLOBAL_BUCKETS).contains(&c.global.buckets) {
            return fail(format!(
                "global.buckets must be 2..={}, got {}",
                SprayConfig::MAX_GLOBAL_BUCKETS,
                c.global.buckets
            ));
        }
        // A sub-window is at least 1 ms; shorter ones would be widened and the buckets
        // would then span more than the window (and outlive the Redis key's TTL).
        if duration_ms(c.global.window) < i64::from(c.global.buckets) {
            return fail(format!(
                "global.window ({:?}) must be at least 1 ms per sub-window ({} buckets)",
                c.global.window, c.global.buckets
            ));
        }
        let ratio = c.global.min_failure_ratio;
        if !ratio.is_finite() || !(0.0..=1.0).contains(&ratio) {
            return fail(format!(
                "global.min_failure_ratio must be between 0 and 1, got {ratio}"
            ));
        }
        if c.max_members == 0 || c.max_members > SprayConfig::MAX_MEMBERS {
            return fail(format!(
                "max_members must be 1..={}, got {}",
                SprayConfig::MAX_MEMBERS,
                c.max_members
            ));
        }
        if c.max_delay > SprayConfig::MAX_DELAY {
            return fail(format!(
                "max_delay must be at most {:?}, got {:?}",
                SprayConfig::MAX_DELAY,
                c.max_delay
            ));
        }
        if c.base_delay.is_zero() || c.base_delay > c.max_delay {
            return fail(format!(
                "base_delay must be above zero and at most max_delay ({:?}), got {:?}",
                c.max_delay, c.base_delay
            ));
        }
        if c.max_tracked == 0 {
            return fail("max_tracked must be at least 1".to_owned());
        }
        Ok(c)
    }
}

/// Present thresholds must be at least 1 and rise strictly.
fn rising(steps: impl Iterator<Item = Option<u64>>) -> std::result::Result<(), String> {
    let mut last: Option<u64> = None;
    for t in steps.flatten() {
        if t == 0 {
            return Err("thresholds must be at least 1".to_owned());
        }
        if let Some(prev) = last
            && t <= prev
        {
            return Err(format!(
                "thresholds must rise strictly (slow_down_at < challenge_at < block_at), \
                 got {t} after {prev}"
            ));
        }
        last = Some(t);
    }
    Ok(())
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------
// What backends hand to the shared decision
// ---------------------------------------------------------------------------------------

/// One distinct-count signal as a backend observed it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DistinctCount {
    pub(crate) count: u32,
    /// Milliseconds until the count falls below the rule's block threshold (0 when below).
    pub(crate) block_retry_ms: i64,
}

/// The raw counts of one attempt (`None`: the rule is off).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawCounts {
    pub(crate) source: Option<DistinctCount>,
    pub(crate) account: Option<DistinctCount>,
    pub(crate) global: Option<(u64, u64)>,
}

/// What is being recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Assess,
    Failure,
    Success,
}

/// The secret key of the account digests (see the [module docs](self#the-key)).
///
/// ```
/// use umanage_password::spray::SprayKey;
///
/// let key = SprayKey::from_base64("c3ByYXkta2V5LWZvci10aGUtZG9jcy0zMi1ieXRlcyE=").unwrap();
/// // Debug never shows the bytes
/// assert_eq!(format!("{key:?}"), "SprayKey(..)");
/// // too short, or not base64: a typed error that does not echo the input
/// let err = SprayKey::from_base64("c2hvcnQ=").unwrap_err().to_string();
/// assert!(!err.contains("c2hvcnQ"));
/// ```
#[derive(Clone)]
pub struct SprayKey(Arc<SecretSlice<u8>>);

impl SprayKey {
    /// The shortest key accepted, in bytes (128 bits).
    pub const MIN_LEN: usize = 16;
    /// The longest key accepted, in bytes (an HMAC-SHA256 block).
    pub const MAX_LEN: usize = 64;

    /// A key from raw bytes (which are moved into zeroizing storage).
    ///
    /// # Errors
    ///
    /// [`PasswordError::InvalidConfig`] (component `"spray"`) when `key` is shorter than
    /// [`MIN_LEN`](Self::MIN_LEN) or longer than [`MAX_LEN`](Self::MAX_LEN).
    pub fn new(key: impl Into<Vec<u8>>) -> Result<Self> {
        let key = SecretSlice::from(key.into());
        let len = key.expose_secret().len();
        if (Self::MIN_LEN..=Self::MAX_LEN).contains(&len) {
            Ok(Self(Arc::new(key)))
        } else {
            Err(PasswordError::InvalidConfig {
                component: "spray",
                reason: format!(
                    "key must be {} to {} bytes, got {len}",
                    Self::MIN_LEN,
                    Self::MAX_LEN
                ),
            })
        }
    }

    /// A key from standard base64 (padding optional; surrounding whitespace ignored).
    ///
    /// # Errors
    ///
    /// [`PasswordError::InvalidConfig`] (component `"spray"`) when the text is not base64 or
    /// decodes to a length [`new`](Self::new) refuses. The message never contains the text.
    pub fn from_base64(text: &str) -> Result<Self> {
        use base64::Engine as _;
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let bytes =
            zeroize::Zeroizing::new(engine.decode(text.trim().as_bytes()).map_err(|_| {
                PasswordError::InvalidConfig {
                    component: "spray",
                    reason: "key is not valid standard base64".to_owned(),
                }
            })?);
        Self::new(bytes.as_slice())
    }

    /// A random 32-byte key from the operating system, for one process (see the
    /// [module docs](self#the-key) before using it with a shared backend).
    ///
    /// # Panics
    ///
    /// When the operating system has no randomness to give (as `Uuid::new_v4`, which every
    /// new user id relies on, does).
    pub fn random() -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut_slice())
            .unwrap_or_else(|e| panic!("no randomness for the spray key: {e}"));
        Self(Arc::new(SecretSlice::from(bytes.to_vec())))
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        // RFC 2104 pads a key shorter than the hash's 64-byte block with zeros, which is what
        // the fixed-size constructor takes; `new` bounds keys to 64 bytes, so this is plain
        // HMAC-SHA256 with the key, with no fallible step.
        let secret = self.0.expose_secret();
        let mut block = zeroize::Zeroizing::new([0u8; Self::MAX_LEN]);
        block[..secret.len()].copy_from_slice(secret);
        let mut mac = <Hmac<Sha256> as Mac>::new(&(*block).into());
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for SprayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SprayKey(..)")
    }
}

/// The stored form of an account identifier: the first 16 bytes of
/// `HMAC-SHA256(key, trimmed lower-cased identifier)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AccountDigest(pub(crate) [u8; 16]);

impl AccountDigest {
    pub(crate) fn of(key: &SprayKey, account: &str) -> Self {
        let folded = account.trim().to_lowercase();
        let full = key.mac(folded.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        Self(out)
    }

    #[cfg(feature = "redis")]
    pub(crate) fn hex(self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for AccountDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountDigest({})", hex::encode(&self.0[..4]))
    }
}

// ---------------------------------------------------------------------------------------
// The trait
// ---------------------------------------------------------------------------------------

/// Records login outcomes and assesses attempts (see the [module docs](self)).
///
/// Contract (checked by the conformance suite):
///
/// * Counts are of **distinct** accounts per source and distinct sources per account in
///   the rule's sliding window; repeating a failure on the same pair refreshes its time
///   but does not add to either count. Sources are grouped by the config's
///   [`IpKeyPolicy`]; accounts are compared trimmed and lower-cased.
/// * [`record_failure`](Self::record_failure) and
///   [`record_success`](Self::record_success) return the assessment after the record;
///   [`assess`](Self::assess) changes nothing.
/// * A success removes only its own `(source, account)` pair from the two distinct sets,
///   and counts as a success globally.
/// * Concurrent records lose nothing; a set never holds more than
///   [`max_members`](SprayConfig::max_members) (the oldest are dropped).
/// * A block's `retry_after` is the time until the count falls below the block threshold
///   if nothing more is recorded.
#[async_trait]
pub trait SprayDetector: Send + Sync + fmt::Debug + 'static {
    /// The configuration in force.
    fn config(&self) -> &SprayConfig;

    /// The assessment of an attempt, without recording anything.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Backend`] when the backend fails.
    async fn assess(&self, attempt: &LoginAttempt<'_>) -> Result<Assessment>;

    /// Records a failed login and returns the assessment that now holds for the pair.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Backend`] when the backend fails (nothing, or only part of the
    /// signals, was recorded).
    async fn record_failure(&self, attempt: &LoginAttempt<'_>) -> Result<Assessment>;

    /// Records a successful login and returns the assessment that now holds for the pair.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Backend`] when the backend fails.
    async fn record_success(&self, attempt: &LoginAttempt<'_>) -> Result<Assessment>;
}

macro_rules! forward_spray_detector {
    ($($ty:ty),+) => {$(
        #[deny(clippy::missing_trait_methods)]
        #[async_trait]
        impl<T: SprayDetector + ?Sized> SprayDetector for $ty {
            fn config(&self) -> &SprayConfig {
                (**self).config()
            }
            async fn assess(&self, attempt: &LoginAttempt<'_>) -> Result<Assessment> {
                (**self).assess(attempt).await
            }
            async fn record_failure(&self, attempt: &LoginAttempt<'_>) -> Result<Assessment> {
                (**self).record_failure(attempt).await
            }
            async fn record_success(&self, attempt: &LoginAttempt<'_>) -> Result<Assessment> {
                (**self).record_success(attempt).await
            }
        }
    )+};
}

forward_spray_detector!(Arc<T>, Box<T>);
