//! Defects found by the soak and chaos work, one test each (each failed before its fix).

use std::future::pending;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::Outcome;
use tower_breaker::bulkhead::{Bulkhead, BulkheadFull};
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, CircuitState, SlidingWindow};
use tower_breaker::retry::{Backoff, RetryPolicy};
use tower_breaker::stack::StandardResilience;

/// `src/stack.rs`: the standard stack's breaker recorded with `ClassifyNow<DefaultClassifier>`,
/// which counts every error as a failure, the `BulkheadFull` of the stack's own bulkhead (one
/// layer further in) included. A burst that filled the bulkhead opened the breaker of a healthy
/// upstream, and every call was then rejected for `wait_in_open`. (The HTTP flavour was not
/// affected: `HttpClassifier` already ignores these rejections.)
#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_does_not_open_the_standard_stacks_breaker() {
    let stack = StandardResilience::builder("local-overload")
        .breaker(
            CircuitBreaker::builder("local-overload").sliding_window(SlidingWindow::consecutive(3)),
        )
        .bulkhead(
            Bulkhead::builder("local-overload")
                .max_concurrent(1)
                .max_queue(0),
        )
        .retry(
            RetryPolicy::builder()
                .max_attempts(1)
                .backoff(Backoff::constant(Duration::from_millis(1))),
        )
        .build()
        .unwrap();
    // The upstream is healthy: it answers `true` calls at once and holds `false` ones.
    let mut svc = stack.layer(service_fn(|answer: bool| async move {
        if !answer {
            pending::<()>().await;
        }
        Ok::<_, BoxError>("ok")
    }));
    // One slow call takes the only slot.
    let slow = svc.ready().await.unwrap().call(false);
    let slow = tokio::spawn(slow);
    tokio::task::yield_now().await;
    for _ in 0..5 {
        let err = svc.ready().await.unwrap().call(true).await.unwrap_err();
        assert!(err.is::<BulkheadFull>(), "{err}");
    }
    assert_eq!(
        stack.breaker().state(),
        CircuitState::Closed,
        "our own bulkhead's rejections opened the breaker of a healthy upstream: {:?}",
        stack.breaker().metrics()
    );
    slow.abort();
    let _ = slow.await; // the slot is back

    // The upstream's own errors still count.
    let mut failing = stack.layer(service_fn(|_: bool| async {
        Err::<&str, BoxError>("upstream is down".into())
    }));
    for _ in 0..3 {
        let _ = failing.ready().await.unwrap().call(true).await;
    }
    assert_eq!(stack.breaker().state(), CircuitState::Open);
}

/// A service polled ready by a caller that then does not call it (tower allows this: a
/// balancer polls several and calls one, and since the breaker re-checks a stale permit in
/// `call`, the breaker itself does it when the breaker changed state in between).
fn poll_ready_now<S: Service<R>, R>(svc: &mut S) -> Poll<Result<(), S::Error>> {
    svc.poll_ready(&mut Context::from_waker(Waker::noop()))
}

/// `src/bulkhead/service.rs` (`poll_ready`): a `Rejected` state was sticky. A service polled
/// ready while the bulkhead was full kept that rejection until its next `call`, however much
/// later, and however many `poll_ready`s came in between, so a call made when slots were free
/// failed with `BulkheadFull`.
#[tokio::test(start_paused = true)]
async fn a_rejection_reserved_by_an_earlier_poll_ready_is_not_delivered_to_a_later_call() {
    let bulkhead = Bulkhead::builder("sticky")
        .max_concurrent(1)
        .build()
        .unwrap();
    let inner = service_fn(|()| async { Ok::<_, BoxError>("ok") });
    let mut svc = bulkhead.layer().layer(inner);

    let slot = bulkhead.try_acquire().unwrap();
    // Full: ready, with a rejection for the next call.
    assert!(matches!(poll_ready_now(&mut svc), Poll::Ready(Ok(()))));
    // The caller does not call; the slot comes free; the caller asks again and calls.
    drop(slot);
    let answer = svc.ready().await.unwrap().call(()).await;
    assert_eq!(
        answer.map_err(|e| e.to_string()),
        Ok("ok"),
        "a rejection decided while the bulkhead was full reached a call made when it was not"
    );
    assert_eq!(bulkhead.metrics().active, 0);
}

/// The same defect, reached through the breaker in front: since the breaker re-checks a stale
/// permit in `call` (and then rejects without calling through), the bulkhead's rejection from
/// `poll_ready` was left behind and failed the service's next call, after the breaker had
/// closed and the bulkhead had emptied. Found by the soak test's accounting (a bulkhead
/// rejection counted that no caller received).
#[tokio::test(start_paused = true)]
async fn a_bulkhead_rejection_left_behind_by_a_stale_breaker_permit_is_not_delivered_later() {
    let breaker = CircuitBreaker::builder("stale")
        .sliding_window(SlidingWindow::consecutive(1))
        .build()
        .unwrap();
    let bulkhead = Bulkhead::builder("stale")
        .max_concurrent(1)
        .build()
        .unwrap();
    let inner = service_fn(|()| async { Ok::<_, BoxError>("ok") });
    let mut svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .layer(bulkhead.layer())
        .service(inner);

    // Ready: the breaker admits the call, the full bulkhead reserves a rejection.
    let slot = bulkhead.try_acquire().unwrap();
    assert!(matches!(poll_ready_now(&mut svc), Poll::Ready(Ok(()))));
    // Another caller trips the breaker before this one calls: the stale permit is not used,
    // the breaker rejects the call, and the bulkhead is never called.
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    let err = svc.call(()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");

    // Later all is well again: the next call goes through.
    breaker.reset();
    drop(slot);
    let answer = svc.ready().await.unwrap().call(()).await;
    assert_eq!(answer.map_err(|e| e.to_string()), Ok("ok"));
}
