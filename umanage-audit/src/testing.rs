//! The [`AuditStorage`] conformance suite (feature `testing`).
//!
//! Plain async fns over an [`AuditHarness`], stamped out per backend by
//! [`audit_storage_conformance!`](crate::audit_storage_conformance):
//!
//! ```text
//! mod memory {
//!     async fn harness() -> Option<AuditHarness> { Some(AuditHarness::memory()) }
//!     umanage_audit::audit_storage_conformance!(harness);
//! }
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::unnecessary_wraps
)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use umanage_core::ManualClock;
use umanage_core::testkit::Guard;

use crate::chain::{BreakKind, ChainBreak, CheckpointKey, Keyring, StoredEvent};
use crate::model::{ActorType, AuditEvent, Outcome};
use crate::store::{AuditFilter, AuditQuery, AuditStorage, Order};
use crate::{AuditChain, Error};

/// Direct edits of stored rows, bypassing the chain: how the suite plays the attacker.
#[async_trait]
pub trait Tamper: Send + Sync + std::fmt::Debug {
    /// Changes the stored content of row `seq` without touching its hash.
    async fn edit_content(&self, chain: &str, seq: u64);
    /// Deletes row `seq`.
    async fn delete(&self, chain: &str, seq: u64);
    /// Renumbers row `from` to `to` (`to` must be free).
    async fn renumber(&self, chain: &str, from: u64, to: u64);
    /// Inserts `row` as is.
    async fn insert(&self, row: &StoredEvent);
    /// Replaces the event, prev_hash and hash of the row at `(row.chain_id, row.seq)`.
    async fn overwrite(&self, row: &StoredEvent);
    /// Corrupts the signature of every checkpoint of `chain`.
    async fn corrupt_checkpoints(&self, chain: &str);
}

/// What every case receives.
#[derive(Debug)]
pub struct AuditHarness {
    /// The storage under test.
    pub storage: Arc<dyn AuditStorage>,
    /// A second handle on the same data (another "app instance"; may be the same object).
    pub second: Arc<dyn AuditStorage>,
    /// Row editing for tamper tests.
    pub tamper: Arc<dyn Tamper>,
    /// The clock events are stamped with.
    pub clock: ManualClock,
    /// Keeps the namespace alive.
    pub guard: Guard,
}

impl AuditHarness {
    /// A harness over `storage`.
    pub fn new(
        storage: Arc<dyn AuditStorage>,
        second: Arc<dyn AuditStorage>,
        tamper: Arc<dyn Tamper>,
    ) -> Self {
        Self {
            storage,
            second,
            tamper,
            clock: ManualClock::default(),
            guard: Guard::none(),
        }
    }

    /// Keeps `guard` alive with the harness.
    #[must_use]
    pub fn with_guard(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self.guard = Guard::new(guard);
        self
    }

    /// A memory store.
    pub fn memory() -> Self {
        let store = Arc::new(crate::MemoryAuditStorage::new());
        Self::new(store.clone(), store.clone(), store)
    }

    fn chain(&self) -> AuditChain {
        let key = CheckpointKey::new("test-k1", vec![7u8; 32]).unwrap();
        AuditChain::new(
            Arc::clone(&self.storage),
            Keyring::new(key),
            self.clock.shared(),
        )
    }

    fn event(&self, i: usize) -> AuditEvent {
        self.clock.advance(Duration::from_millis(1));
        AuditEvent::builder(
            if i.is_multiple_of(3) {
                crate::event_types::LOGIN_FAILURE
            } else {
                crate::event_types::LOGIN_SUCCESS
            },
            &self.clock,
        )
        .actor(ActorType::User, format!("user-{}", i % 4))
        .target("account", format!("acct-{}", i % 2))
        .result(if i.is_multiple_of(3) {
            Outcome::Failure
        } else {
            Outcome::Success
        })
        .meta("i", i)
        .build()
        .unwrap()
    }

    async fn fill(&self, chain: &str, n: usize) -> Vec<AuditEvent> {
        let events: Vec<AuditEvent> = (0..n).map(|i| self.event(i)).collect();
        self.storage.append(chain, &events).await.unwrap();
        events
    }
}

#[cfg(feature = "memory")]
#[async_trait]
impl Tamper for crate::MemoryAuditStorage {
    async fn edit_content(&self, chain: &str, seq: u64) {
        self.edit_raw(chain, |rows, _| {
            let r = rows.iter_mut().find(|r| r.seq == seq).unwrap();
            r.event.actor_name = Some("mallory".into());
        });
    }
    async fn delete(&self, chain: &str, seq: u64) {
        self.edit_raw(chain, |rows, _| rows.retain(|r| r.seq != seq));
    }
    async fn renumber(&self, chain: &str, from: u64, to: u64) {
        self.edit_raw(chain, |rows, _| {
            rows.iter_mut().find(|r| r.seq == from).unwrap().seq = to;
        });
    }
    async fn insert(&self, row: &StoredEvent) {
        self.edit_raw(&row.chain_id, |rows, _| rows.push(row.clone()));
    }
    async fn overwrite(&self, row: &StoredEvent) {
        self.edit_raw(&row.chain_id, |rows, _| {
            *rows.iter_mut().find(|r| r.seq == row.seq).unwrap() = row.clone();
        });
    }
    async fn corrupt_checkpoints(&self, chain: &str) {
        self.edit_raw(chain, |_, cps| {
            for c in cps {
                c.signature.0[0] ^= 1;
            }
        });
    }
}

/// Stamps out every case for `$setup`, an `async fn() -> Option<AuditHarness>`.
#[macro_export]
macro_rules! audit_storage_conformance {
    ($setup:path) => {
        umanage_core::conformance_tests!(
            $setup;
            $crate::testing;
            append_links_a_gapless_chain,
            append_is_idempotent_by_event_id,
            an_id_in_another_chain_conflicts,
            an_invalid_batch_stores_nothing,
            what_is_stored_is_what_was_hashed,
            queries_filter_on_every_dimension,
            keyset_pages_visit_everything_once_in_both_orders,
            bad_cursors_and_limits_are_typed_errors,
            verify_detects_modified_rows,
            verify_detects_deleted_rows,
            verify_detects_inserted_rows,
            verify_detects_reordered_rows,
            verify_detects_checkpoint_mismatch,
            idle_chains_get_checkpoints,
            retention_keeps_the_rest_verifiable,
            verify_checks_a_sub_range,
            concurrent_writers_never_fork,
        );
    };
}

fn brk(seq: u64, kind: BreakKind) -> Option<ChainBreak> {
    Some(ChainBreak { seq, kind })
}

/// Three batches make one chain 1..=9 with each prev_hash the previous hash.
pub async fn append_links_a_gapless_chain(h: &AuditHarness) {
    for _ in 0..3 {
        let batch: Vec<_> = (0..3).map(|i| h.event(i)).collect();
        let rep = h.storage.append("c", &batch).await.unwrap();
        assert_eq!(rep.appended, 3);
    }
    let rows = h.storage.read_chain("c", 1, 100).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    assert_eq!(rows[0].prev_hash, crate::Digest::ZERO);
    for w in rows.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    let head = h.storage.head("c").await.unwrap().unwrap();
    assert_eq!((head.seq, head.hash), (9, rows[8].hash));
    assert!(h.storage.head("other").await.unwrap().is_none());
    let report = h.chain().verify("c", ..).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events_checked, 9);
}

/// Re-appending stored ids (and duplicates inside a batch) is a no-op.
pub async fn append_is_idempotent_by_event_id(h: &AuditHarness) {
    let events = h.fill("c", 5).await;
    let mut again = events.clone();
    again.push(events[0].clone());
    let rep = h.storage.append("c", &again).await.unwrap();
    assert_eq!((rep.appended, rep.duplicates, rep.head.seq), (0, 6, 5));
    let fresh = h.event(9);
    let rep = h
        .storage
        .append("c", &[fresh.clone(), fresh, events[1].clone()])
        .await
        .unwrap();
    assert_eq!((rep.appended, rep.duplicates, rep.head.seq), (1, 2, 6));
    assert_eq!(h.storage.count(&AuditFilter::new()).await.unwrap(), 6);
    assert!(h.chain().verify("c", ..).await.unwrap().is_intact());
}

/// An id stored in chain A cannot go to chain B.
pub async fn an_id_in_another_chain_conflicts(h: &AuditHarness) {
    let events = h.fill("a", 1).await;
    let err = h.storage.append("b", &events).await.unwrap_err();
    assert!(
        matches!(err, Error::IdConflict { ref chain_id, .. } if chain_id == "a"),
        "{err:?}"
    );
    assert_eq!(
        h.storage
            .count(&AuditFilter::new().chain("b"))
            .await
            .unwrap(),
        0
    );
}

/// One invalid event (or a bad chain id) fails the batch and stores nothing.
pub async fn an_invalid_batch_stores_nothing(h: &AuditHarness) {
    let good = h.event(1);
    let mut bad = h.event(2);
    bad.actor_name = Some("nul\0byte".into());
    let err = h
        .storage
        .append("c", &[good.clone(), bad])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidEvent(_)), "{err:?}");
    let err = h.storage.append("", &[good]).await.unwrap_err();
    assert!(matches!(err, Error::InvalidEvent(_)), "{err:?}");
    assert_eq!(h.storage.count(&AuditFilter::new()).await.unwrap(), 0);
    assert!(
        h.storage
            .head("c")
            .await
            .unwrap()
            .is_none_or(|hd| hd.seq == 0)
    );
}

/// Nanoseconds are cut before hashing; unicode, nested JSON and odd numbers survive.
pub async fn what_is_stored_is_what_was_hashed(h: &AuditHarness) {
    let mut e = h.event(1);
    e.timestamp += chrono::TimeDelta::nanoseconds(789);
    e.new_values = Some(
        serde_json::json!({"name": "Zoë 🚀", "n": [1.5, -0.0, 1e300, 12_345_678_901_234_567_u64], "q": "\"\\"}),
    );
    h.storage
        .append("c", std::slice::from_ref(&e))
        .await
        .unwrap();
    let stored = h
        .storage
        .read_chain("c", 1, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(stored.event.timestamp.timestamp_subsec_nanos() % 1000, 0);
    let mut expected = e;
    expected.normalize();
    assert_eq!(stored.event, expected);
    assert_eq!(stored.recompute().unwrap(), stored.hash);
    let page = h
        .storage
        .query(&AuditQuery::new(AuditFilter::new()))
        .await
        .unwrap();
    assert_eq!(page.events, vec![stored]);
}

/// Actor, target, type, result, time range and chain filters, alone and combined.
pub async fn queries_filter_on_every_dimension(h: &AuditHarness) {
    let start = umanage_core::Clock::now(&h.clock);
    let events = h.fill("c", 24).await;
    h.fill("d", 4).await;
    let count = |f: AuditFilter| async move { h.storage.count(&f).await.unwrap() };
    assert_eq!(count(AuditFilter::new()).await, 28);
    assert_eq!(count(AuditFilter::new().chain("c")).await, 24);
    assert_eq!(
        count(AuditFilter::new().chain("c").actor("user-1")).await,
        6
    );
    assert_eq!(
        count(AuditFilter::new().chain("c").target("acct-0")).await,
        12
    );
    assert_eq!(
        count(AuditFilter::new().chain("c").result(Outcome::Failure)).await,
        8
    );
    assert_eq!(
        count(
            AuditFilter::new()
                .chain("c")
                .event_type(crate::event_types::LOGIN_SUCCESS)
        )
        .await,
        16
    );
    assert_eq!(
        count(
            AuditFilter::new()
                .chain("c")
                .actor("user-0")
                .result(Outcome::Failure)
        )
        .await,
        2
    );
    let from = events[5].timestamp;
    let until = events[10].timestamp;
    assert_eq!(count(AuditFilter::new().between(from, until)).await, 5);
    assert_eq!(count(AuditFilter::new().between(start, start)).await, 0);
    let page = h
        .storage
        .query(
            &AuditQuery::new(AuditFilter::new().actor("user-2").chain("c"))
                .order(Order::OldestFirst),
        )
        .await
        .unwrap();
    let ids: Vec<_> = page.events.iter().map(|s| s.event.id).collect();
    let expected: Vec<_> = events
        .iter()
        .filter(|e| e.actor_id.as_deref() == Some("user-2"))
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, expected);
    assert!(page.next_cursor.is_none());
}

/// 25 events (some sharing a timestamp), pages of 7, both orders: each exactly once.
pub async fn keyset_pages_visit_everything_once_in_both_orders(h: &AuditHarness) {
    let mut events: Vec<AuditEvent> = (0..25).map(|i| h.event(i)).collect();
    let shared = events[10].timestamp;
    for e in &mut events[10..15] {
        e.timestamp = shared;
    }
    h.storage.append("c", &events).await.unwrap();
    let mut sorted: Vec<_> = events.iter().map(|e| (e.timestamp, e.id)).collect();
    sorted.sort();
    for order in [Order::OldestFirst, Order::NewestFirst] {
        let mut seen = Vec::new();
        let mut q = AuditQuery::new(AuditFilter::new()).order(order).limit(7);
        let mut pages = 0;
        loop {
            let page = h.storage.query(&q).await.unwrap();
            pages += 1;
            seen.extend(page.events.iter().map(|s| (s.event.timestamp, s.event.id)));
            match page.next_cursor {
                Some(c) => q = q.after(c),
                None => break,
            }
        }
        let mut expected = sorted.clone();
        if order == Order::NewestFirst {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order:?}");
        assert_eq!(pages, 4);
    }
}

/// A forged cursor, a cursor of the other order, and a limit of 0 or too large.
pub async fn bad_cursors_and_limits_are_typed_errors(h: &AuditHarness) {
    h.fill("c", 3).await;
    let page = h
        .storage
        .query(&AuditQuery::new(AuditFilter::new()).limit(1))
        .await
        .unwrap();
    let cursor = page.next_cursor.unwrap();
    let other = AuditQuery::new(AuditFilter::new())
        .order(Order::OldestFirst)
        .after(cursor);
    assert!(matches!(
        h.storage.query(&other).await,
        Err(Error::InvalidCursor)
    ));
    let forged = AuditQuery::new(AuditFilter::new()).after("not-a-cursor");
    assert!(matches!(
        h.storage.query(&forged).await,
        Err(Error::InvalidCursor)
    ));
    for limit in [0, crate::store::MAX_PAGE + 1] {
        let q = AuditQuery::new(AuditFilter::new()).limit(limit);
        assert!(
            matches!(h.storage.query(&q).await, Err(Error::Config(_))),
            "{limit}"
        );
    }
}

/// Editing a stored row's content is `Modified` at that row.
pub async fn verify_detects_modified_rows(h: &AuditHarness) {
    h.fill("c", 10).await;
    h.tamper.edit_content("c", 4).await;
    let r = h.chain().verify("c", ..).await.unwrap();
    assert_eq!(r.first_break, brk(4, BreakKind::Modified), "{r:?}");
}

/// Deleting a middle row, or the last row, is `Deleted`.
pub async fn verify_detects_deleted_rows(h: &AuditHarness) {
    h.fill("c", 10).await;
    h.tamper.delete("c", 6).await;
    let r = h.chain().verify("c", ..).await.unwrap();
    assert_eq!(r.first_break, brk(6, BreakKind::Deleted), "{r:?}");
    h.fill("t", 5).await;
    h.tamper.delete("t", 5).await;
    let r = h.chain().verify("t", ..).await.unwrap();
    assert_eq!(r.first_break, brk(5, BreakKind::Deleted), "{r:?}");
}

/// A forged row spliced in (later rows renumbered), or appended past the head, is `Inserted`.
pub async fn verify_detects_inserted_rows(h: &AuditHarness) {
    h.fill("c", 10).await;
    let rows = h.storage.read_chain("c", 1, 100).await.unwrap();
    for s in (4..=10).rev() {
        h.tamper.renumber("c", s, s + 1).await;
    }
    let forged = StoredEvent::link("c", 3, rows[2].hash, h.event(99)).unwrap();
    h.tamper.insert(&forged).await;
    let r = h.chain().verify("c", ..).await.unwrap();
    assert_eq!(r.first_break, brk(4, BreakKind::Inserted), "{r:?}");

    h.fill("t", 3).await;
    let last = h
        .storage
        .read_chain("t", 3, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let beyond = StoredEvent::link("t", 3, last.hash, h.event(98)).unwrap();
    h.tamper.insert(&beyond).await;
    let r = h.chain().verify("t", ..).await.unwrap();
    assert_eq!(r.first_break, brk(4, BreakKind::Inserted), "{r:?}");
}

/// Swapping two rows' places is `Reordered`.
pub async fn verify_detects_reordered_rows(h: &AuditHarness) {
    h.fill("c", 10).await;
    h.tamper.renumber("c", 5, 1000).await;
    h.tamper.renumber("c", 6, 5).await;
    h.tamper.renumber("c", 1000, 6).await;
    let r = h.chain().verify("c", ..).await.unwrap();
    assert_eq!(r.first_break, brk(5, BreakKind::Reordered), "{r:?}");
}

/// Rewriting the chain from some row with fresh hashes passes the links but not the
/// signed checkpoint; a corrupted signature fails too.
pub async fn verify_detects_checkpoint_mismatch(h: &AuditHarness) {
    let chain = h.chain();
    h.fill("c", 10).await;
    chain.checkpoint("c").await.unwrap();
    assert!(chain.verify("c", ..).await.unwrap().is_intact());
    let mut rows = h.storage.read_chain("c", 1, 100).await.unwrap();
    rows[3].event.actor_name = Some("mallory".into());
    for i in 3..rows.len() {
        let prev = rows[i - 1].hash;
        rows[i].prev_hash = prev;
        rows[i].hash = rows[i].recompute().unwrap();
        h.tamper.overwrite(&rows[i]).await;
    }
    let r = chain.verify("c", ..).await.unwrap();
    assert_eq!(
        r.first_break,
        brk(10, BreakKind::CheckpointMismatch),
        "{r:?}"
    );

    h.fill("s", 4).await;
    chain.checkpoint("s").await.unwrap();
    h.tamper.corrupt_checkpoints("s").await;
    let r = chain.verify("s", ..).await.unwrap();
    assert_eq!(
        r.first_break,
        brk(4, BreakKind::CheckpointMismatch),
        "{r:?}"
    );
}

/// The checkpointer signs heads at every tick, also of an idle or empty chain.
pub async fn idle_chains_get_checkpoints(h: &AuditHarness) {
    let chain = h.chain();
    h.fill("busy", 2).await;
    let handle = chain
        .spawn_checkpointer(
            vec!["busy".into(), "empty".into()],
            Duration::from_millis(40),
        )
        .unwrap();
    for _ in 0..4 {
        h.clock.advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    handle.stop().await;
    let busy = h.storage.checkpoints("busy", 0, u64::MAX).await.unwrap();
    let empty = h.storage.checkpoints("empty", 0, u64::MAX).await.unwrap();
    assert!(busy.len() >= 2, "{busy:?}");
    assert!(
        empty.len() >= 2 && empty.iter().all(|c| c.seq == 0),
        "{empty:?}"
    );
    assert!(busy.iter().all(|c| c.seq == 2));
    let r = chain.verify("busy", ..).await.unwrap();
    assert!(r.is_intact() && r.checkpoints_checked >= 2, "{r:?}");
    assert!(chain.verify("empty", ..).await.unwrap().is_intact());
    assert!(spawn_rejects_zero(&chain));
}

fn spawn_rejects_zero(chain: &AuditChain) -> bool {
    matches!(
        chain.spawn_checkpointer(vec![], Duration::ZERO),
        Err(Error::Config(_))
    )
}

/// Removing events older than N days leaves a chain that still verifies from the signed
/// cut; deleting the first remaining row afterwards is still caught.
pub async fn retention_keeps_the_rest_verifiable(h: &AuditHarness) {
    let chain = h.chain();
    h.fill("c", 10).await;
    h.clock.advance(Duration::from_secs(10 * 86_400));
    let young: Vec<_> = (0..5).map(|i| h.event(i)).collect();
    h.storage.append("c", &young).await.unwrap();
    let archive = crate::testing::CollectingDestination::default();
    let rep = chain
        .prune("c", Duration::from_secs(7 * 86_400), Some(&archive))
        .await
        .unwrap();
    assert_eq!(
        (rep.removed, rep.archived, rep.pruned_through),
        (10, 10, 10)
    );
    assert_eq!(archive.events.lock().len(), 10);
    assert_eq!(h.storage.count(&AuditFilter::new()).await.unwrap(), 5);
    let r = chain.verify("c", ..).await.unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.events_checked, 5);
    // Nothing more to prune; appends continue the chain.
    let rep = chain
        .prune("c", Duration::from_secs(7 * 86_400), None)
        .await
        .unwrap();
    assert_eq!(rep.removed, 0);
    h.fill("c", 2).await;
    assert!(chain.verify("c", ..).await.unwrap().is_intact());
    h.tamper.delete("c", 11).await;
    let r = chain.verify("c", ..).await.unwrap();
    assert_eq!(r.first_break, brk(11, BreakKind::Deleted), "{r:?}");
}

/// A sub-range verifies on its own, anchored on the row before it.
pub async fn verify_checks_a_sub_range(h: &AuditHarness) {
    let chain = h.chain();
    h.fill("c", 12).await;
    h.tamper.edit_content("c", 3).await;
    let r = chain.verify("c", 5..=8).await.unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.events_checked, 4);
    let r = chain.verify("c", 1..5).await.unwrap();
    assert_eq!(r.first_break, brk(3, BreakKind::Modified));
}

/// Tasks on two instances append to one chain at once: no gap, no fork, all there.
pub async fn concurrent_writers_never_fork(h: &AuditHarness) {
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = if t % 2 == 0 {
                Arc::clone(&h.storage)
            } else {
                Arc::clone(&h.second)
            };
            let batches: Vec<Vec<AuditEvent>> = (0..10)
                .map(|b| (0..5).map(|i| h.event(t * 100 + b * 5 + i)).collect())
                .collect();
            tokio::spawn(async move {
                for b in batches {
                    store.append("shared", &b).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let head = h.storage.head("shared").await.unwrap().unwrap();
    assert_eq!(head.seq, 400);
    assert_eq!(h.storage.count(&AuditFilter::new()).await.unwrap(), 400);
    let r = h.chain().verify("shared", ..).await.unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.events_checked, 400);
}

/// A destination keeping what it receives (for tests of archives and the logger).
#[derive(Debug, Default)]
pub struct CollectingDestination {
    /// Everything delivered, in order.
    pub events: parking_lot::Mutex<Vec<AuditEvent>>,
}

#[async_trait]
impl crate::AuditDestination for CollectingDestination {
    fn name(&self) -> &'static str {
        "collect"
    }
    async fn deliver(&self, events: &[AuditEvent]) -> crate::Result<()> {
        self.events.lock().extend_from_slice(events);
        Ok(())
    }
}
