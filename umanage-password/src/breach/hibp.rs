//! Have I Been Pwned "Pwned Passwords" range API client (feature `hibp`).
//!
//! k-anonymity: only the first 5 hex digits of the password's SHA-1 leave the process
//! (`GET {base_url}/range/{PREFIX}`); the service answers with every `SUFFIX:COUNT` in that
//! range and the match is found locally. The request carries `Add-Padding: true`, so the
//! response size does not reveal the range either; padding rows (count 0) are ignored.
//!
//! Transport: HTTP/1.1 over `hyper` and `hyper-util` on tokio. With the feature `hibp-tls`
//! (which the `umanage` facade's `hibp` feature turns on) `https://` URLs are spoken over
//! rustls (TLS 1.2/1.3, the `ring` provider) trusting the Mozilla root store shipped in
//! `webpki-roots`, so the default [`HIBP_API_URL`] works as it is; a private CA (a caching
//! mirror inside the company) is trusted instead with
//! [`HibpClient::with_root_certificates`]. Without `hibp-tls` no TLS stack is compiled in:
//! point [`HibpConfig::base_url`] at an `http://` endpoint you trust (a local mirror or an
//! egress proxy that does TLS), and an `https://` URL is refused by [`HibpClient::new`] with a
//! typed error rather than sent in clear. Plain `http://` stays allowed with TLS compiled in.
//!
//! Every failure (connect, timeout, HTTP status, malformed or oversized body) becomes
//! [`BreachStatus::Unavailable`] with the configured [`FailurePolicy`].

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use super::{BreachChecker, BreachStatus, FailurePolicy, UnavailableReason, sha1_hex};
use crate::error::{PasswordError, Result};
use crate::normalize::NormalizedPassword;

/// The public Pwned Passwords API (HTTPS; see the module docs about TLS).
pub const HIBP_API_URL: &str = "https://api.pwnedpasswords.com";
/// Default request timeout (connect, request and body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default cap on the response body (a padded range answer is about 40 KB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Configuration of [`HibpClient`] (serde, `deny_unknown_fields`, durations as `"2s"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HibpConfig {
    /// Base URL; requests go to `{base_url}/range/{prefix}`. Must be `http://` (module docs).
    pub base_url: String,
    /// Timeout of one check, from connect to the last body byte (1 ms to 60 s).
    #[serde(with = "umanage_core::duration")]
    pub timeout: Duration,
    /// What to report when the service cannot be used.
    pub failure_policy: FailurePolicy,
    /// `User-Agent` header (the API asks clients to identify themselves).
    pub user_agent: String,
    /// Largest accepted response body (at least 1 KiB).
    pub max_response_bytes: usize,
}

impl Default for HibpConfig {
    fn default() -> Self {
        Self {
            base_url: HIBP_API_URL.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            failure_policy: FailurePolicy::FailOpen,
            user_agent: concat!("umanage-password/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl HibpConfig {
    /// The defaults with another base URL.
    pub fn with_base_url(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            ..Self::default()
        }
    }
}

#[cfg(feature = "hibp-tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "hibp-tls"))]
type Connector = HttpConnector;

/// The range API client. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct HibpClient {
    client: Client<Connector, Empty<Bytes>>,
    base: String,
    config: HibpConfig,
}

impl std::fmt::Debug for HibpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HibpClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn config_error(reason: impl Into<String>) -> PasswordError {
    PasswordError::InvalidConfig {
        component: "hibp",
        reason: reason.into(),
    }
}

impl HibpClient {
    /// Validates `config` and creates the client (no connection is made yet). With
    /// `hibp-tls`, `https://` servers are verified against the Mozilla roots of
    /// `webpki-roots`.
    ///
    /// # Errors
    ///
    /// [`PasswordError::InvalidConfig`] for a base URL that does not parse, is not `http://`
    /// (or `https://` with the feature `hibp-tls`), has no host or carries credentials, a
    /// timeout outside
    /// 1 ms..=60 s, or a body cap under 1 KiB.
    pub fn new(config: HibpConfig) -> Result<Self> {
        #[cfg(feature = "hibp-tls")]
        {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Self::build(config, roots)
        }
        #[cfg(not(feature = "hibp-tls"))]
        {
            Self::build(config)
        }
    }

    /// Like [`new`](Self::new), but `https://` servers are verified against `roots_der`
    /// (DER-encoded X.509 CA certificates) **only**, instead of the public roots: for a
    /// mirror behind a private CA, and for tests against a local server.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and [`PasswordError::InvalidConfig`] when a certificate cannot
    /// be used as a trust anchor or none is given.
    #[cfg(feature = "hibp-tls")]
    pub fn with_root_certificates<I, C>(config: HibpConfig, roots_der: I) -> Result<Self>
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        let mut roots = rustls::RootCertStore::empty();
        for der in roots_der {
            roots
                .add(rustls::pki_types::CertificateDer::from(
                    der.as_ref().to_vec(),
                ))
                .map_err(|e| config_error(format!("root certificate not usable: {e}")))?;
        }
        if roots.is_empty() {
            return Err(config_error("no root certificate given"));
        }
        Self::build(config, roots)
    }

    fn build(
        config: HibpConfig,
        #[cfg(feature = "hibp-tls")] roots: rustls::RootCertStore,
    ) -> Result<Self> {
        let uri: http::Uri = config
            .base_url
            .parse()
            .map_err(|_| config_error("base_url is not a valid URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            #[cfg(feature = "hibp-tls")]
            Some("https") => {}
            #[cfg(not(feature = "hibp-tls"))]
            Some("https") => {
                return Err(config_error(
                    "https base_url needs TLS: enable the feature `hibp-tls`, or use an http:// mirror or proxy",
                ));
            }
            _ => return Err(config_error("base_url must start with http:// or https://")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(config_error("base_url has no host"));
        }
        // hyper never sends userinfo, and it would be shown by Debug: refuse it.
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(config_error(
                "base_url must not carry credentials (user:password@host)",
            ));
        }
        if uri.query().is_some() {
            return Err(config_error("base_url must not have a query"));
        }
        if config.timeout < Duration::from_millis(1) || config.timeout > Duration::from_secs(60) {
            return Err(config_error("timeout must be between 1ms and 60s"));
        }
        if config.max_response_bytes < 1024 {
            return Err(config_error("max_response_bytes must be at least 1024"));
        }
        if http::HeaderValue::from_str(&config.user_agent).is_err() {
            return Err(config_error("user_agent is not a valid header value"));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        connector.set_nodelay(true);
        #[cfg(feature = "hibp-tls")]
        let connector = {
            connector.enforce_http(false);
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| config_error(format!("TLS: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(connector)
        };
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            client,
            base: config.base_url.trim_end_matches('/').to_owned(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HibpConfig {
        &self.config
    }

    async fn fetch(&self, prefix: &str) -> std::result::Result<Bytes, UnavailableReason> {
        let request = http::Request::get(format!("{}/range/{prefix}", self.base))
            .header("Add-Padding", "true")
            .header(http::header::USER_AGENT, self.config.user_agent.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|_| UnavailableReason::InvalidResponse)?;
        let response = self.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                UnavailableReason::Connect
            } else {
                UnavailableReason::InvalidResponse
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(UnavailableReason::HttpStatus(status.as_u16()));
        }
        let body = Limited::new(response.into_body(), self.config.max_response_bytes)
            .collect()
            .await
            .map_err(|_| UnavailableReason::InvalidResponse)?;
        Ok(body.to_bytes())
    }
}

/// Finds `suffix` (35 upper-case hex digits) in a range response; padding rows (count 0)
/// never match.
fn find_in_range(body: &[u8], suffix: &str) -> std::result::Result<u64, UnavailableReason> {
    let text = std::str::from_utf8(body).map_err(|_| UnavailableReason::InvalidResponse)?;
    let mut found = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (candidate, count) = line
            .split_once(':')
            .ok_or(UnavailableReason::InvalidResponse)?;
        if candidate.len() != 35 || !candidate.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(UnavailableReason::InvalidResponse);
        }
        let count: u64 = count
            .trim()
            .parse()
            .map_err(|_| UnavailableReason::InvalidResponse)?;
        if count > 0 && candidate.eq_ignore_ascii_case(suffix) {
            found = count;
        }
    }
    Ok(found)
}

#[async_trait]
impl BreachChecker for HibpClient {
    #[tracing::instrument(name = "breach.hibp.check", skip_all)]
    async fn check(&self, password: &NormalizedPassword) -> BreachStatus {
        let hash = sha1_hex(password);
        let (prefix, suffix) = hash.split_at(5);
        let outcome = match tokio::time::timeout(self.config.timeout, self.fetch(prefix)).await {
            Err(_) => Err(UnavailableReason::Timeout),
            Ok(Err(reason)) => Err(reason),
            Ok(Ok(body)) => find_in_range(&body, suffix),
        };
        match outcome {
            Ok(0) => BreachStatus::NotFound,
            Ok(count) => BreachStatus::Breached { count },
            Err(reason) => {
                tracing::warn!(reason = reason.as_str(), "HIBP range check unavailable");
                BreachStatus::Unavailable {
                    policy: self.config.failure_policy,
                    reason,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_parsing() {
        let suffix = "1E4C9B93F3F0682250B6CF8331B7EE68FD8";
        let body = format!(
            "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n{}:3861493\r\n",
            suffix.to_lowercase()
        );
        assert_eq!(find_in_range(body.as_bytes(), suffix), Ok(3_861_493));
        let padded = format!("{suffix}:0\r\n");
        assert_eq!(find_in_range(padded.as_bytes(), suffix), Ok(0));
        assert_eq!(find_in_range(b"", suffix), Ok(0));
        for bad in [&b"garbage"[..], b"ABC:1", b"\xff\xfe", &[b'A'; 40][..]] {
            assert_eq!(
                find_in_range(bad, suffix),
                Err(UnavailableReason::InvalidResponse)
            );
        }
    }

    #[test]
    fn config_validation() {
        // the public HTTPS endpoint: usable with TLS compiled in, a typed error without
        #[cfg(not(feature = "hibp-tls"))]
        assert!(matches!(
            HibpClient::new(HibpConfig::default()),
            Err(PasswordError::InvalidConfig {
                component: "hibp",
                ..
            })
        ));
        #[cfg(feature = "hibp-tls")]
        {
            assert!(HibpClient::new(HibpConfig::default()).is_ok());
            let none: [&[u8]; 0] = [];
            assert!(HibpClient::with_root_certificates(HibpConfig::default(), none).is_err());
            assert!(
                HibpClient::with_root_certificates(HibpConfig::default(), [b"not DER".as_slice()])
                    .is_err()
            );
        }
        for bad in [
            "not a url",
            "ftp://x",
            "http://",
            "http://h/p?q=1",
            // credentials in the URL would be shown by Debug and are never sent anyway
            "http://user:secret@127.0.0.1:1",
            "http://token@mirror.internal/hibp",
        ] {
            assert!(
                HibpClient::new(HibpConfig::with_base_url(bad)).is_err(),
                "{bad}"
            );
        }
        let zero = HibpConfig {
            timeout: Duration::ZERO,
            ..HibpConfig::with_base_url("http://127.0.0.1:1")
        };
        assert!(HibpClient::new(zero).is_err());
        let cfg: HibpConfig = serde_json::from_str(
            r#"{"base_url": "http://mirror.internal/hibp", "timeout": "500ms", "failure_policy": "fail_closed"}"#,
        )
        .unwrap();
        assert_eq!(cfg.timeout, Duration::from_millis(500));
        assert!(serde_json::from_str::<HibpConfig>(r#"{"base":"x"}"#).is_err());
    }
}
