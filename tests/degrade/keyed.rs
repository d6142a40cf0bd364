use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
use tower_breaker::keyed::KeyedCircuitBreakers;

#[tokio::test(start_paused = true)]
async fn a_hundred_thousand_keys_stay_bounded_and_open_breakers_survive() {
    let template = CircuitBreaker::builder("host").sliding_window(SlidingWindow::consecutive(1));
    let keyed = KeyedCircuitBreakers::builder(template)
        .max_keys(1_000)
        .build()
        .unwrap();
    // Ten hosts go down first.
    for i in 0..10 {
        keyed
            .get(&format!("down-{i}"))
            .try_acquire()
            .unwrap()
            .record(Outcome::Failure);
    }
    for i in 0..100_000 {
        keyed
            .get(&format!("host-{i}"))
            .try_acquire()
            .unwrap()
            .record(Outcome::Success);
        assert!(keyed.len() <= 1_000);
    }
    assert!(keyed.evicted() >= 99_000);
    for i in 0..10 {
        let key = format!("down-{i}");
        assert_eq!(
            keyed.state(&key),
            Some(CircuitState::Open),
            "{key} was forgotten"
        );
        assert!(keyed.get(&key).try_acquire().is_err());
    }
    let open = keyed
        .states()
        .into_iter()
        .filter(|(_, s)| *s == CircuitState::Open)
        .count();
    assert_eq!(open, 10);
}

#[tokio::test(start_paused = true)]
async fn when_nothing_can_be_evicted_new_keys_share_the_overflow_breaker() {
    let template = CircuitBreaker::builder("model").sliding_window(SlidingWindow::consecutive(1));
    let keyed = KeyedCircuitBreakers::builder(template)
        .max_keys(2)
        .build()
        .unwrap();
    for key in ["a", "b"] {
        keyed
            .get(&key.to_string())
            .try_acquire()
            .unwrap()
            .record(Outcome::Failure);
    }
    let c = keyed.get(&"c".to_string());
    assert_eq!(c.name(), "model:overflow");
    assert_eq!(keyed.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn overrides_apply_per_key_and_names_carry_the_key() {
    let template = CircuitBreaker::builder("model").sliding_window(SlidingWindow::consecutive(1));
    let keyed = KeyedCircuitBreakers::builder(template.clone())
        .override_for(
            "gpt-4o".to_string(),
            template.sliding_window(SlidingWindow::consecutive(3)),
        )
        .build()
        .unwrap();
    let big = keyed.get(&"gpt-4o".to_string());
    assert_eq!(big.name(), "model:gpt-4o");
    for _ in 0..2 {
        big.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(big.state(), CircuitState::Closed);
    let small = keyed.get(&"mini".to_string());
    small.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(small.state(), CircuitState::Open);
    let metrics = keyed.metrics();
    assert_eq!(metrics.len(), 2);
}

#[test]
fn max_keys_is_checked() {
    let err = KeyedCircuitBreakers::<String>::builder(CircuitBreaker::builder("m"))
        .max_keys(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_keys");
}

/// Regression (review): keys whose breakers opened and were never used again fill the registry for good.
#[tokio::test(start_paused = true)]
async fn stale_open_breakers_do_not_fill_the_registry_for_good() {
    let template = CircuitBreaker::builder("k")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(std::time::Duration::from_secs(1));
    let reg = KeyedCircuitBreakers::builder(template)
        .max_keys(8)
        .build()
        .unwrap();
    for i in 0..8u32 {
        reg.get(&i).try_acquire().unwrap().record(Outcome::Failure);
    }
    tokio::time::advance(std::time::Duration::from_secs(3600)).await;
    // An hour later, a new key: still no room, it gets the shared overflow breaker.
    let b = reg.get(&100);
    assert_ne!(
        b.name(),
        "k:overflow",
        "new key served by the overflow breaker"
    );
}
