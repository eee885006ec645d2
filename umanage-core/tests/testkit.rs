//! The kit fails loudly when services are required but wrong: run this test binary again
//! as a child process with a wrong URL and check that it fails, naming the variable.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::process::Command;

use umanage_core::testkit::{self, DATABASE_URL_VAR, REDIS_URL_VAR, REQUIRE_VAR};

const CHILD: &str = "UMANAGE_TESTKIT_CHILD";

/// Only does something inside the child process started below.
#[tokio::test]
async fn child_asks_for_redis() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let _ = testkit::redis().await;
}

/// Only does something inside the child process started below.
#[tokio::test]
async fn child_asks_for_postgres() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let _ = testkit::postgres().await;
}

fn run_child(test: &str, var: &str, value: &str) -> (bool, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env(REQUIRE_VAR, "1")
        .env(var, value)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn required_service_with_a_wrong_url_fails_the_test_and_names_the_variable() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let (ok, out) = run_child("child_asks_for_redis", REDIS_URL_VAR, "redis://127.0.0.1:1");
    assert!(!ok, "child passed:\n{out}");
    assert!(
        out.contains("umanage testkit") && out.contains(REDIS_URL_VAR),
        "{out}"
    );

    let (ok, out) = run_child(
        "child_asks_for_postgres",
        DATABASE_URL_VAR,
        "postgres://postgres:secret@127.0.0.1:1/test",
    );
    assert!(!ok, "child passed:\n{out}");
    assert!(out.contains(DATABASE_URL_VAR), "{out}");
    assert!(!out.contains("secret@"), "password printed: {out}");
}

#[test]
fn required_service_that_is_unset_fails_too() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let (ok, out) = run_child("child_asks_for_redis", REDIS_URL_VAR, "");
    assert!(!ok, "child passed:\n{out}");
    assert!(
        out.contains(&format!("{REDIS_URL_VAR} is not set")),
        "{out}"
    );
}
