//! The Postgres [`AuditStorage`].

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};
use umanage_core::BackendError;
use umanage_core::postgres::{Migration, MigrationReport, Migrator};
use uuid::Uuid;

use super::{AppendReport, AuditFilter, AuditQuery, AuditStorage, Cursor, Order, Page, prepare};
use crate::chain::{ChainHead, Checkpoint, Digest, StoredEvent, canonical_json};
use crate::error::{Error, Result};
use crate::model::AuditEvent;

/// The migrations of this crate (component `umanage-audit`).
pub static MIGRATOR: Migrator = Migrator::new(
    "umanage-audit",
    &[Migration {
        version: 1,
        description: "audit events, chain heads, checkpoints",
        sql: include_str!("../../migrations/0001_init.sql"),
    }],
);

/// Rows per `INSERT ... SELECT FROM UNNEST(...)` statement.
pub const INSERT_CHUNK: usize = 1000;

/// Audit storage in Postgres tables `umanage_audit_events`, `umanage_audit_chain_heads`
/// and `umanage_audit_checkpoints`.
///
/// Appends to a chain lock its head row (`SELECT ... FOR UPDATE`) for the transaction, so
/// they are serialised across every app instance; `UNIQUE (chain_id, seq)` makes a fork
/// impossible even if that were bypassed. Rows go in with `INSERT ... SELECT FROM
/// UNNEST($1::uuid[], ...)` in chunks of [`INSERT_CHUNK`]. Event timestamps are the ones
/// in the events (set from the host's injected clock), not the server's `now()`.
#[derive(Debug, Clone)]
pub struct PostgresAuditStorage {
    pool: PgPool,
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Config(format!("sequence number {v} exceeds i64")))
}

fn to_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| {
        Error::Backend(BackendError::Protocol(format!(
            "negative sequence number {v}"
        )))
    })
}

fn digest(row: &PgRow, col: &str) -> Result<Digest> {
    let bytes: Vec<u8> = row.try_get(col)?;
    Digest::from_slice(&bytes)
        .map_err(|_| Error::Backend(BackendError::Protocol(format!("{col} is not 32 bytes"))))
}

fn head_from_row(chain_id: &str, row: &PgRow) -> Result<ChainHead> {
    Ok(ChainHead {
        chain_id: chain_id.to_owned(),
        seq: to_u64(row.try_get("seq")?)?,
        hash: digest(row, "hash")?,
        pruned_seq: to_u64(row.try_get("pruned_seq")?)?,
        pruned_hash: digest(row, "pruned_hash")?,
    })
}

const EVENT_COLUMNS: &str = "chain_id, seq, prev_hash, hash, event::text AS event, ts, \
     event_type, severity, actor_id, target_id, result";

fn parse_enum<T: serde::de::DeserializeOwned>(text: String) -> Result<T> {
    Ok(serde_json::from_value(serde_json::Value::String(text))?)
}

/// Decodes a stored row. The indexed columns override the JSON's copies of them, so an
/// edited column shows up as a hash mismatch (what queries see is what is verified).
fn event_from_row(row: &PgRow) -> Result<StoredEvent> {
    let json: String = row.try_get("event")?;
    let mut event: AuditEvent = serde_json::from_str(&json)?;
    event.timestamp = row.try_get::<DateTime<Utc>, _>("ts")?;
    event.event_type = row.try_get("event_type")?;
    event.severity = parse_enum(row.try_get("severity")?)?;
    event.actor_id = row.try_get("actor_id")?;
    event.target_id = row.try_get("target_id")?;
    event.result = parse_enum(row.try_get("result")?)?;
    Ok(StoredEvent {
        chain_id: row.try_get("chain_id")?,
        seq: to_u64(row.try_get("seq")?)?,
        prev_hash: digest(row, "prev_hash")?,
        hash: digest(row, "hash")?,
        event,
    })
}

/// Appends `events` to `chain_id` on `conn`, inside whatever transaction `conn` is in.
///
/// Use it with the host's own transaction so a state change and its audit record commit
/// or roll back together:
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool, event: umanage_audit::AuditEvent) -> umanage_audit::Result<()> {
/// let mut tx = pool.begin().await?;
/// sqlx::query("UPDATE users SET role = 'admin' WHERE id = 42").execute(&mut *tx).await?;
/// umanage_audit::store::postgres::append_in_tx(&mut tx, "default", &[event]).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
///
/// The chain's head row stays locked until that transaction ends, so keep it short:
/// other appends to the same chain wait for it.
///
/// # Errors
///
/// As [`AuditStorage::append`]. On error, roll the transaction back.
#[tracing::instrument(level = "debug", skip(conn, events), fields(n = events.len()))]
pub async fn append_in_tx(
    conn: &mut PgConnection,
    chain_id: &str,
    events: &[AuditEvent],
) -> Result<AppendReport> {
    let events = prepare(chain_id, events)?;
    sqlx::query(
        "INSERT INTO umanage_audit_chain_heads (chain_id, seq, hash, pruned_seq, pruned_hash)
         VALUES ($1, 0, $2, 0, $2) ON CONFLICT (chain_id) DO NOTHING",
    )
    .bind(chain_id)
    .bind(Digest::ZERO.0.as_slice())
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query(
        "SELECT seq, hash, pruned_seq, pruned_hash FROM umanage_audit_chain_heads
         WHERE chain_id = $1 FOR UPDATE",
    )
    .bind(chain_id)
    .fetch_one(&mut *conn)
    .await?;
    let head = head_from_row(chain_id, &row)?;

    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let existing: HashMap<Uuid, String> =
        sqlx::query("SELECT id, chain_id FROM umanage_audit_events WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("chain_id")?)))
            .collect::<Result<_, sqlx::Error>>()?;
    if let Some((id, other)) = existing.iter().find(|(_, c)| c.as_str() != chain_id) {
        return Err(Error::IdConflict {
            id: *id,
            chain_id: other.clone(),
        });
    }

    let (mut seq, mut hash) = (head.seq, head.hash);
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut linked: Vec<(StoredEvent, String)> = Vec::with_capacity(events.len());
    for e in events {
        if existing.contains_key(&e.id) || !seen.insert(e.id) {
            duplicates += 1;
            continue;
        }
        let json = canonical_json(&e)?;
        let h = crate::chain::event_hash(chain_id, seq + 1, &hash, &json);
        let stored = StoredEvent {
            chain_id: chain_id.to_owned(),
            seq: seq + 1,
            prev_hash: hash,
            hash: h,
            event: e,
        };
        (seq, hash) = (stored.seq, stored.hash);
        let text =
            String::from_utf8(json).map_err(|e| Error::Backend(BackendError::serialization(e)))?;
        linked.push((stored, text));
    }
    for chunk in linked.chunks(INSERT_CHUNK) {
        let inserted = insert_chunk(&mut *conn, chunk).await?;
        if inserted.len() < chunk.len() {
            // Another transaction, appending to another chain (this chain's head is locked),
            // committed one of these ids after the check above. Name that chain; the caller
            // rolls back, so nothing of this batch is kept.
            return Err(lost_race(&mut *conn, chunk, &inserted).await);
        }
    }
    if !linked.is_empty() {
        sqlx::query("UPDATE umanage_audit_chain_heads SET seq = $2, hash = $3 WHERE chain_id = $1")
            .bind(chain_id)
            .bind(to_i64(seq)?)
            .bind(hash.0.as_slice())
            .execute(&mut *conn)
            .await?;
    }
    Ok(AppendReport {
        appended: linked.len() as u64,
        duplicates,
        head: ChainHead { seq, hash, ..head },
    })
}

/// The [`Error::IdConflict`] for an id of `chunk` that `insert_chunk` did not insert.
async fn lost_race(
    conn: &mut PgConnection,
    chunk: &[(StoredEvent, String)],
    inserted: &HashSet<Uuid>,
) -> Error {
    let Some(id) = chunk
        .iter()
        .map(|(s, _)| s.event.id)
        .find(|id| !inserted.contains(id))
    else {
        return Error::Backend(BackendError::Protocol(
            "audit insert reported fewer rows than it inserted".into(),
        ));
    };
    match sqlx::query_scalar::<_, String>("SELECT chain_id FROM umanage_audit_events WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
    {
        Ok(Some(chain_id)) => Error::IdConflict { id, chain_id },
        Ok(None) => Error::Backend(BackendError::Protocol(format!(
            "audit event {id} was neither inserted nor found"
        ))),
        Err(e) => e.into(),
    }
}

/// Inserts `chunk`, skipping ids that already exist (a concurrent append to another
/// chain), and returns the ids it inserted.
async fn insert_chunk(
    conn: &mut PgConnection,
    chunk: &[(StoredEvent, String)],
) -> Result<HashSet<Uuid>> {
    let n = chunk.len();
    let mut ids = Vec::with_capacity(n);
    let mut chains = Vec::with_capacity(n);
    let mut seqs = Vec::with_capacity(n);
    let mut ts = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut severities = Vec::with_capacity(n);
    let mut actors: Vec<Option<String>> = Vec::with_capacity(n);
    let mut targets: Vec<Option<String>> = Vec::with_capacity(n);
    let mut results = Vec::with_capacity(n);
    let mut prevs: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut hashes: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut jsons: Vec<&str> = Vec::with_capacity(n);
    for (s, json) in chunk {
        ids.push(s.event.id);
        chains.push(s.chain_id.as_str());
        seqs.push(to_i64(s.seq)?);
        ts.push(s.event.timestamp);
        types.push(s.event.event_type.as_str());
        severities.push(s.event.severity.as_str());
        actors.push(s.event.actor_id.clone());
        targets.push(s.event.target_id.clone());
        results.push(s.event.result.as_str());
        prevs.push(s.prev_hash.0.to_vec());
        hashes.push(s.hash.0.to_vec());
        jsons.push(json.as_str());
    }
    sqlx::query(
        "INSERT INTO umanage_audit_events
            (id, chain_id, seq, ts, event_type, severity, actor_id, target_id, result,
             prev_hash, hash, event)
         SELECT id, chain_id, seq, ts, event_type, severity, actor_id, target_id, result,
                prev_hash, hash, event::json
         FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::timestamptz[], $5::text[],
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::bytea[],
                     $11::bytea[], $12::text[])
           AS t(id, chain_id, seq, ts, event_type, severity, actor_id, target_id, result,
                prev_hash, hash, event)
         ON CONFLICT (id) DO NOTHING
         RETURNING id",
    )
    .bind(&ids)
    .bind(&chains)
    .bind(&seqs)
    .bind(&ts)
    .bind(&types)
    .bind(&severities)
    .bind(&actors)
    .bind(&targets)
    .bind(&results)
    .bind(&prevs)
    .bind(&hashes)
    .bind(&jsons)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.try_get::<Uuid, _>("id"))
    .collect::<Result<HashSet<_>, sqlx::Error>>()
    .map_err(Error::from)
}

fn push_filter(qb: &mut QueryBuilder<'_, Postgres>, f: &AuditFilter) {
    qb.push(" WHERE TRUE");
    if let Some(c) = &f.chain_id {
        qb.push(" AND chain_id = ").push_bind(c.clone());
    }
    if let Some(a) = &f.actor_id {
        qb.push(" AND actor_id = ").push_bind(a.clone());
    }
    if let Some(t) = &f.target_id {
        qb.push(" AND target_id = ").push_bind(t.clone());
    }
    if let Some(t) = &f.event_type {
        qb.push(" AND event_type = ").push_bind(t.clone());
    }
    if let Some(r) = f.result {
        qb.push(" AND result = ").push_bind(r.as_str());
    }
    if let Some(from) = f.from {
        qb.push(" AND ts >= ").push_bind(from);
    }
    if let Some(until) = f.until {
        qb.push(" AND ts < ").push_bind(until);
    }
}

impl PostgresAuditStorage {
    /// A store on `pool`. Run [`migrate`](Self::migrate) once first.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates the tables (idempotent; see [`Migrator::run`]).
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the migration fails.
    pub async fn migrate(pool: &PgPool) -> Result<MigrationReport, BackendError> {
        MIGRATOR.run(pool).await
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl AuditStorage for PostgresAuditStorage {
    #[tracing::instrument(level = "debug", skip(self, events), fields(n = events.len()))]
    async fn append(&self, chain_id: &str, events: &[AuditEvent]) -> Result<AppendReport> {
        let mut tx = self.pool.begin().await?;
        let report = append_in_tx(&mut tx, chain_id, events).await?;
        tx.commit().await?;
        Ok(report)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn query(&self, query: &AuditQuery) -> Result<Page> {
        let cursor = query.position()?;
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {EVENT_COLUMNS} FROM umanage_audit_events"
        ));
        push_filter(&mut qb, &query.filter);
        let (cmp, dir) = match query.order {
            Order::NewestFirst => ("<", "DESC"),
            Order::OldestFirst => (">", "ASC"),
        };
        if let Some(c) = cursor {
            qb.push(" AND (ts, id) ")
                .push(cmp)
                .push(" (")
                .push_bind(c.timestamp)
                .push(", ")
                .push_bind(c.id)
                .push(")");
        }
        qb.push(format!(" ORDER BY ts {dir}, id {dir} LIMIT "))
            .push_bind(i64::from(query.limit) + 1);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>>>()?;
        let more = events.len() > query.limit as usize;
        events.truncate(query.limit as usize);
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
        let mut qb = QueryBuilder::<Postgres>::new("SELECT count(*) FROM umanage_audit_events");
        push_filter(&mut qb, filter);
        let n: i64 = qb.build_query_scalar().fetch_one(&self.pool).await?;
        to_u64(n)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn head(&self, chain_id: &str) -> Result<Option<ChainHead>> {
        let row = sqlx::query(
            "SELECT seq, hash, pruned_seq, pruned_hash FROM umanage_audit_chain_heads
             WHERE chain_id = $1",
        )
        .bind(chain_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| head_from_row(chain_id, &r)).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn read_chain(
        &self,
        chain_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM umanage_audit_events
             WHERE chain_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3"
        ))
        .bind(chain_id)
        .bind(to_i64(from_seq)?)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn put_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO umanage_audit_checkpoints (chain_id, seq, hash, created_at, key_id, signature)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&cp.chain_id)
        .bind(to_i64(cp.seq)?)
        .bind(cp.hash.0.as_slice())
        .bind(cp.created_at)
        .bind(&cp.key_id)
        .bind(cp.signature.0.as_slice())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn checkpoints(
        &self,
        chain_id: &str,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<Checkpoint>> {
        let rows = sqlx::query(
            "SELECT seq, hash, created_at, key_id, signature FROM umanage_audit_checkpoints
             WHERE chain_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq, created_at",
        )
        .bind(chain_id)
        .bind(to_i64(from_seq)?)
        .bind(i64::try_from(to_seq).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    chain_id: chain_id.to_owned(),
                    seq: to_u64(r.try_get("seq")?)?,
                    hash: digest(r, "hash")?,
                    created_at: r.try_get("created_at")?,
                    key_id: r.try_get("key_id")?,
                    signature: digest(r, "signature")?,
                })
            })
            .collect()
    }

    #[tracing::instrument(level = "debug", skip(self, through_hash))]
    async fn prune(&self, chain_id: &str, through_seq: u64, through_hash: Digest) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT seq, hash, pruned_seq, pruned_hash FROM umanage_audit_chain_heads
             WHERE chain_id = $1 FOR UPDATE",
        )
        .bind(chain_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(Error::Config(format!("chain {chain_id} has no events")));
        };
        let head = head_from_row(chain_id, &row)?;
        if through_seq > head.seq || through_seq < head.pruned_seq {
            return Err(Error::Config(format!(
                "cannot prune through {through_seq}: chain holds {}..={}",
                head.pruned_seq + 1,
                head.seq
            )));
        }
        let removed =
            sqlx::query("DELETE FROM umanage_audit_events WHERE chain_id = $1 AND seq <= $2")
                .bind(chain_id)
                .bind(to_i64(through_seq)?)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query(
            "UPDATE umanage_audit_chain_heads SET pruned_seq = $2, pruned_hash = $3
             WHERE chain_id = $1",
        )
        .bind(chain_id)
        .bind(to_i64(through_seq)?)
        .bind(through_hash.0.as_slice())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(removed)
    }
}
