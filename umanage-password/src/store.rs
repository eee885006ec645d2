//! Where password hashes live: the current hash, when it was set, and the previous ones.
//!
//! [`CredentialStore`] is a small, dyn-compatible trait with a memory backend (feature
//! `memory`) and a Postgres backend (feature `postgres`). Every backend passes the same
//! conformance suite ([`crate::testing`], feature `testing`).
//!
//! # Concurrency
//!
//! Every credential carries a [`version`](Credential::version) that each write increments.
//! Writes are compare-and-set on it: [`replace`](CredentialStore::replace) and
//! [`upgrade_hash`](CredentialStore::upgrade_hash) take the version the caller read and
//! fail with [`ReplaceOutcome::Conflict`] (or `false`) when another write got there first,
//! so two simultaneous password changes cannot both win silently.
//!
//! # Time
//!
//! The store records the `changed_at` it is given; the
//! [`PasswordService`](crate::service::PasswordService) takes it from its injected clock.

#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use umanage_core::UserId;

use crate::error::Result;
use crate::hash::HashedPassword;

#[cfg(feature = "memory")]
pub use memory::MemoryCredentialStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresCredentialStore;

/// The stored password of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Credential {
    /// The current hash.
    pub hash: HashedPassword,
    /// When the password was last set or changed (not touched by a rehash on login).
    pub changed_at: DateTime<Utc>,
    /// Incremented by every write; the compare-and-set token.
    pub version: u64,
    /// Hashes of earlier passwords, newest first, at most as many as the last write kept.
    pub history: Vec<HashedPassword>,
}

/// A new password to store with [`CredentialStore::replace`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewCredential {
    /// Its hash.
    pub hash: HashedPassword,
    /// When it was set.
    pub changed_at: DateTime<Utc>,
    /// How many earlier hashes to keep (the replaced one included); older ones are deleted.
    pub keep_history: usize,
}

impl NewCredential {
    /// A new credential.
    pub fn new(hash: HashedPassword, changed_at: DateTime<Utc>, keep_history: usize) -> Self {
        Self {
            hash,
            changed_at,
            keep_history,
        }
    }
}

/// What [`CredentialStore::replace`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum ReplaceOutcome {
    /// Stored; the credential now has this version.
    Replaced {
        /// The new version.
        version: u64,
    },
    /// Not stored: the credential's version was not the expected one (another write won).
    Conflict {
        /// The version found (`None`: the user has no credential).
        current: Option<u64>,
    },
}

/// Storage of password hashes with history.
///
/// Contract (checked by the conformance suite):
///
/// * [`get`](Self::get) of a user never written is `None`.
/// * [`replace`](Self::replace) with `expected = None` creates the credential only if the
///   user has none; with `Some(v)` it replaces only if the current version is `v`. On
///   success the previous hash (if any) becomes the newest history entry, history is cut
///   to `keep_history` entries, and the version increases by one (a new credential starts
///   at 1). Otherwise nothing changes and the outcome is `Conflict`.
/// * [`upgrade_hash`](Self::upgrade_hash) swaps the hash in place (rehash on login): same
///   compare-and-set, version + 1, `changed_at` and history untouched.
/// * [`delete`](Self::delete) removes the credential and its history.
/// * Concurrent writes with the same expected version: exactly one wins.
#[async_trait]
pub trait CredentialStore: Send + Sync + fmt::Debug + 'static {
    /// The user's credential, if any.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Backend`](crate::PasswordError::Backend) when the backend fails.
    async fn get(&self, user: &UserId) -> Result<Option<Credential>>;

    /// Sets a new password if the credential is still at `expected` (see the trait docs).
    ///
    /// # Errors
    ///
    /// [`PasswordError::Backend`](crate::PasswordError::Backend) when the backend fails.
    async fn replace(
        &self,
        user: &UserId,
        expected: Option<u64>,
        new: NewCredential,
    ) -> Result<ReplaceOutcome>;

    /// Replaces the current hash with a rehash of the same password; `false` when the
    /// credential is not at `expected` any more.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Backend`](crate::PasswordError::Backend) when the backend fails.
    async fn upgrade_hash(
        &self,
        user: &UserId,
        expected: u64,
        hash: HashedPassword,
    ) -> Result<bool>;

    /// Deletes the credential and its history; `true` when there was one.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Backend`](crate::PasswordError::Backend) when the backend fails.
    async fn delete(&self, user: &UserId) -> Result<bool>;
}

macro_rules! forward_credential_store {
    ($($ty:ty),+) => {$(
        #[deny(clippy::missing_trait_methods)]
        #[async_trait]
        impl<T: CredentialStore + ?Sized> CredentialStore for $ty {
            async fn get(&self, user: &UserId) -> Result<Option<Credential>> {
                (**self).get(user).await
            }
            async fn replace(
                &self,
                user: &UserId,
                expected: Option<u64>,
                new: NewCredential,
            ) -> Result<ReplaceOutcome> {
                (**self).replace(user, expected, new).await
            }
            async fn upgrade_hash(
                &self,
                user: &UserId,
                expected: u64,
                hash: HashedPassword,
            ) -> Result<bool> {
                (**self).upgrade_hash(user, expected, hash).await
            }
            async fn delete(&self, user: &UserId) -> Result<bool> {
                (**self).delete(user).await
            }
        }
    )+};
}

forward_credential_store!(Arc<T>, Box<T>);
