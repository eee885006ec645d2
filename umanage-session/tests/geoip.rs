//! The MaxMind resolver against the public GeoLite2 test databases
//! (`shared/testdata/geoip/`, whose README lists the known answers used here).

#![cfg(feature = "geoip")]
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::path::PathBuf;
use std::sync::Arc;

use umanage_core::{RequestContext, UserId};
use umanage_session::{
    ClientInfo, Error, GeoResolver, Login, LoginOutcome, MaxMindResolver, MemorySessionStore,
    SessionConfig, SessionManager,
};

/// `shared/` sits beside the workspace root (in the dev checkout and in CI's clone).
fn fixture(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/geoip"
    ))
    .join(name);
    if path.is_file() {
        return Some(path);
    }
    let required = std::env::var("UMANAGE_REQUIRE_SERVICES").is_ok_and(|v| v.trim() == "1");
    assert!(
        !required,
        "GeoIP test database missing at {} (expected ../shared/testdata/geoip/ beside the \
         workspace root; UMANAGE_REQUIRE_SERVICES=1 makes this a failure)",
        path.display()
    );
    eprintln!("skipping: {} not found", path.display());
    None
}

fn city_db() -> Option<MaxMindResolver> {
    Some(MaxMindResolver::open(fixture("GeoLite2-City-Test.mmdb")?).unwrap())
}

#[test]
fn city_database_known_answers() {
    let Some(db) = city_db() else { return };
    let london = db.locate("81.2.69.142".parse().unwrap()).unwrap().unwrap();
    assert_eq!(london.country_code.as_deref(), Some("GB"));
    assert_eq!(london.country.as_deref(), Some("United Kingdom"));
    assert_eq!(london.city.as_deref(), Some("London"));
    assert!(london.latitude.is_some() && london.longitude.is_some());

    let mapped = db
        .locate("::ffff:81.2.69.142".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        mapped.city.as_deref(),
        Some("London"),
        "mapped IPv4 not unwrapped"
    );

    let linkoping = db
        .locate("89.160.20.112".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(linkoping.country_code.as_deref(), Some("SE"));
    assert_eq!(linkoping.city.as_deref(), Some("Linköping"));

    let jp = db.locate("2001:218::1".parse().unwrap()).unwrap().unwrap();
    assert_eq!(jp.country_code.as_deref(), Some("JP"));
    assert_eq!(jp.city, None);

    for none in ["127.0.0.1", "10.0.0.1", "::1"] {
        assert_eq!(db.locate(none.parse().unwrap()).unwrap(), None, "{none}");
    }
}

#[test]
fn country_database_has_no_cities() {
    let Some(path) = fixture("GeoLite2-Country-Test.mmdb") else {
        return;
    };
    let db = MaxMindResolver::open(path).unwrap();
    let gb = db.locate("81.2.69.142".parse().unwrap()).unwrap().unwrap();
    assert_eq!(gb.country_code.as_deref(), Some("GB"));
    assert_eq!(gb.city, None);
}

#[test]
fn bad_databases_are_typed_errors() {
    let err = MaxMindResolver::open("/nonexistent/db.mmdb").unwrap_err();
    assert!(matches!(err, Error::Geo(_)), "{err:?}");
    let err = MaxMindResolver::from_bytes(b"not a database".to_vec()).unwrap_err();
    assert!(matches!(err, Error::Geo(_)), "{err:?}");
}

#[tokio::test]
async fn login_records_the_location() {
    let Some(db) = city_db() else { return };
    let m = SessionManager::new(
        Arc::new(MemorySessionStore::new()),
        SessionConfig::default(),
    )
    .with_geo(Arc::new(db));
    let client =
        ClientInfo::new(RequestContext::new().with_client_ip("81.2.69.142".parse().unwrap()));
    let LoginOutcome::Created { session, .. } = m
        .login(Login::new(UserId::new(), "a"), &client)
        .await
        .unwrap()
    else {
        panic!()
    };
    let loc = session.location.clone().unwrap();
    assert_eq!(
        (loc.country_code.as_deref(), loc.city.as_deref()),
        (Some("GB"), Some("London"))
    );
    let listed = m.list(session.user_id).await.unwrap();
    assert_eq!(
        listed[0].location.as_ref().unwrap().city.as_deref(),
        Some("London")
    );
}
