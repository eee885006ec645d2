//! Strength meter: zxcvbn with a bounded worst case.
//!
//! [`estimate`] runs [zxcvbn](https://docs.rs/zxcvbn) (the Rust port of Dropbox's estimator)
//! and returns its score (0-4), `log10(guesses)`, crack-time estimates and feedback.
//!
//! # Bounded worst case
//!
//! zxcvbn's cost grows with the square of the length times the number of l33t substitution
//! tables it tries, and that number multiplies with every distinct l33t character present
//! (`(`, `{`, `[`, `<` are four ways to write `c`, `1`/`!`/`|` three ways to write `i`, ...).
//! A 100-character string of symbols and digits takes over a second. Two limits bound it:
//!
//! 1. **Prefix.** Only the first [`MAX_ESTIMATE_CHARS`] (20) code points are estimated; the rest
//!    is ignored. Adding characters never lowers zxcvbn's guesses, so this can only make the
//!    estimate *lower* (more cautious) for longer passwords: a password whose first 20
//!    characters are weak scores as weak. It rarely matters: 20 characters of a passphrase
//!    already reach score 4 (10^10 guesses), and zxcvbn counts guesses in a `u64` that
//!    saturates at about 10^19.3, a value 20 random characters reach. The limit also keeps
//!    zxcvbn 3.1's unchecked arithmetic in range (the factorial of the match count overflows
//!    from 21 matches, `degree^turns` of keyboard walks from about 28 turns), which would
//!    panic in debug builds.
//! 2. **l33t budget.** If the prefix would make zxcvbn try more than
//!    [`L33T_TABLE_BUDGET`] (128) substitution tables, the estimate runs on a copy in which
//!    l33t symbols, then l33t digits, are replaced by the letter they stand for (`(`→c, `|`→i,
//!    `!`→i, `@`→a, `$`→s, `+`→t, `%`→x, then `1`→i, `7`→t, `9`→g, `6`→g, `5`→s, `0`→o, `4`→a,
//!    `8`→b, `3`→e, `2`→z), one character at a time, until the count is within the budget.
//!    The replacement is the same for every occurrence, so repeats stay repeats. Effect on the
//!    score: a word written in l33t is then counted as the plain word (zxcvbn would add a
//!    small l33t factor), so those parts score *lower*; a keyboard run or character sequence
//!    made of the replaced symbols (`!@#$`) may no longer be recognised and can score higher,
//!    as brute force. Digits alone never exceed the budget, so dates and digit runs are
//!    always seen as typed. [`StrengthEstimate::l33t_unfolded`] tells how many distinct
//!    characters were replaced (0 for almost every real password).
//!
//! The worst case over hostile inputs at 128 characters is measured by the criterion bench
//! `password_policy` (group `password_policy/strength_hostile`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::normalize::NormalizedPassword;

/// Code points estimated; the rest of a longer password is ignored (see the module docs).
pub const MAX_ESTIMATE_CHARS: usize = 20;

/// The most l33t substitution tables zxcvbn may try per estimate (see the module docs).
pub const L33T_TABLE_BUDGET: u64 = 128;

/// zxcvbn's l33t table (letter, characters standing for it), copied from zxcvbn 3.1.
const L33T_TABLE: &[(char, &[char])] = &[
    ('a', &['4', '@']),
    ('b', &['8']),
    ('c', &['(', '{', '[', '<']),
    ('e', &['3']),
    ('g', &['6', '9']),
    ('i', &['1', '!', '|']),
    ('l', &['1', '|', '7']),
    ('o', &['0']),
    ('s', &['$', '5']),
    ('t', &['+', '7']),
    ('x', &['%']),
    ('z', &['2']),
];

/// Order in which l33t characters are replaced when over budget, with their letter.
const UNFOLD_ORDER: &[(char, char)] = &[
    ('(', 'c'),
    ('{', 'c'),
    ('[', 'c'),
    ('<', 'c'),
    ('|', 'i'),
    ('!', 'i'),
    ('@', 'a'),
    ('$', 's'),
    ('+', 't'),
    ('%', 'x'),
    ('1', 'i'),
    ('7', 't'),
    ('9', 'g'),
    ('6', 'g'),
    ('5', 's'),
    ('0', 'o'),
    ('4', 'a'),
    ('8', 'b'),
    ('3', 'e'),
    ('2', 'z'),
];

/// An upper bound of the number of substitution tables zxcvbn 3.1 enumerates for a text
/// containing exactly the characters `present` (product of the choices per letter, doubled
/// for each character that stands for two letters).
fn l33t_tables(present: &[char]) -> u64 {
    let mut count: u64 = 1;
    for (_, subs) in L33T_TABLE {
        let n = subs.iter().filter(|c| present.contains(c)).count() as u64;
        count = count.saturating_mul(n.max(1));
    }
    for shared in ['1', '|', '7'] {
        if present.contains(&shared) {
            count = count.saturating_mul(2);
        }
    }
    count
}

/// Crack-time estimates of zxcvbn's four attack scenarios, in seconds, with zxcvbn's
/// English display ("3 hours", "centuries").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrackTimes {
    /// Online attack against a service limiting to 100 guesses per hour.
    pub online_throttled_secs: f64,
    /// Online attack at 10 guesses per second.
    pub online_unthrottled_secs: f64,
    /// Offline attack on a slow hash, 10^4 guesses per second.
    pub offline_slow_hash_secs: f64,
    /// Offline attack on a fast hash, 10^10 guesses per second.
    pub offline_fast_hash_secs: f64,
    /// The same four, as zxcvbn displays them.
    pub display: [String; 4],
}

/// zxcvbn's feedback (set for scores 0-2): an optional warning and suggestions, in English.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// What is wrong ("This is a top-10 common password").
    pub warning: Option<String>,
    /// How to do better.
    pub suggestions: Vec<String>,
}

/// The result of [`estimate`]. Holds no part of the password.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StrengthEstimate {
    /// zxcvbn score, 0 (too guessable) to 4 (very unguessable).
    pub score: u8,
    /// `log10` of the estimated guesses (0 for the empty password; at most about 19.3).
    pub guesses_log10: f64,
    /// Crack-time estimates.
    pub crack_times: CrackTimes,
    /// Feedback; empty for scores 3 and 4.
    pub feedback: Feedback,
    /// Code points that were estimated (at most [`MAX_ESTIMATE_CHARS`]).
    pub evaluated_chars: usize,
    /// Distinct l33t characters replaced to stay within [`L33T_TABLE_BUDGET`].
    pub l33t_unfolded: usize,
}

impl fmt::Debug for StrengthEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrengthEstimate")
            .field("score", &self.score)
            .field("guesses_log10", &self.guesses_log10)
            .field("evaluated_chars", &self.evaluated_chars)
            .field("l33t_unfolded", &self.l33t_unfolded)
            .finish_non_exhaustive()
    }
}

/// Estimates the strength of `password`; `user_inputs` (username, email, name...) are words
/// an attacker would try first. Bounded cost: see the module docs.
pub fn estimate(password: &NormalizedPassword, user_inputs: &[&str]) -> StrengthEstimate {
    estimate_str(password.expose(), user_inputs)
}

pub(crate) fn estimate_str(password: &str, user_inputs: &[&str]) -> StrengthEstimate {
    let mut prefix: Vec<char> = password.chars().take(MAX_ESTIMATE_CHARS).collect();
    let mut present: Vec<char> = prefix.clone();
    present.sort_unstable();
    present.dedup();
    let mut unfolded = 0;
    for &(from, to) in UNFOLD_ORDER {
        if l33t_tables(&present) <= L33T_TABLE_BUDGET {
            break;
        }
        if let Ok(pos) = present.binary_search(&from) {
            present.remove(pos);
            if let Err(pos) = present.binary_search(&to) {
                present.insert(pos, to);
            }
            for c in &mut prefix {
                if *c == from {
                    *c = to;
                }
            }
            unfolded += 1;
        }
    }
    let text: String = prefix.iter().collect();
    // User inputs are bounded too: zxcvbn matches each against every substring.
    let inputs: Vec<&str> = user_inputs
        .iter()
        .copied()
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .take(16)
        .collect();
    // zxcvbn is given inputs it handles within range (see the module docs); should it
    // still panic, the password is reported as unestimable with the lowest score rather than
    // taking the caller down.
    let Ok(entropy) = std::panic::catch_unwind(|| zxcvbn::zxcvbn(&text, &inputs)) else {
        return StrengthEstimate {
            score: 0,
            guesses_log10: 0.0,
            crack_times: CrackTimes {
                online_throttled_secs: 0.0,
                online_unthrottled_secs: 0.0,
                offline_slow_hash_secs: 0.0,
                offline_fast_hash_secs: 0.0,
                display: std::array::from_fn(|_| "less than a second".to_owned()),
            },
            feedback: Feedback {
                warning: Some("The strength of this password could not be estimated.".to_owned()),
                suggestions: Vec::new(),
            },
            evaluated_chars: prefix.len(),
            l33t_unfolded: unfolded,
        };
    };
    let times = entropy.crack_times();
    let secs = |t: zxcvbn::time_estimates::CrackTimeSeconds| -> f64 {
        match t {
            zxcvbn::time_estimates::CrackTimeSeconds::Integer(i) => i as f64,
            zxcvbn::time_estimates::CrackTimeSeconds::Float(f) => f,
        }
    };
    let scenarios = [
        times.online_throttling_100_per_hour(),
        times.online_no_throttling_10_per_second(),
        times.offline_slow_hashing_1e4_per_second(),
        times.offline_fast_hashing_1e10_per_second(),
    ];
    let feedback = entropy
        .feedback()
        .map(|f| Feedback {
            warning: f.warning().map(|w| w.to_string()),
            suggestions: f.suggestions().iter().map(ToString::to_string).collect(),
        })
        .unwrap_or_default();
    let log10 = entropy.guesses_log10();
    StrengthEstimate {
        score: u8::from(entropy.score()),
        guesses_log10: if log10.is_finite() {
            log10.max(0.0)
        } else {
            0.0
        },
        crack_times: CrackTimes {
            online_throttled_secs: secs(scenarios[0]),
            online_unthrottled_secs: secs(scenarios[1]),
            offline_slow_hash_secs: secs(scenarios[2]),
            offline_fast_hash_secs: secs(scenarios[3]),
            display: scenarios.map(|s| s.to_string()),
        },
        feedback,
        evaluated_chars: prefix.len(),
        l33t_unfolded: unfolded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_count_bound() {
        assert_eq!(l33t_tables(&[]), 1);
        assert_eq!(l33t_tables(&['a', 'b']), 1);
        assert_eq!(l33t_tables(&['(', '{']), 2);
        assert_eq!(l33t_tables(&['1']), 2);
        let digits: Vec<char> = ('0'..='9').collect();
        assert!(l33t_tables(&digits) <= L33T_TABLE_BUDGET);
    }

    #[test]
    fn ordinary_passwords_are_estimated_as_typed() {
        let weak = estimate_str("password", &[]);
        assert_eq!(weak.score, 0);
        assert!(weak.feedback.warning.is_some());
        assert_eq!(weak.l33t_unfolded, 0);
        let strong = estimate_str("vU7#qk2!Lr9@xZp4", &[]);
        assert!(strong.score >= 3, "{strong:?}");
        let empty = estimate_str("", &[]);
        assert_eq!(empty.score, 0);
        assert!(empty.guesses_log10.abs() < f64::EPSILON);
    }

    #[test]
    fn user_inputs_lower_the_estimate() {
        let without = estimate_str("zebulon.karlsson", &[]);
        let with = estimate_str("zebulon.karlsson", &["zebulon.karlsson"]);
        assert!(with.guesses_log10 < without.guesses_log10);
    }
}
