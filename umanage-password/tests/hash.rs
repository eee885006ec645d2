//! Hashing: known-answer tests, hostile stored hashes, bcrypt migration, peppers.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use umanage_password::hash::{
    Algorithm, HashedPassword, HasherConfig, PasswordHasher, VerifyLimits, VerifyOutcome,
};
use umanage_password::{NormalizedPassword, PasswordError, PepperSet};

fn pw(s: &str) -> NormalizedPassword {
    NormalizedPassword::new(s).unwrap()
}

/// Cheap parameters for tests; benches use the real ones.
fn cheap() -> HasherConfig {
    HasherConfig::builder()
        .m_cost_kib(64)
        .t_cost(1)
        .p_cost(1)
        .build()
        .unwrap()
}

fn hasher() -> PasswordHasher {
    PasswordHasher::new(cheap())
}

/// Test vectors of the Argon2 reference implementation (P-H-C/phc-winner-argon2,
/// `src/test.c`, the `hashtest(...)` calls for versions 0x10 and 0x13): password
/// "password", salt "somesalt" unless noted. They verify through our parser and hasher.
const REFERENCE_VECTORS: &[(&str, &str)] = &[
    // version 0x13
    (
        "password",
        "$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8",
    ),
    (
        "password",
        "$argon2i$v=19$m=256,t=2,p=2$c29tZXNhbHQ$T/XOJ2mh1/TIpJHfCdQan76Q5esCFVoT5MAeIM1Oq2E",
    ),
    (
        "password",
        "$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA",
    ),
    (
        "password",
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
    ),
    (
        "password",
        "$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc",
    ),
    (
        "password",
        "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
    ),
    (
        "differentpassword",
        "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$C4TWUs9rDEvq7w3+J4umqA32aWKB1+DSiRuBfYxFj94",
    ),
    // salt "diffsalt"
    (
        "password",
        "$argon2id$v=19$m=65536,t=2,p=1$ZGlmZnNhbHQ$vfMrBczELrFdWP0ZsfhWsRPaHppYdP3MVEMIVlqoFBw",
    ),
    // version 0x10, written with v=16
    (
        "password",
        "$argon2i$v=16$m=256,t=2,p=1$c29tZXNhbHQ$/U3YPXYsSb3q9XxHvc0MLxur+GP960kN9j7emXX8zwY",
    ),
    (
        "password",
        "$argon2i$v=16$m=256,t=2,p=2$c29tZXNhbHQ$tsEVYKap1h6scGt5ovl9aLRGOqOth+AMB+KwHpDFZPs",
    ),
];

#[test]
fn reference_vectors_verify() {
    let h = hasher();
    for (password, stored) in REFERENCE_VECTORS {
        assert!(h.verify(&pw(password), stored).unwrap(), "{stored}");
        assert!(!h.verify(&pw("passwore"), stored).unwrap(), "{stored}");
        // every one is obsolete for our configuration
        assert!(h.needs_rehash(stored).unwrap(), "{stored}");
    }
    // the 1.0 format without a version field (as the reference writes it) is version 0x10
    let no_version =
        "$argon2i$m=256,t=2,p=1$c29tZXNhbHQ$/U3YPXYsSb3q9XxHvc0MLxur+GP960kN9j7emXX8zwY";
    assert!(h.verify(&pw("password"), no_version).unwrap());
    assert_eq!(h.inspect(no_version).unwrap().version, Some(0x10));
}

/// Argon2d vectors made with the C reference implementation through the `argon2-cffi`
/// Python binding (`argon2.low_level.hash_secret(b"password", b"somesalt", time_cost=2,
/// memory_cost=256, parallelism=P, hash_len=32, type=Type.D)`).
const ARGON2D_VECTORS: &[&str] = &[
    "$argon2d$v=19$m=256,t=2,p=1$c29tZXNhbHQ$JcTui6RIBUtJ78gE5Hi52CO+H5vS6Z9R1uxAB6OhUB8",
    "$argon2d$v=19$m=256,t=2,p=2$c29tZXNhbHQ$e2nJLXw4iarRKB28i678Esw3yA8cdeM+8sLUDCjrxXM",
];

#[test]
fn argon2d_verifies() {
    let h = hasher();
    assert_eq!(ARGON2D_VECTORS.len(), 2);
    for stored in ARGON2D_VECTORS {
        assert!(h.verify(&pw("password"), stored).unwrap(), "{stored}");
        assert!(!h.verify(&pw("passwore"), stored).unwrap(), "{stored}");
        assert_eq!(h.inspect(stored).unwrap().algorithm, Algorithm::Argon2d);
    }
}

#[test]
fn hash_round_trip_and_phc_format() {
    let h = hasher();
    let stored = h.hash(&pw("correct horse")).unwrap();
    let s = stored.as_str();
    assert!(s.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{s}");
    // 16-byte salt and 32-byte digest, unpadded base64
    let fields: Vec<&str> = s.split('$').collect();
    assert_eq!(fields[4].len(), 22);
    assert_eq!(fields[5].len(), 43);
    assert!(h.verify(&pw("correct horse"), s).unwrap());
    assert!(!h.verify(&pw("correct horsf"), s).unwrap());
    assert!(!h.needs_rehash(s).unwrap());
    // fresh salt every time
    assert_ne!(h.hash(&pw("correct horse")).unwrap(), stored);
    assert_eq!(
        h.verify_and_upgrade(&pw("correct horse"), s).unwrap(),
        VerifyOutcome::Match
    );
    assert_eq!(
        h.verify_and_upgrade(&pw("nope"), s).unwrap(),
        VerifyOutcome::Mismatch
    );
}

#[test]
fn normalised_forms_verify_alike() {
    let h = hasher();
    let stored = h.hash(&pw("caf\u{e9}")).unwrap();
    assert!(h.verify(&pw("cafe\u{301}"), stored.as_str()).unwrap());
    for hostile in ["", "\0", "a\0b", "\u{202e}abc", "👩‍👩‍👧‍👦", "e\u{301}\u{301}"]
    {
        let s = h.hash(&pw(hostile)).unwrap();
        assert!(h.verify(&pw(hostile), s.as_str()).unwrap(), "{hostile:?}");
    }
    // NUL is significant for Argon2
    let s = h.hash(&pw("a\0b")).unwrap();
    assert!(!h.verify(&pw("a"), s.as_str()).unwrap());
}

#[test]
fn needs_rehash_tracks_every_parameter() {
    let base = hasher();
    let stored = base.hash(&pw("x")).unwrap();
    let variants = [
        HasherConfig::builder().m_cost_kib(128).t_cost(1).p_cost(1),
        HasherConfig::builder().m_cost_kib(64).t_cost(2).p_cost(1),
        HasherConfig::builder().m_cost_kib(64).t_cost(1).p_cost(2),
        HasherConfig::builder()
            .m_cost_kib(64)
            .t_cost(1)
            .p_cost(1)
            .output_len(64),
    ];
    for v in variants {
        let other = PasswordHasher::new(v.build().unwrap());
        assert!(other.needs_rehash(stored.as_str()).unwrap());
        match other.verify_and_upgrade(&pw("x"), stored.as_str()).unwrap() {
            VerifyOutcome::MatchNeedsRehash(new) => {
                assert!(!other.needs_rehash(new.as_str()).unwrap());
                assert!(other.verify(&pw("x"), new.as_str()).unwrap());
            }
            o => panic!("{o:?}"),
        }
    }
    // a salt length change alone does not make a hash obsolete
    let salty = PasswordHasher::new(
        HasherConfig::builder()
            .m_cost_kib(64)
            .t_cost(1)
            .p_cost(1)
            .salt_len(32)
            .build()
            .unwrap(),
    );
    assert!(!salty.needs_rehash(stored.as_str()).unwrap());
}

#[test]
fn hostile_parameters_are_rejected_before_hashing() {
    let h = PasswordHasher::default(); // the production caps
    let tail = "$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4";
    let cases = [
        ("m=4194304,t=2,p=1", "m"), // 4 GiB
        ("m=4294967295,t=2,p=1", "m"),
        ("m=256,t=4294967295,p=1", "t"),
        ("m=256,t=2,p=16777215", "p"),
        ("m=256,t=0,p=1", "t"),
        ("m=256,t=2,p=0", "p"),
        ("m=8,t=2,p=2", "m"), // under 8 KiB per lane
    ];
    for (params, param) in cases {
        let stored = format!("$argon2id$v=19${params}{tail}");
        let err = h.verify(&pw("password"), &stored).unwrap_err();
        assert!(
            matches!(err, PasswordError::HashParamOutOfRange { param: p, .. } if p == param),
            "{stored}: {err:?}"
        );
        assert!(matches!(
            h.needs_rehash(&stored),
            Err(PasswordError::HashParamOutOfRange { .. })
        ));
    }
    // numbers that do not even fit the parser
    let huge = format!("$argon2id$v=19$m=99999999999999999999,t=2,p=1{tail}");
    assert!(matches!(
        h.verify(&pw("p"), &huge),
        Err(PasswordError::MalformedHash { .. })
    ));

    // output and salt lengths
    let short_digest = "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$AAAAAAAA";
    let long_digest = format!(
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ${}",
        "A".repeat(100)
    );
    let short_salt =
        "$argon2id$v=19$m=256,t=2,p=1$AAAA$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4";
    for stored in [short_digest, &long_digest, short_salt] {
        let err = h.verify(&pw("p"), stored).unwrap_err();
        assert!(
            matches!(err, PasswordError::HashParamOutOfRange { .. }),
            "{stored}: {err:?}"
        );
    }

    // tighter caps are honoured
    let tight = PasswordHasher::new(
        HasherConfig::builder()
            .m_cost_kib(64)
            .t_cost(1)
            .p_cost(1)
            .limits(VerifyLimits::new(128, 4, 1, 10).unwrap())
            .build()
            .unwrap(),
    );
    let err = tight
        .verify(&pw("password"), REFERENCE_VECTORS[0].1)
        .unwrap_err();
    assert!(
        matches!(
            err,
            PasswordError::HashParamOutOfRange {
                param: "m",
                value: 256,
                max: 128,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn malformed_hashes_are_typed_errors() {
    let h = hasher();
    let long = "$".repeat(100_000);
    let cases = [
        "",
        "$",
        "plaintext",
        "$argon2id$",
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ",
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4$",
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ=$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        "$argon2id$v=19$m=256,t=2,p=1$c29t*XNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        "$argon2id$v=19$m=256,t=2,p=1,keyid=AAAA$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        "$argon2id$v=19$m=256,t=2,p=1,pepper=a$b$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4\u{e9}",
        "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
        "$pbkdf2-sha256$29000$N2bMGcP4f0/J.T8n5JzT2g$Zq3nJkbGTxkSwmrH0AYpbwJE/1YEVCfD9mEl5cTcuKU",
        "$2x$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e",
        "$2b$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3",
        "$2b$5x$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e",
        "$2b$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXS*3e",
        &long,
    ];
    for stored in cases {
        let err = h.verify(&pw("password"), stored).unwrap_err();
        assert!(
            matches!(err, PasswordError::MalformedHash { .. }),
            "{stored:.80}: {err:?}"
        );
        // the error never echoes the hash
        assert!(!err.to_string().contains("nf65EOg"), "{err}");
    }
}

/// bcrypt vectors from Openwall's crypt_blowfish test suite (`wrapper.c`, `tests[]`), also
/// used by the Python `bcrypt` and Go `x/crypto/bcrypt` test suites.
const BCRYPT_VECTORS: &[(&[u8], &str)] = &[
    (
        b"U*U",
        "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
    ),
    (
        b"U*U*",
        "$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK",
    ),
    (
        b"U*U*U",
        "$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a",
    ),
    (
        b"",
        "$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy",
    ),
    (
        b"\xff\xff\xa3",
        "$2y$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e",
    ),
    (
        b"\xff\xff\xa3",
        "$2b$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e",
    ),
];

#[test]
fn bcrypt_hashes_verify_and_migrate() {
    let h = hasher();
    for (password, stored) in BCRYPT_VECTORS {
        let Ok(text) = std::str::from_utf8(password) else {
            continue;
        };
        let p = pw(text);
        assert!(h.verify(&p, stored).unwrap(), "{stored}");
        assert!(!h.verify(&pw("wrong"), stored).unwrap(), "{stored}");
        assert!(h.needs_rehash(stored).unwrap());
        assert_eq!(h.inspect(stored).unwrap().algorithm, Algorithm::Bcrypt);
        match h.verify_and_upgrade(&p, stored).unwrap() {
            VerifyOutcome::MatchNeedsRehash(new) => {
                assert!(new.as_str().starts_with("$argon2id$"));
                assert!(h.verify(&p, new.as_str()).unwrap());
            }
            o => panic!("{o:?}"),
        }
    }
}

#[test]
fn bcrypt_never_truncates_and_refuses_nul() {
    let h = hasher();
    // "0123...chars after 72 are ignored" from crypt_blowfish: bcrypt would accept any
    // suffix after byte 72, so such passwords are refused instead.
    let stored = "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui";
    let first72 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    assert_eq!(first72.len(), 72);
    assert!(h.verify(&pw(first72), stored).unwrap());
    for longer in [
        format!("{first72}chars after 72 are ignored"),
        format!("{first72}x"),
    ] {
        assert!(matches!(
            h.verify(&pw(&longer), stored),
            Err(PasswordError::BcryptPasswordTooLong { max_bytes: 72 })
        ));
    }
    // NUL: "U*U\0anything" would equal "U*U" in C implementations
    let stored = BCRYPT_VECTORS[0].1;
    assert!(matches!(
        h.verify(&pw("U*U\0x"), stored),
        Err(PasswordError::BcryptNulByte)
    ));
    assert!(matches!(
        h.verify(&pw("U*U\0"), stored),
        Err(PasswordError::BcryptNulByte)
    ));
    // bcrypt costs above the cap are rejected before hashing
    let costly = "$2b$31$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e";
    assert!(matches!(
        h.verify(&pw("x"), costly),
        Err(PasswordError::HashParamOutOfRange {
            param: "bcrypt cost",
            value: 31,
            ..
        })
    ));
    let cheap = "$2b$03$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e";
    assert!(matches!(
        h.verify(&pw("x"), cheap),
        Err(PasswordError::HashParamOutOfRange { .. })
    ));
}

#[test]
fn peppers_rotate() {
    let old = PepperSet::new("k1", vec![1u8; 32]).unwrap();
    let h1 = hasher().with_peppers(old);
    let stored = h1.hash(&pw("secret")).unwrap();
    assert!(stored.as_str().contains(",pepper=k1$"), "{stored:?}");
    assert!(h1.verify(&pw("secret"), stored.as_str()).unwrap());
    assert!(!h1.needs_rehash(stored.as_str()).unwrap());

    // without the key the hash cannot be checked: a typed error, not a silent mismatch
    let err = hasher().verify(&pw("secret"), stored.as_str()).unwrap_err();
    assert!(
        matches!(&err, PasswordError::UnknownPepper { key_id } if key_id == "k1"),
        "{err:?}"
    );

    // the same salt and params with another key give another digest
    let other = hasher().with_peppers(PepperSet::new("k1", vec![2u8; 32]).unwrap());
    assert!(!other.verify(&pw("secret"), stored.as_str()).unwrap());

    // rotation: k2 is current, k1 retired
    let rotated = PepperSet::new("k2", vec![3u8; 32])
        .unwrap()
        .with_retired("k1", vec![1u8; 32])
        .unwrap();
    let h2 = hasher().with_peppers(rotated);
    assert!(h2.verify(&pw("secret"), stored.as_str()).unwrap());
    assert!(h2.needs_rehash(stored.as_str()).unwrap());
    let VerifyOutcome::MatchNeedsRehash(new) = h2
        .verify_and_upgrade(&pw("secret"), stored.as_str())
        .unwrap()
    else {
        panic!("expected an upgrade");
    };
    assert!(new.as_str().contains(",pepper=k2$"));
    assert!(!h2.needs_rehash(new.as_str()).unwrap());

    // an unpeppered hash verifies and is upgraded to the pepper
    let plain = hasher().hash(&pw("secret")).unwrap();
    assert!(h2.verify(&pw("secret"), plain.as_str()).unwrap());
    assert!(h2.needs_rehash(plain.as_str()).unwrap());
    // and a peppered hash is obsolete for a hasher that has dropped peppers... only once it
    // can verify it, which needs the key: the Debug of a hasher never shows key bytes
    let dbg = format!("{h2:?}");
    assert!(dbg.contains("k2") && !dbg.contains("[3, 3"), "{dbg}");
}

#[test]
fn oversized_passwords_never_reach_the_hasher() {
    let mib = "x".repeat(1 << 20);
    assert!(matches!(
        NormalizedPassword::new(&mib),
        Err(PasswordError::TooLarge { .. })
    ));
    // at the cap it hashes fine
    let h = hasher();
    let max = pw(&"x".repeat(umanage_password::MAX_PASSWORD_BYTES));
    let s = h.hash(&max).unwrap();
    assert!(h.verify(&max, s.as_str()).unwrap());
    let _ = HashedPassword::new(s.into_string());
}
