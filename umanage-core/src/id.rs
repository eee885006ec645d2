//! Identifiers shared by every crate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of a user account: a UUID.
///
/// New ids are random (UUIDv4), so they reveal neither creation time nor account count.
/// The text form is the hyphenated lower-case UUID; parsing also accepts the other
/// forms the `uuid` crate reads (simple, braced, URN).
///
/// ```
/// use umanage_core::UserId;
///
/// let id = UserId::new();
/// let parsed: UserId = id.to_string().parse().unwrap();
/// assert_eq!(id, parsed);
/// assert!("not-a-uuid".parse::<UserId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(Uuid);

impl UserId {
    /// A new random id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps an existing UUID (for example one loaded from a database).
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID inside.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The UUID inside, by value.
    pub const fn into_uuid(self) -> Uuid {
        self.0
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for UserId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl From<UserId> for Uuid {
    fn from(id: UserId) -> Self {
        id.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0.hyphenated())
    }
}

/// A string that is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id: expected a UUID")]
pub struct ParseIdError {
    kind: &'static str,
}

impl ParseIdError {
    /// An error for an id of the given kind ("user", "session", ...).
    pub const fn new(kind: &'static str) -> Self {
        Self { kind }
    }

    /// Which kind of id failed to parse.
    pub const fn kind(&self) -> &'static str {
        self.kind
    }
}

impl FromStr for UserId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| ParseIdError::new("user"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_and_serde_round_trip() {
        let id = UserId::new();
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<UserId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<UserId>(&json).unwrap(), id);
        assert_eq!(id.as_uuid().get_version_num(), 4);
    }

    #[test]
    fn rejects_garbage_with_a_typed_error() {
        for bad in ["", "42", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "\0"] {
            let err = bad.parse::<UserId>().unwrap_err();
            assert_eq!(err.kind(), "user");
        }
        assert!(serde_json::from_str::<UserId>("\"nope\"").is_err());
    }

    #[test]
    fn accepts_other_uuid_forms() {
        let id = UserId::new();
        let simple = id.as_uuid().simple().to_string();
        assert_eq!(simple.parse::<UserId>().unwrap(), id);
        assert_eq!(format!("  {id} ").parse::<UserId>().unwrap(), id);
    }
}
