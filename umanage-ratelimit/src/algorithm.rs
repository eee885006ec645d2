//! The compact per-key state machines, shared by the memory backend (the Redis script
//! implements the same arithmetic in Lua). Pure functions over explicit timestamps.

// Without the memory backend only the reference model uses parts of this module.
#![cfg_attr(not(feature = "memory"), allow(dead_code))]

use std::collections::VecDeque;
use std::time::Duration;

use crate::model::{Decision, Micros, Strategy};

/// Tolerance of the leaky bucket's floating-point level (in units).
pub(crate) const LEAKY_EPS: f64 = 1e-6;

/// The compact state of one key under one strategy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum State {
    /// Fixed window: the window's start and the units admitted in it.
    Window { start: Micros, count: u64 },
    /// Sliding log: admitted `(time, cost)` oldest first, and their total.
    Log {
        entries: VecDeque<(Micros, u32)>,
        total: u64,
    },
    /// Sliding counter: current window start and the previous/current counts.
    Counter { start: Micros, prev: u64, curr: u64 },
    /// Token bucket: tokens left and the last refill tick.
    Tokens { tokens: u64, last: Micros },
    /// Leaky bucket: the level and when it was computed.
    Leaky { level: f64, last: Micros },
    /// GCRA: the theoretical arrival time, and the emission interval `t` (µs) computed
    /// for `(limit, period)` (kept so the memory limiter's hot path skips the division
    /// while the strategy stays the same; the enum's size is the sliding log's anyway).
    Gcra {
        tat: Micros,
        limit: u64,
        period: Duration,
        t: Micros,
    },
}

/// What a check would do: the decision, the state to store if it is admitted, and when that
/// state becomes equivalent to no state at all (the key's expiry).
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub decision: Decision,
    pub next: Option<State>,
    pub expires_at: Micros,
}

fn us(d: Micros) -> Duration {
    Duration::from_micros(d.max(0) as u64)
}

fn aligned(now: Micros, w: Micros) -> Micros {
    now - now.rem_euclid(w)
}

/// `floor(prev × (w − e) / w)`, evaluated in doubles in the same order as the Lua script.
pub(crate) fn weighted(prev: u64, w: Micros, e: Micros) -> u64 {
    ((prev as f64) * ((w - e) as f64) / (w as f64)).floor() as u64
}

/// The smallest elapsed time `e >= from` in a window of length `w` at which
/// `weighted(prev, w, e) <= room`.
pub(crate) fn first_fit(prev: u64, w: Micros, from: Micros, room: u64) -> Micros {
    if weighted(prev, w, from) <= room {
        return from;
    }
    // weighted < room + 1  <=>  w - e < (room + 1) w / prev
    let guess = w - (((room + 1) as f64) * (w as f64) / (prev as f64)).floor() as Micros;
    let mut e = guess.clamp(from, w);
    while e > from && weighted(prev, w, e - 1) <= room {
        e -= 1;
    }
    while e < w && weighted(prev, w, e) > room {
        e += 1;
    }
    e
}

/// Evaluates one check of `cost` at `now` against `state` (absent = a fresh key).
#[allow(clippy::too_many_lines)]
pub(crate) fn evaluate(
    strategy: &Strategy,
    state: Option<&State>,
    now: Micros,
    cost: u32,
) -> Outcome {
    let c = u64::from(cost);
    let cap = strategy.capacity();
    let w = strategy.window_us();
    match *strategy {
        Strategy::FixedWindow { limit, .. } => {
            let mut start = aligned(now, w);
            let mut count = 0;
            if let Some(State::Window { start: s, count: n }) = state
                && *s >= start
            {
                start = *s;
                count = *n;
            }
            let end = start + w;
            let allowed = count + c <= limit;
            let used = if allowed { count + c } else { count };
            Outcome {
                decision: Decision {
                    allowed,
                    limit,
                    remaining: limit - used,
                    reset_after: if used > 0 {
                        us(end - now)
                    } else {
                        Duration::ZERO
                    },
                    retry_after: (!allowed && c <= limit).then(|| us(end - now)),
                },
                next: allowed.then_some(State::Window { start, count: used }),
                expires_at: end,
            }
        }
        Strategy::SlidingLog { limit, .. } => {
            let mut entries = VecDeque::new();
            let mut total = 0;
            if let Some(State::Log {
                entries: e,
                total: t,
            }) = state
            {
                entries.clone_from(e);
                total = *t;
            }
            while let Some(&(t, n)) = entries.front() {
                if t > now - w {
                    break;
                }
                entries.pop_front();
                total -= u64::from(n);
            }
            log_outcome(limit, w, now, c, entries, total)
        }
        Strategy::SlidingCounter { limit, .. } => {
            let mut start = aligned(now, w);
            let (mut prev, mut curr) = (0, 0);
            if let Some(&State::Counter {
                start: s,
                prev: p,
                curr: n,
            }) = state
            {
                if s >= start {
                    start = s;
                    prev = p;
                    curr = n;
                } else if s == start - w {
                    prev = n;
                }
            }
            let elapsed = (now - start).clamp(0, w);
            let weight = weighted(prev, w, elapsed);
            let allowed = weight + curr + c <= limit;
            let curr_after = if allowed { curr + c } else { curr };
            let used = weight + curr_after;
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
                let e = first_fit(prev, w, elapsed, limit - curr - c);
                Some(us(start + e - now))
            } else {
                let e = first_fit(curr, w, 0, limit - c);
                Some(us(start + w + e - now))
            };
            Outcome {
                decision: Decision {
                    allowed,
                    limit,
                    remaining: limit.saturating_sub(used),
                    reset_after,
                    retry_after,
                },
                next: allowed.then_some(State::Counter {
                    start,
                    prev,
                    curr: curr_after,
                }),
                expires_at: start + 2 * w,
            }
        }
        Strategy::TokenBucket { limit, burst, .. } => {
            let (mut tokens, mut last) = match state {
                Some(&State::Tokens { tokens, last }) => (tokens, last),
                _ => (burst, now),
            };
            if now > last {
                let ticks = (now - last) / w;
                let missing = burst - tokens;
                if ticks as u64 >= missing.div_ceil(limit) {
                    tokens = burst;
                } else {
                    tokens += ticks as u64 * limit;
                }
                last += ticks * w;
            }
            if tokens == burst {
                last = now;
            }
            let allowed = c <= tokens;
            let after = if allowed { tokens - c } else { tokens };
            let refill_at = |need: u64| last + need.div_ceil(limit) as Micros * w;
            let reset_after = us(refill_at(burst - after) - now);
            Outcome {
                decision: Decision {
                    allowed,
                    limit: cap,
                    remaining: after,
                    reset_after: if after == burst {
                        Duration::ZERO
                    } else {
                        reset_after
                    },
                    retry_after: (!allowed && c <= burst).then(|| us(refill_at(c - tokens) - now)),
                },
                next: allowed.then_some(State::Tokens {
                    tokens: after,
                    last,
                }),
                expires_at: now + reset_after.as_micros() as Micros,
            }
        }
        Strategy::LeakyBucket { limit, burst, .. } => {
            let (mut level, mut last) = match state {
                Some(&State::Leaky { level, last }) => (level, last),
                _ => (0.0, now),
            };
            if now > last {
                level = (level - ((now - last) as f64) * (limit as f64) / (w as f64)).max(0.0);
                last = now;
            }
            let allowed = c <= burst && level + c as f64 <= burst as f64 + LEAKY_EPS;
            let after = if allowed { level + c as f64 } else { level };
            let drain_us =
                |units: f64| (units * (w as f64) / (limit as f64)).ceil().max(0.0) as Micros;
            let reset = drain_us(after);
            Outcome {
                decision: Decision {
                    allowed,
                    limit: cap,
                    remaining: (burst as f64 - after + LEAKY_EPS).floor().max(0.0) as u64,
                    reset_after: us(last + reset - now),
                    retry_after: (!allowed && c <= burst)
                        .then(|| us(last + drain_us(level + c as f64 - burst as f64) - now)),
                },
                next: allowed.then_some(State::Leaky { level: after, last }),
                expires_at: last + reset,
            }
        }
        Strategy::Gcra {
            limit,
            period,
            burst,
        } => {
            let tat = match state {
                Some(&State::Gcra { tat, .. }) => Some(tat),
                _ => None,
            };
            let t = strategy.emission_us();
            let (decision, next) = gcra(burst, t, tat, now, cost);
            Outcome {
                decision,
                next: next.map(|tat| State::Gcra {
                    tat,
                    limit,
                    period,
                    t,
                }),
                expires_at: next.unwrap_or(now + us_i(decision.reset_after)),
            }
        }
    }
}

fn us_i(d: Duration) -> Micros {
    d.as_micros() as Micros
}

/// One GCRA check (emission interval `t` µs, `burst`) against a key's theoretical arrival
/// time (`None` = a fresh key): the decision, and the new arrival time when admitted (which
/// is also when the key's state expires). The memory limiter's hot path calls it directly
/// on the stored time.
#[inline]
pub(crate) fn gcra(
    burst: u64,
    t: Micros,
    tat: Option<Micros>,
    now: Micros,
    cost: u32,
) -> (Decision, Option<Micros>) {
    let c = u64::from(cost);
    let tau = t * burst as Micros;
    let tat = tat.map_or(now, |tat| tat.max(now));
    if c > burst {
        return (
            Decision {
                allowed: false,
                limit: burst,
                remaining: ((tau - (tat - now)) / t) as u64,
                reset_after: us(tat - now),
                retry_after: None,
            },
            None,
        );
    }
    let new_tat = tat + c as Micros * t;
    let allowed = new_tat - now <= tau;
    let stored = if allowed { new_tat } else { tat };
    (
        Decision {
            allowed,
            limit: burst,
            remaining: ((tau - (stored - now)) / t) as u64,
            reset_after: us(stored - now),
            retry_after: (!allowed).then(|| us(new_tat - tau - now)),
        },
        allowed.then_some(new_tat),
    )
}

fn log_outcome(
    limit: u64,
    w: Micros,
    now: Micros,
    c: u64,
    mut entries: VecDeque<(Micros, u32)>,
    mut total: u64,
) -> Outcome {
    let allowed = total + c <= limit;
    let retry_after = if allowed || c > limit {
        None
    } else {
        let need = total + c - limit;
        let mut acc = 0;
        let mut at = now;
        for &(t, n) in &entries {
            acc += u64::from(n);
            if acc >= need {
                at = t + w;
                break;
            }
        }
        Some(us(at - now))
    };
    if allowed {
        entries.push_back((now, c as u32));
        total += c;
    }
    let newest = entries.back().map(|&(t, _)| t);
    Outcome {
        decision: Decision {
            allowed,
            limit,
            remaining: limit - total,
            reset_after: newest.map_or(Duration::ZERO, |t| us(t + w - now)),
            retry_after,
        },
        expires_at: newest.map_or(now, |t| t + w),
        next: allowed.then_some(State::Log { entries, total }),
    }
}
