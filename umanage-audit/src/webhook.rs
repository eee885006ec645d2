//! An HTTP webhook destination: each batch is one `POST` of a JSON array.
//!
//! The client is deliberately small: HTTP/1.1 over a plain TCP connection (hyper), one
//! connection per batch, a deadline per request. For HTTPS, send to a local TLS-terminating
//! proxy or implement [`AuditDestination`] with the host's own client.
//!
//! Each request carries
//!
//! * `Content-Type: application/json`, the body `[event, ...]`;
//! * `Idempotency-Key`: hex SHA-256 of the batch's event ids (a retried batch has the same
//!   key, so a receiver can drop the repeat; events are also unique by `id`);
//! * with a secret configured, `X-Umanage-Signature: sha256=<hex HMAC-SHA256 of the body>`.
//!
//! Any status other than 2xx, a connection error or the deadline fails the delivery, and
//! the [`AuditLogger`](crate::AuditLogger) retries it with backoff.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::Uri;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::AuditEvent;
use crate::pipeline::AuditDestination;

/// The webhook destination (see the [module docs](self)).
#[derive(Clone)]
pub struct WebhookDestination {
    uri: Uri,
    authority: String,
    timeout: Duration,
    secret: Option<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for WebhookDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookDestination")
            .field("host", &self.authority)
            .field("path", &self.uri.path())
            .field("timeout", &self.timeout)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl WebhookDestination {
    /// Default deadline per request.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Posts to `url` (`http://host[:port]/path`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a URL that does not parse, is not `http`, or has no host.
    pub fn new(url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .map_err(|_| Error::Config("webhook url does not parse".into()))?;
        if uri.scheme_str() != Some("http") {
            return Err(Error::Config(
                "webhook url must be http:// (terminate TLS in a local proxy)".into(),
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| Error::Config("webhook url has no host".into()))?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        Ok(Self {
            uri,
            authority,
            timeout: Self::DEFAULT_TIMEOUT,
            secret: None,
        })
    }

    /// Sets the per-request deadline.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Signs bodies with HMAC-SHA256 under `secret` (`X-Umanage-Signature`).
    #[must_use]
    pub fn signing_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = Some(Zeroizing::new(secret.into()));
        self
    }

    async fn post(&self, body: Vec<u8>, key: String) -> Result<()> {
        let fail = |reason: String| Error::Destination {
            destination: "webhook".into(),
            reason,
        };
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| fail(format!("connect: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(format!("handshake: {e}")))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = self
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let mut req = http::Request::post(path)
            .header(http::header::HOST, self.authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", key);
        if let Some(secret) = &self.secret
            && let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret)
        {
            mac.update(&body);
            let sig = hex::encode(mac.finalize().into_bytes());
            req = req.header("x-umanage-signature", format!("sha256={sig}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(format!("request: {e}")))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| fail(format!("send: {e}")))?;
        let status = res.status();
        // Drain the body so the server sees a complete exchange.
        let _ = res.into_body().collect().await;
        driver.abort();
        if status.is_success() {
            Ok(())
        } else {
            Err(fail(format!("status {status}")))
        }
    }
}

#[async_trait]
impl AuditDestination for WebhookDestination {
    fn name(&self) -> &'static str {
        "webhook"
    }

    #[tracing::instrument(level = "debug", skip_all, fields(n = events.len()))]
    async fn deliver(&self, events: &[AuditEvent]) -> Result<()> {
        let body = serde_json::to_vec(events)?;
        let mut h = Sha256::new();
        for e in events {
            h.update(e.id.as_bytes());
        }
        let key = hex::encode(h.finalize());
        match tokio::time::timeout(self.timeout, self.post(body, key)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Destination {
                destination: "webhook".into(),
                reason: format!("timed out after {:?}", self.timeout),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_secrets_hidden() {
        assert!(matches!(
            WebhookDestination::new("https://x/y"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            WebhookDestination::new("not a url"),
            Err(Error::Config(_))
        ));
        let d = WebhookDestination::new("http://127.0.0.1:9/hook")
            .unwrap()
            .signing_secret("s3cr3t");
        let dbg = format!("{d:?}");
        assert!(
            dbg.contains("127.0.0.1:9") && !dbg.contains("s3cr3t"),
            "{dbg}"
        );
    }
}
