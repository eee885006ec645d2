#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use umanage_password::normalize::NormalizedPassword;
use umanage_password::strength::{self, MAX_ESTIMATE_CHARS, StrengthEstimate};

const UNESTIMABLE: &str = "The strength of this password could not be estimated.";

fn est(s: &str) -> StrengthEstimate {
    strength::estimate(&NormalizedPassword::new(s).unwrap(), &[])
}

fn sane(s: &str, e: &StrengthEstimate) {
    assert!(e.score <= 4, "{s:?}");
    assert!(
        e.guesses_log10.is_finite() && (0.0..=19.5).contains(&e.guesses_log10),
        "{s:?}: {e:?}"
    );
    assert!(e.evaluated_chars <= MAX_ESTIMATE_CHARS);
    assert_ne!(
        e.feedback.warning.as_deref(),
        Some(UNESTIMABLE),
        "zxcvbn panicked on {s:?}"
    );
    // the score follows zxcvbn's thresholds on the guesses
    let expected = match e.guesses_log10 {
        g if g < 3.0 => 0..=1,
        g if g < 6.0 => 0..=2,
        g if g < 8.0 => 1..=3,
        g if g < 10.0 => 2..=4,
        _ => 3..=4,
    };
    assert!(expected.contains(&e.score), "{s:?}: {e:?}");
}

/// Inputs known to be slow or overflow-prone in zxcvbn, at 128 code points.
pub fn hostile_inputs() -> Vec<String> {
    let cycle = |s: &str| s.chars().cycle().take(128).collect::<String>();
    vec![
        cycle("4@8({[<3691|!70$5+%2"),
        cycle("1!|4@3$5"),
        cycle("a"),
        cycle("ab"),
        cycle("!@#$%^&*()"),
        cycle("1234567890"),
        cycle("p4$$w0rd"),
        cycle("12"),
        cycle("7894561230"),
        cycle("qazwsxedcrfvtgbyhn"),
        cycle("!QASW@#EDFR$%TGHY^&UJKI*(OL"),
        cycle("aiaiaiaisoisoi"),
        cycle("😀e\u{301}"),
        cycle("19901991"),
    ]
}

#[test]
fn hostile_inputs_give_sane_bounded_estimates() {
    for s in hostile_inputs() {
        let e = est(&s);
        sane(&s, &e);
        assert_eq!(e.evaluated_chars, MAX_ESTIMATE_CHARS);
    }
    // the symbol-heavy one needed the l33t budget; repetitive ones stay weak
    let heavy = est(&hostile_inputs()[0]);
    assert!(heavy.l33t_unfolded > 0);
    for weak in ["a", "ab", "p4$$w0rd", "12", "1234567890", "!@#$%^&*()"] {
        let s: String = weak.chars().cycle().take(128).collect();
        let e = est(&s);
        assert!(e.score <= 2, "{s:?}: {e:?}");
        assert!(!e.feedback.suggestions.is_empty() || e.feedback.warning.is_some());
    }
}

#[test]
fn realistic_passwords_keep_zxcvbn_scores() {
    for (s, min, max) in [
        ("password", 0, 0),
        ("Tr0ub4dour&3", 1, 3),
        ("correct horse battery staple", 3, 4),
        ("qwertyuiop", 0, 1),
        ("vK#82mQ!zr7Lp@4x", 4, 4),
        ("", 0, 0),
    ] {
        let e = est(s);
        sane(s, &e);
        assert!((min..=max).contains(&e.score), "{s:?}: {e:?}");
        assert_eq!(e.l33t_unfolded, 0, "{s:?}");
    }
    // crack-time figures are ordered like the attack speeds
    let e = est("Tr0ub4dour&3");
    assert!(e.crack_times.online_throttled_secs >= e.crack_times.online_unthrottled_secs);
    assert!(e.crack_times.online_unthrottled_secs >= e.crack_times.offline_slow_hash_secs);
    assert!(e.crack_times.offline_slow_hash_secs >= e.crack_times.offline_fast_hash_secs);
    assert!(!e.crack_times.display[0].is_empty());
}

#[test]
fn random_inputs_never_reach_the_panic_fallback() {
    // xorshift over a pool biased to l33t symbols, digits, keypad walks and repeats
    let pool: Vec<char> = "4@8({[<3691|!70$5+%2aeiostlxzqwe.*-/ +#&^~QAZ字😀\u{301}\0"
        .chars()
        .collect();
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for _ in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 40) as usize;
        let s: String = (0..len)
            .map(|i| {
                let k = (x.rotate_left(i as u32 * 5) % pool.len() as u64) as usize;
                pool[k]
            })
            .collect();
        let e = est(&s);
        sane(&s, &e);
    }
}

#[test]
fn user_inputs_are_bounded() {
    let long = "x".repeat(10_000);
    let many: Vec<&str> = std::iter::repeat_n("alice", 1000).collect();
    let p = NormalizedPassword::new("alice-in-wonderland").unwrap();
    let e = strength::estimate(&p, &many);
    sane("alice-in-wonderland", &e);
    let e = strength::estimate(&p, &[long.as_str()]);
    sane("alice-in-wonderland", &e);
}
