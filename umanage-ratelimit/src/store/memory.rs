//! The in-memory limiter: sharded maps, time from the injected clock, bounded memory.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use parking_lot::{Mutex, MutexGuard};
use umanage_core::SharedClock;

use crate::algorithm::{Outcome, State, evaluate, gcra};
use crate::clock::MonotonicClock;
use crate::error::{Error, Result};
use crate::model::{Decision, Micros, Strategy, StrategyKind};
use crate::store::siphash::Sip13;
use crate::store::{Check, RateLimitStore, validate, validate_all};

/// A rate limiter held in this process's memory.
///
/// * **Sharded**: keys are spread over `shards` maps, each behind its own mutex, so
///   concurrent checks of different keys rarely contend.
/// * **Time** comes from the injected [`Clock`](umanage_core::Clock) (a
///   [`MonotonicClock`] by default), so tests drive it with a [`ManualClock`](umanage_core::ManualClock).
/// * **Bounded**: a key's state is dropped once it is equivalent to a fresh key's (its
///   window ended, its bucket refilled); expired keys are swept every `sweep_every` writes of
///   a shard, and a shard never holds more than `max_keys / shards` keys: when a new key
///   arrives at a full shard, expired keys are swept and, if it is still full, the eighth of
///   its keys closest to expiry is evicted (those keys restart fresh: under such pressure
///   a limiter errs on admitting). One million distinct keys thus cost at most the
///   configured bound.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use umanage_ratelimit::{MemoryRateLimiter, RateLimitStore, Strategy};
///
/// let limiter = MemoryRateLimiter::new();
/// let per_second = Strategy::gcra(5, Duration::from_secs(1), 5).unwrap();
/// let d = limiter.check("user:42", &per_second, 1).await.unwrap();
/// assert!(d.allowed);
/// assert_eq!(d.remaining, 4);
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryRateLimiter {
    shards: Box<[Shard]>,
    hasher: Sip13,
    clock: Time,
    shard_capacity: usize,
    sweep_every: u32,
}

/// Where the limiter's time comes from: the built-in [`MonotonicClock`] read as
/// microseconds directly (the hot path), or an injected clock.
#[derive(Debug, Clone)]
enum Time {
    Fast(MonotonicClock),
    Injected(SharedClock),
}

impl Time {
    #[inline]
    fn now_micros(&self) -> Micros {
        match self {
            Self::Fast(c) => c.now_micros(),
            Self::Injected(c) => c.now().timestamp_micros(),
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    map: Mutex<Table>,
    writes: AtomicU32,
}

/// A map from key to slot indexed by the key's (keyed, SipHash-1-3) hash computed once per
/// check: the same hash picks the shard and the bucket. Keys whose hashes collide share a
/// bucket (`more`).
#[derive(Debug, Default)]
struct Table {
    buckets: HashMap<u64, Bucket, BuildHasherDefault<Identity>>,
    len: usize,
}

#[derive(Debug)]
struct Bucket {
    key: Box<str>,
    slot: Slot,
    more: Vec<(Box<str>, Slot)>,
}

/// Passes a precomputed `u64` hash through.
#[derive(Debug, Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Table {
    fn len(&self) -> usize {
        self.len
    }

    fn get_mut(&mut self, hash: u64, key: &str) -> Option<&mut Slot> {
        let b = self.buckets.get_mut(&hash)?;
        if &*b.key == key {
            return Some(&mut b.slot);
        }
        b.more.iter_mut().find(|(k, _)| &**k == key).map(|(_, s)| s)
    }

    fn get(&self, hash: u64, key: &str) -> Option<&Slot> {
        let b = self.buckets.get(&hash)?;
        if &*b.key == key {
            return Some(&b.slot);
        }
        b.more.iter().find(|(k, _)| &**k == key).map(|(_, s)| s)
    }

    /// Inserts a key known to be absent.
    fn insert(&mut self, hash: u64, key: &str, slot: Slot) {
        self.len += 1;
        match self.buckets.entry(hash) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                e.get_mut().more.push((key.into(), slot));
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Bucket {
                    key: key.into(),
                    slot,
                    more: Vec::new(),
                });
            }
        }
    }

    fn expiries(&self) -> Vec<Micros> {
        let mut out = Vec::with_capacity(self.len);
        for b in self.buckets.values() {
            out.push(b.slot.expires_at());
            out.extend(b.more.iter().map(|(_, s)| s.expires_at()));
        }
        out
    }

    /// Keeps the slots for which `keep` is true.
    fn retain(&mut self, mut keep: impl FnMut(&mut Slot) -> bool) {
        let mut len = 0;
        self.buckets.retain(|_, b| {
            b.more.retain_mut(|(_, s)| keep(s));
            if !keep(&mut b.slot) {
                match b.more.pop() {
                    Some((k, s)) => {
                        b.key = k;
                        b.slot = s;
                    }
                    None => return false,
                }
            }
            len += 1 + b.more.len();
            true
        });
        self.len = len;
    }
}

/// The states of one key (usually one strategy kind).
#[derive(Debug, Default)]
struct Slot {
    states: Vec<(StrategyKind, State, Micros)>,
}

impl Slot {
    fn get(&self, kind: StrategyKind) -> Option<&State> {
        self.states.iter().find(|s| s.0 == kind).map(|s| &s.1)
    }

    fn get_mut(&mut self, kind: StrategyKind) -> Option<(&mut State, &mut Micros)> {
        self.states
            .iter_mut()
            .find(|s| s.0 == kind)
            .map(|s| (&mut s.1, &mut s.2))
    }

    fn put(&mut self, kind: StrategyKind, state: State, expires_at: Micros) {
        if let Some(s) = self.states.iter_mut().find(|s| s.0 == kind) {
            s.1 = state;
            s.2 = expires_at;
        } else {
            self.states.push((kind, state, expires_at));
        }
    }

    fn expires_at(&self) -> Micros {
        self.states.iter().map(|s| s.2).max().unwrap_or(Micros::MIN)
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

/// Builder for [`MemoryRateLimiter`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryRateLimiterBuilder {
    shards: usize,
    max_keys: usize,
    sweep_every: u32,
    clock: Option<SharedClock>,
}

impl MemoryRateLimiterBuilder {
    /// The number of shards (rounded up to a power of two).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// The most keys held at once (over all shards).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Sweep a shard's expired keys after this many writes to it.
    pub fn sweep_every(mut self, writes: u32) -> Self {
        self.sweep_every = writes;
        self
    }

    /// The clock (default: a [`MonotonicClock`]).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `shards` is 0 or above 4096, `max_keys` is below the
    /// number of shards, or `sweep_every` is 0.
    pub fn build(self) -> Result<MemoryRateLimiter> {
        if self.shards == 0 || self.shards > 4096 {
            return Err(Error::InvalidConfig(format!(
                "memory limiter shards must be 1..=4096, got {}",
                self.shards
            )));
        }
        let shards = self.shards.next_power_of_two();
        if self.max_keys < shards {
            return Err(Error::InvalidConfig(format!(
                "memory limiter max_keys ({}) must be at least the shard count ({shards})",
                self.max_keys
            )));
        }
        if self.sweep_every == 0 {
            return Err(Error::InvalidConfig(
                "sweep_every must be at least 1".into(),
            ));
        }
        Ok(MemoryRateLimiter {
            shards: (0..shards).map(|_| Shard::default()).collect(),
            hasher: Sip13::random(),
            clock: self
                .clock
                .map_or_else(|| Time::Fast(MonotonicClock::new()), Time::Injected),
            shard_capacity: self.max_keys / shards,
            sweep_every: self.sweep_every,
        })
    }
}

impl MemoryRateLimiter {
    /// Default shard count.
    pub const DEFAULT_SHARDS: usize = 64;
    /// Default bound on keys held: about 100 MB at the worst for GCRA keys of 64 bytes.
    pub const DEFAULT_MAX_KEYS: usize = 1_000_000;
    /// Default sweep interval (writes per shard).
    pub const DEFAULT_SWEEP_EVERY: u32 = 4096;

    /// A limiter with the defaults and a [`MonotonicClock`].
    pub fn new() -> Self {
        Self::with_time(Time::Fast(MonotonicClock::new()))
    }

    /// A limiter with the defaults and `clock`.
    pub fn with_clock(clock: SharedClock) -> Self {
        Self::with_time(Time::Injected(clock))
    }

    fn with_time(clock: Time) -> Self {
        let shards = Self::DEFAULT_SHARDS;
        Self {
            shards: (0..shards).map(|_| Shard::default()).collect(),
            hasher: Sip13::random(),
            clock,
            shard_capacity: Self::DEFAULT_MAX_KEYS / shards,
            sweep_every: Self::DEFAULT_SWEEP_EVERY,
        }
    }

    /// A builder (shards, bound, sweep interval, clock).
    pub fn builder() -> MemoryRateLimiterBuilder {
        MemoryRateLimiterBuilder {
            shards: Self::DEFAULT_SHARDS,
            max_keys: Self::DEFAULT_MAX_KEYS,
            sweep_every: Self::DEFAULT_SWEEP_EVERY,
            clock: None,
        }
    }

    /// The number of keys held now (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.map.lock().len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this limiter holds at once.
    pub fn capacity(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    /// Drops every expired key now (also done automatically).
    pub fn sweep(&self) {
        let now = self.now();
        for shard in &self.shards {
            sweep(&mut shard.map.lock(), now);
        }
    }

    fn now(&self) -> Micros {
        self.clock.now_micros()
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash(key.as_bytes())
    }

    fn shard_of(&self, hash: u64) -> usize {
        // the high bits pick the shard; the table uses the whole hash
        ((hash >> 40) as usize) & (self.shards.len() - 1)
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        shard: &Shard,
        map: &mut Table,
        hash: u64,
        key: &str,
        kind: StrategyKind,
        outcome: Outcome,
        now: Micros,
    ) {
        let Some(state) = outcome.next else { return };
        if let Some(slot) = map.get_mut(hash, key) {
            slot.put(kind, state, outcome.expires_at);
        } else {
            if map.len() >= self.shard_capacity {
                make_room(map, now, self.shard_capacity);
            }
            // room for exactly one state (a key is rarely limited under two strategy kinds;
            // `Vec`'s first growth would reserve four, 256 bytes)
            let mut slot = Slot {
                states: Vec::with_capacity(1),
            };
            slot.put(kind, state, outcome.expires_at);
            map.insert(hash, key, slot);
        }
        let writes = shard.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if writes.is_multiple_of(self.sweep_every) {
            sweep(map, now);
        }
    }
}

fn sweep(map: &mut Table, now: Micros) {
    map.retain(|slot| {
        slot.states.retain(|s| s.2 > now);
        !slot.states.is_empty()
    });
}

fn make_room(map: &mut Table, now: Micros, capacity: usize) {
    sweep(map, now);
    if map.len() < capacity {
        return;
    }
    let evict = (capacity / 8).max(1);
    let mut expiries = map.expiries();
    let (_, nth, _) = expiries.select_nth_unstable(evict - 1);
    let cutoff = *nth;
    let mut removed = 0;
    map.retain(|slot| {
        if removed < evict && slot.expires_at() <= cutoff {
            removed += 1;
            false
        } else {
            true
        }
    });
    tracing::debug!(
        removed,
        "rate-limit memory shard full: evicted keys closest to expiry"
    );
}

impl MemoryRateLimiter {
    /// [`RateLimitStore::check`] without the async machinery (the memory limiter never
    /// waits): for hot paths that are not async, and for benchmarks.
    ///
    /// # Errors
    ///
    /// As for [`RateLimitStore::check`].
    pub fn check_sync(&self, key: &str, strategy: &Strategy, cost: u32) -> Result<Decision> {
        validate(key, cost)?;
        let now = self.now();
        let hash = self.hash(key);
        let shard = &self.shards[self.shard_of(hash)];
        let mut map = shard.map.lock();
        let kind = strategy.kind();
        if let Some(slot) = map.get_mut(hash, key) {
            // the common case: one lookup, state updated in place
            if let Strategy::Gcra {
                limit,
                period,
                burst,
            } = *strategy
                && let Some((
                    State::Gcra {
                        tat,
                        limit: l,
                        period: p,
                        t,
                    },
                    expires_at,
                )) = slot.get_mut(kind)
            {
                if (*l, *p) != (limit, period) {
                    (*l, *p, *t) = (limit, period, strategy.emission_us());
                }
                let (decision, next) = gcra(burst, *t, Some(*tat), now, cost);
                if let Some(next) = next {
                    *tat = next;
                    *expires_at = next;
                }
                return Ok(decision);
            }
            let outcome = evaluate(strategy, slot.get(kind), now, cost);
            if let Some(state) = outcome.next {
                slot.put(kind, state, outcome.expires_at);
            }
            return Ok(outcome.decision);
        }
        let outcome = evaluate(strategy, None, now, cost);
        let decision = outcome.decision;
        self.store(shard, &mut map, hash, key, kind, outcome, now);
        Ok(decision)
    }
}

#[async_trait]
impl RateLimitStore for MemoryRateLimiter {
    async fn check(&self, key: &str, strategy: &Strategy, cost: u32) -> Result<Decision> {
        self.check_sync(key, strategy, cost)
    }

    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Vec<Decision>> {
        validate_all(checks)?;
        let now = self.now();
        let hashes: Vec<u64> = checks.iter().map(|c| self.hash(c.key)).collect();
        let mut order: Vec<usize> = hashes.iter().map(|&h| self.shard_of(h)).collect();
        order.sort_unstable();
        order.dedup();
        // Lock the shards in index order (no deadlock between concurrent batches).
        let mut guards: Vec<(usize, MutexGuard<'_, Table>)> = order
            .iter()
            .map(|&i| (i, self.shards[i].map.lock()))
            .collect();
        let mut outcomes = Vec::with_capacity(checks.len());
        for (n, c) in checks.iter().enumerate() {
            let i = self.shard_of(hashes[n]);
            let g = guards.iter().position(|(j, _)| *j == i).unwrap_or(0);
            let kind = c.strategy.kind();
            let state = guards[g].1.get(hashes[n], c.key).and_then(|s| s.get(kind));
            outcomes.push((n, evaluate(c.strategy, state, now, c.cost)));
        }
        let all = outcomes.iter().all(|(_, o)| o.decision.allowed);
        let decisions = outcomes.iter().map(|(_, o)| o.decision).collect();
        if all {
            for (n, outcome) in outcomes {
                let c = &checks[n];
                let i = self.shard_of(hashes[n]);
                let g = guards.iter().position(|(j, _)| *j == i).unwrap_or(0);
                let (_, map) = &mut guards[g];
                let kind = c.strategy.kind();
                self.store(&self.shards[i], map, hashes[n], c.key, kind, outcome, now);
            }
        }
        Ok(decisions)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use umanage_core::ManualClock;

    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A flood of distinct keys cannot grow the limiter past its bound, and the keys
    /// kept are checked correctly.
    #[test]
    fn distinct_keys_are_bounded() {
        let clock = ManualClock::default();
        let limiter = MemoryRateLimiter::builder()
            .clock(clock.shared())
            .shards(8)
            .max_keys(256)
            .build()
            .unwrap();
        assert_eq!(limiter.capacity(), 256);
        let s = Strategy::gcra(1, Duration::from_secs(3600), 1).unwrap();
        block_on(async {
            for i in 0..20_000 {
                assert!(
                    limiter
                        .check(&format!("k{i}"), &s, 1)
                        .await
                        .unwrap()
                        .allowed
                );
                assert!(limiter.len() <= 256);
            }
            // the most recent key is still held (it was the last inserted, furthest expiry)
            assert!(!limiter.check("k19999", &s, 1).await.unwrap().allowed);
        });
    }

    /// Keys whose state is back to fresh are swept, without a capacity squeeze.
    #[test]
    fn idle_keys_are_swept() {
        let clock = ManualClock::default();
        let limiter = MemoryRateLimiter::builder()
            .clock(clock.shared())
            .shards(2)
            .max_keys(1 << 20)
            .sweep_every(16)
            .build()
            .unwrap();
        let s = Strategy::fixed_window(5, Duration::from_secs(1)).unwrap();
        block_on(async {
            for i in 0..1000 {
                limiter.check(&format!("a{i}"), &s, 1).await.unwrap();
            }
            assert!(limiter.len() >= 900);
            clock.advance(Duration::from_secs(2));
            for i in 0..64 {
                limiter.check(&format!("b{i}"), &s, 1).await.unwrap();
            }
            assert!(limiter.len() <= 64, "{} keys left", limiter.len());
            clock.advance(Duration::from_secs(2));
            limiter.sweep();
            assert!(limiter.is_empty());
        });
    }

    #[test]
    fn builder_rejects_nonsense() {
        assert!(MemoryRateLimiter::builder().shards(0).build().is_err());
        assert!(
            MemoryRateLimiter::builder()
                .shards(64)
                .max_keys(8)
                .build()
                .is_err()
        );
        assert!(MemoryRateLimiter::builder().sweep_every(0).build().is_err());
        assert_eq!(
            MemoryRateLimiter::builder()
                .shards(5)
                .max_keys(8)
                .build()
                .unwrap()
                .shards
                .len(),
            8
        );
    }
}
