//! The per-call paths outside the breaker and the bulkhead: a keyed registry's lookup, the
//! fallback layer and its cache, the metrics listener.

use crate::{CALLS, allocations_per_calls, call_once, inner};
use std::convert::Infallible;
use std::future::ready;
use std::time::Duration;
use tower::{Layer, service_fn};
use tower_breaker::circuit_breaker::CircuitBreaker;
use tower_breaker::fallback::FallbackLayer;
use tower_breaker::keyed::{KeyedCircuitBreakerLayer, KeyedCircuitBreakers};

fn registry() -> KeyedCircuitBreakers<u64> {
    KeyedCircuitBreakers::builder(CircuitBreaker::builder("alloc"))
        .max_keys(100)
        .build()
        .expect("valid config")
}

#[test]
fn keyed_lookups_allocate_nothing() {
    let keyed = registry();
    let allocations = allocations_per_calls(|i| {
        let breaker = keyed.get(&(i % 4));
        drop(std::hint::black_box(breaker));
    });
    assert_eq!(allocations, 0, "allocations in {CALLS} lookups");
}

#[test]
fn keyed_service_calls_allocate_nothing() {
    let keyed = registry();
    let mut svc = KeyedCircuitBreakerLayer::new(keyed.clone(), |n: &u64| n % 4).layer(inner());
    let allocations = allocations_per_calls(|i| {
        assert_eq!(call_once(&mut svc, i).expect("closed"), i);
    });
    assert_eq!(allocations, 0, "allocations in {CALLS} calls");
    assert_eq!(keyed.len(), 4);
}

#[test]
fn fallback_calls_that_succeed_allocate_nothing() {
    let mut svc = FallbackLayer::from_fn(|failed| failed).layer(inner());
    let allocations = allocations_per_calls(|i| {
        assert_eq!(call_once(&mut svc, i).expect("answered"), i);
    });
    assert_eq!(allocations, 0, "allocations in {CALLS} calls");
}

#[test]
fn a_fallback_cache_copies_no_good_answer_while_the_stored_one_is_fresh() {
    // The inner service allocates its answer (a `String`): one allocation per call. A cache
    // that cloned every good answer into itself would make it two.
    let inner = service_fn(|n: u64| ready(Ok::<_, Infallible>(format!("answer {n}"))));
    let mut svc =
        FallbackLayer::cache(|n: &u64| Some(n % 4), Duration::from_secs(3600), 100).layer(inner);
    let allocations = allocations_per_calls(|i| {
        drop(call_once(&mut svc, i).expect("answered"));
    });
    assert_eq!(allocations, CALLS, "allocations in {CALLS} calls");
}

/// The cache's "stored recently" table has two slots per entry, found by a hash seeded at
/// random: four keys shared a slot in about one run in thirty, and each store of one evicted
/// the other's slot, so half the calls cloned their answer (1,500 allocations, not 1,000).
/// With 150 keys in 400 slots some keys share a slot in every run (the chance of none is
/// about e^-28); a fresh answer must still never be cloned.
#[test]
fn a_fallback_cache_copies_no_good_answer_even_when_keys_share_a_slot() {
    let inner = service_fn(|n: u64| ready(Ok::<_, Infallible>(format!("answer {n}"))));
    let mut svc =
        FallbackLayer::cache(|n: &u64| Some(n % 150), Duration::from_secs(3600), 200).layer(inner);
    let allocations = allocations_per_calls(|i| {
        drop(call_once(&mut svc, i).expect("answered"));
    });
    assert_eq!(allocations, CALLS, "allocations in {CALLS} calls");
}

#[cfg(feature = "metrics")]
#[test]
fn a_metrics_listener_adds_no_allocation_per_call() {
    use tower_breaker::Outcome;
    use tower_breaker::metrics::MetricsListener;

    let breaker = CircuitBreaker::builder("alloc")
        .on_event(MetricsListener::new())
        .build()
        .expect("valid config");
    let allocations = allocations_per_calls(|_| {
        breaker
            .try_acquire()
            .expect("closed")
            .record(Outcome::Success);
    });
    assert_eq!(allocations, 0, "allocations in {CALLS} calls");
}

/// The standard stack's rejection while its breaker is open: the boxed `CircuitOpen` (the
/// stack's error type is `BoxError`) and nothing else; no timer, no copy of the request.
#[cfg(feature = "stack")]
#[tokio::test(start_paused = true)]
async fn a_standard_stack_rejection_allocates_only_its_boxed_error() {
    use tower_breaker::circuit_breaker::CircuitOpen;
    use tower_breaker::stack::StandardResilience;

    let stack = StandardResilience::builder("alloc")
        .build()
        .expect("valid config");
    let mut svc = stack.layer(inner());
    stack.breaker().force_open();
    let allocations = allocations_per_calls(|i| {
        let err = call_once(&mut svc, i).expect_err("open");
        assert!(err.is::<CircuitOpen>(), "{err}");
    });
    assert_eq!(allocations, CALLS, "allocations in {CALLS} rejections");
}
