//! Property tests: the memory limiter against the reference model on random sequences
//! (manual clock), and every strategy's bound over the model's own admissions.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use umanage_core::{Clock, ManualClock};
use umanage_ratelimit::model::reference::ReferenceModel;
use umanage_ratelimit::{Check, MemoryRateLimiter, RateLimitStore, Strategy, StrategyKind};

fn strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    (0..6usize, 1..10u64, 1..3000u64, 1..12u64).prop_map(|(k, limit, ms, burst)| {
        let kind = StrategyKind::ALL[k];
        let mut b = Strategy::builder(kind)
            .limit(limit)
            .window(Duration::from_millis(ms));
        if !matches!(
            kind,
            StrategyKind::FixedWindow | StrategyKind::SlidingLog | StrategyKind::SlidingCounter
        ) {
            b = b.burst(burst);
        }
        b.build().unwrap()
    })
}

/// (advance in µs as a fraction of the window ×1000, key index, cost)
fn steps() -> impl proptest::strategy::Strategy<Value = Vec<(u64, usize, u32)>> {
    proptest::collection::vec((0..2500u64, 0..3usize, 1..4u32), 1..120)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn memory_agrees_with_the_model(s in strategy(), steps in steps(), shards in 1..5usize) {
        let clock = ManualClock::default();
        // a tiny capacity: eviction may only drop keys whose state is already fresh-equivalent,
        // except under real pressure, which three keys never create
        let limiter = MemoryRateLimiter::builder()
            .clock(clock.shared())
            .shards(shards)
            .max_keys(16)
            .sweep_every(3)
            .build()
            .unwrap();
        let mut models = vec![ReferenceModel::new(s); 3];
        let w = s.window_us();
        block_on(async {
            for (i, (frac, k, cost)) in steps.iter().copied().enumerate() {
                clock.advance(Duration::from_micros((w as u64).saturating_mul(frac) / 1000));
                let now = clock.now().timestamp_micros();
                let key = format!("k{k}");
                let got = limiter.check(&key, &s, cost).await.unwrap();
                let want = models[k].check(now, cost);
                prop_assert_eq!(got, want, "step {} of {:?}", i, s);
            }
            Ok(())
        })?;
        for m in &models {
            assert_bound(m);
        }
    }

    #[test]
    fn check_all_agrees_with_the_model(a in strategy(), b in strategy(), steps in steps()) {
        prop_assume!(a.kind() != b.kind());
        let clock = ManualClock::default();
        let limiter = MemoryRateLimiter::with_clock(clock.shared());
        let mut ma = ReferenceModel::new(a);
        let mut mb = ReferenceModel::new(b);
        let w = a.window_us().min(b.window_us());
        block_on(async {
            for (frac, _, cost) in steps {
                clock.advance(Duration::from_micros((w as u64).saturating_mul(frac) / 1000));
                let now = clock.now().timestamp_micros();
                let got = limiter
                    .check_all(&[Check::new("same", &a).with_cost(cost), Check::new("same", &b)])
                    .await
                    .unwrap();
                let (da, db) = (ma.peek(now, cost), mb.peek(now, 1));
                if da.allowed && db.allowed {
                    ma.check(now, cost);
                    mb.check(now, 1);
                }
                prop_assert_eq!(got, vec![da, db]);
            }
            Ok(())
        })?;
    }
}

/// The model's admissions respect the strategy's bound in every span starting at an
/// admission (the worst spans start at one).
fn assert_bound(m: &ReferenceModel) {
    let s = m.strategy();
    let adm = m.admitted();
    for span in [s.window_us() / 3 + 1, s.window_us(), 3 * s.window_us()] {
        for (i, &(t0, _)) in adm.iter().enumerate() {
            let total: u64 = adm[i..]
                .iter()
                .take_while(|&&(t, _)| t < t0 + span)
                .map(|&(_, c)| c)
                .sum();
            let bound = ReferenceModel::bound(s, span);
            assert!(
                total <= bound,
                "{s:?}: {total} admitted in {span}µs, bound {bound}"
            );
        }
    }
}

#[test]
fn sliding_log_is_exact_over_any_window() {
    let s = Strategy::sliding_log(3, Duration::from_secs(1)).unwrap();
    let mut m = ReferenceModel::new(s);
    let mut admitted = Vec::new();
    for t in (0..10_000_000).step_by(50_000) {
        if m.check(t, 1).allowed {
            admitted.push(t);
        }
    }
    for (i, &t0) in admitted.iter().enumerate() {
        let n = admitted[i..]
            .iter()
            .take_while(|&&t| t < t0 + 1_000_000)
            .count();
        assert!(n <= 3, "{n} in one second from {t0}");
    }
    assert_eq!(admitted.len(), 30, "3 per second over 10 s");
}
