#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub mod model;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{
    AccountError, CreateWithError, EmailProblem, Result, TextProblem, UsernameProblem,
};
pub use model::{
    Account, AccountCursor, AccountPage, AccountStatus, Email, Login, NewAccount, Role, Username,
    ValidNewAccount,
};
pub use store::{AccountStore, MAX_PAGE_SIZE, create_with};

#[cfg(feature = "memory")]
pub use store::memory::MemoryAccountStore;

/// The Postgres backend (feature `postgres`).
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use crate::store::postgres::{MIGRATOR, PostgresAccountStore, migrate};
}
#[cfg(feature = "postgres")]
pub use store::postgres::PostgresAccountStore;

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod __private {
    //! Used by the conformance-suite macro; not part of the public API.
    pub use umanage_core;
}
