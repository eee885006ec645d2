//! A first look at umanage's shared building blocks, with no services needed.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! It resolves a client address behind a trusted proxy, turns it into a rate-limit key,
//! and counts failed logins per client network in a fixed window on the in-memory
//! key-value store, moving time with a manual clock.

use std::net::IpAddr;
use std::time::Duration;

use umanage::core::kv::{KvStore, MemoryKvStore};
use umanage::{ClientIpResolver, IpKeyPolicy, ManualClock, RequestContext};

const MAX_FAILURES: i64 = 3;
const WINDOW: Duration = Duration::from_secs(15 * 60);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A reverse proxy on 10.0.0.0/8 forwards requests and sets X-Forwarded-For.
    let resolver: ClientIpResolver = serde_json::from_str(
        r#"{ "trusted_proxies": ["10.0.0.0/8"], "header": "x-forwarded-for" }"#,
    )?;
    let mut headers = http::HeaderMap::new();
    headers.insert("x-forwarded-for", "6.6.6.6, 2001:db8:1:2::42".parse()?);
    let peer: IpAddr = "10.0.0.7".parse()?;
    let client = resolver.resolve(peer, &headers);
    println!("peer {peer} forwarded for {client}");

    let ctx = RequestContext::new()
        .with_client_ip(client)
        .with_request_id("req-1");

    // The same /64 is one client, whichever address of it they use.
    let policy = IpKeyPolicy::default();
    let key = policy.key(ctx.client_ip.ok_or("no client ip")?);
    println!("rate-limit key: {key}");

    let clock = ManualClock::default();
    let failures = MemoryKvStore::with_clock(clock.shared());
    for attempt in 1..=4 {
        let count = failures.increment(&key, 1, WINDOW).await?;
        let verdict = if count > MAX_FAILURES {
            "blocked"
        } else {
            "allowed"
        };
        println!("failed login #{attempt} from {key}: {verdict} ({count}/{MAX_FAILURES})");
    }
    clock.advance(WINDOW);
    let count = failures.increment(&key, 1, WINDOW).await?;
    println!("15 minutes later the window has restarted: {count}/{MAX_FAILURES}");
    Ok(())
}
