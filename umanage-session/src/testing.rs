//! The [`SessionStore`] conformance suite (feature `testing`).
//!
//! Plain `async fn`s over a [`SessionHarness`], stamped out per backend by
//! [`session_conformance!`](crate::session_conformance):
//!
//! ```text
//! mod memory {
//!     async fn harness() -> Option<umanage_session::testing::SessionHarness> {
//!         Some(umanage_session::testing::memory_harness())
//!     }
//!     umanage_session::session_conformance!(harness);
//! }
//! ```
//!
//! Every case panics (fails the test) when the backend breaks the contract.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use umanage_core::UserId;
use umanage_core::testkit::{Harness, TimeControl};

use crate::error::Error;
use crate::model::{Location, Session, SessionId};
use crate::store::{
    BindingPolicy, CreateOutcome, LimitPolicy, NewSession, RefreshOutcome, RefreshRequest,
    SessionLimit, SessionStore, Touch, TouchOutcome, UpdateOutcome,
};
use crate::token::{RefreshToken, SessionToken};

/// What every session conformance case receives.
pub type SessionHarness = Harness<dyn SessionStore>;

/// A harness over a memory store on a fresh [`ManualClock`](umanage_core::ManualClock).
#[cfg(feature = "memory")]
pub fn memory_harness() -> SessionHarness {
    let clock = umanage_core::ManualClock::default();
    let store = crate::store::MemorySessionStore::with_clock(clock.shared());
    Harness::new(Arc::new(store), TimeControl::Manual(clock))
}

/// Stamps out every session case for `$setup`, an `async fn() -> Option<SessionHarness>`.
#[macro_export]
macro_rules! session_conformance {
    ($setup:path) => {
        ::umanage_core::conformance_tests!(
            $setup;
            $crate::testing;
            create_then_touch_returns_the_session,
            unknown_tokens_are_invalid,
            a_token_with_another_idle_timeout_is_invalid,
            idle_timeout_expires_and_touch_does_not_revive,
            touch_slides_the_idle_deadline,
            returned_sessions_are_snapshots,
            absolute_deadline_caps_sliding,
            per_session_lifetimes_are_kept_when_sliding,
            rotate_invalidates_the_old_token,
            rotate_to_an_existing_token_is_a_duplicate,
            duplicate_ids_and_tokens_are_rejected,
            updates_are_conditional,
            logout_race_never_writes_back,
            list_and_revoke,
            index_self_heals_after_expiry,
            epoch_bump_logs_out_everywhere,
            limit_reject_new,
            limit_evict_oldest,
            concurrent_logins_never_exceed_the_limit,
            concurrent_logins_with_eviction_keep_the_limit,
            ip_change_is_flagged,
            device_binding_policies,
            empty_fingerprints_count_as_none,
            refresh_rotates_and_reuse_revokes_the_family,
            refresh_grace_covers_only_the_same_client,
            refresh_reuse_under_concurrency_revokes_the_family,
            families_need_a_live_session,
            users_are_isolated,
        );
    };
}

/// The unit of "a little time" for real-time backends.
const TICK: Duration = Duration::from_millis(300);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A new session for `user` with the given idle timeout and lifetime, and its token.
fn login(user: UserId, idle: Duration, life: Duration) -> (NewSession, SessionToken) {
    let token = SessionToken::generate(user, idle).unwrap();
    let mut session = Session::new(user, "alice");
    session.email = Some("alice@example.com".into());
    session.roles = vec!["user".into()];
    session.permissions = vec!["read".into()];
    session.ip = Some(ip("192.0.2.10"));
    session.user_agent = Some("Mozilla/5.0 (suite)".into());
    session.device_id = Some("device-1".into());
    session.fingerprint = Some("fp-1".into());
    session.location = Some(Location::country("GB").with_city("London"));
    session
        .data
        .insert("k".into(), serde_json::json!({"v": [1, 2]}));
    let new = NewSession {
        session,
        token: token.hash(),
        idle_timeout: idle,
        lifetime: life,
        limit: None,
    };
    (new, token)
}

async fn create(h: &SessionHarness, new: NewSession) -> Session {
    match h.store.create(new).await.unwrap() {
        CreateOutcome::Created { session, .. } => Session::clone(&session),
        other => panic!("not created: {other:?}"),
    }
}

async fn touch(h: &SessionHarness, token: &SessionToken) -> Option<Session> {
    match h.store.touch(token, Touch::default()).await.unwrap() {
        TouchOutcome::Valid(s) => Some(Session::clone(&s)),
        TouchOutcome::Invalid => None,
        other @ TouchOutcome::DeviceMismatch(_) => panic!("unexpected {other:?}"),
    }
}

/// The stored session carries every attribute, store-set times and version 1.
pub async fn create_then_touch_returns_the_session(h: &SessionHarness) {
    let user = UserId::new();
    let (new, token) = login(user, TICK * 10, TICK * 100);
    let expected = new.session.clone();
    let created = create(h, new).await;
    assert_eq!(created.id, expected.id);
    assert_eq!(created.version, 1);
    assert_eq!(created.created_at, created.last_activity);
    assert_eq!(created.idle_timeout, TICK * 10);
    assert_eq!(
        (created.idle_expires_at - created.created_at)
            .to_std()
            .unwrap(),
        TICK * 10
    );
    assert_eq!(
        (created.expires_at - created.created_at).to_std().unwrap(),
        TICK * 100
    );
    assert!(!created.ip_changed && !created.device_mismatch);
    let got = touch(h, &token).await.expect("fresh session invalid");
    for s in [&created, &got] {
        assert_eq!(s.user_id, user);
        assert_eq!(s.username, expected.username);
        assert_eq!(s.email, expected.email);
        assert_eq!(s.roles, expected.roles);
        assert_eq!(s.permissions, expected.permissions);
        assert_eq!(s.ip, expected.ip);
        assert_eq!(s.user_agent, expected.user_agent);
        assert_eq!(s.device_id, expected.device_id);
        assert_eq!(s.location, expected.location);
        assert_eq!(s.data, expected.data);
    }
    assert_eq!(got.created_at, created.created_at);
    assert!(got.last_activity >= created.last_activity);
    assert_eq!(got.expires_at, created.expires_at);
}

/// Tokens never issued, and tokens of another kind, are invalid.
pub async fn unknown_tokens_are_invalid(h: &SessionHarness) {
    let user = UserId::new();
    assert!(
        touch(h, &SessionToken::generate(user, TICK * 10).unwrap())
            .await
            .is_none()
    );
    let (session, _, refresh) = family(h, user).await;
    let as_session = SessionToken::parse(refresh.expose()).unwrap();
    let outcome = h.store.touch(&as_session, Touch::default()).await.unwrap();
    assert!(matches!(outcome, TouchOutcome::Invalid), "{outcome:?}");
    // The same secret under another user id or idle timeout is another token.
    let (new, token) = login(user, TICK * 10, TICK * 100);
    create(h, new).await;
    for edited in [
        edit_token(&token, Some(UserId::new()), None),
        edit_token(&token, None, Some(TICK * 11)),
    ] {
        let outcome = h.store.touch(&edited, Touch::default()).await.unwrap();
        assert!(matches!(outcome, TouchOutcome::Invalid), "{outcome:?}");
    }
    assert!(touch(h, &token).await.is_some());
    assert!(h.store.revoke(user, session.id).await.unwrap());
}

/// A token carrying another idle timeout than its session's matches nothing: a store
/// never slides a session by an idle timeout it was not created with, so the session
/// still ends at its own idle deadline.
pub async fn a_token_with_another_idle_timeout_is_invalid(h: &SessionHarness) {
    let user = UserId::new();
    let (mut new, token) = login(user, TICK * 10, TICK * 100);
    new.idle_timeout = TICK * 20;
    create(h, new).await;
    let outcome = h.store.touch(&token, Touch::default()).await.unwrap();
    assert!(matches!(outcome, TouchOutcome::Invalid), "{outcome:?}");
    // A token with a longer idle timeout than its session's must not keep it alive.
    let (mut new, token) = login(user, TICK * 20, TICK * 100);
    new.idle_timeout = TICK * 2;
    let short = create(h, new).await;
    h.time.advance(TICK).await;
    let outcome = h.store.touch(&token, Touch::default()).await.unwrap();
    assert!(matches!(outcome, TouchOutcome::Invalid), "{outcome:?}");
    h.time.advance(TICK * 2).await;
    assert!(
        h.store
            .list(user)
            .await
            .unwrap()
            .iter()
            .all(|s| s.id != short.id),
        "listed past its idle deadline"
    );
    assert_eq!(
        h.store.update(&short).await.unwrap(),
        UpdateOutcome::NotFound,
        "updated past its idle deadline"
    );
}

/// `token` with its user id and/or idle timeout bytes replaced (the secret kept).
fn edit_token(token: &SessionToken, user: Option<UserId>, idle: Option<Duration>) -> SessionToken {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut raw = engine.decode(token.expose()).unwrap();
    if let Some(user) = user {
        raw[..16].copy_from_slice(user.as_uuid().as_bytes());
    }
    if let Some(idle) = idle {
        let ms = u64::try_from(idle.as_millis()).unwrap().to_be_bytes();
        raw[16..22].copy_from_slice(&ms[2..]);
    }
    SessionToken::parse(&engine.encode(raw)).unwrap()
}

/// Past the idle deadline the session is gone, and touching it again does not bring it back.
pub async fn idle_timeout_expires_and_touch_does_not_revive(h: &SessionHarness) {
    let user = UserId::new();
    let (new, token) = login(user, TICK * 2, TICK * 100);
    create(h, new).await;
    h.time.advance(TICK * 3).await;
    assert!(
        touch(h, &token).await.is_none(),
        "idle-expired session returned"
    );
    assert!(
        touch(h, &token).await.is_none(),
        "touch revived the session"
    );
    assert!(h.store.list(user).await.unwrap().is_empty());
}

/// Each touch moves the idle deadline: a session used more often than its idle timeout
/// outlives it.
pub async fn touch_slides_the_idle_deadline(h: &SessionHarness) {
    let user = UserId::new();
    let (new, token) = login(user, TICK * 4, TICK * 100);
    let created = create(h, new).await;
    h.time.advance(TICK * 2).await;
    let first = touch(h, &token).await.expect("expired too early");
    assert!(first.idle_expires_at > created.idle_expires_at, "not slid");
    assert!(first.last_activity > created.last_activity);
    h.time.advance(TICK * 3).await;
    // 5 ticks after login, past the original idle deadline of 4.
    let second = touch(h, &token).await.expect("slide was not kept");
    assert!(second.idle_expires_at > first.idle_expires_at);
}

/// A session a store handed out is a snapshot: later validations (which slide and flag
/// the stored record) do not change it under the caller, and vice versa.
pub async fn returned_sessions_are_snapshots(h: &SessionHarness) {
    let user = UserId::new();
    let (new, token) = login(user, TICK * 10, TICK * 100);
    create(h, new).await;
    let first = match h.store.touch(&token, Touch::default()).await.unwrap() {
        TouchOutcome::Valid(s) => s,
        other => panic!("{other:?}"),
    };
    let kept = Session::clone(&first);
    h.time.advance(TICK).await;
    let moved = Touch {
        ip: Some(ip("198.51.100.7")),
        ..Touch::default()
    };
    let second = match h.store.touch(&token, moved).await.unwrap() {
        TouchOutcome::Valid(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(*first, kept, "a held session changed under its holder");
    assert!(second.last_activity > first.last_activity);
    assert!(second.ip_changed && !first.ip_changed);
    drop(first);
    let third = touch(h, &token).await.unwrap();
    assert!(
        third.ip_changed,
        "the flag of the second validation was lost"
    );
    assert!(third.last_activity >= second.last_activity);
}

/// Sliding never passes the absolute deadline, and the session ends there.
pub async fn absolute_deadline_caps_sliding(h: &SessionHarness) {
    let user = UserId::new();
    let (new, token) = login(user, TICK * 4, TICK * 5);
    let created = create(h, new).await;
    h.time.advance(TICK * 3).await;
    let s = touch(h, &token).await.expect("expired too early");
    assert_eq!(
        s.idle_expires_at, created.expires_at,
        "slid past the absolute deadline"
    );
    h.time.advance(TICK * 3).await;
    assert!(
        touch(h, &token).await.is_none(),
        "returned past the absolute deadline"
    );
}

/// A remember-me session (longer idle timeout) keeps it when sliding; a short one dies.
pub async fn per_session_lifetimes_are_kept_when_sliding(h: &SessionHarness) {
    let user = UserId::new();
    let (short, short_token) = login(user, TICK * 2, TICK * 100);
    let (long, long_token) = login(user, TICK * 20, TICK * 200);
    create(h, short).await;
    create(h, long).await;
    h.time.advance(TICK).await;
    let s = touch(h, &long_token).await.unwrap();
    assert_eq!(s.idle_timeout, TICK * 20);
    assert_eq!(
        (s.idle_expires_at - s.last_activity).to_std().unwrap(),
        TICK * 20
    );
    h.time.advance(TICK * 3).await;
    assert!(touch(h, &short_token).await.is_none());
    let s = touch(h, &long_token)
        .await
        .expect("remember-me session died");
    assert_eq!(s.idle_timeout, TICK * 20);
}

/// After a rotation only the new token works, for the same session.
pub async fn rotate_invalidates_the_old_token(h: &SessionHarness) {
    let user = UserId::new();
    let (new, old) = login(user, TICK * 10, TICK * 100);
    let created = create(h, new).await;
    let next = SessionToken::generate(user, old.idle_timeout()).unwrap();
    let rotated = h
        .store
        .touch(
            &old,
            Touch {
                rotate_to: Some(next.hash()),
                ..Touch::default()
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(&rotated, TouchOutcome::Valid(s) if s.id == created.id),
        "{rotated:?}"
    );
    assert!(touch(h, &old).await.is_none(), "old token still valid");
    assert_eq!(touch(h, &next).await.unwrap().id, created.id);
}

/// Rotating onto a token hash that is in use fails and leaves both sessions as they were.
pub async fn rotate_to_an_existing_token_is_a_duplicate(h: &SessionHarness) {
    let user = UserId::new();
    let (a, ta) = login(user, TICK * 10, TICK * 100);
    let (b, tb) = login(user, TICK * 10, TICK * 100);
    create(h, a).await;
    create(h, b).await;
    let err = h
        .store
        .touch(
            &ta,
            Touch {
                rotate_to: Some(tb.hash()),
                ..Touch::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Duplicate), "{err:?}");
    assert!(touch(h, &ta).await.is_some() && touch(h, &tb).await.is_some());
}

/// A second record with the same id or token hash is refused.
pub async fn duplicate_ids_and_tokens_are_rejected(h: &SessionHarness) {
    let user = UserId::new();
    let (a, _) = login(user, TICK * 10, TICK * 100);
    let mut same_token = a.clone();
    same_token.session.id = SessionId::new();
    let (mut same_id, _) = login(user, TICK * 10, TICK * 100);
    same_id.session.id = a.session.id;
    create(h, a).await;
    for dup in [same_token, same_id] {
        let err = h.store.create(dup).await.unwrap_err();
        assert!(matches!(err, Error::Duplicate), "{err:?}");
    }
    assert_eq!(h.store.list(user).await.unwrap().len(), 1);
}

/// Updates need the current version and a live session.
pub async fn updates_are_conditional(h: &SessionHarness) {
    let user = UserId::new();
    let (new, token) = login(user, TICK * 10, TICK * 100);
    let mut s = create(h, new).await;
    s.roles.push("admin".into());
    s.mfa_verified = true;
    s.data.insert("step".into(), serde_json::json!(2));
    assert_eq!(h.store.update(&s).await.unwrap(), UpdateOutcome::Updated(2));
    let got = touch(h, &token).await.unwrap();
    assert!(got.has_role("admin") && got.mfa_verified);
    assert_eq!(got.data.get("step"), Some(&serde_json::json!(2)));
    assert_eq!(got.version, 2);
    // `s` still says version 1: a stale writer loses.
    assert_eq!(
        h.store.update(&s).await.unwrap(),
        UpdateOutcome::Conflict { current: 2 }
    );
    assert!(h.store.revoke(user, s.id).await.unwrap());
    let mut late = got;
    late.data.insert("late".into(), serde_json::json!(true));
    assert_eq!(
        h.store.update(&late).await.unwrap(),
        UpdateOutcome::NotFound
    );
    assert!(
        touch(h, &token).await.is_none(),
        "revoked session written back"
    );
    assert!(h.store.list(user).await.unwrap().is_empty());
}

/// Requests that loaded the session before a logout keep writing; none brings it back.
pub async fn logout_race_never_writes_back(h: &SessionHarness) {
    let user = UserId::new();
    let (new, token) = login(user, TICK * 20, TICK * 100);
    create(h, new).await;
    let loaded = touch(h, &token).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&h.store);
            let token = token.clone();
            let mut s = loaded.clone();
            tokio::spawn(async move {
                for n in 0..25 {
                    s.data.insert(format!("t{i}"), serde_json::json!(n));
                    let _ = store.update(&s).await.unwrap();
                    let _ = store.touch(&token, Touch::default()).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    tokio::task::yield_now().await;
    assert!(h.store.revoke(user, loaded.id).await.unwrap());
    // Writes that loaded the session before the revoke race the revoke right now.
    let mut stale = loaded.clone();
    stale.version = 1;
    assert_eq!(
        h.store.update(&stale).await.unwrap(),
        UpdateOutcome::NotFound
    );
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        touch(h, &token).await.is_none(),
        "written back after logout"
    );
    assert!(h.store.list(user).await.unwrap().is_empty());
    assert_eq!(
        h.store.update(&loaded).await.unwrap(),
        UpdateOutcome::NotFound
    );
}

/// Listing shows every device; revoke one, all but the current, all.
pub async fn list_and_revoke(h: &SessionHarness) {
    let user = UserId::new();
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    for i in 0..4 {
        let (mut new, token) = login(user, TICK * 10, TICK * 100);
        new.session.user_agent = Some(format!("agent-{i}"));
        ids.push(create(h, new).await.id);
        tokens.push(token);
        h.time.advance(Duration::from_millis(5)).await;
    }
    let listed = h.store.list(user).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        ids,
        "not oldest first"
    );
    assert_eq!(listed[2].user_agent.as_deref(), Some("agent-2"));
    assert_eq!(listed[0].ip, Some(ip("192.0.2.10")));
    assert_eq!(
        listed[0].location.as_ref().unwrap().city.as_deref(),
        Some("London")
    );

    assert!(h.store.revoke(user, ids[0]).await.unwrap());
    assert!(
        !h.store.revoke(user, ids[0]).await.unwrap(),
        "revoked twice"
    );
    assert!(!h.store.revoke(user, SessionId::new()).await.unwrap());
    assert!(touch(h, &tokens[0]).await.is_none());

    assert_eq!(h.store.revoke_all(user, Some(ids[2])).await.unwrap(), 2);
    let left = h.store.list(user).await.unwrap();
    assert_eq!(left.iter().map(|s| s.id).collect::<Vec<_>>(), vec![ids[2]]);
    assert!(touch(h, &tokens[1]).await.is_none() && touch(h, &tokens[3]).await.is_none());
    assert!(touch(h, &tokens[2]).await.is_some());

    assert_eq!(h.store.revoke_all(user, None).await.unwrap(), 1);
    assert!(h.store.list(user).await.unwrap().is_empty());
    assert!(touch(h, &tokens[2]).await.is_none());
}

/// Expired sessions leave the index: they are not listed and do not count against a limit.
pub async fn index_self_heals_after_expiry(h: &SessionHarness) {
    let user = UserId::new();
    for _ in 0..5 {
        create(h, login(user, TICK * 2, TICK * 100).0).await;
    }
    let (long, long_token) = login(user, TICK * 50, TICK * 100);
    create(h, long).await;
    assert_eq!(h.store.list(user).await.unwrap().len(), 6);
    h.time.advance(TICK * 3).await;
    assert_eq!(h.store.list(user).await.unwrap().len(), 1);
    let limit = SessionLimit {
        max: 3,
        policy: LimitPolicy::RejectNew,
    };
    for _ in 0..2 {
        let (mut new, _) = login(user, TICK * 50, TICK * 100);
        new.limit = Some(limit);
        create(h, new).await;
    }
    assert_eq!(h.store.list(user).await.unwrap().len(), 3);
    assert!(touch(h, &long_token).await.is_some());
}

/// Bumping the credential epoch kills every older session at its next validation;
/// sessions created afterwards work, until the next bump.
pub async fn epoch_bump_logs_out_everywhere(h: &SessionHarness) {
    let user = UserId::new();
    let other = UserId::new();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let (new, token) = login(user, TICK * 10, TICK * 100);
        create(h, new).await;
        tokens.push(token);
    }
    let (o, other_token) = login(other, TICK * 10, TICK * 100);
    create(h, o).await;
    h.store.bump_epoch(user).await.unwrap();
    for t in &tokens {
        assert!(
            touch(h, t).await.is_none(),
            "session survived the epoch bump"
        );
    }
    assert!(h.store.list(user).await.unwrap().is_empty());
    assert!(
        touch(h, &other_token).await.is_some(),
        "other user logged out"
    );

    let (new, fresh) = login(user, TICK * 10, TICK * 100);
    let created = create(h, new).await;
    assert!(
        touch(h, &fresh).await.is_some(),
        "session after the bump invalid"
    );
    h.store.bump_epoch(user).await.unwrap();
    assert!(touch(h, &fresh).await.is_none());
    let (new, third) = login(user, TICK * 10, TICK * 100);
    let third_session = create(h, new).await;
    assert!(third_session.credential_epoch >= created.credential_epoch);
    assert!(touch(h, &third).await.is_some());
}

/// Under `RejectNew` the login past the limit is refused and changes nothing.
pub async fn limit_reject_new(h: &SessionHarness) {
    let user = UserId::new();
    let limit = SessionLimit {
        max: 2,
        policy: LimitPolicy::RejectNew,
    };
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (mut new, token) = login(user, TICK * 10, TICK * 100);
        new.limit = Some(limit);
        create(h, new).await;
        tokens.push(token);
    }
    let (mut third, third_token) = login(user, TICK * 10, TICK * 100);
    third.limit = Some(limit);
    let outcome = h.store.create(third).await.unwrap();
    assert!(
        matches!(outcome, CreateOutcome::LimitReached { active: 2 }),
        "{outcome:?}"
    );
    assert!(touch(h, &third_token).await.is_none());
    for t in &tokens {
        assert!(touch(h, t).await.is_some());
    }
    h.store.revoke_all(user, None).await.unwrap();
    let (mut again, _) = login(user, TICK * 10, TICK * 100);
    again.limit = Some(limit);
    create(h, again).await;
}

/// Under `EvictOldest` the oldest session by creation makes room.
pub async fn limit_evict_oldest(h: &SessionHarness) {
    let user = UserId::new();
    let limit = SessionLimit {
        max: 2,
        policy: LimitPolicy::EvictOldest,
    };
    let mut made = Vec::new();
    for _ in 0..3 {
        let (mut new, token) = login(user, TICK * 10, TICK * 100);
        new.limit = Some(limit);
        match h.store.create(new).await.unwrap() {
            CreateOutcome::Created { session, evicted } => made.push((session.id, token, evicted)),
            other => panic!("{other:?}"),
        }
        h.time.advance(Duration::from_millis(5)).await;
    }
    assert!(made[0].2.is_empty() && made[1].2.is_empty());
    assert_eq!(made[2].2, vec![made[0].0], "did not evict the oldest");
    assert!(touch(h, &made[0].1).await.is_none());
    assert!(touch(h, &made[1].1).await.is_some() && touch(h, &made[2].1).await.is_some());
    assert_eq!(h.store.list(user).await.unwrap().len(), 2);
}

async fn race_logins(h: &SessionHarness, user: UserId, policy: LimitPolicy) -> usize {
    let limit = SessionLimit { max: 3, policy };
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = Arc::clone(&h.store);
            let (mut new, _) = login(user, TICK * 20, TICK * 100);
            new.limit = Some(limit);
            tokio::spawn(async move { store.create(new).await.unwrap() })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            CreateOutcome::Created { .. } => created += 1,
            CreateOutcome::LimitReached { active } => assert_eq!(active, 3),
        }
    }
    let live = h.store.list(user).await.unwrap();
    assert_eq!(live.len(), 3, "limit exceeded or undershot: {}", live.len());
    created
}

/// 50 concurrent logins against a limit of 3 (`RejectNew`): exactly 3 get in.
pub async fn concurrent_logins_never_exceed_the_limit(h: &SessionHarness) {
    assert_eq!(
        race_logins(h, UserId::new(), LimitPolicy::RejectNew).await,
        3
    );
}

/// 50 concurrent logins with `EvictOldest`: all get in, 3 remain.
pub async fn concurrent_logins_with_eviction_keep_the_limit(h: &SessionHarness) {
    assert_eq!(
        race_logins(h, UserId::new(), LimitPolicy::EvictOldest).await,
        50
    );
}

/// A validation from another address sets `ip_changed` (and it stays set).
pub async fn ip_change_is_flagged(h: &SessionHarness) {
    let user = UserId::new();
    let (new, token) = login(user, TICK * 10, TICK * 100);
    create(h, new).await;
    let at = |addr: &str| Touch {
        ip: Some(ip(addr)),
        ..Touch::default()
    };
    let same = h
        .store
        .touch(&token, at("::ffff:192.0.2.10"))
        .await
        .unwrap();
    assert!(
        matches!(&same, TouchOutcome::Valid(s) if !s.ip_changed),
        "{same:?}"
    );
    let moved = h.store.touch(&token, at("198.51.100.7")).await.unwrap();
    let TouchOutcome::Valid(moved) = moved else {
        panic!("{moved:?}")
    };
    assert!(moved.ip_changed);
    assert_eq!(moved.last_ip, Some(ip("198.51.100.7")));
    assert_eq!(moved.ip, Some(ip("192.0.2.10")));
    let back = touch(h, &token).await.unwrap();
    assert!(back.ip_changed, "flag was lost");
}

/// An empty fingerprint is no fingerprint: never a mismatch, and no grace for a refresh.
pub async fn empty_fingerprints_count_as_none(h: &SessionHarness) {
    let user = UserId::new();
    let (new, token) = login(user, TICK * 10, TICK * 100);
    create(h, new).await;
    let empty = Touch {
        fingerprint: Some(String::new()),
        binding: BindingPolicy::Reject,
        ..Touch::default()
    };
    let out = h.store.touch(&token, empty).await.unwrap();
    assert!(
        matches!(&out, TouchOutcome::Valid(s) if !s.device_mismatch),
        "{out:?}"
    );
    // A family whose previous token was used without a fingerprint grants no grace.
    let (_, _, r1) = family(h, user).await;
    let (req, _, _) = refresh_request(user, &r1, "", TICK * 10);
    assert!(matches!(
        h.store.refresh(req).await.unwrap(),
        RefreshOutcome::Rotated(_)
    ));
    let (req, _, _) = refresh_request(user, &r1, "", TICK * 10);
    let out = h.store.refresh(req).await.unwrap();
    assert!(matches!(out, RefreshOutcome::Reused), "{out:?}");
}

/// Ignore leaves the session alone, Flag marks it, Reject refuses and changes nothing.
pub async fn device_binding_policies(h: &SessionHarness) {
    let user = UserId::new();
    let (new, token) = login(user, TICK * 10, TICK * 100);
    let created = create(h, new).await;
    let with = |fp: &str, binding| Touch {
        fingerprint: Some(fp.into()),
        binding,
        ..Touch::default()
    };
    let rejected = h
        .store
        .touch(&token, with("fp-2", BindingPolicy::Reject))
        .await
        .unwrap();
    assert!(
        matches!(rejected, TouchOutcome::DeviceMismatch(id) if id == created.id),
        "{rejected:?}"
    );
    let ok = h
        .store
        .touch(&token, with("fp-1", BindingPolicy::Reject))
        .await
        .unwrap();
    assert!(
        matches!(&ok, TouchOutcome::Valid(s) if !s.device_mismatch),
        "{ok:?}"
    );
    let ignored = h
        .store
        .touch(&token, with("fp-2", BindingPolicy::Ignore))
        .await
        .unwrap();
    assert!(
        matches!(&ignored, TouchOutcome::Valid(s) if !s.device_mismatch),
        "{ignored:?}"
    );
    let flagged = h
        .store
        .touch(&token, with("fp-2", BindingPolicy::Flag))
        .await
        .unwrap();
    assert!(
        matches!(&flagged, TouchOutcome::Valid(s) if s.device_mismatch),
        "{flagged:?}"
    );
    assert!(
        touch(h, &token).await.unwrap().device_mismatch,
        "flag was lost"
    );
}

fn refresh_request(
    user: UserId,
    presented: &RefreshToken,
    fp: &str,
    grace: Duration,
) -> (RefreshRequest, RefreshToken, SessionToken) {
    let next_refresh = RefreshToken::generate(user, presented.idle_timeout()).unwrap();
    let next_session = SessionToken::generate(user, presented.idle_timeout()).unwrap();
    let req = RefreshRequest {
        user,
        presented: presented.hash(),
        next_refresh: next_refresh.hash(),
        next_session: next_session.hash(),
        fingerprint: Some(fp.into()),
        grace,
    };
    (req, next_refresh, next_session)
}

async fn family(h: &SessionHarness, user: UserId) -> (Session, SessionToken, RefreshToken) {
    let (new, token) = login(user, TICK * 20, TICK * 100);
    let session = create(h, new).await;
    let refresh = RefreshToken::generate(user, session.idle_timeout).unwrap();
    assert!(
        h.store
            .start_family(user, session.id, &refresh.hash())
            .await
            .unwrap()
            .is_some()
    );
    (session, token, refresh)
}

/// A refresh rotates both tokens; a used refresh token again revokes family and session.
pub async fn refresh_rotates_and_reuse_revokes_the_family(h: &SessionHarness) {
    let user = UserId::new();
    let (session, token, r1) = family(h, user).await;
    let (req, r2, s2) = refresh_request(user, &r1, "fp-1", Duration::ZERO);
    let out = h.store.refresh(req).await.unwrap();
    assert!(
        matches!(&out, RefreshOutcome::Rotated(s) if s.id == session.id),
        "{out:?}"
    );
    assert!(
        touch(h, &token).await.is_none(),
        "old session token still valid"
    );
    assert!(touch(h, &s2).await.is_some());
    // r1 again (a thief replaying it): the family dies, with the session.
    let (req, _, _) = refresh_request(user, &r1, "fp-9", Duration::ZERO);
    let out = h.store.refresh(req).await.unwrap();
    assert!(matches!(out, RefreshOutcome::Reused), "{out:?}");
    assert!(
        touch(h, &s2).await.is_none(),
        "session survived refresh reuse"
    );
    let (req, _, _) = refresh_request(user, &r2, "fp-1", Duration::ZERO);
    let out = h.store.refresh(req).await.unwrap();
    assert!(matches!(out, RefreshOutcome::Invalid), "{out:?}");
    let (req, _, _) = refresh_request(
        user,
        &RefreshToken::generate(user, TICK).unwrap(),
        "x",
        TICK,
    );
    assert!(matches!(
        h.store.refresh(req).await.unwrap(),
        RefreshOutcome::Invalid
    ));
}

/// Within the grace window the previous token is accepted from the same fingerprint
/// only, and nothing new is issued; after it, the same presentation is reuse.
pub async fn refresh_grace_covers_only_the_same_client(h: &SessionHarness) {
    let user = UserId::new();
    let (session, _, r1) = family(h, user).await;
    let (req, r2, _) = refresh_request(user, &r1, "fp-1", TICK * 5);
    assert!(matches!(
        h.store.refresh(req).await.unwrap(),
        RefreshOutcome::Rotated(_)
    ));
    let (req, _, unused) = refresh_request(user, &r1, "fp-1", TICK * 5);
    let out = h.store.refresh(req).await.unwrap();
    assert!(
        matches!(&out, RefreshOutcome::Grace(s) if s.id == session.id),
        "{out:?}"
    );
    assert!(
        touch(h, &unused).await.is_none(),
        "grace issued a session token"
    );
    // The current token still rotates normally.
    let (req, r3, _) = refresh_request(user, &r2, "fp-1", TICK * 5);
    assert!(matches!(
        h.store.refresh(req).await.unwrap(),
        RefreshOutcome::Rotated(_)
    ));
    // Another client presenting r2 within the grace window is still a reuse.
    let (req, _, _) = refresh_request(user, &r2, "fp-other", TICK * 5);
    assert!(matches!(
        h.store.refresh(req).await.unwrap(),
        RefreshOutcome::Reused
    ));
    let (req, _, _) = refresh_request(user, &r3, "fp-1", TICK * 5);
    assert!(matches!(
        h.store.refresh(req).await.unwrap(),
        RefreshOutcome::Invalid
    ));

    // Past the window the same client's replay is reuse too.
    let (_, _, r1) = family(h, user).await;
    let (req, _, _) = refresh_request(user, &r1, "fp-1", TICK);
    assert!(matches!(
        h.store.refresh(req).await.unwrap(),
        RefreshOutcome::Rotated(_)
    ));
    h.time.advance(TICK * 2).await;
    let (req, _, _) = refresh_request(user, &r1, "fp-1", TICK);
    assert!(matches!(
        h.store.refresh(req).await.unwrap(),
        RefreshOutcome::Reused
    ));
}

/// A thief's replay of a used token races the owner's refresh of the current one: at most
/// one refresh wins, the replay is detected, and afterwards nothing of the family works.
pub async fn refresh_reuse_under_concurrency_revokes_the_family(h: &SessionHarness) {
    let user = UserId::new();
    let (_, _, r1) = family(h, user).await;
    let (req, r2, _) = refresh_request(user, &r1, "owner", Duration::ZERO);
    assert!(matches!(
        h.store.refresh(req).await.unwrap(),
        RefreshOutcome::Rotated(_)
    ));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&h.store);
            let presented = if i % 2 == 0 { r1.clone() } else { r2.clone() };
            let (req, next, session) = refresh_request(user, &presented, "owner", Duration::ZERO);
            tokio::spawn(async move { (store.refresh(req).await.unwrap(), next, session) })
        })
        .collect();
    let mut rotated = Vec::new();
    let mut reused = 0;
    for t in tasks {
        match t.await.unwrap() {
            (RefreshOutcome::Rotated(_), next, session) => rotated.push((next, session)),
            (RefreshOutcome::Reused, _, _) => reused += 1,
            (RefreshOutcome::Invalid, _, _) => {}
            (other, _, _) => panic!("{other:?}"),
        }
    }
    assert!(rotated.len() <= 1, "{} refreshes won", rotated.len());
    assert!(reused >= 1, "reuse not detected");
    for (next, session) in rotated {
        assert!(
            touch(h, &session).await.is_none(),
            "winner's session survived"
        );
        let (req, _, _) = refresh_request(user, &next, "owner", Duration::ZERO);
        assert!(matches!(
            h.store.refresh(req).await.unwrap(),
            RefreshOutcome::Invalid
        ));
    }
    assert!(h.store.list(user).await.unwrap().is_empty());
}

/// A family cannot start on a dead session, and dies with its session.
pub async fn families_need_a_live_session(h: &SessionHarness) {
    let user = UserId::new();
    let r = RefreshToken::generate(user, TICK).unwrap();
    assert!(
        h.store
            .start_family(user, SessionId::new(), &r.hash())
            .await
            .unwrap()
            .is_none()
    );
    let (session, _, r1) = family(h, user).await;
    let err = h
        .store
        .start_family(user, session.id, &r1.hash())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Duplicate), "{err:?}");
    assert!(h.store.revoke(user, session.id).await.unwrap());
    let (req, _, _) = refresh_request(user, &r1, "fp-1", Duration::ZERO);
    assert!(matches!(
        h.store.refresh(req).await.unwrap(),
        RefreshOutcome::Invalid
    ));
}

/// One user's tokens, revocations and epochs never touch another user's sessions.
pub async fn users_are_isolated(h: &SessionHarness) {
    let (a, b) = (UserId::new(), UserId::new());
    let (na, ta) = login(a, TICK * 10, TICK * 100);
    let (nb, tb) = login(b, TICK * 10, TICK * 100);
    let sa = create(h, na).await;
    create(h, nb).await;
    let cross = h
        .store
        .touch(&edit_token(&ta, Some(b), None), Touch::default())
        .await
        .unwrap();
    assert!(matches!(cross, TouchOutcome::Invalid), "{cross:?}");
    assert!(!h.store.revoke(b, sa.id).await.unwrap());
    assert_eq!(h.store.revoke_all(b, None).await.unwrap(), 1);
    assert!(touch(h, &ta).await.is_some() && touch(h, &tb).await.is_none());
    let ids: HashSet<SessionId> = h
        .store
        .list(a)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, HashSet::from([sa.id]));
}
