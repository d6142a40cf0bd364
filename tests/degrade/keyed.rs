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

/// A key whose probe ended ignored leaves its breaker half-open with no call in flight: its
/// next call is a probe anyway, so it must make room like an open breaker whose wait is over,
/// not fill the registry for good.
#[tokio::test(start_paused = true)]
async fn idle_half_open_breakers_do_not_fill_the_registry_for_good() {
    let template = CircuitBreaker::builder("model")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(std::time::Duration::from_secs(1));
    let keyed = KeyedCircuitBreakers::builder(template)
        .max_keys(2)
        .build()
        .unwrap();
    for key in ["a", "b"] {
        let breaker = keyed.get(&key.to_string());
        breaker.try_acquire().unwrap().record(Outcome::Failure);
        assert_eq!(breaker.state(), CircuitState::Open);
    }
    tokio::time::advance(std::time::Duration::from_secs(2)).await;
    for key in ["a", "b"] {
        let breaker = keyed.get(&key.to_string());
        let probe = breaker.try_acquire().unwrap();
        assert!(probe.is_probe());
        probe.record(Outcome::Ignored);
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
    }
    tokio::time::advance(std::time::Duration::from_secs(24 * 3600)).await;
    let c = keyed.get(&"c".to_string());
    assert_eq!(
        c.name(),
        "model:c",
        "a new key was sent to the overflow breaker"
    );
    assert_eq!(keyed.len(), 2);
    assert_eq!(keyed.evicted(), 1);
}

/// `disable()`, `metrics_only()` and `force_open()` are an operator's decision: an idle
/// keyed breaker in one of those states is never evicted (it would come back closed).
#[tokio::test(start_paused = true)]
async fn manual_states_of_idle_keyed_breakers_are_never_evicted() {
    let template = CircuitBreaker::builder("model").sliding_window(SlidingWindow::consecutive(1));
    let keyed = KeyedCircuitBreakers::builder(template)
        .max_keys(4)
        .build()
        .unwrap();
    keyed.get(&"disabled".to_string()).disable();
    keyed.get(&"metrics-only".to_string()).metrics_only();
    keyed.get(&"forced-open".to_string()).force_open();
    tokio::time::advance(std::time::Duration::from_secs(24 * 3600)).await;
    // Many new keys, each used once: the registry turns over its one free place.
    for i in 0..100 {
        let key = format!("new-{i}");
        let breaker = keyed.get(&key);
        assert_eq!(breaker.name(), format!("model:{key}"));
        breaker.try_acquire().unwrap().record(Outcome::Success);
    }
    assert_eq!(
        keyed.state(&"disabled".to_string()),
        Some(CircuitState::Disabled)
    );
    assert_eq!(
        keyed.state(&"metrics-only".to_string()),
        Some(CircuitState::MetricsOnly)
    );
    assert_eq!(
        keyed.state(&"forced-open".to_string()),
        Some(CircuitState::ForcedOpen)
    );
    assert!(keyed.len() <= 4);
}

/// The layer's service remembers the breakers of the keys it called; that must neither keep
/// them from eviction nor let it keep using a breaker the registry has dropped.
#[tokio::test(start_paused = true)]
async fn a_service_remembering_a_key_follows_the_registry_through_eviction() {
    use tower::{Service, ServiceExt, service_fn};
    use tower_breaker::keyed::KeyedCircuitBreakerLayer;

    let template = CircuitBreaker::builder("model").sliding_window(SlidingWindow::consecutive(2));
    let keyed = KeyedCircuitBreakers::builder(template)
        .max_keys(1)
        .build()
        .unwrap();
    let mut svc = tower::ServiceBuilder::new()
        .layer(KeyedCircuitBreakerLayer::new(
            keyed.clone(),
            |k: &String| k.clone(),
        ))
        .service(service_fn(|_: String| async { Err::<(), _>("down") }));
    let a = "a".to_string();
    assert!(svc.ready().await.unwrap().call(a.clone()).await.is_err());
    // The remembered breaker is the registry's: one failure counted.
    assert_eq!(keyed.get(&a).metrics().failed_calls, 1);
    // Another key takes the only place: `a`, idle, is evicted although the service remembers it.
    assert_eq!(keyed.get(&"b".to_string()).name(), "model:b");
    assert_eq!(keyed.state(&a), None);
    assert_eq!(keyed.evicted(), 1);
    // The service's next call for `a` goes back to the registry: a new breaker, in the registry.
    assert!(svc.ready().await.unwrap().call(a.clone()).await.is_err());
    assert_eq!(keyed.state(&a), Some(CircuitState::Closed));
    assert_eq!(keyed.get(&a).metrics().failed_calls, 1);
    assert!(svc.ready().await.unwrap().call(a.clone()).await.is_err());
    assert_eq!(keyed.state(&a), Some(CircuitState::Open));
}
