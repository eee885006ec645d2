//! The storage conformance suite on every backend, and through the forwarding impls.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::Arc;

use umanage_audit::testing::AuditHarness;

mod memory {
    use super::*;

    async fn harness() -> Option<AuditHarness> {
        Some(AuditHarness::memory())
    }
    umanage_audit::audit_storage_conformance!(harness);
}

/// The memory store behind `Arc<dyn _>` inside `Box<_>`: the forwarding impls keep the contract.
mod memory_forwarding {
    use super::*;
    use umanage_audit::{AuditStorage, MemoryAuditStorage};

    async fn harness() -> Option<AuditHarness> {
        let inner = Arc::new(MemoryAuditStorage::new());
        let boxed: Box<dyn AuditStorage> = Box::new(Arc::clone(&inner));
        let storage: Arc<dyn AuditStorage> = Arc::new(boxed);
        Some(AuditHarness::new(Arc::clone(&storage), storage, inner))
    }
    umanage_audit::audit_storage_conformance!(harness);
}

mod postgres {
    use super::*;
    use async_trait::async_trait;
    use sqlx::PgPool;
    use umanage_audit::testing::Tamper;
    use umanage_audit::{PostgresAuditStorage, StoredEvent};
    use umanage_core::testkit;

    /// Plays the attacker with plain SQL on the tables.
    #[derive(Debug)]
    struct SqlTamper(PgPool);

    #[async_trait]
    impl Tamper for SqlTamper {
        async fn edit_content(&self, chain: &str, seq: u64) {
            let done = sqlx::query(
                "UPDATE umanage_audit_events
                 SET event = (event::jsonb || '{\"actor_name\":\"mallory\"}')::json
                 WHERE chain_id = $1 AND seq = $2",
            )
            .bind(chain)
            .bind(seq as i64)
            .execute(&self.0)
            .await
            .unwrap();
            assert_eq!(done.rows_affected(), 1);
        }
        async fn delete(&self, chain: &str, seq: u64) {
            sqlx::query("DELETE FROM umanage_audit_events WHERE chain_id = $1 AND seq = $2")
                .bind(chain)
                .bind(seq as i64)
                .execute(&self.0)
                .await
                .unwrap();
        }
        async fn renumber(&self, chain: &str, from: u64, to: u64) {
            sqlx::query(
                "UPDATE umanage_audit_events SET seq = $3 WHERE chain_id = $1 AND seq = $2",
            )
            .bind(chain)
            .bind(from as i64)
            .bind(to as i64)
            .execute(&self.0)
            .await
            .unwrap();
        }
        async fn insert(&self, row: &StoredEvent) {
            let e = &row.event;
            sqlx::query(
                "INSERT INTO umanage_audit_events (id, chain_id, seq, ts, event_type, severity,
                     actor_id, target_id, result, prev_hash, hash, event)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::json)",
            )
            .bind(e.id)
            .bind(&row.chain_id)
            .bind(row.seq as i64)
            .bind(e.timestamp)
            .bind(&e.event_type)
            .bind(e.severity.as_str())
            .bind(&e.actor_id)
            .bind(&e.target_id)
            .bind(e.result.as_str())
            .bind(row.prev_hash.0.as_slice())
            .bind(row.hash.0.as_slice())
            .bind(String::from_utf8(umanage_audit::chain::canonical_json(e).unwrap()).unwrap())
            .execute(&self.0)
            .await
            .unwrap();
        }
        async fn overwrite(&self, row: &StoredEvent) {
            sqlx::query(
                "UPDATE umanage_audit_events SET prev_hash = $3, hash = $4, event = $5::json
                 WHERE chain_id = $1 AND seq = $2",
            )
            .bind(&row.chain_id)
            .bind(row.seq as i64)
            .bind(row.prev_hash.0.as_slice())
            .bind(row.hash.0.as_slice())
            .bind(
                String::from_utf8(umanage_audit::chain::canonical_json(&row.event).unwrap())
                    .unwrap(),
            )
            .execute(&self.0)
            .await
            .unwrap();
        }
        async fn corrupt_checkpoints(&self, chain: &str) {
            sqlx::query(
                "UPDATE umanage_audit_checkpoints
                 SET signature = set_byte(signature, 0, get_byte(signature, 0) # 1)
                 WHERE chain_id = $1",
            )
            .bind(chain)
            .execute(&self.0)
            .await
            .unwrap();
        }
    }

    async fn harness() -> Option<AuditHarness> {
        let db = testkit::postgres().await?;
        PostgresAuditStorage::migrate(db.pool()).await.unwrap();
        let storage = Arc::new(PostgresAuditStorage::new(db.pool().clone()));
        let second = Arc::new(PostgresAuditStorage::new(db.new_pool(4).await.unwrap()));
        let tamper = Arc::new(SqlTamper(db.pool().clone()));
        Some(AuditHarness::new(storage, second, tamper).with_guard(db))
    }
    umanage_audit::audit_storage_conformance!(harness);
}
