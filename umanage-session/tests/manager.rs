//! The session manager over the memory store and the live Redis.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements,
    clippy::many_single_char_names
)]

use std::sync::Arc;
use std::time::Duration;

use umanage_core::testkit::{self, TimeControl};
use umanage_core::{ManualClock, RequestContext, UserId};
use umanage_session::{
    BindingPolicy, ClientInfo, LimitPolicy, Login, LoginOutcome, MemorySessionStore,
    RedisSessionStore, Refreshed, Session, SessionConfig, SessionManager, SessionStore,
    SessionToken, UpdateOutcome, Validation,
};

struct Env {
    store: Arc<dyn SessionStore>,
    time: TimeControl,
    _guard: Option<testkit::TestRedis>,
}

fn memory() -> Env {
    let clock = ManualClock::default();
    Env {
        store: Arc::new(MemorySessionStore::with_clock(clock.shared())),
        time: TimeControl::Manual(clock),
        _guard: None,
    }
}

async fn redis() -> Option<Env> {
    let ns = testkit::redis().await?;
    Some(Env {
        store: Arc::new(RedisSessionStore::new(ns.connection().clone())),
        time: TimeControl::Real,
        _guard: Some(ns),
    })
}

const TICK: Duration = Duration::from_millis(300);

fn config() -> umanage_session::SessionConfigBuilder {
    SessionConfig::builder()
        .idle_timeout(TICK * 4)
        .absolute_lifetime(TICK * 40)
        .remember_me(TICK * 20, TICK * 80)
        .refresh_grace(TICK * 2)
}

fn client(ua: &str) -> ClientInfo {
    ClientInfo::new(
        RequestContext::new()
            .with_user_agent(ua)
            .with_client_ip("203.0.113.9".parse().unwrap())
            .with_device_id("dev-1"),
    )
    .with_header("accept-language", "en-GB")
}

async fn login(m: &SessionManager, l: Login, c: &ClientInfo) -> (Session, SessionToken) {
    match m.login(l, c).await.unwrap() {
        LoginOutcome::Created { session, token, .. } => (Session::clone(&session), token),
        other => panic!("{other:?}"),
    }
}

async fn valid(m: &SessionManager, t: &SessionToken, c: &ClientInfo) -> Option<Session> {
    match m.validate(t, c).await.unwrap() {
        Validation::Valid(s) => Some(Session::clone(&s)),
        Validation::Invalid => None,
        other => panic!("{other:?}"),
    }
}

macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {
        mod memory_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::memory()).await;
                }
            )+
        }
        mod redis_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(env) = super::redis().await else { return };
                    super::$name(env).await;
                }
            )+
        }
    };
}

on_both!(
    login_records_the_client_and_validates,
    remember_me_gets_the_longer_lifetime,
    rotate_and_elevate_invalidate_the_old_token,
    login_revokes_a_planted_token,
    refresh_rotates_and_replay_revokes,
    refresh_replay_race,
    binding_reject_and_flag,
    limit_and_device_management,
    logout_everywhere_and_logout_race,
);

async fn login_records_the_client_and_validates(env: Env) {
    let m = SessionManager::new(env.store, config().build().unwrap());
    let c = client("Firefox");
    let user = UserId::new();
    let mut l = Login::new(user, "alice").with_roles(["user"]);
    l.email = Some("a@example.com".into());
    let (s, token) = login(&m, l, &c).await;
    assert_eq!(s.ip, Some("203.0.113.9".parse().unwrap()));
    assert_eq!(s.user_agent.as_deref(), Some("Firefox"));
    assert_eq!(s.device_id.as_deref(), Some("dev-1"));
    assert_eq!(s.fingerprint, m.config().fingerprint().fingerprint(&c));
    assert_eq!(s.idle_timeout, TICK * 4);
    let v = valid(&m, &token, &c).await.unwrap();
    assert_eq!(v.id, s.id);
    assert!(!v.device_mismatch && !v.ip_changed);
    env.time.advance(TICK * 5).await;
    assert!(
        valid(&m, &token, &c).await.is_none(),
        "idle session accepted"
    );
}

async fn remember_me_gets_the_longer_lifetime(env: Env) {
    let m = SessionManager::new(env.store, config().build().unwrap());
    let c = client("Firefox");
    let user = UserId::new();
    let (_, short) = login(&m, Login::new(user, "a"), &c).await;
    let (s, long) = login(&m, Login::new(user, "a").remember_me(true), &c).await;
    assert_eq!(s.idle_timeout, TICK * 20);
    assert_eq!((s.expires_at - s.created_at).to_std().unwrap(), TICK * 80);
    env.time.advance(TICK * 5).await;
    assert!(valid(&m, &short, &c).await.is_none());
    assert_eq!(valid(&m, &long, &c).await.unwrap().idle_timeout, TICK * 20);
}

async fn rotate_and_elevate_invalidate_the_old_token(env: Env) {
    let m = SessionManager::new(env.store, config().build().unwrap());
    let c = client("Firefox");
    let (s, t1) = login(&m, Login::new(UserId::new(), "a"), &c).await;
    let (rotated, t2) = m.rotate(&t1, &c).await.unwrap().unwrap();
    assert_eq!(rotated.id, s.id);
    assert!(
        valid(&m, &t1, &c).await.is_none(),
        "old token valid after rotate"
    );
    assert!(m.rotate(&t1, &c).await.unwrap().is_none());
    let (up, t3) = m
        .elevate(&t2, &c, |s| {
            s.mfa_verified = true;
            s.roles.push("admin".into());
        })
        .await
        .unwrap()
        .unwrap();
    assert!(up.mfa_verified && up.has_role("admin"));
    assert!(
        valid(&m, &t2, &c).await.is_none(),
        "pre-step-up token still valid"
    );
    let now = valid(&m, &t3, &c).await.unwrap();
    assert!(now.mfa_verified && now.has_role("admin"));
}

async fn login_revokes_a_planted_token(env: Env) {
    let m = SessionManager::new(env.store, config().build().unwrap());
    let c = client("Firefox");
    let user = UserId::new();
    // An attacker logged in as themselves and planted their token in the victim's browser.
    let (_, planted) = login(&m, Login::new(user, "a"), &c).await;
    let (_, fresh) = login(&m, Login::new(user, "a").replacing(planted.clone()), &c).await;
    assert!(
        valid(&m, &planted, &c).await.is_none(),
        "planted token survived login"
    );
    assert!(valid(&m, &fresh, &c).await.is_some());
    assert_eq!(m.list(user).await.unwrap().len(), 1);
}

async fn refresh_rotates_and_replay_revokes(env: Env) {
    let m = SessionManager::new(env.store, config().build().unwrap());
    let c = client("Firefox");
    let (s, t1) = login(&m, Login::new(UserId::new(), "a"), &c).await;
    let r1 = m.issue_refresh(&s).await.unwrap().unwrap();
    let Refreshed::Rotated {
        token: t2,
        refresh: r2,
        ..
    } = m.refresh(&r1, &c).await.unwrap()
    else {
        panic!("not rotated")
    };
    assert!(valid(&m, &t1, &c).await.is_none());
    assert!(valid(&m, &t2, &c).await.is_some());
    // Same client, parallel request within the grace window.
    assert!(matches!(
        m.refresh(&r1, &c).await.unwrap(),
        Refreshed::Grace(_)
    ));
    // Another device replays r1: reuse.
    let thief = client("curl/8");
    assert!(matches!(
        m.refresh(&r1, &thief).await.unwrap(),
        Refreshed::Reused
    ));
    assert!(valid(&m, &t2, &c).await.is_none(), "session survived reuse");
    assert!(matches!(
        m.refresh(&r2, &c).await.unwrap(),
        Refreshed::Invalid
    ));
}

async fn refresh_replay_race(env: Env) {
    let m = Arc::new(SessionManager::new(
        env.store,
        config().refresh_grace(Duration::ZERO).build().unwrap(),
    ));
    let c = client("Firefox");
    let (s, _) = login(&m, Login::new(UserId::new(), "a"), &c).await;
    let r1 = m.issue_refresh(&s).await.unwrap().unwrap();
    let Refreshed::Rotated { refresh: r2, .. } = m.refresh(&r1, &c).await.unwrap() else {
        panic!()
    };
    // The owner refreshes r2 while a thief replays r1, many times over, concurrently.
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let m = Arc::clone(&m);
            let (tok, who) = if i % 2 == 0 {
                (r2.clone(), client("Firefox"))
            } else {
                (r1.clone(), client("thief"))
            };
            tokio::spawn(async move { m.refresh(&tok, &who).await.unwrap() })
        })
        .collect();
    let mut winners = Vec::new();
    let mut reused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Refreshed::Rotated { token, refresh, .. } => winners.push((token, refresh)),
            Refreshed::Reused => reused += 1,
            Refreshed::Invalid => {}
            other => panic!("grace is off: {other:?}"),
        }
    }
    assert!(winners.len() <= 1, "{} winners", winners.len());
    assert!(reused >= 1);
    for (token, refresh) in &winners {
        assert!(
            valid(&m, token, &c).await.is_none(),
            "family survived the replay"
        );
        assert!(matches!(
            m.refresh(refresh, &c).await.unwrap(),
            Refreshed::Invalid
        ));
    }
    assert!(m.list(s.user_id).await.unwrap().is_empty());
}

async fn binding_reject_and_flag(env: Env) {
    let reject = SessionManager::new(
        Arc::clone(&env.store),
        config().binding(BindingPolicy::Reject).build().unwrap(),
    );
    let flag = SessionManager::new(env.store, config().build().unwrap());
    let home = client("Firefox");
    let other = client("Chrome").with_header("accept-language", "ru");
    let (_, t) = login(&reject, Login::new(UserId::new(), "a"), &home).await;
    assert!(matches!(
        reject.validate(&t, &other).await.unwrap(),
        Validation::DeviceMismatch
    ));
    assert!(valid(&reject, &t, &home).await.is_some());
    let s = valid(&flag, &t, &other).await.unwrap();
    assert!(s.device_mismatch);
    let moved = ClientInfo::new(
        RequestContext::new()
            .with_user_agent("Firefox")
            .with_client_ip("198.51.100.1".parse().unwrap())
            .with_device_id("dev-1"),
    )
    .with_header("accept-language", "en-GB");
    let s = valid(&reject, &t, &moved).await.unwrap();
    assert!(s.ip_changed, "IP change not flagged");
}

async fn limit_and_device_management(env: Env) {
    let m = SessionManager::new(
        Arc::clone(&env.store),
        config().limit(2, LimitPolicy::RejectNew).build().unwrap(),
    );
    let user = UserId::new();
    let (a, ta) = login(&m, Login::new(user, "a"), &client("A")).await;
    env.time.advance(Duration::from_millis(5)).await;
    let (_, tb) = login(&m, Login::new(user, "a"), &client("B")).await;
    assert!(matches!(
        m.login(Login::new(user, "a"), &client("C")).await.unwrap(),
        LoginOutcome::LimitReached { active: 2 }
    ));
    let devices = m.list(user).await.unwrap();
    let agents: Vec<_> = devices
        .iter()
        .map(|s| s.user_agent.clone().unwrap())
        .collect();
    assert_eq!(agents, ["A", "B"]);
    assert_eq!(m.revoke_others(&a).await.unwrap(), 1);
    assert!(valid(&m, &tb, &client("B")).await.is_none());
    assert!(valid(&m, &ta, &client("A")).await.is_some());
    assert!(m.logout(&a).await.unwrap());
    assert!(valid(&m, &ta, &client("A")).await.is_none());
}

async fn logout_everywhere_and_logout_race(env: Env) {
    let m = SessionManager::new(env.store, config().build().unwrap());
    let c = client("Firefox");
    let user = UserId::new();
    let (_, t1) = login(&m, Login::new(user, "a"), &c).await;
    let (_, t2) = login(&m, Login::new(user, "a"), &c).await;
    let mut loaded = valid(&m, &t1, &c).await.unwrap();
    m.logout_everywhere(user).await.unwrap();
    assert!(valid(&m, &t1, &c).await.is_none() && valid(&m, &t2, &c).await.is_none());
    // A request that loaded the session before the logout tries to save it.
    loaded
        .data
        .insert("cart".into(), serde_json::json!(["book"]));
    assert_eq!(m.save(&loaded).await.unwrap(), UpdateOutcome::NotFound);
    assert!(valid(&m, &t1, &c).await.is_none());
    let (_, t3) = login(&m, Login::new(user, "a"), &c).await;
    assert!(valid(&m, &t3, &c).await.is_some());
}
