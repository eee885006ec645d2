//! Tiers: default / premium / enterprise (and custom) limits, and per-user overrides,
//! looked up through a [`TierResolver`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use umanage_core::UserId;

use crate::adjust::{LimitAdjuster, LimitRequest};
use crate::error::{Error, Result};
use crate::model::Strategy;

/// A service tier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Tier {
    /// The tier of users without a plan (and of anonymous requests).
    #[default]
    Default,
    /// The premium tier.
    Premium,
    /// The enterprise tier.
    Enterprise,
    /// A tier the host defines (`"partner"`, `"internal"`).
    Custom(String),
}

impl Tier {
    /// The tier's name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Default => "default",
            Self::Premium => "premium",
            Self::Enterprise => "enterprise",
            Self::Custom(name) => name,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Tier {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Ok(match s.as_str() {
            "default" => Self::Default,
            "premium" => Self::Premium,
            "enterprise" => Self::Enterprise,
            _ if !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) =>
            {
                Self::Custom(s)
            }
            _ => {
                return Err(Error::InvalidConfig(format!(
                    "tier name {s:?} must be 1-32 ASCII letters, digits, '-' or '_'"
                )));
            }
        })
    }
}

impl From<Tier> for String {
    fn from(t: Tier) -> Self {
        t.as_str().to_owned()
    }
}

/// What a resolver knows about a user.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserPlan {
    /// The user's tier.
    pub tier: Tier,
    /// A limit for this user alone, overriding the tier's.
    pub custom: Option<Strategy>,
}

/// Finds a user's tier (a database lookup, a JWT claim, a config file).
#[async_trait]
pub trait TierResolver: Send + Sync + fmt::Debug {
    /// The plan of `user`; unknown users get the default tier.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the lookup fails.
    async fn plan(&self, user: &UserId) -> Result<UserPlan>;
}

/// A resolver over an in-memory table, updatable at run time.
#[derive(Debug, Default)]
pub struct StaticTierResolver {
    users: RwLock<HashMap<UserId, UserPlan>>,
}

impl StaticTierResolver {
    /// An empty table (everyone default).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a user's plan.
    pub fn set(&self, user: UserId, plan: UserPlan) {
        self.users.write().insert(user, plan);
    }

    /// Removes a user's plan (back to default).
    pub fn remove(&self, user: &UserId) {
        self.users.write().remove(user);
    }
}

#[async_trait]
impl TierResolver for StaticTierResolver {
    async fn plan(&self, user: &UserId) -> Result<UserPlan> {
        Ok(self.users.read().get(user).cloned().unwrap_or_default())
    }
}

/// The strategy of each tier.
///
/// ```
/// use umanage_ratelimit::tier::{Tier, TierLimits};
///
/// let limits: TierLimits = toml::from_str(r#"
///     default = { strategy = "gcra", limit = 60, period = "1m" }
///     premium = { strategy = "gcra", limit = 600, period = "1m" }
///     [custom.partner]
///     strategy = "token_bucket"
///     limit = 100
///     interval = "1s"
///     burst = 500
/// "#).unwrap();
/// assert_eq!(limits.strategy(&Tier::Premium).limit(), 600);
/// // enterprise not configured: falls back to premium, then default
/// assert_eq!(limits.strategy(&Tier::Enterprise).limit(), 600);
/// assert_eq!(limits.strategy(&Tier::Custom("partner".into())).limit(), 100);
/// assert_eq!(limits.strategy(&Tier::Custom("other".into())).limit(), 60);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    /// The default tier's strategy.
    pub default: Strategy,
    /// Premium (default: the default tier's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub premium: Option<Strategy>,
    /// Enterprise (default: premium's, then the default tier's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise: Option<Strategy>,
    /// Custom tiers by name (an unknown custom tier gets the default tier's).
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub custom: HashMap<String, Strategy>,
}

impl TierLimits {
    /// Every tier on `default`.
    pub fn new(default: Strategy) -> Self {
        Self {
            default,
            premium: None,
            enterprise: None,
            custom: HashMap::new(),
        }
    }

    /// The strategy of `tier`.
    pub fn strategy(&self, tier: &Tier) -> &Strategy {
        match tier {
            Tier::Default => &self.default,
            Tier::Premium => self.premium.as_ref().unwrap_or(&self.default),
            Tier::Enterprise => self
                .enterprise
                .as_ref()
                .or(self.premium.as_ref())
                .unwrap_or(&self.default),
            Tier::Custom(name) => self.custom.get(name).unwrap_or(&self.default),
        }
    }

    /// The strategy for `user` (anonymous: the default tier): the user's custom limit if
    /// set, else the tier's.
    ///
    /// # Errors
    ///
    /// The resolver's.
    pub async fn for_user(
        &self,
        resolver: &dyn TierResolver,
        user: Option<&UserId>,
    ) -> Result<Strategy> {
        let Some(user) = user else {
            return Ok(self.default);
        };
        let plan = resolver.plan(user).await?;
        Ok(plan.custom.unwrap_or(*self.strategy(&plan.tier)))
    }
}

/// [`TierLimits`] as a [`LimitAdjuster`]: the strategy of the request's tier replaces the
/// rule's.
///
/// The plan of a request is, in order: a [`UserPlan`] request extension (tier and custom
/// limit), a [`Tier`] request extension (set by the host's authentication layer, e.g.
/// from a JWT claim), the [`TierResolver`] lookup of the authenticated user (when one is
/// configured), else the default tier.
#[derive(Debug, Clone)]
pub struct TierAdjuster {
    limits: TierLimits,
    resolver: Option<Arc<dyn TierResolver>>,
}

impl TierAdjuster {
    /// Tiers from request extensions only.
    pub fn new(limits: TierLimits) -> Self {
        Self {
            limits,
            resolver: None,
        }
    }

    /// Also looks users up in `resolver` when the request carries no plan.
    #[must_use]
    pub fn with_resolver(mut self, resolver: Arc<dyn TierResolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// The limits.
    pub fn limits(&self) -> &TierLimits {
        &self.limits
    }
}

#[async_trait]
impl LimitAdjuster for TierAdjuster {
    async fn adjust(&self, _strategy: Strategy, req: &LimitRequest<'_>) -> Result<Strategy> {
        let ext = &req.parts.extensions;
        if let Some(plan) = ext.get::<UserPlan>() {
            return Ok(plan
                .custom
                .unwrap_or_else(|| *self.limits.strategy(&plan.tier)));
        }
        if let Some(tier) = ext.get::<Tier>() {
            return Ok(*self.limits.strategy(tier));
        }
        match (&self.resolver, req.user) {
            (Some(resolver), Some(user)) => {
                self.limits.for_user(resolver.as_ref(), Some(&user)).await
            }
            _ => Ok(self.limits.default),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn users_get_their_tier_or_custom_limit() {
        let m = Duration::from_secs(60);
        let mut limits = TierLimits::new(Strategy::gcra(60, m, 10).unwrap());
        limits.premium = Some(Strategy::gcra(600, m, 100).unwrap());
        limits.enterprise = Some(Strategy::gcra(6000, m, 1000).unwrap());
        let r = StaticTierResolver::new();
        let (alice, bob, carol) = (UserId::new(), UserId::new(), UserId::new());
        r.set(
            alice,
            UserPlan {
                tier: Tier::Premium,
                custom: None,
            },
        );
        r.set(
            bob,
            UserPlan {
                tier: Tier::Enterprise,
                custom: Some(Strategy::fixed_window(5, m).unwrap()),
            },
        );
        assert_eq!(
            limits.for_user(&r, Some(&alice)).await.unwrap().limit(),
            600
        );
        assert_eq!(limits.for_user(&r, Some(&bob)).await.unwrap().limit(), 5);
        assert_eq!(limits.for_user(&r, Some(&carol)).await.unwrap().limit(), 60);
        assert_eq!(limits.for_user(&r, None).await.unwrap().limit(), 60);
        r.remove(&alice);
        assert_eq!(limits.for_user(&r, Some(&alice)).await.unwrap().limit(), 60);
        assert!(Tier::try_from("bad tier".to_owned()).is_err());
        assert_eq!(Tier::try_from("premium".to_owned()).unwrap(), Tier::Premium);
    }
}
