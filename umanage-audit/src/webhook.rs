//! An HTTP webhook destination: each batch is one `POST` of a JSON array.
//!
//! The client is deliberately small: HTTP/1.1 (hyper), one connection per batch, a deadline
//! per request. `http://` URLs go over plain TCP; `https://` URLs need the feature
//! `webhook-tls` (rustls with the `ring` provider, TLS 1.2/1.3, the Mozilla roots of
//! `webpki-roots`; [`WebhookDestination::with_root_certificates`] trusts a private CA
//! instead). Without the feature an `https://` URL is a configuration error.
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
    /// The TLS client configuration of an `https://` URL.
    #[cfg(feature = "webhook-tls")]
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for WebhookDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("WebhookDestination");
        d.field("host", &self.authority)
            .field("path", &self.uri.path())
            .field("timeout", &self.timeout)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"));
        #[cfg(feature = "webhook-tls")]
        d.field("tls", &self.tls.is_some());
        d.finish()
    }
}

impl WebhookDestination {
    /// Default deadline per request.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Posts to `url` (`http://host[:port]/path`, or `https://…` with the feature
    /// `webhook-tls`, trusting the Mozilla root store).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a URL that does not parse, has no host, carries credentials,
    /// or is neither `http` nor (with `webhook-tls`) `https`.
    pub fn new(url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .map_err(|_| Error::Config("webhook url does not parse".into()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") if cfg!(feature = "webhook-tls") => true,
            Some("https") => {
                return Err(Error::Config(
                    "webhook url is https:// but umanage-audit was built without the                      `webhook-tls` feature"
                        .into(),
                ));
            }
            _ => {
                return Err(Error::Config(
                    "webhook url must be http:// or https://".into(),
                ));
            }
        };
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(Error::Config(
                "webhook url must not carry credentials (use signing_secret)".into(),
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| Error::Config("webhook url has no host".into()))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = format!("{host}:{port}");
        Ok(Self {
            #[cfg(feature = "webhook-tls")]
            tls: https.then(|| tls_config(mozilla_roots())).transpose()?,
            uri,
            authority,
            timeout: Self::DEFAULT_TIMEOUT,
            secret: None,
        })
    }

    /// Trusts only the given CA certificates (DER) for an `https://` URL, instead of the
    /// Mozilla roots: a company CA, or a test's own.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the URL is not `https://`, no certificate is given, or one
    /// does not parse.
    #[cfg(feature = "webhook-tls")]
    pub fn with_root_certificates(
        mut self,
        ders: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<Self> {
        if self.tls.is_none() {
            return Err(Error::Config(
                "root certificates need an https:// webhook url".into(),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        for der in ders {
            roots
                .add(rustls::pki_types::CertificateDer::from(der))
                .map_err(|e| Error::Config(format!("webhook root certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(Error::Config("no webhook root certificate given".into()));
        }
        self.tls = Some(tls_config(roots)?);
        Ok(self)
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
        #[cfg(feature = "webhook-tls")]
        if let Some(tls) = &self.tls {
            let host = self.uri.host().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| fail(format!("tls server name: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, stream)
                .await
                .map_err(|e| fail(format!("tls: {e}")))?;
            return self.exchange(TokioIo::new(stream), body, key).await;
        }
        self.exchange(TokioIo::new(stream), body, key).await
    }

    /// One request/response over an established connection.
    async fn exchange<I>(&self, io: I, body: Vec<u8>, key: String) -> Result<()>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let fail = |reason: String| Error::Destination {
            destination: "webhook".into(),
            reason,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
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

/// The Mozilla root store of `webpki-roots`.
#[cfg(feature = "webhook-tls")]
fn mozilla_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

/// A TLS 1.2/1.3 client configuration on the `ring` provider, trusting `roots`.
#[cfg(feature = "webhook-tls")]
fn tls_config(roots: rustls::RootCertStore) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("webhook tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
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
        assert_eq!(
            WebhookDestination::new("https://x/y").is_ok(),
            cfg!(feature = "webhook-tls")
        );
        assert!(matches!(
            WebhookDestination::new("ftp://x/y"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            WebhookDestination::new("http://user:pw@x/y"),
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
