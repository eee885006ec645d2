//! The storage trait, its query types, and the forwarding impls.

#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::chain::{ChainHead, Checkpoint, Digest, StoredEvent};
use crate::error::{Error, Result};
use crate::model::{AuditEvent, Outcome};

/// The chain events go to when a host does not choose one.
pub const DEFAULT_CHAIN: &str = "default";

/// Largest page a query returns.
pub const MAX_PAGE: u32 = 1000;

/// Which events a query or count selects. Every set field must match (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditFilter {
    /// Only this chain.
    pub chain_id: Option<String>,
    /// Only events by this actor.
    pub actor_id: Option<String>,
    /// Only events on this target.
    pub target_id: Option<String>,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Only events with this result.
    pub result: Option<Outcome>,
    /// Only events at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events strictly before this time.
    pub until: Option<DateTime<Utc>>,
}

impl AuditFilter {
    /// A filter matching everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only this actor.
    #[must_use]
    pub fn actor(mut self, id: impl Into<String>) -> Self {
        self.actor_id = Some(id.into());
        self
    }

    /// Only this target.
    #[must_use]
    pub fn target(mut self, id: impl Into<String>) -> Self {
        self.target_id = Some(id.into());
        self
    }

    /// Only this event type.
    #[must_use]
    pub fn event_type(mut self, t: impl Into<String>) -> Self {
        self.event_type = Some(t.into());
        self
    }

    /// Only this result.
    #[must_use]
    pub fn result(mut self, r: Outcome) -> Self {
        self.result = Some(r);
        self
    }

    /// Only `[from, until)`.
    #[must_use]
    pub fn between(mut self, from: DateTime<Utc>, until: DateTime<Utc>) -> Self {
        self.from = Some(from);
        self.until = Some(until);
        self
    }

    /// Only this chain.
    #[must_use]
    pub fn chain(mut self, id: impl Into<String>) -> Self {
        self.chain_id = Some(id.into());
        self
    }

    /// True when `s` matches (the memory backend's predicate; Postgres does it in SQL).
    pub fn matches(&self, s: &StoredEvent) -> bool {
        let e = &s.event;
        self.chain_id.as_ref().is_none_or(|c| *c == s.chain_id)
            && self
                .actor_id
                .as_ref()
                .is_none_or(|a| e.actor_id.as_ref() == Some(a))
            && self
                .target_id
                .as_ref()
                .is_none_or(|t| e.target_id.as_ref() == Some(t))
            && self.event_type.as_ref().is_none_or(|t| *t == e.event_type)
            && self.result.is_none_or(|r| r == e.result)
            && self.from.is_none_or(|f| e.timestamp >= f)
            && self.until.is_none_or(|u| e.timestamp < u)
    }
}

/// Result order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Latest first (by timestamp, then id).
    #[default]
    NewestFirst,
    /// Earliest first (by timestamp, then id).
    OldestFirst,
}

/// A page request: filter, order, size and the cursor of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Which events.
    pub filter: AuditFilter,
    /// Which order.
    pub order: Order,
    /// Page size, 1..=[`MAX_PAGE`].
    pub limit: u32,
    /// [`Page::next_cursor`] of the previous page.
    pub cursor: Option<String>,
}

impl AuditQuery {
    /// The first page of `filter`, newest first, 100 per page.
    pub fn new(filter: AuditFilter) -> Self {
        Self {
            filter,
            order: Order::NewestFirst,
            limit: 100,
            cursor: None,
        }
    }

    /// Sets the order.
    #[must_use]
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Sets the page size.
    #[must_use]
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Continues after a previous page.
    #[must_use]
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Checks the limit and decodes the cursor.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a limit outside 1..=[`MAX_PAGE`]; [`Error::InvalidCursor`] for a
    /// cursor that does not decode or belongs to the other order.
    pub fn position(&self) -> Result<Option<Cursor>> {
        if self.limit == 0 || self.limit > MAX_PAGE {
            return Err(Error::Config(format!(
                "page limit must be 1..={MAX_PAGE}, not {}",
                self.limit
            )));
        }
        self.cursor
            .as_deref()
            .map(|c| Cursor::decode(c, self.order))
            .transpose()
    }
}

/// A decoded keyset position: the (timestamp, id) of the last event of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Timestamp of the last event returned.
    pub timestamp: DateTime<Utc>,
    /// Id of the last event returned.
    pub id: Uuid,
}

impl Cursor {
    /// The opaque string form (URL-safe base64).
    pub fn encode(&self, order: Order) -> String {
        let o = match order {
            Order::NewestFirst => 'n',
            Order::OldestFirst => 'o',
        };
        let raw = format!(
            "v1:{o}:{}:{}",
            self.timestamp.timestamp_micros(),
            self.id.simple()
        );
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Parses a string made by [`encode`](Self::encode) for the same `order`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCursor`] for anything else.
    pub fn decode(text: &str, order: Order) -> Result<Self> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| Error::InvalidCursor)?;
        let raw = String::from_utf8(bytes).map_err(|_| Error::InvalidCursor)?;
        let mut parts = raw.split(':');
        let (Some("v1"), Some(o), Some(micros), Some(id), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(Error::InvalidCursor);
        };
        let expected = match order {
            Order::NewestFirst => "n",
            Order::OldestFirst => "o",
        };
        if o != expected {
            return Err(Error::InvalidCursor);
        }
        let micros: i64 = micros.parse().map_err(|_| Error::InvalidCursor)?;
        let timestamp = DateTime::from_timestamp_micros(micros).ok_or(Error::InvalidCursor)?;
        let id = Uuid::try_parse(id).map_err(|_| Error::InvalidCursor)?;
        Ok(Self { timestamp, id })
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The events, in the requested order.
    pub events: Vec<StoredEvent>,
    /// Pass to [`AuditQuery::after`] for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendReport {
    /// Events newly linked into the chain.
    pub appended: u64,
    /// Events skipped because their id was already stored in this chain.
    pub duplicates: u64,
    /// The chain's head after the append.
    pub head: ChainHead,
}

/// Checks a chain id: 1..=128 bytes, no NUL.
///
/// # Errors
///
/// [`Error::InvalidEvent`] otherwise.
pub fn check_chain_id(chain_id: &str) -> Result<()> {
    if chain_id.is_empty() || chain_id.len() > 128 || chain_id.contains('\0') {
        return Err(Error::InvalidEvent(
            "chain id must be 1..=128 bytes without NUL".into(),
        ));
    }
    Ok(())
}

/// Normalises and validates a batch before it is linked.
pub(crate) fn prepare(chain_id: &str, events: &[AuditEvent]) -> Result<Vec<AuditEvent>> {
    check_chain_id(chain_id)?;
    events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.normalize();
            e.validate()?;
            Ok(e)
        })
        .collect()
}

/// Where audit events are kept.
///
/// # Contract
///
/// * [`append`](Self::append) links the batch, in order, at the end of the chain: each
///   event gets the next sequence number (gapless, from 1) and its hash over the previous
///   one (see [`crate::chain`]). Appends to one chain are serialised across every task and
///   every app instance sharing the backend; the chain never forks.
/// * Appending an event whose id the chain already holds is a no-op (counted as a
///   duplicate), so a retried delivery never duplicates an event. An id held by *another*
///   chain is an [`Error::IdConflict`]. A failed append stores nothing of the batch.
/// * Events are [normalised](AuditEvent::normalize) and validated first; what is stored,
///   returned and hashed is the normalised event.
/// * [`query`](Self::query) pages by keyset over (timestamp, id) in the requested order;
///   following `next_cursor` visits every matching event exactly once.
/// * [`read_chain`](Self::read_chain), [`head`](Self::head) and the checkpoint methods
///   return what is stored, unchecked: [`AuditChain`](crate::AuditChain) verifies it.
#[async_trait]
pub trait AuditStorage: Send + Sync + fmt::Debug {
    /// Links `events` into `chain_id`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEvent`] for an invalid event or chain id (nothing is stored),
    /// [`Error::IdConflict`], [`Error::Backend`] when the backend fails.
    async fn append(&self, chain_id: &str, events: &[AuditEvent]) -> Result<AppendReport>;

    /// One page of matching events.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad limit, [`Error::InvalidCursor`], [`Error::Backend`].
    async fn query(&self, query: &AuditQuery) -> Result<Page>;

    /// How many events match.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails.
    async fn count(&self, filter: &AuditFilter) -> Result<u64>;

    /// The chain's head, `None` for a chain never appended to.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails.
    async fn head(&self, chain_id: &str) -> Result<Option<ChainHead>>;

    /// Up to `limit` stored events of `chain_id` with `seq >= from_seq`, in sequence order.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails or a stored row does not decode.
    async fn read_chain(
        &self,
        chain_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;

    /// Stores a checkpoint (storing the same `(chain, seq, created_at)` twice is a no-op).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails.
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()>;

    /// The checkpoints of `chain_id` with `from_seq <= seq <= to_seq`, by seq then time.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails.
    async fn checkpoints(
        &self,
        chain_id: &str,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<Checkpoint>>;

    /// Retention: removes the events of `chain_id` with `seq <= through_seq` and records
    /// `(through_seq, through_hash)` in the head as the new start of the chain. Returns how
    /// many events were removed.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `through_seq` is beyond the head or before the previous cut;
    /// [`Error::Backend`] when the backend fails.
    async fn prune(&self, chain_id: &str, through_seq: u64, through_hash: Digest) -> Result<u64>;
}

macro_rules! forward_audit_storage {
    ($($ty:ty),+) => {$(
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<S: AuditStorage + ?Sized> AuditStorage for $ty {
            async fn append(&self, chain_id: &str, events: &[AuditEvent]) -> Result<AppendReport> {
                (**self).append(chain_id, events).await
            }
            async fn query(&self, query: &AuditQuery) -> Result<Page> {
                (**self).query(query).await
            }
            async fn count(&self, filter: &AuditFilter) -> Result<u64> {
                (**self).count(filter).await
            }
            async fn head(&self, chain_id: &str) -> Result<Option<ChainHead>> {
                (**self).head(chain_id).await
            }
            async fn read_chain(
                &self,
                chain_id: &str,
                from_seq: u64,
                limit: usize,
            ) -> Result<Vec<StoredEvent>> {
                (**self).read_chain(chain_id, from_seq, limit).await
            }
            async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
                (**self).put_checkpoint(checkpoint).await
            }
            async fn checkpoints(
                &self,
                chain_id: &str,
                from_seq: u64,
                to_seq: u64,
            ) -> Result<Vec<Checkpoint>> {
                (**self).checkpoints(chain_id, from_seq, to_seq).await
            }
            async fn prune(&self, chain_id: &str, through_seq: u64, through_hash: Digest) -> Result<u64> {
                (**self).prune(chain_id, through_seq, through_hash).await
            }
        }
    )+};
}

forward_audit_storage!(Arc<S>, Box<S>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            timestamp: DateTime::from_timestamp_micros(1_735_689_600_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        let s = c.encode(Order::NewestFirst);
        assert_eq!(Cursor::decode(&s, Order::NewestFirst).unwrap(), c);
        assert!(matches!(
            Cursor::decode(&s, Order::OldestFirst),
            Err(Error::InvalidCursor)
        ));
        for bad in ["", "!!", "djE6bjox", &URL_SAFE_NO_PAD.encode("v1:n:x:y")] {
            assert!(
                matches!(
                    Cursor::decode(bad, Order::NewestFirst),
                    Err(Error::InvalidCursor)
                ),
                "{bad}"
            );
        }
    }
}
