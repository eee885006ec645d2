//! The in-memory [`SprayDetector`]: one process, time from an injected clock.

use std::collections::HashMap;
use std::hash::Hash;

use async_trait::async_trait;
use ipnet::IpNet;
use parking_lot::Mutex;
use umanage_core::{Clock, SharedClock, SystemClock};

use super::{
    AccountDigest, Assessment, DistinctCount, DistinctRule, LoginAttempt, Mode, RawCounts,
    SprayConfig, SprayDetector, SprayKey, duration_ms,
};
use crate::error::Result;

/// How many records pass between two sweeps of stale entries.
pub const SWEEP_EVERY: u64 = 4096;

/// Spray detection in one process.
///
/// Memory is bounded three ways: a set holds at most
/// [`max_members`](SprayConfig::max_members) members (the oldest are dropped), every
/// [`SWEEP_EVERY`] records the sources and accounts with nothing left in their window are
/// removed, and when more than [`max_tracked`](SprayConfig::max_tracked) sources (or
/// accounts) are tracked the eighth with the oldest evidence is evicted at once (so the
/// cost is amortised). All state sits behind one mutex; every operation is a few hash-map
/// look-ups under it.
///
/// The worst case, every tracked source and account holding a full set, is about
/// `max_tracked × max_members × 56` bytes (24 per member of a source's set, 32 per member
/// of an account's; up to twice that when `max_members` is not a power of two, from `Vec`
/// growth) plus the maps' overhead: about 1.4 GB at the defaults (100,000 × 256). Reaching
/// it takes `max_tracked × max_members` distinct failed pairs inside the window (25.6 M at
/// the defaults); size [`max_tracked`](SprayConfig::max_tracked) to the memory you can
/// spare (10,000 bounds it near 140 MB), or use the Redis backend.
///
/// Time comes from the injected [`Clock`] ([`SystemClock`] by default).
pub struct MemorySprayDetector {
    config: SprayConfig,
    key: SprayKey,
    clock: SharedClock,
    state: Mutex<State>,
}

impl std::fmt::Debug for MemorySprayDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sources, accounts) = self.tracked();
        f.debug_struct("MemorySprayDetector")
            .field("sources", &sources)
            .field("accounts", &accounts)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    sources: HashMap<IpNet, Members<AccountDigest>>,
    accounts: HashMap<AccountDigest, Members<IpNet>>,
    global: Vec<Bucket>,
    records: u64,
}

/// A set of members with the time (ms) each was last seen.
struct Members<K> {
    entries: Vec<(K, i64)>,
    newest: i64,
}

#[derive(Clone, Copy, Default)]
struct Bucket {
    index: i64,
    failures: u64,
    successes: u64,
}

impl<K: Copy + Eq> Members<K> {
    fn new() -> Self {
        Self {
            entries: Vec::new(),
            newest: i64::MIN,
        }
    }

    fn prune(&mut self, cutoff: i64) {
        self.entries.retain(|&(_, t)| t > cutoff);
    }

    fn touch(&mut self, member: K, now: i64, cap: usize) {
        self.newest = self.newest.max(now);
        if let Some(e) = self.entries.iter_mut().find(|(k, _)| *k == member) {
            e.1 = e.1.max(now);
            return;
        }
        if self.entries.len() >= cap
            && let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(i, _)| i)
        {
            self.entries.swap_remove(oldest);
        }
        self.entries.push((member, now));
    }

    fn remove(&mut self, member: K) {
        self.entries.retain(|(k, _)| *k != member);
    }

    fn count(&self, rule: &DistinctRule, now: i64) -> DistinctCount {
        let window = rule.window_ms();
        let count = self.entries.len() as u32;
        let mut block_retry_ms = 0;
        if let Some(b) = rule.block_at
            && count >= b
        {
            // the (count - b)-th oldest: once it leaves, the count is below the threshold
            // (a linear selection, not a sort: a blocked source may keep asking)
            let mut times: Vec<i64> = self.entries.iter().map(|&(_, t)| t).collect();
            let (_, nth, _) = times.select_nth_unstable((count - b) as usize);
            block_retry_ms = *nth + window - now;
        }
        DistinctCount {
            count,
            block_retry_ms,
        }
    }
}

impl MemorySprayDetector {
    /// A detector with `config`, on the system clock, with a random [`SprayKey`].
    ///
    /// # Panics
    ///
    /// When the operating system has no randomness ([`SprayKey::random`]).
    pub fn new(config: SprayConfig) -> Self {
        Self::with_clock(config, SystemClock::shared())
    }

    /// A detector with `config` whose time comes from `clock` (a `ManualClock` in tests),
    /// with a random [`SprayKey`].
    ///
    /// # Panics
    ///
    /// When the operating system has no randomness ([`SprayKey::random`]).
    pub fn with_clock(config: SprayConfig, clock: SharedClock) -> Self {
        Self {
            config,
            clock,
            key: SprayKey::random(),
            state: Mutex::new(State::default()),
        }
    }

    /// Replaces the account-digest key (the random one is fine for one process; a fixed
    /// key only matters if digests must be comparable with another detector's).
    #[must_use]
    pub fn with_key(mut self, key: SprayKey) -> Self {
        self.key = key;
        self
    }

    /// How many sources and accounts are tracked now (for memory monitoring and tests).
    pub fn tracked(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.sources.len(), s.accounts.len())
    }

    /// Removes every source and account with nothing left in its window now (also done
    /// automatically every [`SWEEP_EVERY`] records).
    pub fn purge_expired(&self) {
        let now = self.clock.now().timestamp_millis();
        let mut s = self.state.lock();
        sweep(&mut s, &self.config, now);
    }

    fn run(&self, attempt: &LoginAttempt<'_>, mode: Mode) -> Assessment {
        let now = self.clock.now().timestamp_millis();
        let cfg = &self.config;
        let net = cfg.ip_policy().network(attempt.source);
        let account = AccountDigest::of(&self.key, attempt.account);
        let cap = cfg.max_members() as usize;
        let mut raw = RawCounts::default();

        let mut guard = self.state.lock();
        let s = &mut *guard;
        if mode != Mode::Assess {
            s.records += 1;
            if s.records.is_multiple_of(SWEEP_EVERY) {
                sweep(s, cfg, now);
            }
        }
        let max_tracked = cfg.max_tracked();
        if cfg.per_source().is_enabled() {
            raw.source = Some(distinct(
                &mut s.sources,
                net,
                account,
                cfg.per_source(),
                mode,
                now,
                cap,
                max_tracked,
            ));
        }
        if cfg.per_account().is_enabled() {
            raw.account = Some(distinct(
                &mut s.accounts,
                account,
                net,
                cfg.per_account(),
                mode,
                now,
                cap,
                max_tracked,
            ));
        }
        let global = cfg.global();
        if global.is_enabled() {
            let width = global.bucket_ms();
            let buckets = global.buckets as usize;
            if s.global.len() != buckets {
                s.global = vec![
                    Bucket {
                        index: i64::MIN,
                        ..Bucket::default()
                    };
                    buckets
                ];
            }
            let index = now.div_euclid(width);
            if mode != Mode::Assess {
                let slot = &mut s.global[index.rem_euclid(buckets as i64) as usize];
                if slot.index != index {
                    *slot = Bucket {
                        index,
                        failures: 0,
                        successes: 0,
                    };
                }
                if mode == Mode::Failure {
                    slot.failures += 1;
                } else {
                    slot.successes += 1;
                }
            }
            let oldest = index - buckets as i64;
            let (f, ok) = s
                .global
                .iter()
                .filter(|b| b.index > oldest && b.index <= index)
                .fold((0, 0), |(f, ok), b| (f + b.failures, ok + b.successes));
            raw.global = Some((f, ok));
        }
        drop(guard);
        cfg.assess(&raw)
    }
}

/// One distinct-count signal: the set of `key`, updated for `mode`, counted.
#[allow(clippy::too_many_arguments)]
fn distinct<K: Copy + Eq + Hash, M: Copy + Eq>(
    map: &mut HashMap<K, Members<M>>,
    key: K,
    member: M,
    rule: &DistinctRule,
    mode: Mode,
    now: i64,
    cap: usize,
    max_tracked: usize,
) -> DistinctCount {
    let cutoff = now - rule.window_ms();
    match mode {
        Mode::Failure => {
            if !map.contains_key(&key) && map.len() >= max_tracked {
                evict(map, cutoff, max_tracked);
            }
            let set = map.entry(key).or_insert_with(Members::new);
            set.prune(cutoff);
            set.touch(member, now, cap);
            set.count(rule, now)
        }
        Mode::Success | Mode::Assess => {
            let Some(set) = map.get_mut(&key) else {
                return DistinctCount::default();
            };
            set.prune(cutoff);
            if mode == Mode::Success {
                set.remove(member);
            }
            let count = set.count(rule, now);
            if set.entries.is_empty() {
                map.remove(&key);
            }
            count
        }
    }
}

/// Makes room under `max_tracked`: drops stale sets, then, unless that freed an eighth of
/// the cap, the sets with the oldest evidence until it has. Freeing at least an eighth
/// every time keeps the O(n) pass amortised over the `max / 8` inserts that follow, also
/// when only a few sets go stale between inserts (a steady flood of new sources would
/// otherwise pay a full pass on every insert, under the lock).
fn evict<K: Copy + Eq + Hash, M>(map: &mut HashMap<K, Members<M>>, cutoff: i64, max: usize) {
    map.retain(|_, m| m.newest > cutoff);
    let target = max.saturating_sub((max / 8).max(1));
    if map.len() <= target {
        return;
    }
    let drop_count = map.len() - target;
    let mut newest: Vec<i64> = map.values().map(|m| m.newest).collect();
    let (_, nth, _) = newest.select_nth_unstable(drop_count - 1);
    let limit = *nth;
    // Everything older than `limit` goes (fewer than `drop_count` sets), then sets at
    // exactly `limit` until `drop_count` are gone.
    let mut left = drop_count;
    map.retain(|_, m| {
        if m.newest < limit {
            left -= 1;
            false
        } else {
            true
        }
    });
    map.retain(|_, m| {
        if left > 0 && m.newest == limit {
            left -= 1;
            false
        } else {
            true
        }
    });
}

fn sweep(s: &mut State, cfg: &SprayConfig, now: i64) {
    let src_cutoff = now - duration_ms(cfg.per_source().window);
    s.sources.retain(|_, m| m.newest > src_cutoff);
    let acct_cutoff = now - duration_ms(cfg.per_account().window);
    s.accounts.retain(|_, m| m.newest > acct_cutoff);
}

#[async_trait]
impl SprayDetector for MemorySprayDetector {
    fn config(&self) -> &SprayConfig {
        &self.config
    }

    async fn assess(&self, attempt: &LoginAttempt<'_>) -> Result<Assessment> {
        Ok(self.run(attempt, Mode::Assess))
    }

    async fn record_failure(&self, attempt: &LoginAttempt<'_>) -> Result<Assessment> {
        Ok(self.run(attempt, Mode::Failure))
    }

    async fn record_success(&self, attempt: &LoginAttempt<'_>) -> Result<Assessment> {
        Ok(self.run(attempt, Mode::Success))
    }
}
