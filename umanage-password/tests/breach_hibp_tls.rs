//! The HIBP client over HTTPS, against a local TLS server (self-signed certificate made by
//! rcgen, trusted through `HibpClient::with_root_certificates`) that speaks the range API.
//! Nothing leaves the loopback interface.

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use umanage_password::breach::hibp::{HibpClient, HibpConfig};
use umanage_password::breach::{
    BreachChecker, BreachStatus, FailurePolicy, UnavailableReason, sha1_hex,
};
use umanage_password::normalize::NormalizedPassword;

fn pw(s: &str) -> NormalizedPassword {
    NormalizedPassword::new(s).unwrap()
}

/// A certificate for 127.0.0.1 and localhost, and its key.
fn self_signed() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    (ck.cert.der().clone(), key)
}

struct TlsServer {
    base: String,
    cert: CertificateDer<'static>,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `GET /range/<prefix>` over TLS: `password`'s suffix with its count, a padding
/// row for `padding-only`, and unrelated rows.
async fn serve_tls() -> TlsServer {
    let (cert, key) = self_signed();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                // a client that does not trust the certificate aborts the handshake here
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                log.lock().unwrap().push(head.clone());
                let prefix = head
                    .split(' ')
                    .nth(1)
                    .and_then(|p| p.rsplit('/').next())
                    .unwrap_or_default()
                    .to_owned();
                let mut rows = Vec::new();
                for (p, count) in [("password", 10_434_004u64), ("padding-only", 0)] {
                    let h = sha1_hex(&pw(p));
                    if h.starts_with(&prefix) {
                        rows.push(format!("{}:{count}", &h[5..]));
                    }
                }
                for i in 0..100u32 {
                    rows.push(format!("{:035X}:{}", u128::from(i) * 104_729, i % 2));
                }
                let body = rows.join("\r\n");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    TlsServer {
        base: format!("https://{addr}"),
        cert,
        requests,
        task,
    }
}

fn config(base: &str) -> HibpConfig {
    HibpConfig {
        timeout: Duration::from_secs(2),
        failure_policy: FailurePolicy::FailClosed,
        ..HibpConfig::with_base_url(base)
    }
}

#[tokio::test]
async fn range_checks_over_https_with_a_trusted_root() {
    let server = serve_tls().await;
    let hibp =
        HibpClient::with_root_certificates(config(&server.base), [server.cert.as_ref()]).unwrap();
    let checker: &dyn BreachChecker = &hibp;
    assert_eq!(
        checker.check(&pw("password")).await,
        BreachStatus::Breached { count: 10_434_004 }
    );
    assert_eq!(
        checker.check(&pw("padding-only")).await,
        BreachStatus::NotFound
    );
    assert_eq!(
        checker.check(&pw("tulip harbor glass 93")).await,
        BreachStatus::NotFound
    );
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3);
    let hash = sha1_hex(&pw("password"));
    assert!(
        requests[0].starts_with(&format!("GET /range/{} HTTP/1.1\r\n", &hash[..5])),
        "{}",
        requests[0]
    );
    assert!(
        requests[0]
            .to_ascii_lowercase()
            .contains("add-padding: true")
    );
    assert!(!requests[0].contains(&hash[5..]));
}

/// A server whose certificate is not trusted is never sent the request: the check is
/// `Unavailable` (connect failure) under the configured policy.
#[tokio::test]
async fn untrusted_certificates_are_refused() {
    let server = serve_tls().await;
    let (other_root, _) = self_signed();
    let wrong_root =
        HibpClient::with_root_certificates(config(&server.base), [other_root.as_ref()]).unwrap();
    // the public roots do not include a self-signed test certificate either
    let public_roots = HibpClient::new(config(&server.base)).unwrap();
    for client in [wrong_root, public_roots] {
        assert_eq!(
            client.check(&pw("password")).await,
            BreachStatus::Unavailable {
                policy: FailurePolicy::FailClosed,
                reason: UnavailableReason::Connect,
            }
        );
    }
    assert!(server.requests.lock().unwrap().is_empty());
}

/// The real API URL is accepted (no request is made here).
#[test]
fn the_public_https_url_is_accepted() {
    let client = HibpClient::new(HibpConfig::default()).unwrap();
    assert!(client.config().base_url.starts_with("https://"));
}
