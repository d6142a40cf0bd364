//! The crate's one seedable random number generator: splitmix64 (Steele, Lea and Flood,
//! "Fast Splittable Pseudorandom Number Generators", 2014). Jitter in backoff and in the
//! breaker's open time, idempotency keys and chaos draws all come from here. Not for
//! cryptography. A leaf: it names no other module of the crate.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The increment of splitmix64 (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

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

/// The same sequence shared by clones, lock-free: each draw advances one atomic counter, so
/// concurrent draws get distinct numbers of the sequence. (A std atomic even in loom builds:
/// it publishes nothing, and each caller only needs a distinct value.)
#[derive(Debug)]
pub(crate) struct AtomicSplitMix64 {
    state: AtomicU64,
}

impl AtomicSplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    pub(crate) fn next_u64(&self) -> u64 {
        // Relaxed: see the type's docs.
        let state = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        mix(state)
    }

    /// A number uniformly distributed in `[0, 1)`.
    pub(crate) fn next_f64(&self) -> f64 {
        unit(self.next_u64())
    }
}

/// The `index`th number (from 1) of the sequence `SplitMix64::new(seed)` yields, without
/// walking it: for draws addressed by request number, which need no shared state.
#[cfg(feature = "chaos")]
pub(crate) fn nth(seed: u64, index: u64) -> u64 {
    mix(seed.wrapping_add(GAMMA.wrapping_mul(index)))
}

/// The splitmix64 output function: a bijection of `u64` that scrambles every bit.
fn mix(mut z: u64) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_atomic_generator_matches_the_plain_one() {
        let mut plain = SplitMix64::new(9);
        let shared = AtomicSplitMix64::new(9);
        for _ in 0..10 {
            assert_eq!(plain.next_u64(), shared.next_u64());
        }
    }

    #[cfg(feature = "chaos")]
    #[test]
    fn nth_is_the_sequence_addressed_by_index() {
        let mut plain = SplitMix64::new(5);
        for index in 1..=10 {
            assert_eq!(nth(5, index), plain.next_u64());
        }
    }

    #[test]
    fn entropy_seeds_differ() {
        assert_ne!(entropy_seed(), entropy_seed());
    }
}
