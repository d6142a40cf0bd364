//! The policy through `tower::retry`, on generic services: delays, limits, deadline, budget,
//! rejections of our own middleware, events.

use crate::harness::{Events, call, cycle, down, upstream};
use crate::support::{ms, secs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, ServiceBuilder};
use tower_breaker::Outcome;
use tower_breaker::backoff::Backoff;
use tower_breaker::bulkhead::{Bulkhead, BulkheadFull};
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitOpen, CircuitState, HoldRejected, RateLimited, SlidingWindow,
};
use tower_breaker::retry::{GiveUpReason, RetryBudget, RetryEvent, RetryPolicy, RetryReason};

/// A policy without jitter or budget, so that delays are exact.
fn plain(max_attempts: u32, backoff: Backoff) -> tower_breaker::retry::Builder {
    RetryPolicy::builder()
        .max_attempts(max_attempts)
        .backoff(backoff)
        .no_budget()
}

#[tokio::test(start_paused = true)]
async fn delays_follow_the_backoff_exactly() {
    let cases = [
        (Backoff::constant(ms(250)), vec![ms(250); 3]),
        (
            Backoff::linear(ms(100), secs(1)).step(ms(50)),
            vec![ms(100), ms(150), ms(200)],
        ),
        (
            Backoff::exponential(ms(100), ms(300)),
            vec![ms(100), ms(200), ms(300)],
        ),
        (
            Backoff::exponential(ms(10), secs(10)).factor(3.0),
            vec![ms(10), ms(30), ms(90)],
        ),
    ];
    for (backoff, expected) in cases {
        let (svc, calls) = down::<()>();
        let mut svc = ServiceBuilder::new()
            .retry(plain(4, backoff).build().unwrap())
            .service(svc);
        let start = Instant::now();
        assert!(call(&mut svc, ()).await.is_err());
        assert_eq!(calls.count(), 4);
        assert_eq!(calls.gaps(), expected, "{backoff:?}");
        assert_eq!(start.elapsed(), expected.iter().sum::<Duration>());
    }
}

#[tokio::test(start_paused = true)]
async fn jitter_comes_from_the_injected_generator() {
    let events = Events::default();
    let policy = plain(4, Backoff::exponential(ms(100), secs(10)).full_jitter())
        .rng(cycle(&[0.5, 0.25, 0.75]))
        .on_event(events.listener())
        .build()
        .unwrap();
    let (svc, calls) = down::<()>();
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert!(call(&mut svc, ()).await.is_err());
    assert_eq!(calls.gaps(), [ms(50), ms(50), ms(300)]);
    assert_eq!(events.delays(), calls.gaps());

    // Decorrelated jitter keeps the previous delay per request.
    let events = Events::default();
    let policy = plain(
        4,
        Backoff::exponential(ms(100), secs(10)).decorrelated_jitter(),
    )
    .rng(cycle(&[0.5, 0.25, 0.75]))
    .on_event(events.listener())
    .build()
    .unwrap();
    let (svc, calls) = down::<()>();
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert!(call(&mut svc, ()).await.is_err());
    assert_eq!(
        events.delays(),
        [ms(200), ms(225), Duration::from_micros(531_250)]
    );
    // tokio's timer has millisecond resolution: the last sleep ends on the next millisecond.
    assert_eq!(calls.gaps(), [ms(200), ms(225), ms(532)]);
}

#[tokio::test(start_paused = true)]
async fn a_seed_makes_the_built_in_generator_reproducible() {
    async fn gaps(seed: u64) -> Vec<Duration> {
        let policy = plain(6, Backoff::exponential(ms(100), secs(10)).full_jitter())
            .seed(seed)
            .build()
            .unwrap();
        let (svc, calls) = down::<()>();
        let mut svc = ServiceBuilder::new().retry(policy).service(svc);
        let _ = call(&mut svc, ()).await;
        calls.gaps()
    }
    let a = gaps(7).await;
    assert_eq!(a.len(), 5);
    assert_eq!(a, gaps(7).await);
    assert_ne!(a, gaps(8).await);
}

#[tokio::test(start_paused = true)]
async fn requests_do_not_jitter_in_step() {
    // One policy, two requests: the generator is shared, so their delays differ.
    let policy = plain(2, Backoff::constant(secs(10)).full_jitter())
        .seed(1)
        .build()
        .unwrap();
    let (svc, calls) = down::<()>();
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    let _ = call(&mut svc, ()).await;
    let first = calls.gaps()[0];
    let _ = call(&mut svc, ()).await;
    let second = calls.gaps()[2];
    assert_ne!(first, second);
}

#[tokio::test(start_paused = true)]
async fn max_attempts_counts_the_first_call() {
    let events = Events::default();
    let policy = plain(3, Backoff::constant(ms(10)))
        .on_event(events.listener())
        .build()
        .unwrap();
    let (svc, calls) = down::<()>();
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    let err = call(&mut svc, ()).await.unwrap_err();
    assert_eq!(err.to_string(), "upstream is down");
    assert_eq!(calls.count(), 3);
    assert_eq!(events.gave_up(), [GiveUpReason::MaxAttempts]);
    let attempts: Vec<_> = events
        .all()
        .into_iter()
        .map(|e| match e {
            RetryEvent::Retrying {
                attempt, reason, ..
            } => (attempt, reason.as_str()),
            RetryEvent::GaveUp { attempt, .. } => (attempt, "gave_up"),
            _ => (0, "other"),
        })
        .collect();
    assert_eq!(attempts, [(1, "error"), (2, "error"), (3, "gave_up")]);

    // One attempt: never a retry.
    let (svc, calls) = down::<()>();
    let mut svc = ServiceBuilder::new()
        .retry(plain(1, Backoff::constant(ms(10))).build().unwrap())
        .service(svc);
    assert!(call(&mut svc, ()).await.is_err());
    assert_eq!(calls.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn only_failures_are_retried_and_a_late_success_is_reported() {
    let events = Events::default();
    let policy = plain(5, Backoff::constant(ms(10)))
        .classify(|r: &Result<u16, BoxError>| match r {
            Ok(status) if *status >= 500 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(e) if e.to_string() == "bad request" => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        })
        .on_event(events.listener())
        .build()
        .unwrap();
    let (svc, calls) = upstream(Duration::ZERO, |n, _: &()| Ok([503, 500, 200][n.min(2)]));
    let mut svc = ServiceBuilder::new().retry(policy.clone()).service(svc);
    assert_eq!(call(&mut svc, ()).await.unwrap(), 200);
    assert_eq!(calls.count(), 3);
    assert!(matches!(
        events.all().last(),
        Some(RetryEvent::Succeeded { attempt: 3, .. })
    ));
    assert!(matches!(
        events.all()[0],
        RetryEvent::Retrying {
            reason: RetryReason::Response,
            ..
        }
    ));

    // A 404 is an answer: not retried, no event.
    let (svc, calls) = upstream(Duration::ZERO, |_, _: &()| Ok(404u16));
    let mut svc = ServiceBuilder::new().retry(policy.clone()).service(svc);
    assert_eq!(call(&mut svc, ()).await.unwrap(), 404);
    assert_eq!(calls.count(), 1);

    // An error the classifier does not count as a failure is not retried.
    let (svc, calls) = upstream(Duration::ZERO, |_, _: &()| {
        Err::<u16, BoxError>("bad request".into())
    });
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert!(call(&mut svc, ()).await.is_err());
    assert_eq!(calls.count(), 1);
    assert_eq!(events.gave_up(), [GiveUpReason::NotRetryable]);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_keeps_a_reserve_for_the_last_attempt() {
    // Attempts take 2 s, the backoff is 1 s, the deadline 10 s with 25 % (2.5 s) in reserve:
    // attempts run 0-2, 3-5, 6-8; at 8 s, waiting 1 s would leave 1 s < 2.5 s: give up now.
    let events = Events::default();
    let policy = plain(10, Backoff::constant(secs(1)))
        .deadline(secs(10))
        .reserve_for_last_attempt(0.25)
        .on_event(events.listener())
        .build()
        .unwrap();
    let (svc, calls) = upstream(secs(2), |_, _: &()| {
        Err::<(), BoxError>("slow failure".into())
    });
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    let start = Instant::now();
    assert!(call(&mut svc, ()).await.is_err());
    assert_eq!(calls.count(), 3);
    assert_eq!(
        start.elapsed(),
        secs(8),
        "gave up at once, without sleeping"
    );
    assert_eq!(events.gave_up(), [GiveUpReason::Deadline]);

    // Without the reserve, one more attempt fits (9-11 s); then nothing is left.
    let policy = plain(10, Backoff::constant(secs(1)))
        .deadline(secs(10))
        .build()
        .unwrap();
    let (svc, calls) = upstream(secs(2), |_, _: &()| {
        Err::<(), BoxError>("slow failure".into())
    });
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    let start = Instant::now();
    assert!(call(&mut svc, ()).await.is_err());
    assert_eq!(calls.count(), 4);
    assert_eq!(start.elapsed(), secs(11));
}

#[tokio::test(start_paused = true)]
async fn a_wait_longer_than_the_deadline_gives_up_at_once() {
    let policy = plain(3, Backoff::constant(secs(5)))
        .deadline(secs(4))
        .build()
        .unwrap();
    let (svc, calls) = down::<()>();
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    let start = Instant::now();
    assert!(call(&mut svc, ()).await.is_err());
    assert_eq!(calls.count(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn each_request_has_its_own_deadline_and_attempts() {
    let policy = plain(3, Backoff::constant(secs(1)))
        .deadline(secs(5))
        .build()
        .unwrap();
    let (svc, calls) = upstream(secs(1), |_, _: &()| Err::<(), BoxError>("down".into()));
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    for round in 1..=3 {
        assert!(call(&mut svc, ()).await.is_err());
        // 0-1, 2-3, 4-5: three attempts each time, the clock starting again per request.
        assert_eq!(calls.count(), 3 * round);
    }
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_fails_fast() {
    // 10 % of calls, no minimum: one retry per ten calls.
    let events = Events::default();
    let policy = plain(3, Backoff::constant(ms(10)))
        .budget(RetryBudget::new(0.1, 0))
        .on_event(events.listener())
        .build()
        .unwrap();
    let (svc, calls) = down::<()>();
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    let start = Instant::now();
    for _ in 0..50 {
        assert!(call(&mut svc, ()).await.is_err());
    }
    assert_eq!(calls.count(), 55, "50 calls and 5 retries, not 150");
    assert_eq!(start.elapsed(), ms(50), "only the 5 retries waited");
    let exhausted = events
        .gave_up()
        .iter()
        .filter(|r| **r == GiveUpReason::BudgetExhausted)
        .count();
    assert_eq!(exhausted, 50);
}

#[tokio::test(start_paused = true)]
async fn policies_can_share_one_budget() {
    let budget = RetryBudget::new(0.0, 1).ttl(secs(2)); // 2 retries per 2 s, whatever the load
    let build = || {
        plain(5, Backoff::constant(ms(1)))
            .budget(budget.clone())
            .build()
            .unwrap()
    };
    let (a, a_calls) = down::<()>();
    let (b, b_calls) = down::<()>();
    let mut a = ServiceBuilder::new().retry(build()).service(a);
    let mut b = ServiceBuilder::new().retry(build()).service(b);
    let _ = call(&mut a, ()).await;
    let _ = call(&mut b, ()).await;
    assert_eq!(a_calls.count() + b_calls.count(), 2 + 2);
    assert_eq!(budget.available(), 0);
}

#[tokio::test(start_paused = true)]
async fn circuit_open_is_never_retried() {
    let events = Events::default();
    let policy = plain(5, Backoff::constant(secs(1)))
        .on_event(events.listener())
        .build()
        .unwrap();
    let breaker = CircuitBreaker::builder("upstream").build().unwrap();
    breaker.force_open();
    let (svc, calls) = down::<()>();
    let mut svc = ServiceBuilder::new()
        .retry(policy)
        .layer(breaker.layer())
        .service(svc);
    let start = Instant::now();
    let err = call(&mut svc, ()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(calls.count(), 0);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(events.gave_up(), [GiveUpReason::CircuitOpen]);
}

#[tokio::test(start_paused = true)]
async fn a_breaker_that_opens_mid_request_stops_its_retries() {
    let events = Events::default();
    let policy = plain(5, Backoff::constant(ms(100)))
        .on_event(events.listener())
        .build()
        .unwrap();
    let breaker = CircuitBreaker::builder("upstream")
        .sliding_window(SlidingWindow::consecutive(2))
        .build()
        .unwrap();
    let (svc, calls) = down::<()>();
    let mut svc = ServiceBuilder::new()
        .retry(policy)
        .layer(breaker.layer())
        .service(svc);
    let err = call(&mut svc, ()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(
        calls.count(),
        2,
        "the third attempt was rejected by the breaker"
    );
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(events.gave_up(), [GiveUpReason::CircuitOpen]);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_cool_down_is_never_retried() {
    let events = Events::default();
    let policy = plain(5, Backoff::constant(ms(100)))
        .on_event(events.listener())
        .build()
        .unwrap();
    let breaker = CircuitBreaker::builder("upstream").build().unwrap();
    breaker
        .try_acquire()
        .unwrap()
        .record_rate_limited(Some(secs(5)));
    assert_eq!(breaker.state(), CircuitState::RateLimited);
    let (svc, calls) = down::<()>();
    let mut svc = ServiceBuilder::new()
        .retry(policy)
        .layer(breaker.layer())
        .service(svc);
    let err = call(&mut svc, ()).await.unwrap_err();
    assert!(err.is::<RateLimited>(), "{err}");
    assert_eq!(calls.count(), 0);
    assert_eq!(events.gave_up(), [GiveUpReason::RateLimited]);
}

/// A call the breaker held and then gave up on (`HoldRejected`) is the breaker's rejection:
/// the policy gives up at once, as for `CircuitOpen`, with no further hold and no backoff.
#[tokio::test(start_paused = true)]
async fn a_held_call_that_gave_up_is_never_retried() {
    let events = Events::default();
    let policy = plain(5, Backoff::constant(secs(1)))
        .on_event(events.listener())
        .build()
        .unwrap();
    let breaker = CircuitBreaker::builder("upstream")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(secs(30))
        .build()
        .unwrap();
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(breaker.state(), CircuitState::Open);
    let (svc, calls) = down::<()>();
    let mut svc = ServiceBuilder::new()
        .retry(policy)
        .layer(breaker.layer().hold_while_open(4, ms(500)))
        .service(svc);
    let start = Instant::now();
    let err = call(&mut svc, ()).await.unwrap_err();
    assert!(err.is::<HoldRejected>(), "{err}");
    assert_eq!(calls.count(), 0);
    assert_eq!(
        start.elapsed(),
        ms(500),
        "held once, for its max_wait, then given up"
    );
    assert_eq!(events.gave_up(), [GiveUpReason::CircuitOpen]);
    assert!(events.delays().is_empty(), "no retry was scheduled");
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_is_retried_after_the_backoff_unless_told_not_to() {
    let bulkhead = Bulkhead::builder("tools")
        .max_concurrent(1)
        .build()
        .unwrap();
    let held = bulkhead.try_acquire().unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(ms(50)).await;
        drop(held);
    });
    let events = Events::default();
    let policy = plain(3, Backoff::constant(ms(100)))
        .on_event(events.listener())
        .build()
        .unwrap();
    let (svc, calls) = upstream(Duration::ZERO, |_, _: &()| Ok::<_, BoxError>("done"));
    let mut svc = ServiceBuilder::new()
        .retry(policy)
        .layer(bulkhead.layer())
        .service(svc);
    assert_eq!(call(&mut svc, ()).await.unwrap(), "done");
    assert_eq!(calls.count(), 1);
    assert!(matches!(
        events.all()[0],
        RetryEvent::Retrying {
            reason: RetryReason::BulkheadFull,
            ..
        }
    ));

    let _held = bulkhead.try_acquire().unwrap();
    let events = Events::default();
    let policy = plain(3, Backoff::constant(ms(100)))
        .retry_bulkhead_full(false)
        .on_event(events.listener())
        .build()
        .unwrap();
    let (svc, calls) = upstream(Duration::ZERO, |_, _: &()| Ok::<_, BoxError>("done"));
    let mut svc = ServiceBuilder::new()
        .retry(policy)
        .layer(bulkhead.layer())
        .service(svc);
    let err = call(&mut svc, ()).await.unwrap_err();
    assert!(err.is::<BulkheadFull>());
    assert_eq!(calls.count(), 0);
    assert_eq!(events.gave_up(), [GiveUpReason::BulkheadFull]);
}

/// A response that says when it is dropped.
struct Tracked(Arc<AtomicBool>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A named function, not a closure: `tokio::spawn` needs a classifier that is general over
/// lifetimes.
fn first_failed(result: &Result<(bool, Tracked), BoxError>) -> Outcome {
    match result {
        Ok((true, _)) => Outcome::Failure,
        _ => Outcome::Success,
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_response_is_dropped_before_the_wait() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let policy = plain(2, Backoff::constant(secs(1)))
        .classify(first_failed)
        .build()
        .unwrap();
    let (svc, calls) = upstream(Duration::ZERO, move |n, _: &()| {
        Ok::<_, BoxError>((n == 0, Tracked(flag.clone())))
    });
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    let task = tokio::spawn(async move { call(&mut svc, ()).await.map(|(failed, _)| failed) });
    tokio::time::sleep(ms(500)).await; // half-way through the wait
    assert_eq!(calls.count(), 1);
    assert!(dropped.load(Ordering::SeqCst), "released before the wait");
    assert!(!task.await.unwrap().unwrap(), "the retry succeeded");
    assert_eq!(calls.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_copied_is_sent_once_and_its_result_returned() {
    let copies = Arc::new(AtomicUsize::new(0));
    let counter = copies.clone();
    let policy = plain(3, Backoff::constant(ms(10)))
        .protocol(move |_: &String| {
            counter.fetch_add(1, Ordering::SeqCst);
            None
        })
        .build()
        .unwrap();
    let (svc, calls) = down::<String>();
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    let err = call(&mut svc, "streamed".to_string()).await.unwrap_err();
    assert_eq!(err.to_string(), "upstream is down");
    assert_eq!(calls.count(), 1);
    assert_eq!(copies.load(Ordering::SeqCst), 1);
}

#[test]
fn bad_settings_are_config_errors() {
    let field = |b: tower_breaker::retry::Builder| b.name("llm").build().unwrap_err().field();
    assert_eq!(
        field(RetryPolicy::builder().max_attempts(0)),
        "max_attempts"
    );
    assert_eq!(
        field(RetryPolicy::builder().max_attempts(101)),
        "max_attempts"
    );
    assert_eq!(
        field(
            RetryPolicy::builder()
                .deadline(secs(1))
                .reserve_for_last_attempt(1.0)
        ),
        "reserve_for_last_attempt"
    );
    assert_eq!(
        field(
            RetryPolicy::builder()
                .deadline(secs(1))
                .reserve_for_last_attempt(-0.1)
        ),
        "reserve_for_last_attempt"
    );
    assert_eq!(
        field(RetryPolicy::builder().reserve_for_last_attempt(0.25)),
        "reserve_for_last_attempt"
    );
    assert_eq!(
        field(RetryPolicy::builder().backoff(Backoff::exponential(secs(2), secs(1)))),
        "max_delay"
    );
    assert_eq!(
        field(RetryPolicy::builder().deadline(Duration::ZERO)),
        "deadline"
    );
    assert_eq!(
        field(RetryPolicy::builder().budget(RetryBudget::new(11.0, 0))),
        "budget.retry_ratio"
    );
    let err = RetryPolicy::builder()
        .name("llm")
        .max_attempts(0)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `max_attempts` for `llm`: 0 (allowed: 1 ..= 100)"
    );
    let ok = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::exponential(ms(500), secs(8)).full_jitter())
        .deadline(secs(30))
        .reserve_for_last_attempt(0.25)
        .budget(RetryBudget::new(0.2, 3))
        .build();
    assert!(ok.is_ok());
}
