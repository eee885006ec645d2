//! The migration runner and the schema-per-test kit against a live Postgres.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use umanage_core::BackendError;
use umanage_core::postgres::{Migration, Migrator};
use umanage_core::testkit;

static WIDGETS_V1: Migrator = Migrator::new(
    "test-widgets",
    &[Migration {
        version: 1,
        description: "widgets",
        sql: "CREATE TABLE umanage_widgets (id bigint PRIMARY KEY); INSERT INTO umanage_widgets VALUES (1);",
    }],
);

static WIDGETS_V2: Migrator = Migrator::new(
    "test-widgets",
    &[
        Migration {
            version: 1,
            description: "widgets",
            sql: "CREATE TABLE umanage_widgets (id bigint PRIMARY KEY); INSERT INTO umanage_widgets VALUES (1);",
        },
        Migration {
            version: 2,
            description: "widget names",
            sql: "ALTER TABLE umanage_widgets ADD COLUMN name text",
        },
    ],
);

/// Another component that also has a version 1.
static GADGETS: Migrator = Migrator::new(
    "test-gadgets",
    &[Migration {
        version: 1,
        description: "gadgets",
        sql: "CREATE TABLE umanage_gadgets (id bigint PRIMARY KEY)",
    }],
);

#[tokio::test]
async fn migrations_apply_once_and_components_do_not_collide() {
    let Some(db) = testkit::postgres().await else {
        return;
    };
    let r = WIDGETS_V1.run(db.pool()).await.unwrap();
    assert_eq!(r.applied, vec![1]);
    let r = GADGETS.run(db.pool()).await.unwrap();
    assert_eq!(
        r.applied,
        vec![1],
        "same version number in another component"
    );
    let r = WIDGETS_V1.run(db.pool()).await.unwrap();
    assert_eq!((r.applied.len(), r.already_applied), (0, vec![1]));
    let r = WIDGETS_V2.run(db.pool()).await.unwrap();
    assert_eq!((r.applied, r.already_applied), (vec![2], vec![1]));
    // An older build (knows only v1) still starts against the newer schema.
    let r = WIDGETS_V1.run(db.pool()).await.unwrap();
    assert_eq!(r.already_applied, vec![1]);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM umanage_migrations")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn concurrent_instances_apply_each_migration_exactly_once() {
    let Some(db) = testkit::postgres().await else {
        return;
    };
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let pool = db.new_pool(2).await.unwrap();
        tasks.push(tokio::spawn(async move { WIDGETS_V2.run(&pool).await }));
    }
    let mut applied = Vec::new();
    for t in tasks {
        applied.extend(t.await.unwrap().unwrap().applied);
    }
    applied.sort_unstable();
    assert_eq!(applied, vec![1, 2]);
    let widgets: i64 = sqlx::query_scalar("SELECT count(*) FROM umanage_widgets")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(widgets, 1, "the data statement ran more than once");
}

#[tokio::test]
async fn a_changed_migration_is_refused() {
    let Some(db) = testkit::postgres().await else {
        return;
    };
    static CHANGED: Migrator = Migrator::new(
        "test-widgets",
        &[Migration {
            version: 1,
            description: "widgets",
            sql: "CREATE TABLE umanage_widgets (id bigint PRIMARY KEY, extra int)",
        }],
    );
    WIDGETS_V1.run(db.pool()).await.unwrap();
    let err = CHANGED.run(db.pool()).await.unwrap_err();
    assert!(
        matches!(err, BackendError::Migration { component: "test-widgets", version: 1, ref reason } if reason.contains("checksum")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_behind() {
    let Some(db) = testkit::postgres().await else {
        return;
    };
    static BROKEN: Migrator = Migrator::new(
        "test-broken",
        &[
            Migration {
                version: 1,
                description: "ok",
                sql: "CREATE TABLE umanage_ok (id int)",
            },
            Migration {
                version: 2,
                description: "bad",
                sql: "CREATE TABLE umanage_half (id int); SELECT no_such_function();",
            },
        ],
    );
    let err = BROKEN.run(db.pool()).await.unwrap_err();
    assert!(
        matches!(err, BackendError::Migration { version: 2, .. }),
        "{err:?}"
    );
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name IN ('umanage_ok', 'umanage_half')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(tables, 0, "a failed run kept part of its work");
}

#[tokio::test]
async fn dropping_the_kit_drops_the_schema() {
    let Some(db) = testkit::postgres().await else {
        return;
    };
    let schema = db.schema().to_owned();
    let url = db.url().to_owned();
    WIDGETS_V1.run(db.pool()).await.unwrap();
    let here: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(here, schema);
    drop(db);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
    )
    .bind(&schema)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 0, "schema {schema} was not dropped");
}
