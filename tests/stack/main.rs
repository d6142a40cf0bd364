//! The standard stack: defaults, combination checks, and the order of its layers.

#[cfg(all(feature = "stream", feature = "http"))]
mod adversarial_stack;
// `.llm()` (and the scripted upstream its tests answer from) needs `stream`.
#[cfg(feature = "stream")]
mod cool_down;
mod gate;
#[cfg(feature = "stream")]
mod per_key;
#[cfg(feature = "stream")]
mod scripted;
mod span;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::backoff::Backoff;
use tower_breaker::bulkhead::Bulkhead;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, CircuitState, SlidingWindow};
use tower_breaker::retry::RetryPolicy;
use tower_breaker::stack::{ServiceBuilderExt, StandardResilience};

fn counting(
    fail_first: usize,
    delay: Duration,
) -> (
    Arc<AtomicUsize>,
    impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let svc = service_fn(move |x: u32| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(delay).await;
            if n < fail_first {
                Err::<u32, BoxError>("503".into())
            } else {
                Ok(x)
            }
        }
    });
    (calls, svc)
}

fn quick_retry() -> tower_breaker::retry::Builder {
    RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .no_budget()
}

#[test]
fn the_combination_is_checked() {
    let err = StandardResilience::builder("x")
        .attempt_timeout(Duration::from_secs(40))
        .total_timeout(Duration::from_secs(30))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "attempt_timeout");

    // Default window 30 s: an attempt timeout of 20 s needs a window of 40 s.
    let err = StandardResilience::builder("x")
        .attempt_timeout(Duration::from_secs(20))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "breaker.sliding_window");
    assert!(
        err.to_string()
            .contains("at least twice the attempt timeout"),
        "{err}"
    );

    assert!(StandardResilience::builder("x").build().is_ok());
    let ok = StandardResilience::builder("x").build().unwrap();
    assert_eq!(ok.total_timeout(), Duration::from_secs(30));
    assert_eq!(ok.attempt_timeout(), Duration::from_secs(10));
    assert_eq!(ok.breaker().time_window(), Some(Duration::from_secs(30)));
}

#[tokio::test(start_paused = true)]
async fn retries_ride_out_a_blip() {
    let stack = StandardResilience::builder("blip")
        .retry(quick_retry())
        .build()
        .unwrap();
    let (calls, inner) = counting(2, Duration::from_millis(10));
    let mut svc = stack.layer(inner);
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_hung_attempt_times_out_and_the_total_timeout_bounds_the_call() {
    let stack = StandardResilience::builder("hang")
        .retry(quick_retry())
        .attempt_timeout(Duration::from_secs(1))
        .total_timeout(Duration::from_millis(2500))
        .build()
        .unwrap();
    let (calls, inner) = counting(0, Duration::from_secs(3600));
    let mut svc = stack.layer(inner);
    let started = tokio::time::Instant::now();
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    assert_eq!(started.elapsed(), Duration::from_millis(2500));
    // 1 s, 0.1 s wait, 1 s, 0.1 s wait, then the third attempt is cut by the total timeout.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_inside_the_retry_stops_retries_against_a_dead_upstream() {
    let stack = StandardResilience::builder("dead")
        .retry(quick_retry())
        .breaker(
            CircuitBreaker::builder("dead")
                .sliding_window(SlidingWindow::consecutive(5))
                .wait_in_open(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    let (calls, inner) = counting(usize::MAX, Duration::from_millis(1));
    let svc = stack.layer(inner);
    for _ in 0..20 {
        assert!(svc.clone().oneshot(1).await.is_err());
    }
    // Five failures open the breaker; every later attempt fails fast and is not retried.
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(stack.breaker().state(), CircuitState::Open);
    let err = svc.clone().oneshot(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn service_builder_methods_add_each_layer() {
    let breaker = CircuitBreaker::builder("sb")
        .sliding_window(SlidingWindow::consecutive(1))
        .build()
        .unwrap();
    let bulkhead = Bulkhead::builder("sb").max_concurrent(1).build().unwrap();
    let (calls, inner) = counting(1, Duration::from_millis(1));
    let mut svc = ServiceBuilder::new()
        .circuit_breaker(&breaker)
        .bulkhead(&bulkhead)
        .service(inner);
    assert!(svc.ready().await.unwrap().call(1).await.is_err());
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(1)
            .await
            .unwrap_err()
            .is::<CircuitOpen>()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(bulkhead.metrics().active, 0);

    let stack = StandardResilience::builder("sb2").build().unwrap();
    let (_, inner) = counting(0, Duration::ZERO);
    let mut svc = ServiceBuilder::new()
        .standard_resilience(stack)
        .service(inner);
    assert_eq!(svc.ready().await.unwrap().call(5).await.unwrap(), 5);
}
