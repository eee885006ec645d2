#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::fmt::Write as _;
use std::io::{Cursor, Write};
use std::path::PathBuf;
use std::sync::Arc;

use umanage_password::PasswordError;
use umanage_password::breach::offline::{build_index, build_index_file};
use umanage_password::breach::{
    BreachChecker, BreachStatus, BuildOptions, FailurePolicy, OfflineIndex, sha1_digest, sha1_hex,
};
use umanage_password::normalize::NormalizedPassword;
use umanage_password::policy::{PasswordPolicy, UserInfo, ViolationCode};

fn pw(s: &str) -> NormalizedPassword {
    NormalizedPassword::new(s).unwrap()
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "umanage-breach-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn random_hashes(n: usize, seed: u64) -> Vec<[u8; 20]> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            let mut h = [0u8; 20];
            for b in &mut h {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = (x >> 24) as u8;
            }
            h
        })
        .collect()
}

const KNOWN: &[(&str, u32)] = &[
    ("password", 10_434_004),
    ("P@ssw0rd", 144_000),
    ("123456", 42),
];

/// A corpus in HIBP's format: the known passwords plus `n` random hashes, sorted or not.
fn corpus(n: usize, sorted: bool) -> String {
    let mut lines: Vec<(String, u32)> = KNOWN.iter().map(|(p, c)| (sha1_hex(&pw(p)), *c)).collect();
    for (i, h) in random_hashes(n, 0x5eed).into_iter().enumerate() {
        lines.push((hex::encode_upper(h), i as u32 % 1000 + 1));
    }
    if sorted {
        lines.sort();
    }
    let mut out = String::new();
    for (h, c) in lines {
        write!(out, "{h}:{c}\r\n").unwrap();
    }
    out
}

#[test]
fn sha1_of_password_is_the_known_vector() {
    // SHA-1("password"), as listed by the Pwned Passwords range API for prefix 5BAA6
    assert_eq!(
        sha1_hex(&pw("password")),
        "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8"
    );
}

#[test]
fn build_and_look_up_sorted_and_unsorted() {
    let dir = TempDir::new("build");
    for (sorted, n) in [(true, 5_000), (false, 5_000), (true, 0)] {
        let input = dir.path("corpus.txt");
        std::fs::write(&input, corpus(n, sorted)).unwrap();
        let output = dir.path("index.bin");
        let stats = build_index_file(&input, &output, BuildOptions::default()).unwrap();
        assert_eq!(stats.input_sorted, sorted);
        assert_eq!(stats.records, (n + KNOWN.len()) as u64);
        let index = OfflineIndex::open(&output).unwrap();
        assert_eq!(index.len(), stats.records);
        assert_eq!(index.prefix_bits(), stats.prefix_bits);
        for (p, count) in KNOWN {
            assert_eq!(index.lookup(&pw(p)).unwrap(), Some(*count), "{p}");
        }
        for (i, h) in random_hashes(n, 0x5eed).iter().enumerate().step_by(97) {
            assert_eq!(index.lookup_digest(h).unwrap(), Some(i as u32 % 1000 + 1));
        }
        for h in random_hashes(200, 0x00ab_cdef) {
            assert_eq!(index.lookup_digest(&h).unwrap(), None);
        }
        assert_eq!(
            index.lookup(&pw("correct horse battery staple")).unwrap(),
            None
        );
    }
    // sorted (streamed) and unsorted (in memory) builds give the same bytes
    let a = dir.path("a.txt");
    let b = dir.path("b.txt");
    std::fs::write(&a, corpus(3000, true)).unwrap();
    std::fs::write(&b, corpus(3000, false)).unwrap();
    build_index_file(&a, &dir.path("a.idx"), BuildOptions::default()).unwrap();
    build_index_file(&b, &dir.path("b.idx"), BuildOptions::default()).unwrap();
    assert_eq!(
        std::fs::read(dir.path("a.idx")).unwrap(),
        std::fs::read(dir.path("b.idx")).unwrap()
    );
}

#[test]
fn large_buckets_use_the_probing_search() {
    let dir = TempDir::new("probe");
    let mut out = Cursor::new(Vec::new());
    let text = corpus(4000, false);
    // 0 prefix bits: one bucket of 4003 records, searched with single-record reads first
    let stats = build_index(
        text.as_bytes(),
        &mut out,
        BuildOptions {
            prefix_bits: Some(0),
        },
    )
    .unwrap();
    assert_eq!(stats.prefix_bits, 0);
    let path = dir.path("one-bucket.idx");
    std::fs::write(&path, out.into_inner()).unwrap();
    let index = OfflineIndex::open(&path).unwrap();
    for (p, count) in KNOWN {
        assert_eq!(index.lookup(&pw(p)).unwrap(), Some(*count));
    }
    for (i, h) in random_hashes(4000, 0x5eed).iter().enumerate() {
        assert_eq!(index.lookup_digest(h).unwrap(), Some(i as u32 % 1000 + 1));
    }
    assert_eq!(index.lookup(&pw("not in there")).unwrap(), None);
}

#[test]
fn duplicates_merge_and_bad_input_is_typed() {
    let h = sha1_hex(&pw("password"));
    let text = format!("{h}:5\n{h}:7\n\n{}:1\n", h.to_lowercase());
    let mut out = Cursor::new(Vec::new());
    let stats = build_index(text.as_bytes(), &mut out, BuildOptions::default()).unwrap();
    assert_eq!((stats.lines, stats.records), (3, 1));
    let dir = TempDir::new("dups");
    let path = dir.path("d.idx");
    std::fs::write(&path, out.into_inner()).unwrap();
    assert_eq!(
        OfflineIndex::open(&path)
            .unwrap()
            .lookup(&pw("password"))
            .unwrap(),
        Some(13)
    );

    let bad = format!("{h}:1\nnot a line\n");
    let err = build_index(
        bad.as_bytes(),
        &mut Cursor::new(Vec::new()),
        BuildOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, PasswordError::InvalidBreachInput { line: 2, .. }),
        "{err:?}"
    );
    let err = build_index(
        "".as_bytes(),
        &mut Cursor::new(Vec::new()),
        BuildOptions {
            prefix_bits: Some(30),
        },
    )
    .unwrap_err();
    assert!(matches!(err, PasswordError::InvalidConfig { .. }));
    assert!(matches!(
        build_index_file(
            &dir.path("missing.txt"),
            &dir.path("x.idx"),
            BuildOptions::default()
        ),
        Err(PasswordError::Io(_))
    ));
}

#[test]
fn corrupted_index_files_are_rejected() {
    let dir = TempDir::new("corrupt");
    let mut out = Cursor::new(Vec::new());
    build_index(
        corpus(500, true).as_bytes(),
        &mut out,
        BuildOptions::default(),
    )
    .unwrap();
    let good = out.into_inner();
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        good[..10].to_vec(),
        good[..good.len() - 1].to_vec(),
        [good.clone(), vec![0]].concat(),
        {
            let mut g = good.clone();
            g[0] = b'X';
            g
        },
        {
            let mut g = good.clone();
            g[8] = 30; // prefix bits
            g
        },
        {
            let mut g = good.clone();
            g[16] ^= 1; // record count
            g
        },
        {
            let mut g = good.clone();
            g[24 + 8] = 0xff; // bucket table not monotonic
            g
        },
    ];
    for (i, bytes) in cases.into_iter().enumerate() {
        let path = dir.path(&format!("bad{i}.idx"));
        std::fs::write(&path, bytes).unwrap();
        let err = OfflineIndex::open(&path).unwrap_err();
        assert!(
            matches!(err, PasswordError::InvalidBreachIndex { .. }),
            "case {i}: {err:?}"
        );
    }
    assert!(matches!(
        OfflineIndex::open(dir.path("nope.idx")),
        Err(PasswordError::Io(_))
    ));
}

#[tokio::test]
async fn checker_and_policy_integration() {
    let dir = TempDir::new("checker");
    let input = dir.path("c.txt");
    let mut f = std::fs::File::create(&input).unwrap();
    f.write_all(corpus(100, true).as_bytes()).unwrap();
    drop(f);
    let output = dir.path("c.idx");
    build_index_file(&input, &output, BuildOptions::default()).unwrap();
    let index = OfflineIndex::open(&output)
        .unwrap()
        .with_failure_policy(FailurePolicy::FailClosed);
    let checker: Arc<dyn BreachChecker> = Arc::new(index.clone());
    assert_eq!(
        checker.check(&pw("password")).await,
        BreachStatus::Breached { count: 10_434_004 }
    );
    assert_eq!(
        checker.check(&pw("tulip harbor glass 93")).await,
        BreachStatus::NotFound
    );
    let boxed: Box<dyn BreachChecker> = Box::new(index);
    assert!(boxed.check(&pw("123456")).await.rejects());

    let policy = PasswordPolicy::nist_with_mfa();
    // "P@ssw0rd" is common and breached: both reported
    let (report, status) = policy
        .validate_with_breach(&pw("P@ssw0rd"), &UserInfo::new(), checker.as_ref())
        .await;
    assert_eq!(status, BreachStatus::Breached { count: 144_000 });
    assert!(report.has(ViolationCode::Breached));
    assert!(report.has(ViolationCode::CommonPassword));
    assert_eq!(
        report
            .get(ViolationCode::Breached)
            .unwrap()
            .param_u64("count"),
        Some(144_000)
    );
    let (report, status) = policy
        .validate_with_breach(
            &pw("tulip harbor glass 93"),
            &UserInfo::new(),
            checker.as_ref(),
        )
        .await;
    assert_eq!(status, BreachStatus::NotFound);
    assert!(report.is_valid(), "{:?}", report.violations);
    assert_eq!(sha1_digest(&pw("abc")).len(), 20);
}

/// A file that is truncated or overwritten with garbage after it was opened (replaced under
/// a running server): lookups are I/O errors or plain answers, the checker reports the
/// configured failure policy, and nothing panics or reads out of bounds.
#[tokio::test]
async fn index_damaged_after_open_is_unavailable_not_a_panic() {
    use umanage_password::breach::UnavailableReason;
    let dir = TempDir::new("damaged");
    let path = dir.path("d.idx");
    let mut out = Cursor::new(Vec::new());
    build_index(
        corpus(2_000, true).as_bytes(),
        &mut out,
        BuildOptions::default(),
    )
    .unwrap();
    let good = out.into_inner();
    std::fs::write(&path, &good).unwrap();
    let index = OfflineIndex::open(&path)
        .unwrap()
        .with_failure_policy(FailurePolicy::FailClosed);
    assert_eq!(
        index.check(&pw("password")).await,
        BreachStatus::Breached { count: 10_434_004 }
    );

    // records overwritten with garbage (same length): answers, but no panic
    let mut garbage = good.clone();
    let data_start = garbage.len() - 2_000 * 24;
    for (i, b) in garbage[data_start..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    std::fs::write(&path, &garbage).unwrap();
    for p in ["password", "123456", "", "x"] {
        let _ = index.lookup(&pw(p)).unwrap();
        assert!(!matches!(
            index.check(&pw(p)).await,
            BreachStatus::Unavailable { .. }
        ));
    }

    // truncated to the header: every lookup is an I/O error, the check fails closed
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(24)
        .unwrap();
    for p in ["password", "123456", "tulip harbor glass 93"] {
        assert!(index.lookup(&pw(p)).is_err() || index.lookup(&pw(p)).unwrap().is_none());
        let status = index.check(&pw(p)).await;
        assert!(
            matches!(
                status,
                BreachStatus::Unavailable {
                    policy: FailurePolicy::FailClosed,
                    reason: UnavailableReason::Io
                } | BreachStatus::NotFound
            ),
            "{p}: {status:?}"
        );
    }
    assert!(index.lookup(&pw("password")).is_err());
    assert!(index.check(&pw("password")).await.rejects());
}
