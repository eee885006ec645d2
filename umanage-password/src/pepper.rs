//! Optional pepper: a secret key, held by the application and never stored with the hashes,
//! mixed into every password before it is hashed.
//!
//! With a pepper, a stolen credential table alone is not enough to run a guessing attack:
//! the attacker also needs the key. umanage applies it as
//! `HMAC-SHA256(key, normalised password)` and hashes the 32-byte MAC with Argon2, so any
//! password length works and the Argon2 input has a fixed size.
//!
//! Keys rotate: each key has a [`PepperId`], recorded in the PHC string of every hash made
//! with it (`$argon2id$v=19$m=65536,t=3,p=4,pepper=<id>$...`). A [`PepperSet`] has one
//! *current* key (used for new hashes) and any number of *retired* keys that still verify
//! old hashes; [`PasswordHasher::needs_rehash`](crate::hash::PasswordHasher::needs_rehash)
//! is `true` for a hash made with a retired key (or without a pepper), so hashes move to
//! the current key on the next successful login.
//!
//! Key bytes are held in a [`SecretSlice`] (zeroized on drop) and never shown by `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{PasswordError, Result};

/// The identifier of a pepper key: 1 to 32 characters of `A-Z a-z 0-9 _ - .`.
///
/// It is recorded in hashes, so it is an identifier, not a secret.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PepperId(String);

impl PepperId {
    /// The longest key id accepted.
    pub const MAX_LEN: usize = 32;

    /// A key id.
    ///
    /// # Errors
    ///
    /// [`PasswordError::InvalidConfig`] when `id` is empty, too long or has other characters.
    pub fn new(id: &str) -> Result<Self> {
        let ok = !id.is_empty()
            && id.len() <= Self::MAX_LEN
            && id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
        if ok {
            Ok(Self(id.to_owned()))
        } else {
            Err(PasswordError::InvalidConfig {
                component: "pepper",
                reason: format!(
                    "key id must be 1 to {} characters of A-Z a-z 0-9 _ - .",
                    Self::MAX_LEN
                ),
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PepperId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The pepper keys of an application: one current key and retired ones.
///
/// ```
/// use umanage_password::pepper::PepperSet;
///
/// let peppers = PepperSet::new("2025-01", vec![7u8; 32])
///     .unwrap()
///     .with_retired("2024-06", vec![9u8; 32])
///     .unwrap();
/// assert_eq!(peppers.current_id().as_str(), "2025-01");
/// // Debug shows the ids, never the keys.
/// assert!(!format!("{peppers:?}").contains("[7"));
/// ```
pub struct PepperSet {
    current: PepperId,
    keys: BTreeMap<PepperId, SecretSlice<u8>>,
}

impl PepperSet {
    /// The shortest key accepted, in bytes (128 bits).
    pub const MIN_KEY_LEN: usize = 16;
    /// The longest key accepted, in bytes (an HMAC-SHA256 block).
    pub const MAX_KEY_LEN: usize = 64;

    /// A set whose current key is `key`, identified by `id`.
    ///
    /// # Errors
    ///
    /// [`PasswordError::InvalidConfig`] for an invalid id or a key shorter than
    /// [`MIN_KEY_LEN`](Self::MIN_KEY_LEN) or longer than [`MAX_KEY_LEN`](Self::MAX_KEY_LEN).
    pub fn new(id: &str, key: impl Into<Vec<u8>>) -> Result<Self> {
        let id = PepperId::new(id)?;
        let key = checked_key(key.into())?;
        let mut keys = BTreeMap::new();
        keys.insert(id.clone(), key);
        Ok(Self { current: id, keys })
    }

    /// Adds a retired key that still verifies hashes made with it.
    ///
    /// # Errors
    ///
    /// [`PasswordError::InvalidConfig`] for an invalid id or key, or an id already present.
    pub fn with_retired(mut self, id: &str, key: impl Into<Vec<u8>>) -> Result<Self> {
        let id = PepperId::new(id)?;
        let key = checked_key(key.into())?;
        if self.keys.contains_key(&id) {
            return Err(PasswordError::InvalidConfig {
                component: "pepper",
                reason: format!("key id {id} is configured twice"),
            });
        }
        self.keys.insert(id, key);
        Ok(self)
    }

    /// The id of the key new hashes use.
    pub fn current_id(&self) -> &PepperId {
        &self.current
    }

    /// Whether a key with this id is configured.
    pub fn contains(&self, id: &PepperId) -> bool {
        self.keys.contains_key(id)
    }

    /// `HMAC-SHA256(key[id], password)`, or `None` when `id` is not configured.
    pub(crate) fn mac(&self, id: &PepperId, password: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
        let key = self.keys.get(id)?;
        // HMAC accepts keys of any length, so this cannot fail; a failure would be a bug
        // in the hmac crate, answered with "no such key" rather than a panic.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret()).ok()?;
        mac.update(password);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&mac.finalize().into_bytes());
        Some(out)
    }
}

fn checked_key(key: Vec<u8>) -> Result<SecretSlice<u8>> {
    let len = key.len();
    let key = SecretSlice::from(key);
    if (PepperSet::MIN_KEY_LEN..=PepperSet::MAX_KEY_LEN).contains(&len) {
        Ok(key)
    } else {
        Err(PasswordError::InvalidConfig {
            component: "pepper",
            reason: format!(
                "key must be {} to {} bytes, got {len}",
                PepperSet::MIN_KEY_LEN,
                PepperSet::MAX_KEY_LEN
            ),
        })
    }
}

impl fmt::Debug for PepperSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PepperSet")
            .field("current", &self.current.as_str())
            .field(
                "ids",
                &self.keys.keys().map(PepperId::as_str).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_restricted() {
        for ok in ["a", "2025-01", "k_1.x", &"a".repeat(32)] {
            assert!(PepperId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a,b", "a$b", "a=b", "ключ", &"a".repeat(33)] {
            assert!(
                matches!(
                    PepperId::new(bad),
                    Err(PasswordError::InvalidConfig {
                        component: "pepper",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_are_checked_and_hidden() {
        assert!(PepperSet::new("k", vec![1u8; 15]).is_err());
        assert!(PepperSet::new("k", vec![1u8; 65]).is_err());
        let set = PepperSet::new("k1", vec![0xAB; 32]).unwrap();
        assert!(set.contains(set.current_id()));
        let set = set.with_retired("k0", vec![0xCD; 32]).unwrap();
        assert!(matches!(
            set.with_retired("k0", vec![0xEF; 32]),
            Err(PasswordError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn mac_is_hmac_sha256() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        // (That key is shorter than MIN_KEY_LEN, so the set is built directly.)
        let id = PepperId::new("rfc").unwrap();
        let mut keys = BTreeMap::new();
        keys.insert(id.clone(), SecretSlice::from(b"Jefe".to_vec()));
        let set = PepperSet {
            current: id.clone(),
            keys,
        };
        let mac = set.mac(&id, b"what do ya want for nothing?").unwrap();
        assert_eq!(
            *mac,
            unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert!(set.mac(&PepperId::new("other").unwrap(), b"x").is_none());
        let dbg = format!("{set:?}");
        assert!(dbg.contains("rfc") && !dbg.contains("Jefe"), "{dbg}");
    }

    fn unhex(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
