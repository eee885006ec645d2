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
