use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerEvent, CircuitState, SlidingWindow,
};
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

/// Regression: a full registry answered every new key with the shared overflow breaker and
/// said nothing; `force_open` through it silently rejected every key without room.
#[tokio::test(start_paused = true)]
async fn a_full_registry_says_when_it_answers_with_the_overflow_breaker() {
    use tower_breaker::keyed::Lookup;

    let template = CircuitBreaker::builder("model").sliding_window(SlidingWindow::consecutive(1));
    let keyed = KeyedCircuitBreakers::builder(template)
        .max_keys(1)
        .build()
        .unwrap();
    let a = keyed.lookup(&"a".to_string());
    assert!(matches!(a, Lookup::Key(ref b) if b.name() == "model:a"));
    a.breaker().try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(keyed.overflowed(), 0);

    // `a` is open and stays: no room for `b` or `c`.
    let b = keyed.lookup(&"b".to_string());
    assert!(b.is_overflow());
    assert_eq!(b.breaker().name(), "model:overflow");
    b.breaker().force_open();
    // The overflow is shared: `c` is rejected by what was done to `b`, and the registry says so.
    let c = keyed.lookup(&"c".to_string());
    assert!(c.is_overflow());
    assert_eq!(c.breaker().state(), CircuitState::ForcedOpen);
    assert_eq!(keyed.overflowed(), 2);
    // `get` is the same lookup, counted too.
    assert_eq!(keyed.get(&"d".to_string()).name(), "model:overflow");
    assert_eq!(keyed.overflowed(), 3);
}

/// Regression: the eviction sweep read breaker states (which may move a breaker and run its
/// listeners) under a shard's write lock, and `state` / `states` under a read lock: a
/// listener looking a key up deadlocked. No registry lock is held while a listener runs.
#[tokio::test(start_paused = true)]
async fn a_listener_that_looks_keys_up_never_deadlocks_the_registry() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    let registry: Arc<OnceLock<KeyedCircuitBreakers<String>>> = Arc::default();
    let armed = Arc::new(AtomicBool::new(false));
    let looked_up = Arc::new(AtomicUsize::new(0));
    let template = CircuitBreaker::builder("model")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(Duration::from_secs(1))
        .permitted_calls_in_half_open(1)
        .max_wait_in_half_open(Some(Duration::from_secs(5)))
        .on_event({
            let (registry, armed, looked_up) = (registry.clone(), armed.clone(), looked_up.clone());
            move |event: &CircuitBreakerEvent| {
                if armed.load(Ordering::SeqCst)
                    && matches!(event, CircuitBreakerEvent::StateTransition { .. })
                    && let Some(keyed) = registry.get()
                {
                    // A new key: on a full registry, this sweeps every shard.
                    let _ = keyed.lookup(&format!("new-{}", looked_up.load(Ordering::SeqCst)));
                    looked_up.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    let keyed = KeyedCircuitBreakers::builder(template)
        .max_keys(1)
        .build()
        .unwrap();
    assert!(registry.set(keyed.clone()).is_ok());

    // `a` opens; after its wait a probe is admitted and stays in flight past
    // `max_wait_in_half_open`: the next read of its state reopens it and runs the listener.
    let a = "a".to_string();
    keyed
        .get(&a)
        .try_acquire()
        .unwrap()
        .record(Outcome::Failure);
    tokio::time::advance(Duration::from_secs(2)).await;
    let probe = keyed.get(&a).try_acquire().unwrap();
    assert!(probe.is_probe());
    tokio::time::advance(Duration::from_secs(10)).await;
    armed.store(true, Ordering::SeqCst);
    assert_eq!(keyed.state(&a), Some(CircuitState::Open));
    assert_eq!(looked_up.load(Ordering::SeqCst), 1, "the listener ran");
    drop(probe);
    // The registry is usable afterwards, from outside a listener too.
    assert_eq!(keyed.len(), 1);
    assert!(keyed.overflowed() >= 1);
}

/// Regression: a keyed template with shared state builds each key's breaker where the key is
/// first used; outside a Tokio runtime that fails, and the call silently went to the overflow
/// breaker. Now the lookup says so, the registry counts it, and an error is logged.
#[cfg(feature = "shared-state")]
#[tokio::test]
async fn a_key_that_cannot_get_its_breaker_outside_a_runtime_is_never_silent() {
    use tower_breaker::shared_state::{MemoryStore, SharedState};

    let template =
        CircuitBreaker::builder("model").shared_state(SharedState::new(MemoryStore::new()));
    // Built inside the runtime (the overflow breaker is built here).
    let keyed = KeyedCircuitBreakers::builder(template)
        .max_keys(10)
        .build()
        .unwrap();
    let (lookup, logged) = std::thread::spawn({
        let keyed = keyed.clone();
        move || {
            let log = ErrorLog::default();
            let lookup =
                tracing::subscriber::with_default(log.clone(), || keyed.lookup(&"gpt".to_string()));
            (lookup, log.0.lock().unwrap().clone())
        }
    })
    .join()
    .unwrap();
    assert!(
        lookup.is_overflow(),
        "outside a runtime, no breaker of its own"
    );
    assert_eq!(keyed.overflowed(), 1);
    assert_eq!(keyed.len(), 0);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains("overflow"), "{logged:?}");
    // Inside the runtime the key gets its own.
    assert!(!keyed.lookup(&"gpt".to_string()).is_overflow());
}

/// Collects the messages of `ERROR` events.
#[cfg(feature = "shared-state")]
#[derive(Clone, Default)]
struct ErrorLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

#[cfg(feature = "shared-state")]
impl tracing::Subscriber for ErrorLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() == tracing::Level::ERROR
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0.lock().unwrap().push(message.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
