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

/// Two transactions append the same event id to two chains at once. Each locks only its
/// own chain's head, so both pass the "is this id stored elsewhere" check; the second to
/// insert must still get `IdConflict` naming the first chain (not a unique-violation
/// backend error), and keep nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_id_racing_on_two_chains_is_an_id_conflict() {
    let Some(db) = testkit::postgres().await else {
        return;
    };
    PostgresAuditStorage::migrate(db.pool()).await.unwrap();
    let storage = PostgresAuditStorage::new(db.pool().clone());
    let clock = ManualClock::default();
    let event = AuditEvent::builder(event_types::USER_CREATED, &clock)
        .target("user", "1")
        .build()
        .unwrap();

    // First transaction: inserted, not yet committed.
    let mut first = db.pool().begin().await.unwrap();
    append_in_tx(&mut first, "a", std::slice::from_ref(&event))
        .await
        .unwrap();

    // Second transaction on another chain: passes the existence check (the first row is
    // not committed) and then waits on the id's unique index.
    let pool = db.pool().clone();
    let second_event = event.clone();
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let res = append_in_tx(&mut tx, "b", &[second_event]).await;
        tx.rollback().await.unwrap();
        res
    });
    // Let the second append reach the insert and block there.
    let mut waiting = false;
    for _ in 0..200 {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock'
               AND application_name = current_setting('application_name')
               AND query LIKE 'INSERT INTO umanage_audit_events%'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        if n > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        waiting,
        "the second append never waited on the first one's row"
    );
    first.commit().await.unwrap();

    let err = second.await.unwrap().unwrap_err();
    assert!(
        matches!(err, umanage_audit::Error::IdConflict { id, ref chain_id } if id == event.id && chain_id == "a"),
        "{err:?}"
    );
    // Chain "a" holds the event once; chain "b" got nothing and still verifies.
    assert_eq!(storage.count(&AuditFilter::new()).await.unwrap(), 1);
    let b = storage.count(&AuditFilter::new().chain("b")).await.unwrap();
    assert_eq!(b, 0);
}
