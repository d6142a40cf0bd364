//! The random numbers behind jitter: the [`Rng`] trait, implemented by the crate's one
//! generator, [`SplitMix64`] (in `crate::random`).

pub use crate::random::SplitMix64;

/// A source of uniform random numbers in `[0, 1)`, used for jitter.
///
/// [`SplitMix64`] is the ready-made one; closures `FnMut() -> f64` implement it too, which is
/// handy in tests that need exact values. A value outside `[0, 1)` (or NaN) is clamped, so a
/// faulty source can skew delays but never make them exceed their bounds or panic.
///
/// ```
/// use tower_breaker::backoff::Rng;
///
/// /// Always the middle of the range: jitter becomes deterministic.
/// struct Middle;
///
/// impl Rng for Middle {
///     fn next_f64(&mut self) -> f64 {
///         0.5
///     }
/// }
///
/// let mut rng = Middle;
/// assert_eq!(rng.next_f64(), 0.5);
///
/// // A closure works too:
/// let mut steps = [0.0, 0.25, 0.75].into_iter().cycle();
/// let mut rng = move || steps.next().unwrap_or(0.0);
/// assert_eq!(rng.next_f64(), 0.0);
/// assert_eq!(rng.next_f64(), 0.25);
/// ```
pub trait Rng {
    /// A number uniformly distributed in `[0, 1)`.
    fn next_f64(&mut self) -> f64;
}

impl<F> Rng for F
where
    F: FnMut() -> f64,
{
    fn next_f64(&mut self) -> f64 {
        self()
    }
}

impl Rng for SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        crate::random::unit(self.next_u64())
    }
}

/// `x` clamped into `[0, 1]`; NaN counts as 0.
pub(crate) fn clamp_unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_values_stay_in_range() {
        let mut a = SplitMix64::new(1);
        let mut b = SplitMix64::new(1);
        for _ in 0..1000 {
            let x = a.next_f64();
            assert!((0.0..1.0).contains(&x));
            assert_eq!(x.to_bits(), b.next_f64().to_bits());
        }
    }

    #[test]
    fn clamping_handles_nan_and_out_of_range() {
        assert_eq!(clamp_unit(f64::NAN), 0.0);
        assert_eq!(clamp_unit(-3.0), 0.0);
        assert_eq!(clamp_unit(7.0), 1.0);
        assert_eq!(clamp_unit(0.5), 0.5);
    }
}
