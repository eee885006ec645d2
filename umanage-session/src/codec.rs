//! Pluggable session serializers.
//!
//! The Redis store keeps each session's caller-owned fields as one encoded blob (times and
//! flags live in the record's header, which the store reads and writes itself). [`JsonSerializer`] is the
//! default; [`MsgpackSerializer`] (feature `msgpack`) is smaller and faster to decode.

use std::sync::Arc;

use umanage_core::BackendError;

use crate::model::Session;

/// Encodes and decodes sessions for a byte-oriented store.
pub trait SessionSerializer: Send + Sync + std::fmt::Debug + 'static {
    /// A short name (for traces).
    fn name(&self) -> &'static str;

    /// Encodes a session.
    ///
    /// # Errors
    ///
    /// [`BackendError::Serialization`] when the session cannot be encoded.
    fn encode(&self, session: &Session) -> Result<Vec<u8>, BackendError>;

    /// Decodes a session.
    ///
    /// # Errors
    ///
    /// [`BackendError::Serialization`] when the bytes are not a session.
    fn decode(&self, bytes: &[u8]) -> Result<Session, BackendError>;
}

/// A shared serializer.
pub type SharedSerializer = Arc<dyn SessionSerializer>;

/// JSON (`serde_json`): readable with `redis-cli`, the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonSerializer;

impl SessionSerializer for JsonSerializer {
    fn name(&self) -> &'static str {
        "json"
    }
    fn encode(&self, session: &Session) -> Result<Vec<u8>, BackendError> {
        Ok(serde_json::to_vec(session)?)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Session, BackendError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// MessagePack (`rmp-serde`, named fields so records survive added fields).
#[cfg(feature = "msgpack")]
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgpackSerializer;

#[cfg(feature = "msgpack")]
impl SessionSerializer for MsgpackSerializer {
    fn name(&self) -> &'static str {
        "msgpack"
    }
    fn encode(&self, session: &Session) -> Result<Vec<u8>, BackendError> {
        rmp_serde::to_vec_named(session).map_err(BackendError::serialization)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Session, BackendError> {
        rmp_serde::from_slice(bytes).map_err(BackendError::serialization)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Location;
    use umanage_core::UserId;

    fn sample() -> Session {
        let mut s = Session::new(UserId::new(), "bob");
        s.email = Some("bob@example.com".into());
        s.ip = Some("2001:db8::1".parse().unwrap());
        s.location = Some(Location::country("JP"));
        s.data
            .insert("n".into(), serde_json::json!([1, "two", null, 3.5]));
        s
    }

    fn round_trip(ser: &dyn SessionSerializer) {
        let s = sample();
        let bytes = ser.encode(&s).unwrap();
        assert_eq!(ser.decode(&bytes).unwrap(), s, "{}", ser.name());
        let err = ser.decode(b"\xc1garbage").unwrap_err();
        assert!(matches!(err, BackendError::Serialization(_)), "{err:?}");
    }

    #[test]
    fn json_round_trips() {
        round_trip(&JsonSerializer);
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn msgpack_round_trips_and_is_smaller() {
        round_trip(&MsgpackSerializer);
        let s = sample();
        assert!(
            MsgpackSerializer.encode(&s).unwrap().len() < JsonSerializer.encode(&s).unwrap().len()
        );
    }
}
