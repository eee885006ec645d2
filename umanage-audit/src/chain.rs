//! The tamper-evident hash chain: canonical encoding, hashes, signed checkpoints, verification.
//!
//! # The chain
//!
//! Events are appended to a named chain (`chain_id`). The storage gives each a gapless
//! sequence number starting at 1 and a hash
//!
//! ```text
//! hash(n) = SHA-256( "umanage-audit/v1" 0x00
//!                    || u64be(len(chain_id)) || chain_id
//!                    || u64be(seq)
//!                    || prev_hash                       (32 bytes; 32 zero bytes for seq 1)
//!                    || u64be(len(J)) || J )
//! ```
//!
//! where `J` is the **canonical JSON** of the event: its serde serialisation (fields that
//! are `None` or empty are omitted), with the keys of every object sorted by their UTF-8
//! bytes at every level, no whitespace, strings escaped and numbers printed as serde_json
//! prints them. The event is [normalised](crate::AuditEvent::normalize) (microsecond
//! timestamp) before hashing, and the Postgres backend stores `J` byte-for-byte (a `json`
//! column, not `jsonb`), so what is hashed is exactly what is stored and re-read.
//!
//! # Checkpoints
//!
//! A [`Checkpoint`] signs the head of a chain (`seq`, `hash`) at a time with
//! HMAC-SHA256 under a key named by `key_id`:
//!
//! ```text
//! mac = HMAC-SHA256(key, "umanage-audit/checkpoint/v1" 0x00
//!                        || u64be(len(chain_id)) || chain_id || u64be(seq) || hash
//!                        || i64be(created_at, microseconds since the Unix epoch)
//!                        || u64be(len(key_id)) || key_id)
//! ```
//!
//! [`AuditChain::spawn_checkpointer`](crate::AuditChain::spawn_checkpointer) writes one
//! per chain every interval, even when nothing was appended (so an attacker cannot
//! silently truncate the tail and claim the log was idle). A [`Keyring`] holds the current
//! signing key and older keys for verification, so keys can be rotated.
//!
//! # What verification detects
//!
//! [`BreakKind`] names the first broken link: a row whose content no longer matches its
//! hash ([`Modified`](BreakKind::Modified)), a missing sequence number
//! ([`Deleted`](BreakKind::Deleted)), a foreign row spliced in
//! ([`Inserted`](BreakKind::Inserted)), rows whose order was changed
//! ([`Reordered`](BreakKind::Reordered)), or a checkpoint that is not validly signed or
//! does not match the row it signs ([`CheckpointMismatch`](BreakKind::CheckpointMismatch)),
//! which also catches a chain rewritten from some point on with freshly computed hashes.

use std::fmt;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::AuditEvent;

/// A SHA-256 value. Serialises as lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The `prev_hash` of the first event of a chain: 32 zero bytes.
    pub const ZERO: Self = Self([0; 32]);

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From a byte slice of length 32.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEvent`] for any other length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| Error::InvalidEvent(format!("a digest has 32 bytes, not {}", bytes.len())))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", hex::encode(self.0))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        Self::from_slice(&bytes).map_err(serde::de::Error::custom)
    }
}

/// An event as stored: its place in a chain and its hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredEvent {
    /// The chain.
    pub chain_id: String,
    /// The gapless sequence number (from 1).
    pub seq: u64,
    /// The hash of the previous event ([`Digest::ZERO`] for seq 1).
    pub prev_hash: Digest,
    /// This event's hash (see the [module docs](self)).
    pub hash: Digest,
    /// The event.
    pub event: AuditEvent,
}

impl StoredEvent {
    /// Links `event` after `(prev_seq, prev_hash)` in `chain_id`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] (serialisation) when the event cannot be encoded.
    pub fn link(
        chain_id: &str,
        prev_seq: u64,
        prev_hash: Digest,
        event: AuditEvent,
    ) -> Result<Self> {
        let seq = prev_seq + 1;
        let json = canonical_json(&event)?;
        let hash = event_hash(chain_id, seq, &prev_hash, &json);
        Ok(Self {
            chain_id: chain_id.to_owned(),
            seq,
            prev_hash,
            hash,
            event,
        })
    }

    /// Recomputes the hash from the stored content.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] (serialisation) when the event cannot be encoded.
    pub fn recompute(&self) -> Result<Digest> {
        Ok(event_hash(
            &self.chain_id,
            self.seq,
            &self.prev_hash,
            &canonical_json(&self.event)?,
        ))
    }
}

/// The canonical JSON bytes of an event (see the [module docs](self)).
///
/// # Errors
///
/// [`Error::Backend`] (serialisation) when the event cannot be encoded.
pub fn canonical_json(event: &AuditEvent) -> Result<Vec<u8>> {
    let value = serde_json::to_value(event)?;
    let mut out = Vec::with_capacity(512);
    write_canonical(&value, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out)?;
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

fn put_len_prefixed(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The chain hash of an event whose canonical JSON is `json`.
pub fn event_hash(chain_id: &str, seq: u64, prev_hash: &Digest, json: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(b"umanage-audit/v1\0");
    put_len_prefixed(&mut h, chain_id.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(prev_hash.0);
    put_len_prefixed(&mut h, json);
    Digest(h.finalize().into())
}

/// The head of a chain: its last sequence number and hash, and where retention cut it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// The chain.
    pub chain_id: String,
    /// The last sequence number (0 for an empty chain).
    pub seq: u64,
    /// The last hash ([`Digest::ZERO`] for an empty chain).
    pub hash: Digest,
    /// Events up to and including this sequence number were removed by retention.
    pub pruned_seq: u64,
    /// The hash of event `pruned_seq` (the `prev_hash` of the first remaining event).
    pub pruned_hash: Digest,
}

impl ChainHead {
    /// The head of a chain nothing was appended to.
    pub fn empty(chain_id: &str) -> Self {
        Self {
            chain_id: chain_id.to_owned(),
            seq: 0,
            hash: Digest::ZERO,
            pruned_seq: 0,
            pruned_hash: Digest::ZERO,
        }
    }
}

/// A signed statement "chain `chain_id` had head (`seq`, `hash`) at `created_at`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The chain.
    pub chain_id: String,
    /// The head's sequence number.
    pub seq: u64,
    /// The head's hash.
    pub hash: Digest,
    /// When it was signed (microsecond precision).
    pub created_at: DateTime<Utc>,
    /// Which key signed it.
    pub key_id: String,
    /// HMAC-SHA256 over the fields above (see the [module docs](self)).
    pub signature: Digest,
}

/// An HMAC key for checkpoints. The secret is zeroized on drop and never printed.
#[derive(Clone)]
pub struct CheckpointKey {
    id: String,
    secret: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl CheckpointKey {
    /// Shortest accepted secret, in bytes.
    pub const MIN_SECRET_LEN: usize = 32;

    /// A key named `id` with `secret` (at least [`MIN_SECRET_LEN`](Self::MIN_SECRET_LEN)
    /// bytes of random data).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an empty id or a short secret.
    pub fn new(id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Result<Self> {
        let id = id.into();
        let secret = Zeroizing::new(secret.into());
        if id.is_empty() || id.len() > 128 {
            return Err(Error::Config(
                "checkpoint key id must be 1..=128 bytes".into(),
            ));
        }
        if secret.len() < Self::MIN_SECRET_LEN {
            return Err(Error::Config(format!(
                "checkpoint key secret must be at least {} bytes",
                Self::MIN_SECRET_LEN
            )));
        }
        Ok(Self { id, secret })
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, chain_id: &str, seq: u64, hash: &Digest, at: DateTime<Utc>) -> Digest {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return Digest::ZERO;
        };
        mac.update(b"umanage-audit/checkpoint/v1\0");
        mac.update(&(chain_id.len() as u64).to_be_bytes());
        mac.update(chain_id.as_bytes());
        mac.update(&seq.to_be_bytes());
        mac.update(&hash.0);
        mac.update(&at.timestamp_micros().to_be_bytes());
        mac.update(&(self.id.len() as u64).to_be_bytes());
        mac.update(self.id.as_bytes());
        Digest(mac.finalize().into_bytes().into())
    }
}

/// The signing key and the keys older checkpoints may be signed with.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: CheckpointKey,
    previous: Vec<CheckpointKey>,
}

impl Keyring {
    /// A keyring signing with `current`.
    pub fn new(current: CheckpointKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Adds a retired key, still accepted when verifying.
    #[must_use]
    pub fn with_previous(mut self, key: CheckpointKey) -> Self {
        self.previous.push(key);
        self
    }

    /// Signs the head `(seq, hash)` of `chain_id` at `at` (truncated to microseconds).
    pub fn sign(&self, chain_id: &str, seq: u64, hash: Digest, at: DateTime<Utc>) -> Checkpoint {
        use chrono::SubsecRound as _;
        let created_at = at.trunc_subsecs(6);
        Checkpoint {
            chain_id: chain_id.to_owned(),
            seq,
            hash,
            created_at,
            key_id: self.current.id.clone(),
            signature: self.current.mac(chain_id, seq, &hash, created_at),
        }
    }

    /// True when `cp` carries a valid signature of a known key (constant-time compare).
    pub fn verify(&self, cp: &Checkpoint) -> bool {
        use subtle::ConstantTimeEq as _;
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == cp.key_id)
            .is_some_and(|k| {
                let expected = k.mac(&cp.chain_id, cp.seq, &cp.hash, cp.created_at);
                bool::from(expected.0.ct_eq(&cp.signature.0))
            })
    }
}

/// What kind of tampering a broken link shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The row's content (or its hash) no longer matches: it was edited.
    Modified,
    /// A sequence number is missing (rows deleted), or rows were deleted and the rest
    /// renumbered, or the tail was cut below the recorded head.
    Deleted,
    /// A row that was never appended sits in the chain (or beyond the recorded head).
    Inserted,
    /// Rows are present but in a different order.
    Reordered,
    /// A checkpoint is not validly signed by a known key, or disagrees with the row it signs.
    CheckpointMismatch,
}

/// The first broken link found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainBreak {
    /// Where (the sequence number of the first row that is wrong or missing).
    pub seq: u64,
    /// What kind of tampering.
    pub kind: BreakKind,
}

/// What [`AuditChain::verify`](crate::AuditChain::verify) found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The chain.
    pub chain_id: String,
    /// Events checked.
    pub events_checked: u64,
    /// Checkpoints checked.
    pub checkpoints_checked: u64,
    /// The first broken link, or `None` when the range is intact.
    pub first_break: Option<ChainBreak>,
}

impl VerifyReport {
    /// True when no link is broken.
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }
}

/// How far ahead verification looks to tell a reordering from a modification.
pub(crate) const LOOKAHEAD: usize = 8;

/// Classifies the record `r` at the front of the window, given the previous record's
/// hash and the one before it. Returns `None` when the link is intact.
pub(crate) fn classify(
    r: &StoredEvent,
    expected_seq: u64,
    prev_hash: &Digest,
    prev_prev_hash: Option<&Digest>,
    ahead: &[StoredEvent],
) -> Result<Option<ChainBreak>> {
    if r.seq > expected_seq {
        return Ok(Some(ChainBreak {
            seq: expected_seq,
            kind: BreakKind::Deleted,
        }));
    }
    if r.seq < expected_seq {
        return Ok(Some(ChainBreak {
            seq: r.seq,
            kind: BreakKind::Inserted,
        }));
    }
    let content_ok = r.recompute()? == r.hash;
    let link_ok = r.prev_hash == *prev_hash;
    let brk = |seq, kind| Ok(Some(ChainBreak { seq, kind }));
    match (link_ok, content_ok) {
        (true, true) => Ok(None),
        (true, false) => brk(r.seq, BreakKind::Modified),
        (false, _) => {
            if ahead.iter().any(|x| x.hash == r.prev_hash) {
                return brk(r.seq, BreakKind::Reordered);
            }
            if prev_prev_hash == Some(&r.prev_hash) {
                return brk(r.seq - 1, BreakKind::Inserted);
            }
            if !content_ok {
                let json = canonical_json(&r.event)?;
                let renumbered = (1..=LOOKAHEAD as u64)
                    .any(|d| event_hash(&r.chain_id, r.seq + d, &r.prev_hash, &json) == r.hash);
                if renumbered {
                    return brk(r.seq, BreakKind::Deleted);
                }
                return brk(r.seq, BreakKind::Modified);
            }
            // This row is self-consistent but does not follow its predecessor: the
            // predecessor was rewritten with a recomputed hash.
            brk(r.seq - 1, BreakKind::Modified)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use umanage_core::ManualClock;

    fn chain(n: u64) -> Vec<StoredEvent> {
        let clock = ManualClock::default();
        let mut out: Vec<StoredEvent> = Vec::new();
        for i in 0..n {
            let e = AuditEvent::builder("t.x", &clock)
                .meta("i", i)
                .build()
                .unwrap();
            let (seq, hash) = out.last().map_or((0, Digest::ZERO), |p| (p.seq, p.hash));
            out.push(StoredEvent::link("c", seq, hash, e).unwrap());
        }
        out
    }

    fn first_break(rows: &[StoredEvent]) -> Option<ChainBreak> {
        let mut prev = (0, Digest::ZERO);
        let mut prev_prev = None;
        for (i, r) in rows.iter().enumerate() {
            let ahead = &rows[i + 1..rows.len().min(i + 1 + LOOKAHEAD)];
            if let Some(b) = classify(r, prev.0 + 1, &prev.1, prev_prev.as_ref(), ahead).unwrap() {
                return Some(b);
            }
            prev_prev = Some(prev.1);
            prev = (r.seq, r.hash);
        }
        None
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let clock = ManualClock::default();
        let e = AuditEvent::builder("t.x", &clock)
            .meta("b", serde_json::json!({"z": 1, "a": [{"y": 2, "x": 1}]}))
            .meta("a", 1)
            .build()
            .unwrap();
        let json = String::from_utf8(canonical_json(&e).unwrap()).unwrap();
        assert!(
            json.contains(r#""metadata":{"a":1,"b":{"a":[{"x":1,"y":2}],"z":1}}"#),
            "{json}"
        );
        assert!(!json.contains(' '));
        // keys in byte order: action < actor_type < event_type < id < metadata ...
        let positions: Vec<usize> = [
            "\"action\"",
            "\"actor_type\"",
            "\"event_type\"",
            "\"id\"",
            "\"metadata\"",
        ]
        .iter()
        .map(|k| json.find(k).unwrap())
        .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
    }

    #[test]
    fn hash_is_sha256_of_the_documented_encoding() {
        let json = br#"{"a":1}"#;
        let mut input = b"umanage-audit/v1\0".to_vec();
        input.extend_from_slice(&1u64.to_be_bytes());
        input.extend_from_slice(b"c");
        input.extend_from_slice(&7u64.to_be_bytes());
        input.extend_from_slice(&[0; 32]);
        input.extend_from_slice(&(json.len() as u64).to_be_bytes());
        input.extend_from_slice(json);
        let expected: [u8; 32] = Sha256::digest(&input).into();
        assert_eq!(event_hash("c", 7, &Digest::ZERO, json).0, expected);
    }

    #[test]
    fn each_tamper_kind_is_classified_in_memory() {
        let rows = chain(10);
        assert_eq!(first_break(&rows), None);

        let mut modified = rows.clone();
        modified[4].event.actor_name = Some("mallory".into());
        assert_eq!(
            first_break(&modified),
            Some(ChainBreak {
                seq: 5,
                kind: BreakKind::Modified
            })
        );

        let mut deleted = rows.clone();
        deleted.remove(3);
        assert_eq!(
            first_break(&deleted),
            Some(ChainBreak {
                seq: 4,
                kind: BreakKind::Deleted
            })
        );

        let mut renumbered = rows.clone();
        renumbered.remove(3);
        for r in &mut renumbered[3..] {
            r.seq -= 1;
        }
        assert_eq!(
            first_break(&renumbered),
            Some(ChainBreak {
                seq: 4,
                kind: BreakKind::Deleted
            })
        );

        let mut reordered = rows.clone();
        reordered.swap(5, 6);
        reordered[5].seq = 6;
        reordered[6].seq = 7;
        assert_eq!(
            first_break(&reordered),
            Some(ChainBreak {
                seq: 6,
                kind: BreakKind::Reordered
            })
        );

        let mut inserted = rows.clone();
        let clock = ManualClock::default();
        let forged = AuditEvent::builder("t.forged", &clock).build().unwrap();
        let f = StoredEvent::link("c", 3, rows[2].hash, forged).unwrap();
        inserted.insert(3, f);
        for r in &mut inserted[4..] {
            r.seq += 1;
        }
        assert_eq!(
            first_break(&inserted),
            Some(ChainBreak {
                seq: 4,
                kind: BreakKind::Inserted
            })
        );

        let mut rehashed = rows;
        rehashed[2].event.actor_name = Some("mallory".into());
        rehashed[2].hash = rehashed[2].recompute().unwrap();
        assert_eq!(
            first_break(&rehashed),
            Some(ChainBreak {
                seq: 3,
                kind: BreakKind::Modified
            })
        );
    }

    #[test]
    fn checkpoints_sign_and_verify_with_rotation() {
        let old = CheckpointKey::new("k1", vec![1; 32]).unwrap();
        let new = CheckpointKey::new("k2", vec![2; 32]).unwrap();
        let at = ManualClock::default().now();
        let cp_old = Keyring::new(old.clone()).sign("c", 3, Digest([9; 32]), at);
        let ring = Keyring::new(new.clone()).with_previous(old);
        assert!(ring.verify(&cp_old));
        let cp = ring.sign("c", 4, Digest([8; 32]), at);
        assert_eq!(cp.key_id, "k2");
        assert!(ring.verify(&cp));
        let mut forged = cp.clone();
        forged.seq = 5;
        assert!(!ring.verify(&forged));
        assert!(!Keyring::new(new).verify(&cp_old), "unknown key accepted");
        assert!(CheckpointKey::new("k", vec![0; 8]).is_err());
        let dbg = format!("{ring:?}");
        assert!(
            dbg.contains("[redacted]") && !dbg.contains("[1, 1"),
            "{dbg}"
        );
    }

    use umanage_core::Clock as _;
}
