//! `RateLimitLayer`: rate limiting for tower / axum services (feature `tower`).
//!
//! For each request the layer finds the [`RuleSet`]'s matching rules, builds each rule's
//! key with the [`KeyExtractor`] (a rule whose key cannot be built, e.g. a per-user rule on
//! an anonymous request, does not apply), decides each rule's strategy for this request
//! (the rule's own, changed by the rule's [`LimitAdjuster`]s: tiers, client networks,
//! countries, time of day; see [`adjust`](crate::adjust)), and checks them all at once
//! (all or nothing).
//!
//! * Admitted: the request goes on; the response gets the headers of the IETF draft
//!   `draft-ietf-httpapi-ratelimit-headers` (revisions 08 to 10):
//!   `RateLimit-Policy: "<rule>";q=<limit>;w=<window s>` (one item per applied rule, with
//!   the limit in force for this request) and `RateLimit: "<rule>";r=<remaining>;t=<reset
//!   s>` (the most restrictive rule), plus, if enabled, the legacy `X-RateLimit-Limit`,
//!   `X-RateLimit-Remaining`, `X-RateLimit-Reset` (seconds until reset).
//! * Rejected: the rejection hook's response with the same headers and `Retry-After`
//!   (whole seconds, rounded up). The default hook answers `429 Too Many Requests` with an
//!   RFC 9457 `application/problem+json` body ([`Rejection::problem`]). Hooks get the
//!   [`Rejection`] (rule, key, strategy, decision of every applied rule) and, with
//!   [`on_reject_with`](RateLimitLayerBuilder::on_reject_with) /
//!   [`on_reject_async`](RateLimitLayerBuilder::on_reject_async), the request's
//!   [`Parts`] (method, URI, headers, extensions); the async hook can do async work (an
//!   audit event) before answering.
//! * Backend down: the [`FailurePolicy`] (the store is wrapped in a [`ResilientLimiter`]):
//!   fail open lets requests through, fallback checks a local memory limiter, fail closed
//!   rejects (the rejection hook, with [`Rejection::backend_degraded`] set and
//!   `Retry-After` = the probe interval). Any other check error is logged and answered
//!   `503 Service Unavailable` (problem+json) under fail closed, passed through otherwise.
//!
//! The client address is the [`RequestContext`]'s (an extension set by an earlier layer),
//! else a [`PeerAddr`] or [`std::net::SocketAddr`] extension, resolved through the
//! extractor's trusted proxies. The user for `user` keys is the `RequestContext`'s.
//! `route` keys use the matching rule's path pattern.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use umanage_ratelimit::adjust::TimeOfDay;
//! use umanage_ratelimit::tier::{TierAdjuster, TierLimits};
//! use umanage_ratelimit::{MemoryRateLimiter, RateLimitLayer, RateLimitRule, RuleSet, Strategy};
//!
//! let minute = Duration::from_secs(60);
//! let rules = RuleSet::new(vec![
//!     RateLimitRule::new("api", "/api/*", Strategy::gcra(60, minute, 10).unwrap()).unwrap(),
//! ]).unwrap();
//! let mut tiers = TierLimits::new(Strategy::gcra(60, minute, 10).unwrap());
//! tiers.premium = Some(Strategy::gcra(600, minute, 100).unwrap());
//! let night: TimeOfDay = serde_json::from_str(
//!     r#"{"zone": "Europe/Berlin", "windows": [{"start": "22:00", "end": "06:00", "factor": 2.0}]}"#,
//! ).unwrap();
//! let layer = RateLimitLayer::builder(Arc::new(MemoryRateLimiter::new()), rules)
//!     .adjust("api", TierAdjuster::new(tiers)) // tier from a `Tier` request extension
//!     .adjust("api", night)                    // then doubled at night
//!     .on_reject_async(|parts, rejection| async move {
//!         // e.g. record an audit event with parts.uri and rejection.key here
//!         let _ = (parts.method, &rejection.rule);
//!         rejection.problem_response()
//!     })
//!     .build()
//!     .unwrap();
//! # let _ = layer;
//! ```

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use umanage_core::{RequestContext, SharedClock, SystemClock};

use crate::adjust::{LimitAdjuster, LimitRequest};
use crate::error::{Error, Result};
use crate::key::{KeyExtractor, RequestInfo};
use crate::model::{Decision, RuleSet, Strategy};
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

/// One rule applied to a request: its key, the strategy in force and its decision.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AppliedRule {
    /// The rule's name.
    pub rule: String,
    /// The limited key (client network, user, hashed API key...; never a secret).
    pub key: String,
    /// The strategy applied to this request (after the rule's adjusters).
    pub strategy: Strategy,
    /// The decision.
    pub decision: Decision,
}

/// What a rejection hook is told.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Rejection {
    /// The rule that rejected (the most restrictive).
    pub rule: String,
    /// Its key.
    pub key: String,
    /// Its strategy for this request.
    pub strategy: Strategy,
    /// Its decision (`limit`, `remaining`, `reset_after`, `retry_after`).
    pub decision: Decision,
    /// Every rule applied to the request, in rule order (the rejecting one included).
    pub applied: Vec<AppliedRule>,
    /// True when the rejection comes from the fail-closed policy while the backend is
    /// unavailable, not from a limit being reached.
    pub backend_degraded: bool,
}

/// The problem type URI of the default rejection body.
pub const PROBLEM_TYPE: &str = "urn:umanage:problem:rate_limited";

impl Rejection {
    /// `Retry-After` in whole seconds (rounded up, at least 1): the decision's
    /// `retry_after`, else its `reset_after`.
    pub fn retry_after_secs(&self) -> u64 {
        secs_ceil(
            self.decision
                .retry_after
                .unwrap_or(self.decision.reset_after),
        )
        .max(1)
    }

    /// The RFC 9457 problem object of the default response: `type` ([`PROBLEM_TYPE`]),
    /// `title`, `status` (429), `detail`, and the extension members `retry_after`
    /// (seconds), `rule`, `limit` and `remaining`. A host can add members (a request id)
    /// and answer with it.
    pub fn problem(&self) -> serde_json::Value {
        let detail = if self.backend_degraded {
            "the rate limiter is unavailable; retry later".to_owned()
        } else {
            format!(
                "rate limit {:?} exceeded; retry in {} s",
                self.rule,
                self.retry_after_secs()
            )
        };
        serde_json::json!({
            "type": PROBLEM_TYPE,
            "title": "Too Many Requests",
            "status": StatusCode::TOO_MANY_REQUESTS.as_u16(),
            "detail": detail,
            "retry_after": self.retry_after_secs(),
            "rule": self.rule,
            "limit": self.decision.limit,
            "remaining": self.decision.remaining,
        })
    }

    /// The default rejection response: `429`, `application/problem+json`, the body of
    /// [`problem`](Self::problem). (The layer adds `Retry-After` and the rate-limit
    /// headers to whatever a hook returns.)
    pub fn problem_response(&self) -> Response<String> {
        problem_response(StatusCode::TOO_MANY_REQUESTS, &self.problem())
    }
}

fn problem_response(status: StatusCode, problem: &serde_json::Value) -> Response<String> {
    let mut res = Response::new(problem.to_string());
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

type RejectFuture = Pin<Box<dyn Future<Output = Response<String>> + Send>>;
type Handler = Arc<dyn Fn(Parts, Rejection) -> RejectFuture + Send + Sync>;

struct Shared {
    store: Arc<dyn RateLimitStore>,
    resilient: Option<Arc<ResilientLimiter>>,
    rules: RuleSet,
    adjusters: Vec<Vec<Arc<dyn LimitAdjuster>>>,
    extractor: KeyExtractor,
    headers: HeaderStyle,
    on_reject: Handler,
    policy: FailurePolicy,
    clock: SharedClock,
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
    adjusters: Vec<(String, Arc<dyn LimitAdjuster>)>,
    extractor: KeyExtractor,
    headers: HeaderStyle,
    on_reject: Handler,
    policy: Option<(FailurePolicy, Duration)>,
    clock: SharedClock,
}

impl fmt::Debug for RateLimitLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("rules", &self.rules.rules().len())
            .field("adjusters", &self.adjusters)
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

    /// The clock adjusters see as [`LimitRequest::now`] (time-of-day windows) and the
    /// failure policy's probe interval uses (default: the system clock). The limits
    /// themselves run on the store's time.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Adds an adjuster to the rule named `rule`; a rule's adjusters run in the order
    /// added, each on the strategy the previous one returned (put a tier, which replaces
    /// the strategy, before factors such as time of day). An adjuster that fails is
    /// logged and skipped.
    pub fn adjust(mut self, rule: &str, adjuster: impl LimitAdjuster + 'static) -> Self {
        self.adjusters.push((rule.to_owned(), Arc::new(adjuster)));
        self
    }

    /// A synchronous rejection hook that sees only the [`Rejection`] (the rate-limit
    /// headers are added to its response).
    pub fn on_reject(
        mut self,
        handler: impl Fn(&Rejection) -> Response<String> + Send + Sync + 'static,
    ) -> Self {
        self.on_reject = Arc::new(move |_parts, rejection| {
            let res = handler(&rejection);
            Box::pin(std::future::ready(res))
        });
        self
    }

    /// A synchronous rejection hook that also sees the request's method, URI, headers and
    /// extensions (a request id, the client address).
    pub fn on_reject_with(
        mut self,
        handler: impl Fn(&Parts, &Rejection) -> Response<String> + Send + Sync + 'static,
    ) -> Self {
        self.on_reject = Arc::new(move |parts, rejection| {
            let res = handler(&parts, &rejection);
            Box::pin(std::future::ready(res))
        });
        self
    }

    /// An async rejection hook: gets the rejected request's parts (by value: the request
    /// goes no further) and the [`Rejection`], and may await (record an audit event)
    /// before answering.
    pub fn on_reject_async<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Parts, Rejection) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<String>> + Send + 'static,
    {
        self.on_reject = Arc::new(move |parts, rejection| Box::pin(handler(parts, rejection)));
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
    /// [`Error::InvalidConfig`] from the [`ResilientLimiter`] builder, or for an adjuster
    /// of a rule the rule set does not have.
    pub fn build(self) -> Result<RateLimitLayer> {
        let mut adjusters: Vec<Vec<Arc<dyn LimitAdjuster>>> =
            vec![Vec::new(); self.rules.rules().len()];
        for (name, adjuster) in self.adjusters {
            let i = self
                .rules
                .rules()
                .iter()
                .position(|r| r.name() == name)
                .ok_or_else(|| {
                    Error::InvalidConfig(format!("adjuster for unknown rule {name:?}"))
                })?;
            adjusters[i].push(adjuster);
        }
        let (store, resilient, policy) = match self.policy {
            Some((policy, probe)) => {
                let r = Arc::new(
                    ResilientLimiter::builder(self.store)
                        .policy(policy)
                        .probe_interval(probe)
                        .clock(Arc::clone(&self.clock))
                        .build()?,
                );
                (Arc::clone(&r) as Arc<dyn RateLimitStore>, Some(r), policy)
            }
            None => (self.store, None, FailurePolicy::FailOpen),
        };
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                store,
                resilient,
                rules: self.rules,
                adjusters,
                extractor: self.extractor,
                headers: self.headers,
                on_reject: self.on_reject,
                policy,
                clock: self.clock,
            }),
        })
    }
}

impl RateLimitLayer {
    /// A builder over `store` and `rules`. Without
    /// [`failure_policy`](RateLimitLayerBuilder::failure_policy), a failing backend lets
    /// requests through (fail open) and logs a warning.
    pub fn builder(store: Arc<dyn RateLimitStore>, rules: RuleSet) -> RateLimitLayerBuilder {
        RateLimitLayerBuilder {
            store,
            rules,
            adjusters: Vec::new(),
            extractor: KeyExtractor::default(),
            headers: HeaderStyle::default(),
            on_reject: Arc::new(|_parts, rejection: Rejection| {
                Box::pin(std::future::ready(rejection.problem_response()))
            }),
            policy: None,
            clock: SystemClock::shared(),
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

fn policy_item(a: &AppliedRule) -> String {
    format!(
        "\"{}\";q={};w={}",
        a.rule,
        a.strategy.capacity(),
        secs_ceil(a.strategy.window()).max(1)
    )
}

impl Shared {
    fn decorate<B>(&self, res: &mut Response<B>, applied: &[AppliedRule]) {
        let Some(a) = most_restrictive(applied) else {
            return;
        };
        let d = a.decision;
        let h = res.headers_mut();
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        };
        if self.headers.ietf {
            let policies: Vec<String> = applied.iter().map(policy_item).collect();
            put("ratelimit-policy", policies.join(", "));
            put(
                "ratelimit",
                format!(
                    "\"{}\";r={};t={}",
                    a.rule,
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
        if !d.allowed {
            let retry = d.retry_after.unwrap_or(d.reset_after);
            put("retry-after", secs_ceil(retry).max(1).to_string());
        }
    }

    /// The store itself: calling through `&Arc<dyn RateLimitStore>` would pick the `Arc`
    /// forwarding impl and box every call's future twice.
    fn backend(&self) -> &dyn RateLimitStore {
        &*self.store
    }

    fn client_ip(&self, parts: &Parts) -> Option<IpAddr> {
        let info = request_info(parts, None);
        self.extractor.client_ip(&info)
    }

    /// The strategy of rule `i` for this request, after its adjusters.
    async fn strategy_for(&self, i: usize, req: &LimitRequest<'_>) -> Strategy {
        let mut strategy = *req.rule.strategy();
        for adjuster in &self.adjusters[i] {
            // through `&dyn`, not the `Arc` forwarding impl (one boxed future, not two)
            let adjuster: &dyn LimitAdjuster = &**adjuster;
            match adjuster.adjust(strategy, req).await {
                Ok(s) => strategy = s,
                Err(err) => tracing::warn!(
                    rule = req.rule.name(),
                    error = %err,
                    "rate limit adjuster failed; keeping the strategy before it"
                ),
            }
        }
        strategy
    }
}

fn most_restrictive(applied: &[AppliedRule]) -> Option<&AppliedRule> {
    let best = Decision::most_restrictive(applied.iter().map(|a| &a.decision))?;
    applied.iter().find(|a| a.decision == best)
}

fn request_info<'a>(parts: &'a Parts, route: Option<&'a str>) -> RequestInfo<'a> {
    let ext = &parts.extensions;
    RequestInfo {
        method: &parts.method,
        path: parts.uri.path(),
        route,
        headers: &parts.headers,
        peer: ext
            .get::<PeerAddr>()
            .map(|p| p.0)
            .or_else(|| ext.get::<SocketAddr>().map(SocketAddr::ip)),
        context: ext.get::<RequestContext>(),
    }
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
            let (parts, body) = req.into_parts();
            let keyed = keys_of(&shared, &parts);
            if keyed.is_empty() {
                return inner.call(Request::from_parts(parts, body)).await;
            }
            let now = shared.clock.now();
            let client_ip = shared.client_ip(&parts);
            let user = parts
                .extensions
                .get::<RequestContext>()
                .and_then(|c| c.user_id);
            let mut strategies = Vec::with_capacity(keyed.len());
            for (i, _) in &keyed {
                let rule = &shared.rules.rules()[*i];
                let req = LimitRequest {
                    rule,
                    parts: &parts,
                    client_ip,
                    user,
                    now,
                };
                strategies.push(shared.strategy_for(*i, &req).await);
            }
            let checks: Vec<Check<'_>> = keyed
                .iter()
                .zip(&strategies)
                .map(|((i, key), strategy)| Check {
                    key,
                    strategy,
                    cost: shared.rules.rules()[*i].cost(),
                })
                .collect();
            let decisions = match shared.backend().check_all(&checks).await {
                Ok(d) => d,
                Err(err) => {
                    tracing::warn!(error = %err, "rate limit check failed");
                    if shared.policy == FailurePolicy::FailClosed {
                        let problem = serde_json::json!({
                            "type": "urn:umanage:problem:rate_limiter_unavailable",
                            "title": "Service Unavailable",
                            "status": 503,
                            "detail": "the rate limiter is unavailable; retry later",
                            "retry_after": 1,
                        });
                        let mut res = problem_response(StatusCode::SERVICE_UNAVAILABLE, &problem)
                            .map(ResB::from);
                        res.headers_mut()
                            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                        return Ok(res);
                    }
                    return inner.call(Request::from_parts(parts, body)).await;
                }
            };
            drop(checks);
            let applied: Vec<AppliedRule> = keyed
                .into_iter()
                .zip(strategies)
                .zip(decisions)
                .map(|(((i, key), strategy), decision)| AppliedRule {
                    rule: shared.rules.rules()[i].name().to_owned(),
                    key,
                    strategy,
                    decision,
                })
                .collect();
            if applied.iter().all(|a| a.decision.allowed) {
                let mut res = inner.call(Request::from_parts(parts, body)).await?;
                shared.decorate(&mut res, &applied);
                return Ok(res);
            }
            drop(body);
            // `applied` is not empty (one entry per key), so the fallback is never used
            let worst = most_restrictive(&applied).unwrap_or(&applied[0]).clone();
            let rejection = Rejection {
                rule: worst.rule,
                key: worst.key,
                strategy: worst.strategy,
                decision: worst.decision,
                applied,
                backend_degraded: shared.resilient.as_ref().is_some_and(|r| r.is_degraded()),
            };
            let applied = rejection.applied.clone();
            let mut res = (shared.on_reject)(parts, rejection).await.map(ResB::from);
            shared.decorate(&mut res, &applied);
            Ok(res)
        })
    }
}

fn keys_of(shared: &Shared, parts: &Parts) -> Vec<(usize, String)> {
    shared
        .rules
        .rules()
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.matches(&parts.method, parts.uri.path()))
        .filter_map(|(i, rule)| {
            let info = request_info(parts, Some(rule.path().as_str()));
            shared
                .extractor
                .key(rule.name(), rule.key(), &info)
                .map(|k| (i, k))
        })
        .collect()
}
