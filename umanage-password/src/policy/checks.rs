//! The individual checks behind [`PasswordPolicy::validate`](crate::policy::PasswordPolicy::validate).
//! All work on normalised text, are linear or bounded quadratic, and never panic.

use std::sync::LazyLock;

/// Character-class counts of a password.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClassCounts {
    pub upper: usize,
    pub lower: usize,
    pub digits: usize,
    pub special: usize,
    /// Letters without case (CJK, Arabic, ...): count toward no class.
    pub caseless_letters: usize,
    /// Characters outside ASCII (for the entropy figure).
    pub non_ascii: usize,
}

/// Counts classes: upper/lower by Unicode case, digits by `char::is_numeric`, special is
/// everything that is neither a letter nor a number (symbols, punctuation, spaces, emoji,
/// combining marks, controls).
pub(crate) fn classes(text: &str) -> ClassCounts {
    let mut c = ClassCounts::default();
    for ch in text.chars() {
        if !ch.is_ascii() {
            c.non_ascii += 1;
        }
        if ch.is_uppercase() {
            c.upper += 1;
        } else if ch.is_lowercase() {
            c.lower += 1;
        } else if ch.is_numeric() {
            c.digits += 1;
        } else if ch.is_alphabetic() {
            c.caseless_letters += 1;
        } else {
            c.special += 1;
        }
    }
    c
}

/// The "search space" entropy in bits: `length × log2(pool)`, where the pool adds 26 if a
/// lower-case letter is present, 26 for upper case, 10 for digits, 33 for ASCII symbols and
/// space, and 100 once if any non-ASCII character is present.
pub(crate) fn search_space_bits(text: &str, chars: usize) -> f64 {
    let (mut lower, mut upper, mut digit, mut symbol, mut other) =
        (false, false, false, false, false);
    for ch in text.chars() {
        match ch {
            'a'..='z' => lower = true,
            'A'..='Z' => upper = true,
            '0'..='9' => digit = true,
            ' '..='~' => symbol = true,
            _ => other = true,
        }
    }
    let pool = [
        (lower, 26u32),
        (upper, 26),
        (digit, 10),
        (symbol, 33),
        (other, 100),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| n)
    .sum::<u32>();
    if pool == 0 {
        return 0.0;
    }
    chars as f64 * f64::from(pool).log2()
}

/// The longest run of one character repeated consecutively.
pub(crate) fn longest_repeat(text: &str) -> usize {
    let mut best = 0;
    let mut run = 0;
    let mut prev = None;
    for ch in text.chars() {
        if Some(ch) == prev {
            run += 1;
        } else {
            run = 1;
            prev = Some(ch);
        }
        best = best.max(run);
    }
    best
}

/// Keyboard rows (US QWERTY, unshifted and shifted, lower-cased) in which adjacent keys form runs.
const KEYBOARD_ROWS: &[&str] = &[
    "`1234567890-=",
    "qwertyuiop[]\\",
    "asdfghjkl;'",
    "zxcvbnm,./",
    "~!@#$%^&*()_+",
    "qwertyuiop{}|",
    "asdfghjkl:\"",
    "zxcvbnm<>?",
];

type KeyPositions = [Option<(u8, u8)>; 2];

/// (row, column) of every ASCII character on the rows above (at most two: unshifted and
/// shifted rows share letters), computed once.
static KEY_POSITIONS: LazyLock<[KeyPositions; 128]> = LazyLock::new(|| {
    let mut table = [[None, None]; 128];
    for (row, keys) in KEYBOARD_ROWS.iter().enumerate() {
        for (col, key) in keys.chars().enumerate() {
            if let Some(slot) = table[key as usize].iter_mut().find(|s| s.is_none()) {
                *slot = Some((row as u8, col as u8));
            }
        }
    }
    table
});

fn key_position(ch: char) -> KeyPositions {
    if ch.is_ascii() {
        KEY_POSITIONS[ch as usize]
    } else {
        [None, None]
    }
}

/// The longest sequential run: consecutive ASCII letters or digits going up or down by one
/// (`abc`, `123`, `987`, `zyx`, case-insensitive) or adjacent keys of one keyboard row in one
/// direction (`qwerty`, `asdf`, `!@#$`, `poiu`).
pub(crate) fn longest_sequence(text: &str) -> usize {
    let lowered: Vec<char> = text.chars().map(|c| c.to_ascii_lowercase()).collect();
    if lowered.is_empty() {
        return 0;
    }
    // runs[k] is the current run length for relation k: 0 up, 1 down, 2 key right, 3 key left.
    let mut runs = [1usize; 4];
    let mut best = 1;
    for pair in lowered.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let alnum = |c: char| c.is_ascii_alphanumeric();
        let same_kind = (a.is_ascii_digit() && b.is_ascii_digit())
            || (a.is_ascii_lowercase() && b.is_ascii_lowercase());
        let up = alnum(a) && same_kind && (b as u32) == (a as u32) + 1;
        let down = alnum(a) && same_kind && (a as u32) == (b as u32) + 1;
        let (mut right, mut left) = (false, false);
        for pa in key_position(a).into_iter().flatten() {
            for pb in key_position(b).into_iter().flatten() {
                if pa.0 == pb.0 {
                    right |= pb.1 == pa.1 + 1;
                    left |= pa.1 == pb.1 + 1;
                }
            }
        }
        for (k, hit) in [up, down, right, left].into_iter().enumerate() {
            runs[k] = if hit { runs[k] + 1 } else { 1 };
            best = best.max(runs[k]);
        }
    }
    best
}

/// Lower-cased letters and digits only (`Alice.Smith-2` → `alicesmith2`).
pub(crate) fn alnum_fold(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Longest common substring length of two texts, in characters (`O(|a|·|b|)` time,
/// `O(|b|)` memory). Inputs are capped at [`SIMILARITY_MAX_CHARS`].
pub(crate) fn longest_common_substring(a: &[char], b: &[char]) -> usize {
    let a = &a[..a.len().min(SIMILARITY_MAX_CHARS)];
    let b = &b[..b.len().min(SIMILARITY_MAX_CHARS)];
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    let mut best = 0;
    for &ca in a {
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = if ca == cb { prev[j] + 1 } else { 0 };
            best = best.max(cur[j + 1]);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    best
}

/// Whether the Levenshtein distance is below `limit` (the length difference is a lower
/// bound, so most pairs are decided without the quadratic table).
pub(crate) fn levenshtein_below(a: &[char], b: &[char], limit: usize) -> bool {
    a.len().abs_diff(b.len()) < limit && levenshtein(a, b) < limit
}

/// Levenshtein distance in characters (inputs capped at [`SIMILARITY_MAX_CHARS`]).
pub(crate) fn levenshtein(a: &[char], b: &[char]) -> usize {
    let a = &a[..a.len().min(SIMILARITY_MAX_CHARS)];
    let b = &b[..b.len().min(SIMILARITY_MAX_CHARS)];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Texts are compared on at most this many characters for similarity.
pub(crate) const SIMILARITY_MAX_CHARS: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn sequences() {
        for (text, run) in [
            ("", 0),
            ("a", 1),
            ("abc", 3),
            ("xABCDx", 4),
            ("9876", 4),
            ("zyx", 3),
            ("qwerty", 6),
            ("asdf1", 4),
            ("!@#$", 4),
            ("poiu", 4),
            ("a1b2c3", 1),
            ("9:;<", 1),
            ("aceg", 1),
            ("xx12389", 3),
            ("0-=", 3),
        ] {
            assert_eq!(longest_sequence(text), run, "{text}");
        }
    }

    #[test]
    fn repeats() {
        assert_eq!(longest_repeat(""), 0);
        assert_eq!(longest_repeat("abc"), 1);
        assert_eq!(longest_repeat("aaab"), 3);
        assert_eq!(longest_repeat("😀😀😀😀"), 4);
    }

    #[test]
    fn classes_count_unicode() {
        let c = classes("aÄ1٣ 字!");
        assert_eq!((c.upper, c.lower, c.digits, c.special), (1, 1, 2, 2));
        assert_eq!(c.caseless_letters, 1);
    }

    #[test]
    fn entropy_formula() {
        assert!((search_space_bits("abcd", 4) - 4.0 * 26f64.log2()).abs() < 1e-9);
        assert!((search_space_bits("aA1!", 4) - 4.0 * 95f64.log2()).abs() < 1e-9);
        assert!(search_space_bits("", 0).abs() < f64::EPSILON);
    }

    #[test]
    fn similarity_metrics() {
        assert_eq!(
            longest_common_substring(&chars("alice"), &chars("xalicey")),
            5
        );
        assert_eq!(longest_common_substring(&chars(""), &chars("abc")), 0);
        assert_eq!(levenshtein(&chars("kitten"), &chars("sitting")), 3);
        assert_eq!(levenshtein(&chars(""), &chars("abc")), 3);
    }
}
