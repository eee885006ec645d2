//! Blocklists: the bundled common-password list and host-supplied words.
//!
//! # The bundled list
//!
//! [`common_passwords()`] is the 20,000-entry list that Django distributes
//! (`django/contrib/auth/common-passwords.txt.gz`, BSD licence, see `data/LICENSE-django.txt`;
//! 19,640 distinct lines). It is embedded gzipped (about 80 KB in the binary), decoded on first
//! use and kept as one sorted text buffer plus an offset table
//! ([`WordList::heap_bytes`] reports about 220 KB), so it costs nothing until a policy needs it
//! and a lookup is a binary search without allocation.
//!
//! # How a password is compared
//!
//! [`fold`] turns a (normalised) password into its comparison form: surrounding whitespace
//! trimmed (as Django does) and Unicode lower-cased. [`l33t_variants`] then gives at most two
//! more forms with common "l33t" substitutions undone:
//!
//! | typed | read as | | typed | read as |
//! | --- | --- | --- | --- | --- |
//! | `4` `@` | a | | `5` `$` | s |
//! | `8` | b | | `7` `+` | t |
//! | `(` `{` `[` `<` | c | | `2` | z |
//! | `3` `€` | e | | `%` | x |
//! | `6` `9` | g | | `0` | o |
//! | `1` `!` `\|` | i in the first variant, l in the second | | | |
//!
//! A password is "common" when its folded form or one of its unfolded variants is on the
//! list: `P@ssw0rd`, `PASSWORD` and `pa$$word` all match `password`; `123456` still matches
//! as typed. This is the check Django's `CommonPasswordValidator` does, plus the l33t step.

use std::sync::LazyLock;

use flate2::read::GzDecoder;
use std::io::Read;

/// The bundled list, gzipped (Django's `common-passwords.txt.gz`).
static COMMON_GZ: &[u8] = include_bytes!("../data/django-common-passwords.txt.gz");

static COMMON: LazyLock<WordList> = LazyLock::new(|| {
    let mut text = String::new();
    // The data is part of this crate, not input; its decoding is covered by a unit test.
    // If it could ever fail, an empty list would silently disable the blocklist, so fail loudly.
    #[allow(clippy::expect_used)]
    GzDecoder::new(COMMON_GZ)
        .read_to_string(&mut text)
        .expect("the bundled common-password list is valid gzip UTF-8");
    WordList::from_words(text.lines().map(fold))
});

/// The bundled common-password list (decoded on first call, then shared).
pub fn common_passwords() -> &'static WordList {
    &COMMON
}

/// A compact, immutable, sorted set of words: one text buffer and an offset per word.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WordList {
    text: Box<str>,
    /// `offsets[i]..offsets[i + 1]` is word `i`; `len + 1` entries (empty list: none).
    offsets: Box<[u32]>,
}

impl WordList {
    /// Builds a list from words, taken as given (fold them first with [`fold`] if they should
    /// match folded passwords). Empty words and duplicates are dropped.
    pub fn from_words<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut all: Vec<Box<str>> = words
            .into_iter()
            .filter(|w| !w.as_ref().is_empty())
            .map(|w| Box::from(w.as_ref()))
            .collect();
        all.sort_unstable();
        all.dedup();
        let total: usize = all.iter().map(|w| w.len()).sum();
        let mut text = String::with_capacity(total);
        let mut offsets = Vec::with_capacity(all.len() + 1);
        for word in &all {
            // A list larger than 4 GiB cannot be built from a policy or the bundled data;
            // stop rather than wrap if someone tries.
            let Ok(start) = u32::try_from(text.len()) else {
                break;
            };
            offsets.push(start);
            text.push_str(word);
        }
        if !offsets.is_empty() {
            offsets.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        Self {
            text: text.into_boxed_str(),
            offsets: offsets.into_boxed_slice(),
        }
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Word `i` (sorted order).
    pub fn get(&self, i: usize) -> Option<&str> {
        let start = *self.offsets.get(i)? as usize;
        let end = *self.offsets.get(i + 1)? as usize;
        self.text.get(start..end)
    }

    /// Whether `word` is in the list, exactly.
    pub fn contains(&self, word: &str) -> bool {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid).map(|w| w.cmp(word)) {
                Some(std::cmp::Ordering::Less) => lo = mid + 1,
                Some(std::cmp::Ordering::Greater) => hi = mid,
                Some(std::cmp::Ordering::Equal) => return true,
                None => return false,
            }
        }
        false
    }

    /// Iterates the words in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Heap memory held by the list, in bytes (text plus offsets).
    pub fn heap_bytes(&self) -> usize {
        self.text.len() + self.offsets.len() * std::mem::size_of::<u32>()
    }
}

impl std::fmt::Debug for WordList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordList")
            .field("len", &self.len())
            .field("heap_bytes", &self.heap_bytes())
            .finish_non_exhaustive()
    }
}

/// The comparison form of a word or password: trimmed and lower-cased.
pub fn fold(text: &str) -> String {
    text.trim().to_lowercase()
}

fn unleet(c: char, ambiguous: char) -> Option<char> {
    Some(match c {
        '4' | '@' => 'a',
        '8' => 'b',
        '(' | '{' | '[' | '<' => 'c',
        '3' | '€' => 'e',
        '6' | '9' => 'g',
        '1' | '!' | '|' => ambiguous,
        '0' => 'o',
        '5' | '$' => 's',
        '7' | '+' => 't',
        '%' => 'x',
        '2' => 'z',
        _ => return None,
    })
}

/// The l33t-unfolded variants of an already [`fold`]ed text (see the module docs), without
/// the text itself: none when it has no substitutable character, one when it has no `1`,
/// `!` or `|`, else two (those read as `i`, then as `l`).
pub fn l33t_variants(folded: &str) -> Vec<String> {
    let mut any = false;
    let mut ambiguous = false;
    for c in folded.chars() {
        if unleet(c, 'i').is_some() {
            any = true;
            ambiguous |= matches!(c, '1' | '!' | '|');
        }
    }
    if !any {
        return Vec::new();
    }
    let make = |amb: char| -> String {
        folded
            .chars()
            .map(|c| unleet(c, amb).unwrap_or(c))
            .collect()
    };
    if ambiguous {
        vec![make('i'), make('l')]
    } else {
        vec![make('i')]
    }
}

/// How host-supplied words match a password.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordMatch {
    /// The whole folded password (or an unfolded variant) equals a word.
    #[default]
    Exact,
    /// A word occurs anywhere inside the folded password (or an unfolded variant); words must
    /// be at least [`MIN_SUBSTRING_WORD_CHARS`] characters so one short word cannot block
    /// everything.
    Substring,
}

/// The shortest host word accepted in [`WordMatch::Substring`] mode.
pub const MIN_SUBSTRING_WORD_CHARS: usize = 3;

/// Host-supplied prohibited words (product names, the company name, ...), folded once.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HostWords {
    words: WordList,
    mode: WordMatch,
}

impl HostWords {
    /// Folds (NFKC is assumed done by the caller for passwords; words are NFKC-normalised here)
    /// and stores `words`.
    pub fn new<I, S>(words: I, mode: WordMatch) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        use unicode_normalization::UnicodeNormalization;
        let folded: Vec<String> = words
            .into_iter()
            .map(|w| fold(&w.as_ref().nfkc().collect::<String>()))
            .collect();
        Self {
            words: WordList::from_words(folded),
            mode,
        }
    }

    /// The matching mode.
    pub fn mode(&self) -> WordMatch {
        self.mode
    }

    /// Number of distinct words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Whether a folded password (given with its unfolded variants) hits a word.
    pub fn matches(&self, folded: &str, variants: &[String]) -> bool {
        let candidates = std::iter::once(folded).chain(variants.iter().map(String::as_str));
        match self.mode {
            WordMatch::Exact => candidates
                .into_iter()
                .any(|candidate| self.words.contains(candidate)),
            WordMatch::Substring => {
                let forms: Vec<&str> = candidates.collect();
                self.words
                    .iter()
                    .any(|word| forms.iter().any(|form| form.contains(word)))
            }
        }
    }
}

impl std::fmt::Debug for HostWords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostWords")
            .field("len", &self.len())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Whether a folded password (or one of its l33t variants) is on the bundled list.
pub fn is_common(folded: &str, variants: &[String]) -> bool {
    let list = common_passwords();
    list.contains(folded) || variants.iter().any(|v| list.contains(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_list_decodes_and_is_large() {
        let list = common_passwords();
        assert!(list.len() >= 10_000, "{}", list.len());
        assert!(list.contains("password"));
        assert!(list.contains("123456"));
        assert!(list.contains("qwerty"));
        assert!(!list.contains("correct horse battery staple zebra"));
        // sorted and distinct
        let words: Vec<&str> = list.iter().collect();
        assert!(words.windows(2).all(|w| w[0] < w[1]));
        // compact: well under a MiB
        assert!(list.heap_bytes() < 400_000, "{}", list.heap_bytes());
    }

    #[test]
    fn word_list_basics() {
        let list = WordList::from_words(["b", "a", "", "c", "a"]);
        assert_eq!(list.len(), 3);
        assert_eq!(list.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(list.contains("b"));
        assert!(!list.contains(""));
        assert!(!list.contains("d"));
        let empty = WordList::default();
        assert!(empty.is_empty());
        assert!(!empty.contains("a"));
        assert_eq!(empty.get(0), None);
    }

    #[test]
    fn l33t_unfolding() {
        assert!(l33t_variants("password").is_empty());
        assert_eq!(l33t_variants("p@ssw0rd"), ["password"]);
        assert_eq!(l33t_variants("1337"), ["ieet", "leet"]);
        assert!(is_common(
            &fold("  P@SSW0RD "),
            &l33t_variants(&fold("P@SSW0RD"))
        ));
        assert!(is_common("123456", &l33t_variants("123456")));
    }

    #[test]
    fn host_words_modes() {
        let exact = HostWords::new(["Umanage", "ＡＣＭＥ"], WordMatch::Exact);
        assert!(exact.matches("acme", &[]));
        assert!(exact.matches("um4nage", &l33t_variants("um4nage")));
        assert!(!exact.matches("acme2024", &[]));
        let sub = HostWords::new(["acme"], WordMatch::Substring);
        assert!(sub.matches("i love acme 2024", &[]));
        assert!(sub.matches("4cme!!", &l33t_variants("4cme!!")));
        assert!(!sub.matches("acne", &[]));
    }
}
