use crate::upstream::{Upstream, raw};
use std::time::Duration;
use tower::{BoxError, Service, ServiceExt};
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerLayer, CircuitState, HoldReason, HoldRejected, SlidingWindow,
};

fn breaker(wait: Duration) -> CircuitBreaker {
    CircuitBreaker::builder("held")
        .sliding_window(SlidingWindow::consecutive(2))
        .wait_in_open(wait)
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap()
}

#[tokio::test]
async fn held_calls_are_delivered_once_the_upstream_recovers() {
    let up = Upstream::start("up").await;
    up.set_down(true);
    let b = breaker(Duration::from_millis(200));
    let held_layer =
        CircuitBreakerLayer::new(b.clone()).hold_while_open(10, Duration::from_secs(10));
    let direct = raw(&up);
    let mut first = tower::Layer::layer(&held_layer, direct.clone());
    for _ in 0..2 {
        assert!(first.ready().await.unwrap().call(()).await.is_err());
    }
    assert_eq!(b.state(), CircuitState::Open);

    // Five calls arrive while the breaker is open: each is held, none fails.
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let svc = tower::Layer::layer(&held_layer, direct.clone());
            tokio::spawn(svc.oneshot(()))
        })
        .collect();
    // Let the spawned calls run until each is held (no I/O: they wait on the breaker), with
    // no real sleep: the count is exact whatever the machine's speed.
    for _ in 0..1_000 {
        if b.metrics().not_permitted_calls >= 5 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        b.metrics().not_permitted_calls,
        5,
        "each call was rejected once, then held"
    );
    let hits_while_open = up.hits();
    assert_eq!(hits_while_open, 2);
    up.set_down(false);
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), "up answered");
    }
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(
        up.hits(),
        2 + 5,
        "every held call reached the upstream exactly once"
    );
}

#[tokio::test]
async fn past_either_bound_a_held_call_fails_cleanly() {
    let up = Upstream::start("up").await;
    up.set_down(true);
    let b = breaker(Duration::from_secs(60));
    let held_layer =
        CircuitBreakerLayer::new(b.clone()).hold_while_open(2, Duration::from_millis(300));
    let direct = raw(&up);
    let mut first = tower::Layer::layer(&held_layer, direct.clone());
    for _ in 0..2 {
        assert!(first.ready().await.unwrap().call(()).await.is_err());
    }
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let svc = tower::Layer::layer(&held_layer, direct.clone());
            tokio::spawn(svc.oneshot(()))
        })
        .collect();
    let mut full = 0;
    let mut expired = 0;
    for call in calls {
        let err: BoxError = call.await.unwrap().unwrap_err();
        let rejected = err.downcast_ref::<HoldRejected>().expect("HoldRejected");
        match rejected.reason() {
            HoldReason::Full { max_held } => {
                assert_eq!(max_held, 2);
                full += 1;
            }
            HoldReason::Expired { waited } => {
                assert!(waited >= Duration::from_millis(300));
                expired += 1;
            }
            other => panic!("unexpected hold rejection: {other:?}"),
        }
    }
    assert_eq!((full, expired), (1, 2));
    assert_eq!(up.hits(), 2, "no held call reached the upstream");
}
