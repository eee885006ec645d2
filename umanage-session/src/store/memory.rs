//! In-memory [`SessionStore`] for single-instance hosts and tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use umanage_core::{SharedClock, SystemClock, UserId};

use super::{
    CreateOutcome, LimitPolicy, NewSession, RefreshOutcome, RefreshRequest, SessionStore, Touch,
    TouchOutcome, UpdateOutcome,
};
use crate::error::{Error, Result};
use crate::model::{FamilyId, Session, SessionId};
use crate::store::BindingPolicy;
use crate::token::{SessionToken, TokenHash};

/// Full sweeps of abandoned users happen every this many operations.
const SWEEP_EVERY: u64 = 4096;

/// A [`SessionStore`] in process memory.
///
/// Time comes from the injected clock ([`with_clock`](Self::with_clock); the default is
/// the system clock). Dead records are pruned whenever their user is touched, and every
/// 4096 operations the whole map is swept, so memory stays bounded by the live
/// sessions. Token hashes are map keys whose equality is constant-time.
#[derive(Debug)]
pub struct MemorySessionStore {
    clock: SharedClock,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<UserId, UserState>,
    ops: u64,
}

/// Hasher of the token map: its keys are SHA-256 digests of CSPRNG tokens, already
/// uniform, and nobody can choose them (a presented token that is not stored is only looked
/// up, never inserted), so folding its four words together is hash enough, at a fraction
/// of SipHash's cost.
#[derive(Debug, Default, Clone, Copy)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `TokenHash` hashes its 32 bytes with one `write` (after a length prefix, which
        // arrives as `write_usize` below and is ignored).
        for chunk in bytes.chunks(8) {
            let mut b = [0_u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type TokenMap<V> = HashMap<TokenHash, V, std::hash::BuildHasherDefault<DigestHasher>>;

#[derive(Debug, Default)]
struct UserState {
    sessions: HashMap<SessionId, Record>,
    tokens: TokenMap<SessionId>,
    epoch: u64,
    families: HashMap<FamilyId, Family>,
    refresh: TokenMap<FamilyId>,
}

#[derive(Debug)]
struct Record {
    /// Shared with the snapshots handed out; changed copy-on-write ([`Arc::make_mut`]).
    session: Arc<Session>,
    token: TokenHash,
}

#[derive(Debug)]
struct Family {
    current: TokenHash,
    previous: Option<(TokenHash, DateTime<Utc>, Option<String>)>,
    session: SessionId,
    expires_at: DateTime<Utc>,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(delta(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Record {
    fn live(&self, now: DateTime<Utc>, epoch: u64) -> bool {
        now < self.session.idle_expires_at
            && now < self.session.expires_at
            && self.session.credential_epoch >= epoch
    }
}

impl UserState {
    /// Drops every dead session, its token, and families whose session is gone.
    fn prune(&mut self, now: DateTime<Utc>) {
        let epoch = self.epoch;
        let dead: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, r)| !r.live(now, epoch))
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.kill(id);
        }
        let sessions = &self.sessions;
        self.families
            .retain(|_, f| now < f.expires_at && sessions.contains_key(&f.session));
        let families = &self.families;
        self.refresh.retain(|_, fid| families.contains_key(fid));
    }

    fn kill(&mut self, id: SessionId) -> bool {
        match self.sessions.remove(&id) {
            Some(rec) => {
                self.tokens.remove(&rec.token);
                true
            }
            None => false,
        }
    }

    fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.families.is_empty()
    }

    fn slide(rec: &mut Record, now: DateTime<Utc>, ip: Option<std::net::IpAddr>) {
        let s = Arc::make_mut(&mut rec.session);
        s.last_activity = now;
        s.idle_expires_at = add(now, s.idle_timeout).min(s.expires_at);
        if let Some(ip) = ip.map(umanage_core::net::canonical_ip) {
            if s.ip.is_some_and(|login| login != ip) {
                s.ip_changed = true;
            }
            s.last_ip = Some(ip);
        }
    }
}

impl MemorySessionStore {
    /// A store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(SystemClock::shared())
    }

    /// A store on `clock` (a [`ManualClock`](umanage_core::ManualClock) in tests).
    pub fn with_clock(clock: SharedClock) -> Self {
        Self {
            clock,
            state: Mutex::new(State::default()),
        }
    }

    /// Number of users with state held (for tests of the clean-up).
    pub fn users_held(&self) -> usize {
        self.state.lock().users.len()
    }

    /// Removes every dead record now (also done on its own every few thousand operations).
    pub fn sweep(&self) {
        let now = self.clock.now();
        let mut state = self.state.lock();
        Self::sweep_locked(&mut state, now);
    }

    fn sweep_locked(state: &mut State, now: DateTime<Utc>) {
        state.users.retain(|_, u| {
            u.prune(now);
            !u.is_empty()
        });
    }

    /// Runs `f` on the user's pruned state, dropping the state again if it ends up empty.
    fn with_user<T>(&self, user: UserId, f: impl FnOnce(&mut UserState, DateTime<Utc>) -> T) -> T {
        let now = self.clock.now();
        let mut state = self.state.lock();
        state.ops = state.ops.wrapping_add(1);
        if state.ops.is_multiple_of(SWEEP_EVERY) {
            Self::sweep_locked(&mut state, now);
        }
        let u = state.users.entry(user).or_default();
        u.prune(now);
        let out = f(u, now);
        if u.is_empty() {
            state.users.remove(&user);
        }
        out
    }
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    #[tracing::instrument(level = "debug", skip_all, fields(user = %new.session.user_id))]
    async fn create(&self, new: NewSession) -> Result<CreateOutcome> {
        let user = new.session.user_id;
        self.with_user(user, |u, now| {
            if u.tokens.contains_key(&new.token) || u.sessions.contains_key(&new.session.id) {
                return Err(Error::Duplicate);
            }
            let mut evicted = Vec::new();
            if let Some(limit) = new.limit {
                let max = limit.max.max(1) as usize;
                if u.sessions.len() >= max {
                    if limit.policy == LimitPolicy::RejectNew {
                        return Ok(CreateOutcome::LimitReached {
                            active: u.sessions.len() as u32,
                        });
                    }
                    let mut by_age: Vec<(DateTime<Utc>, SessionId)> = u
                        .sessions
                        .values()
                        .map(|r| (r.session.created_at, r.session.id))
                        .collect();
                    by_age.sort();
                    for (_, id) in by_age.into_iter().take(u.sessions.len() + 1 - max) {
                        u.kill(id);
                        evicted.push(id);
                    }
                    u.prune(now);
                }
            }
            let mut s = new.session;
            s.created_at = now;
            s.last_activity = now;
            s.expires_at = add(now, new.lifetime);
            s.idle_timeout = new.idle_timeout;
            s.idle_expires_at = add(now, new.idle_timeout).min(s.expires_at);
            s.credential_epoch = u.epoch;
            s.ip_changed = false;
            s.device_mismatch = false;
            s.last_ip = s.ip;
            s.version = 1;
            let s = Arc::new(s);
            u.tokens.insert(new.token, s.id);
            u.sessions.insert(
                s.id,
                Record {
                    session: Arc::clone(&s),
                    token: new.token,
                },
            );
            Ok(CreateOutcome::Created {
                session: s,
                evicted,
            })
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %token.user_id()))]
    async fn touch(&self, token: &SessionToken, touch: Touch) -> Result<TouchOutcome> {
        let hash = token.hash();
        self.with_user(token.user_id(), |u, now| {
            let Some(&id) = u.tokens.get(&hash) else {
                return Ok(TouchOutcome::Invalid);
            };
            if let Some(next) = &touch.rotate_to
                && u.tokens.contains_key(next)
            {
                return Err(Error::Duplicate);
            }
            let Some(rec) = u.sessions.get_mut(&id) else {
                return Ok(TouchOutcome::Invalid);
            };
            if rec.session.idle_timeout.as_millis() != token.idle_timeout().as_millis() {
                return Ok(TouchOutcome::Invalid);
            }
            let mismatch = matches!(
                (&rec.session.fingerprint, &touch.fingerprint),
                (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() && a != b
            );
            if mismatch {
                match touch.binding {
                    BindingPolicy::Reject => return Ok(TouchOutcome::DeviceMismatch(id)),
                    BindingPolicy::Flag if !rec.session.device_mismatch => {
                        Arc::make_mut(&mut rec.session).device_mismatch = true;
                    }
                    BindingPolicy::Flag | BindingPolicy::Ignore => {}
                }
            }
            UserState::slide(rec, now, touch.ip);
            let old = rec.token;
            if let Some(next) = touch.rotate_to {
                rec.token = next;
            }
            let session = Arc::clone(&rec.session);
            if let Some(next) = touch.rotate_to {
                u.tokens.remove(&old);
                u.tokens.insert(next, id);
            }
            Ok(TouchOutcome::Valid(session))
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %session.user_id))]
    async fn update(&self, session: &Session) -> Result<UpdateOutcome> {
        Ok(self.with_user(session.user_id, |u, _| {
            let Some(rec) = u.sessions.get_mut(&session.id) else {
                return UpdateOutcome::NotFound;
            };
            if rec.session.version != session.version {
                return UpdateOutcome::Conflict {
                    current: rec.session.version,
                };
            }
            let s = Arc::make_mut(&mut rec.session);
            s.username.clone_from(&session.username);
            s.email.clone_from(&session.email);
            s.roles.clone_from(&session.roles);
            s.permissions.clone_from(&session.permissions);
            s.ip = session.ip;
            s.user_agent.clone_from(&session.user_agent);
            s.device_id.clone_from(&session.device_id);
            s.fingerprint.clone_from(&session.fingerprint);
            s.location.clone_from(&session.location);
            s.mfa_verified = session.mfa_verified;
            s.data.clone_from(&session.data);
            s.version += 1;
            UpdateOutcome::Updated(s.version)
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %user))]
    async fn list(&self, user: UserId) -> Result<Vec<Session>> {
        Ok(self.with_user(user, |u, _| {
            let mut out: Vec<Session> = u
                .sessions
                .values()
                .map(|r| Session::clone(&r.session))
                .collect();
            out.sort_by_key(|s| (s.created_at, s.id));
            out
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %user))]
    async fn revoke(&self, user: UserId, id: SessionId) -> Result<bool> {
        Ok(self.with_user(user, |u, now| {
            let killed = u.kill(id);
            u.prune(now);
            killed
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %user))]
    async fn revoke_all(&self, user: UserId, keep: Option<SessionId>) -> Result<u64> {
        Ok(self.with_user(user, |u, now| {
            let ids: Vec<SessionId> = u
                .sessions
                .keys()
                .copied()
                .filter(|id| Some(*id) != keep)
                .collect();
            let n = ids.into_iter().filter(|id| u.kill(*id)).count();
            u.prune(now);
            n as u64
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %user))]
    async fn bump_epoch(&self, user: UserId) -> Result<()> {
        self.with_user(user, |u, now| {
            // Every session held was created before the bump, so all of them die now; an
            // emptied user is forgotten (epoch included), like the Redis epoch key whose
            // TTL ends with the user's last session.
            u.epoch += 1;
            u.prune(now);
        });
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %user))]
    async fn start_family(
        &self,
        user: UserId,
        session: SessionId,
        token: &TokenHash,
    ) -> Result<Option<FamilyId>> {
        self.with_user(user, |u, _| {
            let Some(rec) = u.sessions.get(&session) else {
                return Ok(None);
            };
            if u.refresh.contains_key(token) {
                return Err(Error::Duplicate);
            }
            let id = FamilyId::new();
            let expires_at = rec.session.expires_at;
            u.families.insert(
                id,
                Family {
                    current: *token,
                    previous: None,
                    session,
                    expires_at,
                },
            );
            u.refresh.insert(*token, id);
            Ok(Some(id))
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %request.user))]
    async fn refresh(&self, request: RefreshRequest) -> Result<RefreshOutcome> {
        self.with_user(request.user, |u, now| {
            let Some(&fid) = u.refresh.get(&request.presented) else {
                return Ok(RefreshOutcome::Invalid);
            };
            let Some(fam) = u.families.get(&fid) else {
                return Ok(RefreshOutcome::Invalid);
            };
            let sid = fam.session;
            if fam.current == request.presented {
                if u.refresh.contains_key(&request.next_refresh)
                    || u.tokens.contains_key(&request.next_session)
                {
                    return Err(Error::Duplicate);
                }
                let Some(rec) = u.sessions.get_mut(&sid) else {
                    return Ok(RefreshOutcome::Invalid);
                };
                UserState::slide(rec, now, None);
                let old = std::mem::replace(&mut rec.token, request.next_session);
                let session = Arc::clone(&rec.session);
                u.tokens.remove(&old);
                u.tokens.insert(request.next_session, sid);
                if let Some(fam) = u.families.get_mut(&fid) {
                    fam.previous = Some((
                        request.presented,
                        add(now, request.grace),
                        request.fingerprint.clone(),
                    ));
                    fam.current = request.next_refresh;
                }
                u.refresh.insert(request.next_refresh, fid);
                return Ok(RefreshOutcome::Rotated(session));
            }
            let grace = matches!(
                &fam.previous,
                Some((prev, until, Some(fp)))
                    if *prev == request.presented
                        && now < *until
                        && !fp.is_empty()
                        && request.fingerprint.as_ref() == Some(fp)
            );
            if grace && let Some(rec) = u.sessions.get_mut(&sid) {
                UserState::slide(rec, now, None);
                return Ok(RefreshOutcome::Grace(Arc::clone(&rec.session)));
            }
            // A used token again: the family is compromised.
            u.families.remove(&fid);
            u.kill(sid);
            u.prune(now);
            Ok(RefreshOutcome::Reused)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use umanage_core::ManualClock;

    #[tokio::test]
    async fn dead_users_are_forgotten() {
        let clock = ManualClock::default();
        let store = MemorySessionStore::with_clock(clock.shared());
        for _ in 0..50 {
            let user = UserId::new();
            let token = SessionToken::generate(user, Duration::from_secs(60)).unwrap();
            let new = NewSession {
                session: Session::new(user, "u"),
                token: token.hash(),
                idle_timeout: Duration::from_secs(60),
                lifetime: Duration::from_secs(600),
                limit: None,
            };
            store.create(new).await.unwrap();
        }
        assert_eq!(store.users_held(), 50);
        clock.advance(Duration::from_secs(61));
        assert_eq!(store.users_held(), 50, "nothing read them yet");
        store.sweep();
        assert_eq!(store.users_held(), 0, "expired users kept");
        // A lookup for an unknown user leaves nothing behind either.
        let stranger = UserId::new();
        let token = SessionToken::generate(stranger, Duration::from_secs(60)).unwrap();
        let out = store.touch(&token, Touch::default()).await.unwrap();
        assert!(matches!(out, TouchOutcome::Invalid));
        assert_eq!(store.users_held(), 0);
    }
}
