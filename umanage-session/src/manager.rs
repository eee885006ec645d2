//! [`SessionManager`]: logins, validation, rotation and refresh on top of a store.

use std::sync::Arc;

use tracing::Instrument as _;
use umanage_core::UserId;

use crate::config::SessionConfig;
use crate::device::ClientInfo;
use crate::error::Result;
use crate::geo::GeoResolver;
use crate::model::{Session, SessionData, SessionId};
use crate::store::{
    CreateOutcome, NewSession, RefreshOutcome, RefreshRequest, SessionStore, Touch, TouchOutcome,
    UpdateOutcome,
};
use crate::token::{RefreshToken, SessionToken};

/// Who logs in, with what.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Login {
    /// The user.
    pub user_id: UserId,
    /// Login name.
    pub username: String,
    /// E-mail.
    pub email: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Permissions.
    pub permissions: Vec<String>,
    /// Whether a second factor was verified at login.
    pub mfa_verified: bool,
    /// Remember-me: the longer idle timeout and lifetime of the config.
    pub remember_me: bool,
    /// Initial free-form data.
    pub data: SessionData,
    /// A token the client presented before logging in. Its session is revoked, so a
    /// token planted by an attacker (session fixation) is useless after the login.
    pub replaces: Option<SessionToken>,
}

impl Login {
    /// A login of `user_id` as `username`.
    pub fn new(user_id: UserId, username: impl Into<String>) -> Self {
        Self {
            user_id,
            username: username.into(),
            ..Self::default()
        }
    }

    /// Sets the roles.
    #[must_use]
    pub fn with_roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets remember-me.
    #[must_use]
    pub fn remember_me(mut self, yes: bool) -> Self {
        self.remember_me = yes;
        self
    }

    /// Revokes the session of a token presented before the login.
    #[must_use]
    pub fn replacing(mut self, token: SessionToken) -> Self {
        self.replaces = Some(token);
        self
    }
}

/// Result of [`SessionManager::login`].
#[derive(Debug)]
#[non_exhaustive]
pub enum LoginOutcome {
    /// Logged in: hand `token` to the client.
    Created {
        /// The new session.
        session: Arc<Session>,
        /// Its token.
        token: SessionToken,
        /// Sessions evicted by the limit.
        evicted: Vec<SessionId>,
    },
    /// The user is at the session limit (policy `RejectNew`).
    LimitReached {
        /// Live sessions of the user.
        active: u32,
    },
}

/// Result of [`SessionManager::validate`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Validation {
    /// The session is live (and was slid). A shared snapshot (the memory store hands out
    /// the record itself, without copying it); to change attributes, take a copy with
    /// [`Arc::unwrap_or_clone`] and [`save`](SessionManager::save) it.
    Valid(Arc<Session>),
    /// Unknown, expired, revoked or logged out everywhere.
    Invalid,
    /// The device fingerprint differs and the binding policy is `Reject`.
    DeviceMismatch,
}

/// Result of [`SessionManager::refresh`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Refreshed {
    /// New tokens: the old session and refresh tokens no longer work.
    Rotated {
        /// The session.
        session: Arc<Session>,
        /// Its new token.
        token: SessionToken,
        /// The next refresh token.
        refresh: RefreshToken,
    },
    /// The same client's parallel refresh within the grace window: the session is valid;
    /// keep the tokens the other request got.
    Grace(Arc<Session>),
    /// A used refresh token came back: the family and its session are revoked.
    Reused,
    /// Unknown token, revoked family or dead session.
    Invalid,
}

/// Runs sessions: the policy (timeouts, limits, binding, fingerprints, geo) over a
/// [`SessionStore`].
///
/// Every operation on the request path is one store call (one Redis round trip):
/// [`validate`](Self::validate), [`rotate`](Self::rotate), [`refresh`](Self::refresh).
#[derive(Debug, Clone)]
pub struct SessionManager {
    store: Arc<dyn SessionStore>,
    config: SessionConfig,
    geo: Option<Arc<dyn GeoResolver>>,
}

impl SessionManager {
    /// A manager over `store` with `config`.
    pub fn new(store: Arc<dyn SessionStore>, config: SessionConfig) -> Self {
        Self {
            store,
            config,
            geo: None,
        }
    }

    /// Resolves login addresses to a [`Location`](crate::Location).
    #[must_use]
    pub fn with_geo(mut self, geo: Arc<dyn GeoResolver>) -> Self {
        self.geo = Some(geo);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The store itself: calling through `&Arc<dyn SessionStore>` would pick the `Arc`
    /// forwarding impl and box every call's future twice.
    fn backend(&self) -> &dyn SessionStore {
        &*self.store
    }

    /// The config.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Logs in: a fresh token, a new session (limit enforced atomically), the device
    /// fingerprint and location recorded; any session of `login.replaces` is revoked.
    ///
    /// # Errors
    ///
    /// [`Error::Rng`](crate::Error::Rng), [`Error::Backend`](crate::Error::Backend).
    pub async fn login(&self, login: Login, client: &ClientInfo) -> Result<LoginOutcome> {
        let span = tracing::info_span!("session.login", user = %login.user_id);
        async move {
            if let Some(old) = &login.replaces
                && let TouchOutcome::Valid(s) = self.backend().touch(old, Touch::default()).await?
            {
                self.backend().revoke(s.user_id, s.id).await?;
            }
            let ctx = &client.context;
            let mut session = Session::new(login.user_id, login.username);
            session.email = login.email;
            session.roles = login.roles;
            session.permissions = login.permissions;
            session.mfa_verified = login.mfa_verified;
            session.data = login.data;
            session.ip = ctx.client_ip;
            session.user_agent.clone_from(&ctx.user_agent);
            session.device_id.clone_from(&ctx.device_id);
            session.fingerprint = self.config.fingerprint().fingerprint(client);
            if let (Some(geo), Some(ip)) = (&self.geo, ctx.client_ip) {
                match geo.locate(ip) {
                    Ok(loc) => session.location = loc,
                    Err(e) => tracing::warn!(error = %e, "geo lookup failed"),
                }
            }
            let (idle, life) = if login.remember_me {
                (
                    self.config.remember_me_idle_timeout(),
                    self.config.remember_me_lifetime(),
                )
            } else {
                (self.config.idle_timeout(), self.config.absolute_lifetime())
            };
            let token = SessionToken::generate(login.user_id, idle)?;
            let new = NewSession {
                session,
                token: token.hash(),
                idle_timeout: idle,
                lifetime: life,
                limit: self.config.limit(),
            };
            Ok(match self.backend().create(new).await? {
                CreateOutcome::Created { session, evicted } => LoginOutcome::Created {
                    session,
                    token,
                    evicted,
                },
                CreateOutcome::LimitReached { active } => LoginOutcome::LimitReached { active },
            })
        }
        .instrument(span)
        .await
    }

    fn touch_for(&self, client: &ClientInfo) -> Touch {
        Touch {
            ip: client.ip(),
            fingerprint: self.config.fingerprint().fingerprint(client),
            binding: self.config.binding(),
            rotate_to: None,
        }
    }

    /// Validates a token and slides the session, in one store call.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) (a host answers 503 when
    /// [`Error::is_unavailable`](crate::Error::is_unavailable)).
    pub async fn validate(&self, token: &SessionToken, client: &ClientInfo) -> Result<Validation> {
        let span = tracing::debug_span!("session.validate", user = %token.user_id());
        async move {
            let touch = self.touch_for(client);
            Ok(match self.backend().touch(token, touch).await? {
                TouchOutcome::Valid(s) => Validation::Valid(s),
                TouchOutcome::DeviceMismatch(_) => Validation::DeviceMismatch,
                TouchOutcome::Invalid => Validation::Invalid,
            })
        }
        .instrument(span)
        .await
    }

    /// Validates and replaces the token in one store call (after a privilege change); the
    /// old token stops working at once. `None` when the token was not valid.
    ///
    /// # Errors
    ///
    /// [`Error::Rng`](crate::Error::Rng), [`Error::Backend`](crate::Error::Backend).
    pub async fn rotate(
        &self,
        token: &SessionToken,
        client: &ClientInfo,
    ) -> Result<Option<(Arc<Session>, SessionToken)>> {
        let span = tracing::info_span!("session.rotate", user = %token.user_id());
        async move {
            let next = SessionToken::generate(token.user_id(), token.idle_timeout())?;
            let mut touch = self.touch_for(client);
            touch.rotate_to = Some(next.hash());
            Ok(match self.backend().touch(token, touch).await? {
                TouchOutcome::Valid(s) => Some((s, next)),
                TouchOutcome::Invalid | TouchOutcome::DeviceMismatch(_) => None,
            })
        }
        .instrument(span)
        .await
    }

    /// MFA step-up or another privilege change: rotates the token, then applies `change`
    /// to the session (e.g. `mfa_verified = true`, new roles) with a conditional update.
    /// `None` when the token was not valid or the session vanished in between.
    ///
    /// # Errors
    ///
    /// [`Error::Rng`](crate::Error::Rng), [`Error::Backend`](crate::Error::Backend).
    pub async fn elevate(
        &self,
        token: &SessionToken,
        client: &ClientInfo,
        change: impl FnOnce(&mut Session) + Send,
    ) -> Result<Option<(Arc<Session>, SessionToken)>> {
        let Some((session, next)) = self.rotate(token, client).await? else {
            return Ok(None);
        };
        let mut session = Arc::unwrap_or_clone(session);
        change(&mut session);
        Ok(match self.backend().update(&session).await? {
            UpdateOutcome::Updated(v) => {
                session.version = v;
                Some((Arc::new(session), next))
            }
            UpdateOutcome::NotFound | UpdateOutcome::Conflict { .. } => None,
        })
    }

    /// Writes changed attributes or data back (conditional: never revives a revoked session).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend).
    pub async fn save(&self, session: &Session) -> Result<UpdateOutcome> {
        let span = tracing::debug_span!("session.save", user = %session.user_id);
        self.backend().update(session).instrument(span).await
    }

    /// Starts a refresh-token family for a live session.
    ///
    /// # Errors
    ///
    /// [`Error::Rng`](crate::Error::Rng), [`Error::Backend`](crate::Error::Backend).
    pub async fn issue_refresh(&self, session: &Session) -> Result<Option<RefreshToken>> {
        let span = tracing::info_span!("session.issue_refresh", user = %session.user_id);
        async move {
            let token = RefreshToken::generate(session.user_id, session.idle_timeout)?;
            Ok(self
                .backend()
                .start_family(session.user_id, session.id, &token.hash())
                .await?
                .map(|_| token))
        }
        .instrument(span)
        .await
    }

    /// Uses a refresh token: new session and refresh tokens, or reuse detection (see
    /// [`Refreshed`]), atomically in one store call.
    ///
    /// # Errors
    ///
    /// [`Error::Rng`](crate::Error::Rng), [`Error::Backend`](crate::Error::Backend).
    pub async fn refresh(&self, token: &RefreshToken, client: &ClientInfo) -> Result<Refreshed> {
        let span = tracing::info_span!("session.refresh", user = %token.user_id());
        async move {
            let user = token.user_id();
            let next_refresh = RefreshToken::generate(user, token.idle_timeout())?;
            let next_session = SessionToken::generate(user, token.idle_timeout())?;
            let request = RefreshRequest {
                user,
                presented: token.hash(),
                next_refresh: next_refresh.hash(),
                next_session: next_session.hash(),
                fingerprint: self.config.fingerprint().fingerprint(client),
                grace: self.config.refresh_grace(),
            };
            Ok(match self.backend().refresh(request).await? {
                RefreshOutcome::Rotated(session) => Refreshed::Rotated {
                    session,
                    token: next_session,
                    refresh: next_refresh,
                },
                RefreshOutcome::Grace(s) => Refreshed::Grace(s),
                RefreshOutcome::Reused => {
                    tracing::warn!(user = %user, "refresh token reuse: family revoked");
                    Refreshed::Reused
                }
                RefreshOutcome::Invalid => Refreshed::Invalid,
            })
        }
        .instrument(span)
        .await
    }

    /// The user's live sessions (for a "your devices" page).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend).
    pub async fn list(&self, user: UserId) -> Result<Vec<Session>> {
        let span = tracing::debug_span!("session.list", user = %user);
        self.backend().list(user).instrument(span).await
    }

    /// Logs one session out.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend).
    pub async fn logout(&self, session: &Session) -> Result<bool> {
        self.revoke(session.user_id, session.id).await
    }

    /// Revokes one of the user's sessions by id.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend).
    pub async fn revoke(&self, user: UserId, id: SessionId) -> Result<bool> {
        let span = tracing::info_span!("session.revoke", user = %user);
        self.backend().revoke(user, id).instrument(span).await
    }

    /// Revokes every other session of the user ("log out my other devices").
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend).
    pub async fn revoke_others(&self, current: &Session) -> Result<u64> {
        let span = tracing::info_span!("session.revoke_others", user = %current.user_id);
        self.backend()
            .revoke_all(current.user_id, Some(current.id))
            .instrument(span)
            .await
    }

    /// Logs the user out everywhere in O(1) (password change, account compromise): every
    /// existing session is dead at its next validation.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend).
    pub async fn logout_everywhere(&self, user: UserId) -> Result<()> {
        let span = tracing::info_span!("session.logout_everywhere", user = %user);
        self.backend().bump_epoch(user).instrument(span).await
    }
}
