//! The in-memory [`AuditStorage`].

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;
use uuid::Uuid;

use super::{
    AppendReport, AuditFilter, AuditQuery, AuditStorage, Cursor, Order, Page, check_chain_id,
    prepare,
};
use crate::chain::{ChainHead, Checkpoint, Digest, StoredEvent};
use crate::error::{Error, Result};
use crate::model::AuditEvent;

#[derive(Debug, Default)]
struct Chain {
    head: Option<ChainHead>,
    events: Vec<StoredEvent>,
    checkpoints: Vec<Checkpoint>,
}

#[derive(Debug, Default)]
struct Inner {
    chains: HashMap<String, Chain>,
    ids: HashMap<Uuid, String>,
}

/// Audit storage in process memory: for tests, examples and single-process hosts that
/// archive elsewhere. Nothing survives a restart. Appends are serialised by one mutex,
/// so the chain contract holds for every task of the process.
#[derive(Debug, Default)]
pub struct MemoryAuditStorage {
    inner: Mutex<Inner>,
}

impl MemoryAuditStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Direct access to the stored rows and checkpoints of `chain_id`, bypassing the
    /// chain, for tamper tests and repair tooling. Whatever `f` does is what
    /// [`AuditChain::verify`](crate::AuditChain::verify) will find.
    pub fn edit_raw<R>(
        &self,
        chain_id: &str,
        f: impl FnOnce(&mut Vec<StoredEvent>, &mut Vec<Checkpoint>) -> R,
    ) -> R {
        let mut inner = self.inner.lock();
        let chain = inner.chains.entry(chain_id.to_owned()).or_default();
        let out = f(&mut chain.events, &mut chain.checkpoints);
        chain.events.sort_by_key(|e| e.seq);
        out
    }
}

fn in_order(a: &StoredEvent, b: &StoredEvent, order: Order) -> std::cmp::Ordering {
    let key = |s: &StoredEvent| (s.event.timestamp, s.event.id);
    match order {
        Order::OldestFirst => key(a).cmp(&key(b)),
        Order::NewestFirst => key(b).cmp(&key(a)),
    }
}

fn after_cursor(s: &StoredEvent, cursor: Option<&Cursor>, order: Order) -> bool {
    cursor.is_none_or(|c| {
        let key = (s.event.timestamp, s.event.id);
        let at = (c.timestamp, c.id);
        match order {
            Order::OldestFirst => key > at,
            Order::NewestFirst => key < at,
        }
    })
}

#[async_trait]
impl AuditStorage for MemoryAuditStorage {
    #[tracing::instrument(level = "debug", skip(self, events), fields(n = events.len()))]
    async fn append(&self, chain_id: &str, events: &[AuditEvent]) -> Result<AppendReport> {
        let events = prepare(chain_id, events)?;
        let mut inner = self.inner.lock();
        for e in &events {
            if let Some(other) = inner.ids.get(&e.id)
                && other != chain_id
            {
                return Err(Error::IdConflict {
                    id: e.id,
                    chain_id: other.clone(),
                });
            }
        }
        let head = inner
            .chains
            .get(chain_id)
            .and_then(|c| c.head.clone())
            .unwrap_or_else(|| ChainHead::empty(chain_id));
        let (mut seq, mut hash) = (head.seq, head.hash);
        let mut linked = Vec::with_capacity(events.len());
        let mut seen = std::collections::HashSet::new();
        let mut duplicates = 0;
        for e in events {
            if inner.ids.contains_key(&e.id) || !seen.insert(e.id) {
                duplicates += 1;
                continue;
            }
            let s = StoredEvent::link(chain_id, seq, hash, e)?;
            (seq, hash) = (s.seq, s.hash);
            linked.push(s);
        }
        let appended = linked.len() as u64;
        for s in &linked {
            inner.ids.insert(s.event.id, chain_id.to_owned());
        }
        let chain = inner.chains.entry(chain_id.to_owned()).or_default();
        chain.events.extend(linked);
        let new_head = ChainHead { seq, hash, ..head };
        chain.head = Some(new_head.clone());
        Ok(AppendReport {
            appended,
            duplicates,
            head: new_head,
        })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn query(&self, query: &AuditQuery) -> Result<Page> {
        let cursor = query.position()?;
        let inner = self.inner.lock();
        let mut hits: Vec<&StoredEvent> = inner
            .chains
            .values()
            .flat_map(|c| &c.events)
            .filter(|s| query.filter.matches(s) && after_cursor(s, cursor.as_ref(), query.order))
            .collect();
        hits.sort_by(|a, b| in_order(a, b, query.order));
        let limit = query.limit as usize;
        let more = hits.len() > limit;
        let events: Vec<StoredEvent> = hits.into_iter().take(limit).cloned().collect();
        let next_cursor = more.then(|| events.last()).flatten().map(|last| {
            Cursor {
                timestamp: last.event.timestamp,
                id: last.event.id,
            }
            .encode(query.order)
        });
        Ok(Page {
            events,
            next_cursor,
        })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn count(&self, filter: &AuditFilter) -> Result<u64> {
        let inner = self.inner.lock();
        Ok(inner
            .chains
            .values()
            .flat_map(|c| &c.events)
            .filter(|s| filter.matches(s))
            .count() as u64)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn head(&self, chain_id: &str) -> Result<Option<ChainHead>> {
        Ok(self
            .inner
            .lock()
            .chains
            .get(chain_id)
            .and_then(|c| c.head.clone()))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn read_chain(
        &self,
        chain_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let inner = self.inner.lock();
        let Some(chain) = inner.chains.get(chain_id) else {
            return Ok(Vec::new());
        };
        let start = chain.events.partition_point(|e| e.seq < from_seq);
        Ok(chain.events[start..].iter().take(limit).cloned().collect())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        check_chain_id(&checkpoint.chain_id)?;
        let mut inner = self.inner.lock();
        let chain = inner.chains.entry(checkpoint.chain_id.clone()).or_default();
        let exists = chain
            .checkpoints
            .iter()
            .any(|c| c.seq == checkpoint.seq && c.created_at == checkpoint.created_at);
        if !exists {
            chain.checkpoints.push(checkpoint.clone());
            chain.checkpoints.sort_by_key(|c| (c.seq, c.created_at));
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn checkpoints(
        &self,
        chain_id: &str,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<Checkpoint>> {
        let inner = self.inner.lock();
        Ok(inner
            .chains
            .get(chain_id)
            .map(|c| {
                c.checkpoints
                    .iter()
                    .filter(|cp| (from_seq..=to_seq).contains(&cp.seq))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn prune(&self, chain_id: &str, through_seq: u64, through_hash: Digest) -> Result<u64> {
        let mut inner = self.inner.lock();
        let Some(chain) = inner.chains.get_mut(chain_id) else {
            return Err(Error::Config(format!("chain {chain_id} has no events")));
        };
        let Some(head) = chain.head.as_mut() else {
            return Err(Error::Config(format!("chain {chain_id} has no events")));
        };
        if through_seq > head.seq || through_seq < head.pruned_seq {
            return Err(Error::Config(format!(
                "cannot prune through {through_seq}: chain holds {}..={}",
                head.pruned_seq + 1,
                head.seq
            )));
        }
        head.pruned_seq = through_seq;
        head.pruned_hash = through_hash;
        let before = chain.events.len();
        let removed: Vec<Uuid> = chain
            .events
            .iter()
            .filter(|e| e.seq <= through_seq)
            .map(|e| e.event.id)
            .collect();
        chain.events.retain(|e| e.seq > through_seq);
        let n = (before - chain.events.len()) as u64;
        for id in removed {
            inner.ids.remove(&id);
        }
        Ok(n)
    }
}
