//! The tower service: reservations in poll_ready, release on every path, classification.

use crate::support::{advance, secs};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceExt};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerLayer, CircuitOpen, CircuitState, SlidingWindow,
};
use tower_test::mock;

fn one_strike(probes: u32) -> CircuitBreaker {
    CircuitBreaker::builder("svc")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(secs(10))
        .permitted_calls_in_half_open(probes)
        .build()
        .unwrap()
}

/// Trips `breaker` through a service call that fails, then waits out the open state.
async fn trip_via(breaker: &CircuitBreaker) {
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(breaker.state(), CircuitState::Open);
    advance(secs(10)).await;
}

#[tokio::test(start_paused = true)]
async fn failures_trip_and_an_open_breaker_never_touches_the_inner_service() {
    let breaker = one_strike(1);
    let (mut svc, mut handle) = mock::spawn_layer::<&str, &str, _>(breaker.layer());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call("a");
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, "a");
    send.send_error("boom");
    assert_eq!(fut.await.unwrap_err().to_string(), "boom");
    assert_eq!(breaker.state(), CircuitState::Open);

    // The inner service has no capacity left: if we polled it, poll_ready would be pending.
    assert_ready_ok!(svc.poll_ready());
    let err = svc.call("b").await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("a CircuitOpen");
    assert_eq!(open.name(), "svc");
    assert_eq!(open.retry_after(), Some(secs(10)));
    assert!(
        handle.poll_request().is_pending(),
        "no request reached the inner service"
    );
}

#[tokio::test(start_paused = true)]
async fn the_inner_service_is_polled_only_after_the_breaker_permits() {
    let breaker = one_strike(1);
    let (mut svc, mut handle) = mock::spawn_layer::<&str, &str, _>(breaker.layer());
    handle.allow(0);
    // Closed: the breaker permits, the inner service is not ready.
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call("x");
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response("ok");
    assert_eq!(fut.await.unwrap(), "ok");
    assert_eq!(
        breaker.metrics().calls,
        0,
        "a success resets the consecutive count"
    );
}

#[tokio::test(start_paused = true)]
async fn a_half_open_slot_is_reserved_in_poll_ready() {
    let breaker = one_strike(1);
    trip_via(&breaker).await;
    let (mut first, mut handle) = mock::spawn_layer::<&str, &str, _>(breaker.layer());
    let (mut second, _other) = mock::spawn_layer::<&str, &str, _>(breaker.layer());
    handle.allow(1);
    assert_ready_ok!(first.poll_ready());
    assert_eq!(breaker.metrics().probes_in_flight, 1);
    // The only slot is taken: the second service reports ready and its call fails at once.
    assert_ready_ok!(second.poll_ready());
    assert!(second.call("b").await.unwrap_err().is::<CircuitOpen>());

    let fut = first.call("a");
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response("fine");
    assert_eq!(fut.await.unwrap(), "fine");
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_future_releases_its_slot() {
    let breaker = one_strike(1);
    trip_via(&breaker).await;
    let (mut svc, mut handle) = mock::spawn_layer::<&str, &str, _>(breaker.layer());
    handle.allow(2);
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call("a");
    assert_eq!(breaker.metrics().probes_in_flight, 1);
    drop(fut);
    assert_eq!(breaker.metrics().probes_in_flight, 0);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(breaker.metrics().probes_in_flight, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_service_releases_its_reservation() {
    let breaker = one_strike(1);
    trip_via(&breaker).await;
    let (mut svc, mut handle) = mock::spawn_layer::<&str, &str, _>(breaker.layer());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(breaker.metrics().probes_in_flight, 1);
    drop(svc);
    assert_eq!(breaker.metrics().probes_in_flight, 0);
    assert!(breaker.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_clone_does_not_share_the_reservation() {
    let breaker = one_strike(1);
    trip_via(&breaker).await;
    let (inner, mut handle) = mock::pair::<&str, &str>();
    let mut svc = breaker.layer().layer(inner);
    handle.allow(1);
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let mut clone = svc.clone();
    // The clone asks the breaker for itself: the only slot is the original's.
    std::future::poll_fn(|cx| clone.poll_ready(cx))
        .await
        .unwrap();
    assert!(clone.call("c").await.unwrap_err().is::<CircuitOpen>());
    drop(svc);
    assert_eq!(breaker.metrics().probes_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_reserved_slot_comes_back_from_a_dropped_clone_and_from_into_inner() {
    // `poll_ready` keeps only a ticket (no permit) until `call`: every way the service can go
    // away with it must still give the probe slot back.
    let breaker = one_strike(1);
    trip_via(&breaker).await;
    let (inner, mut handle) = mock::pair::<&str, &str>();
    let svc = breaker.layer().layer(inner);
    handle.allow(2);
    let mut clone = svc.clone();
    std::future::poll_fn(|cx| clone.poll_ready(cx))
        .await
        .unwrap();
    assert_eq!(breaker.metrics().probes_in_flight, 1);
    drop(clone);
    assert_eq!(breaker.metrics().probes_in_flight, 0);

    let mut svc = svc;
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    assert_eq!(breaker.metrics().probes_in_flight, 1);
    let _inner = svc.into_inner();
    assert_eq!(breaker.metrics().probes_in_flight, 0);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert!(breaker.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_poll_ready_error_gives_the_permit_back() {
    let breaker = one_strike(1);
    trip_via(&breaker).await;
    let (mut svc, mut handle) = mock::spawn_layer::<&str, &str, _>(breaker.layer());
    handle.send_error("inner broke");
    let err = match svc.poll_ready() {
        std::task::Poll::Ready(Err(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(err.to_string(), "inner broke");
    assert_eq!(breaker.metrics().probes_in_flight, 0);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn the_classifier_decides_what_fails() {
    let breaker = one_strike(1);
    let layer =
        CircuitBreakerLayer::new(breaker.clone()).classify(|r: &Result<u16, tower::BoxError>| {
            match r {
                Ok(s) if *s >= 500 => Outcome::Failure,
                Ok(429) => Outcome::Ignored,
                Ok(_) => Outcome::Success,
                Err(_) => Outcome::Failure,
            }
        });
    let mut svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service_fn(|status: u16| async move { Ok::<_, tower::BoxError>(status) });
    for status in [200, 404, 429, 429] {
        assert_eq!(
            svc.ready().await.unwrap().call(status).await.unwrap(),
            status
        );
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().ignored_calls, 2);
    // A 503 is an Ok for the service but a failure for the breaker.
    assert_eq!(svc.ready().await.unwrap().call(503).await.unwrap(), 503);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn one_layer_shares_one_breaker_across_services() {
    let breaker = one_strike(1);
    let layer = breaker.layer();
    let mut a = layer.layer(tower::service_fn(|_: ()| async { Err::<(), _>("down") }));
    let mut b = layer
        .clone()
        .layer(tower::service_fn(|_: ()| async { Ok::<_, &str>(()) }));
    assert!(a.ready().await.unwrap().call(()).await.is_err());
    // Service `b` never failed, but it shares the breaker that `a` tripped.
    assert!(
        b.ready()
            .await
            .unwrap()
            .call(())
            .await
            .unwrap_err()
            .is::<CircuitOpen>()
    );
}

#[tokio::test(start_paused = true)]
async fn composes_with_tower_timeout_so_a_hung_call_is_a_failure() {
    let breaker = one_strike(1);
    let mut svc = tower::ServiceBuilder::new()
        .layer(breaker.layer())
        .timeout(secs(5))
        .service_fn(|_: ()| async {
            std::future::pending::<()>().await;
            Ok::<_, tower::BoxError>(())
        });
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>());
    assert_eq!(breaker.state(), CircuitState::Open);
}
