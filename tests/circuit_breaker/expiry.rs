//! A half-open round that has not decided within `max_wait_in_half_open` is over, for every
//! reader: `try_acquire`, `is_call_permitted`, `retry_after`, `state`, hold-and-replay and
//! failover all apply the same rule.

use crate::support::{advance, secs};
use tower::{ServiceExt, service_fn, util::BoxCloneService};
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
use tower_breaker::failover::Failover;
use tower_breaker::{BoxError, Outcome};

/// One failure trips it; open 10 s; one probe; a round may take 5 s.
fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder("primary")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(secs(10))
        .permitted_calls_in_half_open(1)
        .max_wait_in_half_open(Some(secs(5)))
        .build()
        .unwrap()
}

/// Trips `breaker`, waits out the open state and starts a round whose one probe hangs.
async fn hung_round(breaker: &CircuitBreaker) -> tower_breaker::circuit_breaker::Permit {
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    advance(secs(10)).await;
    let probe = breaker.try_acquire().unwrap();
    assert!(probe.is_probe());
    probe
}

#[tokio::test(start_paused = true)]
async fn every_reader_sees_an_expired_round_reopen() {
    let b = breaker();
    let _hung = hung_round(&b).await;
    advance(secs(4)).await;
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert!(!b.is_call_permitted());
    assert_eq!(
        b.retry_after(),
        None,
        "every slot taken, the round still running"
    );

    advance(secs(1)).await;
    // The round is over: the breaker reopened at its deadline, for the open time.
    assert_eq!(b.state(), CircuitState::Open);
    assert!(!b.is_call_permitted());
    assert_eq!(b.retry_after(), Some(secs(10)));
    assert_eq!(b.metrics().consecutive_reopens, 1);

    advance(secs(10)).await;
    assert!(b.is_call_permitted(), "the next round may start");
    assert!(b.try_acquire().unwrap().is_probe());
}

#[tokio::test(start_paused = true)]
async fn failover_tries_a_provider_again_after_its_hung_round_expires() {
    let b = breaker();
    let _hung = hung_round(&b).await;
    let primary = tower::Layer::layer(
        &b.layer(),
        service_fn(|_: ()| async { Ok::<_, BoxError>("primary") }),
    );
    let backup = service_fn(|_: ()| async { Ok::<_, BoxError>("backup") });
    let failover = Failover::builder()
        .provider("primary", Some(b.clone()), BoxCloneService::new(primary))
        .provider("backup", None, BoxCloneService::new(backup))
        .build();
    assert_eq!(failover.available(), vec!["backup"]);
    assert_eq!(failover.clone().oneshot(()).await.unwrap(), "backup");

    // 5 s for the round, then 10 s open: the primary is tried again and closes the breaker.
    advance(secs(15)).await;
    assert_eq!(failover.available(), vec!["primary", "backup"]);
    assert_eq!(failover.clone().oneshot(()).await.unwrap(), "primary");
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_held_call_goes_through_once_the_round_expires_and_the_wait_is_over() {
    let b = breaker();
    let _hung = hung_round(&b).await;
    let svc = tower::Layer::layer(
        &b.layer().hold_while_open(1, secs(60)),
        service_fn(|_: ()| async { Ok::<_, std::io::Error>("ok") }),
    );
    let start = tokio::time::Instant::now();
    let call = tokio::spawn(async move { svc.oneshot(()).await.map(|r| (r, start.elapsed())) });
    // Held: the round's deadline (5 s), then the open time (10 s), then it is the next probe.
    let (reply, waited) = call.await.unwrap().unwrap();
    assert_eq!(reply, "ok");
    assert_eq!(
        waited,
        secs(15),
        "held until the round expired and the wait was over"
    );
    assert_eq!(b.state(), CircuitState::Closed);
}
