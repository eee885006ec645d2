//! Bearer tokens and their stored hashes.
//!
//! A token is 54 bytes, written as 72 characters of base64url without padding: the 16-byte
//! user id (it routes the lookup to the user's Redis hash tag), the session's idle timeout
//! in milliseconds (6 bytes, big-endian: the Redis store slides the session with one native
//! `GETEX … PX <idle>`, without reading the record first), then 32 bytes (256 bits) from
//! the operating system's CSPRNG. Neither the user id nor the idle timeout is secret; both
//! are covered by the hash, so a client that edits them holds a token that matches nothing.
//! Stores keep only [`TokenHash`], the SHA-256 of the 54 bytes, so a leaked store yields no
//! usable token. `Debug` of a token never shows it; [`TokenHash`] compares in constant time.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use umanage_core::UserId;

use crate::error::{Error, Result};

/// Bytes of secret randomness in every token (256 bits).
pub const TOKEN_SECRET_BYTES: usize = 32;
const IDLE_BYTES: usize = 6;
const TOKEN_BYTES: usize = 16 + IDLE_BYTES + TOKEN_SECRET_BYTES;
/// Length of a token's text form.
pub const TOKEN_TEXT_LEN: usize = 72;
/// Longest idle timeout a token can carry (2^48 - 1 ms, about 8 900 years).
const MAX_IDLE_MS: u64 = (1 << 48) - 1;

/// The SHA-256 of a token: what stores keep instead of the token.
///
/// Equality is constant-time ([`subtle`]), so comparing a presented token's hash with a
/// stored one leaks nothing through timing. `Debug` shows only the first 4 bytes.
#[derive(Clone, Copy, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex into `buf`, without allocating.
    pub fn hex_into<'a>(&self, buf: &'a mut [u8; 64]) -> &'a str {
        // Cannot fail: the buffer is exactly twice the digest, and hex digits are ASCII.
        let _ = hex::encode_to_slice(self.0, buf);
        std::str::from_utf8(buf).unwrap_or_default()
    }

    /// Lower-case hex, as used in Redis keys.
    pub fn to_hex(&self) -> String {
        let mut text = [0_u8; 64];
        // Cannot fail: the buffer is exactly twice the digest, and hex digits are ASCII.
        let _ = hex::encode_to_slice(self.0, &mut text);
        std::str::from_utf8(&text)
            .map(str::to_owned)
            .unwrap_or_default()
    }

    /// Parses the hex form.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0_u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }
}

impl TokenHash {
    /// The digest as four words (for the word-wise constant-time comparison).
    fn words(&self) -> [u64; 4] {
        let mut out = [0_u64; 4];
        for (w, chunk) in out.iter_mut().zip(self.0.chunks_exact(8)) {
            let mut b = [0_u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        out
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        // `subtle` over four words rather than 32 bytes: the same constant-time guarantee
        // at an eighth of the optimisation barriers.
        self.words()[..].ct_eq(&other.words()[..]).into()
    }
}

impl std::hash::Hash for TokenHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}..)", hex::encode(&self.0[..4]))
    }
}

/// 54 token bytes: user id, idle timeout, secret.
type TokenBytes = [u8; TOKEN_BYTES];

fn generate_bytes(user: UserId, idle: Duration) -> Result<TokenBytes> {
    let mut bytes = [0_u8; TOKEN_BYTES];
    bytes[..16].copy_from_slice(user.as_uuid().as_bytes());
    let idle_ms = u64::try_from(idle.as_millis())
        .unwrap_or(MAX_IDLE_MS)
        .min(MAX_IDLE_MS);
    bytes[16..16 + IDLE_BYTES].copy_from_slice(&idle_ms.to_be_bytes()[8 - IDLE_BYTES..]);
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes[16 + IDLE_BYTES..])
        .map_err(|e| Error::Rng(e.to_string()))?;
    Ok(bytes)
}

fn parse_bytes(text: &str, kind: &'static str) -> Result<TokenBytes> {
    let bad = || Error::MalformedToken { kind };
    if text.len() != TOKEN_TEXT_LEN {
        return Err(bad());
    }
    let mut bytes = [0_u8; TOKEN_BYTES];
    let n = URL_SAFE_NO_PAD
        .decode_slice(text.as_bytes(), &mut bytes)
        .map_err(|_| bad())?;
    if n != TOKEN_BYTES {
        return Err(bad());
    }
    Ok(bytes)
}

/// What a token's bytes say: user, idle timeout (ms) and the domain-separated hash.
fn decode_bytes(bytes: &TokenBytes, domain: &[u8]) -> (UserId, u64, TokenHash) {
    let mut id = [0_u8; 16];
    id.copy_from_slice(&bytes[..16]);
    let mut ms = [0_u8; 8];
    ms[8 - IDLE_BYTES..].copy_from_slice(&bytes[16..16 + IDLE_BYTES]);
    let mut h = Sha256::new();
    h.update(domain);
    h.update(bytes);
    (
        UserId::from_uuid(uuid::Uuid::from_bytes(id)),
        u64::from_be_bytes(ms),
        TokenHash(h.finalize().into()),
    )
}

macro_rules! token_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $domain:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            /// The base64url text (the bytes, encoded; compared in constant time).
            text: String,
            user: UserId,
            idle_ms: u64,
            /// Computed once: every store call needs it.
            hash: TokenHash,
        }

        impl $name {
            /// A fresh token for `user` of a session whose idle timeout is `idle`
            /// (carried in the token, milliseconds, at most about 8 900 years): 256 bits
            /// from the OS CSPRNG.
            ///
            /// # Errors
            ///
            /// [`Error::Rng`] when the OS random source fails.
            pub fn generate(user: UserId, idle: Duration) -> Result<Self> {
                let bytes = generate_bytes(user, idle)?;
                Ok(Self::from_bytes(&bytes, URL_SAFE_NO_PAD.encode(bytes)))
            }

            fn from_bytes(bytes: &TokenBytes, text: String) -> Self {
                let (user, idle_ms, hash) = decode_bytes(bytes, $domain);
                Self {
                    text,
                    user,
                    idle_ms,
                    hash,
                }
            }

            /// Parses a token presented by a client.
            ///
            /// # Errors
            ///
            /// [`Error::MalformedToken`] when the text is not 72 base64url characters.
            pub fn parse(text: &str) -> Result<Self> {
                let text = text.trim();
                let bytes = parse_bytes(text, $kind)?;
                Ok(Self::from_bytes(&bytes, text.to_owned()))
            }

            /// The text to hand to the client (cookie value, `Authorization: Bearer`).
            /// Never log it.
            pub fn expose(&self) -> &str {
                &self.text
            }

            /// The user the token was issued to (not secret: it routes the lookup).
            pub fn user_id(&self) -> UserId {
                self.user
            }

            /// The idle timeout of the session the token was issued for (not secret).
            pub fn idle_timeout(&self) -> Duration {
                Duration::from_millis(self.idle_ms)
            }

            /// The SHA-256 the store keeps (domain-separated per token kind).
            pub fn hash(&self) -> TokenHash {
                self.hash
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(***)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.text.as_bytes().ct_eq(other.text.as_bytes()).into()
            }
        }

        impl Eq for $name {}

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s)
            }
        }
    };
}

token_type!(
    /// The bearer credential of a session (cookie or `Authorization: Bearer`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use umanage_core::UserId;
    /// use umanage_session::SessionToken;
    ///
    /// let user = UserId::new();
    /// let token = SessionToken::generate(user, Duration::from_secs(1800)).unwrap();
    /// assert_eq!(token.expose().len(), 72);
    /// assert_eq!(format!("{token:?}"), "SessionToken(***)");
    /// let back: SessionToken = token.expose().parse().unwrap();
    /// assert_eq!(back.user_id(), user);
    /// assert_eq!(back.idle_timeout(), Duration::from_secs(1800));
    /// assert_eq!(back.hash(), token.hash());
    /// ```
    SessionToken,
    "session",
    b"umanage-session/v1\0"
);

token_type!(
    /// A refresh token: one member of a refresh-token family. Each use issues the next one;
    /// presenting a used one again revokes the family. It carries the idle timeout of its
    /// session, which the session tokens a refresh issues carry on.
    RefreshToken,
    "refresh",
    b"umanage-refresh/v1\0"
);

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(1800);

    #[test]
    fn tokens_are_random_url_safe_and_redacted() {
        let user = UserId::new();
        let a = SessionToken::generate(user, IDLE).unwrap();
        let b = SessionToken::generate(user, IDLE).unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.hash(), b.hash());
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert!(!format!("{a:?}").contains(a.expose()));
        assert!(!format!("{:?}", a.hash()).contains(&a.hash().to_hex()));
        assert_eq!(TokenHash::from_hex(&a.hash().to_hex()), Some(a.hash()));
    }

    #[test]
    fn the_idle_timeout_round_trips_and_is_covered_by_the_hash() {
        let user = UserId::new();
        for idle in [
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::from_millis(300),
            IDLE,
            Duration::from_secs(400 * 86_400),
        ] {
            let t = SessionToken::generate(user, idle).unwrap();
            let back = SessionToken::parse(t.expose()).unwrap();
            assert_eq!(back.idle_timeout(), idle);
            assert_eq!(back.user_id(), user);
        }
        let huge = SessionToken::generate(user, Duration::MAX).unwrap();
        assert_eq!(huge.idle_timeout(), Duration::from_millis(MAX_IDLE_MS));
        // Editing the idle bytes gives another hash: the edited token matches nothing.
        let t = SessionToken::generate(user, IDLE).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(t.expose()).unwrap();
        raw[21] ^= 1;
        let edited = SessionToken::parse(&URL_SAFE_NO_PAD.encode(raw)).unwrap();
        assert_ne!(edited.idle_timeout(), t.idle_timeout());
        assert_ne!(edited.hash(), t.hash());
    }

    #[test]
    fn kinds_hash_differently() {
        let user = UserId::new();
        let s = SessionToken::generate(user, IDLE).unwrap();
        let r = RefreshToken::parse(s.expose()).unwrap();
        assert_ne!(s.hash(), r.hash());
    }

    #[test]
    fn malformed_tokens_are_typed_errors() {
        let good = SessionToken::generate(UserId::new(), IDLE).unwrap();
        let mut plus = good.expose().to_owned();
        plus.replace_range(0..1, "+");
        for bad in [
            "",
            "abc",
            &plus,
            &"A".repeat(73),
            &format!("{}=", &good.expose()[..71]),
            &good.expose()[..64],
        ] {
            let err = SessionToken::parse(bad).unwrap_err();
            assert!(
                matches!(err, Error::MalformedToken { kind: "session" }),
                "{bad}"
            );
            assert!(!err.to_string().contains(bad) || bad.is_empty());
        }
    }
}
