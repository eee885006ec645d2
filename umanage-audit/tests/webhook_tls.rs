//! The webhook destination over HTTPS (feature `webhook-tls`), against a local TLS server
//! with a self-signed certificate made by rcgen. No traffic leaves loopback.

#![cfg(feature = "webhook-tls")]
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use umanage_audit::pipeline::AuditDestination;
use umanage_audit::{ActorType, AuditEvent, Error, WebhookDestination, event_types};
use umanage_core::ManualClock;

/// Every request the server read: (lower-cased head, body).
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A TLS server on a free loopback port answering every request 200; returns its port, its
/// certificate and what it saw.
async fn tls_server() -> (u16, CertificateDer<'static>, Seen) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let cert = ck.cert.der().clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let log = log.clone();
            tokio::spawn(async move {
                // a client that does not trust the certificate fails here
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, len) = loop {
                    let Ok(k) = s.read(&mut chunk).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        break (p + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let k = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..k]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                log.lock().push((head, buf[head_end..].to_vec()));
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, cert, seen)
}

fn events(n: usize) -> Vec<AuditEvent> {
    let clock = ManualClock::default();
    (0..n)
        .map(|i| {
            clock.advance(Duration::from_millis(1));
            AuditEvent::builder(event_types::LOGIN_SUCCESS, &clock)
                .actor(ActorType::User, format!("u{i}"))
                .build()
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhook_delivers_to_a_trusted_server() {
    let (port, cert, seen) = tls_server().await;
    let hook = WebhookDestination::new(&format!("https://127.0.0.1:{port}/audit"))
        .unwrap()
        .with_root_certificates([cert.to_vec()])
        .unwrap()
        .signing_secret("hook-secret")
        .timeout(Duration::from_secs(5));
    let sent = events(3);
    hook.deliver(&sent).await.unwrap();
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (head, body) = &seen[0];
    assert!(head.starts_with("post /audit "), "{head}");
    assert!(head.contains("x-umanage-signature: sha256="), "{head}");
    assert!(head.contains("idempotency-key: "), "{head}");
    let got: Vec<AuditEvent> = serde_json::from_slice(body).unwrap();
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        sent.iter().map(|e| e.id).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_the_delivery_and_sends_nothing() {
    let (port, _cert, seen) = tls_server().await;
    // The Mozilla roots do not include the test's self-signed certificate.
    let hook = WebhookDestination::new(&format!("https://127.0.0.1:{port}/audit"))
        .unwrap()
        .signing_secret("hook-secret")
        .timeout(Duration::from_secs(5));
    let err = hook.deliver(&events(1)).await.unwrap_err();
    match &err {
        Error::Destination { reason, .. } => {
            assert!(reason.starts_with("tls:"), "{reason}");
            assert!(!reason.contains("hook-secret"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(seen.lock().is_empty());
}

#[test]
fn root_certificates_are_checked() {
    let http = WebhookDestination::new("http://127.0.0.1:9/hook").unwrap();
    assert!(matches!(
        http.with_root_certificates([vec![1, 2, 3]]),
        Err(Error::Config(_))
    ));
    let https = WebhookDestination::new("https://127.0.0.1:9/hook").unwrap();
    assert!(matches!(
        https.clone().with_root_certificates(Vec::<Vec<u8>>::new()),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        https.with_root_certificates([b"not a certificate".to_vec()]),
        Err(Error::Config(_))
    ));
}
