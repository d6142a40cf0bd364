//! The governor one step off the happy path, from its public docs only: boundary costs and
//! limits, a call dropped at every await, the providers' real header values, concurrent calls
//! on paused time, and a 429 that arrives while calls wait. Every test runs on paused time.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready, task};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::quota::{
    Exhausted, HttpHeaders, Quota, QuotaEvent, QuotaExceeded, RateLimits, parse_go_duration,
};
use tower_breaker::rejection::Rejection;

const MINUTE: Duration = Duration::from_secs(60);

fn quota(max_wait: Duration) -> Quota<&'static str> {
    Quota::builder("adv")
        .max_wait(max_wait)
        .build()
        .expect("a valid quota")
}

fn response(status: u16, headers: &[(&str, &str)]) -> http::Response<()> {
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("a response")
}

fn exceeded(err: tower::BoxError) -> QuotaExceeded {
    err.downcast_ref::<QuotaExceeded>()
        .unwrap_or_else(|| panic!("a quota rejection, got {err}"))
        .clone()
}

// ---- configuration boundaries ----

#[test]
fn zero_and_out_of_range_settings_are_config_errors() {
    let b = || Quota::<&str>::builder("cfg");
    assert!(b().requests_per_window(0).build().is_err());
    assert!(b().window(Duration::ZERO).build().is_err());
    assert!(b().window(Duration::from_millis(999)).build().is_err());
    assert!(
        b().window(Duration::from_secs(24 * 3600 + 1))
            .build()
            .is_err()
    );
    assert!(
        b().max_wait(Duration::from_secs(24 * 3600 + 1))
            .build()
            .is_err()
    );
    assert!(b().max_keys(0).build().is_err());
    assert!(b().default_pause(Duration::ZERO).build().is_err());
    // Refused too, though its doc does not say so (unlike `requests_per_window`).
    assert!(b().tokens_per_window(0).build().is_err());
    // The edges themselves are allowed.
    assert!(b().window(Duration::from_secs(1)).build().is_ok());
    assert!(b().window(Duration::from_secs(24 * 3600)).build().is_ok());
    assert!(b().max_wait(Duration::ZERO).build().is_ok());
    assert!(b().max_keys(1).build().is_ok());
    assert!(b().requests_per_window(1).build().is_ok());
}

// ---- cost boundaries ----

#[tokio::test(start_paused = true)]
async fn a_cost_of_exactly_the_budget_fits_at_once_and_the_next_token_waits() {
    let q = quota(Duration::ZERO);
    q.set_limits(&"k", None, Some(1_000));
    let start = Instant::now();
    let _permit = q.acquire(&"k", 1_000).await.expect("the whole budget fits");
    assert_eq!(start.elapsed(), Duration::ZERO);
    let err = q.acquire(&"k", 1).await.expect_err("nothing left");
    assert_eq!(err.budget(), Exhausted::Tokens);
    // One token of 1,000 a minute refills in 60 ms.
    assert_eq!(err.retry_after(), Duration::from_millis(60));
}

#[tokio::test(start_paused = true)]
async fn a_cost_of_zero_tokens_fits_an_empty_token_budget() {
    let q = quota(Duration::ZERO);
    q.set_limits(&"k", None, Some(10));
    let _permit = q.acquire(&"k", 10).await.expect("fits");
    let _permit = q.acquire(&"k", 0).await.expect("zero tokens always fit");
}

/// A call estimated above the whole budget can never fit: the bucket holds at most `limit`.
/// It must fail at once (the provider would refuse it too), not be admitted into debt and
/// sent after a wait.
#[tokio::test(start_paused = true)]
async fn a_cost_larger_than_the_whole_budget_is_rejected_at_once() {
    let q = quota(MINUTE);
    q.set_limits(&"k", None, Some(1_000));
    let start = Instant::now();
    let result = q.acquire(&"k", 1_001).await;
    assert_eq!(start.elapsed(), Duration::ZERO, "it waited");
    let err = result.expect_err("more than the whole budget never fits");
    assert_eq!(err.budget(), Exhausted::Tokens);
    assert!(err.never_fits(), "{err}");
    assert_eq!(err.retry_after(), Duration::MAX, "no wait helps");
    let rejection = Rejection::of(&err).expect("our own rejection");
    assert_eq!(rejection.retry_after(), None, "no time to come back at");
    // Nothing was taken: the whole budget is still there.
    let snap = q.snapshot(&"k").expect("seen");
    assert_eq!(
        (snap.requests_limit, snap.tokens_available),
        (None, 1_000.0)
    );
}

/// Whatever `max_wait` (a day here, where 1,001 tokens would be "paid back" in 60 ms), on a
/// bucket in debt or full, a cost above the whole limit is refused with the same
/// `QuotaEvent::Rejected` as any rejection, and the budget is untouched.
#[tokio::test(start_paused = true)]
async fn a_cost_larger_than_the_whole_budget_is_rejected_with_an_event_and_takes_nothing() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let q = Quota::<&str>::builder("adv")
        .max_wait(Duration::from_secs(24 * 3600))
        .tokens_per_window(1_000)
        .on_event({
            let events = events.clone();
            move |e: &QuotaEvent| {
                if let QuotaEvent::Rejected {
                    budget,
                    retry_after,
                    ..
                } = e
                {
                    events.lock().unwrap().push((*budget, *retry_after));
                }
            }
        })
        .build()
        .expect("a valid quota");
    let _half = q.acquire(&"k", 500).await.expect("fits");
    let before = q.snapshot(&"k").expect("seen");
    let err = q.acquire(&"k", 1_001).await.expect_err("never fits");
    assert!(err.never_fits(), "{err}");
    assert_eq!(q.snapshot(&"k").expect("seen"), before, "nothing taken");
    assert_eq!(
        *events.lock().unwrap(),
        [(Exhausted::Tokens, Duration::MAX)]
    );
    // The whole limit itself still fits, after the refill of what the first call took.
    let start = Instant::now();
    let _all = q.acquire(&"k", 1_000).await.expect("the whole limit fits");
    assert_eq!(start.elapsed(), Duration::from_secs(30));
}

/// Through the layer: the response future fails on its first poll, the inner service is
/// never called.
#[tokio::test(start_paused = true)]
async fn a_layer_call_larger_than_the_whole_budget_fails_at_once_and_never_calls() {
    let q = quota(MINUTE);
    q.set_limits(&"k", None, Some(1_000));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(q.layer(|_: &u64| "k").cost(|tokens: &u64| *tokens))
        .service(service_fn({
            let calls = calls.clone();
            move |_: u64| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(()) }
            }
        }));
    let future = svc.ready().await.expect("ready").call(1_001);
    let mut future = task::spawn(future);
    let err = exceeded(assert_ready!(future.poll()).expect_err("never fits"));
    assert_eq!(err.budget(), Exhausted::Tokens);
    assert!(err.never_fits(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    svc.ready()
        .await
        .expect("ready")
        .call(1_000)
        .await
        .expect("the whole limit fits at once");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Issue "a lower limit applies at once": a call waiting its turn when a token limit below
/// its cost is learned fails at its turn with the quota's rejection (it would otherwise be
/// sent into a budget that can never hold it), gives its share back, and never calls.
#[tokio::test(start_paused = true)]
async fn a_waiter_costing_more_than_a_lower_limit_learned_meanwhile_fails_at_its_turn() {
    let q = quota(MINUTE);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(
            q.layer(|_: &u64| "k")
                .cost(|tokens: &u64| *tokens)
                .observe(HttpHeaders::new()),
        )
        .service(service_fn({
            let calls = calls.clone();
            move |_: u64| {
                calls.fetch_add(1, Ordering::SeqCst);
                async {
                    Ok::<_, Infallible>(response(
                        200,
                        &[
                            ("x-ratelimit-limit-tokens", "500"),
                            ("x-ratelimit-remaining-tokens", "500"),
                        ],
                    ))
                }
            }
        }));
    q.observe(&"k", &{
        let mut limits = RateLimits::default();
        limits.tokens.limit = Some(1_000);
        limits
    });
    let first = svc.ready().await.expect("ready").call(1_000);
    let waiter = svc.ready().await.expect("ready").call(800);
    let mut waiter = task::spawn(waiter);
    assert_pending!(waiter.poll());
    // The first call's answer: the limit is 500 now.
    first.await.expect("an answer");
    assert_eq!(q.snapshot(&"k").expect("seen").tokens_limit, Some(500));
    tokio::time::advance(MINUTE).await;
    let err = exceeded(assert_ready!(waiter.poll()).expect_err("never fits now"));
    assert_eq!(err.budget(), Exhausted::Tokens);
    assert!(err.never_fits(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the waiter was never sent");
    let level = q.snapshot(&"k").expect("seen").tokens_available;
    assert_eq!(level, 500.0, "its share went back");
}

/// The largest estimate must not overflow the arithmetic of the wait (no panic).
#[tokio::test(start_paused = true)]
async fn a_cost_of_u64_max_is_rejected_without_panicking() {
    let q = quota(Duration::from_secs(24 * 3600));
    q.set_limits(&"k", None, Some(1_000));
    let err = q.acquire(&"k", u64::MAX).await.expect_err("never fits");
    assert_eq!(err.budget(), Exhausted::Tokens);
    // Unknown limits admit everything, even this.
    let open = quota(Duration::ZERO);
    let _permit = open.acquire(&"k", u64::MAX).await.expect("no limit known");
}

/// "fits within `max_wait`": a wait of exactly `max_wait` is admitted.
#[tokio::test(start_paused = true)]
async fn a_wait_of_exactly_max_wait_is_admitted() {
    let q = quota(Duration::from_secs(30));
    q.set_limits(&"k", Some(2), None);
    let _permit = q.acquire(&"k", 0).await.expect("first");
    let _permit = q.acquire(&"k", 0).await.expect("second");
    let start = Instant::now();
    let _permit = q.acquire(&"k", 0).await.expect("waits exactly 30 s");
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    // The fourth takes its share and waits exactly 30 s again; the fifth would wait 60 s.
    let mut fourth = task::spawn(q.acquire(&"k", 0));
    assert_pending!(fourth.poll());
    let err = q
        .acquire(&"k", 0)
        .await
        .expect_err("would wait 30 s + 30 s");
    assert_eq!(err.retry_after(), Duration::from_secs(60));
    tokio::time::advance(Duration::from_secs(30)).await;
    let _fourth = assert_ready!(fourth.poll()).expect("admitted at its turn");
}

// ---- cancellation ----

/// A waiting `acquire` dropped after its first poll, and after each later poll, gives its
/// share back: the next caller waits as if it had never been admitted.
#[tokio::test(start_paused = true)]
async fn a_waiting_acquire_dropped_after_any_poll_gives_its_share_back() {
    for polls in 1..=3u32 {
        let q = quota(MINUTE * 2);
        q.set_limits(&"k", Some(1), Some(100));
        let _first = q.acquire(&"k", 100).await.expect("fits");
        let before = q.snapshot(&"k").expect("seen");
        {
            let mut waiting = task::spawn(q.acquire(&"k", 50));
            for _ in 0..polls {
                assert_pending!(waiting.poll());
                tokio::time::advance(Duration::from_secs(10)).await;
            }
        }
        let after = q.snapshot(&"k").expect("seen");
        let refilled = f64::from(polls) * 10.0 / 60.0;
        assert!(
            (after.requests_available - (before.requests_available + refilled)).abs() < 1e-6,
            "polls {polls}: {before:?} -> {after:?}"
        );
        assert!(
            (after.tokens_available - (before.tokens_available + refilled * 100.0)).abs() < 1e-6,
            "polls {polls}: {before:?} -> {after:?}"
        );
    }
}

/// The same through the layer: the response future dropped while it waits its turn gives the
/// share back and never calls the inner service.
#[tokio::test(start_paused = true)]
async fn a_waiting_layer_call_dropped_after_any_poll_gives_its_share_back_and_never_calls() {
    for polls in 1..=3u32 {
        let q = quota(MINUTE * 2);
        q.set_limits(&"k", Some(1), None);
        let calls = Arc::new(AtomicUsize::new(0));
        let mut svc = ServiceBuilder::new()
            .layer(q.layer(|_: &u32| "k"))
            .service(service_fn({
                let calls = calls.clone();
                move |_: u32| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, Infallible>(()) }
                }
            }));
        svc.ready()
            .await
            .expect("ready")
            .call(0)
            .await
            .expect("first");
        {
            let fut = svc.ready().await.expect("ready").call(1);
            let mut waiting = task::spawn(fut);
            for _ in 0..polls {
                assert_pending!(waiting.poll());
                tokio::time::advance(Duration::from_secs(10)).await;
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "polls {polls}");
        // The next call waits only for the refill of the first one's request.
        let start = Instant::now();
        svc.ready()
            .await
            .expect("ready")
            .call(2)
            .await
            .expect("third");
        assert_eq!(
            start.elapsed() + Duration::from_secs(10 * u64::from(polls)),
            MINUTE,
            "polls {polls}"
        );
    }
}

/// Dropping the first of two waiting calls moves nobody behind it out of order, and the
/// second still goes no later than it was told.
#[tokio::test(start_paused = true)]
async fn dropping_the_front_waiter_does_not_delay_the_one_behind() {
    let q = quota(MINUTE * 3);
    q.set_limits(&"k", Some(1), None);
    let _first = q.acquire(&"k", 0).await.expect("fits");
    let start = Instant::now();
    let mut front = task::spawn(q.acquire(&"k", 0));
    let mut back = task::spawn(q.acquire(&"k", 0));
    assert_pending!(front.poll());
    assert_pending!(back.poll());
    drop(front);
    tokio::time::advance(MINUTE * 2).await;
    let _permit = assert_ready!(back.poll()).expect("admitted");
    assert!(start.elapsed() <= MINUTE * 2);
}

// ---- provider headers ----

#[test]
fn openai_go_duration_resets_parse_exactly() {
    assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
    assert_eq!(parse_go_duration("12ms"), Some(Duration::from_millis(12)));
    assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
    assert_eq!(
        parse_go_duration("1h2m3.5s"),
        Some(Duration::from_millis(3_723_500))
    );
    assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_go_duration("-1s"), None);
    assert_eq!(parse_go_duration(""), None);
    assert_eq!(parse_go_duration("6m0"), None);
}

#[test]
fn real_openai_and_anthropic_headers_are_read_and_bad_values_ignored() {
    let mut h = http::HeaderMap::new();
    h.insert("x-ratelimit-limit-tokens", "30000".parse().unwrap());
    h.insert("x-ratelimit-remaining-tokens", "29975".parse().unwrap());
    h.insert("x-ratelimit-reset-tokens", "6m0s".parse().unwrap());
    h.insert("x-ratelimit-remaining-requests", "-1".parse().unwrap());
    let l = RateLimits::from_headers_at(&h, SystemTime::UNIX_EPOCH);
    assert_eq!(l.tokens.limit, Some(30_000));
    assert_eq!(l.tokens.remaining, Some(29_975));
    assert_eq!(l.tokens.reset, Some(Duration::from_secs(360)));
    assert_eq!(l.requests.remaining, None, "Azure's -1 means unknown");

    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_305_200); // 2026-12-03T13:40:00Z
    let mut a = http::HeaderMap::new();
    a.insert("anthropic-ratelimit-tokens-limit", "80000".parse().unwrap());
    a.insert(
        "anthropic-ratelimit-tokens-remaining",
        "79000".parse().unwrap(),
    );
    a.insert(
        "anthropic-ratelimit-tokens-reset",
        "2026-12-03T14:00:00Z".parse().unwrap(),
    );
    let l = RateLimits::from_headers_at(&a, now);
    assert_eq!(l.tokens.limit, Some(80_000));
    assert_eq!(l.tokens.remaining, Some(79_000));
    assert_eq!(l.tokens.reset, Some(Duration::from_secs(20 * 60)));
}

/// The next call (max_wait 0) after a success that reported `headers`.
async fn after_a_report(
    cost: u64,
    headers: &'static [(&'static str, &'static str)],
) -> QuotaExceeded {
    let q = quota(Duration::ZERO);
    let mut svc = ServiceBuilder::new()
        .layer(
            q.layer(|_: &u32| "m")
                .cost(move |_: &u32| cost)
                .observe(HttpHeaders::new()),
        )
        .service(service_fn(move |_: u32| async move {
            Ok::<_, Infallible>(response(200, headers))
        }));
    svc.ready()
        .await
        .expect("ready")
        .call(0)
        .await
        .expect("first");
    exceeded(svc.ready().await.expect("ready").call(1).await.unwrap_err())
}

/// OpenAI (limit 30,000, reset `6m0s`) and Anthropic (limit 6,000) report 0 tokens
/// remaining on a success: the next call waits for the refill (here, 1 s each).
#[tokio::test(start_paused = true)]
async fn remaining_tokens_zero_holds_the_next_call_back() {
    let openai = after_a_report(
        500,
        &[
            ("x-ratelimit-limit-tokens", "30000"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ],
    )
    .await;
    let anthropic = after_a_report(
        100,
        &[
            ("anthropic-ratelimit-tokens-limit", "6000"),
            ("anthropic-ratelimit-tokens-remaining", "0"),
        ],
    )
    .await;
    for err in [openai, anthropic] {
        assert_eq!(err.budget(), Exhausted::Tokens);
        assert_eq!(err.retry_after(), Duration::from_secs(1));
    }
}

/// A 429 with `retry-after: 7` pauses the key 7 s: the next call is rejected (max_wait 0)
/// as `paused`, with the rest of the pause, and goes once it is over.
#[tokio::test(start_paused = true)]
async fn a_429_retry_after_seconds_pauses_the_key_exactly() {
    let q = quota(Duration::ZERO);
    let status = Arc::new(Mutex::new(429u16));
    let mut svc = ServiceBuilder::new()
        .layer(q.layer(|_: &u32| "gpt").observe(HttpHeaders::new()))
        .service(service_fn({
            let status = status.clone();
            move |_: u32| {
                let s = *status.lock().unwrap();
                async move { Ok::<_, Infallible>(response(s, &[("retry-after", "7")])) }
            }
        }));
    let first = svc
        .ready()
        .await
        .expect("ready")
        .call(0)
        .await
        .expect("an answer");
    assert_eq!(first.status(), 429);
    *status.lock().unwrap() = 200;
    tokio::time::advance(Duration::from_secs(2)).await;
    let err = exceeded(svc.ready().await.expect("ready").call(1).await.unwrap_err());
    assert_eq!(err.budget(), Exhausted::Paused);
    assert_eq!(err.retry_after(), Duration::from_secs(5));
    tokio::time::advance(Duration::from_secs(5)).await;
    let ok = svc
        .ready()
        .await
        .expect("ready")
        .call(2)
        .await
        .expect("the pause is over");
    assert_eq!(ok.status(), 200);
}

// ---- concurrency ----

/// Ten callers at once on 6 requests a minute and `max_wait` 30 s: six go at once, three wait
/// 10, 20 and 30 s in arrival order, the tenth is rejected at once with 40 s.
#[tokio::test(start_paused = true)]
async fn concurrent_callers_are_served_in_arrival_order_at_the_refill_rate() {
    let q = quota(Duration::from_secs(30));
    q.set_limits(&"k", Some(6), None);
    let start = Instant::now();
    let calls = (0..10).map(|i| {
        let q = q.clone();
        async move {
            let r = q.acquire(&"k", 0).await;
            (i, start.elapsed(), r.map(|_| ()))
        }
    });
    let results = futures_util::future::join_all(calls).await;
    for (i, at, r) in &results {
        match i {
            0..=5 => assert_eq!((*at, r.is_ok()), (Duration::ZERO, true), "{i}"),
            6..=8 => assert_eq!(
                (*at, r.is_ok()),
                (Duration::from_secs(10 * (*i as u64 - 5)), true),
                "{i}"
            ),
            _ => {
                assert_eq!(*at, Duration::ZERO, "{i}");
                let err = r.as_ref().expect_err("past max_wait");
                assert_eq!(err.retry_after(), Duration::from_secs(40));
            }
        }
    }
}

/// A 429 asking for 100 s arrives while a call waits its turn (due at 60 s, `max_wait`
/// 70 s): the waiting call re-checks the key, would go after its `max_wait`, and fails with
/// `QuotaExceeded` without calling the provider, giving its share back.
#[tokio::test(start_paused = true)]
async fn a_429_while_a_call_waits_fails_the_call_that_would_go_past_max_wait() {
    let q = quota(Duration::from_secs(70));
    q.set_limits(&"k", Some(1), None);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(q.layer(|_: &u32| "k").observe(HttpHeaders::new()))
        .service(service_fn({
            let calls = calls.clone();
            move |n: u32| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    // The first answer comes after 1 s, a 429.
                    if n == 0 {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Ok::<_, Infallible>(response(429, &[("retry-after", "100")]))
                    } else {
                        Ok(response(200, &[]))
                    }
                }
            }
        }));
    let first = svc.ready().await.expect("ready").call(0);
    let second = svc.ready().await.expect("ready").call(1);
    let start = Instant::now();
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.expect("an answer").status(), 429);
    let err = exceeded(second.expect_err("paused past its max_wait"));
    assert_eq!(err.budget(), Exhausted::Paused);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(start.elapsed() <= MINUTE, "{:?}", start.elapsed());
    // The pause ends at 101 s; the request budget is free by then.
    tokio::time::advance(Duration::from_secs(101) - start.elapsed()).await;
    let ok = svc
        .ready()
        .await
        .expect("ready")
        .call(2)
        .await
        .expect("after the pause");
    assert_eq!(ok.status(), 200);
}

/// The longest waits a user or a provider can write never overflow the clock: a `max_wait` of
/// `Duration::MAX` is a configuration error naming the field, and a 429 whose wait (a
/// `RateLimits` built by hand, or `Retry-After` with the largest number) is `Duration::MAX`
/// pauses the key for a day, the longest wait any setting takes. No panic.
#[tokio::test(start_paused = true)]
async fn the_longest_waits_never_overflow_the_clock() {
    let err = Quota::<&str>::builder("adv")
        .max_wait(Duration::MAX)
        .build()
        .expect_err("longer than a day");
    assert_eq!(err.field(), "max_wait");

    let q = quota(Duration::ZERO);
    let mut limits = RateLimits::default();
    limits.retry_after = Some(Duration::MAX);
    let permit = q.acquire(&"k", 0).await.expect("no limit known");
    permit.rate_limited(&limits);
    let err = q.acquire(&"k", 0).await.expect_err("paused");
    assert_eq!(err.retry_after(), Duration::from_secs(24 * 3600));

    let huge = response(429, &[("retry-after", "18446744073709551615")]);
    let limits = RateLimits::from_headers(huge.headers());
    let q = quota(Duration::ZERO);
    let permit = q.acquire(&"k", 0).await.expect("no limit known");
    permit.rate_limited(&limits);
    assert!(q.acquire(&"k", 0).await.is_err(), "paused");
}
