//! The Redis [`SprayDetector`]: shared by every app instance.
//!
//! # Keys
//!
//! | key | type | holds | TTL |
//! | --- | --- | --- | --- |
//! | `<prefix>:spray-src:{<network>}` | sorted set | account digests (hex of the first 16 bytes of `HMAC-SHA256(key, account)`) this source failed on, scored by time (ms) | the per-source window |
//! | `<prefix>:spray-acct:{<digest>}` | sorted set | source networks that failed on this account | the per-account window |
//! | `<prefix>:spray-global:{all}` | hash | failures (`f<n>`) and successes (`s<n>`) per sub-window `n` | the global window |
//!
//! Each key is refreshed (`PEXPIRE`) by every write, and a write is the only thing that
//! creates a key, so no key outlives its window. A set is trimmed to
//! [`max_members`](crate::spray::SprayConfig::max_members) (oldest first) and its expired
//! members are removed by every call; the hash keeps at most two fields per sub-window.
//!
//! # One round trip, three slots
//!
//! The three keys of one attempt belong to three entities (source, account, site), so
//! they have three hash tags and may sit in three Redis Cluster slots. Each signal is
//! therefore its own atomic Lua script over one key (cluster-safe), and the (up to) three
//! scripts of one call are sent as **one pipeline**: one round trip. The signals are
//! independent, so nothing needs atomicity across them; if the server restarted and lost
//! its script cache, only the scripts answered `NOSCRIPT` (which did not run) are loaded and
//! sent again, so nothing is counted twice. (A cluster deployment needs a cluster-aware
//! connection, which `umanage_core::redis::RedisConnection` does not provide today; the key
//! layout is ready for it.)
//!
//! # Time
//!
//! Every script reads the server's clock (`TIME`), so instances whose clocks disagree still
//! agree on every window. No application clock is used (requires Redis 5 or newer, which
//! replicates scripts by effects).
//!
//! # Failures
//!
//! A Redis error or timeout is [`PasswordError::Backend`](crate::PasswordError::Backend);
//! `BackendError::is_unavailable` tells an outage apart. The host chooses whether logins
//! proceed without spray detection (fail open) or are refused while Redis is down.

use std::sync::LazyLock;

use async_trait::async_trait;
use redis::{RedisResult, Value};
use umanage_core::redis::{RedisConnection, RedisScript};
use umanage_core::{BackendError, KeyBuilder};

use super::{
    AccountDigest, Assessment, DistinctCount, DistinctRule, LoginAttempt, Mode, RawCounts,
    SprayConfig, SprayDetector, SprayKey, duration_ms,
};
use crate::error::Result;

/// The distinct-members signal over one sorted set.
///
/// KEYS[1] the set. ARGV: mode (`a`ssess, `f`ailure, `s`uccess), member, window ms,
/// member cap, block threshold (0: none). Returns `{count, ms until below block or 0}`.
static DISTINCT: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        "spray_distinct",
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, mode, member = KEYS[1], ARGV[1], ARGV[2]
local window, cap, block = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if mode == 'f' then
  redis.call('ZADD', key, now, member)
  local n = redis.call('ZCARD', key)
  if n > cap then redis.call('ZREMRANGEBYRANK', key, 0, n - cap - 1) end
  redis.call('PEXPIRE', key, window)
elseif mode == 's' then
  redis.call('ZREM', key, member)
end
local n = redis.call('ZCARD', key)
local retry = 0
if block > 0 and n >= block then
  local r = redis.call('ZRANGE', key, n - block, n - block, 'WITHSCORES')
  retry = tonumber(r[2]) + window - now
end
return {n, retry}
",
    )
});

/// The global signal over one hash of per-sub-window counters.
///
/// KEYS[1] the hash. ARGV: mode, sub-window ms, sub-window count, TTL ms.
/// Returns `{failures, successes}` in the window.
static GLOBAL: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        "spray_global",
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, mode = KEYS[1], ARGV[1]
local width, buckets, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local idx = math.floor(now / width)
local writing = mode == 'f' or mode == 's'
if writing then
  redis.call('HINCRBY', key, mode .. idx, 1)
  redis.call('PEXPIRE', key, ttl)
end
local f, s = 0, 0
local stale = {}
local all = redis.call('HGETALL', key)
for i = 1, #all, 2 do
  local field = all[i]
  local b = tonumber(string.sub(field, 2))
  if b and b > idx - buckets and b <= idx then
    if string.sub(field, 1, 1) == 'f' then f = f + tonumber(all[i + 1])
    else s = s + tonumber(all[i + 1]) end
  elseif b and b <= idx - buckets then
    stale[#stale + 1] = field
  end
end
if writing and #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
return {f, s}
",
    )
});

/// Spray detection on Redis (see the [module docs](self) for keys, round trips and time).
#[derive(Debug, Clone)]
pub struct RedisSprayDetector {
    conn: RedisConnection,
    config: SprayConfig,
    /// Redacted by its own `Debug`.
    key: SprayKey,
}

/// One script call of a pipeline.
struct Call {
    script: &'static RedisScript,
    key: String,
    args: Vec<String>,
}

impl Call {
    fn cmd(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.sha()).arg(1).arg(&self.key);
        for a in &self.args {
            cmd.arg(a);
        }
        cmd
    }
}

impl RedisSprayDetector {
    /// A detector on `conn` (whose key prefix namespaces its keys) with `config`, keeping
    /// account identifiers as HMACs under `key`.
    ///
    /// Every instance that shares this Redis namespace must be given the same `key`, or the
    /// instances will not see each other's per-account evidence (see the
    /// [module docs](crate::spray#the-key)).
    pub fn new(conn: RedisConnection, config: SprayConfig, key: SprayKey) -> Self {
        Self { conn, config, key }
    }

    /// The keys an attempt touches: per-source set, per-account set, global hash (for
    /// tests and operations).
    pub fn keys_of(&self, attempt: &LoginAttempt<'_>) -> [String; 3] {
        let keys: &KeyBuilder = self.conn.keys();
        [
            keys.key("spray-src", &self.config.source_key(attempt.source)),
            keys.key(
                "spray-acct",
                &AccountDigest::of(&self.key, attempt.account).hex(),
            ),
            keys.key("spray-global", "all"),
        ]
    }

    /// Loads the scripts into the server's cache, to fail fast at start-up (calls load them
    /// on demand anyway).
    ///
    /// # Errors
    ///
    /// [`PasswordError::Backend`](crate::PasswordError::Backend) when Redis is unreachable
    /// or refuses a script.
    pub async fn load_scripts(&self) -> Result<()> {
        let mut conn = self.conn.manager();
        DISTINCT.load(&mut conn).await?;
        GLOBAL.load(&mut conn).await?;
        Ok(())
    }

    fn distinct_call(
        rule: &DistinctRule,
        key: String,
        member: String,
        mode: &str,
        cap: u32,
    ) -> Call {
        Call {
            script: &DISTINCT,
            key,
            args: vec![
                mode.to_owned(),
                member,
                rule.window_ms().to_string(),
                cap.to_string(),
                rule.block_at.unwrap_or(0).to_string(),
            ],
        }
    }

    #[tracing::instrument(name = "spray.redis", skip_all, fields(mode = ?mode))]
    async fn run(&self, attempt: &LoginAttempt<'_>, mode: Mode) -> Result<Assessment> {
        let cfg = &self.config;
        let flag = match mode {
            Mode::Assess => "a",
            Mode::Failure => "f",
            Mode::Success => "s",
        };
        let [src_key, acct_key, global_key] = self.keys_of(attempt);
        let net = cfg.source_key(attempt.source);
        let digest = AccountDigest::of(&self.key, attempt.account).hex();
        let mut calls = Vec::with_capacity(3);
        let (mut src_at, mut acct_at, mut global_at) = (None, None, None);
        if cfg.per_source().is_enabled() {
            src_at = Some(calls.len());
            calls.push(Self::distinct_call(
                cfg.per_source(),
                src_key,
                digest,
                flag,
                cfg.max_members(),
            ));
        }
        if cfg.per_account().is_enabled() {
            acct_at = Some(calls.len());
            calls.push(Self::distinct_call(
                cfg.per_account(),
                acct_key,
                net,
                flag,
                cfg.max_members(),
            ));
        }
        let global = cfg.global();
        if global.is_enabled() {
            global_at = Some(calls.len());
            calls.push(Call {
                script: &GLOBAL,
                key: global_key,
                args: vec![
                    flag.to_owned(),
                    global.bucket_ms().to_string(),
                    global.buckets.to_string(),
                    duration_ms(global.window).to_string(),
                ],
            });
        }
        let replies = self.pipeline(&calls).await?;
        let pair = |at: Option<usize>| -> Result<Option<(i64, i64)>> {
            at.map(|i| two_ints(&replies[i])).transpose()
        };
        let raw = RawCounts {
            source: pair(src_at)?.map(|(n, r)| DistinctCount {
                count: n.clamp(0, i64::from(u32::MAX)) as u32,
                block_retry_ms: r,
            }),
            account: pair(acct_at)?.map(|(n, r)| DistinctCount {
                count: n.clamp(0, i64::from(u32::MAX)) as u32,
                block_retry_ms: r,
            }),
            global: pair(global_at)?.map(|(f, s)| (f.max(0) as u64, s.max(0) as u64)),
        };
        Ok(cfg.assess(&raw))
    }

    /// Sends every call in one pipeline; calls answered `NOSCRIPT` (not run) are sent again
    /// once after loading their script.
    async fn pipeline(&self, calls: &[Call]) -> Result<Vec<Value>> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.manager();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for c in calls {
            pipe.add_command(c.cmd());
        }
        let results: Vec<RedisResult<Value>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(BackendError::from)?;
        if results.len() != calls.len() {
            return Err(BackendError::Protocol(format!(
                "spray pipeline: {} replies to {} calls",
                results.len(),
                calls.len()
            ))
            .into());
        }
        let mut out = Vec::with_capacity(calls.len());
        for (call, result) in calls.iter().zip(results) {
            match result {
                Ok(v) => out.push(v),
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    tracing::debug!(script = call.script.name(), "NOSCRIPT: loading script");
                    call.script.load(&mut conn).await?;
                    let v: Value = call
                        .cmd()
                        .query_async(&mut conn)
                        .await
                        .map_err(BackendError::from)?;
                    out.push(v);
                }
                Err(e) => return Err(BackendError::from(e).into()),
            }
        }
        Ok(out)
    }
}

fn two_ints(v: &Value) -> Result<(i64, i64)> {
    let bad = || BackendError::Protocol(format!("spray script: unexpected reply {v:?}"));
    let Value::Array(items) = v else {
        return Err(bad().into());
    };
    let int = |i: usize| match items.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        _ => Err(bad()),
    };
    Ok((int(0)?, int(1)?))
}

#[async_trait]
impl SprayDetector for RedisSprayDetector {
    fn config(&self) -> &SprayConfig {
        &self.config
    }

    async fn assess(&self, attempt: &LoginAttempt<'_>) -> Result<Assessment> {
        self.run(attempt, Mode::Assess).await
    }

    async fn record_failure(&self, attempt: &LoginAttempt<'_>) -> Result<Assessment> {
        self.run(attempt, Mode::Failure).await
    }

    async fn record_success(&self, attempt: &LoginAttempt<'_>) -> Result<Assessment> {
        self.run(attempt, Mode::Success).await
    }
}
