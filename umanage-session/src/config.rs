//! [`SessionConfig`]: validated, loadable from TOML/YAML/JSON.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::device::FingerprintConfig;
use crate::error::{Error, Result};
use crate::store::{BindingPolicy, SessionLimit};

/// How the [`SessionManager`](crate::SessionManager) runs sessions.
///
/// ```
/// use std::time::Duration;
/// use umanage_session::{LimitPolicy, SessionConfig, SessionLimit};
///
/// let cfg: SessionConfig = serde_json::from_str(r#"{
///     "idle_timeout": "15m",
///     "absolute_lifetime": "8h",
///     "limit": { "max": 5, "policy": "evict_oldest" }
/// }"#).unwrap();
/// assert_eq!(cfg.idle_timeout(), Duration::from_secs(900));
/// assert_eq!(cfg.limit(), Some(SessionLimit { max: 5, policy: LimitPolicy::EvictOldest }));
///
/// // Contradictions are refused.
/// assert!(SessionConfig::builder()
///     .idle_timeout(Duration::from_secs(3600))
///     .absolute_lifetime(Duration::from_secs(60))
///     .build()
///     .is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSessionConfig", into = "RawSessionConfig")]
pub struct SessionConfig {
    idle_timeout: Duration,
    absolute_lifetime: Duration,
    remember_me_idle_timeout: Duration,
    remember_me_lifetime: Duration,
    limit: Option<SessionLimit>,
    binding: BindingPolicy,
    refresh_grace: Duration,
    fingerprint: FingerprintConfig,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessionConfig {
    #[serde(with = "umanage_core::duration", default = "d_idle")]
    idle_timeout: Duration,
    #[serde(with = "umanage_core::duration", default = "d_life")]
    absolute_lifetime: Duration,
    #[serde(with = "umanage_core::duration", default = "d_rm_idle")]
    remember_me_idle_timeout: Duration,
    #[serde(with = "umanage_core::duration", default = "d_rm_life")]
    remember_me_lifetime: Duration,
    #[serde(default)]
    limit: Option<SessionLimit>,
    #[serde(default)]
    binding: BindingPolicy,
    #[serde(with = "umanage_core::duration", default = "d_grace")]
    refresh_grace: Duration,
    #[serde(default)]
    fingerprint: FingerprintConfig,
}

fn d_idle() -> Duration {
    SessionConfig::DEFAULT_IDLE_TIMEOUT
}
fn d_life() -> Duration {
    SessionConfig::DEFAULT_ABSOLUTE_LIFETIME
}
fn d_rm_idle() -> Duration {
    SessionConfig::DEFAULT_REMEMBER_ME_IDLE_TIMEOUT
}
fn d_rm_life() -> Duration {
    SessionConfig::DEFAULT_REMEMBER_ME_LIFETIME
}
fn d_grace() -> Duration {
    SessionConfig::DEFAULT_REFRESH_GRACE
}

impl TryFrom<RawSessionConfig> for SessionConfig {
    type Error = Error;
    fn try_from(r: RawSessionConfig) -> Result<Self> {
        let mut b = SessionConfig::builder()
            .idle_timeout(r.idle_timeout)
            .absolute_lifetime(r.absolute_lifetime)
            .remember_me(r.remember_me_idle_timeout, r.remember_me_lifetime)
            .binding(r.binding)
            .refresh_grace(r.refresh_grace)
            .fingerprint(r.fingerprint);
        b.0.limit = r.limit;
        b.build()
    }
}

impl From<SessionConfig> for RawSessionConfig {
    fn from(c: SessionConfig) -> Self {
        Self {
            idle_timeout: c.idle_timeout,
            absolute_lifetime: c.absolute_lifetime,
            remember_me_idle_timeout: c.remember_me_idle_timeout,
            remember_me_lifetime: c.remember_me_lifetime,
            limit: c.limit,
            binding: c.binding,
            refresh_grace: c.refresh_grace,
            fingerprint: c.fingerprint,
        }
    }
}

impl SessionConfig {
    /// Default idle timeout: 30 minutes (OWASP's upper range for low-risk apps).
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
    /// Default absolute lifetime: 12 hours.
    pub const DEFAULT_ABSOLUTE_LIFETIME: Duration = Duration::from_secs(12 * 3600);
    /// Default remember-me idle timeout: 7 days.
    pub const DEFAULT_REMEMBER_ME_IDLE_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);
    /// Default remember-me lifetime: 30 days.
    pub const DEFAULT_REMEMBER_ME_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
    /// Default refresh grace window: 10 seconds.
    pub const DEFAULT_REFRESH_GRACE: Duration = Duration::from_secs(10);
    /// Longest lifetime accepted: 400 days.
    pub const MAX_LIFETIME: Duration = Duration::from_secs(400 * 86_400);
    /// Longest refresh grace window accepted: 2 minutes.
    pub const MAX_REFRESH_GRACE: Duration = Duration::from_secs(120);

    /// A builder starting from the defaults.
    pub fn builder() -> SessionConfigBuilder {
        SessionConfigBuilder(Self {
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            absolute_lifetime: Self::DEFAULT_ABSOLUTE_LIFETIME,
            remember_me_idle_timeout: Self::DEFAULT_REMEMBER_ME_IDLE_TIMEOUT,
            remember_me_lifetime: Self::DEFAULT_REMEMBER_ME_LIFETIME,
            limit: None,
            binding: BindingPolicy::default(),
            refresh_grace: Self::DEFAULT_REFRESH_GRACE,
            fingerprint: FingerprintConfig::default(),
        })
    }

    /// Idle (sliding) timeout of normal sessions.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
    /// Absolute lifetime of normal sessions.
    pub fn absolute_lifetime(&self) -> Duration {
        self.absolute_lifetime
    }
    /// Idle timeout of remember-me sessions.
    pub fn remember_me_idle_timeout(&self) -> Duration {
        self.remember_me_idle_timeout
    }
    /// Absolute lifetime of remember-me sessions.
    pub fn remember_me_lifetime(&self) -> Duration {
        self.remember_me_lifetime
    }
    /// Per-user session limit.
    pub fn limit(&self) -> Option<SessionLimit> {
        self.limit
    }
    /// What a device fingerprint mismatch does.
    pub fn binding(&self) -> BindingPolicy {
        self.binding
    }
    /// Grace window for the same client's parallel refreshes.
    pub fn refresh_grace(&self) -> Duration {
        self.refresh_grace
    }
    /// Which attributes make the device fingerprint.
    pub fn fingerprint(&self) -> &FingerprintConfig {
        &self.fingerprint
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self::builder().0
    }
}

/// Builder for [`SessionConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SessionConfigBuilder(SessionConfig);

impl SessionConfigBuilder {
    /// Idle timeout of normal sessions.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.0.idle_timeout = d;
        self
    }
    /// Absolute lifetime of normal sessions.
    pub fn absolute_lifetime(mut self, d: Duration) -> Self {
        self.0.absolute_lifetime = d;
        self
    }
    /// Idle timeout and lifetime of remember-me sessions.
    pub fn remember_me(mut self, idle: Duration, lifetime: Duration) -> Self {
        self.0.remember_me_idle_timeout = idle;
        self.0.remember_me_lifetime = lifetime;
        self
    }
    /// At most `max` live sessions per user, with `policy` at the cap.
    pub fn limit(mut self, max: u32, policy: crate::LimitPolicy) -> Self {
        self.0.limit = Some(SessionLimit { max, policy });
        self
    }
    /// What a device fingerprint mismatch does.
    pub fn binding(mut self, binding: BindingPolicy) -> Self {
        self.0.binding = binding;
        self
    }
    /// Grace window for the same client's parallel refreshes (zero: none).
    pub fn refresh_grace(mut self, d: Duration) -> Self {
        self.0.refresh_grace = d;
        self
    }
    /// Which attributes make the device fingerprint.
    pub fn fingerprint(mut self, f: FingerprintConfig) -> Self {
        self.0.fingerprint = f;
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a zero timeout or lifetime, an idle timeout longer than its
    /// lifetime, a remember-me lifetime shorter than the normal one, a lifetime over
    /// [`SessionConfig::MAX_LIFETIME`], a grace window over
    /// [`SessionConfig::MAX_REFRESH_GRACE`] or not shorter than the idle timeout, or a
    /// limit of 0.
    pub fn build(self) -> Result<SessionConfig> {
        let c = self.0;
        let fail = |m: &str| Err(Error::Config(m.to_owned()));
        if c.idle_timeout.is_zero()
            || c.absolute_lifetime.is_zero()
            || c.remember_me_idle_timeout.is_zero()
            || c.remember_me_lifetime.is_zero()
        {
            return fail("timeouts and lifetimes must be greater than zero");
        }
        if c.idle_timeout > c.absolute_lifetime {
            return fail("idle_timeout must not exceed absolute_lifetime");
        }
        if c.remember_me_idle_timeout > c.remember_me_lifetime {
            return fail("remember_me_idle_timeout must not exceed remember_me_lifetime");
        }
        if c.remember_me_lifetime < c.absolute_lifetime
            || c.remember_me_idle_timeout < c.idle_timeout
        {
            return fail("remember-me sessions must not be shorter than normal ones");
        }
        if c.remember_me_lifetime > SessionConfig::MAX_LIFETIME {
            return fail("lifetimes must not exceed 400 days");
        }
        if c.refresh_grace > SessionConfig::MAX_REFRESH_GRACE || c.refresh_grace >= c.idle_timeout {
            return fail("refresh_grace must be at most 2 minutes and shorter than idle_timeout");
        }
        if c.limit.is_some_and(|l| l.max == 0) {
            return fail("limit.max must be at least 1");
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LimitPolicy;

    #[test]
    fn builder_rejects_contradictions() {
        let s = Duration::from_secs;
        let bad = [
            SessionConfig::builder().idle_timeout(Duration::ZERO),
            SessionConfig::builder()
                .idle_timeout(s(100))
                .absolute_lifetime(s(50)),
            SessionConfig::builder().remember_me(s(100), s(50)),
            SessionConfig::builder().remember_me(s(60), s(3600)),
            SessionConfig::builder().remember_me(s(86_400), s(500 * 86_400)),
            SessionConfig::builder().refresh_grace(s(600)),
            SessionConfig::builder()
                .idle_timeout(s(5))
                .refresh_grace(s(5)),
            SessionConfig::builder().limit(0, LimitPolicy::RejectNew),
        ];
        for b in bad {
            let err = b.clone().build().unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{b:?}");
        }
        assert!(
            SessionConfig::builder()
                .limit(3, LimitPolicy::EvictOldest)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn serde_round_trips_and_rejects_unknown_fields() {
        let cfg = SessionConfig::builder()
            .limit(2, LimitPolicy::RejectNew)
            .binding(BindingPolicy::Reject)
            .build()
            .unwrap();
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(json.contains(r#""idle_timeout":"30m""#), "{json}");
        assert_eq!(serde_json::from_str::<SessionConfig>(&json).unwrap(), cfg);
        assert!(serde_json::from_str::<SessionConfig>(r#"{"idle":"1m"}"#).is_err());
        assert!(
            serde_json::from_str::<SessionConfig>(r#"{"idle_timeout":"2d"}"#).is_err(),
            "idle > lifetime accepted"
        );
        let t: SessionConfig =
            toml::from_str("binding = \"flag\"\nrefresh_grace = \"0s\"").unwrap();
        assert_eq!(t.refresh_grace(), Duration::ZERO);
    }
}
