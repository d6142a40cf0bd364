//! How long to wait before each retry: constant, linear and exponential [`Backoff`] with
//! [`Jitter`], usable on its own or through the [retry policy](crate::retry).
//!
//! A backoff is a plain description, checked when it is used: [`Backoff::delays`] (or
//! [`Backoff::validate`]) returns a [`ConfigError`] for a max delay below the base, a factor
//! below 1 and the like. Delays never overflow: retry number 10,000 of an exponential backoff
//! waits exactly its max delay.
//!
//! ```
//! use std::time::Duration;
//! use tower_breaker::backoff::{Backoff, SplitMix64};
//!
//! let ms = Duration::from_millis;
//!
//! // 100 ms, 200 ms, 400 ms, 800 ms, then 1 s for ever.
//! let delays: Vec<_> = Backoff::exponential(ms(100), ms(1000)).delays()?.take(6).collect();
//! assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
//!
//! // The same with full jitter: each delay is anywhere between zero and the value above.
//! // A seeded generator makes the sequence reproducible.
//! let jittered = Backoff::exponential(ms(100), ms(1000)).full_jitter();
//! for (retry, delay) in jittered.delays_with_rng(SplitMix64::new(7))?.take(6).enumerate() {
//!     assert!(delay <= jittered.base_delay(retry as u32 + 1));
//! }
//!
//! // Never an overflow, whatever the retry number:
//! assert_eq!(Backoff::exponential(ms(100), ms(1000)).base_delay(10_000), ms(1000));
//! # Ok::<_, tower_breaker::ConfigError>(())
//! ```
//!
//! # Jitter
//!
//! Clients that fail together and retry on the same schedule hit a recovering upstream together.
//! Jitter spreads them out. With `d` the delay without jitter (already capped at the max delay),
//! `r` a random number in `[0, 1)`:
//!
//! | jitter | delay | range |
//! |---|---|---|
//! | [`Jitter::None`] | `d` | `d` |
//! | [`Jitter::Full`] | `r * d` | `[0, d]` |
//! | [`Jitter::Equal`] | `d / 2 + r * d / 2` | `[d / 2, d]` |
//! | [`Jitter::Fraction(f)`](Jitter::Fraction) | `d * (1 + f * (2r - 1))` | `[d (1 - f), min(d (1 + f), max)]` |
//! | [`Jitter::Decorrelated`] | `base + r * (min(max, 3 * prev) - base)` | `[base, min(max, 3 * prev)]` |
//!
//! Full and equal jitter are from the AWS Architecture Blog's "Exponential Backoff And Jitter";
//! decorrelated jitter is its "decorrelated" variant, where each delay grows from the previous
//! one (`prev`, the base for the first retry) rather than from the retry number, so it ignores
//! the curve's shape and uses only its base and max delay.

mod rng;

pub(crate) use self::rng::clamp_unit;
pub use self::rng::{Rng, SplitMix64};

use crate::config::{ConfigError, MAX_DURATION};
use std::time::Duration;

/// The shape of the delays before jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Curve {
    Constant,
    Linear { step: Duration },
    Exponential { factor: f64 },
}

/// How a delay is randomised; see the [module docs](self#jitter) for the formulas.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// The delay as computed: every client waits the same.
    #[default]
    None,
    /// Anywhere between zero and the delay (the AWS recommendation: the best spread).
    Full,
    /// At least half the delay, plus a random part of the other half.
    Equal,
    /// Between the base delay and three times the previous delay, capped by the max delay.
    Decorrelated,
    /// The delay plus or minus this fraction of it (0.0 to 1.0), capped by the max delay.
    Fraction(f64),
}

/// A backoff: the delay before each retry. See the [module docs](self).
///
/// Build one with [`constant`](Backoff::constant), [`linear`](Backoff::linear) or
/// [`exponential`](Backoff::exponential), then choose a jitter. It is `Copy` and holds no state:
/// [`delays`](Backoff::delays) gives an iterator with its own state, and
/// [`next_delay`](Backoff::next_delay) computes one delay for callers that keep their own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    curve: Curve,
    base: Duration,
    max: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// The same delay before every retry.
    pub fn constant(delay: Duration) -> Self {
        Self {
            curve: Curve::Constant,
            base: delay,
            max: delay,
            jitter: Jitter::None,
        }
    }

    /// `base` before the first retry, then `step` more before each following one (the step is
    /// `base` unless [`step`](Self::step) says otherwise), never more than `max`.
    pub fn linear(base: Duration, max: Duration) -> Self {
        Self {
            curve: Curve::Linear { step: base },
            base,
            max,
            jitter: Jitter::None,
        }
    }

    /// `base` before the first retry, then the previous delay times the factor (2.0 unless
    /// [`factor`](Self::factor) says otherwise), never more than `max`.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        Self {
            curve: Curve::Exponential { factor: 2.0 },
            base,
            max,
            jitter: Jitter::None,
        }
    }

    /// For an exponential backoff, the growth per retry (1.0 to 100.0, default 2.0).
    /// Has no effect on other curves.
    pub fn factor(mut self, factor: f64) -> Self {
        if let Curve::Exponential { .. } = self.curve {
            self.curve = Curve::Exponential { factor };
        }
        self
    }

    /// For a linear backoff, the growth per retry (up to 24 h, default: the base delay).
    /// Has no effect on other curves.
    pub fn step(mut self, step: Duration) -> Self {
        if let Curve::Linear { .. } = self.curve {
            self.curve = Curve::Linear { step };
        }
        self
    }

    /// Uses `jitter`.
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// No jitter (the default).
    pub fn no_jitter(self) -> Self {
        self.with_jitter(Jitter::None)
    }

    /// [`Jitter::Full`]: anywhere between zero and the delay.
    pub fn full_jitter(self) -> Self {
        self.with_jitter(Jitter::Full)
    }

    /// [`Jitter::Equal`]: half the delay plus a random part of the other half.
    pub fn equal_jitter(self) -> Self {
        self.with_jitter(Jitter::Equal)
    }

    /// [`Jitter::Decorrelated`]: between the base and three times the previous delay.
    pub fn decorrelated_jitter(self) -> Self {
        self.with_jitter(Jitter::Decorrelated)
    }

    /// [`Jitter::Fraction`]: the delay plus or minus `fraction` of it (0.0 to 1.0).
    pub fn jitter(self, fraction: f64) -> Self {
        self.with_jitter(Jitter::Fraction(fraction))
    }

    /// The delay before the first retry.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The longest delay.
    pub fn max_delay(&self) -> Duration {
        self.max
    }

    /// The jitter.
    pub fn jitter_kind(&self) -> Jitter {
        self.jitter
    }

    /// Checks the settings: base and max delay up to 24 h with the max at least the base, a
    /// factor from 1.0 to 100.0, a step up to 24 h, a jitter fraction from 0.0 to 1.0.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_breaker::backoff::Backoff;
    ///
    /// let err = Backoff::exponential(Duration::from_secs(2), Duration::from_secs(1))
    ///     .validate()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "max_delay");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check("backoff")
    }

    /// [`validate`](Self::validate), naming `component` in the error.
    pub(crate) fn check(&self, component: &str) -> Result<(), ConfigError> {
        let err = |field, value: &dyn std::fmt::Debug, allowed: String| {
            Err(ConfigError::new(component, field, value, allowed))
        };
        if self.base > MAX_DURATION {
            return err("base_delay", &self.base, format!("0s ..= {MAX_DURATION:?}"));
        }
        if self.max < self.base || self.max > MAX_DURATION {
            return err(
                "max_delay",
                &self.max,
                format!("{:?} (the base delay) ..= {MAX_DURATION:?}", self.base),
            );
        }
        match self.curve {
            Curve::Exponential { factor } if !(1.0..=100.0).contains(&factor) => {
                return err("factor", &factor, "1.0 ..= 100.0".to_string());
            }
            Curve::Linear { step } if step > MAX_DURATION => {
                return err("step", &step, format!("0s ..= {MAX_DURATION:?}"));
            }
            _ => {}
        }
        if let Jitter::Fraction(fraction) = self.jitter {
            if !(0.0..=1.0).contains(&fraction) {
                return err("jitter", &fraction, "0.0 ..= 1.0".to_string());
            }
        }
        Ok(())
    }

    /// The delay before retry number `retry` (1 for the first retry) without jitter, capped at
    /// the max delay. Retry 0 is treated as 1. Never overflows and never panics.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let steps = retry.max(1) - 1;
        let base = nanos(self.base);
        let max = nanos(self.max);
        let raw = match self.curve {
            Curve::Constant => base,
            Curve::Linear { step } => base + nanos(step) * f64::from(steps),
            // A zero base stays zero (and `0 * inf` would be NaN).
            Curve::Exponential { .. } if base == 0.0 => 0.0,
            Curve::Exponential { factor } => {
                base * factor.powi(i32::try_from(steps).unwrap_or(i32::MAX))
            }
        };
        self.clamp_to_max(raw, max)
    }

    /// The delay before retry number `retry` (1 for the first), with jitter drawn from `rng`.
    /// `previous` is the delay before the previous retry (`None` before the first one); only
    /// decorrelated jitter uses it.
    ///
    /// For callers that keep their own state; [`delays`](Self::delays) keeps it for you.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_breaker::backoff::Backoff;
    ///
    /// let backoff = Backoff::linear(Duration::from_secs(1), Duration::from_secs(10)).equal_jitter();
    /// let mut always_half = || 0.5;
    /// // Retry 3 without jitter waits 3 s; equal jitter with r = 0.5 gives 1.5 s + 0.75 s.
    /// let delay = backoff.next_delay(3, Some(Duration::from_secs(2)), &mut always_half);
    /// assert_eq!(delay, Duration::from_millis(2250));
    /// ```
    pub fn next_delay<R>(&self, retry: u32, previous: Option<Duration>, rng: &mut R) -> Duration
    where
        R: Rng + ?Sized,
    {
        let max = nanos(self.max);
        let jittered = match self.jitter {
            Jitter::None => return self.base_delay(retry),
            Jitter::Full => nanos(self.base_delay(retry)) * random(rng),
            Jitter::Equal => {
                let half = nanos(self.base_delay(retry)) / 2.0;
                half + half * random(rng)
            }
            Jitter::Fraction(fraction) => {
                let fraction = clamp_unit(fraction);
                let delay = nanos(self.base_delay(retry));
                delay * (1.0 + fraction * (2.0 * random(rng) - 1.0))
            }
            Jitter::Decorrelated => {
                let low = nanos(self.base);
                let previous = previous.map_or(low, nanos);
                let high = (previous * 3.0).min(max).max(low);
                low + (high - low) * random(rng)
            }
        };
        self.clamp_to_max(jittered, max)
    }

    /// An endless iterator over the delays before retry 1, 2, 3, ..., with jitter from a
    /// generator seeded by [`SplitMix64::from_entropy`]. Checks the settings first.
    pub fn delays(self) -> Result<Delays<SplitMix64>, ConfigError> {
        self.delays_with_rng(SplitMix64::from_entropy())
    }

    /// [`delays`](Self::delays) with jitter drawn from `rng` (seed it for exact tests).
    pub fn delays_with_rng<R: Rng>(self, rng: R) -> Result<Delays<R>, ConfigError> {
        self.validate()?;
        Ok(Delays {
            backoff: self,
            rng,
            retry: 0,
            previous: None,
        })
    }

    /// `raw` nanoseconds as a duration, never above the max delay. NaN and infinities give the
    /// max delay; negative values give zero.
    fn clamp_to_max(&self, raw: f64, max: f64) -> Duration {
        if raw.is_nan() || raw >= max {
            self.max
        } else if raw <= 0.0 {
            Duration::ZERO
        } else {
            // `raw` is below `max`, which came from a `Duration`: the cast cannot saturate
            // beyond what `max` allows, and `as` never panics.
            Duration::from_nanos(raw.round() as u64).min(self.max)
        }
    }
}

/// A duration in nanoseconds, as a float. Exact up to about 104 days (2^53 ns).
fn nanos(d: Duration) -> f64 {
    d.as_nanos() as f64
}

/// The next random number, clamped into `[0, 1]`.
fn random<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    clamp_unit(rng.next_f64())
}

/// The delays of a [`Backoff`], one per retry; made by [`Backoff::delays`].
///
/// An endless iterator: bound it with `take` or a retry limit.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::backoff::{Backoff, SplitMix64};
///
/// let mut delays = Backoff::constant(Duration::from_millis(250))
///     .jitter(0.2)
///     .delays_with_rng(SplitMix64::new(1))?;
/// let delay = delays.next().unwrap();
/// assert!(delay >= Duration::from_millis(200) && delay <= Duration::from_millis(300));
/// assert_eq!(delays.retries(), 1);
/// delays.reset();
/// assert_eq!(delays.retries(), 0);
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Delays<R = SplitMix64> {
    backoff: Backoff,
    rng: R,
    retry: u32,
    previous: Option<Duration>,
}

impl<R> Delays<R> {
    /// How many delays were handed out since the start or the last [`reset`](Self::reset).
    pub fn retries(&self) -> u32 {
        self.retry
    }

    /// Starts again from the first retry (after a success, say). The generator goes on.
    pub fn reset(&mut self) {
        self.retry = 0;
        self.previous = None;
    }

    /// The backoff.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}

impl<R: Rng> Iterator for Delays<R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.retry = self.retry.saturating_add(1);
        let delay = self
            .backoff
            .next_delay(self.retry, self.previous, &mut self.rng);
        self.previous = Some(delay);
        Some(delay)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    #[test]
    fn curves_without_jitter() {
        let b = Backoff::exponential(ms(100), ms(1000));
        let d: Vec<_> = (1..=6).map(|n| b.base_delay(n)).collect();
        assert_eq!(d, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        let b = Backoff::linear(ms(100), ms(350)).step(ms(100));
        let d: Vec<_> = (1..=5).map(|n| b.base_delay(n)).collect();
        assert_eq!(d, [ms(100), ms(200), ms(300), ms(350), ms(350)]);
        assert_eq!(Backoff::constant(ms(5)).base_delay(1_000_000), ms(5));
        assert_eq!(b.base_delay(0), b.base_delay(1));
    }

    #[test]
    fn huge_retry_numbers_give_the_max() {
        for retry in [64, 1_000, 10_000, u32::MAX] {
            let exp = Backoff::exponential(ms(1), Duration::from_secs(60)).factor(100.0);
            assert_eq!(exp.base_delay(retry), Duration::from_secs(60));
            let lin = Backoff::linear(MAX_DURATION, MAX_DURATION);
            assert_eq!(lin.base_delay(retry), MAX_DURATION);
        }
        let zero = Backoff::exponential(Duration::ZERO, ms(10));
        assert_eq!(zero.base_delay(u32::MAX), Duration::ZERO);
        let unchecked = Backoff::exponential(Duration::MAX, Duration::MAX);
        assert_eq!(unchecked.base_delay(u32::MAX), Duration::MAX);
    }

    #[test]
    fn a_faulty_rng_cannot_push_delays_out_of_bounds() {
        let b = Backoff::exponential(ms(100), ms(1000)).jitter(1.0);
        for value in [f64::NAN, f64::INFINITY, -1.0, 2.0] {
            let mut rng = move || value;
            let d = b.next_delay(3, None, &mut rng);
            assert!(d <= ms(800) || d == ms(1000));
        }
    }

    #[test]
    fn validation() {
        assert!(Backoff::exponential(ms(1), ms(1)).validate().is_ok());
        let e = Backoff::linear(ms(2), ms(1)).validate().unwrap_err();
        assert_eq!(e.field(), "max_delay");
        let e = Backoff::exponential(ms(1), ms(2))
            .factor(0.5)
            .validate()
            .unwrap_err();
        assert_eq!(e.field(), "factor");
        let e = Backoff::constant(ms(1)).jitter(1.5).validate().unwrap_err();
        assert_eq!(e.field(), "jitter");
        let e = Backoff::constant(Duration::from_secs(100_000))
            .validate()
            .unwrap_err();
        assert_eq!(e.field(), "base_delay");
        assert_eq!(e.value(), "100000s");
    }
}
