//! [`AuditChain`]: verification, signed checkpoints and retention over any storage.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::time::Duration;

use umanage_core::SharedClock;

use crate::chain::{
    BreakKind, ChainBreak, ChainHead, Checkpoint, Digest, Keyring, LOOKAHEAD, StoredEvent,
    VerifyReport, classify,
};
use crate::error::{Error, Result};
use crate::pipeline::AuditDestination;
use crate::store::{AuditStorage, check_chain_id};

/// Rows read per round trip while verifying or pruning.
const PAGE: usize = 1000;

/// What [`AuditChain::prune`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Events removed.
    pub removed: u64,
    /// Events handed to the archive destination before removal.
    pub archived: u64,
    /// The new first sequence number minus one (the signed cut).
    pub pruned_through: u64,
}

/// The integrity services of one storage: signs checkpoints, verifies chains, applies
/// retention. Time for checkpoints and retention cut-offs comes from the injected clock.
#[derive(Debug, Clone)]
pub struct AuditChain {
    storage: Arc<dyn AuditStorage>,
    keyring: Keyring,
    clock: SharedClock,
}

/// Stops the checkpoint task when dropped or [`stop`](Self::stop)ped.
#[derive(Debug)]
pub struct CheckpointerHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl CheckpointerHandle {
    /// Stops the task and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for CheckpointerHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl AuditChain {
    /// Integrity services over `storage`, signing with `keyring`.
    pub fn new(storage: Arc<dyn AuditStorage>, keyring: Keyring, clock: SharedClock) -> Self {
        Self {
            storage,
            keyring,
            clock,
        }
    }

    /// The storage.
    pub fn storage(&self) -> &Arc<dyn AuditStorage> {
        &self.storage
    }

    /// The storage itself: calling through `&Arc<dyn AuditStorage>` would pick the `Arc`
    /// forwarding impl and box every call's future twice.
    fn backend(&self) -> &dyn AuditStorage {
        &*self.storage
    }

    /// Signs and stores a checkpoint of the current head of `chain_id` (of the empty head
    /// when nothing was appended yet).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEvent`] for a bad chain id; [`Error::Backend`].
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn checkpoint(&self, chain_id: &str) -> Result<Checkpoint> {
        check_chain_id(chain_id)?;
        let head = self
            .backend()
            .head(chain_id)
            .await?
            .unwrap_or_else(|| ChainHead::empty(chain_id));
        let cp = self
            .keyring
            .sign(chain_id, head.seq, head.hash, self.clock.now());
        self.backend().put_checkpoint(&cp).await?;
        Ok(cp)
    }

    /// Spawns a task writing a checkpoint of each chain every `interval`, whether or not
    /// anything was appended. Failures are logged and retried at the next tick.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a zero interval or an invalid chain id.
    pub fn spawn_checkpointer(
        &self,
        chains: Vec<String>,
        interval: Duration,
    ) -> Result<CheckpointerHandle> {
        if interval.is_zero() {
            return Err(Error::Config("checkpoint interval must be > 0".into()));
        }
        for c in &chains {
            check_chain_id(c).map_err(|e| Error::Config(e.to_string()))?;
        }
        let this = self.clone();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    _ = tick.tick() => {
                        for c in &chains {
                            if let Err(err) = this.checkpoint(c).await {
                                tracing::warn!(chain = %c, error = %err, "audit checkpoint failed");
                            }
                        }
                    }
                }
            }
        });
        Ok(CheckpointerHandle {
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// Verifies the events of `chain_id` whose sequence numbers fall in `range` (`..` for
    /// the whole chain), and every checkpoint in it, returning the first broken link.
    ///
    /// The start is anchored on the previous stored event, or for a chain cut by
    /// retention on the signed cut ([`ChainHead::pruned_seq`]). With an open end the range
    /// runs to the head, and rows beyond the head count as [`BreakKind::Inserted`], a head
    /// beyond the last row as [`BreakKind::Deleted`].
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the storage fails. Tampering is reported in the
    /// [`VerifyReport`], not as an error.
    #[tracing::instrument(level = "debug", skip(self, range))]
    pub async fn verify(
        &self,
        chain_id: &str,
        range: impl RangeBounds<u64> + Send,
    ) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            chain_id: chain_id.to_owned(),
            events_checked: 0,
            checkpoints_checked: 0,
            first_break: None,
        };
        let Some(head) = self.backend().head(chain_id).await? else {
            return self.verify_empty(chain_id, report).await;
        };
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 1,
        }
        .max(head.pruned_seq + 1)
        .max(1);
        let (end, open_end) = match range.end_bound() {
            Bound::Included(e) => ((*e).min(head.seq), *e >= head.seq),
            Bound::Excluded(e) => (e.saturating_sub(1).min(head.seq), *e > head.seq),
            Bound::Unbounded => (head.seq, true),
        };
        let brk = |seq, kind| Some(ChainBreak { seq, kind });

        // The anchor: the signed retention cut, or the previous row.
        let (mut prev_seq, mut prev_hash) = if start == head.pruned_seq + 1 {
            if head.pruned_seq > 0 {
                let cut = self
                    .backend()
                    .checkpoints(chain_id, head.pruned_seq, head.pruned_seq)
                    .await?;
                report.checkpoints_checked += cut.len() as u64;
                let signed = cut
                    .iter()
                    .any(|cp| cp.hash == head.pruned_hash && self.keyring.verify(cp));
                if !signed {
                    report.first_break = brk(head.pruned_seq, BreakKind::CheckpointMismatch);
                    return Ok(report);
                }
            }
            (head.pruned_seq, head.pruned_hash)
        } else {
            match self
                .backend()
                .read_chain(chain_id, start - 1, 1)
                .await?
                .pop()
            {
                Some(p) if p.seq == start - 1 => (p.seq, p.hash),
                _ => {
                    report.first_break = brk(start - 1, BreakKind::Deleted);
                    return Ok(report);
                }
            }
        };
        if start > end {
            return Ok(report);
        }
        let mut prev_prev: Option<Digest> = None;

        let mut checkpoints: VecDeque<Checkpoint> = self
            .backend()
            .checkpoints(chain_id, start, u64::MAX)
            .await?
            .into();
        let mut window: VecDeque<StoredEvent> = VecDeque::new();
        let mut next_fetch = start;
        let mut exhausted = false;
        loop {
            while !exhausted && window.len() <= LOOKAHEAD {
                let rows = self
                    .backend()
                    .read_chain(chain_id, next_fetch, PAGE)
                    .await?;
                if rows.len() < PAGE {
                    exhausted = true;
                }
                if let Some(last) = rows.last() {
                    next_fetch = last.seq + 1;
                }
                window.extend(rows.into_iter().filter(|r| r.seq <= end));
                if next_fetch > end {
                    exhausted = true;
                }
            }
            let Some(r) = window.pop_front() else { break };
            let ahead = window.make_contiguous();
            let ahead = &ahead[..ahead.len().min(LOOKAHEAD)];
            if let Some(b) = classify(&r, prev_seq + 1, &prev_hash, prev_prev.as_ref(), ahead)? {
                report.first_break = Some(b);
                return Ok(report);
            }
            // Checkpoints at or before this row.
            while let Some(cp) = checkpoints.front() {
                if cp.seq > r.seq {
                    break;
                }
                report.checkpoints_checked += 1;
                let ok = self.keyring.verify(cp)
                    && (cp.seq == r.seq && cp.hash == r.hash
                        || cp.seq == prev_seq && cp.hash == prev_hash);
                if !ok {
                    report.first_break = brk(cp.seq, BreakKind::CheckpointMismatch);
                    return Ok(report);
                }
                checkpoints.pop_front();
            }
            report.events_checked += 1;
            prev_prev = Some(prev_hash);
            (prev_seq, prev_hash) = (r.seq, r.hash);
        }
        if prev_seq < end {
            report.first_break = brk(prev_seq + 1, BreakKind::Deleted);
            return Ok(report);
        }
        if open_end {
            // Rows beyond the head that no append recorded (re-reading the head so a
            // concurrent append is not mistaken for an insertion).
            let beyond = self.backend().read_chain(chain_id, head.seq + 1, 1).await?;
            if let Some(extra) = beyond.first() {
                let now_head = self.backend().head(chain_id).await?.map_or(0, |h| h.seq);
                if extra.seq > now_head {
                    report.first_break = brk(extra.seq, BreakKind::Inserted);
                    return Ok(report);
                }
            }
            // Checkpoints beyond the verified end: signed heads the rows no longer reach.
            for cp in checkpoints.iter().filter(|cp| cp.seq > end) {
                report.checkpoints_checked += 1;
                let now_head = self.backend().head(chain_id).await?.map_or(0, |h| h.seq);
                if cp.seq > now_head || !self.keyring.verify(cp) {
                    report.first_break = brk(cp.seq, BreakKind::CheckpointMismatch);
                    return Ok(report);
                }
            }
        }
        Ok(report)
    }

    async fn verify_empty(&self, chain_id: &str, mut report: VerifyReport) -> Result<VerifyReport> {
        // No head: any row or non-genesis checkpoint is foreign.
        if let Some(r) = self.backend().read_chain(chain_id, 0, 1).await?.first() {
            report.first_break = Some(ChainBreak {
                seq: r.seq,
                kind: BreakKind::Inserted,
            });
            return Ok(report);
        }
        for cp in self.backend().checkpoints(chain_id, 0, u64::MAX).await? {
            report.checkpoints_checked += 1;
            if cp.seq != 0 || cp.hash != Digest::ZERO || !self.keyring.verify(&cp) {
                report.first_break = Some(ChainBreak {
                    seq: cp.seq,
                    kind: BreakKind::CheckpointMismatch,
                });
                return Ok(report);
            }
        }
        Ok(report)
    }

    /// Retention: removes the events of `chain_id` older than `max_age` (by the injected
    /// clock), after handing them to `archive` when given. The cut is signed as a
    /// checkpoint first, so [`verify`](Self::verify) of what remains still succeeds.
    ///
    /// Events are removed in sequence order up to the last event older than the cut-off
    /// (a younger event earlier in the chain stops the cut there, keeping the chain whole).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when storage fails, or the archive's error (nothing is removed
    /// then).
    #[tracing::instrument(level = "debug", skip(self, archive))]
    pub async fn prune(
        &self,
        chain_id: &str,
        max_age: Duration,
        archive: Option<&dyn AuditDestination>,
    ) -> Result<PruneReport> {
        let cutoff = self.clock.now()
            - chrono::TimeDelta::from_std(max_age).unwrap_or(chrono::TimeDelta::MAX);
        let Some(head) = self.backend().head(chain_id).await? else {
            return Ok(PruneReport {
                removed: 0,
                archived: 0,
                pruned_through: 0,
            });
        };
        let mut through: Option<(u64, Digest)> = None;
        let mut archived = 0;
        let mut next = head.pruned_seq + 1;
        'scan: loop {
            let rows = self.backend().read_chain(chain_id, next, PAGE).await?;
            if rows.is_empty() {
                break;
            }
            let mut old = Vec::new();
            let mut stop = false;
            for r in &rows {
                if r.event.timestamp >= cutoff {
                    stop = true;
                    break;
                }
                old.push(r.event.clone());
                through = Some((r.seq, r.hash));
            }
            if let Some(a) = archive
                && !old.is_empty()
            {
                a.deliver(&old).await?;
                archived += old.len() as u64;
            }
            if stop || rows.len() < PAGE {
                break 'scan;
            }
            next = rows.last().map_or(next, |r| r.seq + 1);
        }
        let Some((seq, hash)) = through else {
            return Ok(PruneReport {
                removed: 0,
                archived,
                pruned_through: head.pruned_seq,
            });
        };
        let cp = self.keyring.sign(chain_id, seq, hash, self.clock.now());
        self.backend().put_checkpoint(&cp).await?;
        let removed = self.backend().prune(chain_id, seq, hash).await?;
        Ok(PruneReport {
            removed,
            archived,
            pruned_through: seq,
        })
    }
}
