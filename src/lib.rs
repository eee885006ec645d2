#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Shared vocabulary: ids, request context, clocks, backend errors, keys, IP utilities,
/// Redis/Postgres helpers, the key-value store and the test kit.
pub use umanage_core as core;

pub use umanage_core::{
    BackendError, ClientIpResolver, Clock, IpKeyPolicy, KeyBuilder, ManualClock, RequestContext,
    SharedClock, SystemClock, UserId,
};
