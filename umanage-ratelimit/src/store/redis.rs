//! The Redis limiter: one script, one round trip, server time.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use umanage_core::BackendError;
use umanage_core::redis::{RedisConnection, RedisScript};

use crate::error::Result;
use crate::model::{Decision, Strategy};
use crate::store::{Check, RateLimitStore, validate_all};

static CHECK: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new("ratelimit_check", include_str!("check.lua")));
static GCRA: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new("ratelimit_gcra", include_str!("gcra.lua")));

/// A rate limiter whose state lives in Redis, shared by every instance of the host app.
///
/// * **One round trip** per [`check`](RateLimitStore::check) and per
///   [`check_all`](RateLimitStore::check_all): a single Lua script (a GCRA-only one for a
///   single GCRA check, the general one otherwise; run with `EVALSHA`,
///   loaded on `NOSCRIPT`; a timed-out call is never re-sent, so a request is never charged
///   twice) evaluates every strategy and writes only if every check is admitted.
/// * **Server time**: the script reads Redis `TIME`, so instances whose clocks disagree
///   still agree on every window and bucket. The injected clock is not used. Requires
///   Redis 5 or newer (effects replication of scripts that read `TIME`).
/// * **TTL on every key**, set in the same script to the moment the key's state becomes
///   equivalent to a fresh key's; a key found without a TTL gets one back.
/// * **Keys**: `<prefix>:rl:{<key>}:<strategy kind>`, one key per limited key (a hash, a
///   sorted set for the sliding log, a string for GCRA), inside the key's own hash tag.
///
/// # Redis Cluster
///
/// A `check` touches one key, so it works on a cluster. A `check_all` runs as one script,
/// so on a cluster **all its keys must be in one slot**: use
/// [`check_all_tagged`](Self::check_all_tagged), which places every key of the batch under
/// the hash tag of one entity (for example the user id or the client IP that the rules
/// share). Plain `check_all` keeps each key under its own tag and is meant for standalone
/// and Sentinel deployments; on a cluster it fails with `CROSSSLOT` (a
/// [`BackendError`], never a silent partial charge). We chose
/// this over a two-phase reserve/commit, which would need a compensation step after a
/// partial failure and can over-reject under contention.
///
/// # Connections
///
/// Concurrent checks are pipelined on the [`RedisConnection`]'s multiplexed connections,
/// which it uses in turn ([`RedisConfigBuilder::connections`](umanage_core::redis::RedisConfigBuilder::connections)).
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    conn: RedisConnection,
}

impl RedisRateLimiter {
    /// A limiter on `conn` (keys under the connection's prefix).
    pub fn new(conn: RedisConnection) -> Self {
        Self { conn }
    }

    /// The connection.
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    /// The Redis key holding `key`'s state under `strategy`.
    pub fn redis_key(&self, key: &str, strategy: &Strategy) -> String {
        self.conn
            .keys()
            .key_with("rl", key, strategy.kind().as_str())
    }

    /// [`check_all`](RateLimitStore::check_all) with every key under the hash tag of
    /// `entity`, so the batch is in one Redis Cluster slot. The keys differ from those of
    /// [`check`](RateLimitStore::check) (`<prefix>:rl:{<entity>}:<key>:<kind>`): use one form
    /// per rule consistently.
    ///
    /// # Errors
    ///
    /// As for `check_all`.
    #[tracing::instrument(level = "debug", skip_all, fields(rules = checks.len()))]
    pub async fn check_all_tagged(
        &self,
        entity: &str,
        checks: &[Check<'_>],
    ) -> Result<Vec<Decision>> {
        validate_all(checks)?;
        let keys: Vec<String> = checks
            .iter()
            .map(|c| {
                let suffix = format!("{}:{}", escape(c.key), c.strategy.kind().as_str());
                self.conn.keys().key_with("rlt", entity, &suffix)
            })
            .collect();
        self.run(&keys, checks).await
    }

    async fn run(&self, keys: &[String], checks: &[Check<'_>]) -> Result<Vec<Decision>> {
        let mut call = CHECK.call();
        for (key, c) in keys.iter().zip(checks) {
            let s = c.strategy;
            call = call
                .key(key)
                .arg(s.kind().code())
                .arg(s.limit())
                .arg(s.window_us())
                .arg(s.capacity())
                .arg(c.cost)
                .arg(s.emission_us());
        }
        let reply: Vec<i64> = call.invoke(&self.conn).await?;
        if reply.len() != 1 + 4 * checks.len() {
            return Err(BackendError::Protocol(format!(
                "ratelimit script returned {} values for {} checks",
                reply.len(),
                checks.len()
            ))
            .into());
        }
        Ok(reply[1..]
            .chunks_exact(4)
            .zip(checks)
            .map(|(r, c)| Decision {
                allowed: r[0] == 1,
                limit: c.strategy.capacity(),
                remaining: r[1].max(0) as u64,
                reset_after: Duration::from_micros(r[2].max(0) as u64),
                retry_after: (r[3] >= 0).then(|| Duration::from_micros(r[3] as u64)),
            })
            .collect())
    }
}

/// Keeps a key from ending the suffix ambiguously (`:` is the separator of the kind).
fn escape(key: &str) -> String {
    key.replace('%', "%25").replace(':', "%3A")
}

#[async_trait]
impl RateLimitStore for RedisRateLimiter {
    #[tracing::instrument(level = "debug", skip_all, fields(kind = %strategy.kind()))]
    async fn check(&self, key: &str, strategy: &Strategy, cost: u32) -> Result<Decision> {
        let checks = [Check {
            key,
            strategy,
            cost,
        }];
        validate_all(&checks)?;
        let redis_key = self.redis_key(key, strategy);
        if let Strategy::Gcra { burst, .. } = *strategy {
            // the hot path: a script with only GCRA's work (three commands, a short reply)
            let reply: Vec<i64> = GCRA
                .call()
                .key(&redis_key)
                .arg(burst)
                .arg(cost)
                .arg(strategy.emission_us())
                .invoke(&self.conn)
                .await?;
            let [allowed, remaining, reset, retry] = reply[..] else {
                return Err(BackendError::Protocol(format!(
                    "ratelimit gcra script returned {} values",
                    reply.len()
                ))
                .into());
            };
            return Ok(Decision {
                allowed: allowed == 1,
                limit: burst,
                remaining: remaining.max(0) as u64,
                reset_after: Duration::from_micros(reset.max(0) as u64),
                retry_after: (retry >= 0).then(|| Duration::from_micros(retry as u64)),
            });
        }
        let keys = [redis_key];
        let mut out = self.run(&keys, &checks).await?;
        out.pop()
            .ok_or_else(|| BackendError::Protocol("empty reply".into()).into())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(rules = checks.len()))]
    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Vec<Decision>> {
        if let [one] = checks {
            // one rule (the layer's usual case): the same as `check`, which has the
            // GCRA-only script
            return Ok(vec![self.check(one.key, one.strategy, one.cost).await?]);
        }
        validate_all(checks)?;
        let keys: Vec<String> = checks
            .iter()
            .map(|c| self.redis_key(c.key, c.strategy))
            .collect();
        self.run(&keys, checks).await
    }
}
