//! `RateLimitLayer`: rate limiting for tower / axum services (feature `tower`).
//!
//! For each request the layer finds the [`RuleSet`]'s matching rules, builds each rule's
//! key with the [`KeyExtractor`] (a rule whose key cannot be built, e.g. a per-user rule on
//! an anonymous request, does not apply), and checks them all at once (all or nothing).
//!
//! * Admitted: the request goes on; the response gets the IETF draft headers
//!   `RateLimit-Policy: "<rule>";q=<limit>;w=<window s>` (one item per applied rule) and
//!   `RateLimit: "<rule>";r=<remaining>;t=<reset s>` (the most restrictive rule), plus,
//!   if enabled, the legacy `X-RateLimit-Limit`, `X-RateLimit-Remaining`,
//!   `X-RateLimit-Reset` (seconds until reset).
//! * Rejected: the rejection handler's response (default: `429 Too Many Requests`, plain
//!   text) with the same headers and `Retry-After` (whole seconds, rounded up).
//! * Backend down: the [`FailurePolicy`] (the store is wrapped in a [`ResilientLimiter`]):
//!   fail open lets requests through, fallback checks a local memory limiter, fail closed
//!   rejects (the rejection response, `Retry-After` = the probe interval). Any other check
//!   error is logged and answered `503 Service Unavailable` under fail closed, passed
//!   through otherwise.
//!
//! The client address is the [`RequestContext`]'s (an extension set by an earlier layer),
//! else a [`PeerAddr`] or [`std::net::SocketAddr`] extension, resolved through the
//! extractor's trusted proxies. The user for `user` keys is the `RequestContext`'s.
//! `route` keys use the matching rule's path pattern.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use umanage_core::RequestContext;

use crate::error::Result;
use crate::key::{KeyExtractor, RequestInfo};
use crate::model::{Decision, RateLimitRule, RuleSet};
use crate::store::{Check, FailurePolicy, RateLimitStore, ResilientLimiter};

/// The client's TCP address, as an extension a host's accept loop inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub IpAddr);

/// Which rate-limit headers to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderStyle {
    /// `RateLimit-Policy` and `RateLimit` (default on).
    pub ietf: bool,
    /// `X-RateLimit-Limit/Remaining/Reset` (default off).
    pub legacy: bool,
}

impl Default for HeaderStyle {
    fn default() -> Self {
        Self {
            ietf: true,
            legacy: false,
        }
    }
}

/// What the rejection handler is told.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The rule that rejected (the most restrictive).
    pub rule: String,
    /// Its decision.
    pub decision: Decision,
}

type Handler = Arc<dyn Fn(&Rejection) -> Response<String> + Send + Sync>;

struct Shared {
    store: Arc<dyn RateLimitStore>,
    rules: RuleSet,
    extractor: KeyExtractor,
    headers: HeaderStyle,
    on_reject: Handler,
    policy: FailurePolicy,
}

/// The tower layer; see the [module docs](self).
#[derive(Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("rules", &self.shared.rules.rules().len())
            .field("headers", &self.shared.headers)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

/// Builder for [`RateLimitLayer`].
#[must_use]
pub struct RateLimitLayerBuilder {
    store: Arc<dyn RateLimitStore>,
    rules: RuleSet,
    extractor: KeyExtractor,
    headers: HeaderStyle,
    on_reject: Handler,
    policy: Option<(FailurePolicy, Duration)>,
}

impl fmt::Debug for RateLimitLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("rules", &self.rules.rules().len())
            .finish_non_exhaustive()
    }
}

impl RateLimitLayerBuilder {
    /// The key extractor (trusted proxies, IP networks).
    pub fn extractor(mut self, extractor: KeyExtractor) -> Self {
        self.extractor = extractor;
        self
    }

    /// Which headers to send.
    pub fn headers(mut self, headers: HeaderStyle) -> Self {
        self.headers = headers;
        self
    }

    /// The response for rejected requests (headers are added to it).
    pub fn on_reject(
        mut self,
        handler: impl Fn(&Rejection) -> Response<String> + Send + Sync + 'static,
    ) -> Self {
        self.on_reject = Arc::new(handler);
        self
    }

    /// Wraps the store in a [`ResilientLimiter`] with this policy and probe interval.
    pub fn failure_policy(mut self, policy: FailurePolicy, probe_interval: Duration) -> Self {
        self.policy = Some((policy, probe_interval));
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// [`crate::Error::InvalidConfig`] from the [`ResilientLimiter`] builder.
    pub fn build(self) -> Result<RateLimitLayer> {
        let (store, policy) = match self.policy {
            Some((policy, probe)) => {
                let r = ResilientLimiter::builder(self.store)
                    .policy(policy)
                    .probe_interval(probe)
                    .build()?;
                (Arc::new(r) as Arc<dyn RateLimitStore>, policy)
            }
            None => (self.store, FailurePolicy::FailOpen),
        };
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                store,
                rules: self.rules,
                extractor: self.extractor,
                headers: self.headers,
                on_reject: self.on_reject,
                policy,
            }),
        })
    }
}

fn default_rejection(_: &Rejection) -> Response<String> {
    let mut res = Response::new("rate limit exceeded\n".to_owned());
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

impl RateLimitLayer {
    /// A builder over `store` and `rules`. Without
    /// [`failure_policy`](RateLimitLayerBuilder::failure_policy), a failing backend lets
    /// requests through (fail open) and logs a warning.
    pub fn builder(store: Arc<dyn RateLimitStore>, rules: RuleSet) -> RateLimitLayerBuilder {
        RateLimitLayerBuilder {
            store,
            rules,
            extractor: KeyExtractor::default(),
            headers: HeaderStyle::default(),
            on_reject: Arc::new(default_rejection),
            policy: None,
        }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`RateLimitLayer`] produces.
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit").finish_non_exhaustive()
    }
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn policy_item(rule: &RateLimitRule) -> String {
    let s = rule.strategy();
    format!(
        "\"{}\";q={};w={}",
        rule.name(),
        s.capacity(),
        secs_ceil(s.window()).max(1)
    )
}

impl Shared {
    fn decorate<B>(&self, res: &mut Response<B>, applied: &[(&RateLimitRule, Decision)]) {
        let Some((rule, d)) = most_restrictive(applied) else {
            return;
        };
        let h = res.headers_mut();
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        };
        if self.headers.ietf {
            let policies: Vec<String> = applied.iter().map(|(r, _)| policy_item(r)).collect();
            put("ratelimit-policy", policies.join(", "));
            put(
                "ratelimit",
                format!(
                    "\"{}\";r={};t={}",
                    rule.name(),
                    d.remaining,
                    secs_ceil(d.reset_after)
                ),
            );
        }
        if self.headers.legacy {
            put("x-ratelimit-limit", d.limit.to_string());
            put("x-ratelimit-remaining", d.remaining.to_string());
            put("x-ratelimit-reset", secs_ceil(d.reset_after).to_string());
        }
        if !d.allowed
            && let Some(retry) = d.retry_after.or(Some(d.reset_after))
        {
            put("retry-after", secs_ceil(retry).max(1).to_string());
        }
    }
}

fn most_restrictive<'a>(
    applied: &[(&'a RateLimitRule, Decision)],
) -> Option<(&'a RateLimitRule, Decision)> {
    let best = Decision::most_restrictive(applied.iter().map(|(_, d)| d))?;
    applied
        .iter()
        .find(|(_, d)| *d == best)
        .map(|(r, d)| (*r, *d))
}

impl<S, ReqB, ResB> tower::Service<Request<ReqB>> for RateLimit<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: From<String> + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let keyed = keys_of(&shared, &req);
            if keyed.is_empty() {
                return inner.call(req).await;
            }
            let checks: Vec<Check<'_>> = keyed
                .iter()
                .map(|(rule, key)| Check {
                    key,
                    strategy: rule.strategy(),
                    cost: rule.cost(),
                })
                .collect();
            let decisions = match shared.store.check_all(&checks).await {
                Ok(d) => d,
                Err(err) => {
                    tracing::warn!(error = %err, "rate limit check failed");
                    if shared.policy == FailurePolicy::FailClosed {
                        let mut res =
                            Response::new(ResB::from("rate limiter unavailable\n".to_owned()));
                        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        res.headers_mut()
                            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                        return Ok(res);
                    }
                    return inner.call(req).await;
                }
            };
            let applied: Vec<(&RateLimitRule, Decision)> =
                keyed.iter().map(|(r, _)| *r).zip(decisions).collect();
            let allowed = applied.iter().all(|(_, d)| d.allowed);
            if allowed {
                let mut res = inner.call(req).await?;
                shared.decorate(&mut res, &applied);
                Ok(res)
            } else {
                let (rule, decision) =
                    most_restrictive(&applied).unwrap_or((applied[0].0, applied[0].1));
                let rejection = Rejection {
                    rule: rule.name().to_owned(),
                    decision,
                };
                let mut res = (shared.on_reject)(&rejection).map(ResB::from);
                shared.decorate(&mut res, &applied);
                Ok(res)
            }
        })
    }
}

fn keys_of<'a, B>(shared: &'a Shared, req: &Request<B>) -> Vec<(&'a RateLimitRule, String)> {
    let path = req.uri().path();
    let ext = req.extensions();
    let context = ext.get::<RequestContext>();
    let peer = ext
        .get::<PeerAddr>()
        .map(|p| p.0)
        .or_else(|| ext.get::<SocketAddr>().map(SocketAddr::ip));
    shared
        .rules
        .rules()
        .iter()
        .filter(|rule| rule.matches(req.method(), path))
        .filter_map(|rule| {
            let info = RequestInfo {
                method: req.method(),
                path,
                route: Some(rule.path().as_str()),
                headers: req.headers(),
                peer,
                context,
            };
            shared
                .extractor
                .key(rule.name(), rule.key(), &info)
                .map(|k| (rule, k))
        })
        .collect()
}
