//! The backoff on its own: exact delays for each curve and jitter, bounds under proptest.

use crate::harness::cycle;
use crate::support::{ms, secs};
use proptest::prelude::*;
use std::time::Duration;
use tower_breaker::backoff::{Backoff, Jitter, Rng, SplitMix64};

fn first<R: Rng>(backoff: Backoff, rng: R, n: usize) -> Vec<Duration> {
    backoff.delays_with_rng(rng).unwrap().take(n).collect()
}

#[test]
fn constant_linear_and_exponential_delays_are_exact() {
    let none = || 0.0;
    assert_eq!(first(Backoff::constant(ms(250)), none, 3), [ms(250); 3]);
    assert_eq!(
        first(Backoff::linear(ms(100), ms(400)), none, 6),
        [ms(100), ms(200), ms(300), ms(400), ms(400), ms(400)]
    );
    assert_eq!(
        first(Backoff::linear(ms(100), secs(1)).step(ms(50)), none, 4),
        [ms(100), ms(150), ms(200), ms(250)]
    );
    assert_eq!(
        first(Backoff::exponential(ms(500), secs(8)), none, 7),
        [
            ms(500),
            secs(1),
            secs(2),
            secs(4),
            secs(8),
            secs(8),
            secs(8)
        ]
    );
    assert_eq!(
        first(Backoff::exponential(ms(10), secs(1)).factor(3.0), none, 6),
        [ms(10), ms(30), ms(90), ms(270), ms(810), secs(1)]
    );
    assert_eq!(
        first(Backoff::exponential(ms(100), secs(10)).factor(1.5), none, 3),
        [ms(100), ms(150), ms(225)]
    );
}

#[test]
fn jittered_delays_are_exact_with_a_scripted_generator() {
    let r = || cycle(&[0.5, 0.25, 0.75]);
    let exp = Backoff::exponential(ms(100), secs(10));
    // Full: r * d.
    assert_eq!(first(exp.full_jitter(), r(), 3), [ms(50), ms(50), ms(300)]);
    // Equal: d/2 + r * d/2.
    assert_eq!(
        first(exp.equal_jitter(), r(), 3),
        [ms(75), ms(125), ms(350)]
    );
    // Fraction 0.2: d * (1 + 0.2 * (2r - 1)).
    assert_eq!(first(exp.jitter(0.2), r(), 3), [ms(100), ms(180), ms(440)]);
    // Decorrelated: base + r * (min(max, 3 * prev) - base), prev starting at the base.
    assert_eq!(
        first(exp.decorrelated_jitter(), r(), 3),
        [ms(200), ms(225), Duration::from_micros(531_250)]
    );
    // The same with `with_jitter`.
    assert_eq!(
        first(exp.with_jitter(Jitter::Full), r(), 1),
        first(exp.full_jitter(), r(), 1)
    );
}

#[test]
fn the_same_seed_gives_the_same_delays() {
    let b = Backoff::exponential(ms(100), secs(30)).full_jitter();
    let a = first(b, SplitMix64::new(42), 20);
    assert_eq!(a, first(b, SplitMix64::new(42), 20));
    assert_ne!(a, first(b, SplitMix64::new(43), 20));
}

#[test]
fn attempt_ten_thousand_waits_the_max_delay() {
    let b = Backoff::exponential(ms(100), secs(30));
    assert_eq!(b.base_delay(10_000), secs(30));
    assert_eq!(b.base_delay(u32::MAX), secs(30));
    let mut delays = b.delays().unwrap();
    assert_eq!(delays.nth(9_999), Some(secs(30)));
    assert_eq!(
        Backoff::linear(secs(1), secs(60)).base_delay(10_000),
        secs(60)
    );
}

#[test]
fn bad_settings_are_config_errors() {
    let err = Backoff::exponential(secs(2), secs(1))
        .validate()
        .unwrap_err();
    assert_eq!(err.field(), "max_delay");
    assert!(err.to_string().contains("2s (the base delay)"), "{err}");
    assert!(Backoff::linear(secs(2), secs(1)).delays().is_err());
    let err = Backoff::exponential(ms(1), secs(1))
        .factor(f64::NAN)
        .validate()
        .unwrap_err();
    assert_eq!(err.field(), "factor");
    let err = Backoff::constant(ms(1))
        .jitter(-0.1)
        .validate()
        .unwrap_err();
    assert_eq!(err.field(), "jitter");
}

fn jitters() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        (0.0..=1.0f64).prop_map(Jitter::Fraction),
    ]
}

fn backoffs() -> impl Strategy<Value = Backoff> {
    (
        0u64..10_000,
        0u64..120_000,
        1.0..10.0f64,
        0u64..5_000,
        0u8..3,
        jitters(),
    )
        .prop_map(|(base, extra, factor, step, curve, jitter)| {
            let (base, max) = (ms(base), ms(base + extra));
            let backoff = match curve {
                0 => Backoff::constant(base),
                1 => Backoff::linear(base, max).step(ms(step)),
                _ => Backoff::exponential(base, max).factor(factor),
            };
            backoff.with_jitter(jitter)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every jittered delay stays inside the range its jitter promises, and never above the max.
    #[test]
    fn jittered_delays_stay_within_their_bounds(
        backoff in backoffs(),
        seed in any::<u64>(),
        start in prop_oneof![1u32..50, 9_990u32..10_010, Just(u32::MAX - 20)],
    ) {
        let mut rng = SplitMix64::new(seed);
        let mut previous: Option<Duration> = None;
        for retry in start..start.saturating_add(20) {
            let delay = backoff.next_delay(retry, previous, &mut rng);
            let d = backoff.base_delay(retry);
            let max = backoff.max_delay();
            prop_assert!(delay <= max, "{delay:?} above the max {max:?}");
            match backoff.jitter_kind() {
                Jitter::None => prop_assert_eq!(delay, d),
                Jitter::Full => prop_assert!(delay <= d),
                Jitter::Equal => prop_assert!(delay >= d / 2 && delay <= d, "{delay:?} vs {d:?}"),
                Jitter::Fraction(f) => {
                    let low = d.as_secs_f64() * (1.0 - f) - 1e-9;
                    let high = (d.as_secs_f64() * (1.0 + f)).min(max.as_secs_f64()) + 1e-9;
                    prop_assert!((low..=high).contains(&delay.as_secs_f64()), "{delay:?} vs {d:?} ± {f}");
                }
                Jitter::Decorrelated => {
                    let base = backoff.base();
                    let prev = previous.unwrap_or(base);
                    let high = (prev * 3).min(max).max(base);
                    prop_assert!(delay >= base && delay <= high, "{delay:?} not in [{base:?}, {high:?}]");
                }
                other => prop_assert!(false, "unknown jitter {other:?}"),
            }
            previous = Some(delay);
        }
    }

    /// The iterator and `next_delay` agree, whatever the seed.
    #[test]
    fn the_iterator_matches_next_delay(backoff in backoffs(), seed in any::<u64>()) {
        let from_iter: Vec<_> = first(backoff, SplitMix64::new(seed), 10);
        let mut rng = SplitMix64::new(seed);
        let mut previous = None;
        for (i, expected) in from_iter.into_iter().enumerate() {
            let delay = backoff.next_delay(i as u32 + 1, previous, &mut rng);
            prop_assert_eq!(delay, expected);
            previous = Some(delay);
        }
    }
}
