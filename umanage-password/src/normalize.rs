//! Password normalisation: one canonical form for policy checks and hashing alike.
//!
//! A password typed on two keyboards can arrive as different code point sequences (`é` as
//! one code point or as `e` + combining acute; full-width `Ａ` or ASCII `A`). umanage
//! normalises every password to Unicode **NFKC** once, before the policy looks at it and
//! before it is hashed, so the same typed password always verifies, and lengths count code
//! points of the normalised form (NIST SP 800-63B rev 4, section 3.1.1.2).
//!
//! Input over [`MAX_PASSWORD_BYTES`] is rejected before normalisation, because NFKC can
//! expand text and every later step costs time proportional to length.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::error::{PasswordError, Result};

/// The largest password accepted, in bytes of the raw input (4 KiB).
pub const MAX_PASSWORD_BYTES: usize = 4096;

/// A password in NFKC form. The text is zeroized on drop and never shown by `Debug`.
///
/// ```
/// use umanage_password::normalize::NormalizedPassword;
///
/// // "é" precomposed and decomposed are the same password.
/// let a = NormalizedPassword::new("caf\u{e9}").unwrap();
/// let b = NormalizedPassword::new("cafe\u{301}").unwrap();
/// assert_eq!(a.expose(), b.expose());
/// assert_eq!(a.char_count(), 4);
/// assert_eq!(format!("{a:?}"), "NormalizedPassword(***)");
/// ```
#[derive(Clone)]
pub struct NormalizedPassword {
    text: Zeroizing<String>,
    chars: usize,
}

impl NormalizedPassword {
    /// Normalises `raw`.
    ///
    /// # Errors
    ///
    /// [`PasswordError::TooLarge`] when `raw` is over [`MAX_PASSWORD_BYTES`].
    pub fn new(raw: &str) -> Result<Self> {
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLarge {
                max_bytes: MAX_PASSWORD_BYTES,
            });
        }
        let text: Zeroizing<String> = Zeroizing::new(raw.nfkc().collect());
        let chars = text.chars().count();
        Ok(Self { text, chars })
    }

    /// Normalises a [`SecretString`].
    ///
    /// # Errors
    ///
    /// [`PasswordError::TooLarge`] when it is over [`MAX_PASSWORD_BYTES`].
    pub fn from_secret(raw: &SecretString) -> Result<Self> {
        Self::new(raw.expose_secret())
    }

    /// The normalised text. Handle with care: it is the password.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// Its length in code points (what length policies count).
    pub fn char_count(&self) -> usize {
        self.chars
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.chars == 0
    }
}

impl fmt::Debug for NormalizedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NormalizedPassword(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfkc_folds_compatibility_forms() {
        // full-width letters and the "ﬁ" ligature
        let p = NormalizedPassword::new("\u{ff21}\u{fb01}").unwrap();
        assert_eq!(p.expose(), "Afi");
        assert_eq!(p.char_count(), 3);
    }

    #[test]
    fn size_cap_is_checked_on_raw_bytes() {
        let at_cap = "a".repeat(MAX_PASSWORD_BYTES);
        assert!(NormalizedPassword::new(&at_cap).is_ok());
        let over = "a".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(
            NormalizedPassword::new(&over),
            Err(PasswordError::TooLarge {
                max_bytes: MAX_PASSWORD_BYTES
            })
        ));
        let mib = "x".repeat(1 << 20);
        assert!(NormalizedPassword::new(&mib).is_err());
    }

    #[test]
    fn hostile_text_is_handled() {
        for raw in [
            "",
            "\0",
            "a\0b",
            "\u{202e}abc",
            "👩‍👩‍👧‍👦",
            "e\u{301}\u{301}\u{301}",
        ] {
            let p = NormalizedPassword::new(raw).unwrap();
            assert!(p.char_count() <= raw.chars().count() + 1);
        }
        // NUL is kept: "a\0b" and "a" are different passwords.
        assert_ne!(
            NormalizedPassword::new("a\0b").unwrap().expose(),
            NormalizedPassword::new("a").unwrap().expose()
        );
    }
}
