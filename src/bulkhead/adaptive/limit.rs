//! The limit controllers, pure: a sample in, perhaps a new limit out. No clock, no atomics.

use crate::config::{Check, ConfigError};
use std::time::Duration;

/// How an [`AdaptiveBulkhead`](super::AdaptiveBulkhead) moves its limit.
///
/// Both algorithms back off multiplicatively on congestion (a 429, a 529, a timeout), at most
/// once per round trip: a congestion signal from a call that started before the last
/// decrease is not counted again. Neither grows the limit while fewer than half of its slots
/// are in use (a limit that was never tested means nothing).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum LimitAlgorithm {
    /// Additive increase, multiplicative decrease, on congestion signals only (Netflix's
    /// `AIMDLimit`): simple, and blind to latency.
    Aimd(Aimd),
    /// Latency-driven (Netflix's `Gradient2Limit`): compares the latest latency with a long
    /// average, shrinks the limit when latency grows (queueing upstream), grows it by a small
    /// queue while latency holds; plus the multiplicative backoff on congestion.
    Gradient(Gradient),
}

impl Default for LimitAlgorithm {
    fn default() -> Self {
        LimitAlgorithm::Gradient(Gradient::default())
    }
}

/// Settings of [`LimitAlgorithm::Aimd`].
///
/// ```
/// use tower_breaker::bulkhead::{Aimd, LimitAlgorithm};
///
/// let aimd = LimitAlgorithm::Aimd(Aimd::default().backoff_ratio(0.8).increase(2.0));
/// # let _ = aimd;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aimd {
    backoff_ratio: f64,
    increase: f64,
}

impl Default for Aimd {
    /// Backoff ratio 0.9, increase 1 per call.
    fn default() -> Self {
        Self {
            backoff_ratio: 0.9,
            increase: 1.0,
        }
    }
}

impl Aimd {
    /// The limit is multiplied by this on congestion: default 0.9; allowed 0.5 ..= 0.99.
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// Added to the limit for each call that succeeded while at least half the slots were in
    /// use: default 1; allowed 0.01 ..= 100.
    pub fn increase(mut self, increase: f64) -> Self {
        self.increase = increase;
        self
    }
}

/// Settings of [`LimitAlgorithm::Gradient`].
///
/// ```
/// use tower_breaker::bulkhead::{Gradient, LimitAlgorithm};
///
/// let gradient = LimitAlgorithm::Gradient(Gradient::default().tolerance(2.0));
/// # let _ = gradient;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gradient {
    tolerance: f64,
    smoothing: f64,
    long_window: u32,
    queue_size: f64,
    backoff_ratio: f64,
}

impl Default for Gradient {
    /// Tolerance 1.5, smoothing 0.2, long window 600 samples, queue 4, backoff 0.9 (Netflix's
    /// defaults, and the backoff of [`Aimd`]).
    fn default() -> Self {
        Self {
            tolerance: 1.5,
            smoothing: 0.2,
            long_window: 600,
            queue_size: 4.0,
            backoff_ratio: 0.9,
        }
    }
}

impl Gradient {
    /// How much slower than the long average the latest latency may be before the limit
    /// shrinks: default 1.5; allowed 1.0 ..= 10.
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// How far each sample moves the limit toward its target: default 0.2; allowed
    /// 0.01 ..= 1.
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// How many samples the long latency average spans: default 600; allowed 10 ..= 100,000.
    pub fn long_window(mut self, samples: u32) -> Self {
        self.long_window = samples;
        self
    }

    /// The headroom added above the limit that latency allows: default 4; allowed
    /// 0 ..= 1,000.
    pub fn queue_size(mut self, queue: f64) -> Self {
        self.queue_size = queue;
        self
    }

    /// The limit is multiplied by this on congestion: default 0.9; allowed 0.5 ..= 0.99.
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }
}

impl LimitAlgorithm {
    pub(crate) fn check(&self, check: &Check<'_>) -> Result<(), ConfigError> {
        let range = |field: &'static str, value: f64, min: f64, max: f64| {
            if value.is_finite() && value >= min && value <= max {
                Ok(())
            } else {
                Err(ConfigError::new(
                    check.component,
                    field,
                    value,
                    format!("{min} ..= {max}"),
                ))
            }
        };
        match self {
            LimitAlgorithm::Aimd(a) => {
                range("backoff_ratio", a.backoff_ratio, 0.5, 0.99)?;
                range("increase", a.increase, 0.01, 100.0)
            }
            LimitAlgorithm::Gradient(g) => {
                range("tolerance", g.tolerance, 1.0, 10.0)?;
                range("smoothing", g.smoothing, 0.01, 1.0)?;
                range("long_window", f64::from(g.long_window), 10.0, 100_000.0)?;
                range("queue_size", g.queue_size, 0.0, 1_000.0)?;
                range("backoff_ratio", g.backoff_ratio, 0.5, 0.99)
            }
        }
    }
}

/// What a finished call tells the controller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Time to the response head or first token.
    pub(crate) latency: Duration,
    /// Calls in flight when this one started (itself included).
    pub(crate) inflight: u32,
    /// A 429, a 529, a timeout.
    pub(crate) congestion: bool,
    /// The controller's decrease epoch when the call started.
    pub(crate) epoch: u64,
}

/// Why the limit moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitChange {
    /// A congestion signal: multiplicative backoff.
    Congestion,
    /// Latency grew (the gradient controller).
    Latency,
    /// Calls succeeded with the limit in use: growth.
    Growth,
}

impl LimitChange {
    /// `congestion`, `latency` or `growth`.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitChange::Congestion => "congestion",
            LimitChange::Latency => "latency",
            LimitChange::Growth => "growth",
        }
    }
}

/// An exponential moving average that starts as a plain average of its first samples.
#[derive(Debug, Clone, Copy)]
struct Ema {
    window: f64,
    value: f64,
    count: u32,
}

impl Ema {
    const WARMUP: u32 = 10;

    fn add(&mut self, x: f64) -> f64 {
        if self.count < Self::WARMUP {
            self.count += 1;
            self.value += (x - self.value) / f64::from(self.count);
        } else {
            let alpha = 2.0 / (self.window + 1.0);
            self.value = self.value * (1.0 - alpha) + x * alpha;
        }
        self.value
    }
}

/// The state of one limit.
#[derive(Debug, Clone)]
pub(crate) struct Controller {
    algorithm: LimitAlgorithm,
    limit: f64,
    min: f64,
    max: f64,
    /// Counts decreases: a congestion signal from an older epoch is not counted again.
    pub(crate) epoch: u64,
    long: Ema,
}

impl Controller {
    pub(crate) fn new(algorithm: LimitAlgorithm, initial: u32, min: u32, max: u32) -> Self {
        let window = match algorithm {
            LimitAlgorithm::Gradient(g) => f64::from(g.long_window),
            LimitAlgorithm::Aimd(_) => 1.0,
        };
        Self {
            algorithm,
            limit: f64::from(initial),
            min: f64::from(min),
            max: f64::from(max),
            epoch: 0,
            long: Ema {
                window,
                value: 0.0,
                count: 0,
            },
        }
    }

    /// The whole limit now.
    pub(crate) fn limit(&self) -> u32 {
        // Clamped to `min ..= max`, both u32.
        self.limit as u32
    }

    /// The long latency average (the gradient controller's), in seconds.
    pub(crate) fn long_latency(&self) -> f64 {
        self.long.value
    }

    /// Takes one sample; returns why, when the whole limit changed.
    pub(crate) fn on_sample(&mut self, sample: Sample) -> Option<LimitChange> {
        let before = self.limit();
        let reason = self.update(sample)?;
        self.limit = self.limit.clamp(self.min, self.max);
        (self.limit() != before).then_some(reason)
    }

    fn update(&mut self, s: Sample) -> Option<LimitChange> {
        let backoff = match self.algorithm {
            LimitAlgorithm::Aimd(a) => a.backoff_ratio,
            LimitAlgorithm::Gradient(g) => g.backoff_ratio,
        };
        if s.congestion {
            if s.epoch < self.epoch {
                return None;
            }
            self.epoch += 1;
            self.limit *= backoff;
            return Some(LimitChange::Congestion);
        }
        // A limit that is not in use says nothing about the upstream: do not grow it.
        let app_limited = f64::from(s.inflight) * 2.0 < self.limit;
        match self.algorithm {
            LimitAlgorithm::Aimd(a) => {
                if app_limited {
                    return None;
                }
                self.limit += a.increase;
                Some(LimitChange::Growth)
            }
            LimitAlgorithm::Gradient(g) => {
                let short = s.latency.as_secs_f64().max(1e-6);
                let mut long = self.long.add(short);
                // After a long stretch of queueing the average has absorbed it; let it come
                // down faster once latency drops (Gradient2's recovery).
                if long / short > 2.0 {
                    self.long.value *= 0.95;
                    long = self.long.value;
                }
                if app_limited {
                    return None;
                }
                let gradient = (g.tolerance * long / short).clamp(0.5, 1.0);
                let target = self.limit * gradient + g.queue_size;
                let next = self.limit * (1.0 - g.smoothing) + target * g.smoothing;
                let reason = if next < self.limit {
                    LimitChange::Latency
                } else {
                    LimitChange::Growth
                };
                self.limit = next;
                Some(reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(ms: u64, inflight: u32, congestion: bool, epoch: u64) -> Sample {
        Sample {
            latency: Duration::from_millis(ms),
            inflight,
            congestion,
            epoch,
        }
    }

    #[test]
    fn aimd_grows_in_use_and_backs_off_once_per_epoch() {
        let mut c = Controller::new(LimitAlgorithm::Aimd(Aimd::default()), 10, 1, 100);
        assert_eq!(
            c.on_sample(sample(100, 10, false, 0)),
            Some(LimitChange::Growth)
        );
        assert_eq!(c.limit(), 11);
        // Under-used: no growth.
        assert_eq!(c.on_sample(sample(100, 3, false, 0)), None);
        assert_eq!(c.limit(), 11);
        assert_eq!(
            c.on_sample(sample(100, 11, true, 0)),
            Some(LimitChange::Congestion)
        );
        assert_eq!(c.limit(), 9);
        // The same overload seen by a call of the old epoch: not again.
        assert_eq!(c.on_sample(sample(100, 11, true, 0)), None);
        assert_eq!(c.limit(), 9);
        assert_eq!(
            c.on_sample(sample(100, 9, true, 1)),
            Some(LimitChange::Congestion)
        );
        assert_eq!(c.limit(), 8);
    }

    #[test]
    fn gradient_holds_at_steady_latency_and_shrinks_when_it_doubles() {
        let mut c = Controller::new(LimitAlgorithm::Gradient(Gradient::default()), 20, 1, 200);
        for _ in 0..50 {
            c.on_sample(sample(100, 20, false, 0));
        }
        let grown = c.limit();
        assert!(
            grown > 20,
            "grows by its queue while latency holds: {grown}"
        );
        for _ in 0..20 {
            c.on_sample(sample(300, grown, false, 0));
        }
        assert!(c.limit() < grown, "{} >= {grown}", c.limit());
    }

    proptest! {
        /// Whatever the samples, the limit stays within its bounds, and an under-used limit
        /// never grows.
        #[test]
        fn limit_stays_in_bounds_and_never_grows_unused(
            gradient in any::<bool>(),
            samples in proptest::collection::vec((1u64..5_000, 0u32..400, any::<bool>(), 0u64..5), 1..300),
            min in 1u32..10,
            span in 0u32..200,
        ) {
            let algorithm = if gradient {
                LimitAlgorithm::Gradient(Gradient::default())
            } else {
                LimitAlgorithm::Aimd(Aimd::default())
            };
            let max = min + span;
            let mut c = Controller::new(algorithm, min, min, max);
            for (ms, inflight, congestion, epoch) in samples {
                let before = c.limit();
                c.on_sample(sample(ms, inflight, congestion, epoch));
                prop_assert!((min..=max).contains(&c.limit()));
                if 2 * u64::from(inflight) < u64::from(before) {
                    prop_assert!(c.limit() <= before, "grew while under-used");
                }
            }
        }
    }
}
