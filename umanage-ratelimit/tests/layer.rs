//! The tower layer end to end: `oneshot` requests through a service, checking statuses and
//! headers.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt};
use umanage_core::{
    ClientIpResolver, ForwardedHeader, IpKeyPolicy, ManualClock, RequestContext, UserId,
};
use umanage_ratelimit::key::KeyExtractor;
use umanage_ratelimit::{HeaderStyle, MemoryRateLimiter, PeerAddr, RateLimitLayer, RuleSet};

fn rules() -> RuleSet {
    toml::from_str(
        r#"
        [[rules]]
        name = "api"
        path = "/api/*"
        strategy = "gcra"
        limit = 60
        period = "1m"
        burst = 3

        [[rules]]
        name = "per-user"
        path = "/api/*"
        strategy = "fixed_window"
        limit = 100
        window = "1h"
        key = ["user"]

        [[rules]]
        name = "login"
        path = "/auth/login"
        methods = ["POST"]
        strategy = "sliding_log"
        limit = 1
        window = "1m"
        key = ["ip", "route"]
        "#,
    )
    .unwrap()
}

fn service(
    layer: &RateLimitLayer,
) -> impl Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone {
    layer.layer(tower::service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new("ok".to_owned()))
    }))
}

fn request(method: &str, path: &str, peer: &str) -> Request<String> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .body(String::new())
        .unwrap();
    req.extensions_mut()
        .insert(PeerAddr(peer.parse::<IpAddr>().unwrap()));
    req
}

fn header<'a>(res: &'a Response<String>, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

fn layer(style: HeaderStyle) -> RateLimitLayer {
    let clock = ManualClock::default();
    let store = Arc::new(MemoryRateLimiter::with_clock(clock.shared()));
    let extractor = KeyExtractor::new(
        ClientIpResolver::new(
            ["10.0.0.0/8".parse().unwrap()],
            ForwardedHeader::XForwardedFor,
        ),
        IpKeyPolicy::default(),
    );
    RateLimitLayer::builder(store, rules())
        .extractor(extractor)
        .headers(style)
        .build()
        .unwrap()
}

#[tokio::test]
async fn headers_then_429_with_retry_after() {
    let layer = layer(HeaderStyle::default());
    let svc = service(&layer);
    for remaining in [2, 1, 0] {
        let res = svc
            .clone()
            .oneshot(request("GET", "/api/items", "192.0.2.1"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.body(), "ok");
        // anonymous: the per-user rule does not apply
        assert_eq!(header(&res, "ratelimit-policy"), Some("\"api\";q=3;w=60"));
        let rl = header(&res, "ratelimit").unwrap();
        assert!(rl.starts_with(&format!("\"api\";r={remaining};t=")), "{rl}");
        assert_eq!(header(&res, "retry-after"), None);
        assert_eq!(
            header(&res, "x-ratelimit-limit"),
            None,
            "legacy off by default"
        );
    }
    let res = svc
        .clone()
        .oneshot(request("GET", "/api/items", "192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&res, "retry-after"),
        Some("1"),
        "one emission interval (1 s)"
    );
    // the default body: RFC 9457 problem+json
    assert_eq!(
        header(&res, "content-type"),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(problem["type"], "urn:umanage:problem:rate_limited");
    assert_eq!(problem["title"], "Too Many Requests");
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["retry_after"], 1);
    assert_eq!(problem["rule"], "api");
    assert_eq!(problem["limit"], 3);
    assert_eq!(problem["remaining"], 0);
    assert!(problem["detail"].as_str().unwrap().contains("\"api\""));
    assert_eq!(header(&res, "ratelimit-policy"), Some("\"api\";q=3;w=60"));
    assert!(
        header(&res, "ratelimit")
            .unwrap()
            .starts_with("\"api\";r=0;t=")
    );
    // another client is unaffected; unmatched paths carry no headers
    let res = svc
        .clone()
        .oneshot(request("GET", "/api/items", "192.0.2.2"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = svc
        .clone()
        .oneshot(request("GET", "/health", "192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "ratelimit"), None);
}

#[tokio::test]
async fn users_methods_and_legacy_headers() {
    let layer = layer(HeaderStyle {
        ietf: true,
        legacy: true,
    });
    let svc = service(&layer);
    let mut req = request("GET", "/api/x", "198.51.100.1");
    req.extensions_mut()
        .insert(RequestContext::new().with_user_id(UserId::new()));
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some("\"api\";q=3;w=60, \"per-user\";q=100;w=3600")
    );
    assert_eq!(header(&res, "x-ratelimit-limit"), Some("3"));
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("2"));
    assert!(header(&res, "x-ratelimit-reset").is_some());
    // login: POST only, one per minute
    let ok = svc
        .clone()
        .oneshot(request("POST", "/auth/login", "198.51.100.1"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let no = svc
        .clone()
        .oneshot(request("POST", "/auth/login", "198.51.100.1"))
        .await
        .unwrap();
    assert_eq!(no.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&no, "retry-after"), Some("60"));
    assert_eq!(header(&no, "x-ratelimit-remaining"), Some("0"));
    let get = svc
        .clone()
        .oneshot(request("GET", "/auth/login", "198.51.100.1"))
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(header(&get, "ratelimit"), None);
}

#[tokio::test]
async fn ipv6_networks_and_mapped_clients_share_keys() {
    let layer = layer(HeaderStyle::default());
    let svc = service(&layer);
    // three requests from one /64, from different addresses
    for peer in [
        "2001:db8:1:2::1",
        "2001:db8:1:2::ffff",
        "2001:db8:1:2:aaaa::9",
    ] {
        let res = svc
            .clone()
            .oneshot(request("GET", "/api/a", peer))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{peer}");
    }
    let res = svc
        .clone()
        .oneshot(request("GET", "/api/a", "2001:db8:1:2::77"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let res = svc
        .clone()
        .oneshot(request("GET", "/api/a", "2001:db8:1:3::1"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "another /64");
    // IPv4 and its IPv4-mapped form are one client; so is a client behind a trusted proxy
    for peer in ["203.0.113.7", "::ffff:203.0.113.7"] {
        let res = svc
            .clone()
            .oneshot(request("GET", "/api/a", peer))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let mut via_proxy = request("GET", "/api/a", "10.1.2.3");
    via_proxy
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
    assert_eq!(
        svc.clone().oneshot(via_proxy).await.unwrap().status(),
        StatusCode::OK
    );
    let res = svc
        .clone()
        .oneshot(request("GET", "/api/a", "::ffff:203.0.113.7"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // an untrusted peer's forwarded header is ignored
    let mut spoof = request("GET", "/api/a", "192.0.2.99");
    spoof
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.8".parse().unwrap());
    assert_eq!(
        svc.clone().oneshot(spoof).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn custom_rejection_handler() {
    let store = Arc::new(MemoryRateLimiter::new());
    let layer = RateLimitLayer::builder(store, rules())
        .on_reject(|r| {
            let mut res = Response::new(format!(
                "{{\"error\":\"slow down\",\"rule\":\"{}\",\"retry_after\":{}}}",
                r.rule,
                r.decision.retry_after.map_or(0, |d| d.as_secs())
            ));
            *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            res.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            res
        })
        .build()
        .unwrap();
    let svc = service(&layer);
    svc.clone()
        .oneshot(request("POST", "/auth/login", "192.0.2.5"))
        .await
        .unwrap();
    let res = svc
        .clone()
        .oneshot(request("POST", "/auth/login", "192.0.2.5"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "content-type"), Some("application/json"));
    assert!(res.body().contains("\"rule\":\"login\""), "{}", res.body());
    assert!(header(&res, "retry-after").is_some());
}

#[tokio::test]
async fn rejection_hook_with_request_parts() {
    let store = Arc::new(MemoryRateLimiter::new());
    let layer = RateLimitLayer::builder(store, rules())
        .on_reject_with(|parts, r| {
            let request_id = parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0.to_string());
            let mut problem = r.problem();
            problem["request_id"] = serde_json::json!(request_id);
            problem["peer"] = serde_json::json!(peer);
            problem["method"] = serde_json::json!(parts.method.as_str());
            problem["path"] = serde_json::json!(parts.uri.path());
            problem["key"] = serde_json::json!(r.key);
            let mut res = r.problem_response();
            *res.body_mut() = problem.to_string();
            res
        })
        .build()
        .unwrap();
    let svc = service(&layer);
    let call = |id: &str| {
        let mut req = request("POST", "/auth/login", "192.0.2.5");
        req.headers_mut()
            .insert("x-request-id", id.parse().unwrap());
        svc.clone().oneshot(req)
    };
    assert_eq!(call("a").await.unwrap().status(), StatusCode::OK);
    let res = call("req-42").await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), Some("60"));
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some("\"login\";q=1;w=60"),
        "headers added to the hook's response"
    );
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["request_id"], "req-42");
    assert_eq!(body["peer"], "192.0.2.5");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/auth/login");
    assert_eq!(body["key"], "login|ip=192.0.2.5/32|route=/auth/login");
    assert_eq!(body["retry_after"], 60);
}

#[tokio::test]
async fn async_rejection_hook_records_an_event() {
    #[derive(Debug, Clone, PartialEq)]
    struct Event {
        rule: String,
        key: String,
        path: String,
        limit: u64,
        retry_after: u64,
        applied: Vec<String>,
    }
    let events = Arc::new(tokio::sync::Mutex::new(Vec::<Event>::new()));
    let sink = Arc::clone(&events);
    let store = Arc::new(MemoryRateLimiter::with_clock(
        ManualClock::default().shared(),
    ));
    let layer = RateLimitLayer::builder(store, rules())
        .on_reject_async(move |parts, r| {
            let sink = Arc::clone(&sink);
            async move {
                // real async work before answering
                tokio::task::yield_now().await;
                sink.lock().await.push(Event {
                    rule: r.rule.clone(),
                    key: r.key.clone(),
                    path: parts.uri.path().to_owned(),
                    limit: r.decision.limit,
                    retry_after: r.retry_after_secs(),
                    applied: r.applied.iter().map(|a| a.rule.clone()).collect(),
                });
                let mut res = Response::new("audited".to_owned());
                *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                res
            }
        })
        .build()
        .unwrap();
    let svc = service(&layer);
    let user = UserId::new();
    let call = || {
        let mut req = request("GET", "/api/x", "198.51.100.9");
        req.extensions_mut()
            .insert(RequestContext::new().with_user_id(user));
        svc.clone().oneshot(req)
    };
    for _ in 0..3 {
        assert_eq!(call().await.unwrap().status(), StatusCode::OK);
    }
    assert!(events.lock().await.is_empty(), "no event while admitted");
    let res = call().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.body(), "audited");
    assert_eq!(header(&res, "retry-after"), Some("1"));
    let events = events.lock().await.clone();
    assert_eq!(
        events,
        vec![Event {
            rule: "api".into(),
            key: "api|ip=198.51.100.9/32".into(),
            path: "/api/x".into(),
            limit: 3,
            retry_after: 1,
            applied: vec!["api".into(), "per-user".into()],
        }]
    );
}

mod per_request_limits {
    use std::time::Duration;

    use chrono::{TimeZone, Utc};
    use umanage_ratelimit::adjust::{
        CountryCode, GeoAdjuster, GeoLimits, NetworkCountryResolver, NetworkLimits, TimeOfDay,
    };
    use umanage_ratelimit::tier::{StaticTierResolver, Tier, TierAdjuster, TierLimits, UserPlan};
    use umanage_ratelimit::{Error, Strategy};

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    async fn statuses<S>(svc: &S, n: usize, make: impl Fn() -> Request<String>) -> Vec<u16>
    where
        S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
    {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(svc.clone().oneshot(make()).await.unwrap().status().as_u16());
        }
        out
    }

    fn admitted(n: usize) -> Vec<u16> {
        let mut v = vec![200; n];
        v.push(429);
        v
    }

    #[tokio::test]
    async fn tiers_from_extensions_and_the_resolver() {
        let mut tiers = TierLimits::new(Strategy::gcra(60, MINUTE, 3).unwrap());
        tiers.premium = Some(Strategy::gcra(600, MINUTE, 10).unwrap());
        let resolver = Arc::new(StaticTierResolver::new());
        let (vip, plain) = (UserId::new(), UserId::new());
        resolver.set(
            vip,
            UserPlan {
                tier: Tier::Enterprise,
                custom: Some(Strategy::fixed_window(2, MINUTE).unwrap()),
            },
        );
        let store = Arc::new(MemoryRateLimiter::with_clock(
            ManualClock::default().shared(),
        ));
        let layer = RateLimitLayer::builder(store, rules())
            .adjust("api", TierAdjuster::new(tiers).with_resolver(resolver))
            .build()
            .unwrap();
        let svc = service(&layer);

        // anonymous: the default tier
        let res = svc
            .clone()
            .oneshot(request("GET", "/api/a", "192.0.2.10"))
            .await
            .unwrap();
        assert_eq!(header(&res, "ratelimit-policy"), Some("\"api\";q=3;w=60"));

        // a `Tier` extension from the host's auth layer
        let premium = || {
            let mut r = request("GET", "/api/a", "192.0.2.11");
            r.extensions_mut().insert(Tier::Premium);
            r
        };
        let res = svc.clone().oneshot(premium()).await.unwrap();
        assert_eq!(header(&res, "ratelimit-policy"), Some("\"api\";q=10;w=60"));
        assert!(
            header(&res, "ratelimit")
                .unwrap()
                .starts_with("\"api\";r=9;")
        );
        assert_eq!(statuses(&svc, 10, premium).await, admitted(9));

        // the resolver: a user with a custom limit (fixed window of 2)
        let as_user = |user: UserId, ip: &'static str| {
            move || {
                let mut r = request("GET", "/api/a", ip);
                r.extensions_mut()
                    .insert(RequestContext::new().with_user_id(user));
                r
            }
        };
        let res = svc
            .clone()
            .oneshot(as_user(vip, "192.0.2.12")())
            .await
            .unwrap();
        assert_eq!(
            header(&res, "ratelimit-policy"),
            Some("\"api\";q=2;w=60, \"per-user\";q=100;w=3600")
        );
        assert_eq!(
            statuses(&svc, 2, as_user(vip, "192.0.2.12")).await,
            admitted(1)
        );
        // a known user without a plan: default tier
        let res = svc
            .clone()
            .oneshot(as_user(plain, "192.0.2.13")())
            .await
            .unwrap();
        assert!(
            header(&res, "ratelimit-policy")
                .unwrap()
                .starts_with("\"api\";q=3;w=60")
        );
        // a `UserPlan` extension wins over the resolver
        let mut r = as_user(vip, "192.0.2.14")();
        r.extensions_mut().insert(UserPlan {
            tier: Tier::Premium,
            custom: None,
        });
        let res = svc.clone().oneshot(r).await.unwrap();
        assert!(
            header(&res, "ratelimit-policy")
                .unwrap()
                .starts_with("\"api\";q=10;w=60")
        );
    }

    #[tokio::test]
    async fn client_networks_and_countries() {
        let nets = NetworkLimits::new([
            (
                "10.0.0.0/8".parse().unwrap(),
                Strategy::gcra(6000, MINUTE, 50).unwrap(),
            ),
            (
                "203.0.113.0/24".parse().unwrap(),
                Strategy::gcra(1, MINUTE, 1).unwrap(),
            ),
        ]);
        let countries = NetworkCountryResolver::new([(
            "192.0.2.0/24".parse().unwrap(),
            CountryCode::new("DE").unwrap(),
        )]);
        let geo: GeoLimits =
            serde_json::from_str(r#"{"factors": {"DE": 2.0}, "default_factor": 1.0}"#).unwrap();
        let store = Arc::new(MemoryRateLimiter::with_clock(
            ManualClock::default().shared(),
        ));
        let layer = RateLimitLayer::builder(store, rules())
            .adjust("api", nets)
            .adjust("api", GeoAdjuster::new(geo, Arc::new(countries)))
            .build()
            .unwrap();
        let svc = service(&layer);
        let at = |ip: &'static str| move || request("GET", "/api/a", ip);
        let policy = |res: &Response<String>| header(res, "ratelimit-policy").unwrap().to_owned();

        let res = svc.clone().oneshot(at("10.1.2.3")()).await.unwrap();
        assert_eq!(policy(&res), "\"api\";q=50;w=60", "internal network");
        assert_eq!(statuses(&svc, 2, at("203.0.113.5")).await, admitted(1));
        let res = svc.clone().oneshot(at("203.0.113.5")()).await.unwrap();
        assert_eq!(policy(&res), "\"api\";q=1;w=60", "a restricted block");
        assert_eq!(header(&res, "retry-after"), Some("60"));
        // Germany: twice the rule's burst of 3; an IPv4-mapped client is the same client
        assert_eq!(statuses(&svc, 7, at("192.0.2.40")).await, admitted(6));
        let res = svc
            .clone()
            .oneshot(at("::ffff:192.0.2.40")())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(policy(&res), "\"api\";q=6;w=60");
        // elsewhere: the rule as configured
        assert_eq!(statuses(&svc, 4, at("198.51.100.70")).await, admitted(3));
    }

    #[tokio::test]
    async fn time_of_day_follows_the_injected_clock() {
        // Monday 2025-01-06 08:30 UTC = 09:30 in Berlin: office hours, a third of the limit
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2025, 1, 6, 8, 30, 0).unwrap());
        let tod: TimeOfDay = serde_json::from_str(
            r#"{"zone": "Europe/Berlin", "windows": [
                {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00", "factor": 0.34}
            ]}"#,
        )
        .unwrap();
        let store = Arc::new(MemoryRateLimiter::with_clock(clock.shared()));
        let layer = RateLimitLayer::builder(store, rules())
            .clock(clock.shared())
            .adjust("api", tod)
            .build()
            .unwrap();
        let svc = service(&layer);
        let make = || request("GET", "/api/a", "192.0.2.50");
        let res = svc.clone().oneshot(make()).await.unwrap();
        assert_eq!(header(&res, "ratelimit-policy"), Some("\"api\";q=1;w=60"));
        assert_eq!(
            svc.clone().oneshot(make()).await.unwrap().status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        // 19:00 in Berlin: the full limit again (and the earlier charge has drained)
        clock.set(Utc.with_ymd_and_hms(2025, 1, 6, 18, 0, 0).unwrap());
        let res = svc.clone().oneshot(make()).await.unwrap();
        assert_eq!(header(&res, "ratelimit-policy"), Some("\"api\";q=3;w=60"));
        assert_eq!(statuses(&svc, 3, make).await, admitted(2));
    }

    #[test]
    fn an_adjuster_for_an_unknown_rule_is_a_config_error() {
        let err = RateLimitLayer::builder(Arc::new(MemoryRateLimiter::new()), rules())
            .adjust("nope", NetworkLimits::default())
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(m) if m.contains("nope")));
    }
}
