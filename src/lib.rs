#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Shared vocabulary: ids, request context, clocks, backend errors, keys, IP utilities,
/// Redis/Postgres helpers, the key-value store and the test kit.
pub use umanage_core as core;

/// User accounts: usernames and emails unique after normalisation, roles, status.
#[cfg(feature = "account")]
pub use umanage_account as account;

/// Password policy, strength, breach checks, spray detection and hashing.
#[cfg(feature = "password")]
pub use umanage_password as password;

/// Sessions: expiry, devices, limits, rotation and replay protection.
#[cfg(feature = "session")]
pub use umanage_session as session;

/// Rate limiting: six strategies, memory and Redis, tiers, tower layer.
#[cfg(feature = "ratelimit")]
pub use umanage_ratelimit as ratelimit;

/// Audit events, pipeline, storage and tamper evidence.
#[cfg(feature = "audit")]
pub use umanage_audit as audit;

pub use umanage_core::{
    BackendError, ClientIpResolver, Clock, IpKeyPolicy, KeyBuilder, ManualClock, RequestContext,
    SharedClock, SystemClock, UserId,
};
