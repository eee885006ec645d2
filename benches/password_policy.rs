//! umanage-password: policy validation, strength worst case, offline breach lookup.
//!
//! `cargo bench --bench password_policy -- --warm-up-time 1 --measurement-time 3`
//!
//! Targets (issue 3): validation without zxcvbn and breach check < 20 µs for a 20-character
//! password; strength estimate worst case over hostile inputs at the policy max length < 25 ms;
//! offline breach lookup < 5 µs.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::many_single_char_names
)]

use std::hint::black_box;
use std::io::BufWriter;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use umanage::password::breach::offline::build_index;
use umanage::password::breach::{BuildOptions, OfflineIndex};
use umanage::password::normalize::NormalizedPassword;
use umanage::password::policy::{PasswordPolicy, UserInfo};
use umanage::password::strength;

fn user() -> UserInfo {
    UserInfo::new()
        .with_username("alice.smith")
        .with_email("alice.smith@wonderland.example")
        .with_display_name("Alice Liddell")
}

fn validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("password_policy/validate_rules");
    let user = user();
    let password = NormalizedPassword::new("Tulip-harbor-Glass93").unwrap();
    assert_eq!(password.char_count(), 20);
    for (name, policy) in [
        ("nist", PasswordPolicy::nist()),
        ("enterprise", PasswordPolicy::enterprise()),
    ] {
        // the first call decodes the bundled list; keep it out of the measurement
        policy.validate_rules(&password, &user);
        group.bench_function(BenchmarkId::new(name, "20 chars"), |b| {
            b.iter(|| black_box(policy.validate_rules(black_box(&password), &user)));
        });
    }
    group.finish();
}

/// The same hostile set as tests/strength.rs, at 128 code points (the presets' max length).
fn hostile_inputs() -> Vec<(&'static str, String)> {
    let cycle = |s: &str| s.chars().cycle().take(128).collect::<String>();
    vec![
        ("l33t-symbols-digits", cycle("4@8({[<3691|!70$5+%2")),
        ("l33t-short-cycle", cycle("1!|4@3$5")),
        ("repeat-1", cycle("a")),
        ("repeat-2", cycle("ab")),
        ("shifted-row", cycle("!@#$%^&*()")),
        ("digits", cycle("1234567890")),
        ("p4ssw0rd", cycle("p4$$w0rd")),
        ("keypad-zigzag", cycle("12")),
        ("keypad", cycle("7894561230")),
        ("keyboard-columns", cycle("qazwsxedcrfvtgbyhn")),
        ("keyboard-walk", cycle("!QASW@#EDFR$%TGHY^&UJKI*(OL")),
        ("emoji-combining", cycle("😀e\u{301}")),
        ("dates", cycle("19901991")),
    ]
}

fn strength_worst(c: &mut Criterion) {
    let mut group = c.benchmark_group("password_policy/strength_hostile");
    let inputs: Vec<(&str, NormalizedPassword)> = hostile_inputs()
        .into_iter()
        .map(|(n, s)| (n, NormalizedPassword::new(&s).unwrap()))
        .collect();
    strength::estimate(&inputs[0].1, &[]);
    for (name, password) in &inputs {
        group.bench_function(*name, |b| {
            b.iter(|| black_box(strength::estimate(black_box(password), &[])));
        });
    }
    group.bench_function("all-13-in-a-row", |b| {
        b.iter(|| {
            for (_, p) in &inputs {
                black_box(strength::estimate(p, &[]));
            }
        });
    });
    group.finish();
}

struct TempFile(PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn breach_lookup(c: &mut Criterion) {
    const RECORDS: usize = 1_000_000;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut hashes = Vec::with_capacity(RECORDS);
    let mut corpus = String::with_capacity(RECORDS * 44);
    for i in 0..RECORDS {
        let mut h = [0u8; 20];
        for chunk in h.chunks_mut(8) {
            let v = next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        corpus.push_str(&hex::encode_upper(h));
        corpus.push(':');
        corpus.push_str(&(i % 5000 + 1).to_string());
        corpus.push('\n');
        hashes.push(h);
    }
    let file = TempFile(
        std::env::temp_dir().join(format!("umanage-bench-breach-{}.idx", std::process::id())),
    );
    {
        let mut out = BufWriter::new(std::fs::File::create(&file.0).unwrap());
        build_index(corpus.as_bytes(), &mut out, BuildOptions::default()).unwrap();
    }
    let index = OfflineIndex::open(&file.0).unwrap();
    let mut group = c.benchmark_group("password_policy/offline_breach_lookup");
    let mut i = 0usize;
    group.bench_function("present (1M records)", |b| {
        b.iter(|| {
            i = (i + 7919) % RECORDS;
            black_box(index.lookup_digest(&hashes[i]).unwrap())
        });
    });
    let absent: Vec<[u8; 20]> = (0..1024)
        .map(|_| {
            let mut h = [0u8; 20];
            for chunk in h.chunks_mut(8) {
                let v = next().rotate_left(17).to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
            h
        })
        .collect();
    let mut j = 0usize;
    group.bench_function("absent (1M records)", |b| {
        b.iter(|| {
            j = (j + 1) % absent.len();
            black_box(index.lookup_digest(&absent[j]).unwrap())
        });
    });
    let password = NormalizedPassword::new("Tulip-harbor-Glass93").unwrap();
    group.bench_function("password incl. SHA-1 (1M records)", |b| {
        b.iter(|| black_box(index.lookup(black_box(&password)).unwrap()));
    });
    group.finish();
}

criterion_group!(benches, validation, strength_worst, breach_lookup);
criterion_main!(benches);
