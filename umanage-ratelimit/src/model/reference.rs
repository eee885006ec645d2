//! The reference model: each strategy written the plain way, over the complete history of
//! one key, with explicit timestamps and no compaction, eviction or concurrency.
//!
//! The backends keep compact state (a counter, a timestamp); this model keeps every admitted
//! request and recomputes the state from that history on each check. The conformance suite
//! ([`crate::testing`]) drives a backend and this model with the same request sequence and
//! requires the same decisions. It assumes time never moves backwards.
//!
//! ```
//! use std::time::Duration;
//! use umanage_ratelimit::Strategy;
//! use umanage_ratelimit::model::reference::ReferenceModel;
//!
//! let mut m = ReferenceModel::new(Strategy::fixed_window(2, Duration::from_secs(1)).unwrap());
//! assert!(m.check(0, 1).allowed);
//! assert!(m.check(10, 1).allowed);
//! assert!(!m.check(20, 1).allowed);
//! assert!(m.check(1_000_000, 1).allowed, "next window");
//! ```

use std::time::Duration;

use crate::algorithm::{LEAKY_EPS, first_fit, weighted};
use crate::model::{Decision, Micros, Strategy};

/// The history of one key under one strategy.
#[derive(Debug, Clone)]
pub struct ReferenceModel {
    strategy: Strategy,
    /// Every admitted request: `(time, cost)`.
    admitted: Vec<(Micros, u64)>,
}

fn us(d: Micros) -> Duration {
    Duration::from_micros(d.max(0) as u64)
}

impl ReferenceModel {
    /// A key nobody has used yet.
    pub fn new(strategy: Strategy) -> Self {
        Self {
            strategy,
            admitted: Vec::new(),
        }
    }

    /// The strategy.
    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }

    /// Every admitted request so far, as `(time in µs, cost)`.
    pub fn admitted(&self) -> &[(Micros, u64)] {
        &self.admitted
    }

    /// The decision for a request of `cost` at `now` (µs since the epoch), charging it when
    /// admitted. `cost` must be at least 1.
    pub fn check(&mut self, now: Micros, cost: u32) -> Decision {
        let d = self.peek(now, cost);
        if d.allowed {
            self.admitted.push((now, u64::from(cost)));
        }
        d
    }

    /// The decision [`check`](Self::check) would return, without charging.
    pub fn peek(&self, now: Micros, cost: u32) -> Decision {
        let c = u64::from(cost);
        let s = self.strategy;
        let w = s.window_us();
        let start = now - now.rem_euclid(w);
        let sum = |from: Micros, to: Micros| -> u64 {
            self.admitted
                .iter()
                .filter(|&&(t, _)| t >= from && t < to)
                .map(|&(_, n)| n)
                .sum()
        };
        match s {
            Strategy::FixedWindow { limit, .. } => {
                let used = sum(start, Micros::MAX);
                let allowed = used + c <= limit;
                let after = used + if allowed { c } else { 0 };
                Decision {
                    allowed,
                    limit,
                    remaining: limit - after,
                    reset_after: if after > 0 {
                        us(start + w - now)
                    } else {
                        Duration::ZERO
                    },
                    retry_after: (!allowed && c <= limit).then(|| us(start + w - now)),
                }
            }
            Strategy::SlidingLog { limit, .. } => {
                let live: Vec<(Micros, u64)> = self
                    .admitted
                    .iter()
                    .copied()
                    .filter(|&(t, _)| t + w > now)
                    .collect();
                let used: u64 = live.iter().map(|&(_, n)| n).sum();
                let allowed = used + c <= limit;
                let after = used + if allowed { c } else { 0 };
                let newest = if allowed {
                    Some(now)
                } else {
                    live.last().map(|&(t, _)| t)
                };
                // The earliest time the oldest entries have freed enough room.
                let retry_after = (!allowed && c <= limit).then(|| {
                    let need = used + c - limit;
                    let mut acc = 0;
                    let at = live
                        .iter()
                        .find(|&&(_, n)| {
                            acc += n;
                            acc >= need
                        })
                        .map_or(now, |&(t, _)| t + w);
                    us(at - now)
                });
                Decision {
                    allowed,
                    limit,
                    remaining: limit - after,
                    reset_after: newest.map_or(Duration::ZERO, |t| us(t + w - now)),
                    retry_after,
                }
            }
            Strategy::SlidingCounter { limit, .. } => {
                let prev = sum(start - w, start);
                let curr = sum(start, Micros::MAX);
                let elapsed = now - start;
                let weight = weighted(prev, w, elapsed);
                let allowed = weight + curr + c <= limit;
                let curr_after = curr + if allowed { c } else { 0 };
                let reset_after = if curr_after > 0 {
                    us(start + 2 * w - now)
                } else if weight > 0 {
                    us(start + w - now)
                } else {
                    Duration::ZERO
                };
                let retry_after = if allowed || c > limit {
                    None
                } else if curr + c <= limit {
                    Some(us(
                        start + first_fit(prev, w, elapsed, limit - curr - c) - now
                    ))
                } else {
                    Some(us(start + w + first_fit(curr, w, 0, limit - c) - now))
                };
                Decision {
                    allowed,
                    limit,
                    remaining: limit.saturating_sub(weight + curr_after),
                    reset_after,
                    retry_after,
                }
            }
            Strategy::TokenBucket { limit, burst, .. } => {
                // Replay: the bucket starts full; whole refill steps of `limit` tokens every
                // `w`, counted from the moment a full bucket was last drawn from.
                let mut tokens = burst;
                let mut anchor = Micros::MIN;
                let refill = |tokens: &mut u64, anchor: &mut Micros, at: Micros| {
                    if *anchor != Micros::MIN {
                        let steps = ((at - *anchor) / w) as u64;
                        *tokens = (*tokens)
                            .saturating_add(steps.saturating_mul(limit))
                            .min(burst);
                        *anchor += steps as Micros * w;
                    }
                    if *tokens == burst {
                        *anchor = at;
                    }
                };
                for &(t, n) in &self.admitted {
                    refill(&mut tokens, &mut anchor, t);
                    tokens -= n;
                }
                refill(&mut tokens, &mut anchor, now);
                let allowed = c <= tokens;
                let after = if allowed { tokens - c } else { tokens };
                let ready = |need: u64| anchor + need.div_ceil(limit) as Micros * w;
                Decision {
                    allowed,
                    limit: burst,
                    remaining: after,
                    reset_after: if after == burst {
                        Duration::ZERO
                    } else {
                        us(ready(burst - after) - now)
                    },
                    retry_after: (!allowed && c <= burst).then(|| us(ready(c - tokens) - now)),
                }
            }
            Strategy::LeakyBucket { limit, burst, .. } => {
                let rate =
                    |from: Micros, to: Micros| ((to - from) as f64) * (limit as f64) / (w as f64);
                let mut level = 0.0_f64;
                let mut last = Micros::MIN;
                for &(t, n) in &self.admitted {
                    if last != Micros::MIN && t > last {
                        level = (level - rate(last, t)).max(0.0);
                    }
                    last = t;
                    level += n as f64;
                }
                if last != Micros::MIN && now > last {
                    level = (level - rate(last, now)).max(0.0);
                }
                let allowed = c <= burst && level + c as f64 <= burst as f64 + LEAKY_EPS;
                let after = level + if allowed { c as f64 } else { 0.0 };
                let drain =
                    |units: f64| (units * (w as f64) / (limit as f64)).ceil().max(0.0) as Micros;
                Decision {
                    allowed,
                    limit: burst,
                    remaining: (burst as f64 - after + LEAKY_EPS).floor().max(0.0) as u64,
                    reset_after: us(drain(after)),
                    retry_after: (!allowed && c <= burst)
                        .then(|| us(drain(level + c as f64 - burst as f64))),
                }
            }
            Strategy::Gcra { burst, .. } => {
                // Virtual scheduling: each admitted unit is due `T` after the previous one
                // (or at its arrival, if later); a request conforms if its last unit is due
                // no later than `tau` after now.
                let t = s.emission_us();
                let tau = t * burst as Micros;
                let mut tat = Micros::MIN;
                for &(at, n) in &self.admitted {
                    tat = tat.max(at) + n as Micros * t;
                }
                let tat = tat.max(now);
                let due = tat.saturating_add((c as Micros).saturating_mul(t));
                let allowed = c <= burst && due - now <= tau;
                let stored = if allowed { due } else { tat };
                Decision {
                    allowed,
                    limit: burst,
                    remaining: ((tau - (stored - now)) / t) as u64,
                    reset_after: us(stored - now),
                    retry_after: (!allowed && c <= burst).then(|| us(due - tau - now)),
                }
            }
        }
    }

    /// The most this strategy may admit (total cost) in any span of `span` µs, whatever the
    /// request pattern: the bound of the table on [`Strategy`].
    pub fn bound(strategy: &Strategy, span: Micros) -> u64 {
        let w = strategy.window_us();
        match *strategy {
            Strategy::FixedWindow { limit, .. } | Strategy::SlidingCounter { limit, .. } => {
                // A span of length <= w touches at most two aligned windows.
                limit * (span / w + 2) as u64
            }
            Strategy::SlidingLog { limit, .. } => limit * (span / w + 1) as u64,
            Strategy::TokenBucket { limit, burst, .. } => burst + limit * (span / w + 1) as u64,
            Strategy::LeakyBucket { limit, burst, .. } => {
                burst + ((span as f64) * (limit as f64) / (w as f64)).ceil() as u64
            }
            Strategy::Gcra { burst, .. } => burst + (span / strategy.emission_us()) as u64 + 1,
        }
    }
}
