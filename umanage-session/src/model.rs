//! The session model.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use umanage_core::{ParseIdError, UserId};
use uuid::Uuid;

/// The public handle of a session: safe to show in a "your devices" list and to pass to
/// [`revoke`](crate::SessionStore::revoke). It is **not** a credential; the
/// [`SessionToken`](crate::SessionToken) is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(Uuid);

impl SessionId {
    /// A new random id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// The UUID inside.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for SessionId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.simple(), f)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0.simple())
    }
}

impl FromStr for SessionId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| ParseIdError::new("session"))
    }
}

/// Where a client address is, as far as a geo-location resolver knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Location {
    /// ISO 3166-1 alpha-2 country code (`"GB"`).
    pub country_code: Option<String>,
    /// Country name in English.
    pub country: Option<String>,
    /// City name in English.
    pub city: Option<String>,
    /// Latitude, degrees.
    pub latitude: Option<f64>,
    /// Longitude, degrees.
    pub longitude: Option<f64>,
}

impl Location {
    /// A location with just a country code.
    pub fn country(code: impl Into<String>) -> Self {
        Self {
            country_code: Some(code.into()),
            ..Self::default()
        }
    }

    /// Sets the city.
    #[must_use]
    pub fn with_city(mut self, city: impl Into<String>) -> Self {
        self.city = Some(city.into());
        self
    }
}

/// Free-form session data (JSON-like values; both serializers carry them).
pub type SessionData = serde_json::Map<String, serde_json::Value>;

/// One login of one user on one device.
///
/// The store owns the time fields and the flags: it sets `created_at`, `last_activity`,
/// both deadlines, `credential_epoch` and the flags, and ignores what a caller puts there.
/// The caller owns the identity and the attributes (`username` … `data`), changed through
/// [`SessionStore::update`](crate::SessionStore::update).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Session {
    /// Public handle.
    #[serde(default = "nil_session", skip_serializing_if = "is_nil_session")]
    pub id: SessionId,
    /// The user.
    #[serde(default = "nil_user", skip_serializing_if = "is_nil_user")]
    pub user_id: UserId,
    /// Login name at login time.
    pub username: String,
    /// E-mail at login time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Roles granted to this session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Permissions granted to this session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// Client address at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Client address of the latest validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ip: Option<IpAddr>,
    /// User agent at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Device id (from the client, e.g. a device cookie) at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Device fingerprint at login (a hash of the configured request attributes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Where the login came from, if a resolver knew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Whether a second factor was verified in this session.
    #[serde(default, skip_serializing_if = "is_false")]
    pub mfa_verified: bool,
    /// When the session was created (store time).
    #[serde(default, skip_serializing_if = "is_unset")]
    pub created_at: DateTime<Utc>,
    /// The latest successful validation (store time).
    #[serde(default, skip_serializing_if = "is_unset")]
    pub last_activity: DateTime<Utc>,
    /// The idle (sliding) deadline: `min(last_activity + idle_timeout, expires_at)`.
    #[serde(default, skip_serializing_if = "is_unset")]
    pub idle_expires_at: DateTime<Utc>,
    /// The absolute deadline; never extended.
    #[serde(default, skip_serializing_if = "is_unset")]
    pub expires_at: DateTime<Utc>,
    /// This session's idle timeout (a remember-me session may have a longer one).
    #[serde(
        with = "umanage_core::duration",
        default,
        skip_serializing_if = "Duration::is_zero"
    )]
    pub idle_timeout: Duration,
    /// The user's credential epoch when the session was created; a session older than the
    /// user's current epoch is dead.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub credential_epoch: u64,
    /// A validation came from another address than the login.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ip_changed: bool,
    /// A validation came with another device fingerprint than the login.
    #[serde(default, skip_serializing_if = "is_false")]
    pub device_mismatch: bool,
    /// Free-form data.
    #[serde(default, skip_serializing_if = "SessionData::is_empty")]
    pub data: SessionData,
    /// Revision of the caller-owned fields; [`SessionStore::update`](crate::SessionStore::update)
    /// succeeds only on the current one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
}

// Fields at their empty or unset values are left out of the serialized form (shorter
// records to decode on every validation); store-owned ones are unset in what a store that
// keeps them elsewhere, like the Redis one, encodes.
// The ids are never nil in a real session; a store that keys records by them (the Redis
// one) leaves them out of the body and fills them back in.
fn nil_session() -> SessionId {
    SessionId(Uuid::nil())
}
fn is_nil_session(id: &SessionId) -> bool {
    id.0.is_nil()
}
fn nil_user() -> UserId {
    UserId::from_uuid(Uuid::nil())
}
fn is_nil_user(id: &UserId) -> bool {
    id.as_uuid().is_nil()
}
fn is_unset(t: &DateTime<Utc>) -> bool {
    *t == DateTime::<Utc>::UNIX_EPOCH
}
#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}
#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_false(b: &bool) -> bool {
    !*b
}

impl Session {
    /// The caller-owned part: a copy with every store-owned field at its unset value, as
    /// stores that keep times and flags beside the body encode it.
    #[cfg(feature = "redis")]
    pub(crate) fn body(&self) -> Self {
        let mut s = self.clone();
        s.id = nil_session();
        s.user_id = nil_user();
        s.last_ip = None;
        s.created_at = DateTime::<Utc>::UNIX_EPOCH;
        s.last_activity = DateTime::<Utc>::UNIX_EPOCH;
        s.idle_expires_at = DateTime::<Utc>::UNIX_EPOCH;
        s.expires_at = DateTime::<Utc>::UNIX_EPOCH;
        s.idle_timeout = Duration::ZERO;
        s.credential_epoch = 0;
        s.ip_changed = false;
        s.device_mismatch = false;
        s.version = 0;
        s
    }
}

impl Session {
    /// A session for `user_id` with all attributes empty; the store fills the times.
    pub fn new(user_id: UserId, username: impl Into<String>) -> Self {
        Self {
            id: SessionId::new(),
            user_id,
            username: username.into(),
            email: None,
            roles: Vec::new(),
            permissions: Vec::new(),
            ip: None,
            last_ip: None,
            user_agent: None,
            device_id: None,
            fingerprint: None,
            location: None,
            mfa_verified: false,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            last_activity: DateTime::<Utc>::UNIX_EPOCH,
            idle_expires_at: DateTime::<Utc>::UNIX_EPOCH,
            expires_at: DateTime::<Utc>::UNIX_EPOCH,
            idle_timeout: Duration::ZERO,
            credential_epoch: 0,
            ip_changed: false,
            device_mismatch: false,
            data: SessionData::new(),
            version: 0,
        }
    }

    /// Whether the session has the role.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the session has the permission.
    pub fn has_permission(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }

    /// The earlier of the two deadlines.
    pub fn deadline(&self) -> DateTime<Utc> {
        self.idle_expires_at.min(self.expires_at)
    }
}

/// The public handle of a refresh-token family.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FamilyId(Uuid);

impl FamilyId {
    /// A new random id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for FamilyId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.simple(), f)
    }
}

impl fmt::Debug for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FamilyId({})", self.0.simple())
    }
}

impl FromStr for FamilyId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| ParseIdError::new("family"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = SessionId::new();
        assert_eq!(id.to_string().parse::<SessionId>().unwrap(), id);
        assert!("x".parse::<SessionId>().is_err());
        let f = FamilyId::new();
        assert_eq!(f.to_string().parse::<FamilyId>().unwrap(), f);
    }

    #[test]
    fn session_serde_round_trips() {
        let mut s = Session::new(UserId::new(), "alice");
        s.roles.push("admin".into());
        s.location = Some(Location::country("GB").with_city("London"));
        s.idle_timeout = Duration::from_secs(1800);
        s.data
            .insert("theme".into(), serde_json::json!({"dark": true}));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""idle_timeout":"30m""#), "{json}");
        assert_eq!(serde_json::from_str::<Session>(&json).unwrap(), s);
        assert!(s.has_role("admin") && !s.has_permission("x"));
    }
}
