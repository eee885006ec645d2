//! In-memory [`KvStore`].

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use super::{KvError, KvStore, Result, parse_counter};
use crate::{SharedClock, SystemClock};

const SHARDS: usize = 16;

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires_at: Option<DateTime<Utc>>,
}

impl Entry {
    fn live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// An in-process [`KvStore`]: sharded hash maps, time from an injected clock.
///
/// Expired entries are dropped when touched and by [`purge_expired`](Self::purge_expired);
/// call that periodically if many keys are written once and never read again.
#[derive(Debug)]
pub struct MemoryKvStore {
    shards: Box<[Mutex<HashMap<String, Entry>>]>,
    hasher: RandomState,
    clock: SharedClock,
}

impl Default for MemoryKvStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryKvStore {
    /// A store using the system clock.
    pub fn new() -> Self {
        Self::with_clock(SystemClock::shared())
    }

    /// A store using `clock` (a [`ManualClock`](crate::ManualClock) in tests).
    pub fn with_clock(clock: SharedClock) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            clock,
        }
    }

    /// Removes every expired entry; returns how many were removed.
    pub fn purge_expired(&self) -> usize {
        let now = self.clock.now();
        self.shards
            .iter()
            .map(|shard| {
                let mut map = shard.lock();
                let before = map.len();
                map.retain(|_, e| e.live(now));
                before - map.len()
            })
            .sum()
    }

    /// Number of entries held, including expired ones not yet purged.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether the store holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Entry>> {
        let idx = (self.hasher.hash_one(key) as usize) % self.shards.len();
        &self.shards[idx]
    }

    fn deadline(now: DateTime<Utc>, ttl: Option<Duration>) -> Option<DateTime<Utc>> {
        ttl.map(|ttl| {
            chrono::TimeDelta::from_std(ttl)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        })
    }
}

#[async_trait]
impl KvStore for MemoryKvStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let now = self.clock.now();
        let mut map = self.shard(key).lock();
        match map.get(key) {
            Some(e) if e.live(now) => Ok(Some(e.value.clone())),
            Some(_) => {
                map.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let now = self.clock.now();
        let entry = Entry {
            value: value.to_vec(),
            expires_at: Self::deadline(now, ttl),
        };
        self.shard(key).lock().insert(key.to_owned(), entry);
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool> {
        let now = self.clock.now();
        let mut map = self.shard(key).lock();
        if map.get(key).is_some_and(|e| e.live(now)) {
            return Ok(false);
        }
        let entry = Entry {
            value: value.to_vec(),
            expires_at: Self::deadline(now, ttl),
        };
        map.insert(key.to_owned(), entry);
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let now = self.clock.now();
        Ok(self
            .shard(key)
            .lock()
            .remove(key)
            .is_some_and(|e| e.live(now)))
    }

    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64> {
        let now = self.clock.now();
        let mut map = self.shard(key).lock();
        let (current, expires_at) = match map.get(key) {
            Some(e) if e.live(now) => (
                parse_counter(&e.value).ok_or(KvError::NotAnInteger)?,
                e.expires_at,
            ),
            _ => (0, None),
        };
        let next = current.checked_add(by).ok_or(KvError::NotAnInteger)?;
        let expires_at = expires_at.or_else(|| Self::deadline(now, Some(ttl)));
        map.insert(
            key.to_owned(),
            Entry {
                value: next.to_string().into_bytes(),
                expires_at,
            },
        );
        Ok(next)
    }
}
