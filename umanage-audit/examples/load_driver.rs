//! Ingest and query load driver against a live Postgres.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test AUDIT_ROWS=200000 \
//!   cargo run --release -p umanage-audit --features postgres --example load_driver
//! ```
//!
//! In one run, into identical tables (same columns, constraints and indexes):
//!
//! * `chained`: `PostgresAuditStorage::append` in batches of `AUDIT_BATCH` (default 1000):
//!   head-row lock, duplicate check, SHA-256 chaining, UNNEST insert, one commit per batch;
//! * `copy_binary`: the same rows (hashes precomputed) in one binary `COPY ... FROM STDIN`,
//!   encoding included in the time;
//! * `insert_row`: one autocommitted `INSERT` per row, capped at `AUDIT_MAX_S` seconds
//!   (default 8; the rate is rows done / time taken);
//! * `query_actor`: newest-first pages of 50 for a random actor (1024 actors) over the
//!   chained table, `AUDIT_QUERIES` times (default 2000): p50 / p95 / p99 latency.
//!
//! Everything runs in a fresh schema that is dropped at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use umanage_audit::store::postgres::PostgresAuditStorage;
use umanage_audit::{
    ActorType, AuditEvent, AuditFilter, AuditQuery, AuditStorage, Digest, Outcome, StoredEvent,
};
use umanage_core::ManualClock;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";
const TYPES: [&str; 8] = [
    "auth.login.success",
    "auth.logout",
    "auth.password.changed",
    "user.created",
    "user.updated",
    "authz.role.granted",
    "session.revoked",
    "auth.mfa.success",
];

fn make_events(n: usize) -> Vec<AuditEvent> {
    let clock = ManualClock::default();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            clock.advance(Duration::from_micros(37));
            AuditEvent::builder(TYPES[(x >> 3) as usize & 7], &clock)
                .actor(ActorType::User, format!("actor-{}", (x >> 6) & 1023))
                .target("user", format!("user-{}", x % 1_000_003))
                .result(if x.trailing_zeros() >= 3 {
                    Outcome::Failure
                } else {
                    Outcome::Success
                })
                .ip(std::net::IpAddr::from([
                    1 + ((x >> 40) % 223) as u8,
                    (x >> 48) as u8,
                    (x >> 56) as u8,
                    1 + ((x >> 8) % 254) as u8,
                ]))
                .user_agent(UA)
                .request_id(format!("{:032x}", u128::from(x) * 31 + i as u128))
                .method(["GET", "POST", "PUT", "DELETE"][(x >> 20) as usize & 3])
                .resource(format!("/api/v1/users/{}/credentials", x % 1_000_003))
                .duration(Duration::from_millis(1 + (x >> 22) % 900))
                .meta(
                    "region",
                    ["eu-west-1", "us-east-1", "ap-south-1", "sa-east-1"][(x >> 33) as usize & 3],
                )
                .build()
                .unwrap()
        })
        .collect()
}

/// PostgreSQL binary COPY encoding of the events table's columns.
fn encode_copy(rows: &[StoredEvent]) -> Vec<u8> {
    const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
    let mut out = Vec::with_capacity(rows.len() * 700);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    let field = |out: &mut Vec<u8>, bytes: Option<&[u8]>| match bytes {
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    };
    for r in rows {
        let e = &r.event;
        let json = umanage_audit::chain::canonical_json(e).unwrap();
        out.extend_from_slice(&12i16.to_be_bytes());
        field(&mut out, Some(e.id.as_bytes()));
        field(&mut out, Some(r.chain_id.as_bytes()));
        field(&mut out, Some(&(r.seq as i64).to_be_bytes()));
        field(
            &mut out,
            Some(&(e.timestamp.timestamp_micros() - PG_EPOCH_MICROS).to_be_bytes()),
        );
        field(&mut out, Some(e.event_type.as_bytes()));
        field(&mut out, Some(e.severity.as_str().as_bytes()));
        field(&mut out, e.actor_id.as_deref().map(str::as_bytes));
        field(&mut out, e.target_id.as_deref().map(str::as_bytes));
        field(&mut out, Some(e.result.as_str().as_bytes()));
        field(&mut out, Some(r.prev_hash.as_bytes()));
        field(&mut out, Some(r.hash.as_bytes()));
        field(&mut out, Some(&json));
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::var("DATABASE_URL")
        .or_else(|_| std::env::var("UMANAGE_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let rows = env_num("AUDIT_ROWS", 200_000) as usize;
    let batch = env_num("AUDIT_BATCH", 1000) as usize;
    let max_s = env_num("AUDIT_MAX_S", 8);
    let queries = env_num("AUDIT_QUERIES", 2000) as usize;

    let schema = format!("umanage_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let opts: PgConnectOptions = url.parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(opts.options([("search_path", schema.as_str())]))
        .await
        .unwrap();
    PostgresAuditStorage::migrate(&pool).await.unwrap();
    for t in ["bench_copy", "bench_insert"] {
        sqlx::query(&format!(
            "CREATE TABLE {t} (LIKE umanage_audit_events INCLUDING ALL)"
        ))
        .execute(&pool)
        .await
        .unwrap();
    }
    eprintln!("generating {rows} events");
    let events = make_events(rows);
    let mut linked = Vec::with_capacity(rows);
    let mut prev = (0, Digest::ZERO);
    for e in &events {
        let s = StoredEvent::link("bench", prev.0, prev.1, e.clone()).unwrap();
        prev = (s.seq, s.hash);
        linked.push(s);
    }

    // chained
    let storage = PostgresAuditStorage::new(pool.clone());
    let t = Instant::now();
    for chunk in events.chunks(batch) {
        storage.append("bench", chunk).await.unwrap();
    }
    let chained = rows as f64 / t.elapsed().as_secs_f64();
    println!("audit_chained_batch{batch} {chained:.0} events_per_sec");

    // binary COPY
    let mut conn = pool.acquire().await.unwrap();
    let t = Instant::now();
    let buf = encode_copy(&linked);
    let mut copy = conn
        .copy_in_raw("COPY bench_copy FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    copy.send(buf).await.unwrap();
    let n = copy.finish().await.unwrap();
    let copy_rate = n as f64 / t.elapsed().as_secs_f64();
    drop(conn);
    println!("audit_copy_binary {copy_rate:.0} rows_per_sec");

    // one INSERT per row
    let t = Instant::now();
    let mut done = 0usize;
    for r in &linked {
        let e = &r.event;
        sqlx::query(
            "INSERT INTO bench_insert (id, chain_id, seq, ts, event_type, severity, actor_id,
                 target_id, result, prev_hash, hash, event)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::json)",
        )
        .bind(e.id)
        .bind(&r.chain_id)
        .bind(r.seq as i64)
        .bind(e.timestamp)
        .bind(&e.event_type)
        .bind(e.severity.as_str())
        .bind(&e.actor_id)
        .bind(&e.target_id)
        .bind(e.result.as_str())
        .bind(r.prev_hash.as_bytes().as_slice())
        .bind(r.hash.as_bytes().as_slice())
        .bind(String::from_utf8(umanage_audit::chain::canonical_json(e).unwrap()).unwrap())
        .execute(&pool)
        .await
        .unwrap();
        done += 1;
        if t.elapsed().as_secs() >= max_s {
            break;
        }
    }
    let per_row = done as f64 / t.elapsed().as_secs_f64();
    println!("audit_insert_row {per_row:.0} rows_per_sec ({done} rows)");
    println!(
        "ratios: chained/copy_binary {:.2}, chained/insert_row {:.1}",
        chained / copy_rate,
        chained / per_row
    );

    // query by actor
    sqlx::query("ANALYZE umanage_audit_events")
        .execute(&pool)
        .await
        .unwrap();
    let mut lat = Vec::with_capacity(queries);
    let mut x: u64 = 12345;
    for _ in 0..queries {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let actor = format!("actor-{}", (x >> 33) % 1024);
        let t = Instant::now();
        let page = storage
            .query(&AuditQuery::new(AuditFilter::new().actor(actor)).limit(50))
            .await
            .unwrap();
        lat.push(t.elapsed());
        assert!(!page.events.is_empty());
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "audit_query_actor_page50 over {rows} events: p50 {:?} p95 {:?} p99 {:?}",
        pct(0.50),
        pct(0.95),
        pct(0.99)
    );
    drop(storage);
    pool.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
        .unwrap();
}
