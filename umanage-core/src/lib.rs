#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
pub mod context;
pub mod duration;
pub mod error;
pub mod id;
pub mod keys;
pub mod kv;
pub mod net;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod redact;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "testkit")]
pub mod testing;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use context::RequestContext;
pub use error::BackendError;
pub use id::{ParseIdError, UserId};
pub use keys::{KeyBuilder, KeyPrefixError};
pub use net::{ClientIpResolver, ForwardedHeader, IpKeyPolicy, IpPolicyError};

#[cfg(feature = "testkit")]
#[doc(hidden)]
pub mod __private {
    //! Re-exports used by the conformance-suite macros; not part of the public API.
    pub use tokio;
}
