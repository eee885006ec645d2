//! Human-readable durations in config files.
//!
//! Every umanage config type writes durations as strings such as `"500ms"`, `"30s"`,
//! `"15m"` or `"7days"` (the [`humantime`](https://docs.rs/humantime) syntax). Use this
//! module with serde's `with` attribute:
//!
//! ```
//! use std::time::Duration;
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Config {
//!     #[serde(with = "umanage_core::duration")]
//!     idle_timeout: Duration,
//! }
//!
//! let cfg: Config = serde_json::from_str(r#"{"idle_timeout": "30m"}"#).unwrap();
//! assert_eq!(cfg.idle_timeout, Duration::from_secs(1800));
//! ```

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

/// Serialises a duration as a human-readable string (`"1m 30s"`).
///
/// # Errors
///
/// Only the serializer's own errors.
pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

/// Parses a duration from a human-readable string (`"250ms"`, `"2h"`).
///
/// # Errors
///
/// When the string is not a duration.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(text.trim()).map_err(D::Error::custom)
}

/// The same format for `Option<Duration>` (`null` or absent means `None`).
pub mod option {
    use super::{Deserialize, Deserializer, Duration, Serializer};
    use serde::de::Error as _;

    /// Serialises `Some(d)` as a string and `None` as `null`.
    ///
    /// # Errors
    ///
    /// Only the serializer's own errors.
    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => super::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Parses `null` as `None` and a duration string as `Some`.
    ///
    /// # Errors
    ///
    /// When the value is neither `null` nor a duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(None),
            Some(text) => humantime::parse_duration(text.trim())
                .map(Some)
                .map_err(D::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use std::time::Duration;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Cfg {
        #[serde(with = "crate::duration")]
        a: Duration,
        #[serde(with = "crate::duration::option", default)]
        b: Option<Duration>,
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        let cfg = Cfg {
            a: Duration::from_millis(1500),
            b: Some(Duration::from_secs(3600)),
        };
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(json, r#"{"a":"1s 500ms","b":"1h"}"#);
        assert_eq!(serde_json::from_str::<Cfg>(&json).unwrap(), cfg);
        let none: Cfg = serde_json::from_str(r#"{"a":"2s"}"#).unwrap();
        assert_eq!(none.b, None);
        assert!(serde_json::from_str::<Cfg>(r#"{"a":"soon"}"#).is_err());
        assert!(serde_json::from_str::<Cfg>(r#"{"a":5}"#).is_err());
    }
}
