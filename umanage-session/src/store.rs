//! The backend trait and its request and outcome types.
//!
//! | backend | type | feature | time comes from |
//! | --- | --- | --- | --- |
//! | memory | [`MemorySessionStore`] | `memory` | the injected [`Clock`](umanage_core::Clock) |
//! | Redis | [`RedisSessionStore`] | `redis` | the Redis server (key expiry, `TIME` inside scripts) |

#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use umanage_core::UserId;

use crate::error::Result;
use crate::model::{FamilyId, Session, SessionId};
use crate::token::{SessionToken, TokenHash};

#[cfg(feature = "memory")]
pub use memory::MemorySessionStore;
#[cfg(feature = "redis")]
pub use redis::RedisSessionStore;

/// What happens when a login would exceed the user's session limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitPolicy {
    /// The new login is refused ([`CreateOutcome::LimitReached`]).
    RejectNew,
    /// The oldest sessions (by creation) are revoked to make room.
    EvictOldest,
}

/// A per-user cap on live sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionLimit {
    /// Most live sessions per user (at least 1).
    pub max: u32,
    /// What to do at the cap.
    pub policy: LimitPolicy,
}

/// What to do when a validation's device fingerprint differs from the login's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingPolicy {
    /// Nothing.
    Ignore,
    /// Accept, and set [`Session::device_mismatch`].
    #[default]
    Flag,
    /// Refuse ([`TouchOutcome::DeviceMismatch`]); the session stays as it was.
    Reject,
}

/// A new session for [`SessionStore::create`].
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Identity and attributes; the store sets times, epoch and flags.
    pub session: Session,
    /// Hash of the session token.
    pub token: TokenHash,
    /// Idle (sliding) timeout of this session: the one its token carries
    /// ([`SessionToken::idle_timeout`]).
    pub idle_timeout: Duration,
    /// Absolute lifetime of this session.
    pub lifetime: Duration,
    /// The user's session limit, if any.
    pub limit: Option<SessionLimit>,
}

/// Result of [`SessionStore::create`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CreateOutcome {
    /// Stored; `evicted` lists sessions revoked to make room ([`LimitPolicy::EvictOldest`]).
    Created {
        /// The stored session.
        session: Arc<Session>,
        /// Sessions revoked to respect the limit.
        evicted: Vec<SessionId>,
    },
    /// Refused under [`LimitPolicy::RejectNew`]: the user has `active` live sessions.
    LimitReached {
        /// Live sessions of the user.
        active: u32,
    },
}

/// What a validation presents besides the token.
#[derive(Debug, Clone, Default)]
pub struct Touch {
    /// Client address now (compared with the login's to set [`Session::ip_changed`]).
    pub ip: Option<IpAddr>,
    /// Device fingerprint now (compared with the login's under `binding`).
    pub fingerprint: Option<String>,
    /// What a fingerprint mismatch does.
    pub binding: BindingPolicy,
    /// Replace the token hash (rotation): the old token stops working in the same step.
    /// The new token carries the same idle timeout as the old one.
    pub rotate_to: Option<TokenHash>,
}

/// Result of [`SessionStore::touch`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TouchOutcome {
    /// The session is live; its idle deadline was extended (capped at the absolute one).
    /// Stores hand out shared snapshots: the memory store returns its record without
    /// copying it (copy-on-write when the next validation finds the snapshot still held).
    Valid(Arc<Session>),
    /// Unknown token, or a session past a deadline or older than the credential epoch.
    Invalid,
    /// [`BindingPolicy::Reject`] and the fingerprint differs; nothing was changed.
    DeviceMismatch(SessionId),
}

/// Result of [`SessionStore::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateOutcome {
    /// Written; the session's new version.
    Updated(u64),
    /// The session is gone (revoked, expired): nothing was written back.
    NotFound,
    /// Someone else updated it first; `current` is the stored version.
    Conflict {
        /// The stored version.
        current: u64,
    },
}

/// A refresh request for [`SessionStore::refresh`].
#[derive(Debug, Clone)]
pub struct RefreshRequest {
    /// The user (from the token).
    pub user: UserId,
    /// Hash of the refresh token presented.
    pub presented: TokenHash,
    /// Hash of the next refresh token.
    pub next_refresh: TokenHash,
    /// Hash of the session's next token (the session token is rotated with the refresh);
    /// issued with the idle timeout of the presented refresh token, which is its session's.
    pub next_session: TokenHash,
    /// The client's device fingerprint; the grace window only covers the same one.
    pub fingerprint: Option<String>,
    /// How long after a rotation the previous refresh token is still accepted from the
    /// same fingerprint (parallel requests of one client).
    pub grace: Duration,
}

/// Result of [`SessionStore::refresh`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RefreshOutcome {
    /// The presented token was current: the family moved on to `next_refresh`, the session
    /// to `next_session` (the old session token no longer works).
    Rotated(Arc<Session>),
    /// The presented token was the previous one, within the grace window, from the same
    /// fingerprint: the session is valid, nothing was issued (the client keeps the tokens
    /// the winning request got).
    Grace(Arc<Session>),
    /// The presented token was already used: the whole family and its session were revoked.
    Reused,
    /// Unknown token, revoked family or dead session.
    Invalid,
}

/// A session backend.
///
/// # Contract
///
/// * Time is the store's: the memory store reads its [`Clock`](umanage_core::Clock), the
///   Redis store enforces both deadlines with key expiry on the server's clock. A session
///   is live while `now` is before both its idle and its absolute deadline and its
///   credential epoch is the user's current one.
/// * A session that is not live is never returned, by any method, even when the backend
///   still holds its record; touching it does not revive it.
/// * [`touch`](Self::touch) validates and slides in one step (one round trip) that no
///   concurrent write can split: the new idle deadline is
///   `min(now + the session's idle_timeout, expires_at)`; a validation that races a
///   revocation, rotation or epoch bump either happened before it or finds nothing.
/// * Every write is conditional on the session still being live, so nothing deleted can
///   be written back by a request that loaded it earlier.
/// * [`create`](Self::create) checks the user's limit and inserts atomically.
/// * Stores keep tokens only as their hashes ([`TokenHash`]).
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Stores a new session, enforcing the limit atomically.
    ///
    /// # Errors
    ///
    /// [`Error::Duplicate`](crate::Error::Duplicate) when the id or token hash exists;
    /// [`Error::Backend`](crate::Error::Backend) when the backend fails.
    async fn create(&self, new: NewSession) -> Result<CreateOutcome>;

    /// Validates the session of `token`, extends its idle deadline and records the client.
    /// The token's user id routes the lookup, its [`hash`](SessionToken::hash) finds the
    /// record and its [`idle_timeout`](SessionToken::idle_timeout) is the slide (a token
    /// whose idle timeout is not its session's is invalid); stores keep only the hash.
    ///
    /// # Errors
    ///
    /// [`Error::Duplicate`](crate::Error::Duplicate) when `rotate_to` already exists;
    /// [`Error::Backend`](crate::Error::Backend) when the backend fails.
    async fn touch(&self, token: &SessionToken, touch: Touch) -> Result<TouchOutcome>;

    /// Writes the caller-owned fields of `session` if it is live and still at
    /// `session.version`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the backend fails.
    async fn update(&self, session: &Session) -> Result<UpdateOutcome>;

    /// The user's live sessions, oldest first; dead index entries are pruned on the way.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the backend fails.
    async fn list(&self, user: UserId) -> Result<Vec<Session>>;

    /// Revokes one session. Returns whether a live one was revoked.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the backend fails.
    async fn revoke(&self, user: UserId, id: SessionId) -> Result<bool>;

    /// Revokes every session of the user except `keep`. Returns how many live ones went.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the backend fails.
    async fn revoke_all(&self, user: UserId, keep: Option<SessionId>) -> Result<u64>;

    /// Bumps the user's credential epoch in O(1): every session created before is dead
    /// from now on.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the backend fails.
    async fn bump_epoch(&self, user: UserId) -> Result<()>;

    /// Starts a refresh-token family for a live session, whose current token is `token`.
    /// The family lives as long as the session can. Returns `None` when the session is
    /// not live.
    ///
    /// # Errors
    ///
    /// [`Error::Duplicate`](crate::Error::Duplicate) when the token hash exists;
    /// [`Error::Backend`](crate::Error::Backend) when the backend fails.
    async fn start_family(
        &self,
        user: UserId,
        session: SessionId,
        token: &TokenHash,
    ) -> Result<Option<FamilyId>>;

    /// Uses a refresh token (see [`RefreshOutcome`]), atomically.
    ///
    /// # Errors
    ///
    /// [`Error::Duplicate`](crate::Error::Duplicate) when a new hash exists;
    /// [`Error::Backend`](crate::Error::Backend) when the backend fails.
    async fn refresh(&self, request: RefreshRequest) -> Result<RefreshOutcome>;
}

macro_rules! forward_session_store {
    ($($ty:ty),+) => {$(
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<S: SessionStore + ?Sized> SessionStore for $ty {
            async fn create(&self, new: NewSession) -> Result<CreateOutcome> {
                (**self).create(new).await
            }
            async fn touch(&self, token: &SessionToken, touch: Touch) -> Result<TouchOutcome> {
                (**self).touch(token, touch).await
            }
            async fn update(&self, session: &Session) -> Result<UpdateOutcome> {
                (**self).update(session).await
            }
            async fn list(&self, user: UserId) -> Result<Vec<Session>> {
                (**self).list(user).await
            }
            async fn revoke(&self, user: UserId, id: SessionId) -> Result<bool> {
                (**self).revoke(user, id).await
            }
            async fn revoke_all(&self, user: UserId, keep: Option<SessionId>) -> Result<u64> {
                (**self).revoke_all(user, keep).await
            }
            async fn bump_epoch(&self, user: UserId) -> Result<()> {
                (**self).bump_epoch(user).await
            }
            async fn start_family(
                &self,
                user: UserId,
                session: SessionId,
                token: &TokenHash,
            ) -> Result<Option<FamilyId>> {
                (**self).start_family(user, session, token).await
            }
            async fn refresh(&self, request: RefreshRequest) -> Result<RefreshOutcome> {
                (**self).refresh(request).await
            }
        }
    )+};
}

forward_session_store!(Arc<S>, Box<S>);
