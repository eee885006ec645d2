//! Geo-location of client addresses.

use std::net::IpAddr;

use crate::error::Result;
use crate::model::Location;

/// Resolves an address to a location. Lookups are local (no network), so the trait is
/// synchronous.
pub trait GeoResolver: Send + Sync + std::fmt::Debug {
    /// Where `ip` is, or `None` when the database has no record for it.
    ///
    /// # Errors
    ///
    /// [`Error::Geo`](crate::Error::Geo) when the database is unreadable at that record.
    fn locate(&self, ip: IpAddr) -> Result<Option<Location>>;
}

#[cfg(feature = "geoip")]
pub use maxmind::MaxMindResolver;

#[cfg(feature = "geoip")]
mod maxmind {
    use std::net::IpAddr;
    use std::path::Path;

    use maxminddb::{Reader, geoip2};

    use super::GeoResolver;
    use crate::error::{Error, Result};
    use crate::model::Location;

    /// A [`GeoResolver`] over a MaxMind DB file (GeoLite2/GeoIP2 City or Country),
    /// read into memory once.
    pub struct MaxMindResolver {
        reader: Reader<Vec<u8>>,
    }

    impl std::fmt::Debug for MaxMindResolver {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("MaxMindResolver")
                .field("database_type", &self.reader.metadata().database_type)
                .finish_non_exhaustive()
        }
    }

    impl MaxMindResolver {
        /// Opens the database at `path`.
        ///
        /// # Errors
        ///
        /// [`Error::Geo`] when the file is missing or not a MaxMind DB.
        pub fn open(path: impl AsRef<Path>) -> Result<Self> {
            let path = path.as_ref();
            let reader = Reader::open_readfile(path)
                .map_err(|e| Error::Geo(format!("{}: {e}", path.display())))?;
            Ok(Self { reader })
        }

        /// Reads a database from bytes.
        ///
        /// # Errors
        ///
        /// [`Error::Geo`] when the bytes are not a MaxMind DB.
        pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
            let reader = Reader::from_source(bytes).map_err(|e| Error::Geo(e.to_string()))?;
            Ok(Self { reader })
        }
    }

    impl GeoResolver for MaxMindResolver {
        fn locate(&self, ip: IpAddr) -> Result<Option<Location>> {
            let ip = umanage_core::net::canonical_ip(ip);
            let result = self
                .reader
                .lookup(ip)
                .map_err(|e| Error::Geo(e.to_string()))?;
            let Some(city) = result
                .decode::<geoip2::City<'_>>()
                .map_err(|e| Error::Geo(e.to_string()))?
            else {
                return Ok(None);
            };
            let location = Location {
                country_code: city.country.iso_code.map(str::to_owned),
                country: city.country.names.english.map(str::to_owned),
                city: city.city.names.english.map(str::to_owned),
                latitude: city.location.latitude,
                longitude: city.location.longitude,
            };
            if location == Location::default() {
                return Ok(None);
            }
            Ok(Some(location))
        }
    }
}
