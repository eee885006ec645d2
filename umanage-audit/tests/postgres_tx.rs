//! Writing audit events inside the host's own Postgres transaction.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::Arc;

use umanage_audit::store::postgres::append_in_tx;
use umanage_audit::{
    AuditChain, AuditEvent, AuditFilter, AuditStorage, CheckpointKey, Keyring,
    PostgresAuditStorage, event_types,
};
use umanage_core::{ManualClock, testkit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_change_and_audit_commit_or_roll_back_together() {
    let Some(db) = testkit::postgres().await else {
        return;
    };
    PostgresAuditStorage::migrate(db.pool()).await.unwrap();
    sqlx::query("CREATE TABLE app_users (id int PRIMARY KEY, role text NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    let storage = Arc::new(PostgresAuditStorage::new(db.pool().clone()));
    let clock = ManualClock::default();
    let event = || {
        AuditEvent::builder(event_types::USER_CREATED, &clock)
            .target("user", "1")
            .build()
            .unwrap()
    };

    // Rolled back: neither the user nor the event exists, and the chain has no gap.
    let mut tx = db.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO app_users VALUES (1, 'admin')")
        .execute(&mut *tx)
        .await
        .unwrap();
    append_in_tx(&mut tx, "c", &[event()]).await.unwrap();
    tx.rollback().await.unwrap();
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM app_users")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(users, 0);
    assert_eq!(storage.count(&AuditFilter::new()).await.unwrap(), 0);

    // Committed: both exist, and the event is seq 1 of an intact chain.
    let mut tx = db.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO app_users VALUES (1, 'admin')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let rep = append_in_tx(&mut tx, "c", &[event()]).await.unwrap();
    assert_eq!(rep.head.seq, 1);
    tx.commit().await.unwrap();
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM app_users")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(users, 1);
    storage.append("c", &[event()]).await.unwrap();
    assert_eq!(storage.count(&AuditFilter::new()).await.unwrap(), 2);
    let key = CheckpointKey::new("k", vec![3; 32]).unwrap();
    let chain = AuditChain::new(storage, Keyring::new(key), clock.shared());
    let r = chain.verify("c", ..).await.unwrap();
    assert!(r.is_intact() && r.events_checked == 2, "{r:?}");
}
