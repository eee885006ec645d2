#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod normalize;

pub use error::{PasswordError, Result};
pub use normalize::{MAX_PASSWORD_BYTES, NormalizedPassword};
