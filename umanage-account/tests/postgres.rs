//! Postgres-specific behaviour beyond the conformance suite: migrations, several app
//! instances (pools) sharing one table, and the table's own constraints.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]
#![cfg(feature = "postgres")]

use std::sync::Arc;

use umanage_account::{AccountError, AccountStore, NewAccount, PostgresAccountStore};
use umanage_core::testkit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_concurrent() {
    let Some(db) = testkit::postgres().await else {
        return;
    };
    let other = db.new_pool(2).await.unwrap();
    let (a, b) = tokio::join!(
        umanage_account::postgres::migrate(db.pool()),
        umanage_account::postgres::migrate(&other)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut applied = [a.applied.clone(), b.applied.clone()].concat();
    applied.sort_unstable();
    assert_eq!(applied, vec![1], "{a:?} {b:?}");
    let again = PostgresAccountStore::migrate(db.pool()).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.already_applied, vec![1]);
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM umanage_migrations WHERE component = 'umanage-account'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(recorded, 1);
}

/// Two instances (separate pools) racing for one username and one email: the unique
/// constraints decide, each loser gets the typed conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_unique_keys() {
    let Some(db) = testkit::postgres().await else {
        return;
    };
    umanage_account::postgres::migrate(db.pool()).await.unwrap();
    let first: Arc<dyn AccountStore> = Arc::new(PostgresAccountStore::new(db.pool().clone()));
    let second: Arc<dyn AccountStore> =
        Arc::new(PostgresAccountStore::new(db.new_pool(5).await.unwrap()));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(if i % 2 == 0 { &first } else { &second });
            tokio::spawn(async move {
                store
                    .create(NewAccount::new("Shared", format!("s{i}@example.com")))
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(AccountError::UsernameTaken) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(wins, 1);
    let from_second = second.find_by_login("shared").await.unwrap().unwrap();
    assert_eq!(first.get(from_second.id).await.unwrap(), Some(from_second));
}

/// What the crate computes is what the table holds: normalised keys, roles as `text[]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_hold_the_normalised_keys() {
    let Some(db) = testkit::postgres().await else {
        return;
    };
    umanage_account::postgres::migrate(db.pool()).await.unwrap();
    let store = PostgresAccountStore::new(db.pool().clone());
    let a = store
        .create(
            NewAccount::new("Ｎａｍｅ", "Mixed.Case@Example.COM")
                .role(umanage_account::Role::admin()),
        )
        .await
        .unwrap();
    let (username_key, email, email_key, roles): (String, String, String, Vec<String>) =
        sqlx::query_as(
            "SELECT username_key, email, email_key, roles FROM umanage_accounts WHERE id = $1",
        )
        .bind(a.id.into_uuid())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(username_key, "name");
    assert_eq!(email, "Mixed.Case@example.com");
    assert_eq!(email_key, "mixed.case@example.com");
    assert_eq!(roles, vec!["admin".to_owned()]);

    // The table rejects an inconsistent status even if written around the store.
    let err = sqlx::query("UPDATE umanage_accounts SET status = 'locked' WHERE id = $1")
        .bind(a.id.into_uuid())
        .execute(store.pool())
        .await
        .unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|d| d.code().map(std::borrow::Cow::into_owned));
    assert_eq!(code.as_deref(), Some("23514"), "{err}");
}
