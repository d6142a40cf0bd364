//! Outage detection in bounded time, whatever the history: after 10 s, 60 s or 10 min of healthy
//! traffic at 20 calls a second, a full outage opens the breaker within 1 s and within 20
//! failed attempts (the consecutive-failure rule), and a background of 5 % scattered failures
//! never opens it. On paused time, for the breaker itself and for every preset stack.

use std::time::Duration;
use tokio::time::Instant;
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};

/// 20 calls a second.
const TICK: Duration = Duration::from_millis(50);
/// The healthy histories before the outage.
const HISTORIES: [Duration; 3] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(600),
];

/// A seeded, reproducible stream of `true` with probability `p` (splitmix64).
struct Coin {
    state: u64,
    p: f64,
}

impl Coin {
    fn new(seed: u64, p: f64) -> Self {
        Self { state: seed, p }
    }

    fn flip(&mut self) -> bool {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < self.p
    }
}

/// The `.llm()` preset's breaker settings, with the outage rule.
fn long_window(consecutive: Option<u32>) -> CircuitBreaker {
    CircuitBreaker::builder("llm-like")
        .sliding_window(SlidingWindow::time_based(Duration::from_secs(120)))
        .failure_rate_threshold(0.5)
        .minimum_calls(10)
        .wait_in_open(Duration::from_secs(15))
        .consecutive_failure_threshold(consecutive)
        .build()
        .unwrap()
}

/// `healthy` of successes at 20 calls a second, then failures until the breaker rejects a
/// call. Returns the failed calls and the time from the first failure to the open breaker.
async fn outage_after(breaker: &CircuitBreaker, healthy: Duration) -> (u32, Duration) {
    let end = Instant::now() + healthy;
    while Instant::now() < end {
        breaker.try_acquire().unwrap().record(Outcome::Success);
        tokio::time::advance(TICK).await;
    }
    let start = Instant::now();
    let mut failed = 0;
    while let Ok(permit) = breaker.try_acquire() {
        permit.record(Outcome::Failure);
        failed += 1;
        if breaker.state() == CircuitState::Open {
            return (failed, start.elapsed());
        }
        tokio::time::advance(TICK).await;
        assert!(failed < 100_000, "never opened");
    }
    (failed, start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn an_outage_opens_the_breaker_within_20_failures_whatever_the_history() {
    for healthy in HISTORIES {
        let breaker = long_window(Some(15));
        let (failed, took) = outage_after(&breaker, healthy).await;
        assert_eq!(breaker.state(), CircuitState::Open, "after {healthy:?}");
        assert_eq!(failed, 15, "after {healthy:?} of healthy traffic");
        assert!(
            took <= Duration::from_secs(1),
            "after {healthy:?}: {took:?}"
        );
    }
}

/// The flaw the rule fixes, pinned: the rate over a long window alone sees an outage later
/// the longer things went well.
#[tokio::test(start_paused = true)]
async fn without_the_rule_a_long_window_sees_an_outage_late() {
    let (after_10s, _) = outage_after(&long_window(None), Duration::from_secs(10)).await;
    let (after_60s, took) = outage_after(&long_window(None), Duration::from_secs(60)).await;
    assert!(after_10s > 150, "{after_10s}");
    assert!(after_60s > 1_000, "{after_60s}");
    assert!(took > Duration::from_secs(30), "{took:?}");
}

/// A count window and the consecutive rule together: whichever says so first.
#[tokio::test(start_paused = true)]
async fn the_rule_sits_beside_a_count_window() {
    let breaker = CircuitBreaker::builder("count")
        .sliding_window(SlidingWindow::count_based(1_000))
        .minimum_calls(100)
        .consecutive_failure_threshold(Some(5))
        .build()
        .unwrap();
    let (failed, _) = outage_after(&breaker, Duration::from_secs(60)).await;
    assert_eq!(failed, 5);
}

/// Ignored outcomes (a 429, a cancelled call) neither extend nor end a run; a success ends it.
#[tokio::test(start_paused = true)]
async fn a_success_ends_the_run_and_an_ignored_call_leaves_it() {
    let breaker = long_window(Some(3));
    let record = |o: Outcome| breaker.try_acquire().unwrap().record(o);
    record(Outcome::Failure);
    record(Outcome::Failure);
    record(Outcome::Success);
    record(Outcome::Failure);
    record(Outcome::Failure);
    record(Outcome::Ignored);
    drop(breaker.try_acquire().unwrap());
    assert_eq!(breaker.state(), CircuitState::Closed);
    record(Outcome::Failure);
    assert_eq!(breaker.state(), CircuitState::Open);
}

/// The run starts again in each closed generation: failures before a reset do not count.
#[tokio::test(start_paused = true)]
async fn a_reset_starts_the_run_again() {
    let breaker = long_window(Some(3));
    let record = |o: Outcome| breaker.try_acquire().unwrap().record(o);
    record(Outcome::Failure);
    record(Outcome::Failure);
    breaker.reset();
    record(Outcome::Failure);
    record(Outcome::Failure);
    assert_eq!(breaker.state(), CircuitState::Closed);
    record(Outcome::Failure);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[test]
fn the_threshold_is_checked() {
    for bad in [0, 1_000_001] {
        let err = CircuitBreaker::builder("x")
            .consecutive_failure_threshold(Some(bad))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "consecutive_failure_threshold");
    }
    for good in [None, Some(1), Some(1_000_000)] {
        CircuitBreaker::builder("x")
            .consecutive_failure_threshold(good)
            .build()
            .unwrap();
    }
}

/// One hour at 20 calls a second with 5 % of calls failing at random (seeded): the rule never
/// fires on scattered failures, beside either preset window.
#[tokio::test(start_paused = true)]
async fn scattered_failures_never_open_the_breaker() {
    let breakers = [
        long_window(Some(15)),
        // The default stack's breaker.
        CircuitBreaker::builder("default-stack")
            .sliding_window(SlidingWindow::time_based(Duration::from_secs(30)))
            .failure_rate_threshold(0.1)
            .minimum_calls(100)
            .consecutive_failure_threshold(Some(15))
            .build()
            .unwrap(),
    ];
    for (seed, breaker) in breakers.iter().enumerate() {
        let mut coin = Coin::new(seed as u64 + 7, 0.05);
        let mut failures = 0;
        for _ in 0..72_000 {
            let failed = coin.flip();
            failures += failed as u32;
            let outcome = if failed {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            breaker.try_acquire().unwrap().record(outcome);
            tokio::time::advance(TICK).await;
        }
        assert!((3_000..4_200).contains(&failures), "{failures}");
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(breaker.metrics().not_permitted_calls, 0);
    }
}

#[cfg(all(feature = "stack", feature = "http", feature = "reqwest"))]
mod presets {
    //! Every preset stack, driven at 20 requests a second over a fake upstream that answers at
    //! once and goes fully down (503, or an error for the default stack). Retries go through
    //! the breaker, so "failed attempts" counts every request that reached the dead upstream.

    use super::{Coin, HISTORIES, TICK};
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::time::Instant;
    use tower::{BoxError, Layer, ServiceExt, service_fn};
    use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState};
    use tower_breaker::stack::StandardResilience;

    #[derive(Clone)]
    struct Upstream {
        hits: Arc<AtomicUsize>,
        down: Arc<AtomicBool>,
        /// Scattered failures, seeded.
        scatter: Arc<Mutex<Coin>>,
    }

    impl Upstream {
        fn new(scattered: f64) -> Self {
            Self {
                hits: Arc::default(),
                down: Arc::default(),
                scatter: Arc::new(Mutex::new(Coin::new(42, scattered))),
            }
        }

        /// Counts the request; true when it succeeds.
        fn hit(&self) -> bool {
            self.hits.fetch_add(1, Ordering::SeqCst);
            let scattered = self.scatter.lock().unwrap().flip();
            !self.down.load(Ordering::SeqCst) && !scattered
        }
    }

    fn http_response(up: bool) -> http::Response<String> {
        let status = if up { 200 } else { 503 };
        // A non-streamed completion's head: JSON passes the `.llm()` stream guard untouched
        // (a 2xx without a content type would be taken for the stream that was asked for).
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(String::new())
            .unwrap()
    }

    /// A preset over a fake upstream, and a way to send one request through it.
    struct Rig {
        name: &'static str,
        upstream: Upstream,
        breaker: CircuitBreaker,
        /// Not `Send`: the requests run on a `LocalSet` (a boxed `Send` future of the stack's
        /// call trips the compiler's higher-ranked lifetime check on the error type).
        send: Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()>>>>,
    }

    macro_rules! rig {
        ($name:expr, $stack:expr, $scattered:expr, |$up:ident: $req:ty| $response:expr, $request:expr) => {{
            let upstream = Upstream::new($scattered);
            let stack = $stack.build().unwrap();
            let breaker = stack.breaker().clone();
            let seen = upstream.clone();
            let client = stack.layer(service_fn(move |_: $req| {
                let $up = seen.hit();
                async move { $response }
            }));
            Rig {
                name: $name,
                upstream,
                breaker,
                send: Box::new(move || {
                    let request = $request;
                    let client = client.clone();
                    Box::pin(async move {
                        let _ = client.oneshot(request).await;
                    })
                }),
            }
        }};
    }

    /// Every preset, over an upstream that fails `scattered` of its requests at random.
    fn rigs(scattered: f64) -> [Rig; 4] {
        [
            rig!(
                ".llm()",
                StandardResilience::builder("openai").llm(),
                scattered,
                |up: http::Request<String>| Ok::<_, BoxError>(http_response(up)),
                http::Request::post("http://fake/v1/chat/completions")
                    .body(r#"{"messages":[]}"#.to_string())
                    .unwrap()
            ),
            rig!(
                ".http()",
                StandardResilience::builder("api").http(),
                scattered,
                |up: http::Request<String>| Ok::<_, BoxError>(http_response(up)),
                http::Request::get("http://fake/items")
                    .body(String::new())
                    .unwrap()
            ),
            rig!(
                ".reqwest()",
                StandardResilience::builder("api").reqwest(),
                scattered,
                |up: reqwest::Request| Ok::<_, reqwest::Error>(reqwest::Response::from(
                    http_response(up)
                )),
                reqwest::Request::new(reqwest::Method::GET, "http://fake/items".parse().unwrap())
            ),
            rig!(
                "the default stack",
                StandardResilience::builder("api"),
                scattered,
                |up: u32| if up {
                    Ok(0)
                } else {
                    Err::<u32, BoxError>("503".into())
                },
                1
            ),
        ]
    }

    /// Sends 20 requests a second for `length`, or until `stop` says so.
    async fn traffic(rig: &Rig, length: Duration, stop: impl Fn() -> bool) {
        let end = Instant::now() + length;
        while Instant::now() < end && !stop() {
            tokio::task::spawn_local((rig.send)());
            tokio::time::sleep(TICK).await;
        }
    }

    /// Healthy traffic for `healthy`, then the outage: returns the requests that reached the
    /// dead upstream before the breaker opened, and how long that took.
    async fn outage(rig: &Rig, healthy: Duration) -> (usize, Duration) {
        traffic(rig, healthy, || false).await;
        assert_eq!(rig.breaker.state(), CircuitState::Closed, "healthy traffic");
        rig.upstream.down.store(true, Ordering::SeqCst);
        let before = rig.upstream.hits.load(Ordering::SeqCst);
        let start = Instant::now();
        let open = || rig.breaker.state() == CircuitState::Open;
        traffic(rig, Duration::from_secs(600), open).await;
        assert!(open(), "{}: never opened", rig.name);
        let took = start.elapsed();
        // Whatever was still in flight when it opened is counted too.
        tokio::time::sleep(Duration::from_secs(1)).await;
        (rig.upstream.hits.load(Ordering::SeqCst) - before, took)
    }

    #[tokio::test(start_paused = true)]
    async fn every_preset_sees_an_outage_within_a_second_whatever_the_history() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                for healthy in HISTORIES {
                    for rig in rigs(0.0) {
                        let (failed, took) = outage(&rig, healthy).await;
                        let name = rig.name;
                        assert!(
                            failed <= 20,
                            "{name} after {healthy:?}: {failed} requests reached the dead upstream"
                        );
                        assert!(
                            took <= Duration::from_secs(1),
                            "{name} after {healthy:?}: {took:?}"
                        );
                    }
                }
            })
            .await;
    }

    /// Ten minutes of 5 % scattered failures (seeded), retries included: no preset opens.
    #[tokio::test(start_paused = true)]
    async fn no_preset_opens_on_scattered_failures() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                for rig in rigs(0.05) {
                    let opened = || rig.breaker.state() != CircuitState::Closed;
                    traffic(&rig, Duration::from_secs(600), opened).await;
                    assert_eq!(rig.breaker.state(), CircuitState::Closed, "{}", rig.name);
                    assert!(rig.upstream.hits.load(Ordering::SeqCst) >= 12_000);
                }
            })
            .await;
    }
}
