//! The cascade the retry must not cause: with the breaker inside the retry, an upstream that is
//! down sees the breaker's threshold plus its probes, not the threshold times the attempts.

use crate::e2e::{failing, get, hyper_client, server_errors};
use crate::harness::{call, down};
use crate::support::{ms, secs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::ServiceBuilder;
use tower_breaker::backoff::Backoff;
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerEvent, CircuitState, SlidingWindow,
};
use tower_breaker::retry::RetryPolicy;

const THRESHOLD: u32 = 3;
const ATTEMPTS: u32 = 3;

/// A breaker that opens after `THRESHOLD` failures in a row and counts its half-open rounds
/// (one probe each).
fn breaker(wait_in_open: std::time::Duration) -> (CircuitBreaker, Arc<AtomicUsize>) {
    let rounds = Arc::new(AtomicUsize::new(0));
    let counter = rounds.clone();
    let breaker = CircuitBreaker::builder("down")
        .sliding_window(SlidingWindow::consecutive(THRESHOLD))
        .wait_in_open(wait_in_open)
        .permitted_calls_in_half_open(1)
        .on_event(move |event: &CircuitBreakerEvent| {
            if let CircuitBreakerEvent::StateTransition {
                to: CircuitState::HalfOpen,
                ..
            } = event
            {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    (breaker, rounds)
}

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(ATTEMPTS)
        .backoff(Backoff::constant(ms(50)))
        .no_budget() // the breaker alone must prevent the cascade
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_down_upstream_sees_the_threshold_plus_probes() {
    let (breaker, rounds) = breaker(secs(1));
    let (upstream, calls) = down::<u32>();
    let mut client = ServiceBuilder::new()
        .retry(policy())
        .layer(breaker.layer())
        .service(upstream);
    // 100 requests, one every 100 ms, for about 10 s of an outage.
    for i in 0..100 {
        assert!(call(&mut client, i).await.is_err());
        tokio::time::sleep(ms(100)).await;
    }
    let probes = rounds.load(Ordering::SeqCst);
    assert_eq!(probes, 9, "about one probe per second of outage");
    assert_eq!(calls.count(), THRESHOLD as usize + probes);
    assert_eq!(calls.count(), 12);

    // The same load without the breaker: every request makes every attempt.
    let (upstream, naive_calls) = down::<u32>();
    let mut naive = ServiceBuilder::new().retry(policy()).service(upstream);
    for i in 0..100 {
        assert!(call(&mut naive, i).await.is_err());
        tokio::time::sleep(ms(100)).await;
    }
    assert_eq!(naive_calls.count(), 100 * ATTEMPTS as usize);
}

#[tokio::test]
async fn a_down_server_sees_the_threshold_plus_probes_over_the_wire() {
    let server = failing(usize::MAX).await;
    let (breaker, rounds) = breaker(ms(200));
    let policy = RetryPolicy::builder()
        .http()
        .max_attempts(ATTEMPTS)
        .backoff(Backoff::constant(ms(10)))
        .no_budget()
        .build()
        .unwrap();
    let mut client = ServiceBuilder::new()
        .retry(policy)
        .layer(breaker.layer().classify(server_errors))
        .timeout(secs(5))
        .service(hyper_client());
    for _ in 0..30 {
        let response = call(&mut client, get(server.url("/v1/chat"))).await;
        // A 503 from the server, or a fast `CircuitOpen` from the breaker.
        if let Ok(response) = response {
            assert_eq!(response.status(), 503);
        }
        tokio::time::sleep(ms(10)).await;
    }
    let probes = rounds.load(Ordering::SeqCst);
    assert_eq!(server.hits(), THRESHOLD as usize + probes);
    assert!(
        server.hits() < 30,
        "{} requests reached the server, not 30 x {ATTEMPTS}",
        server.hits()
    );
}
