//! The stack's gate: an open breaker rejects before the retry layer and the timeouts do any
//! work, and nothing a caller or a listener sees changes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerEvent, CircuitOpen, CircuitState, SlidingWindow,
};
use tower_breaker::retry::{GiveUpReason, RetryEvent, RetryPolicy};
use tower_breaker::stack::StandardResilience;

/// A request that counts its copies: the retry layer copies the request before a first
/// attempt it may retry, so a copy is work done for a call.
#[derive(Debug)]
struct Req(Arc<AtomicUsize>);

impl Clone for Req {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, Ordering::SeqCst);
        Req(self.0.clone())
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_rejects_before_the_retry_copies_the_request() {
    let retry_events = Arc::new(Mutex::new(Vec::new()));
    let breaker_events = Arc::new(Mutex::new(Vec::new()));
    let (retry_sink, breaker_sink) = (retry_events.clone(), breaker_events.clone());
    let stack = StandardResilience::builder("gate")
        .retry(RetryPolicy::builder().max_attempts(3).no_budget())
        .breaker(
            CircuitBreaker::builder("gate")
                .sliding_window(SlidingWindow::consecutive(1))
                .wait_in_open(Duration::from_secs(60)),
        )
        .on_retry_event(move |e: &RetryEvent| retry_sink.lock().unwrap().push(e.clone()))
        .on_breaker_event(move |e: &CircuitBreakerEvent| {
            if matches!(e, CircuitBreakerEvent::CallRejected { .. }) {
                breaker_sink.lock().unwrap().push(e.clone());
            }
        })
        .build()
        .unwrap();
    let upstream = Arc::new(AtomicUsize::new(0));
    let seen = upstream.clone();
    let svc = stack.layer(service_fn(move |_: Req| {
        seen.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), BoxError>("down".into()) }
    }));
    stack.breaker().force_open();
    assert_eq!(stack.breaker().state(), CircuitState::ForcedOpen);

    let copies = Arc::new(AtomicUsize::new(0));
    let err = svc.clone().oneshot(Req(copies.clone())).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(
        copies.load(Ordering::SeqCst),
        0,
        "the retry layer copied the request"
    );
    assert_eq!(upstream.load(Ordering::SeqCst), 0);

    // The same rejection as the breaker's own: counted and reported once, and the retry
    // policy reports that it gave up at the first attempt.
    assert_eq!(stack.breaker().metrics().not_permitted_calls, 1);
    assert_eq!(breaker_events.lock().unwrap().len(), 1);
    let gave_up: Vec<_> = retry_events
        .lock()
        .unwrap()
        .iter()
        .map(|e| match e {
            RetryEvent::GaveUp {
                attempt, reason, ..
            } => (*attempt, *reason),
            other => panic!("unexpected retry event {other:?}"),
        })
        .collect();
    assert_eq!(gave_up, [(1, GiveUpReason::CircuitOpen)]);
}

#[tokio::test(start_paused = true)]
async fn a_tripped_breaker_rejects_with_its_wait_and_admits_the_probe_after_it() {
    let stack = StandardResilience::builder("probe")
        .retry(RetryPolicy::builder().max_attempts(1).no_budget())
        .breaker(
            CircuitBreaker::builder("probe")
                .sliding_window(SlidingWindow::consecutive(1))
                .wait_in_open(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    let upstream = Arc::new(AtomicUsize::new(0));
    let seen = upstream.clone();
    let svc = stack.layer(service_fn(move |x: u32| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                Err::<u32, BoxError>("down".into())
            } else {
                Ok(x)
            }
        }
    }));
    assert!(svc.clone().oneshot(1).await.is_err());
    assert_eq!(stack.breaker().state(), CircuitState::Open);

    tokio::time::advance(Duration::from_secs(20)).await;
    let err = svc.clone().oneshot(2).await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("CircuitOpen");
    assert_eq!(open.state(), CircuitState::Open);
    assert_eq!(open.retry_after(), Some(Duration::from_secs(40)));
    assert_eq!(upstream.load(Ordering::SeqCst), 1);

    // The wait is over: the gate lets the call through and the breaker makes it its probe.
    tokio::time::advance(Duration::from_secs(40)).await;
    assert_eq!(svc.clone().oneshot(3).await.unwrap(), 3);
    assert_eq!(upstream.load(Ordering::SeqCst), 2);
    assert_eq!(stack.breaker().state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_service_rejected_and_asked_again_after_a_reset_calls_through() {
    let stack = StandardResilience::builder("again").build().unwrap();
    let mut svc = stack.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    stack.breaker().force_open();
    // Ready, with a rejection for the next call...
    svc.ready().await.unwrap();
    // ...but the breaker is reset before the call is made: asked again, the gate lets it by.
    stack.breaker().reset();
    assert_eq!(svc.ready().await.unwrap().call(4).await.unwrap(), 4);
    assert_eq!(stack.breaker().metrics().not_permitted_calls, 1);
}
