//! What a service reserves in `poll_ready` (a breaker permit and, with a bulkhead inside, a
//! bulkhead slot) comes back on every path, and a call that never ran reports nothing.

use crate::support::{advance, secs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::bulkhead::Bulkhead;
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerEvent, CircuitOpen, CircuitState, RateLimited, SlidingWindow,
};
use tower_breaker::{BoxError, Outcome};

/// One failure trips it; 10 s open; one probe per round.
fn breaker(events: Option<Arc<Mutex<Vec<String>>>>) -> CircuitBreaker {
    let mut builder = CircuitBreaker::builder("upstream")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(secs(10))
        .permitted_calls_in_half_open(1);
    if let Some(sink) = events {
        builder = builder.on_event(move |e: &CircuitBreakerEvent| {
            let line = match e {
                CircuitBreakerEvent::CallPermitted { .. } => "permitted".to_string(),
                CircuitBreakerEvent::CallRejected { .. } => "rejected".to_string(),
                CircuitBreakerEvent::CallRecorded { outcome, .. } => format!("{outcome:?}"),
                other => format!("{other:?}"),
            };
            sink.lock().unwrap().push(line);
        });
    }
    builder.build().unwrap()
}

/// One slot, no queue: a pinned slot makes every other caller fail with `BulkheadFull`.
fn bulkhead() -> Bulkhead {
    Bulkhead::builder("upstream")
        .max_concurrent(1)
        .max_queue(0)
        .build()
        .unwrap()
}

/// The recommended order: the breaker outside the bulkhead. A request is `(fail, hang)`: the
/// upstream fails it, or hangs for an hour before answering.
fn stack(
    breaker: &CircuitBreaker,
    bulkhead: &Bulkhead,
    hits: Arc<AtomicUsize>,
) -> impl Service<(bool, bool), Response = &'static str, Error = BoxError> + Clone {
    ServiceBuilder::new()
        .layer(breaker.layer())
        .layer(bulkhead.layer())
        .service(service_fn(move |(fail, hang): (bool, bool)| {
            hits.fetch_add(1, Ordering::SeqCst);
            async move {
                if hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                if fail {
                    Err::<&'static str, BoxError>("upstream failed".into())
                } else {
                    Ok("ok")
                }
            }
        }))
}

#[tokio::test(start_paused = true)]
async fn a_trip_between_ready_and_call_gives_the_bulkhead_slot_back() {
    let (breaker, bulkhead) = (breaker(None), bulkhead());
    let hits = Arc::new(AtomicUsize::new(0));
    let mut svc = stack(&breaker, &bulkhead, hits.clone());
    svc.ready().await.unwrap();
    assert_eq!(bulkhead.metrics().active, 1, "ready reserved the slot");

    // Another caller trips the breaker between `ready()` and `call()`.
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    let err = svc.call((false, false)).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the upstream was not called"
    );
    assert_eq!(bulkhead.metrics().active, 0, "the slot came back at once");

    // The open wait is over: a probe through a clone (the original still alive) gets the
    // slot and closes the breaker instead of failing with `BulkheadFull`.
    advance(secs(10)).await;
    let reply = svc.clone().oneshot((false, false)).await.unwrap();
    assert_eq!(reply, "ok");
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(bulkhead.metrics().rejected_full, 0);
    // The original service is still usable and reserves nothing until it is polled.
    assert_eq!(succeed(&mut svc).await, "ok");
    assert_eq!(bulkhead.metrics().active, 0);
}

/// A cool-down from closed keeps its generation (the window goes on through it), but a call
/// reserved before the 429 is still not made during the cool-down: `call` finds the breaker
/// rate-limited, rejects it with `RateLimited` and gives the bulkhead slot back. Once the
/// cool-down is over the same service calls again.
#[tokio::test(start_paused = true)]
async fn a_cool_down_between_ready_and_call_keeps_the_call_from_the_upstream() {
    let (breaker, bulkhead) = (breaker(None), bulkhead());
    let hits = Arc::new(AtomicUsize::new(0));
    let mut svc = stack(&breaker, &bulkhead, hits.clone());
    svc.ready().await.unwrap();
    assert_eq!(bulkhead.metrics().active, 1, "ready reserved the slot");

    // Another caller meets a 429 between `ready()` and `call()`.
    breaker
        .try_acquire()
        .unwrap()
        .record_rate_limited(Some(secs(2)));
    assert_eq!(breaker.state(), CircuitState::RateLimited);
    let err = svc.call((false, false)).await.unwrap_err();
    assert!(err.is::<RateLimited>(), "{err}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the upstream was not called"
    );
    assert_eq!(bulkhead.metrics().active, 0, "the slot came back at once");
    assert_eq!(breaker.metrics().not_permitted_calls, 1);

    // After the cool-down the same service calls again, in the same closed generation.
    advance(secs(2)).await;
    assert_eq!(succeed(&mut svc).await, "ok");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(bulkhead.metrics().rejected_full, 0);
}

#[tokio::test(start_paused = true)]
async fn a_reservation_admitted_again_after_a_reset_calls_with_its_slot() {
    let (breaker, bulkhead) = (breaker(None), bulkhead());
    let hits = Arc::new(AtomicUsize::new(0));
    let mut svc = stack(&breaker, &bulkhead, hits.clone());
    svc.ready().await.unwrap();
    // A new generation that still admits: the call goes through on the slot it reserved.
    breaker.reset();
    assert_eq!(svc.call((false, false)).await.unwrap(), "ok");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(bulkhead.metrics().active, 0);
    assert_eq!(bulkhead.metrics().rejected_full, 0);
}

#[tokio::test(start_paused = true)]
async fn an_error_gives_the_slot_back_and_counts_as_a_failure() {
    let (breaker, bulkhead) = (breaker(None), bulkhead());
    let mut svc = stack(&breaker, &bulkhead, Arc::new(AtomicUsize::new(0)));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call((true, false))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "upstream failed");
    assert_eq!(bulkhead.metrics().active, 0);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_future_gives_the_slot_and_the_probe_back() {
    let (breaker, bulkhead) = (breaker(None), bulkhead());
    let mut svc = stack(&breaker, &bulkhead, Arc::new(AtomicUsize::new(0)));
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    advance(secs(10)).await;
    let mut fut = Box::pin(svc.ready().await.unwrap().call((false, true)));
    assert!(
        futures_poll_once(&mut fut).await.is_none(),
        "the call hangs"
    );
    assert_eq!(bulkhead.metrics().active, 1);
    assert_eq!(breaker.metrics().probes_in_flight, 1);
    drop(fut);
    assert_eq!(bulkhead.metrics().active, 0);
    assert_eq!(breaker.metrics().probes_in_flight, 0);
    // The freed probe slot is taken by the next call, which closes the breaker.
    assert_eq!(succeed(&mut svc).await, "ok");
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_service_gives_everything_back_and_reports_nothing() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let (breaker, bulkhead) = (breaker(Some(events.clone())), bulkhead());
    let mut svc = stack(&breaker, &bulkhead, Arc::new(AtomicUsize::new(0)));
    svc.ready().await.unwrap();
    drop(svc);
    assert_eq!(bulkhead.metrics().active, 0);
    // No call ran: no `CallPermitted`, no `CallRecorded(Ignored)`, nothing counted.
    assert_eq!(*events.lock().unwrap(), Vec::<String>::new());
    assert_eq!(breaker.metrics().ignored_calls, 0);

    // Half-open: the probe slot comes back, and again nothing is reported.
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    advance(secs(10)).await;
    events.lock().unwrap().clear();
    let mut svc = stack(&breaker, &bulkhead, Arc::new(AtomicUsize::new(0)));
    svc.ready().await.unwrap();
    assert_eq!(breaker.metrics().probes_in_flight, 1);
    drop(svc);
    assert_eq!(breaker.metrics().probes_in_flight, 0);
    assert_eq!(bulkhead.metrics().active, 0);
    let seen = events.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|e| e == "permitted" || e == "Ignored"),
        "events for a call that never ran: {seen:?}"
    );
    assert_eq!(breaker.metrics().ignored_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_that_ran_is_reported_once() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let (breaker, bulkhead) = (breaker(Some(events.clone())), bulkhead());
    let mut svc = stack(&breaker, &bulkhead, Arc::new(AtomicUsize::new(0)));
    succeed(&mut svc).await;
    assert_eq!(*events.lock().unwrap(), vec!["permitted", "Success"]);
}

#[tokio::test(start_paused = true)]
async fn a_clone_reserves_nothing_and_its_drop_releases_nothing() {
    let (breaker, bulkhead) = (breaker(None), bulkhead());
    let mut svc = stack(&breaker, &bulkhead, Arc::new(AtomicUsize::new(0)));
    svc.ready().await.unwrap();
    let clone = svc.clone();
    assert_eq!(bulkhead.metrics().active, 1);
    drop(clone);
    assert_eq!(
        bulkhead.metrics().active,
        1,
        "the original still holds its slot"
    );
    assert_eq!(svc.call((false, false)).await.unwrap(), "ok");
    assert_eq!(bulkhead.metrics().active, 0);
}

/// One call the upstream answers at once.
async fn succeed<S>(svc: &mut S) -> &'static str
where
    S: Service<(bool, bool), Response = &'static str, Error = BoxError>,
{
    svc.ready()
        .await
        .unwrap()
        .call((false, false))
        .await
        .unwrap()
}

/// Polls `fut` once: `Some(output)` if it finished.
async fn futures_poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *fut).poll(cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// `tower` allows `poll_ready` more than once before `call`: a rejected call is still one
/// rejection in the metrics and the events.
#[tokio::test(start_paused = true)]
async fn a_rejected_call_counts_once_however_often_it_is_polled_ready() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let b = breaker(Some(events.clone()));
    b.force_open();
    let mut svc = b
        .layer()
        .layer(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
    for _ in 0..3 {
        svc.ready().await.unwrap();
    }
    let err = svc.call(()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(b.metrics().not_permitted_calls, 1);
    let rejected = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| *e == "rejected")
        .count();
    assert_eq!(rejected, 1);
}

/// A held call is one rejection however often it is woken while it waits (each transition
/// wakes every held call to ask again).
#[tokio::test(start_paused = true)]
async fn a_held_call_counts_once_however_often_it_is_woken() {
    let b = breaker(None);
    // Trip it: one failure; open for 10 s.
    b.try_acquire().unwrap().record(Outcome::Failure);
    let mut svc = tower_breaker::circuit_breaker::CircuitBreakerLayer::new(b.clone())
        .hold_while_open(10, secs(60))
        .layer(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
    let mut ready = tokio_test::task::spawn(async move { svc.ready().await.map(|_| ()) });
    assert!(ready.poll().is_pending());
    assert_eq!(b.metrics().not_permitted_calls, 1);
    // The wait is over; someone else takes the one probe (open -> half-open wakes the held
    // call), and the probe fails (half-open -> open wakes it again).
    advance(secs(10)).await;
    let probe = b.try_acquire().expect("the probe");
    assert!(ready.poll().is_pending());
    probe.record(Outcome::Failure);
    assert!(ready.is_woken());
    assert!(ready.poll().is_pending());
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.metrics().not_permitted_calls, 1);
}
