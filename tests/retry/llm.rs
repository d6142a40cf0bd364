//! The LLM rules (the official OpenAI / Anthropic SDKs'), and a retry that knows its breaker:
//! in-process upstreams on paused time, so every wait is exact.

use crate::harness::{Events, call, upstream};
use crate::support::{ms, secs};
use http::{Request, Response};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_breaker::backoff::Backoff;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, RateLimited, SlidingWindow};
use tower_breaker::retry::{GiveUpReason, RetryPolicy};

fn status(code: u16, headers: &[(&str, &str)]) -> Response<String> {
    let mut builder = Response::builder().status(code);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(String::new()).unwrap()
}

fn chat() -> Request<String> {
    Request::post("/v1/chat/completions")
        .body(r#"{"model":"m","messages":[]}"#.to_string())
        .unwrap()
}

/// An upstream that answers the statuses of `script` in turn, then 200.
fn scripted(
    script: Vec<Response<String>>,
) -> (
    impl tower::Service<
        Request<String>,
        Response = Response<String>,
        Error = BoxError,
        Future = impl Future + Send,
    > + Clone
    + Send,
    crate::harness::Calls,
) {
    let script = std::sync::Arc::new(script);
    upstream(Duration::ZERO, move |n, _: &Request<String>| {
        Ok(script.get(n).cloned().unwrap_or_else(|| status(200, &[])))
    })
}

#[tokio::test(start_paused = true)]
async fn the_llm_rules_retry_what_the_official_sdks_retry() {
    for code in [408, 409, 429, 500, 502, 503, 504, 529] {
        let (svc, calls) = scripted(vec![status(code, &[])]);
        let policy = RetryPolicy::builder()
            .llm()
            .no_budget()
            .seed(1)
            .build()
            .unwrap();
        let mut svc = ServiceBuilder::new().retry(policy).service(svc);
        let response = call(&mut svc, chat()).await.unwrap();
        assert_eq!(response.status(), 200, "{code}");
        assert_eq!(calls.count(), 2, "{code} is retried");
    }
    for code in [400, 401, 403, 404, 422] {
        let (svc, calls) = scripted(vec![status(code, &[])]);
        let policy = RetryPolicy::builder().llm().no_budget().build().unwrap();
        let mut svc = ServiceBuilder::new().retry(policy).service(svc);
        assert_eq!(call(&mut svc, chat()).await.unwrap().status(), code);
        assert_eq!(calls.count(), 1, "{code} is not retried");
    }
    // The server decides with `x-should-retry`, whatever the status.
    let (svc, calls) = scripted(vec![status(503, &[("x-should-retry", "false")])]);
    let policy = RetryPolicy::builder().llm().no_budget().build().unwrap();
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert_eq!(call(&mut svc, chat()).await.unwrap().status(), 503);
    assert_eq!(calls.count(), 1);
    let (svc, calls) = scripted(vec![status(400, &[("x-should-retry", "true")])]);
    let policy = RetryPolicy::builder().llm().no_budget().build().unwrap();
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert_eq!(call(&mut svc, chat()).await.unwrap().status(), 200);
    assert_eq!(calls.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn post_completions_are_retried_by_the_llm_rules_only() {
    let (svc, calls) = scripted(vec![status(503, &[]), status(503, &[]), status(503, &[])]);
    let events = Events::default();
    let policy = RetryPolicy::builder()
        .llm()
        .no_budget()
        .on_event(events.listener())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert_eq!(call(&mut svc, chat()).await.unwrap().status(), 503);
    assert_eq!(calls.count(), 3, "three attempts, as the SDKs' two retries");
    assert_eq!(events.gave_up(), [GiveUpReason::MaxAttempts]);

    // The general HTTP rules send a POST without an Idempotency-Key once.
    let (svc, calls) = scripted(vec![status(503, &[])]);
    let events = Events::default();
    let policy = RetryPolicy::builder()
        .http()
        .on_event(events.listener())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert_eq!(call(&mut svc, chat()).await.unwrap().status(), 503);
    assert_eq!(calls.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_servers_wait_is_honoured_up_to_sixty_seconds_then_the_backoff_decides() {
    type Headers = Vec<(&'static str, &'static str)>;
    let cases: [(Headers, Option<Duration>); 4] = [
        (
            vec![("retry-after-ms", "1500"), ("retry-after", "9")],
            Some(ms(1500)),
        ),
        (vec![("retry-after", "7")], Some(secs(7))),
        (vec![("retry-after", "60")], Some(secs(60))),
        (vec![("retry-after", "600")], None),
    ];
    for (headers, expected) in cases {
        let (svc, calls) = scripted(vec![status(429, &headers)]);
        let policy = RetryPolicy::builder()
            .llm()
            .no_budget()
            .seed(7)
            .build()
            .unwrap();
        let mut svc = ServiceBuilder::new().retry(policy).service(svc);
        assert_eq!(call(&mut svc, chat()).await.unwrap().status(), 200);
        let gap = calls.gaps()[0];
        match expected {
            Some(wait) => assert_eq!(gap, wait, "{headers:?}"),
            // The first backoff: 0.5 s, plus or minus 25 %.
            None => assert!(
                (ms(375)..=ms(625)).contains(&gap),
                "{headers:?}: the backoff's {gap:?}, not the server's 600 s"
            ),
        }
    }
}

/// During an outage, no caller sleeps toward an open breaker: attempts in backoff when it
/// opens wake on its state change and give up with its error, and results that come back
/// after it opened give up at once. The outage's p99 is the time to open, not a backoff.
#[tokio::test(start_paused = true)]
async fn no_attempt_sleeps_toward_an_open_breaker() {
    async fn latencies(knows_breaker: bool) -> (Vec<Duration>, Events, usize) {
        let breaker = CircuitBreaker::builder("llm")
            .sliding_window(SlidingWindow::consecutive(5))
            .wait_in_open(secs(30))
            .build()
            .unwrap();
        let events = Events::default();
        let mut policy = RetryPolicy::builder()
            .llm()
            .backoff(Backoff::constant(secs(2)))
            .no_budget()
            .on_event(events.listener());
        if knows_breaker {
            policy = policy.breaker(&breaker);
        }
        let (down, calls) = upstream(ms(1), |_, _: &Request<String>| Ok(status(503, &[])));
        let svc = ServiceBuilder::new()
            .retry(policy.build().unwrap())
            .layer(breaker.http_layer())
            .service(down);
        let requests = (0..20).map(|_| {
            let svc = svc.clone();
            async move {
                let start = Instant::now();
                let result = svc.oneshot(chat()).await;
                (start.elapsed(), result.map(|r| r.status()))
            }
        });
        let results = futures_util::future::join_all(requests).await;
        assert_eq!(breaker.state(), CircuitState::Open);
        let mut latencies: Vec<_> = results.into_iter().map(|(d, _)| d).collect();
        latencies.sort();
        (latencies, events, calls.count())
    }

    let (aware, events, calls) = latencies(true).await;
    let p99 = aware[aware.len() * 99 / 100];
    assert!(
        p99 <= ms(1),
        "p99 {p99:?}: every request ends when the breaker opens"
    );
    assert_eq!(calls, 20, "no retry reached the upstream");
    assert_eq!(
        events.gave_up(),
        [GiveUpReason::CircuitOpen; 20],
        "each request gave up with the breaker's error"
    );

    let (blind, _, _) = latencies(false).await;
    let p99 = blind[blind.len() * 99 / 100];
    assert!(
        p99 >= secs(2),
        "without the breaker, a backoff is slept out: {p99:?}"
    );
}

/// A 429 cools the breaker down; a retry waits for the cool-down to end and goes through,
/// rather than giving up because the breaker rejects during it.
#[tokio::test(start_paused = true)]
async fn a_rate_limited_call_is_retried_once_the_cool_down_ends() {
    type Headers = Vec<(&'static str, &'static str)>;
    let cases: [(Headers, Duration); 2] = [
        (vec![("retry-after", "2")], secs(2)),
        // No server wait: the breaker's own 1 s cool-down, longer than the 0.5 s backoff.
        (vec![], secs(1)),
    ];
    for (headers, wait) in cases {
        let breaker = CircuitBreaker::builder("llm").build().unwrap();
        let events = Events::default();
        let policy = RetryPolicy::builder()
            .llm()
            .breaker(&breaker)
            .seed(3)
            .on_event(events.listener())
            .build()
            .unwrap();
        let (svc, calls) = scripted(vec![status(429, &headers)]);
        let mut svc = ServiceBuilder::new()
            .retry(policy)
            .layer(breaker.http_layer())
            .service(svc);
        let start = Instant::now();
        let response = call(&mut svc, chat()).await.unwrap();
        assert_eq!(response.status(), 200, "{headers:?}");
        assert_eq!(calls.count(), 2);
        assert!(
            start.elapsed() >= wait && start.elapsed() <= wait + ms(10),
            "{headers:?}: retried after {:?}",
            start.elapsed()
        );
        assert!(events.gave_up().is_empty(), "{:?}", events.all());
    }
}

/// The retry's wake and the breaker's cool-down end are one instant. The breaker keeps its
/// deadlines in whole milliseconds from when it was built, rounded up; tokio's timer keeps its
/// own in whole milliseconds from when the runtime started, also rounded up. A retry that slept
/// the server's 50 ms on its own clock could wake up to 1 ms before the breaker's cool-down
/// ended, find it still `RateLimited` and give up (the golden test's flake). Here the two grids
/// are half a millisecond apart and the 429 comes on a whole millisecond of tokio's: the old
/// policy woke at 51 ms, inside a cool-down that ran to 51.5 ms.
#[tokio::test(start_paused = true)]
async fn a_retry_that_waited_for_a_cool_down_never_finds_it_still_running() {
    let runtime_start = Instant::now();
    tokio::time::advance(Duration::from_micros(500)).await;
    let breaker = CircuitBreaker::builder("llm").build().unwrap();
    tokio::time::advance(Duration::from_micros(500)).await;
    let events = Events::default();
    let policy = RetryPolicy::builder()
        .llm()
        .breaker(&breaker)
        .on_event(events.listener())
        .build()
        .unwrap();
    let (svc, calls) = scripted(vec![status(429, &[("retry-after-ms", "50")])]);
    let mut svc = ServiceBuilder::new()
        .retry(policy)
        .layer(breaker.http_layer())
        .service(svc);
    let response = call(&mut svc, chat()).await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", events.all());
    assert_eq!(calls.count(), 2);
    assert!(events.gave_up().is_empty(), "{:?}", events.all());
    // The cool-down ran to 0.5 ms + ceil(0.5 ms + 50 ms) = 51.5 ms; tokio's timer fires on
    // the first whole millisecond at or after it.
    let retried_at = calls.at(1) - runtime_start;
    assert_eq!(retried_at, ms(52));
}

/// The official SDKs read `x-should-retry` on an error status only: a 200 that carries
/// `x-should-retry: true` is an answer (a paid one), never bought twice.
#[tokio::test(start_paused = true)]
async fn x_should_retry_is_read_on_an_error_status_only() {
    for code in [200, 201, 204, 301, 304] {
        let (svc, calls) = scripted(vec![status(code, &[("x-should-retry", "true")])]);
        let policy = RetryPolicy::builder().llm().no_budget().build().unwrap();
        let mut svc = ServiceBuilder::new().retry(policy).service(svc);
        assert_eq!(call(&mut svc, chat()).await.unwrap().status(), code);
        assert_eq!(calls.count(), 1, "a {code} is an answer, never retried");
    }
    // On an error status it still decides, both ways.
    let (svc, calls) = scripted(vec![status(422, &[("x-should-retry", "true")])]);
    let policy = RetryPolicy::builder().llm().no_budget().build().unwrap();
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert_eq!(call(&mut svc, chat()).await.unwrap().status(), 200);
    assert_eq!(calls.count(), 2);
    let (svc, calls) = scripted(vec![status(500, &[("x-should-retry", "false")])]);
    let policy = RetryPolicy::builder().llm().no_budget().build().unwrap();
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert_eq!(call(&mut svc, chat()).await.unwrap().status(), 500);
    assert_eq!(calls.count(), 1);
}

/// Waiting out cool-downs is bounded by the caller's time: without a deadline it is a
/// configuration error naming the field, and the bound has a range.
#[test]
fn waiting_out_cool_downs_needs_a_deadline_and_a_bound_in_range() {
    let err = RetryPolicy::builder()
        .wait_out_cool_downs(4)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "wait_out_cool_downs");
    let err = RetryPolicy::builder()
        .deadline(secs(30))
        .wait_out_cool_downs(1_000_000)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "wait_out_cool_downs");
    assert!(
        RetryPolicy::builder()
            .deadline(secs(30))
            .wait_out_cool_downs(4)
            .build()
            .is_ok()
    );
}

/// Waiting out cool-downs on a plain policy (outside the stack): one new call waits for the
/// cool-down and goes out at its end; with the bound of one taken, the next fails fast.
#[tokio::test(start_paused = true)]
async fn a_plain_policy_waits_out_a_cool_down_with_a_bounded_number_of_new_calls() {
    let start = Instant::now();
    let breaker = CircuitBreaker::builder("llm").build().unwrap();
    let policy = RetryPolicy::builder()
        .llm()
        .breaker(&breaker)
        .deadline(secs(10))
        .wait_out_cool_downs(1)
        .build()
        .unwrap();
    let (svc, calls) = scripted(vec![status(429, &[("retry-after", "1")])]);
    let svc = ServiceBuilder::new()
        .retry(policy)
        .layer(breaker.http_layer())
        .service(svc);
    let first = tokio::spawn(svc.clone().oneshot(chat()));
    tokio::time::sleep(ms(100)).await;
    assert_eq!(breaker.state(), CircuitState::RateLimited);
    let waiting = tokio::spawn(svc.clone().oneshot(chat()));
    tokio::time::sleep(ms(1)).await;
    let err = svc.clone().oneshot(chat()).await.unwrap_err();
    assert!(err.is::<RateLimited>(), "{err}");
    assert_eq!(waiting.await.unwrap().unwrap().status(), 200);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(calls.count(), 3);
    assert_eq!(calls.at(2) - start, secs(1), "out at the cool-down's end");
}
