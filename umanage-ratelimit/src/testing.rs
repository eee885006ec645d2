//! The conformance suite of [`RateLimitStore`] (feature `testing`).
//!
//! Plain `async fn`s over a [`LimiterHarness`], stamped out per backend by
//! [`ratelimit_conformance!`](crate::ratelimit_conformance):
//!
//! ```text
//! mod memory {
//!     async fn harness() -> Option<umanage_ratelimit::testing::LimiterHarness> {
//!         Some(umanage_ratelimit::testing::memory_harness())
//!     }
//!     umanage_ratelimit::ratelimit_conformance!(harness);
//! }
//! ```
//!
//! Every case panics when the backend breaks the contract of [`RateLimitStore`].
//!
//! * With a manual clock (memory), decisions are compared **exactly** with the
//!   [reference model](crate::model::reference) on seeded pseudo-random sequences.
//! * With server time (Redis), fixed sequences are run whose timing has slack: every
//!   check happens well away from a window or refill boundary, and the model is run on the
//!   nominal times (aligned to the server's window phase, read from the first decision),
//!   comparing `allowed`, `remaining` and whether a retry is possible.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::many_single_char_names
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use umanage_core::testkit::{Harness, TimeControl};

use crate::model::Micros;
use crate::model::reference::ReferenceModel;
use crate::{Check, Decision, Error, RateLimitStore, Strategy, StrategyKind};

/// What every case receives.
pub type LimiterHarness = Harness<dyn RateLimitStore>;

/// A harness over a memory limiter on a fresh manual clock (small shards, so eviction
/// paths run).
#[cfg(feature = "memory")]
pub fn memory_harness() -> LimiterHarness {
    let clock = umanage_core::ManualClock::default();
    let store = crate::MemoryRateLimiter::builder()
        .clock(clock.shared())
        .shards(4)
        .max_keys(4096)
        .sweep_every(64)
        .build()
        .unwrap();
    Harness::new(Arc::new(store), TimeControl::Manual(clock))
}

/// The harness's clock reading, when it has a manual clock.
fn manual_now(h: &LimiterHarness) -> Option<Micros> {
    match &h.time {
        TimeControl::Manual(clock) => {
            use umanage_core::Clock as _;
            Some(clock.now().timestamp_micros())
        }
        TimeControl::Real => None,
    }
}

/// Stamps out every case for `$setup`, an `async fn() -> Option<LimiterHarness>`.
#[macro_export]
macro_rules! ratelimit_conformance {
    ($setup:path) => {
        umanage_core::conformance_tests!(
            $setup;
            $crate::testing;
            agrees_with_the_model,
            rejected_requests_charge_nothing,
            check_all_is_all_or_nothing,
            strategies_of_one_key_are_independent,
            concurrent_callers_never_exceed_the_bound,
            invalid_input_is_a_typed_error,
            oversized_costs_can_never_pass,
        );
    };
}

/// One strategy of each kind, sized for real-time runs (`unit` is the window).
pub fn strategies(unit: Duration) -> Vec<Strategy> {
    vec![
        Strategy::fixed_window(4, unit).unwrap(),
        Strategy::sliding_log(4, unit).unwrap(),
        Strategy::sliding_counter(4, unit).unwrap(),
        Strategy::token_bucket(2, unit / 2, 4).unwrap(),
        Strategy::leaky_bucket(4, unit, 4).unwrap(),
        Strategy::gcra(4, unit, 4).unwrap(),
    ]
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

fn key(name: &str) -> String {
    format!("{name}-{}", UNIQUE.fetch_add(1, Ordering::Relaxed))
}

/// A small deterministic generator (xorshift), so sequences are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Decisions match the reference model: exactly on random sequences under a manual clock;
/// on fixed sequences with slack under server time.
pub async fn agrees_with_the_model(h: &LimiterHarness) {
    if manual_now(h).is_some() {
        model_random(h).await;
    } else {
        for s in strategies(Duration::from_millis(600)) {
            model_fixed(h, &s).await;
        }
    }
}

async fn model_random(h: &LimiterHarness) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..60 {
        let kind = StrategyKind::ALL[round % 6];
        let limit = 1 + rng.below(6);
        let window = Duration::from_millis(1 + rng.below(2000));
        let mut b = Strategy::builder(kind).limit(limit).window(window);
        if kind.code() >= 4 {
            b = b.burst(1 + rng.below(8));
        }
        let s = b.build().unwrap();
        let keys: Vec<String> = (0..2).map(|_| key("rand")).collect();
        let mut models = vec![ReferenceModel::new(s); 2];
        let w = s.window_us().max(1) as u64;
        for step in 0..80 {
            let advance = match rng.below(4) {
                0 => 0,
                1 => rng.below(w / 4 + 1),
                2 => rng.below(w + 1),
                _ => rng.below(3 * w),
            };
            h.time.advance(Duration::from_micros(advance)).await;
            let now = manual_now(h).unwrap();
            let k = rng.below(2) as usize;
            let cost = 1 + rng.below(3) as u32;
            let got = h.store.check(&keys[k], &s, cost).await.unwrap();
            let want = models[k].check(now, cost);
            assert_eq!(got, want, "round {round} step {step} {s:?} cost {cost}");
        }
    }
}

/// Runs one fixed real-time sequence against the model.
async fn model_fixed(h: &LimiterHarness, s: &Strategy) {
    let w = s.window_us();
    let k = key("fixed");
    let mut model = ReferenceModel::new(*s);
    // Probe the server's window phase with a throw-away key, then start at phase 0.3.
    let windowed = matches!(
        s.kind(),
        StrategyKind::FixedWindow | StrategyKind::SlidingCounter
    );
    let mut t: Micros = 1_000 * w;
    if windowed {
        let probe = h.store.check(&key("probe"), s, 1).await.unwrap();
        let to_end = probe.reset_after.as_micros() as Micros;
        let wait = to_end + w * 3 / 10;
        h.time.advance(Duration::from_micros(wait as u64)).await;
        t += w * 3 / 10;
    }
    let steps: &[(Micros, u32, u32)] = &[
        // (sleep before, requests, cost)
        (0, 6, 1),
        (w / 2, 3, 1),
        (w / 2, 3, 1),
        (w, 2, 2),
        (2 * w, 6, 1),
        (0, 1, 5),
    ];
    for (i, &(sleep, n, cost)) in steps.iter().enumerate() {
        if sleep > 0 {
            h.time.advance(Duration::from_micros(sleep as u64)).await;
            t += sleep;
        }
        for j in 0..n {
            let got = h.store.check(&k, s, cost).await.unwrap();
            let want = model.check(t, cost);
            assert_eq!(
                (
                    got.allowed,
                    got.remaining,
                    got.retry_after.is_some(),
                    got.limit
                ),
                (
                    want.allowed,
                    want.remaining,
                    want.retry_after.is_some(),
                    want.limit
                ),
                "{s:?} step {i} request {j}: got {got:?}, model {want:?}"
            );
        }
    }
}

/// Hammering a limited key does not delay its recovery, for every strategy.
pub async fn rejected_requests_charge_nothing(h: &LimiterHarness) {
    for s in strategies(Duration::from_secs(600)) {
        let k = key("rej");
        let cap = s.capacity();
        for _ in 0..cap {
            assert!(h.store.check(&k, &s, 1).await.unwrap().allowed, "{s:?}");
        }
        let first = h.store.check(&k, &s, 1).await.unwrap();
        assert!(!first.allowed, "{s:?}");
        assert_eq!(first.remaining, 0, "{s:?}");
        for _ in 0..20 {
            let again = h.store.check(&k, &s, 1).await.unwrap();
            assert!(!again.allowed);
            assert!(
                again.retry_after <= first.retry_after,
                "{s:?}: retrying pushed recovery away: {again:?} after {first:?}"
            );
        }
    }
}

/// If one check of a batch is rejected, none is charged.
pub async fn check_all_is_all_or_nothing(h: &LimiterHarness) {
    let hour = Duration::from_secs(3600);
    for s in strategies(hour) {
        let tight = s.with_limit(1);
        let tight = if tight.capacity() > 1 {
            Strategy::builder(tight.kind())
                .limit(1)
                .window(tight.window())
                .burst(1)
                .build()
                .unwrap()
        } else {
            tight
        };
        let (a, b) = (key("all-a"), key("all-b"));
        let batch = [Check::new(&a, &tight), Check::new(&b, &s)];
        let first = h.store.check_all(&batch).await.unwrap();
        assert!(first.iter().all(|d| d.allowed), "{first:?}");
        assert_eq!(first[1].remaining, s.capacity() - 1);
        for _ in 0..3 {
            let again = h.store.check_all(&batch).await.unwrap();
            assert!(!again[0].allowed, "{again:?}");
            assert!(again[1].allowed, "b alone would pass: {again:?}");
            // what admitting it would have left, not a second charge
            assert_eq!(
                again[1].remaining,
                s.capacity() - 2,
                "b was charged: {again:?}"
            );
        }
        let b_alone = h.store.check(&b, &s, 1).await.unwrap();
        assert!(b_alone.allowed);
        assert_eq!(b_alone.remaining, s.capacity() - 2, "{s:?}");
    }
    let s = Strategy::gcra(1, hour, 1).unwrap();
    let k = key("dup");
    assert!(matches!(
        h.store
            .check_all(&[Check::new(&k, &s), Check::new(&k, &s)])
            .await,
        Err(Error::DuplicateCheck)
    ));
}

/// The same key under two kinds is two independent states.
pub async fn strategies_of_one_key_are_independent(h: &LimiterHarness) {
    let k = key("indep");
    let hour = Duration::from_secs(3600);
    let fw = Strategy::fixed_window(1, hour).unwrap();
    let g = Strategy::gcra(1, hour, 1).unwrap();
    assert!(h.store.check(&k, &fw, 1).await.unwrap().allowed);
    assert!(!h.store.check(&k, &fw, 1).await.unwrap().allowed);
    assert!(h.store.check(&k, &g, 1).await.unwrap().allowed);
}

/// 64 concurrent callers on one key never get more than the strategy's bound admitted.
pub async fn concurrent_callers_never_exceed_the_bound(h: &LimiterHarness) {
    for s in strategies(Duration::from_secs(3600))
        .into_iter()
        .map(|s| s.with_limit(20))
    {
        let k = Arc::new(key("conc"));
        let start = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let store = Arc::clone(&h.store);
            let k = Arc::clone(&k);
            tasks.push(tokio::spawn(async move {
                let mut admitted = 0u64;
                for _ in 0..5 {
                    if store.check(&k, &s, 1).await.unwrap().allowed {
                        admitted += 1;
                    }
                }
                admitted
            }));
        }
        let mut admitted = 0;
        for t in tasks {
            admitted += t.await.unwrap();
        }
        let span = start.elapsed().as_micros() as Micros + 1;
        let bound = ReferenceModel::bound(&s, span);
        assert!(
            admitted <= bound,
            "{s:?}: {admitted} admitted, bound {bound}"
        );
        assert!(admitted >= s.capacity(), "{s:?}: only {admitted} admitted");
    }
}

/// Bad input is a typed error.
pub async fn invalid_input_is_a_typed_error(h: &LimiterHarness) {
    let s = Strategy::gcra(1, Duration::from_secs(1), 1).unwrap();
    assert!(matches!(
        h.store.check("", &s, 1).await,
        Err(Error::InvalidKey { .. })
    ));
    let long = "x".repeat(crate::MAX_KEY_LEN + 1);
    assert!(matches!(
        h.store.check(&long, &s, 1).await,
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        h.store.check("k", &s, 0).await,
        Err(Error::ZeroCost)
    ));
    assert!(matches!(
        h.store.check_all(&[]).await,
        Err(Error::RuleCount { got: 0, .. })
    ));
    let weird = key("{we}ird:%key|with spaces ü");
    assert!(h.store.check(&weird, &s, 1).await.unwrap().allowed);
    assert!(!h.store.check(&weird, &s, 1).await.unwrap().allowed);
}

/// A cost above the capacity is rejected with no retry time, and charges nothing.
pub async fn oversized_costs_can_never_pass(h: &LimiterHarness) {
    for s in strategies(Duration::from_secs(3600)) {
        let k = key("big");
        let d: Decision = h.store.check(&k, &s, 5).await.unwrap();
        assert!(!d.allowed, "{s:?}");
        assert_eq!(d.retry_after, None, "{s:?}");
        assert_eq!(d.remaining, s.capacity(), "{s:?}");
        assert!(h.store.check(&k, &s, 4).await.unwrap().allowed, "{s:?}");
    }
}
