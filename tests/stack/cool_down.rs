//! A 429 cool-down is waited out by new calls whose deadline outlasts it, a bounded number of
//! them, in the `.llm()` stack; the others fail fast with `RateLimited`.

use crate::scripted::{chat, status, upstream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_breaker::circuit_breaker::{CircuitState, RateLimited};
use tower_breaker::retry::{RetryEvent, RetryReason};
use tower_breaker::stack::StandardResilience;

/// The first call is a 429 asking for 1 s; every later one is answered.
fn rate_limited_once() -> impl Fn(&str, usize) -> http::Response<String> + Clone + Send + 'static {
    |_: &str, n: usize| match n {
        0 => status(429, &[("retry-after", "1")]),
        _ => status(200, &[]),
    }
}

fn spawn_call<S, B>(svc: &S) -> tokio::task::JoinHandle<(Result<u16, tower::BoxError>, Duration)>
where
    S: tower::Service<http::Request<String>, Response = http::Response<B>, Error = tower::BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    let svc = svc.clone();
    tokio::spawn(async move {
        let start = Instant::now();
        let result = svc.oneshot(chat("m")).await.map(|r| r.status().as_u16());
        (result, start.elapsed())
    })
}

#[tokio::test(start_paused = true)]
async fn new_calls_wait_out_a_short_cool_down_and_go_out_at_its_end() {
    let start = Instant::now();
    let retries = Arc::new(Mutex::new(Vec::new()));
    let sink = retries.clone();
    let stack = StandardResilience::builder("openai")
        .llm()
        .on_retry_event(move |e: &RetryEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let (upstream, calls) = upstream(rate_limited_once());
    let svc = stack.service(upstream);

    // The 429: the breaker cools down for 1 s, and this call's retry waits for its end.
    let first = spawn_call(&svc);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(stack.breaker().state(), CircuitState::RateLimited);
    // New calls during the cool-down: they wait rather than get `RateLimited`.
    let waiting: Vec<_> = (0..3).map(|_| spawn_call(&svc)).collect();
    for call in waiting {
        let (result, elapsed) = call.await.unwrap();
        assert_eq!(result.unwrap(), 200);
        assert_eq!(
            elapsed,
            Duration::from_millis(900),
            "out at the cool-down's end"
        );
    }
    assert_eq!(first.await.unwrap().0.unwrap(), 200);
    // The cool-down ran from 0 to 1 s (the breaker was built at 0): every call after the 429
    // reached the upstream right at its end.
    let at: Vec<Duration> = calls.of("m").iter().map(|t| *t - start).collect();
    assert_eq!(
        at,
        [
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(1)
        ]
    );
    // The waits are no attempts: each waiting call went out once, as its first attempt.
    let cool_downs = retries
        .lock()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e,
                RetryEvent::Retrying {
                    reason: RetryReason::CoolDown,
                    attempt: 1,
                    ..
                }
            )
        })
        .count();
    assert_eq!(cool_downs, 3);
}

#[tokio::test(start_paused = true)]
async fn at_most_the_bound_of_new_calls_wait_out_a_cool_down_the_others_fail_fast() {
    let stack = StandardResilience::builder("openai")
        .llm()
        .configure_retry(|retry| retry.wait_out_cool_downs(2))
        .build()
        .unwrap();
    // Two rounds, each opened by a 429 asking for 1 s: calls 0 and 4.
    let (upstream, calls) = upstream(|_: &str, n: usize| match n {
        0 | 4 => status(429, &[("retry-after", "1")]),
        _ => status(200, &[]),
    });
    let svc = stack.service(upstream);

    // The second round finds both places free again: a place is given back when its wait ends.
    for round in 1..=2 {
        let first = spawn_call(&svc);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(stack.breaker().state(), CircuitState::RateLimited);
        let waiting: Vec<_> = (0..2).map(|_| spawn_call(&svc)).collect();
        // Let the two take their places.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let (third, elapsed) = spawn_call(&svc).await.unwrap();
        let err = third.unwrap_err();
        assert!(err.is::<RateLimited>(), "round {round}: {err}");
        assert_eq!(elapsed, Duration::ZERO, "round {round}: failed fast");
        for call in waiting {
            assert_eq!(call.await.unwrap().0.unwrap(), 200, "round {round}");
        }
        assert_eq!(first.await.unwrap().0.unwrap(), 200, "round {round}");
        assert_eq!(
            calls.of("m").len(),
            4 * round,
            "round {round}: the 429, its retry and the two that waited"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_deadline_ends_before_the_cool_down_fails_fast() {
    let stack = StandardResilience::builder("openai")
        .llm()
        .total_timeout(Duration::from_millis(500))
        .attempt_timeout(Duration::from_millis(250))
        .build()
        .unwrap();
    let (upstream, calls) = upstream(rate_limited_once());
    let svc = stack.service(upstream);

    // The 429's own retry cannot wait 1 s within 0.5 s either: the caller has the 429.
    let (first, _) = spawn_call(&svc).await.unwrap();
    assert_eq!(first.unwrap(), 429);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (result, elapsed) = spawn_call(&svc).await.unwrap();
    let err = result.unwrap_err();
    assert!(err.is::<RateLimited>(), "{err}");
    assert_eq!(elapsed, Duration::ZERO);
    assert_eq!(calls.of("m").len(), 1);
}
