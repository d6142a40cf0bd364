//! Adversarial tests of the adaptive bulkhead, from its public docs: any sequence of acquires,
//! records (success, congestion, ignore, at any latency) and drops, checked against the
//! documented bounds; the builder's ranges at their ends; a queued acquire dropped.

use proptest::prelude::*;
use std::time::Duration;
use tower_breaker::bulkhead::{
    AcquireError, AdaptiveBulkhead, AdaptivePermit, Aimd, Gradient, LimitAlgorithm, Signal,
};

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    /// Record the permit at this index (modulo the held ones) after `ms` of latency.
    Record(usize, Signal, u64),
    Drop(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let signal = prop_oneof![
        Just(Signal::Success),
        Just(Signal::Congestion),
        Just(Signal::Ignore)
    ];
    prop_oneof![
        4 => Just(Op::Acquire),
        3 => (any::<usize>(), signal, 0u64..5_000).prop_map(|(i, s, ms)| Op::Record(i, s, ms)),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => (0u64..2_000).prop_map(Op::Advance),
    ]
}

fn algorithm() -> impl Strategy<Value = LimitAlgorithm> {
    prop_oneof![
        Just(LimitAlgorithm::Aimd(Aimd::default())),
        Just(LimitAlgorithm::Gradient(Gradient::default())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The limit stays within `min ..= max`; a slot is granted only below the limit; and once
    /// every permit is given back, exactly `limit` slots are free: none leaks, none is made.
    #[test]
    fn slots_are_conserved_and_the_limit_stays_in_bounds(
        algorithm in algorithm(),
        min in 1u32..4,
        span in 0u32..12,
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let max = min + span;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let bulkhead = AdaptiveBulkhead::builder("p")
                .algorithm(algorithm)
                .initial_limit(min + span / 2)
                .limits(min, max)
                .build()
                .unwrap();
            let mut held: Vec<AdaptivePermit> = Vec::new();
            for op in ops {
                match op {
                    Op::Acquire => {
                        let before = held.len() as u32;
                        let limit = bulkhead.limit();
                        match bulkhead.try_acquire() {
                            Ok(permit) => {
                                prop_assert!(before < limit, "granted with {before} held, limit {limit}");
                                held.push(permit);
                            }
                            Err(_) => prop_assert!(before >= limit, "refused with {before} held, limit {limit}"),
                        }
                    }
                    Op::Record(i, signal, ms) if !held.is_empty() => {
                        let mut permit = held.swap_remove(i % held.len());
                        permit.record_latency(Duration::from_millis(ms));
                        permit.record(signal);
                    }
                    Op::Drop(i) if !held.is_empty() => {
                        drop(held.swap_remove(i % held.len()));
                    }
                    Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
                    _ => {}
                }
                let limit = bulkhead.limit();
                prop_assert!((min..=max).contains(&limit), "limit {limit} outside {min}..={max}");
                prop_assert_eq!(bulkhead.metrics().active, held.len() as u32);
            }
            held.clear();
            let limit = bulkhead.limit();
            let mut free = Vec::new();
            while let Ok(permit) = bulkhead.try_acquire() {
                free.push(permit);
                prop_assert!(free.len() as u32 <= limit, "more free slots than the limit {limit}");
            }
            prop_assert_eq!(free.len() as u32, limit);
            Ok(())
        })?;
    }
}

#[test]
fn the_builders_ranges_hold_at_their_ends() {
    let build = |min: u32, max: u32, initial: u32| {
        AdaptiveBulkhead::builder("b")
            .limits(min, max)
            .initial_limit(initial)
            .build()
    };
    assert!(build(1, 1, 1).is_ok());
    assert!(build(1, 1_000_000, 1_000_000).is_ok());
    assert_eq!(build(0, 10, 5).unwrap_err().field(), "min_limit");
    assert_eq!(build(5, 4, 4).unwrap_err().field(), "max_limit");
    assert_eq!(build(1, 1_000_001, 5).unwrap_err().field(), "max_limit");
    assert_eq!(build(2, 10, 1).unwrap_err().field(), "initial_limit");
    assert_eq!(build(2, 10, 11).unwrap_err().field(), "initial_limit");
    let wait = |d: Duration| AdaptiveBulkhead::builder("b").max_wait(d).build();
    assert!(wait(Duration::from_millis(1)).is_ok());
    assert_eq!(wait(Duration::ZERO).unwrap_err().field(), "max_wait");
    assert_eq!(
        AdaptiveBulkhead::builder("b")
            .max_queue(1_000_001)
            .build()
            .unwrap_err()
            .field(),
        "max_queue"
    );
}

#[tokio::test(start_paused = true)]
async fn a_queued_acquire_dropped_or_timed_out_gives_its_place_back() {
    let bulkhead = AdaptiveBulkhead::builder("q")
        .limits(1, 1)
        .initial_limit(1)
        .max_queue(1)
        .max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    let held = bulkhead.try_acquire().unwrap();
    // A waiter dropped after one poll leaves the queue.
    let mut waiter = tokio_test::task::spawn(bulkhead.acquire());
    assert!(waiter.poll().is_pending());
    assert_eq!(bulkhead.metrics().queued, 1);
    drop(waiter);
    assert_eq!(bulkhead.metrics().queued, 0);
    // The place is free again: one waits (and times out at exactly max_wait); a second at
    // the same time finds the queue full.
    let start = tokio::time::Instant::now();
    let (first, second) = tokio::join!(bulkhead.acquire(), async {
        tokio::task::yield_now().await;
        bulkhead.acquire().await
    });
    assert!(matches!(second, Err(AcquireError::Full(_))));
    assert!(matches!(first, Err(AcquireError::Timeout(_))));
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(bulkhead.metrics().queued, 0);
    drop(held);
    assert!(bulkhead.try_acquire().is_ok());
}
