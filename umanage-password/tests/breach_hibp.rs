#![cfg(feature = "hibp")]
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

//! The HIBP client against a local HTTP/1.1 server that speaks the range API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use umanage_password::breach::hibp::{HibpClient, HibpConfig};
use umanage_password::breach::{
    BreachChecker, BreachStatus, FailurePolicy, UnavailableReason, sha1_hex,
};
use umanage_password::normalize::NormalizedPassword;

fn pw(s: &str) -> NormalizedPassword {
    NormalizedPassword::new(s).unwrap()
}

#[derive(Clone, Copy)]
enum Behaviour {
    /// Serve a padded range: the real suffix of `breached` with a count, plus padding rows.
    Range,
    Status(u16),
    Stall,
    Garbage,
    Huge,
    /// Headers at once, then the body one row every 50 ms (never finishing in time).
    DripBody,
    /// A chunked body that never ends (well-formed rows, as fast as the socket takes them).
    Endless,
}

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
}

struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Suffixes (35 hex) of the range `prefix` that the server knows, with counts; padding rows
/// have count 0.
fn range_body(prefix: &str, breached: &[(&str, u64)], padding_for: &[&str]) -> String {
    let mut rows: Vec<String> = Vec::new();
    for (p, count) in breached {
        let h = sha1_hex(&pw(p));
        if h.starts_with(prefix) {
            rows.push(format!("{}:{count}", &h[5..]));
        }
    }
    for p in padding_for {
        let h = sha1_hex(&pw(p));
        if h.starts_with(prefix) {
            rows.push(format!("{}:0", &h[5..]));
        }
    }
    // unrelated rows and padding, as the real service sends
    for i in 0..300u32 {
        rows.push(format!("{:035X}:{}", u128::from(i) * 7_919, i % 3));
    }
    rows.sort();
    rows.join("\r\n")
}

async fn serve(behaviour: Behaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if buf.len() > 16 * 1024 {
                        return;
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let mut lines = head.split("\r\n");
                let request_line = lines.next().unwrap_or_default().to_owned();
                let headers = lines
                    .take_while(|l| !l.is_empty())
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                log.lock().unwrap().push(Seen {
                    request_line: request_line.clone(),
                    headers,
                });
                let prefix = request_line
                    .split(' ')
                    .nth(1)
                    .and_then(|p| p.rsplit('/').next())
                    .unwrap_or_default()
                    .to_owned();
                let (status, body) = match behaviour {
                    Behaviour::Range => (
                        200,
                        range_body(
                            &prefix,
                            &[("password", 10_434_004), ("P@ssw0rd", 144_000)],
                            &["only-padding-1"],
                        ),
                    ),
                    Behaviour::Status(code) => (code, String::from("busy")),
                    Behaviour::Stall => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    Behaviour::Garbage => (200, "this is not a range response".to_owned()),
                    Behaviour::Huge => (200, "0".repeat(64 * 1024)),
                    Behaviour::DripBody => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000000\r\n\r\n";
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        for i in 0..600u32 {
                            let row = format!("{:035X}:1\r\n", u128::from(i));
                            if socket.write_all(row.as_bytes()).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        return;
                    }
                    Behaviour::Endless => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let mut rows = String::new();
                        for i in 0..100u32 {
                            use std::fmt::Write as _;
                            let _ = write!(rows, "{:035X}:1\r\n", u128::from(i));
                        }
                        let chunk = format!("{:x}\r\n{rows}\r\n", rows.len());
                        // stops when the client hangs up
                        while socket.write_all(chunk.as_bytes()).await.is_ok() {}
                        return;
                    }
                };
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Server {
        base: format!("http://{addr}"),
        seen,
        task,
    }
}

fn client(base: &str, policy: FailurePolicy) -> HibpClient {
    HibpClient::new(HibpConfig {
        timeout: Duration::from_millis(500),
        failure_policy: policy,
        max_response_bytes: 16 * 1024,
        ..HibpConfig::with_base_url(base)
    })
    .unwrap()
}

#[tokio::test]
async fn finds_breached_passwords_sending_only_the_prefix() {
    let server = serve(Behaviour::Range).await;
    let hibp = client(&format!("{}/", server.base), FailurePolicy::FailClosed);
    let checker: &dyn BreachChecker = &hibp;
    assert_eq!(
        checker.check(&pw("password")).await,
        BreachStatus::Breached { count: 10_434_004 }
    );
    assert_eq!(
        checker.check(&pw("P@ssw0rd")).await,
        BreachStatus::Breached { count: 144_000 }
    );
    assert_eq!(
        checker.check(&pw("tulip harbor glass 93")).await,
        BreachStatus::NotFound
    );
    // a suffix that is present only as a padding row (count 0) is not a breach
    assert_eq!(
        checker.check(&pw("only-padding-1")).await,
        BreachStatus::NotFound
    );

    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    for (s, p) in seen.iter().zip([
        "password",
        "P@ssw0rd",
        "tulip harbor glass 93",
        "only-padding-1",
    ]) {
        let hash = sha1_hex(&pw(p));
        assert_eq!(
            s.request_line,
            format!("GET /range/{} HTTP/1.1", &hash[..5])
        );
        assert!(
            s.headers
                .iter()
                .any(|(k, v)| k == "add-padding" && v == "true"),
            "{:?}",
            s.headers
        );
        assert!(
            s.headers
                .iter()
                .any(|(k, v)| k == "user-agent" && v.starts_with("umanage-password/"))
        );
        // only the 5-character prefix leaves the process
        let everything = format!("{s:?}");
        assert!(!everything.contains(&hash[5..]));
    }
}

#[tokio::test]
async fn base_url_path_is_kept() {
    let server = serve(Behaviour::Range).await;
    let hibp = client(
        &format!("{}/mirror/hibp", server.base),
        FailurePolicy::FailOpen,
    );
    assert!(hibp.check(&pw("password")).await.rejects());
    let seen = server.seen.lock().unwrap().clone();
    assert!(
        seen[0]
            .request_line
            .starts_with("GET /mirror/hibp/range/5BAA6 ")
    );
}

#[tokio::test]
async fn failures_follow_the_failure_policy() {
    let cases = [
        (Behaviour::Status(503), UnavailableReason::HttpStatus(503)),
        (Behaviour::Status(429), UnavailableReason::HttpStatus(429)),
        (Behaviour::Stall, UnavailableReason::Timeout),
        (Behaviour::Garbage, UnavailableReason::InvalidResponse),
        (Behaviour::Huge, UnavailableReason::InvalidResponse),
        // bounded in time while the body trickles in, and in size when it never ends
        (Behaviour::DripBody, UnavailableReason::Timeout),
        (Behaviour::Endless, UnavailableReason::InvalidResponse),
    ];
    for (behaviour, reason) in cases {
        let server = serve(behaviour).await;
        for policy in [FailurePolicy::FailOpen, FailurePolicy::FailClosed] {
            let status = client(&server.base, policy).check(&pw("password")).await;
            assert_eq!(status, BreachStatus::Unavailable { policy, reason });
            assert_eq!(status.rejects(), policy == FailurePolicy::FailClosed);
        }
    }
    // nothing listening: a free port taken and released
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let status = client(&format!("http://{addr}"), FailurePolicy::FailClosed)
        .check(&pw("password"))
        .await;
    assert_eq!(
        status,
        BreachStatus::Unavailable {
            policy: FailurePolicy::FailClosed,
            reason: UnavailableReason::Connect
        }
    );
}
