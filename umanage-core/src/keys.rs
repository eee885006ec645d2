//! Cluster-safe key names.
//!
//! Every key umanage writes to a shared store has the shape
//!
//! ```text
//! <prefix>:<kind>:{<entity>}[:<suffix>]
//! ```
//!
//! The entity (a user id, a token hash, a rate-limit key) sits inside a Redis Cluster
//! *hash tag*, so every key of one entity lands in the same slot and a Lua script that
//! touches several of them works on a cluster. The prefix separates applications (and
//! tests) that share one server.
//!
//! The entity is escaped (`%` → `%25`, `{` → `%7B`, `}` → `%7D`) so an entity containing
//! braces can neither end the hash tag early nor make two different entities share a key.
//! The empty entity is written `%` (an empty tag `{}` would not be a hash tag at all).
//!
//! ```
//! use umanage_core::KeyBuilder;
//!
//! let keys = KeyBuilder::new("myapp").unwrap();
//! assert_eq!(keys.key("sess", "user-123"), "myapp:sess:{user-123}");
//! assert_eq!(keys.key_with("sess", "user-123", "idx"), "myapp:sess:{user-123}:idx");
//! assert_eq!(keys.key("rl", "a}b"), "myapp:rl:{a%7Db}");
//! ```

use std::fmt::Write as _;

/// A key prefix that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key prefix {prefix:?}: {reason}")]
pub struct KeyPrefixError {
    prefix: String,
    reason: &'static str,
}

/// Builds cluster-safe keys under one prefix. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBuilder {
    prefix: String,
}

impl KeyBuilder {
    /// The prefix used when a host configures none.
    pub const DEFAULT_PREFIX: &'static str = "umanage";
    /// The longest prefix accepted.
    pub const MAX_PREFIX_LEN: usize = 64;

    /// A builder for keys under `prefix`.
    ///
    /// The prefix must be 1 to 64 characters of ASCII letters, digits, `_`, `-`, `.` or `:`.
    /// Braces are refused because they would become the hash tag, and glob characters
    /// because maintenance scans match on the prefix.
    ///
    /// # Errors
    ///
    /// [`KeyPrefixError`] when the prefix is empty, too long, or has another character.
    pub fn new(prefix: impl Into<String>) -> Result<Self, KeyPrefixError> {
        let prefix = prefix.into();
        let fail = |reason| {
            Err(KeyPrefixError {
                prefix: prefix.clone(),
                reason,
            })
        };
        if prefix.is_empty() {
            return fail("must not be empty");
        }
        if prefix.len() > Self::MAX_PREFIX_LEN {
            return fail("longer than 64 characters");
        }
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        {
            return fail("only ASCII letters, digits, '_', '-', '.' and ':' are allowed");
        }
        Ok(Self { prefix })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A glob matching every key under this prefix (for `SCAN MATCH`).
    pub fn pattern(&self) -> String {
        format!("{}:*", self.prefix)
    }

    /// `<prefix>:<kind>:{<entity>}`.
    pub fn key(&self, kind: &str, entity: &str) -> String {
        let mut out = self.start(kind, entity);
        out.push('}');
        out
    }

    /// `<prefix>:<kind>:{<entity>}:<suffix>`: another key of the same entity, in the same
    /// cluster slot.
    pub fn key_with(&self, kind: &str, entity: &str, suffix: &str) -> String {
        let mut out = self.start(kind, entity);
        out.push_str("}:");
        out.push_str(suffix);
        out
    }

    /// The hash tag an entity's keys share (`{<entity>}`), for building keys inside scripts.
    pub fn hash_tag(entity: &str) -> String {
        let mut out = String::with_capacity(entity.len() + 2);
        out.push('{');
        escape_entity_into(&mut out, entity);
        out.push('}');
        out
    }

    fn start(&self, kind: &str, entity: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + kind.len() + entity.len() + 8);
        out.push_str(&self.prefix);
        out.push(':');
        escape_into(&mut out, kind);
        out.push_str(":{");
        escape_entity_into(&mut out, entity);
        out
    }
}

impl Default for KeyBuilder {
    fn default() -> Self {
        Self {
            prefix: Self::DEFAULT_PREFIX.to_owned(),
        }
    }
}

fn escape_entity_into(out: &mut String, entity: &str) {
    if entity.is_empty() {
        // Never produced by escaping (a literal '%' becomes "%25"), so still injective.
        out.push('%');
    } else {
        escape_into(out, entity);
    }
}

fn escape_into(out: &mut String, text: &str) {
    if !text.bytes().any(|b| matches!(b, b'%' | b'{' | b'}')) {
        // The common case (ids, kinds): nothing to escape.
        out.push_str(text);
        return;
    }
    for ch in text.chars() {
        match ch {
            '%' | '{' | '}' => {
                let _ = write!(out, "%{:02X}", ch as u32);
            }
            _ => out.push(ch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot-selecting part of a key, as Redis Cluster computes it.
    fn hash_tag_of(key: &str) -> &str {
        if let Some(open) = key.find('{')
            && let Some(len) = key[open + 1..].find('}')
            && len > 0
        {
            return &key[open + 1..open + 1 + len];
        }
        key
    }

    #[test]
    fn keys_of_one_entity_share_a_hash_tag() {
        let keys = KeyBuilder::new("app").unwrap();
        for entity in ["user-1", "a}b", "{x}", "%7D", "", "ü:é"] {
            let a = keys.key("sess", entity);
            let b = keys.key_with("sess", entity, "idx");
            let c = keys.key_with("other", entity, "x:y");
            assert_eq!(hash_tag_of(&a), hash_tag_of(&b), "{entity}");
            assert_eq!(hash_tag_of(&a), hash_tag_of(&c), "{entity}");
        }
    }

    #[test]
    fn escaping_is_injective() {
        let keys = KeyBuilder::default();
        let entities = ["a}b", "a%7Db", "a", "a}", "a}:idx", "{a}", "", "%", "%25"];
        let mut seen = std::collections::HashSet::new();
        for e in entities {
            assert!(seen.insert(keys.key("k", e)), "collision for {e}");
            assert!(
                seen.insert(keys.key_with("k", e, "idx")),
                "collision for {e}"
            );
        }
    }

    #[test]
    fn prefix_validation() {
        assert!(KeyBuilder::new("my-app.v2:eu_1").is_ok());
        for bad in ["", "a b", "a{b", "a}b", "a*", "a?", "a[b]", &"x".repeat(65)] {
            assert!(KeyBuilder::new(bad).is_err(), "{bad:?} accepted");
        }
        let err = KeyBuilder::new("a*").unwrap_err();
        assert!(err.to_string().contains("a*"));
        assert_eq!(KeyBuilder::new("p").unwrap().pattern(), "p:*");
    }

    #[test]
    fn hash_tag_matches_key() {
        let keys = KeyBuilder::new("p").unwrap();
        let key = keys.key("s", "u}1");
        assert!(key.ends_with(&KeyBuilder::hash_tag("u}1")));
    }
}
