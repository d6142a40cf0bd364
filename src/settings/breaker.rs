//! [`BreakerSettings`]: a circuit breaker's settings.

use super::SettingsError;
use super::duration;
use crate::circuit_breaker::{Builder, CircuitBreaker, LoadAwareThresholds, SlidingWindow, Tier};
use serde::Deserialize;
use std::time::Duration;

/// The settings of a [`CircuitBreaker`], one key per setter of its
/// [`Builder`]; a key left out keeps the builder's value (its default, or a preset's).
///
/// ```toml
/// sliding_window = { kind = "time", length = "60s", buckets = 6 }
/// failure_rate_threshold = 0.5
/// minimum_calls = 10
/// wait_in_open = "15s"
/// permitted_calls_in_half_open = 3
/// open_time_growth = { multiplier = 2.0, max = "5m" }
/// ```
///
/// Not in the file, because they are code: event listeners and fleet sharing
/// (`shared_state`); set them on the builder given to [`build`](Self::build).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerSettings {
    /// [`Builder::sliding_window`].
    pub sliding_window: Option<WindowSettings>,
    /// [`Builder::failure_rate_threshold`].
    pub failure_rate_threshold: Option<f64>,
    /// [`Builder::slow_call_rate_threshold`].
    pub slow_call_rate_threshold: Option<f64>,
    /// [`Builder::slow_call_duration`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub slow_call_duration: Option<Duration>,
    /// [`Builder::minimum_calls`].
    pub minimum_calls: Option<u32>,
    /// [`Builder::wait_in_open`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub wait_in_open: Option<Duration>,
    /// [`Builder::permitted_calls_in_half_open`].
    pub permitted_calls_in_half_open: Option<u32>,
    /// [`Builder::max_wait_in_half_open`]: a duration, or `"none"` for no limit.
    #[serde(default, deserialize_with = "duration::optional_or_none")]
    pub max_wait_in_half_open: Option<Option<Duration>>,
    /// [`Builder::open_time_growth`].
    pub open_time_growth: Option<GrowthSettings>,
    /// [`Builder::open_time_jitter`].
    pub open_time_jitter: Option<f64>,
    /// [`Builder::jitter_seed`].
    pub jitter_seed: Option<u64>,
    /// [`Builder::load_aware`].
    pub load_aware: Option<LoadAwareSettings>,
    /// [`Builder::rate_limit_cooldown`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub rate_limit_cooldown: Option<Duration>,
    /// [`Builder::max_retry_after`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub max_retry_after: Option<Duration>,
}

/// A [`SlidingWindow`], by `kind`: `{ kind = "count", calls = 100 }`,
/// `{ kind = "time", length = "60s", buckets = 6 }` (buckets optional) or
/// `{ kind = "consecutive", failures = 5 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum WindowSettings {
    /// [`SlidingWindow::count_based`].
    Count {
        /// The number of calls in the window.
        calls: u32,
    },
    /// [`SlidingWindow::time_based`], and [`SlidingWindow::buckets`] if given.
    Time {
        /// The length of the window.
        #[serde(deserialize_with = "duration::required")]
        length: Duration,
        /// The number of buckets.
        buckets: Option<u32>,
    },
    /// [`SlidingWindow::consecutive`].
    Consecutive {
        /// Failures in a row that trip the breaker.
        failures: u32,
    },
}

impl WindowSettings {
    /// The window.
    pub fn to_window(self) -> SlidingWindow {
        match self {
            WindowSettings::Count { calls } => SlidingWindow::count_based(calls),
            WindowSettings::Time { length, buckets } => {
                let window = SlidingWindow::time_based(length);
                match buckets {
                    Some(buckets) => window.buckets(buckets),
                    None => window,
                }
            }
            WindowSettings::Consecutive { failures } => SlidingWindow::consecutive(failures),
        }
    }
}

/// The arguments of [`Builder::open_time_growth`].
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GrowthSettings {
    /// The open time is multiplied by this at each reopen.
    pub multiplier: f64,
    /// The longest open time.
    #[serde(deserialize_with = "duration::required")]
    pub max: Duration,
}

/// [`LoadAwareThresholds`]: `{ standard = true }` for
/// [`LoadAwareThresholds::standard`], or `{ tiers = [ { max_calls_per_minute = 10.0,
/// failures = 3, wait_in_open = "60s" }, ... ] }` (`inf` for the last tier's rate).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LoadAwareSettings {
    /// The three standard tiers.
    #[serde(default)]
    pub standard: bool,
    /// Tiers of their own.
    pub tiers: Option<Vec<TierSettings>>,
}

/// One [`Tier`].
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TierSettings {
    /// [`Tier::max_calls_per_minute`].
    pub max_calls_per_minute: f64,
    /// [`Tier::failures`].
    pub failures: u32,
    /// [`Tier::wait_in_open`].
    #[serde(deserialize_with = "duration::required")]
    pub wait_in_open: Duration,
}

impl BreakerSettings {
    /// Calls the builder's setter for every key that is set. The builder checks nothing
    /// until `build`; [`build`](Self::build) does both and names the path of a bad value.
    pub fn apply(&self, mut builder: Builder) -> Builder {
        if let Some(window) = self.sliding_window {
            builder = builder.sliding_window(window.to_window());
        }
        if let Some(rate) = self.failure_rate_threshold {
            builder = builder.failure_rate_threshold(rate);
        }
        if let Some(rate) = self.slow_call_rate_threshold {
            builder = builder.slow_call_rate_threshold(rate);
        }
        if let Some(duration) = self.slow_call_duration {
            builder = builder.slow_call_duration(duration);
        }
        if let Some(calls) = self.minimum_calls {
            builder = builder.minimum_calls(calls);
        }
        if let Some(wait) = self.wait_in_open {
            builder = builder.wait_in_open(wait);
        }
        if let Some(calls) = self.permitted_calls_in_half_open {
            builder = builder.permitted_calls_in_half_open(calls);
        }
        if let Some(wait) = self.max_wait_in_half_open {
            builder = builder.max_wait_in_half_open(wait);
        }
        if let Some(growth) = self.open_time_growth {
            builder = builder.open_time_growth(growth.multiplier, growth.max);
        }
        if let Some(fraction) = self.open_time_jitter {
            builder = builder.open_time_jitter(fraction);
        }
        if let Some(seed) = self.jitter_seed {
            builder = builder.jitter_seed(seed);
        }
        if let Some(load_aware) = &self.load_aware {
            builder = builder.load_aware(load_aware.to_thresholds());
        }
        if let Some(cooldown) = self.rate_limit_cooldown {
            builder = builder.rate_limit_cooldown(cooldown);
        }
        if let Some(max) = self.max_retry_after {
            builder = builder.max_retry_after(max);
        }
        builder
    }

    /// Applies the settings to `builder` and builds the breaker. `path` is where these
    /// settings sit in the file (`"openai.breaker"`); a value the builder rejects is an error
    /// at `path` and the builder's field.
    ///
    /// ```
    /// use tower_breaker::circuit_breaker::CircuitBreaker;
    /// use tower_breaker::settings::{self, BreakerSettings};
    ///
    /// let json = r#"{ "failure_rate_threshold": 1.5 }"#;
    /// let settings: BreakerSettings =
    ///     settings::deserialize(&mut serde_json::Deserializer::from_str(json))?;
    /// let err = settings
    ///     .build("openai.breaker", CircuitBreaker::builder("openai"))
    ///     .unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "openai.breaker.failure_rate_threshold: 1.5 (allowed: 0.0 < x <= 1.0)"
    /// );
    /// # Ok::<_, tower_breaker::settings::SettingsError>(())
    /// ```
    pub fn build(&self, path: &str, builder: Builder) -> Result<CircuitBreaker, SettingsError> {
        self.check(path)?;
        self.apply(builder)
            .build()
            .map_err(|err| SettingsError::config(path, err.field(), err))
    }

    /// The rules of the settings themselves (the builder checks the values).
    pub(crate) fn check(&self, path: &str) -> Result<(), SettingsError> {
        if let Some(load_aware) = &self.load_aware {
            if load_aware.standard == load_aware.tiers.is_some() {
                return Err(SettingsError::invalid(
                    super::error::join(path, "load_aware"),
                    "give either `standard = true` or `tiers`",
                ));
            }
        }
        Ok(())
    }
}

impl LoadAwareSettings {
    fn to_thresholds(&self) -> LoadAwareThresholds {
        match &self.tiers {
            Some(tiers) => LoadAwareThresholds::new(
                tiers
                    .iter()
                    .map(|tier| Tier {
                        max_calls_per_minute: tier.max_calls_per_minute,
                        failures: tier.failures,
                        wait_in_open: tier.wait_in_open,
                    })
                    .collect(),
            ),
            None => LoadAwareThresholds::standard(),
        }
    }
}
