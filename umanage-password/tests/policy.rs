#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::collections::BTreeSet;

use umanage_password::PasswordError;
use umanage_password::dictionary::WordMatch;
use umanage_password::normalize::NormalizedPassword;
use umanage_password::policy::{
    Compliance, PasswordPolicy, PolicyError, UserInfo, UserInfoField, ValidationReport,
    ViolationCode as C,
};

fn pw(s: &str) -> NormalizedPassword {
    NormalizedPassword::new(s).unwrap()
}

fn codes(report: &ValidationReport) -> BTreeSet<C> {
    report.codes().into_iter().collect()
}

fn set(codes: &[C]) -> BTreeSet<C> {
    codes.iter().copied().collect()
}

#[test]
fn presets_have_the_documented_values() {
    let nist = PasswordPolicy::nist();
    assert_eq!(nist.compliance(), Compliance::Nist);
    assert_eq!((nist.min_length(), nist.max_length()), (15, 128));
    assert_eq!(
        (
            nist.min_uppercase(),
            nist.min_lowercase(),
            nist.min_digits(),
            nist.min_special()
        ),
        (0, 0, 0, 0)
    );
    assert!(nist.prohibit_common());
    assert_eq!(nist.expiry_days(), None);
    assert_eq!(nist.min_score(), None);

    let mfa = PasswordPolicy::nist_with_mfa();
    assert_eq!(mfa.min_length(), 8);
    assert_eq!(mfa.compliance(), Compliance::NistWithMfa);

    let ent = PasswordPolicy::enterprise();
    assert_eq!((ent.min_length(), ent.max_length()), (12, 128));
    assert_eq!(
        (
            ent.min_uppercase(),
            ent.min_lowercase(),
            ent.min_digits(),
            ent.min_special()
        ),
        (2, 2, 2, 2)
    );
    assert_eq!(ent.min_score(), Some(3));
    assert_eq!(ent.history_count(), 5);
    assert_eq!(ent.expiry_days(), Some(90));
    assert_eq!(ent.expiry(), Some(chrono::Duration::days(90)));
    assert_eq!(ent.min_age_days(), Some(1));
    assert_eq!(ent.max_repeated(), Some(3));
    assert_eq!(ent.sequence_min_run(), 4);

    // Every preset passes its own builder checks.
    for p in [nist, mfa, ent] {
        assert_eq!(p.to_builder().build().unwrap(), p);
    }
    assert_eq!(PasswordPolicy::default(), PasswordPolicy::nist());
}

#[test]
fn builder_rejects_contradictions() {
    let b = PasswordPolicy::builder;
    type Case = (
        umanage_password::PasswordPolicyBuilder,
        fn(&PolicyError) -> bool,
    );
    let cases: Vec<Case> = vec![
        (b().min_length(20).max_length(10), |e| {
            matches!(e, PolicyError::MinAboveMax { min: 20, max: 10 })
        }),
        (b().min_length(0), |e| {
            matches!(
                e,
                PolicyError::OutOfRange {
                    field: "min_length",
                    ..
                }
            )
        }),
        (b().max_length(0).min_length(1), |e| {
            matches!(
                e,
                PolicyError::OutOfRange {
                    field: "max_length",
                    ..
                }
            )
        }),
        (b().max_length(5000), |e| {
            matches!(
                e,
                PolicyError::OutOfRange {
                    field: "max_length",
                    value: 5000,
                    ..
                }
            )
        }),
        (
            b().min_length(8)
                .max_length(10)
                .min_uppercase(3)
                .min_lowercase(3)
                .min_digits(3)
                .min_special(2),
            |e| {
                matches!(
                    e,
                    PolicyError::ClassesExceedMax {
                        required: 11,
                        max: 10
                    }
                )
            },
        ),
        (b().min_score(Some(5)), |e| {
            matches!(
                e,
                PolicyError::OutOfRange {
                    field: "min_score",
                    value: 5,
                    ..
                }
            )
        }),
        (b().sequence_min_run(2), |e| {
            matches!(
                e,
                PolicyError::OutOfRange {
                    field: "sequence_min_run",
                    ..
                }
            )
        }),
        (b().max_repeated(Some(0)), |e| {
            matches!(
                e,
                PolicyError::OutOfRange {
                    field: "max_repeated",
                    ..
                }
            )
        }),
        (b().expiry_days(Some(0)), |e| {
            matches!(
                e,
                PolicyError::OutOfRange {
                    field: "expiry_days",
                    ..
                }
            )
        }),
        (b().min_age_days(Some(0)), |e| {
            matches!(
                e,
                PolicyError::OutOfRange {
                    field: "min_age_days",
                    ..
                }
            )
        }),
        (b().history_count(1000), |e| {
            matches!(
                e,
                PolicyError::OutOfRange {
                    field: "history_count",
                    ..
                }
            )
        }),
        (b().expiry_days(Some(30)).min_age_days(Some(30)), |e| {
            matches!(e, PolicyError::Contradiction(_))
        }),
        (b().user_info_max_similarity(0.0), |e| {
            matches!(e, PolicyError::Contradiction(_))
        }),
        (b().user_info_max_similarity(f64::NAN), |e| {
            matches!(e, PolicyError::Contradiction(_))
        }),
        (b().prohibited_words(["acme", "  "]), |e| {
            matches!(e, PolicyError::InvalidWord { index: 1, .. })
        }),
        (
            b().prohibited_word_match(WordMatch::Substring)
                .prohibited_words(["ab"]),
            |e| matches!(e, PolicyError::InvalidWord { index: 0, .. }),
        ),
        // NIST forbids composition rules, expiry, short maximums, short minimums, no blocklist.
        (PasswordPolicy::nist().to_builder().min_digits(1), |e| {
            matches!(
                e,
                PolicyError::NonCompliant {
                    compliance: Compliance::Nist,
                    ..
                }
            )
        }),
        (
            PasswordPolicy::nist().to_builder().expiry_days(Some(90)),
            |e| matches!(e, PolicyError::NonCompliant { .. }),
        ),
        (PasswordPolicy::nist().to_builder().max_length(63), |e| {
            matches!(e, PolicyError::NonCompliant { .. })
        }),
        (PasswordPolicy::nist().to_builder().min_length(12), |e| {
            matches!(e, PolicyError::NonCompliant { .. })
        }),
        (
            PasswordPolicy::nist_with_mfa().to_builder().min_length(7),
            |e| {
                matches!(
                    e,
                    PolicyError::NonCompliant {
                        compliance: Compliance::NistWithMfa,
                        ..
                    }
                )
            },
        ),
        (
            PasswordPolicy::nist().to_builder().prohibit_common(false),
            |e| matches!(e, PolicyError::NonCompliant { .. }),
        ),
    ];
    for (i, (builder, check)) in cases.into_iter().enumerate() {
        let err = builder.build().unwrap_err();
        assert!(check(&err), "case {i}: {err:?}");
        // and the crate error wraps it
        assert!(matches!(PasswordError::from(err), PasswordError::Policy(_)));
    }
    // The same limits without compliance are fine.
    PasswordPolicy::nist()
        .to_builder()
        .compliance(Compliance::None)
        .min_length(8)
        .max_length(32)
        .min_digits(1)
        .expiry_days(Some(90))
        .min_age_days(Some(1))
        .build()
        .unwrap();
}

#[test]
fn serde_round_trip_and_strictness() {
    let ent = PasswordPolicy::enterprise();
    let json = serde_json::to_string(&ent).unwrap();
    let back: PasswordPolicy = serde_json::from_str(&json).unwrap();
    assert_eq!(back, ent);

    let p: PasswordPolicy = serde_json::from_str(
        r#"{"min_length": 10, "prohibited_words": ["Acme"], "prohibited_word_match": "substring"}"#,
    )
    .unwrap();
    assert_eq!(p.min_length(), 10);
    assert_eq!(p.host_words().len(), 1);
    let report = p.validate_rules(&pw("I-love-acme-stuff!"), &UserInfo::new());
    assert!(report.has(C::ProhibitedWord));

    // unknown field, contradiction and NIST breach all refused at load time
    for bad in [
        r#"{"min_lenght": 10}"#,
        r#"{"min_length": 30, "max_length": 20}"#,
        r#"{"compliance": "nist", "min_uppercase": 1}"#,
        r#"{"min_score": 9}"#,
    ] {
        assert!(
            serde_json::from_str::<PasswordPolicy>(bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn validation_table() {
    let nist = PasswordPolicy::nist();
    let mfa = PasswordPolicy::nist_with_mfa();
    let ent = PasswordPolicy::enterprise();
    let nobody = UserInfo::new();
    let long = "ab".repeat(70);
    let cases: Vec<(&PasswordPolicy, &str, &[C])> = vec![
        (&nist, "correct horse battery staple", &[]),
        (&nist, "short", &[C::TooShort]),
        (&nist, "", &[C::TooShort]),
        (&mfa, "password", &[C::CommonPassword]),
        (&mfa, "P@ssw0rd", &[C::CommonPassword]),
        (
            &mfa,
            "  QWERTY123  ",
            &[C::CommonPassword, C::SequentialCharacters],
        ),
        (&mfa, "abcdefgh-zebra", &[C::SequentialCharacters]),
        (&mfa, "tulip-98765-sun", &[C::SequentialCharacters]),
        (&mfa, "tulip-9876-sun", &[]),
        (&mfa, "tulip-aaaaa-sun", &[C::RepeatedCharacters]),
        (&mfa, "tulip-aaaa-sun", &[]),
        (&nist, &long, &[C::TooLong]),
        (&ent, "Vx7#mQ2!rT9$kL", &[]),
        (&ent, "vx7#mq2!rt9$kl", &[C::TooFewUppercase]),
        (&ent, "VX7#MQ2!RT9$KL", &[C::TooFewLowercase]),
        (&ent, "Vx7#mQa!rTb$kL", &[C::TooFewDigits]),
        (&ent, "Vx7KmQ2prT9NkL", &[C::TooFewSpecial]),
        (&ent, "Vx7#mQ2!rT9$kLqwer", &[C::SequentialCharacters]),
        (&ent, "Vx7#mQ2!rT9$kLLLL", &[C::RepeatedCharacters]),
        (&ent, "ÄÖx7#mq2!rt9$kl", &[]),
    ];
    for (policy, text, expected) in cases {
        let report = policy.validate(&pw(text), &nobody);
        assert_eq!(
            codes(&report),
            set(expected),
            "{text:?}: {:?}",
            report.violations
        );
        assert_eq!(report.is_valid(), expected.is_empty());
        assert!(report.strength.is_some());
    }
}

#[test]
fn every_violation_is_reported_at_once_with_params() {
    let ent = PasswordPolicy::enterprise();
    let user = UserInfo::new().with_username("aaaa");
    let report = ent.validate(&pw("aaaa"), &user);
    assert_eq!(
        codes(&report),
        set(&[
            C::TooShort,
            C::TooFewUppercase,
            C::TooFewDigits,
            C::TooFewSpecial,
            C::CommonPassword,
            C::ContainsUserInfo,
            C::RepeatedCharacters,
            C::TooWeak,
        ])
    );
    let short = report.get(C::TooShort).unwrap();
    assert_eq!(short.param_u64("min"), Some(12));
    assert_eq!(short.param_u64("actual"), Some(4));
    assert_eq!(
        short.message,
        "The password must be at least 12 characters long."
    );
    let upper = report.get(C::TooFewUppercase).unwrap();
    assert_eq!(upper.param_u64("min"), Some(2));
    assert_eq!(upper.param_u64("actual"), Some(0));
    let weak = report.get(C::TooWeak).unwrap();
    assert_eq!(weak.param_u64("min_score"), Some(3));
    assert_eq!(
        report.get(C::ContainsUserInfo).unwrap().param_str("field"),
        Some("username")
    );
    assert_eq!(
        report
            .get(C::RepeatedCharacters)
            .unwrap()
            .param_u64("actual"),
        Some(4)
    );

    // JSON shape hosts rely on
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["violations"][0]["code"], "too_short");
    assert_eq!(json["violations"][0]["params"]["min"], 12);
    assert_eq!(C::TooShort.as_str(), "too_short");

    // without the strength meter: no too_weak, no estimate
    let fast = ent.validate_rules(&pw("aaaa"), &user);
    assert!(!fast.has(C::TooWeak));
    assert!(fast.strength.is_none());
    assert_eq!(fast.violations.len(), report.violations.len() - 1);
}

#[test]
fn entropy_figure() {
    let p = PasswordPolicy::nist();
    let r = p.validate_rules(&pw("abcdefghijklmnopqrst"), &UserInfo::new());
    assert!((r.entropy_bits - 20.0 * 26f64.log2()).abs() < 1e-9);
    let r = p.validate_rules(&pw("aB3$"), &UserInfo::new());
    assert!((r.entropy_bits - 4.0 * 95f64.log2()).abs() < 1e-9);
    assert_eq!(r.char_count, 4);
}

#[test]
fn user_info_checks() {
    let policy = PasswordPolicy::nist_with_mfa();
    let user = UserInfo::new()
        .with_username("Alice.Smith")
        .with_email("alice.smith@wonderland-corp.example")
        .with_display_name("Alice Liddell");
    let cases: &[(&str, &[C], &[UserInfoField])] = &[
        // the identifier plus a suffix, in any case, with or without separators, l33t
        (
            "alice.smith2024!",
            &[C::ContainsUserInfo],
            &[UserInfoField::Username, UserInfoField::Email],
        ),
        (
            "ALICESMITH#99",
            &[C::ContainsUserInfo],
            &[UserInfoField::Username, UserInfoField::Email],
        ),
        (
            "4l1c3.5m1th-x",
            &[C::ContainsUserInfo],
            &[UserInfoField::Username, UserInfoField::Email],
        ),
        // a word of the name, the company domain label
        (
            "liddell-rocks-77",
            &[C::ContainsUserInfo],
            &[UserInfoField::DisplayName],
        ),
        (
            "wonderland-corp-x",
            &[C::ContainsUserInfo],
            &[UserInfoField::EmailDomain],
        ),
        // a slight edit of the identifier
        (
            "alyce.smyth",
            &[C::SimilarToUserInfo],
            &[UserInfoField::Username, UserInfoField::Email],
        ),
        // unrelated
        ("tulip-harbor-glass", &[], &[]),
    ];
    for (text, expected, fields) in cases {
        let report = policy.validate_rules(&pw(text), &user);
        let found: BTreeSet<C> = codes(&report)
            .into_iter()
            .filter(|c| matches!(c, C::ContainsUserInfo | C::SimilarToUserInfo))
            .collect();
        assert_eq!(found, set(expected), "{text}: {:?}", report.violations);
        for field in *fields {
            assert!(
                report
                    .violations
                    .iter()
                    .any(|v| v.param_str("field") == Some(field.as_str())),
                "{text}: missing {field:?} in {:?}",
                report.violations
            );
        }
    }
}

#[test]
fn random_password_sharing_characters_with_a_uuid_passes() {
    let policy = PasswordPolicy::nist();
    let id = "3f2a9c1e-4b7d-4e21-9a3c-5d8e7f6a1b2c";
    let user = UserInfo::new()
        .with_username(id)
        .with_email(format!("{id}@example.org"));
    // shares characters such as 3, f, 2, a, 9, c, 1, e with the UUID
    for text in [
        "3fQz!92aLm#Vc81eYx",
        "k9F3-a2Zq!mC1e-Vb7T",
        "Rz3f%2Kq9c#Wm1e8Lx",
    ] {
        let report = policy.validate(&pw(text), &user);
        assert!(report.is_valid(), "{text}: {:?}", report.violations);
    }
    // but the UUID with a suffix does not
    let report = policy.validate_rules(&pw(&format!("{id}!")), &user);
    assert!(report.has(C::ContainsUserInfo));
    let report = policy.validate_rules(&pw("3F2A9C1E4B7D4E21-x"), &user);
    assert!(report.has(C::ContainsUserInfo));
}

#[test]
fn host_words_exact_and_substring() {
    let exact = PasswordPolicy::nist_with_mfa()
        .to_builder()
        .prohibited_words(["Umanage Cloud", "hunter2hunter2"])
        .build()
        .unwrap();
    let u = UserInfo::new();
    assert!(
        exact
            .validate_rules(&pw("umanage cloud"), &u)
            .has(C::ProhibitedWord)
    );
    assert!(
        exact
            .validate_rules(&pw("HUNTER2HUNTER2"), &u)
            .has(C::ProhibitedWord)
    );
    assert!(
        !exact
            .validate_rules(&pw("umanage cloud 7"), &u)
            .has(C::ProhibitedWord)
    );
    let sub = exact
        .to_builder()
        .prohibited_word_match(WordMatch::Substring)
        .prohibited_words(["umanage"])
        .build()
        .unwrap();
    assert!(
        sub.validate_rules(&pw("i-like-UMANAGE-a-lot"), &u)
            .has(C::ProhibitedWord)
    );
    assert!(
        sub.validate_rules(&pw("i-like-um4n4ge-a-lot"), &u)
            .has(C::ProhibitedWord)
    );
    assert!(
        !sub.validate_rules(&pw("i-like-mangoes-a-lot"), &u)
            .has(C::ProhibitedWord)
    );
}

#[test]
fn length_counts_code_points_after_nfkc() {
    let policy = PasswordPolicy::nist_with_mfa();
    // 8 precomposed vs decomposed "é": both 8 code points after NFKC
    let decomposed = "e\u{301}".repeat(8);
    let r = policy.validate_rules(&pw(&decomposed), &UserInfo::new());
    assert_eq!(r.char_count, 8);
    assert!(!r.has(C::TooShort));
    // 8 emoji are 8 code points (32 bytes)
    let r = policy.validate_rules(&pw("🦀🐙🦑🐳🦈🐬🐠🐡"), &UserInfo::new());
    assert_eq!(r.char_count, 8);
    assert!(!r.has(C::TooShort));
}

/// A small deterministic generator (xorshift64*), so the property tests need no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn hostile_char(&mut self) -> char {
        const POOL: &[char] = &[
            'a',
            'Z',
            '0',
            '9',
            '!',
            '@',
            '(',
            '|',
            ' ',
            '\0',
            '\u{7f}',
            '\u{301}',
            '\u{20dd}',
            '\u{202e}',
            '\u{200f}',
            '\u{200d}',
            '\u{fe0f}',
            'ß',
            'İ',
            'ﬁ',
            'Ａ',
            '١',
            'א',
            'ب',
            '字',
            '😀',
            '👩',
            '🏽',
            '\u{10ffff}',
            '\u{fffd}',
            '\t',
            '\n',
            '￿',
        ];
        if self.below(4) == 0 {
            char::from_u32(self.below(0x11_0000) as u32).unwrap_or('x')
        } else {
            POOL[self.below(POOL.len() as u64) as usize]
        }
    }
}

#[test]
fn hostile_inputs_never_panic() {
    // over the cap: a typed error before any work
    let mib = "x".repeat(1 << 20);
    assert!(matches!(
        NormalizedPassword::new(&mib),
        Err(PasswordError::TooLarge { .. })
    ));
    let policies = [
        PasswordPolicy::nist(),
        PasswordPolicy::enterprise(),
        PasswordPolicy::builder()
            .max_length(4096)
            .prohibited_word_match(WordMatch::Substring)
            .prohibited_words(["acme", "ﬁsh"])
            .build()
            .unwrap(),
    ];
    let user = UserInfo::new()
        .with_username("\u{202e}admin\0")
        .with_email("@@@")
        .with_display_name("👩‍👩‍👧‍👦 e\u{301}\u{301}")
        .with_other("");
    let mut fixed: Vec<String> = vec![
        String::new(),
        "\0".into(),
        "\0".repeat(4096),
        "a\0b".into(),
        "😀".repeat(1024),
        "e\u{301}".repeat(1365),
        "\u{202e}".repeat(100) + "drowssap",
        "א".repeat(2048),
        "ﷺ".repeat(300), // NFKC expands this ligature to 18 code points
        "ﬁ".repeat(1000),
        "4@8({[<3691|!70$5+%2".repeat(200),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let len = rng.below(200) as usize;
        fixed.push((0..len).map(|_| rng.hostile_char()).collect());
    }
    for raw in &fixed {
        let Ok(p) = NormalizedPassword::new(raw) else {
            assert!(raw.len() > 4096);
            continue;
        };
        for policy in &policies {
            let report = policy.validate(&p, &user);
            assert_eq!(report.char_count, p.char_count());
            assert_eq!(
                report.has(C::TooShort),
                p.char_count() < policy.min_length() as usize
            );
            assert_eq!(
                report.has(C::TooLong),
                p.char_count() > policy.max_length() as usize
            );
            assert!(report.entropy_bits.is_finite() && report.entropy_bits >= 0.0);
            let s = report.strength.as_ref().unwrap();
            assert!(s.score <= 4);
            assert!(s.guesses_log10.is_finite() && (0.0..=20.0).contains(&s.guesses_log10));
            // no message or param ever carries the password
            if p.char_count() >= 4 {
                let json = serde_json::to_string(&report.violations).unwrap();
                assert!(!json.contains(p.expose()), "password leaked into {json}");
            }
        }
    }
}
