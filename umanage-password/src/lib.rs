#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod breach;
pub mod dictionary;
pub mod error;
pub mod hash;
pub mod normalize;
pub mod pepper;
pub mod policy;
pub mod pool;
pub mod service;
pub mod spray;
pub mod store;
pub mod strength;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{PasswordError, Result};
pub use hash::{HashedPassword, HasherConfig, PasswordHasher, VerifyOutcome};
pub use normalize::{MAX_PASSWORD_BYTES, NormalizedPassword};
pub use pepper::PepperSet;
pub use policy::{
    PasswordPolicy, PasswordPolicyBuilder, PolicyError, UserInfo, ValidationReport, Violation,
    ViolationCode,
};
pub use spray::{Assessment, LoginAttempt, SprayAction, SprayConfig, SprayDetector, SprayReason};
pub use strength::StrengthEstimate;
