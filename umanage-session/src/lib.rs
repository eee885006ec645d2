#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod codec;
pub mod config;
pub mod device;
pub mod error;
pub mod geo;
pub mod manager;
pub mod model;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod token;
#[cfg(feature = "axum")]
pub mod web;

#[cfg(feature = "msgpack")]
pub use codec::MsgpackSerializer;
pub use codec::{JsonSerializer, SessionSerializer, SharedSerializer};
pub use config::{SessionConfig, SessionConfigBuilder};
pub use device::{ClientInfo, FingerprintConfig};
pub use error::{Error, Result};
pub use geo::GeoResolver;
#[cfg(feature = "geoip")]
pub use geo::MaxMindResolver;
pub use manager::{Login, LoginOutcome, Refreshed, SessionManager, Validation};
pub use model::{FamilyId, Location, Session, SessionData, SessionId};
#[cfg(feature = "memory")]
pub use store::MemorySessionStore;
#[cfg(feature = "redis")]
pub use store::RedisSessionStore;
pub use store::{
    BindingPolicy, CreateOutcome, LimitPolicy, NewSession, RefreshOutcome, RefreshRequest,
    SessionLimit, SessionStore, Touch, TouchOutcome, UpdateOutcome,
};
pub use token::{RefreshToken, SessionToken, TokenHash};
