//! [`LoadAwareThresholds`]: a trip threshold and open time picked by the request rate.

use std::time::Duration;

/// Thresholds that follow the traffic: a quiet service trips after fewer failures and waits
/// longer before probing, a busy one needs more failures and probes sooner.
///
/// The request rate is the number of calls in the (time-based) window scaled to a minute. The
/// first tier whose `max_calls_per_minute` is above the rate applies; its `failures` is the
/// number of failures in the window that trips the breaker (this replaces the failure-rate rule)
/// and its `wait_in_open` the open time.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::circuit_breaker::{CircuitBreaker, LoadAwareThresholds, SlidingWindow};
///
/// let breaker = CircuitBreaker::builder("anthropic")
///     .sliding_window(SlidingWindow::time_based(Duration::from_secs(60)))
///     .load_aware(LoadAwareThresholds::standard())
///     .build()?;
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LoadAwareThresholds {
    pub(crate) tiers: Vec<Tier>,
}

/// One tier of [`LoadAwareThresholds`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tier {
    /// The tier applies while the rate is below this many calls per minute.
    pub max_calls_per_minute: f64,
    /// Failures in the window that trip the breaker.
    pub failures: u32,
    /// How long the breaker stays open when this tier tripped it.
    pub wait_in_open: Duration,
}

impl LoadAwareThresholds {
    /// The three standard tiers: low (under 10 calls a minute: 3 failures, 60 s open),
    /// medium (10 to 100 a minute: 5 failures, 30 s) and high (over 100: 10 failures, 15 s).
    pub fn standard() -> Self {
        Self {
            tiers: vec![
                Tier {
                    max_calls_per_minute: 10.0,
                    failures: 3,
                    wait_in_open: Duration::from_secs(60),
                },
                Tier {
                    max_calls_per_minute: 100.0,
                    failures: 5,
                    wait_in_open: Duration::from_secs(30),
                },
                Tier {
                    max_calls_per_minute: f64::INFINITY,
                    failures: 10,
                    wait_in_open: Duration::from_secs(15),
                },
            ],
        }
    }

    /// Tiers of your own, in increasing order of `max_calls_per_minute`; the last should be
    /// `f64::INFINITY` so that every rate has a tier (the builder checks).
    pub fn new(tiers: Vec<Tier>) -> Self {
        Self { tiers }
    }

    /// The tier for `calls` calls seen in a window of `window` length.
    pub(crate) fn tier(&self, calls: u32, window: Duration) -> Option<&Tier> {
        let minutes = window.as_secs_f64() / 60.0;
        let rate = if minutes > 0.0 {
            calls as f64 / minutes
        } else {
            f64::INFINITY
        };
        self.tiers
            .iter()
            .find(|t| rate < t.max_calls_per_minute)
            .or(self.tiers.last())
    }
}
