//! The breaker's configuration: [`Builder`] and [`SlidingWindow`].

use super::CircuitBreaker;
use super::events::CircuitBreakerEvent;
use super::load_aware::LoadAwareThresholds;
use super::state::Shared;
use super::window::{MAX_BUCKETS, MAX_COUNT_WINDOW};
use crate::config::{Check, ConfigError, MAX_DURATION, MIN_DURATION};
use crate::events::{Listener, Listeners};
use std::sync::Arc;
use std::time::Duration;

/// Which calls the trip rule looks at.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::circuit_breaker::SlidingWindow;
///
/// let last_100_calls = SlidingWindow::count_based(100);
/// let last_minute = SlidingWindow::time_based(Duration::from_secs(60));
/// let last_minute_in_6_buckets = SlidingWindow::time_based(Duration::from_secs(60)).buckets(6);
/// let five_in_a_row = SlidingWindow::consecutive(5);
/// # let _ = (last_100_calls, last_minute, last_minute_in_6_buckets, five_in_a_row);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindow {
    pub(crate) kind: WindowKind,
    /// True once `buckets` was called: only then is the bucket count checked as given.
    explicit_buckets: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowKind {
    Count(u32),
    Time { length: Duration, buckets: u32 },
    Consecutive(u32),
}

impl SlidingWindow {
    /// The last `calls` calls (1 to 1,000,000): a true sliding window, the oldest call falls out
    /// as each new one comes in. Trips on the failure or slow-call rate once it holds
    /// `minimum_calls` (or `calls`, if smaller).
    pub fn count_based(calls: u32) -> Self {
        Self {
            kind: WindowKind::Count(calls),
            explicit_buckets: false,
        }
    }

    /// The calls of the last `length` (1 ms to 24 h), kept in 10 buckets of `length / 10`
    /// (a window shorter than 10 ms: one bucket per whole millisecond, since a bucket is at
    /// least 1 ms): a call leaves the window between `length - length / 10` and `length` after
    /// it was recorded, whether or not other calls arrive. Trips on the failure or slow-call
    /// rate once the window holds `minimum_calls`.
    pub fn time_based(length: Duration) -> Self {
        Self {
            kind: WindowKind::Time {
                length,
                buckets: DEFAULT_BUCKETS,
            },
            explicit_buckets: false,
        }
    }

    /// `failures` failures in a row (1 to 1,000,000); any success starts the count again.
    /// Slow calls do not count under this rule.
    pub fn consecutive(failures: u32) -> Self {
        Self {
            kind: WindowKind::Consecutive(failures),
            explicit_buckets: false,
        }
    }

    /// For a time-based window: how many buckets it is kept in (1 to 64, default 10), each at
    /// least 1 ms long. More buckets age calls out more smoothly; each record still touches
    /// one bucket. Has no effect on other windows.
    pub fn buckets(mut self, buckets: u32) -> Self {
        if let WindowKind::Time { length, .. } = self.kind {
            self.kind = WindowKind::Time { length, buckets };
            self.explicit_buckets = true;
        }
        self
    }
}

/// The buckets of a time window unless `buckets` says otherwise.
const DEFAULT_BUCKETS: u32 = 10;

impl Default for SlidingWindow {
    /// The last 100 calls.
    fn default() -> Self {
        Self::count_based(100)
    }
}

/// Builds a [`CircuitBreaker`]; see [`CircuitBreaker::builder`]. Every setter documents its
/// default and allowed range; [`build`](Builder::build) checks them all.
///
/// A builder is `Clone`: keep one as a template and build several breakers from it
/// ([`KeyedCircuitBreakers`](crate::keyed::KeyedCircuitBreakers) does).
#[derive(Clone)]
pub struct Builder {
    name: Arc<str>,
    window: SlidingWindow,
    failure_rate_threshold: f64,
    consecutive_failure_threshold: Option<u32>,
    slow_call_rate_threshold: f64,
    slow_call_duration: Option<Duration>,
    minimum_calls: u32,
    wait_in_open: Duration,
    permitted_calls_in_half_open: u32,
    max_wait_in_half_open: Option<Duration>,
    growth: Option<(f64, Duration)>,
    jitter: f64,
    seed: u64,
    load_aware: Option<LoadAwareThresholds>,
    rate_limit_cooldown: Duration,
    max_retry_after: Duration,
    listeners: Listeners<CircuitBreakerEvent>,
    /// What shares this breaker's state, if anything (set by `shared_state`).
    #[cfg(feature = "shared-state")]
    fleet: Option<Arc<dyn super::state::Fleet>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("window", &self.window)
            .field("failure_rate_threshold", &self.failure_rate_threshold)
            .field(
                "consecutive_failure_threshold",
                &self.consecutive_failure_threshold,
            )
            .field("slow_call_rate_threshold", &self.slow_call_rate_threshold)
            .field("slow_call_duration", &self.slow_call_duration)
            .field("minimum_calls", &self.minimum_calls)
            .field("wait_in_open", &self.wait_in_open)
            .field(
                "permitted_calls_in_half_open",
                &self.permitted_calls_in_half_open,
            )
            .field("max_wait_in_half_open", &self.max_wait_in_half_open)
            .field("load_aware", &self.load_aware)
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

/// Checked settings, read on every call.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) window: WindowKind,
    /// Thresholds in parts per million, compared as integers.
    pub(crate) failure_ppm: u64,
    pub(crate) slow_ppm: u64,
    /// Failures in a row that trip the breaker whatever the window holds.
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) minimum_calls: u32,
    pub(crate) wait_in_open: Duration,
    pub(crate) permitted_in_half_open: u32,
    pub(crate) max_wait_in_half_open: Option<Duration>,
    pub(crate) growth: Option<(f64, Duration)>,
    pub(crate) jitter: f64,
    pub(crate) seed: u64,
    pub(crate) load_aware: Option<LoadAwareThresholds>,
    pub(crate) rate_limit_cooldown: Duration,
    pub(crate) max_retry_after: Duration,
}

/// The most probes one half-open round may admit (they are counted in 10-bit fields).
pub(crate) const MAX_PERMITTED_IN_HALF_OPEN: u32 = 1000;

impl Builder {
    pub(crate) fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            window: SlidingWindow::default(),
            failure_rate_threshold: 0.5,
            consecutive_failure_threshold: None,
            slow_call_rate_threshold: 1.0,
            slow_call_duration: None,
            minimum_calls: 100,
            wait_in_open: Duration::from_secs(60),
            permitted_calls_in_half_open: 10,
            max_wait_in_half_open: Some(Duration::from_secs(120)),
            growth: None,
            jitter: 0.0,
            seed: 0x5EED_CAFE_F00D_D00D,
            load_aware: None,
            rate_limit_cooldown: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
            listeners: Listeners::new(),
            #[cfg(feature = "shared-state")]
            fleet: None,
        }
    }

    /// Shares this breaker's state through `fleet` (the public door is `shared_state`,
    /// defined beside the fleet code, which attaches through this port).
    #[cfg(feature = "shared-state")]
    pub(crate) fn fleet(mut self, fleet: Arc<dyn super::state::Fleet>) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// Renames the breaker (for a builder used as a template).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The name the breaker will have.
    pub fn breaker_name(&self) -> &str {
        &self.name
    }

    /// The trip rule's window. Default: [`SlidingWindow::count_based(100)`](SlidingWindow::count_based).
    pub fn sliding_window(mut self, window: SlidingWindow) -> Self {
        self.window = window;
        self
    }

    /// The breaker opens when the failure rate is at least this (inclusive). Default 0.5;
    /// allowed `0.0 < x <= 1.0`.
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.failure_rate_threshold = rate;
        self
    }

    /// The breaker also opens after this many failed calls in a row, whatever the window
    /// holds: the outage rule, beside the window's rate rule. Default `None` (off); allowed 1
    /// to 1,000,000. The presets of [`StandardResilience`](crate::stack::StandardResilience)
    /// set 15.
    ///
    /// A rate over a long window sees an outage late, and the later the longer things went
    /// well: after 60 s of healthy traffic at 20 calls a second, a 120 s window at 50 % must
    /// first hold 1,200 failures. A run of failures says "down" at once, whatever came before:
    /// `Some(15)` opens on the 15th failed attempt of a full outage (under 1 s at 20 calls a
    /// second), while a background of 5 % scattered failures makes such a run once in about
    /// 3 * 10^19 calls. Any success starts the run again; ignored outcomes (429, cancelled
    /// calls) and slow successes leave it as it is. It costs one atomic load per success
    /// (a write only on a failure and on the first success after one).
    pub fn consecutive_failure_threshold(mut self, failures: Option<u32>) -> Self {
        self.consecutive_failure_threshold = failures;
        self
    }

    /// The breaker opens when the share of slow calls is at least this (inclusive). Default
    /// 1.0; allowed `0.0 < x <= 1.0`. Only used when [`slow_call_duration`](Self::slow_call_duration) is set.
    pub fn slow_call_rate_threshold(mut self, rate: f64) -> Self {
        self.slow_call_rate_threshold = rate;
        self
    }

    /// A call that takes at least this long is slow. Default: none, so that no clock is read
    /// on the hot path (resilience4j's default is 60 s); allowed 1 ms to 24 h.
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.slow_call_duration = Some(duration);
        self
    }

    /// Rates are not checked until the window holds this many calls. Default 100; allowed
    /// 1 to 1,000,000. With a count-based window smaller than this, the window's size is used.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = calls;
        self
    }

    /// How long the breaker stays open before it lets probes through. Default 60 s; allowed
    /// 1 ms to 24 h.
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        self.wait_in_open = wait;
        self
    }

    /// How many probe calls one half-open round admits. Default 10; allowed 1 to 1,000.
    pub fn permitted_calls_in_half_open(mut self, calls: u32) -> Self {
        self.permitted_calls_in_half_open = calls;
        self
    }

    /// The breaker reopens if the half-open round has every slot taken and has not decided
    /// within this time (probes that hang), as of the round's deadline, as a failed round.
    /// Every reader of the breaker applies this rule (`try_acquire`, `is_call_permitted`,
    /// `retry_after`, `state`, `metrics`, held calls, failover), so no call is needed to see
    /// it. `None` waits forever. Default `Some(120 s)`, since a hung probe would otherwise hold
    /// the breaker half-open for good; allowed 1 ms to 24 h.
    pub fn max_wait_in_half_open(mut self, wait: Option<Duration>) -> Self {
        self.max_wait_in_half_open = wait;
        self
    }

    /// Each consecutive reopen (a failed half-open round) multiplies the open time by
    /// `multiplier` (1.0 to 100.0), up to `max` (from `wait_in_open` to 24 h). Reset when the
    /// breaker closes. Default: no growth.
    pub fn open_time_growth(mut self, multiplier: f64, max: Duration) -> Self {
        self.growth = Some((multiplier, max));
        self
    }

    /// Spreads each open time by up to +/- this fraction (0.0 to below 1.0), so that a fleet of
    /// breakers that opened together does not probe together. Default 0.0.
    pub fn open_time_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// The seed of the jitter's random numbers, for reproducible tests.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Picks the failure threshold and open time from tiers by the request rate. Needs a
    /// time-based window. Default: off.
    pub fn load_aware(mut self, thresholds: LoadAwareThresholds) -> Self {
        self.load_aware = Some(thresholds);
        self
    }

    /// The cool-down after a rate limit that did not say how long to wait (a 429 without
    /// `Retry-After`). Default 1 s; allowed 1 ms to 24 h. See [`Permit::record_rate_limited`](super::Permit::record_rate_limited).
    pub fn rate_limit_cooldown(mut self, cooldown: Duration) -> Self {
        self.rate_limit_cooldown = cooldown;
        self
    }

    /// The longest wait a server can impose through `Retry-After`, on a rate-limit cool-down
    /// or on the open time after a failure. Default 60 s; allowed 1 ms to 24 h. (Deadlines are
    /// kept in whole milliseconds, rounded up, so a wait may end up to 1 ms later than asked,
    /// never earlier.)
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Adds a listener for every event of this breaker (transitions, rejections, outcomes).
    pub fn on_event(mut self, listener: impl Listener<CircuitBreakerEvent>) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Checks every value and builds the breaker.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        let check = Check {
            component: &self.name,
        };
        let window = match self.window.kind {
            WindowKind::Count(n) => {
                check.range_u64("sliding_window", n as u64, 1, MAX_COUNT_WINDOW as u64)?;
                WindowKind::Count(n)
            }
            WindowKind::Consecutive(n) => {
                check.range_u64("sliding_window", n as u64, 1, 1_000_000)?;
                WindowKind::Consecutive(n)
            }
            WindowKind::Time { length, buckets } => {
                check.duration("sliding_window", length, MIN_DURATION, MAX_DURATION)?;
                let buckets = if self.window.explicit_buckets {
                    buckets
                } else {
                    // The default, for a window too short for 10 buckets of 1 ms: one per ms
                    // (at least 1, since `length` is at least 1 ms).
                    let whole_ms = u32::try_from(length.as_millis()).unwrap_or(u32::MAX);
                    buckets.min(whole_ms).max(1)
                };
                check.range_u64(
                    "sliding_window.buckets",
                    buckets as u64,
                    1,
                    MAX_BUCKETS as u64,
                )?;
                if length / buckets < MIN_DURATION {
                    return Err(ConfigError::new(
                        &*self.name,
                        "sliding_window.buckets",
                        buckets,
                        format!(
                            "a bucket of at least 1ms: at most {} buckets for {length:?}",
                            length.as_millis()
                        ),
                    ));
                }
                WindowKind::Time { length, buckets }
            }
        };
        let failure = check.rate("failure_rate_threshold", self.failure_rate_threshold)?;
        if let Some(n) = self.consecutive_failure_threshold {
            check.range_u64("consecutive_failure_threshold", n as u64, 1, 1_000_000)?;
        }
        let slow = check.rate("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        if let Some(d) = self.slow_call_duration {
            check.duration("slow_call_duration", d, MIN_DURATION, MAX_DURATION)?;
        }
        let minimum =
            check.range_u64("minimum_calls", self.minimum_calls as u64, 1, 1_000_000)? as u32;
        let minimum = match window {
            WindowKind::Count(n) => minimum.min(n),
            _ => minimum,
        };
        check.duration(
            "wait_in_open",
            self.wait_in_open,
            MIN_DURATION,
            MAX_DURATION,
        )?;
        check.range_u64(
            "permitted_calls_in_half_open",
            self.permitted_calls_in_half_open as u64,
            1,
            MAX_PERMITTED_IN_HALF_OPEN as u64,
        )?;
        if let Some(d) = self.max_wait_in_half_open {
            check.duration("max_wait_in_half_open", d, MIN_DURATION, MAX_DURATION)?;
        }
        if let Some((multiplier, max)) = self.growth {
            if !(1.0..=100.0).contains(&multiplier) {
                return Err(ConfigError::new(
                    &*self.name,
                    "open_time_growth.multiplier",
                    multiplier,
                    "1.0 <= x <= 100.0",
                ));
            }
            check.duration("open_time_growth.max", max, self.wait_in_open, MAX_DURATION)?;
        }
        check.duration(
            "rate_limit_cooldown",
            self.rate_limit_cooldown,
            MIN_DURATION,
            MAX_DURATION,
        )?;
        check.duration(
            "max_retry_after",
            self.max_retry_after,
            MIN_DURATION,
            MAX_DURATION,
        )?;
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(ConfigError::new(
                &*self.name,
                "open_time_jitter",
                self.jitter,
                "0.0 <= x < 1.0",
            ));
        }
        if let Some(load) = &self.load_aware {
            if !matches!(window, WindowKind::Time { .. }) {
                return Err(ConfigError::new(
                    &*self.name,
                    "load_aware",
                    "count-based or consecutive window",
                    "a time-based sliding window, which measures the request rate",
                ));
            }
            if load.tiers.is_empty() {
                return Err(ConfigError::new(
                    &*self.name,
                    "load_aware.tiers",
                    0,
                    "at least one tier",
                ));
            }
            let mut previous = 0.0;
            for tier in &load.tiers {
                if tier.max_calls_per_minute.is_nan() || tier.max_calls_per_minute <= previous {
                    return Err(ConfigError::new(
                        &*self.name,
                        "load_aware.tiers.max_calls_per_minute",
                        tier.max_calls_per_minute,
                        "positive and increasing from tier to tier",
                    ));
                }
                previous = tier.max_calls_per_minute;
                check.range_u64(
                    "load_aware.tiers.failures",
                    tier.failures as u64,
                    1,
                    1_000_000,
                )?;
                check.duration(
                    "load_aware.tiers.wait_in_open",
                    tier.wait_in_open,
                    MIN_DURATION,
                    MAX_DURATION,
                )?;
            }
        }
        let settings = Settings {
            window,
            failure_ppm: to_ppm(failure),
            slow_ppm: to_ppm(slow),
            consecutive_failures: self.consecutive_failure_threshold,
            slow_call_duration: self.slow_call_duration,
            minimum_calls: minimum,
            wait_in_open: self.wait_in_open,
            permitted_in_half_open: self.permitted_calls_in_half_open,
            max_wait_in_half_open: self.max_wait_in_half_open,
            growth: self.growth,
            jitter: self.jitter,
            seed: self.seed,
            load_aware: self.load_aware,
            rate_limit_cooldown: self.rate_limit_cooldown,
            max_retry_after: self.max_retry_after,
        };
        #[cfg_attr(not(feature = "shared-state"), allow(unused_mut))]
        let mut listeners = self.listeners;
        #[cfg(feature = "shared-state")]
        let fleet = self.fleet.as_ref().map(|fleet| fleet.prepare());
        #[cfg(feature = "shared-state")]
        if let Some(listener) = fleet.as_ref().and_then(|f| f.listener.clone()) {
            listeners.push(listener);
        }
        let breaker = CircuitBreaker {
            shared: Arc::new(Shared::new(self.name, settings, listeners)),
        };
        #[cfg(feature = "shared-state")]
        if let Some(fleet) = fleet {
            (fleet.attach)(&breaker)?;
        }
        Ok(breaker)
    }
}

/// A rate in `(0, 1]` as parts per million, at least 1.
fn to_ppm(rate: f64) -> u64 {
    ((rate * 1_000_000.0).round() as u64).clamp(1, 1_000_000)
}
