//! The random numbers behind jitter: the [`Rng`] trait and the in-crate [`SplitMix64`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A small, fast, seedable generator (splitmix64). Not for cryptography: it spreads retries
/// out, nothing more.
///
/// [`SplitMix64::new`] gives a fixed sequence for tests; [`Default`] (and
/// [`SplitMix64::from_entropy`]) seeds from the process's hash randomness, so that two
/// processes started together do not jitter in step.
///
/// ```
/// use tower_breaker::backoff::{Rng, SplitMix64};
///
/// let mut a = SplitMix64::new(42);
/// let mut b = SplitMix64::new(42);
/// let x = a.next_f64();
/// assert!((0.0..1.0).contains(&x));
/// assert_eq!(x, b.next_f64()); // same seed, same sequence
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

/// The increment of splitmix64 (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    /// A generator with a fixed seed: the same seed always gives the same numbers.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator seeded from the process's hash randomness (`RandomState`), the clock and a
    /// counter: different in every process and every call.
    pub fn from_entropy() -> Self {
        Self::new(entropy_seed())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }
}

impl Default for SplitMix64 {
    /// Seeded with [`SplitMix64::from_entropy`].
    fn default() -> Self {
        Self::from_entropy()
    }
}

impl Rng for SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        unit(self.next_u64())
    }
}

/// The splitmix64 output function: a bijection of `u64` that scrambles every bit.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The top 53 bits of `bits` as a float in `[0, 1)`.
pub(crate) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A seed that differs between processes and between calls.
pub(crate) fn entropy_seed() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    if let Ok(since_epoch) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since_epoch.as_nanos());
    }
    hasher.finish()
}

/// A lock-free splitmix64 shared by clones: each draw advances one atomic counter.
#[cfg(feature = "retry")]
#[derive(Debug)]
pub(crate) struct AtomicSplitMix64 {
    state: AtomicU64,
}

#[cfg(feature = "retry")]
impl AtomicSplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let state = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        mix(state)
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

    #[cfg(feature = "retry")]
    #[test]
    fn the_atomic_generator_matches_the_plain_one() {
        let mut plain = SplitMix64::new(9);
        let shared = AtomicSplitMix64::new(9);
        for _ in 0..10 {
            assert_eq!(plain.next_u64(), shared.next_u64());
        }
    }

    #[test]
    fn entropy_seeds_differ() {
        assert_ne!(entropy_seed(), entropy_seed());
    }

    #[test]
    fn clamping_handles_nan_and_out_of_range() {
        assert_eq!(clamp_unit(f64::NAN), 0.0);
        assert_eq!(clamp_unit(-3.0), 0.0);
        assert_eq!(clamp_unit(7.0), 1.0);
        assert_eq!(clamp_unit(0.5), 0.5);
    }
}
