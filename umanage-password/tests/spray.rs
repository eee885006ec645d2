//! Spray detection beyond the conformance suite: configuration, the memory backend's
//! bounds, and the Redis backend's keys, TTLs, script reloads and outages.

#![allow(missing_docs, clippy::unwrap_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use umanage_core::{IpKeyPolicy, ManualClock};
use umanage_password::PasswordError;
use umanage_password::spray::{
    DistinctRule, GlobalRule, LoginAttempt, MemorySprayDetector, SprayAction, SprayConfig,
    SprayDetector,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn invalid(r: Result<SprayConfig, PasswordError>) -> String {
    match r {
        Err(PasswordError::InvalidConfig {
            component: "spray",
            reason,
        }) => reason,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn defaults_are_valid_and_named() {
    let d = SprayConfig::default();
    assert_eq!(SprayConfig::builder().build().unwrap(), d);
    assert_eq!(d.per_source().window, SprayConfig::DEFAULT_WINDOW);
    assert_eq!(d.per_source().block_at, Some(20));
    assert_eq!(d.per_account().block_at, None, "no lockout by default");
    assert_eq!(
        d.global().challenge_at,
        Some(SprayConfig::DEFAULT_GLOBAL_CHALLENGE_AT)
    );
    assert_eq!(d.ip_policy(), IpKeyPolicy::default());
    assert_eq!(d.max_members(), SprayConfig::DEFAULT_MAX_MEMBERS);
}

#[test]
fn builder_refuses_contradictions() {
    let min = Duration::from_secs(60);
    let r = DistinctRule::new(min);
    let cases = [
        SprayConfig::builder().per_source(r.with_slow_down_at(5).with_challenge_at(5)),
        SprayConfig::builder().per_source(r.with_challenge_at(10).with_block_at(3)),
        SprayConfig::builder().per_account(r.with_slow_down_at(0)),
        SprayConfig::builder()
            .per_account(r.with_block_at(300))
            .max_members(256),
        SprayConfig::builder().max_members(0),
        SprayConfig::builder().max_members(SprayConfig::MAX_MEMBERS + 1),
        SprayConfig::builder().per_source(DistinctRule::new(Duration::from_millis(5))),
        SprayConfig::builder().per_account(DistinctRule::new(Duration::from_secs(8 * 86_400))),
        SprayConfig::builder().global(GlobalRule::new(min).with_buckets(1)),
        SprayConfig::builder().global(GlobalRule::new(min).with_buckets(1000)),
        SprayConfig::builder().global(
            GlobalRule::new(min)
                .with_slow_down_at(9)
                .with_challenge_at(9),
        ),
        SprayConfig::builder().global(GlobalRule::new(min).with_min_failure_ratio(1.5)),
        SprayConfig::builder().global(GlobalRule::new(min).with_min_failure_ratio(f64::NAN)),
        SprayConfig::builder().base_delay(Duration::ZERO),
        SprayConfig::builder()
            .base_delay(Duration::from_secs(10))
            .max_delay(Duration::from_secs(5)),
        SprayConfig::builder().max_delay(Duration::from_secs(3600)),
        SprayConfig::builder().max_tracked(0),
        // sub-windows under 1 ms: they would be widened to 1 ms and outlast the window
        SprayConfig::builder().global(
            GlobalRule::new(Duration::from_millis(100))
                .with_buckets(120)
                .with_challenge_at(3),
        ),
    ];
    for (i, b) in cases.into_iter().enumerate() {
        let reason = invalid(b.build());
        assert!(!reason.is_empty(), "case {i}");
    }
    // rules without thresholds are simply off
    let off = SprayConfig::builder()
        .per_source(DistinctRule::new(min))
        .per_account(DistinctRule::new(min))
        .global(GlobalRule::new(min))
        .build()
        .unwrap();
    assert!(!off.per_source().is_enabled() && !off.global().is_enabled());
}

#[test]
fn serde_round_trips_and_validates() {
    let cfg = SprayConfig::builder()
        .ip_policy(IpKeyPolicy::new(24, 56).unwrap())
        .per_account(DistinctRule::new(Duration::from_secs(300)).with_challenge_at(8))
        .build()
        .unwrap();
    let json = serde_json::to_string(&cfg).unwrap();
    let back: SprayConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cfg);

    let toml_cfg: SprayConfig = toml::from_str(
        r#"
        base_delay = "250ms"
        [ip_policy]
        ipv4_prefix = 24
        [per_source]
        window = "10m"
        slow_down_at = 3
        block_at = 9
        [global]
        window = "1m"
        buckets = 6
        challenge_at = 100
        "#,
    )
    .unwrap();
    assert_eq!(toml_cfg.per_source().block_at, Some(9));
    assert_eq!(toml_cfg.per_source().challenge_at, None);
    assert_eq!(toml_cfg.base_delay(), Duration::from_millis(250));
    assert_eq!(toml_cfg.global().buckets, 6);
    assert_eq!(toml_cfg.ip_policy().ipv4_prefix(), 24);

    for bad in [
        r#"{"per_source": {"window": "1m", "block_at": 2, "challenge_at": 5}}"#,
        r#"{"unknown_field": 1}"#,
        r#"{"per_source": {"window": "1m", "lockout": 3}}"#,
        r#"{"global": {"window": "1m", "block_at": 3}}"#,
        r#"{"ip_policy": {"ipv4_prefix": 40}}"#,
    ] {
        assert!(serde_json::from_str::<SprayConfig>(bad).is_err(), "{bad}");
    }
}

#[test]
fn assessments_serialise_for_apis() {
    let a = SprayAction::Block {
        retry_after: Duration::from_secs(90),
    };
    let json = serde_json::to_value(a).unwrap();
    assert_eq!(json["action"], "block");
    assert_eq!(json["retry_after"], "1m 30s");
    assert!(
        SprayAction::Challenge
            > SprayAction::SlowDown {
                delay: Duration::MAX
            }
    );
}

#[test]
fn spray_key_is_checked_and_never_shown() {
    use umanage_password::spray::SprayKey;
    let key = SprayKey::new(b"0123456789abcdef-secret".to_vec()).unwrap();
    let dbg = format!("{key:?}");
    assert_eq!(dbg, "SprayKey(..)");
    assert!(!dbg.contains("secret") && !dbg.contains("48"));
    // a detector's Debug does not show it either
    let d = MemorySprayDetector::new(SprayConfig::default()).with_key(key);
    assert!(!format!("{d:?}").contains("secret"));
    for bad in [vec![1u8; 15], vec![1u8; 65], Vec::new()] {
        assert!(matches!(
            SprayKey::new(bad),
            Err(PasswordError::InvalidConfig {
                component: "spray",
                ..
            })
        ));
    }
    // base64: with or without padding, whitespace trimmed; errors never echo the input
    let b64 = "MDEyMzQ1Njc4OWFiY2RlZi1zZWNyZXQ=";
    assert!(SprayKey::from_base64(b64).is_ok());
    assert!(SprayKey::from_base64(b64.trim_end_matches('=')).is_ok());
    assert!(SprayKey::from_base64(&format!(" {b64}\n")).is_ok());
    for bad in ["not base64 at all!", "c2hvcnQ=", ""] {
        let err = SprayKey::from_base64(bad).unwrap_err().to_string();
        assert!(bad.is_empty() || !err.contains(bad), "{err}");
    }
    let random = SprayKey::random();
    assert_eq!(format!("{random:?}"), "SprayKey(..)");
}

/// Memory detectors: the key is what makes two detectors' digests agree; a random key per
/// detector by default.
#[tokio::test]
async fn memory_detector_keys() {
    use umanage_password::spray::SprayKey;
    let cfg = SprayConfig::builder()
        .per_account(DistinctRule::new(Duration::from_secs(60)).with_slow_down_at(2))
        .build()
        .unwrap();
    let d = MemorySprayDetector::new(cfg).with_key(SprayKey::new(vec![3u8; 32]).unwrap());
    d.record_failure(&LoginAttempt::new(ip("192.0.2.1"), "Ann"))
        .await
        .unwrap();
    let a = d
        .record_failure(&LoginAttempt::new(ip("192.0.2.2"), " ann "))
        .await
        .unwrap();
    assert_eq!(a.observed.account_sources, 2);
}

#[test]
fn attempt_debug_hides_the_account() {
    let at = LoginAttempt::new(ip("192.0.2.1"), "alice@example.com");
    let dbg = format!("{at:?}");
    assert!(!dbg.contains("alice"), "{dbg}");
    // not even an unkeyed digest prefix, which could be matched against a list of addresses
    let plain = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(b"alice@example.com")[..4]);
    assert!(!dbg.contains(&plain), "{dbg}");
    assert!(dbg.contains("192.0.2.1"), "{dbg}");
}

/// The memory backend keeps at most `max_tracked` sources and accounts, and sweeps stale
/// ones.
#[tokio::test]
async fn memory_detector_is_bounded() {
    let clock = ManualClock::default();
    let window = Duration::from_secs(60);
    let cfg = SprayConfig::builder()
        .per_source(DistinctRule::new(window).with_block_at(5))
        .per_account(DistinctRule::new(window).with_block_at(5))
        .max_tracked(100)
        .build()
        .unwrap();
    let d = MemorySprayDetector::with_clock(cfg, clock.shared());
    for i in 0..1000u32 {
        let src = IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]);
        d.record_failure(&LoginAttempt::new(src, &format!("user{i}")))
            .await
            .unwrap();
        let (s, a) = d.tracked();
        assert!(s <= 100 && a <= 100, "{s} sources, {a} accounts tracked");
    }
    // the most recent evidence survived the evictions
    let last = d
        .assess(&LoginAttempt::new(IpAddr::from([10, 0, 3, 249]), "user999"))
        .await
        .unwrap();
    assert_eq!(last.observed.source_accounts, 1);
    assert_eq!(last.observed.account_sources, 1);

    clock.advance(window + Duration::from_secs(1));
    d.purge_expired();
    assert_eq!(d.tracked(), (0, 0));

    // assessing and recording successes never creates entries
    d.assess(&LoginAttempt::new(ip("192.0.2.1"), "x"))
        .await
        .unwrap();
    d.record_success(&LoginAttempt::new(ip("192.0.2.1"), "x"))
        .await
        .unwrap();
    assert_eq!(d.tracked(), (0, 0));

    // a success that empties a set removes it
    d.record_failure(&LoginAttempt::new(ip("192.0.2.1"), "x"))
        .await
        .unwrap();
    assert_eq!(d.tracked(), (1, 1));
    d.record_success(&LoginAttempt::new(ip("192.0.2.1"), "x"))
        .await
        .unwrap();
    assert_eq!(d.tracked(), (0, 0));
}

/// When the tracked sources are at the cap and only a few have gone stale, making room
/// still frees an eighth of the cap at once: the eviction pass over every tracked source is
/// amortised over the inserts that follow, not repeated on each new source.
#[tokio::test]
async fn memory_eviction_frees_an_eighth_even_when_few_are_stale() {
    let clock = ManualClock::default();
    let window = Duration::from_secs(60);
    let cfg = SprayConfig::builder()
        .per_source(DistinctRule::new(window).with_block_at(5))
        .per_account(DistinctRule::new(window))
        .max_tracked(80)
        .build()
        .unwrap();
    let d = MemorySprayDetector::with_clock(cfg, clock.shared());
    for i in 0..80u8 {
        d.record_failure(&LoginAttempt::new(IpAddr::from([10, 2, 0, i]), "a"))
            .await
            .unwrap();
        clock.advance(Duration::from_millis(1));
    }
    assert_eq!(d.tracked().0, 80);
    // the first source is now just out of its window, the other 79 are not
    clock.advance(Duration::from_millis(60_000 - 80));
    for i in 0..3u8 {
        d.record_failure(&LoginAttempt::new(IpAddr::from([10, 3, 0, i]), "a"))
            .await
            .unwrap();
        let (sources, _) = d.tracked();
        assert!(
            sources <= 80 - 80 / 8 + 1 + usize::from(i),
            "{sources} sources tracked after new source {i}: eviction freed too little"
        );
    }
    // the oldest evidence went, the newest stayed
    let newest = d
        .assess(&LoginAttempt::new(IpAddr::from([10, 2, 0, 79]), "x"))
        .await
        .unwrap();
    assert_eq!(newest.observed.source_accounts, 1);
    let oldest_kept = d
        .assess(&LoginAttempt::new(IpAddr::from([10, 2, 0, 5]), "x"))
        .await
        .unwrap();
    assert_eq!(oldest_kept.observed.source_accounts, 0);
}

/// Above the block threshold, `retry_after` is the time until enough of the oldest
/// evidence has left for the count to drop below it (not the oldest member's expiry).
#[tokio::test]
async fn memory_block_retry_above_the_threshold() {
    let clock = ManualClock::default();
    let window = Duration::from_secs(100);
    let cfg = SprayConfig::builder()
        .per_source(DistinctRule::new(window).with_block_at(3))
        .per_account(DistinctRule::new(window))
        .build()
        .unwrap();
    let d = MemorySprayDetector::with_clock(cfg, clock.shared());
    // five accounts 10 s apart; then the first is refreshed, so the set's order is not
    // the order of its times
    for (i, acct) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        if i > 0 {
            clock.advance(Duration::from_secs(10));
        }
        d.record_failure(&LoginAttempt::new(ip("192.0.2.7"), acct))
            .await
            .unwrap();
    }
    // times: a 0, b 10, c 20, d 30, e 40; now 40. Refresh `a` to 40.
    d.record_failure(&LoginAttempt::new(ip("192.0.2.7"), "a"))
        .await
        .unwrap();
    let a = d
        .assess(&LoginAttempt::new(ip("192.0.2.7"), "z"))
        .await
        .unwrap();
    assert_eq!(a.observed.source_accounts, 5);
    // sorted: b 10, c 20, d 30, a 40, e 40; below 3 once d (30) leaves: 30 + 100 - 40
    assert_eq!(
        a.action,
        SprayAction::Block {
            retry_after: Duration::from_secs(90)
        }
    );
    clock.advance(Duration::from_secs(90));
    let a = d
        .assess(&LoginAttempt::new(ip("192.0.2.7"), "z"))
        .await
        .unwrap();
    assert_eq!(a.observed.source_accounts, 2);
    assert!(a.is_allow(), "{a:?}");
}

/// Stale entries are swept by recording alone (every `SWEEP_EVERY` records), without an
/// explicit purge.
#[tokio::test]
async fn memory_detector_sweeps_while_recording() {
    use umanage_password::spray::memory::SWEEP_EVERY;
    let clock = ManualClock::default();
    let window = Duration::from_secs(60);
    let cfg = SprayConfig::builder()
        .per_source(DistinctRule::new(window).with_block_at(5))
        .per_account(DistinctRule::new(window))
        .build()
        .unwrap();
    let d = MemorySprayDetector::with_clock(cfg, clock.shared());
    for i in 0..500u32 {
        let src = IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8]);
        d.record_failure(&LoginAttempt::new(src, "a"))
            .await
            .unwrap();
    }
    assert_eq!(d.tracked().0, 500);
    clock.advance(window * 2);
    for _ in 0..SWEEP_EVERY {
        d.record_failure(&LoginAttempt::new(ip("192.0.2.200"), "a"))
            .await
            .unwrap();
    }
    assert_eq!(d.tracked().0, 1);
}

mod redis {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    use umanage_core::KeyBuilder;
    use umanage_core::redis::RedisConfig;
    use umanage_core::testkit::{self, RedisServer};
    use umanage_password::spray::{RedisSprayDetector, SprayKey};

    const TEST_KEY: [u8; 32] = *b"spray-key-for-the-redis-tests-32";

    fn test_key() -> SprayKey {
        SprayKey::new(TEST_KEY.to_vec()).unwrap()
    }

    /// The expected stored digest: HMAC-SHA256 (RFC 2104, the `hmac` crate) truncated to
    /// 16 bytes, computed here independently of the detector.
    fn mac_hex(account: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&TEST_KEY).unwrap();
        mac.update(account.trim().to_lowercase().as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    fn all_rules(window: Duration) -> SprayConfig {
        SprayConfig::builder()
            .per_source(
                DistinctRule::new(window)
                    .with_slow_down_at(2)
                    .with_block_at(4),
            )
            .per_account(DistinctRule::new(window).with_challenge_at(3))
            .global(GlobalRule::new(window).with_slow_down_at(50))
            .max_members(4)
            .build()
            .unwrap()
    }

    async fn scan(conn: &mut ::redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await
                .unwrap();
            keys.extend(batch);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }

    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let len = key[open + 1..].find('}').unwrap();
        assert!(len > 0, "empty hash tag in {key}");
        &key[open + 1..open + 1 + len]
    }

    /// Every key the detector creates has a TTL no longer than its window, carries a hash
    /// tag, and every set stays under the member cap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_key_has_a_ttl_and_a_hash_tag() {
        let Some(ns) = testkit::redis().await else {
            return;
        };
        let window = Duration::from_secs(120);
        let d = RedisSprayDetector::new(ns.connection().clone(), all_rules(window), test_key());
        for i in 0..10 {
            let src = format!("198.51.100.{i}");
            let acct = format!("user{}", i % 3);
            d.record_failure(&LoginAttempt::new(ip(&src), &acct))
                .await
                .unwrap();
            d.record_failure(&LoginAttempt::new(ip("2001:db8::1"), &format!("v6-{i}")))
                .await
                .unwrap();
            d.record_success(&LoginAttempt::new(ip(&src), "user0"))
                .await
                .unwrap();
            d.assess(&LoginAttempt::new(ip("203.0.113.1"), &format!("never-{i}")))
                .await
                .unwrap();
        }
        let client = ::redis::Client::open(ns.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys = scan(&mut conn, &format!("{}:*", ns.prefix())).await;
        // Sources: 10 IPv4 + one IPv6 /64, less the four (i = 0, 3, 6, 9) whose only
        // failure was on user0 and whose success on user0 emptied (deleted) their set.
        // Accounts: user1, user2 and the ten v6-i (user0's set was emptied the same way).
        // One global hash. Assessing created nothing.
        assert_eq!(keys.len(), 7 + 12 + 1, "{keys:?}");
        assert!(keys.iter().all(|k| !k.contains("never")));
        let mut kinds = std::collections::BTreeMap::new();
        for key in &keys {
            let ttl: i64 = ::redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(ttl > 0, "{key} has no TTL ({ttl})");
            assert!(ttl <= 120_000, "{key} outlives the window: {ttl} ms");
            let _ = hash_tag(key);
            let kind = key.split(':').nth(1).unwrap().to_owned();
            *kinds.entry(kind).or_insert(0) += 1;
            let ty: String = ::redis::cmd("TYPE")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            if ty == "zset" {
                let n: i64 = ::redis::cmd("ZCARD")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert!(n <= 4, "{key} holds {n} members, cap 4");
            }
        }
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        // the key of one attempt: source and account in their own slots, as documented
        let [s, a, g] = d.keys_of(&LoginAttempt::new(ip("2001:db8::ffff"), "v6-1"));
        assert!(keys.contains(&s) && keys.contains(&a) && keys.contains(&g));
        assert_eq!(hash_tag(&s), "2001:db8::/64");
        assert_eq!(
            s,
            KeyBuilder::new(ns.prefix())
                .unwrap()
                .key("spray-src", "2001:db8::/64")
        );
        // no account identifier is stored in clear, in key names or set members; the
        // digest is the keyed MAC, not the plain SHA-256 anyone could compute from a list
        // of identifiers
        let mut members = Vec::new();
        for key in keys.iter().filter(|k| k.contains(":spray-src:")) {
            let set: Vec<String> = ::redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap();
            members.extend(set);
        }
        assert!(!members.is_empty());
        for text in keys.iter().chain(&members) {
            assert!(!text.contains("user") && !text.contains("v6-"), "{text}");
        }
        // (the IPv6 /64 keeps only its last 4 accounts, v6-6 to v6-9: the cap)
        for account in ["user1", "user2", "v6-9"] {
            let keyed = mac_hex(account);
            let plain = hex::encode(&Sha256::digest(account.as_bytes())[..16]);
            assert_ne!(keyed, plain);
            assert!(members.contains(&keyed), "{account}: {members:?}");
            assert!(keys.iter().any(|k| k.contains(&keyed)), "{account}");
            assert!(!members.contains(&plain) && !keys.iter().any(|k| k.contains(&plain)));
        }
        assert_eq!(hash_tag(&a), mac_hex("v6-1"));
    }

    /// Two detectors (two app instances) on one Redis share the evidence.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_share_evidence() {
        let Some(ns) = testkit::redis().await else {
            return;
        };
        let cfg = all_rules(Duration::from_secs(60));
        // the same key loaded twice, as two instances would from their configuration
        let one = RedisSprayDetector::new(ns.connection().clone(), cfg.clone(), test_key());
        let other_conn = ns.config().connect().await.unwrap();
        let two = RedisSprayDetector::new(other_conn, cfg, test_key());
        one.record_failure(&LoginAttempt::new(ip("192.0.2.9"), "a"))
            .await
            .unwrap();
        two.record_failure(&LoginAttempt::new(ip("192.0.2.9"), "b"))
            .await
            .unwrap();
        let a = one
            .assess(&LoginAttempt::new(ip("192.0.2.9"), "c"))
            .await
            .unwrap();
        assert_eq!(a.observed.source_accounts, 2);
        assert!(matches!(a.action, SprayAction::SlowDown { .. }));
        // per-account evidence meets under the same digest, and a success from one
        // instance removes the pair the other recorded
        one.record_failure(&LoginAttempt::new(ip("198.51.100.1"), "Carol"))
            .await
            .unwrap();
        let a = two
            .record_failure(&LoginAttempt::new(ip("198.51.100.2"), " carol"))
            .await
            .unwrap();
        assert_eq!(a.observed.account_sources, 2);
        let a = two
            .record_success(&LoginAttempt::new(ip("198.51.100.1"), "carol"))
            .await
            .unwrap();
        assert_eq!(a.observed.account_sources, 1);
        assert_eq!(
            one.keys_of(&LoginAttempt::new(ip("192.0.2.9"), "carol")),
            two.keys_of(&LoginAttempt::new(ip("192.0.2.9"), "CAROL"))
        );
    }

    /// Detectors with different keys on one namespace do not see each other's accounts:
    /// the same identifier is a different digest, so a different member and key.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn different_keys_do_not_share_account_evidence() {
        let Some(ns) = testkit::redis().await else {
            return;
        };
        let cfg = all_rules(Duration::from_secs(60));
        let one = RedisSprayDetector::new(ns.connection().clone(), cfg.clone(), test_key());
        let two = RedisSprayDetector::new(
            ns.connection().clone(),
            cfg,
            SprayKey::new(vec![0x5a; 32]).unwrap(),
        );
        one.record_failure(&LoginAttempt::new(ip("198.51.100.1"), "carol"))
            .await
            .unwrap();
        let a = two
            .record_failure(&LoginAttempt::new(ip("198.51.100.2"), "carol"))
            .await
            .unwrap();
        assert_eq!(a.observed.account_sources, 1);
        // the same source failing on "carol" under both keys counts two accounts: the
        // digests differ (the source key itself is shared, it holds no identifier)
        let a = two
            .record_failure(&LoginAttempt::new(ip("198.51.100.1"), "carol"))
            .await
            .unwrap();
        assert_eq!(a.observed.source_accounts, 2);
        let at = LoginAttempt::new(ip("198.51.100.1"), "carol");
        assert_ne!(one.keys_of(&at)[1], two.keys_of(&at)[1]);
        assert_eq!(one.keys_of(&at)[0], two.keys_of(&at)[0]);
    }

    /// A server that lost its script cache (restart, `SCRIPT FLUSH`): scripts are reloaded
    /// and nothing is counted twice. Redis going away: a typed backend error; back: works.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn script_reload_and_outage() {
        let Some(mut server) = RedisServer::start().await else {
            return;
        };
        let conn = RedisConfig::builder(server.url())
            .key_prefix("spray-outage")
            .connect_timeout(Duration::from_millis(300))
            .response_timeout(Duration::from_millis(300))
            .reconnect_attempts(1)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let d = Arc::new(RedisSprayDetector::new(
            conn,
            all_rules(Duration::from_secs(60)),
            SprayKey::random(),
        ));
        d.load_scripts().await.unwrap();
        d.record_failure(&LoginAttempt::new(ip("192.0.2.1"), "a"))
            .await
            .unwrap();

        let client = ::redis::Client::open(server.url()).unwrap();
        let mut raw = client.get_multiplexed_async_connection().await.unwrap();
        let () = ::redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut raw)
            .await
            .unwrap();
        let a = d
            .record_failure(&LoginAttempt::new(ip("192.0.2.1"), "b"))
            .await
            .unwrap();
        assert_eq!(a.observed.source_accounts, 2);
        assert_eq!(a.observed.global_failures, 2, "a reloaded script ran twice");

        server.stop();
        let dyn_d: Arc<dyn SprayDetector> = d.clone();
        for at in [
            dyn_d
                .record_failure(&LoginAttempt::new(ip("192.0.2.1"), "c"))
                .await,
            dyn_d.assess(&LoginAttempt::new(ip("192.0.2.1"), "c")).await,
            dyn_d
                .record_success(&LoginAttempt::new(ip("192.0.2.1"), "c"))
                .await,
        ] {
            match at {
                Err(PasswordError::Backend(e)) => assert!(e.is_unavailable(), "{e}"),
                other => panic!("expected a backend error, got {other:?}"),
            }
        }

        server.restart().await;
        let mut ok = None;
        for _ in 0..50 {
            match d
                .record_failure(&LoginAttempt::new(ip("192.0.2.1"), "d"))
                .await
            {
                Ok(a) => {
                    ok = Some(a);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let a = ok.expect("the detector works again once Redis is back");
        // the restarted server is empty: only the new failure is known
        assert_eq!(a.observed.source_accounts, 1);
    }
}
