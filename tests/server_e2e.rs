//! End-to-end tests of `examples/server`: the real router on an ephemeral port, driven over
//! TCP by a small HTTP/1.1 client, in memory and on Redis + Postgres.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements,
    dead_code
)]

#[path = "../examples/server/app/mod.rs"]
mod app;
#[path = "../examples/server/config.rs"]
mod config;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use umanage::core::{SharedClock, SystemClock};
use umanage::password::HasherConfig;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The status, with the body in the failure message.
    #[track_caller]
    fn assert_status(&self, status: u16) {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
    }

    /// The bearer token of a login reply.
    #[track_caller]
    fn token(&self) -> String {
        self.json()["token"].as_str().unwrap().to_owned()
    }

    /// The `code` of every violation of a 422 reply.
    #[track_caller]
    fn violation_codes(&self) -> Vec<String> {
        self.json()["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["code"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A problem response: the right media type and a stable code.
    #[track_caller]
    fn assert_problem(&self, status: u16, code: &str) {
        self.assert_status(status);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["status"], status);
        assert_eq!(body["type"], format!("urn:umanage:problem:{code}"));
    }
}

struct Server {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// Ends with the audit shutdown's result (flush, last checkpoint).
    task: tokio::task::JoinHandle<Result<String, String>>,
}

impl Server {
    async fn start(stores: app::Stores) -> Self {
        let mut settings = app::Settings::defaults().unwrap();
        settings.logins_per_minute = 12;
        settings.max_body_bytes = 8 * 1024;
        Self::start_with(stores, settings).await
    }

    /// A server with `settings`, but cheap hashing (everything else as given).
    async fn start_with(stores: app::Stores, settings: app::Settings) -> Self {
        Self::start_inner(stores, settings, true).await
    }

    /// A server over stores another server already used (the admin exists).
    async fn restart_with(stores: app::Stores, settings: app::Settings) -> Self {
        Self::start_inner(stores, settings, false).await
    }

    async fn start_inner(stores: app::Stores, mut settings: app::Settings, fresh: bool) -> Self {
        let clock: SharedClock = Arc::new(SystemClock);
        settings.hasher = HasherConfig::builder()
            .m_cost_kib(256)
            .t_cost(1)
            .p_cost(1)
            .build()
            .unwrap();
        let built = app::build(settings, stores, clock).unwrap();
        assert_eq!(
            app::bootstrap_admin(&built.state, "root", "root@example.com", ADMIN_PASSWORD)
                .await
                .unwrap(),
            fresh
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let audit = built.audit;
        let service = built
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            axum::serve(listener, service)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            audit.finish().await
        });
        Self {
            addr,
            shutdown: Some(tx),
            task,
        }
    }

    /// Graceful shutdown; the audit flush and the last checkpoint must succeed.
    async fn stop(self) {
        self.stop_with_audit().await.unwrap();
    }

    /// Graceful shutdown, returning how the audit shutdown went.
    async fn stop_with_audit(mut self) -> Result<String, String> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap()
    }

    async fn raw(&self, request: &[u8]) -> Reply {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.unwrap();
        parse_reply(&buf)
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nUser-Agent: e2e\r\n"
        );
        if let Some(t) = token {
            let _ = write!(req, "Authorization: Bearer {t}\r\n");
        }
        for (k, v) in extra {
            let _ = write!(req, "{k}: {v}\r\n");
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() || method != "GET" {
            if !extra
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                req.push_str("Content-Type: application/json\r\n");
            }
            let _ = write!(req, "Content-Length: {}\r\n", body.len());
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes).await
    }

    async fn json(&self, method: &str, path: &str, token: Option<&str>, body: &Value) -> Reply {
        let body = body.to_string();
        self.send(method, path, token, Some(body.as_bytes()), &[])
            .await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send("GET", path, token, None, &[]).await
    }

    async fn login(&self, login: &str, password: &str) -> Reply {
        self.json(
            "POST",
            "/v1/sessions",
            None,
            &json!({"login": login, "password": password}),
        )
        .await
    }

    /// A login through a proxy that forwards for `xff`.
    async fn login_from(&self, login: &str, password: &str, xff: &str) -> Reply {
        let body = json!({"login": login, "password": password}).to_string();
        self.send(
            "POST",
            "/v1/sessions",
            None,
            Some(body.as_bytes()),
            &[
                ("Content-Type", "application/json"),
                ("X-Forwarded-For", xff),
            ],
        )
        .await
    }

    async fn register(&self, username: &str, email: &str, password: &str) -> Reply {
        let body = json!({"username": username, "email": email, "password": password});
        self.json("POST", "/v1/users", None, &body).await
    }

    async fn change_password(&self, token: &str, current: &str, new: &str) -> Reply {
        let body = json!({"current_password": current, "new_password": new});
        self.json("PUT", "/v1/me/password", Some(token), &body)
            .await
    }

    async fn delete(&self, path: &str, token: &str) -> Reply {
        self.send("DELETE", path, Some(token), None, &[]).await
    }
}

fn parse_reply(buf: &[u8]) -> Reply {
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = std::str::from_utf8(&buf[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let raw = &buf[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().trim(), 16).unwrap();
        raw = &raw[end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

const GOOD: &str = "correct horse battery staple 7";
/// Passes both nist() and enterprise() (two of each class, score 3).
const ADMIN_PASSWORD: &str = "Admin Passphrase 42 Zebra!!";
const NEWER: &str = "purple elephant juggling tuesday 9";

/// The whole journey of the issue, on any backends.
async fn journey(stores: app::Stores) {
    let server = Server::start(stores).await;

    // Health, and the headers every response carries.
    let r = server
        .send(
            "GET",
            "/healthz",
            None,
            None,
            &[("X-Request-Id", "req-123")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("req-123"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(r.header("ratelimit-policy").is_some());
    let r = server.get("/readyz", None).await;
    r.assert_status(200);

    // Register: weak password -> every violation at once.
    let r = server.register("alice", "alice@example.com", "alice").await;
    r.assert_problem(422, "validation_failed");
    let codes = r.violation_codes();
    assert!(codes.contains(&"too_short".to_owned()), "{codes:?}");
    assert!(codes.len() >= 2, "{codes:?}");

    let r = server.register("alice", "Alice@Example.com", GOOD).await;
    r.assert_status(201);
    let user = r.json();
    assert_eq!(user["username"], "alice");
    assert_eq!(user["email"], "Alice@example.com");
    let user_id = user["id"].as_str().unwrap().to_owned();

    // Taken, case-insensitively.
    let r = server.register("ALICE", "other@example.com", GOOD).await;
    r.assert_problem(409, "username_taken");
    let r = server.register("alice2", "alice@EXAMPLE.com", GOOD).await;
    r.assert_problem(409, "email_taken");

    // Wrong password and unknown user: the same 401 body.
    let wrong = server.login("alice", "not the password at all").await;
    let unknown = server.login("nobody", "not the password at all").await;
    wrong.assert_problem(401, "invalid_credentials");
    unknown.assert_problem(401, "invalid_credentials");
    assert_eq!(wrong.body, unknown.body);

    // Login by username, then by email (a second device).
    let r = server.login("alice", GOOD).await;
    r.assert_status(201);
    let cookie = r.header("set-cookie").unwrap().to_owned();
    assert!(cookie.starts_with("umanage_session="));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    let first = r.json();
    let token = first["token"].as_str().unwrap().to_owned();
    assert!(first["session"]["expires_at"].is_string());
    assert!(first["session"]["idle_expires_at"].is_string());
    let r = server.login("ALICE@example.com", GOOD).await;
    assert_eq!(r.status, 201);
    let second = r.token();

    // Me: bearer, and the cookie.
    let r = server.get("/v1/me", Some(&token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], user_id.as_str());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let cookie_pair = cookie.split(';').next().unwrap();
    let r = server
        .send("GET", "/v1/me", None, None, &[("Cookie", cookie_pair)])
        .await;
    assert_eq!(r.status, 200);
    server
        .get("/v1/me", None)
        .await
        .assert_problem(401, "unauthenticated");
    server
        .get("/v1/me", Some("garbage-token"))
        .await
        .assert_problem(401, "unauthenticated");

    // Sessions: both listed, the current one marked.
    let r = server.get("/v1/sessions", Some(&token)).await;
    assert_eq!(r.status, 200);
    let list = r.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    assert_eq!(list[0]["user_agent"], "e2e");

    // Strength meter.
    let r = server
        .json(
            "POST",
            "/v1/password/strength",
            None,
            &json!({"password": "password1", "username": "alice"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let meter = r.json();
    assert!(meter["score"].as_u64().unwrap() <= 1);
    assert!(!meter["violations"].as_array().unwrap().is_empty());

    // Change password: wrong current -> 401, weak -> 422, reuse -> 422, ok -> 204.
    let r = server
        .change_password(&token, "wrong wrong wrong", NEWER)
        .await;
    r.assert_problem(401, "invalid_credentials");
    let r = server.change_password(&token, GOOD, "short").await;
    r.assert_problem(422, "validation_failed");
    let r = server.change_password(&token, GOOD, GOOD).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.json()["violations"][0]["code"], "password_reused");
    let r = server.change_password(&token, GOOD, NEWER).await;
    r.assert_status(204);
    // The other session is gone, this one lives.
    server
        .get("/v1/me", Some(&second))
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(server.get("/v1/me", Some(&token)).await.status, 200);
    server
        .login("alice", GOOD)
        .await
        .assert_problem(401, "invalid_credentials");
    let r = server.login("alice", NEWER).await;
    assert_eq!(r.status, 201);
    let third = r.json();
    // History comes from the credential store: the previous password is refused too.
    let r = server.change_password(&token, NEWER, GOOD).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.json()["violations"][0]["code"], "password_reused");
    let third_token = third["token"].as_str().unwrap().to_owned();
    let third_id = third["session"]["id"].as_str().unwrap().to_owned();

    // Revoke a session by id, then log out.
    let r = server
        .delete(&format!("/v1/sessions/{third_id}"), &token)
        .await;
    assert_eq!(r.status, 204);
    server
        .get("/v1/me", Some(&third_token))
        .await
        .assert_problem(401, "unauthenticated");
    let r = server.delete("/v1/sessions/not-a-uuid", &token).await;
    r.assert_problem(404, "not_found");
    let r = server.delete("/v1/sessions/current", &token).await;
    assert_eq!(r.status, 204);
    server
        .get("/v1/me", Some(&token))
        .await
        .assert_problem(401, "unauthenticated");

    // Admin: alice is not one; root is.
    let r = server.login("alice", NEWER).await;
    let alice = r.token();
    server
        .get("/v1/admin/audit", Some(&alice))
        .await
        .assert_problem(403, "forbidden");
    let r = server.login("root", ADMIN_PASSWORD).await;
    assert_eq!(r.status, 201);
    let root = r.token();
    let r = server
        .get(
            &format!("/v1/admin/audit?actor={user_id}&type=auth.login.success"),
            Some(&root),
        )
        .await;
    r.assert_status(200);
    let events = r.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["event"]["event_type"] == "auth.login.success"),
        "{events:?}"
    );
    let r = server.get("/v1/admin/audit?limit=2", Some(&root)).await;
    let page = r.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let r = server
        .get(
            &format!("/v1/admin/audit?limit=2&cursor={cursor}"),
            Some(&root),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_ne!(r.json()["events"][0], page["events"][0]);
    server
        .get("/v1/admin/audit?limit=nope", Some(&root))
        .await
        .assert_problem(400, "invalid_query");
    let r = server.get("/v1/admin/audit/verify", Some(&root)).await;
    assert_eq!(r.status, 200);
    let verify = r.json();
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["checked"].as_u64().unwrap() > 10);
    let r = server
        .get(&format!("/v1/admin/users/{user_id}/sessions"), Some(&root))
        .await;
    assert_eq!(r.json()["sessions"].as_array().unwrap().len(), 1);
    let r = server
        .delete(&format!("/v1/admin/users/{user_id}/sessions"), &root)
        .await;
    assert_eq!(r.status, 204);
    server
        .get("/v1/me", Some(&alice))
        .await
        .assert_problem(401, "unauthenticated");

    // Brute force: the per-IP login limit answers 429 with Retry-After, and it is audited.
    let mut limited = None;
    for _ in 0..20 {
        let r = server.login("alice", "guessing guessing guessing").await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        r.assert_problem(401, "invalid_credentials");
    }
    let Some(r) = limited else {
        panic!("no 429 within 20 attempts")
    };
    r.assert_problem(429, "rate_limited");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    let rule = r.json()["rule"].as_str().unwrap().to_owned();
    let r = server
        .get("/v1/admin/audit?type=security.rate_limited", Some(&root))
        .await;
    let events = r.json()["events"].as_array().unwrap().clone();
    assert!(
        events
            .iter()
            .any(|e| e["event"]["metadata"]["rule"] == rule.as_str()
                // (the standard redactor keeps the /24 of the client address)
            && e["event"]["ip"].as_str().is_some_and(|ip| ip.starts_with("127.0.0."))
            && e["event"]["actor_type"] == "anonymous"),
        "{rule}: {events:?}"
    );

    server.stop().await;
}

/// Hostile and broken input: always a 4xx problem, never a 500.
async fn bad_input(stores: app::Stores) {
    let server = Server::start(stores).await;
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<u8>,
        Vec<(&'a str, &'a str)>,
        u16,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        ("POST", "/v1/users", b"{not json".to_vec(), vec![], 400, "malformed_json"),
        ("POST", "/v1/users", b"".to_vec(), vec![], 400, "malformed_json"),
        ("POST", "/v1/users", br#"{"username": 5, "email": "a@b.c", "password": "x"}"#.to_vec(), vec![], 422, "invalid_fields"),
        ("POST", "/v1/users", br#"{"username": "bob", "email": "b@example.com", "password": "correct horse battery", "admin": true}"#.to_vec(), vec![], 422, "invalid_fields"),
        ("POST", "/v1/users", br#"["an", "array"]"#.to_vec(), vec![], 422, "invalid_fields"),
        ("POST", "/v1/users", b"{\"username\": \"\xff\xfe\"}".to_vec(), vec![], 400, "invalid_utf8"),
        ("POST", "/v1/users", br#"{"username":"bob","email":"b@example.com","password":"correct horse battery"}"#.to_vec(), vec![("Content-Type", "text/plain")], 415, "unsupported_media_type"),
        ("POST", "/v1/sessions", br#"{"login": "x"}"#.to_vec(), vec![], 422, "invalid_fields"),
        ("POST", "/v1/sessions", br#"{"login": "x", "password": null}"#.to_vec(), vec![], 422, "invalid_fields"),
        ("POST", "/v1/users", vec![b'a'; 20 * 1024], vec![], 413, "body_too_large"),
        ("GET", "/v1/sessions", vec![], vec![], 401, "unauthenticated"),
        ("PUT", "/v1/me/password", br#"{"current_password": "a", "new_password": "b"}"#.to_vec(), vec![], 401, "unauthenticated"),
        ("DELETE", "/v1/sessions/current", vec![], vec![("Authorization", "Basic Zm9vOmJhcg==")], 401, "unauthenticated"),
        ("GET", "/v1/me", vec![], vec![("Cookie", "umanage_session=%%%; other=1")], 401, "unauthenticated"),
        ("GET", "/v1/admin/audit", vec![], vec![], 401, "unauthenticated"),
        ("GET", "/nope", vec![], vec![], 404, "not_found"),
        ("PATCH", "/v1/me", vec![], vec![], 405, "method_not_allowed"),
    ];
    for (method, path, body, headers, status, code) in cases {
        let r = server.send(method, path, None, Some(&body), &headers).await;
        assert!(r.status < 500);
        r.assert_problem(status, code);
        assert!(r.header("x-request-id").is_some());
    }
    // A password far beyond the normalisation cap: a violation, not a crash.
    let long = "x".repeat(5000);
    let r = server.register("bob", "b@example.com", &long).await;
    r.assert_problem(422, "validation_failed");
    // A bad username and email are violations too, reported with the password's.
    let r = server.register(" ", "no-at-sign", "x").await;
    r.assert_problem(422, "validation_failed");
    let codes = r.violation_codes();
    assert!(codes.contains(&"invalid_username".to_owned()), "{codes:?}");
    // A forged request id is replaced.
    let r = server
        .send(
            "GET",
            "/healthz",
            None,
            None,
            &[("X-Request-Id", "bad id with spaces")],
        )
        .await;
    assert_ne!(r.header("x-request-id"), Some("bad id with spaces"));
    // Garbage that is not HTTP at all does not take the server down.
    let _ = server.raw(b"\x00\x01\x02 garbage\r\n\r\n").await;
    assert_eq!(server.get("/healthz", None).await.status, 200);
    server.stop().await;
}

mod memory {
    use super::*;

    fn stores() -> app::Stores {
        app::Stores::memory(&SystemClock::shared())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn journey() {
        super::journey(stores()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_input() {
        super::bad_input(stores()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trusted_proxies() {
        super::trusted_proxy_case(stores(), stores()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spray() {
        super::spray_case(stores()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readyz_without_backends() {
        let server = Server::start(stores()).await;
        let r = server.get("/readyz", None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["ready"], true);
        server.stop().await;
    }
}

#[cfg(all(feature = "redis", feature = "postgres", feature = "testkit"))]
mod redis_postgres {
    use super::*;
    use umanage::core::testkit;
    use umanage::password::spray::SprayKey;

    async fn run(
        test: fn(app::Stores) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) {
        let (Some(redis), Some(pg)) = (testkit::redis().await, testkit::postgres().await) else {
            eprintln!("skipped: UMANAGE_TEST_REDIS_URL / UMANAGE_TEST_DATABASE_URL not set");
            return;
        };
        let stores = app::Stores::memory(&SystemClock::shared())
            .with_redis(redis.connection())
            .with_spray_key(SprayKey::random())
            .with_postgres(pg.pool().clone())
            .await
            .unwrap();
        test(stores).await;
        drop((redis, pg));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn journey() {
        run(|s| Box::pin(super::journey(s))).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_input() {
        run(|s| Box::pin(super::bad_input(s))).await;
    }

    /// `/readyz` pings each backend: 200 while both answer, 503 problem+json naming the
    /// one that is down.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readyz_pings_the_backends() {
        let (Some(mut redis), Some(pg)) = (
            testkit::RedisServer::start().await,
            testkit::postgres().await,
        ) else {
            eprintln!("skipped: redis-server / UMANAGE_TEST_DATABASE_URL not available");
            return;
        };
        let conn = umanage::core::redis::RedisConfig::builder(redis.url())
            .key_prefix(format!("readyz-{}", uuid::Uuid::new_v4().simple()))
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let pool = pg.new_pool(2).await.unwrap();
        let stores = app::Stores::memory(&SystemClock::shared())
            .with_redis(&conn)
            .with_spray_key(SprayKey::random())
            .with_postgres(pool.clone())
            .await
            .unwrap();
        let server = Server::start(stores).await;
        let r = server.get("/readyz", None).await;
        r.assert_status(200);
        assert_eq!(r.json()["checks"], json!({"redis": "up", "postgres": "up"}));

        redis.stop();
        let r = server.get("/readyz", None).await;
        r.assert_problem(503, "not_ready");
        assert_eq!(r.json()["checks"]["redis"], "down");
        assert_eq!(r.json()["checks"]["postgres"], "up");

        redis.restart().await;
        pool.close().await;
        let r = server.get("/readyz", None).await;
        r.assert_problem(503, "not_ready");
        assert_eq!(r.json()["checks"]["postgres"], "down");
        // The last checkpoint cannot be written with the pool closed: an error, no panic.
        let err = server.stop_with_audit().await.unwrap_err();
        assert!(err.starts_with("final audit checkpoint"), "{err}");
    }

    /// Registration writes two stores; when the credential write fails the account is
    /// removed again (`umanage::account::create_with`): 503, nothing left, the name free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_registration_leaves_nothing() {
        let Some(pg) = testkit::postgres().await else {
            eprintln!("skipped: UMANAGE_TEST_DATABASE_URL not set");
            return;
        };
        let mut stores = app::Stores::memory(&SystemClock::shared())
            .with_postgres(pg.pool().clone())
            .await
            .unwrap();
        // Credentials on their own pool, which the test then closes.
        let cred_pool = pg.new_pool(1).await.unwrap();
        stores.credentials = Arc::new(umanage::password::store::PostgresCredentialStore::new(
            cred_pool.clone(),
        ));
        let accounts = Arc::clone(&stores.accounts);
        let server = Server::start(stores).await;
        cred_pool.close().await;
        let r = server.register("dora", "dora@example.com", GOOD).await;
        assert!(
            r.status == 503 || r.status == 500,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(accounts.find_by_login("dora").await.unwrap(), None);
        assert_eq!(
            accounts.find_by_login("dora@example.com").await.unwrap(),
            None
        );
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spray() {
        let Some(redis) = testkit::redis().await else {
            eprintln!("skipped: UMANAGE_TEST_REDIS_URL not set");
            return;
        };
        super::spray_case(
            app::Stores::memory(&SystemClock::shared())
                .with_redis(redis.connection())
                .with_spray_key(SprayKey::random()),
        )
        .await;
        drop(redis);
    }

    /// Spray evidence on Redis is shared, so its digest key must be too: without
    /// `UMANAGE_SPRAY_KEY` the app refuses to build (no silent per-process key).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spray_on_redis_needs_a_key() {
        let Some(redis) = testkit::redis().await else {
            eprintln!("skipped: UMANAGE_TEST_REDIS_URL not set");
            return;
        };
        let stores = app::Stores::memory(&SystemClock::shared()).with_redis(redis.connection());
        let settings = app::Settings::defaults().unwrap();
        match app::build(settings, stores, Arc::new(SystemClock)) {
            Ok(_) => panic!("built a Redis spray detector without a key"),
            Err(e) => assert!(e.contains("UMANAGE_SPRAY_KEY"), "{e}"),
        }
        drop(redis);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trusted_proxies() {
        let (Some(a), Some(b)) = (testkit::redis().await, testkit::redis().await) else {
            eprintln!("skipped: UMANAGE_TEST_REDIS_URL not set");
            return;
        };
        let memory =
            || app::Stores::memory(&SystemClock::shared()).with_spray_key(SprayKey::random());
        super::trusted_proxy_case(
            memory().with_redis(a.connection()),
            memory().with_redis(b.connection()),
        )
        .await;
        drop((a, b));
    }
}

async fn login_via(server: &Server, xff: &str) -> u16 {
    server
        .login_from("nobody", "not the password at all", xff)
        .await
        .status
}

/// Behind a trusted proxy the forwarded address is the rate-limit key; from an untrusted
/// peer the header is ignored and the peer is the key. The two store sets are fresh.
async fn trusted_proxy_case(trusted: app::Stores, untrusted: app::Stores) {
    let mut cfg = config::ServerConfig::parse(
        r#"
        [rate_limits]
        logins_per_minute = 3
        [proxies]
        trusted_proxies = ["127.0.0.0/8"]
        "#,
    )
    .unwrap();
    // Trusted: the loopback peer is a proxy, X-Forwarded-For names the client.
    let server = Server::start_with(trusted, app::Settings::from_config(&cfg).unwrap()).await;
    for _ in 0..3 {
        assert_eq!(login_via(&server, "203.0.113.1").await, 401);
    }
    assert_eq!(login_via(&server, "203.0.113.1").await, 429);
    // Another forwarded client has its own budget.
    assert_eq!(login_via(&server, "203.0.113.2").await, 401);
    // A forged hop left of the real client does not change who the client is.
    assert_eq!(login_via(&server, "198.51.100.9, 203.0.113.1").await, 429);
    server.stop().await;

    // Untrusted: only 10.0.0.0/8 is a proxy, so the loopback peer is the client and the
    // header is ignored: changing it does not buy new attempts.
    cfg.proxies = serde_json::from_value(json!({"trusted_proxies": ["10.0.0.0/8"]})).unwrap();
    let server = Server::start_with(untrusted, app::Settings::from_config(&cfg).unwrap()).await;
    for xff in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        assert_eq!(login_via(&server, xff).await, 401);
    }
    assert_eq!(login_via(&server, "203.0.113.4").await, 429);
    server.stop().await;
}

/// The committed example config loads, switches to the enterprise policy, and a server
/// built from it enforces that policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_config_loads_and_applies() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/server/umanage.example.toml"
    );
    let cfg = config::ServerConfig::load(path).unwrap();
    assert_eq!(cfg.password.preset, config::Preset::Enterprise);
    let settings = app::Settings::from_config(&cfg).unwrap();
    assert_eq!(settings.policy.min_length(), 12);
    assert_eq!(settings.policy.min_uppercase(), 2);
    assert_eq!(settings.policy.history_count(), 5);
    assert_eq!(settings.policy.min_age_days(), Some(1));
    assert_eq!(settings.policy.expiry_days(), Some(90));
    assert!(settings.resolver.is_trusted("127.0.0.1".parse().unwrap()));
    assert_eq!(cfg.audit.checkpoint_key_id, "server");
    assert_eq!(
        settings.audit.checkpoint_interval,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(
        settings.readiness_timeout,
        std::time::Duration::from_secs(1)
    );
    assert_eq!(
        settings.sessions.idle_timeout(),
        std::time::Duration::from_secs(1800)
    );

    let mut settings = settings;
    settings.secure_cookie = false;
    let server = Server::start_with(app::Stores::memory(&SystemClock::shared()), settings).await;
    // A passphrase NIST accepts lacks the classes enterprise() asks for.
    let r = server.register("erin", "erin@example.com", GOOD).await;
    r.assert_problem(422, "validation_failed");
    assert!(!r.json()["violations"].as_array().unwrap().is_empty());
    let strong = "Qz8!vK2#mW9$pL";
    let r = server.register("erin", "erin@example.com", strong).await;
    r.assert_status(201);
    let r = server.login("erin", strong).await;
    r.assert_status(201);
    assert_eq!(r.json()["password_expired"], false);
    assert!(r.json()["password_expires_at"].is_string());
    let token = r.token();
    // The one-day minimum age comes from the SDK's PasswordService.
    let r = server
        .change_password(&token, strong, "Xr7%tN4&bH6*jD")
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.json()["violations"][0]["code"], "password_too_recent");
    server.stop().await;
}

#[test]
fn config_errors_are_clear() {
    let err =
        config::ServerConfig::parse("[password]\npreset = \"nist\"\nmin_lenght = 3\n").unwrap_err();
    assert!(err.contains("min_lenght"), "{err}");
    let err = config::ServerConfig::parse("[rate_limit]\n").unwrap_err();
    assert!(err.contains("rate_limit"), "{err}");
    let err = config::ServerConfig::parse("[password]\npreset = \"fips\"\n").unwrap_err();
    assert!(err.contains("fips"), "{err}");
    // NIST forbids expiry: refused when the policy is built, naming the section.
    let cfg = config::ServerConfig::parse("[password]\nexpiry_days = 30\n").unwrap();
    let err = app::Settings::from_config(&cfg).unwrap_err();
    assert!(err.starts_with("[password]"), "{err}");
    let cfg = config::ServerConfig::parse("[rate_limits]\nlogins_per_minute = 0\n").unwrap();
    assert!(app::Settings::from_config(&cfg).is_err());
    let err =
        config::ServerConfig::parse("[proxies]\ntrusted_proxies = [\"not a net\"]\n").unwrap_err();
    assert!(
        err.contains("trusted_proxies") || err.contains("not a net") || err.contains("invalid"),
        "{err}"
    );
    let err = config::ServerConfig::parse("[hashing.pool]\nmax_concurrent = 0\n").unwrap_err();
    assert!(err.contains("max_concurrent"), "{err}");
    // Audit keys: errors name the setting, never the key; Debug redacts it.
    let secret = "zz".repeat(32);
    let cfg =
        config::ServerConfig::parse(&format!("[audit]\ncheckpoint_key = \"{secret}\"\n")).unwrap();
    assert!(!format!("{cfg:?}").contains(&secret), "{cfg:?}");
    let err = app::Settings::from_config(&cfg).unwrap_err();
    assert!(err.starts_with("[audit] checkpoint_key"), "{err}");
    assert!(!err.contains(&secret), "{err}");
    let short = "ab".repeat(16);
    let cfg =
        config::ServerConfig::parse(&format!("[audit]\ncheckpoint_key = \"{short}\"\n")).unwrap();
    let err = app::Settings::from_config(&cfg).unwrap_err();
    assert!(
        err.contains("at least 32 bytes") && !err.contains(&short),
        "{err}"
    );
    let settings = keyed_settings("k1", CKPT_KEY_1, &[("k0", CKPT_KEY_2)]);
    assert!(settings.audit.key_configured);
    let debug = format!("{settings:?}");
    assert!(!debug.contains(CKPT_KEY_1) && !debug.contains(CKPT_KEY_2));
    assert!(!debug.contains(&format!("{:?}", hex::decode(CKPT_KEY_1).unwrap())));
    let cfg = config::ServerConfig::parse(&format!(
        "[audit]\ncheckpoint_key_id = \"a\"\ncheckpoint_key = \"{CKPT_KEY_1}\"\n\
         previous_keys = [{{ id = \"a\", key = \"{CKPT_KEY_2}\" }}]\n"
    ))
    .unwrap();
    let err = app::Settings::from_config(&cfg).unwrap_err();
    assert!(err.starts_with("[audit] previous_keys[0]"), "{err}");
    let cfg = config::ServerConfig::parse("[audit]\ncheckpoint_interval = \"0s\"\n").unwrap();
    assert!(app::Settings::from_config(&cfg).is_err());
    // Unconfigured: a random key, flagged for the start-up warning.
    assert!(!app::Settings::defaults().unwrap().audit.key_configured);
}

/// The keys of a JSON object.
fn keys(v: &Value) -> std::collections::BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// `/openapi.json` documents exactly the routed paths and methods (from the one route
/// table the router is built from), every error as problem+json, every body; real
/// responses have the documented properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route() {
    let server = Server::start(app::Stores::memory(&SystemClock::shared())).await;
    let r = server.get("/openapi.json", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    let routed: std::collections::BTreeSet<(String, String)> = app::routes()
        .iter()
        .map(|(m, p, _)| (m.as_str().to_ascii_lowercase(), (*p).to_owned()))
        .collect();
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            documented.insert((method.clone(), path.clone()));
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{method} {path}: no success response"
            );
            assert!(
                responses.contains_key("429"),
                "{method} {path}: 429 undocumented"
            );
            for (status, resp) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &resp["content"]["application/problem+json"]["schema"];
                    assert_eq!(
                        schema["$ref"], "#/components/schemas/ProblemDoc",
                        "{method} {path} {status}: {resp}"
                    );
                }
            }
            if method == "post" || method == "put" {
                let has_body = op["requestBody"]["content"]["application/json"]["schema"]
                    .get("$ref")
                    .is_some();
                assert!(has_body, "{method} {path}: request body undocumented");
            }
        }
    }
    assert_eq!(routed, documented);

    // Every documented operation is routed: never the fallback's 404 nor 405.
    for (method, path) in &routed {
        let concrete = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        let body = b"{}".as_slice();
        let r = server
            .send(
                &method.to_ascii_uppercase(),
                &concrete,
                None,
                Some(body),
                &[("Content-Type", "application/json")],
            )
            .await;
        assert_ne!(r.status, 405, "{method} {path}");
        assert_ne!(r.json()["code"], "not_found", "{method} {path}");
    }

    // Real bodies have exactly the documented properties.
    let schema = |name: &str| keys(&doc["components"]["schemas"][name]["properties"]);
    let r = server.register("olga", "olga@example.com", GOOD).await;
    assert_eq!(r.status, 201);
    assert_eq!(keys(&r.json()), schema("AccountDoc"));
    let r = server.login("olga", GOOD).await;
    assert_eq!(keys(&r.json()), schema("LoginDoc"));
    assert_eq!(keys(&r.json()["session"]), schema("SessionRefDoc"));
    let token = r.token();
    assert_eq!(
        keys(&server.get("/v1/me", Some(&token)).await.json()),
        schema("AccountDoc")
    );
    let r = server.get("/v1/sessions", Some(&token)).await;
    assert_eq!(keys(&r.json()), schema("SessionListDoc"));
    assert_eq!(keys(&r.json()["sessions"][0]), schema("SessionDoc"));
    let r = server
        .json(
            "POST",
            "/v1/password/strength",
            None,
            &json!({"password": "hunter2"}),
        )
        .await;
    assert_eq!(keys(&r.json()), schema("StrengthDoc"));
    assert_eq!(
        keys(&server.get("/healthz", None).await.json()),
        schema("HealthDoc")
    );
    assert_eq!(
        keys(&server.get("/readyz", None).await.json()),
        schema("ReadyDoc")
    );
    let problem = server.get("/v1/me", None).await.json();
    assert!(keys(&problem).is_subset(&schema("ProblemDoc")), "{problem}");
    let r = server.register("x", "nope", "a").await;
    assert!(keys(&r.json()).is_subset(&schema("ProblemDoc")));
    for v in r.json()["violations"].as_array().unwrap() {
        assert!(keys(v).is_subset(&schema("ViolationDoc")), "{v}");
    }
    server.stop().await;
}

/// Spray protection: one client failing on many distinct accounts is blocked (429 +
/// Retry-After, before hashing), the block is audited, other clients are unaffected.
async fn spray_case(stores: app::Stores) {
    let cfg = config::ServerConfig::parse(
        r#"
        [rate_limits]
        logins_per_minute = 1000
        logins_per_account = 1000
        [spray]
        per_source = { window = "15m", block_at = 4 }
        [proxies]
        trusted_proxies = ["127.0.0.0/8"]
        "#,
    )
    .unwrap();
    let server = Server::start_with(stores, app::Settings::from_config(&cfg).unwrap()).await;
    let attempt = |user: String, xff: &'static str| {
        let server = &server;
        async move { server.login_from(&user, "Spring2026 password!", xff).await }
    };
    for i in 0..4 {
        attempt(format!("victim{i}"), "203.0.113.7")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    let r = attempt("victim9".into(), "203.0.113.7").await;
    r.assert_problem(429, "spray_blocked");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // Even the right password of a real account is not checked from that source.
    let r = attempt("root".into(), "203.0.113.7").await;
    r.assert_problem(429, "spray_blocked");
    // Another client logs in normally, and finds the block in the audit trail.
    let r = server
        .login_from("root", ADMIN_PASSWORD, "203.0.113.8")
        .await;
    r.assert_status(201);
    let root = r.token();
    let r = server
        .get("/v1/admin/audit?type=security.spray_detected", Some(&root))
        .await;
    let events = r.json()["events"].as_array().unwrap().clone();
    assert!(
        events
            .iter()
            .any(|e| e["event"]["metadata"]["action"] == "block"
                && e["event"]["actor_type"] == "anonymous"),
        "{events:?}"
    );
    server.stop().await;
}

/// Two test checkpoint keys (hex, 32 bytes each).
const CKPT_KEY_1: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
const CKPT_KEY_2: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

/// Settings signing checkpoints with key `id`/`key`, accepting `previous` too. The
/// interval is long: the checkpoints come from the start tick and the final one at stop.
fn keyed_settings(id: &str, key: &str, previous: &[(&str, &str)]) -> app::Settings {
    let mut cfg = config::ServerConfig::default();
    cfg.audit.checkpoint_key_id = id.into();
    cfg.audit.checkpoint_key = Some(config::SecretText(key.into()));
    cfg.audit.previous_keys = previous
        .iter()
        .map(|(id, key)| config::PreviousKey {
            id: (*id).into(),
            key: config::SecretText((*key).into()),
        })
        .collect();
    cfg.audit.checkpoint_interval = std::time::Duration::from_secs(3600);
    app::Settings::from_config(&cfg).unwrap()
}

/// A server over `stores` (admin present) answers `GET /v1/admin/audit/verify`.
async fn verify_with(stores: &app::Stores, settings: app::Settings) -> Value {
    let server = Server::restart_with(stores.clone(), settings).await;
    let root = server.login("root", ADMIN_PASSWORD).await.token();
    let r = server.get("/v1/admin/audit/verify", Some(&root)).await;
    r.assert_status(200);
    server.stop().await;
    r.json()
}

/// Events and checkpoints verify, across a restart with the same key and across a key
/// rotation; a key the checkpoints were not signed with fails them. Returns the settings
/// the chain's checkpoints verify with now (for the caller's tamper step).
async fn checkpoint_case(stores: &app::Stores) -> app::Settings {
    let first = keyed_settings("k1", CKPT_KEY_1, &[]);
    let server = Server::start_with(stores.clone(), first.clone()).await;
    let root = server.login("root", ADMIN_PASSWORD).await.token();
    server
        .register("erin", "erin@example.com", GOOD)
        .await
        .assert_status(201);
    let r = server.get("/v1/admin/audit/verify", Some(&root)).await;
    r.assert_status(200);
    let v = r.json();
    assert_eq!(v["ok"], true, "{v}");
    // The reply has exactly the documented fields.
    let doc = server.get("/openapi.json", None).await.json();
    assert_eq!(
        keys(&v),
        keys(&doc["components"]["schemas"]["VerifyDoc"]["properties"])
    );
    server.stop().await; // flushes, then signs the final head

    // Restarted with the same configured key: the old checkpoints verify.
    let v = verify_with(stores, first.clone()).await;
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["checkpoints_checked"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["first_bad"].is_null(), "{v}");

    // Rotation: a new signing key with the old one kept for verification.
    let rotated = keyed_settings("k2", CKPT_KEY_2, &[("k1", CKPT_KEY_1)]);
    let v = verify_with(stores, rotated.clone()).await;
    assert_eq!(v["ok"], true, "{v}");
    let before = v["checkpoints_checked"].as_u64().unwrap();
    assert!(before >= 2, "{v}");

    // Without the old key, its checkpoints are not accepted (reading only: this server's
    // own k2 checkpoints are fine for the rotated keyring).
    let v = verify_with(stores, keyed_settings("k2", CKPT_KEY_2, &[])).await;
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["first_bad"]
            .as_str()
            .unwrap()
            .contains("CheckpointMismatch"),
        "{v}"
    );

    let v = verify_with(stores, rotated.clone()).await;
    assert_eq!(v["ok"], true, "{v}");
    rotated
}

/// The break `verify` reports after tampering, through a server with `settings`.
async fn assert_checkpoint_mismatch(stores: &app::Stores, settings: app::Settings) {
    let v = verify_with(stores, settings).await;
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["first_bad"]
            .as_str()
            .unwrap()
            .contains("CheckpointMismatch"),
        "{v}"
    );
}

#[cfg(feature = "testkit")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_audit_checkpoints_catch_tampering() {
    use umanage::audit::testing::Tamper as _;
    let audit = Arc::new(umanage::audit::MemoryAuditStorage::new());
    let mut stores = app::Stores::memory(&SystemClock::shared());
    stores.audit = audit.clone();
    let settings = checkpoint_case(&stores).await;
    audit.corrupt_checkpoints(app::CHAIN).await;
    assert_checkpoint_mismatch(&stores, settings).await;
}

/// Postgres: the newest events deleted and the chain head rewound to match (what a careful
/// attacker with SQL access does, so the chain alone looks whole): only the signed
/// checkpoint beyond the new head shows it.
#[cfg(all(feature = "postgres", feature = "testkit"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_checkpoints_catch_truncation() {
    let Some(pg) = umanage::core::testkit::postgres().await else {
        eprintln!("skipped: UMANAGE_TEST_DATABASE_URL not set");
        return;
    };
    let stores = app::Stores::memory(&SystemClock::shared())
        .with_postgres(pg.pool().clone())
        .await
        .unwrap();
    let settings = checkpoint_case(&stores).await;
    let pool = pg.pool();
    let newest: i64 =
        sqlx::query_scalar("SELECT max(seq) FROM umanage_audit_events WHERE chain_id = $1")
            .bind(app::CHAIN)
            .fetch_one(pool)
            .await
            .unwrap();
    let keep = newest - 3;
    assert!(keep > 0);
    sqlx::query("DELETE FROM umanage_audit_events WHERE chain_id = $1 AND seq > $2")
        .bind(app::CHAIN)
        .bind(keep)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE umanage_audit_chain_heads SET seq = $2, hash = (SELECT hash FROM
         umanage_audit_events WHERE chain_id = $1 AND seq = $2) WHERE chain_id = $1",
    )
    .bind(app::CHAIN)
    .bind(keep)
    .execute(pool)
    .await
    .unwrap();
    assert_checkpoint_mismatch(&stores, settings).await;
    drop(pg);
}
