//! The axum extractor: bearer and cookie tokens, 401 problem+json, and 503 while Redis is
//! down followed by automatic recovery (against a private redis-server this test starts).

#![cfg(feature = "axum")]
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use tower::ServiceExt as _;
use umanage_core::redis::RedisConfig;
use umanage_core::{RequestContext, UserId};
use umanage_session::web::{CookieConfig, CurrentSession, SameSite, SessionAuth};
use umanage_session::{
    BindingPolicy, Login, LoginOutcome, MemorySessionStore, RedisSessionStore, SessionConfig,
    SessionManager, SessionStore, SessionToken,
};

async fn me(CurrentSession { session, .. }: CurrentSession) -> String {
    session.username.clone()
}

fn app(auth: SessionAuth) -> Router {
    Router::new().route("/me", get(me)).with_state(auth)
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn get_me() -> http::request::Builder {
    Request::builder()
        .uri("/me")
        .header(header::USER_AGENT, "Firefox")
}

async fn login(m: &SessionManager) -> SessionToken {
    let client = umanage_session::ClientInfo::new(RequestContext::new().with_user_agent("Firefox"));
    match m
        .login(Login::new(UserId::new(), "alice"), &client)
        .await
        .unwrap()
    {
        LoginOutcome::Created { token, .. } => token,
        other => panic!("{other:?}"),
    }
}

fn memory_auth(binding: BindingPolicy) -> SessionAuth {
    let cfg = SessionConfig::builder().binding(binding).build().unwrap();
    SessionAuth::new(Arc::new(SessionManager::new(
        Arc::new(MemorySessionStore::new()),
        cfg,
    )))
}

#[tokio::test]
async fn bearer_and_cookie_tokens_reach_the_handler() {
    let auth = memory_auth(BindingPolicy::Flag);
    let token = login(auth.manager()).await;
    let app = app(auth.clone());

    let bearer = get_me()
        .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, bearer).await.0, StatusCode::OK);

    let cookie = get_me()
        .header(
            header::COOKIE,
            format!("theme=dark; umanage_session={}", token.expose()),
        )
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(&app, cookie).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));
}

#[tokio::test]
async fn missing_and_bad_tokens_are_401_problem_json() {
    let auth = memory_auth(BindingPolicy::Reject);
    let token = login(auth.manager()).await;
    let app = app(auth);
    let unknown =
        SessionToken::generate(UserId::new(), std::time::Duration::from_secs(60)).unwrap();
    let cases = [
        get_me().body(Body::empty()).unwrap(),
        get_me()
            .header(header::AUTHORIZATION, "Bearer not-a-token")
            .body(Body::empty())
            .unwrap(),
        get_me()
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", unknown.expose()),
            )
            .body(Body::empty())
            .unwrap(),
        // Right token, other device (binding policy Reject).
        Request::builder()
            .uri("/me")
            .header(header::USER_AGENT, "curl/8")
            .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))
            .body(Body::empty())
            .unwrap(),
    ];
    for req in cases {
        let (status, headers, body) = call(&app, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], 401);
        assert!(!body.contains(token.expose()));
    }
}

#[test]
fn cookies_are_secure_by_default_and_configurable() {
    let token = SessionToken::generate(UserId::new(), std::time::Duration::from_secs(60)).unwrap();
    let v = CookieConfig::default().set_cookie(&token, None).unwrap();
    let v = v.to_str().unwrap();
    assert!(v.starts_with(&format!("umanage_session={}", token.expose())));
    for attr in ["; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/"] {
        assert!(v.contains(attr), "{v}");
    }
    let custom = CookieConfig {
        name: "sid".into(),
        secure: false,
        same_site: SameSite::Strict,
        ..CookieConfig::default()
    };
    let v = custom
        .set_cookie(&token, Some(Duration::from_secs(60)))
        .unwrap();
    let v = v.to_str().unwrap();
    assert!(v.starts_with("sid=") && v.contains("SameSite=Strict") && v.contains("Max-Age=60"));
    assert!(!v.contains("Secure"));
    assert!(
        custom
            .removal()
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let bad = CookieConfig {
        name: "a\nb".into(),
        ..CookieConfig::default()
    };
    assert!(bad.set_cookie(&token, None).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_503_and_recovers_by_itself() {
    let Some(mut server) = umanage_core::testkit::RedisServer::start().await else {
        return;
    };
    let conn = RedisConfig::builder(server.url())
        .key_prefix("umanage-axum-test")
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .reconnect_attempts(1)
        .build()
        .unwrap()
        .connect()
        .await
        .unwrap();
    let store: Arc<dyn SessionStore> = Arc::new(RedisSessionStore::new(conn));
    let manager = Arc::new(SessionManager::new(store, SessionConfig::default()));
    let app = app(SessionAuth::new(Arc::clone(&manager)));
    let token = login(&manager).await;
    let req = || {
        get_me()
            .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(call(&app, req()).await.0, StatusCode::OK);

    server.stop();
    let (status, headers, body) = call(&app, req()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    let client = umanage_session::ClientInfo::default();
    let err = manager.validate(&token, &client).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    // Redis comes back (empty: no persistence): requests work again without any restart
    // of ours; the old session is gone, so it is a 401, and a new login succeeds.
    server.restart().await;
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = call(&app, req()).await.0;
        if status != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED, "did not recover");
    // Each of the connection's multiplexed connections reconnects on its own: one that
    // answered does not mean the next command's has; a login may still see one that is
    // coming back (unavailable), never anything else.
    let client = umanage_session::ClientInfo::new(RequestContext::new().with_user_agent("Firefox"));
    let mut fresh = None;
    for _ in 0..50 {
        match manager
            .login(Login::new(UserId::new(), "alice"), &client)
            .await
        {
            Ok(LoginOutcome::Created { token, .. }) => {
                fresh = Some(token);
                break;
            }
            Err(e) if e.is_unavailable() => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("{other:?}"),
        }
    }
    let fresh = fresh.expect("logins did not recover");
    let ok = get_me()
        .header(header::AUTHORIZATION, format!("Bearer {}", fresh.expose()))
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, ok).await.0, StatusCode::OK);
    drop(server);
}
