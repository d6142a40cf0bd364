//! A quota key's levels through the `metrics` adapter: the `*_left` gauges follow what the
//! governor believes, at each admission and each answer that reports its headers.

use crate::{Value, key, read_metrics};
use metrics_util::debugging::DebuggingRecorder;
use std::collections::BTreeMap;
use std::time::Duration;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::metrics::MetricsListener;
use tower_breaker::quota::{Budget, Quota, QuotaEvent, RateLimits};

const REQUESTS_LEFT: &str = "tower_breaker_quota_requests_left";
const TOKENS_LEFT: &str = "tower_breaker_quota_tokens_left";

fn gauge(read: &BTreeMap<String, Value>, metric: &str, k: &str) -> Option<f64> {
    match read.get(&key(metric, &[("key", k), ("name", "openai")])) {
        Some(Value::Gauge(v)) => Some(*v),
        other => panic!("{metric} for {k}: {other:?}"),
    }
}

/// A call admitted through the layer, then its answer's rate-limit headers: after each, both
/// gauges read the governor's levels, equal to its snapshot.
#[tokio::test(start_paused = true)]
async fn an_admission_and_a_header_observation_move_the_gauges_to_the_snapshot() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let quota = Quota::<String>::builder("openai")
        .on_event(MetricsListener::new())
        .build()
        .unwrap();
    let gpt = "gpt".to_string();
    // Limits learned before the call, as from an earlier answer.
    let mut limits = RateLimits::default();
    limits.requests = Budget::new(Some(60), Some(50), None);
    limits.tokens = Budget::new(Some(10_000), Some(8_000), None);
    quota.observe(&gpt, &limits);
    let read = read_metrics(&snapshotter);
    assert_eq!(gauge(&read, REQUESTS_LEFT, "gpt"), Some(50.0));
    assert_eq!(gauge(&read, TOKENS_LEFT, "gpt"), Some(8_000.0));

    // The answer reports 40 requests and 5,000 tokens left.
    let answer = || {
        http::Response::builder()
            .header("x-ratelimit-limit-requests", "60")
            .header("x-ratelimit-remaining-requests", "40")
            .header("x-ratelimit-limit-tokens", "10000")
            .header("x-ratelimit-remaining-tokens", "5000")
            .body(String::new())
            .unwrap()
    };
    let (sent, mut answered) = tokio::sync::mpsc::channel::<()>(1);
    let (reply, replies) = tokio::sync::watch::channel(false);
    let upstream = service_fn(move |_: String| {
        let (sent, mut replies) = (sent.clone(), replies.clone());
        async move {
            sent.send(()).await.ok();
            replies.wait_for(|go| *go).await.ok();
            Ok::<_, BoxError>(answer())
        }
    });
    let mut client = ServiceBuilder::new()
        .layer(
            quota
                .layer(|_: &String| "gpt".to_string())
                .cost(|_: &String| 300)
                .http_headers(),
        )
        .service(upstream);
    let call = tokio::spawn(async move { client.ready().await?.call("hi".to_string()).await });

    // Admitted: one request and 300 tokens taken.
    answered.recv().await.expect("the call went out");
    let snapshot = quota.snapshot(&gpt).expect("a known key");
    assert_eq!(
        (snapshot.requests_available, snapshot.tokens_available),
        (49.0, 7_700.0)
    );
    let read = read_metrics(&snapshotter);
    assert_eq!(
        gauge(&read, REQUESTS_LEFT, "gpt"),
        Some(snapshot.requests_available)
    );
    assert_eq!(
        gauge(&read, TOKENS_LEFT, "gpt"),
        Some(snapshot.tokens_available)
    );

    // Answered: the headers set the levels.
    reply.send(true).unwrap();
    call.await.unwrap().unwrap();
    let snapshot = quota.snapshot(&gpt).expect("a known key");
    assert_eq!(
        (snapshot.requests_available, snapshot.tokens_available),
        (40.0, 5_000.0)
    );
    let read = read_metrics(&snapshotter);
    assert_eq!(gauge(&read, REQUESTS_LEFT, "gpt"), Some(40.0));
    assert_eq!(gauge(&read, TOKENS_LEFT, "gpt"), Some(5_000.0));
}

/// A key with no known limit has no level series; a budget set by hand has one, and a call
/// cancelled while it waits gives its share back to the gauge.
#[tokio::test(start_paused = true)]
async fn unknown_limits_have_no_series_and_a_refund_moves_the_gauge_back() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let levels = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = levels.clone();
    let quota = Quota::<&str>::builder("openai")
        .requests_per_window(2)
        .max_wait(Duration::from_secs(60))
        .on_event(MetricsListener::new())
        .on_event(move |event: &QuotaEvent| {
            if let QuotaEvent::LevelsChanged {
                requests_left,
                tokens_left,
                ..
            } = event
            {
                sink.lock().unwrap().push((*requests_left, *tokens_left));
            }
        })
        .build()
        .unwrap();

    let _first = quota.acquire(&"gpt", 10).await.unwrap();
    let _second = quota.acquire(&"gpt", 10).await.unwrap();
    let read = read_metrics(&snapshotter);
    assert_eq!(gauge(&read, REQUESTS_LEFT, "gpt"), Some(0.0));
    assert!(
        !read.keys().any(|k| k.starts_with(TOKENS_LEFT)),
        "no token limit: no token series"
    );

    // A third call waits 30 s for its turn (the level goes to -1), then is cancelled.
    let mut third = tokio_test::task::spawn(quota.acquire(&"gpt", 10));
    assert!(third.poll().is_pending());
    let read = read_metrics(&snapshotter);
    assert_eq!(gauge(&read, REQUESTS_LEFT, "gpt"), Some(-1.0));
    drop(third);
    let read = read_metrics(&snapshotter);
    assert_eq!(gauge(&read, REQUESTS_LEFT, "gpt"), Some(0.0));
    assert_eq!(
        *levels.lock().unwrap(),
        vec![
            (Some(1.0), None),
            (Some(0.0), None),
            (Some(-1.0), None),
            (Some(0.0), None)
        ]
    );
}

/// One thing done to a governor of two keys (no time passes, so no budget refills).
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A call of `tokens` for key `key`: admitted at once, made to wait, or rejected.
    Acquire { key: usize, tokens: u64 },
    /// A waiting call is cancelled (its share goes back).
    Cancel(usize),
    /// An answer reports what is left of both budgets.
    Answer {
        call: usize,
        requests: u64,
        tokens: u64,
    },
    /// An answer is a 429 (the estimate goes back).
    RateLimited(usize),
    /// An answer reports what the call used.
    Usage { call: usize, tokens: u64 },
    /// Limits set by hand.
    SetLimits {
        key: usize,
        requests: u64,
        tokens: u64,
    },
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..2usize, 0..400u64).prop_map(|(key, tokens)| Op::Acquire { key, tokens }),
        1 => (0..4usize).prop_map(Op::Cancel),
        2 => (0..4usize, 0..12u64, 0..2_000u64)
            .prop_map(|(call, requests, tokens)| Op::Answer { call, requests, tokens }),
        1 => (0..4usize).prop_map(Op::RateLimited),
        1 => (0..4usize, 0..600u64).prop_map(|(call, tokens)| Op::Usage { call, tokens }),
        1 => (0..2usize, 1..12u64, 1..2_000u64)
            .prop_map(|(key, requests, tokens)| Op::SetLimits { key, requests, tokens }),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// After any sequence of admissions, waits, cancellations, answers, 429s, usage reports
    /// and limits set by hand, the latest level reported for each key (by `seq`) is the
    /// governor's snapshot of it.
    #[test]
    fn the_latest_levels_reported_are_the_snapshot(ops in proptest::collection::vec(op(), 1..30)) {
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex};
        use tower_breaker::quota::QuotaPermit;

        type Latest = HashMap<String, (u64, Option<f64>, Option<f64>)>;
        let latest: Arc<Mutex<Latest>> = Arc::default();
        let sink = latest.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let quota = Quota::<&'static str>::builder("openai")
            .max_wait(Duration::from_secs(120))
            .on_event(move |event: &QuotaEvent| {
                if let QuotaEvent::LevelsChanged { key, requests_left, tokens_left, seq, .. } = event {
                    let mut latest = sink.lock().unwrap();
                    let entry = latest.entry(key.to_string()).or_insert((*seq, None, None));
                    if *seq >= entry.0 {
                        *entry = (*seq, *requests_left, *tokens_left);
                    }
                }
            })
            .build()
            .unwrap();
        let keys = ["gpt", "claude"];
        quota.set_limits(&keys[0], Some(5), Some(1_000));
        let mut permits: Vec<QuotaPermit<&'static str>> = Vec::new();
        let mut waiting = Vec::new();
        for op in ops {
            match op {
                Op::Acquire { key, tokens } => {
                    let mut call = tokio_test::task::spawn(quota.acquire(&keys[key], tokens));
                    match call.poll() {
                        std::task::Poll::Ready(Ok(permit)) => permits.push(permit),
                        std::task::Poll::Ready(Err(_)) => {}
                        std::task::Poll::Pending => waiting.push(call),
                    }
                }
                Op::Cancel(i) if i < waiting.len() => drop(waiting.remove(i)),
                Op::Answer { call, requests, tokens } if call < permits.len() => {
                    let mut limits = RateLimits::default();
                    limits.requests = Budget::new(Some(12), Some(requests), None);
                    limits.tokens = Budget::new(Some(2_000), Some(tokens), None);
                    permits[call].observe(&limits);
                }
                Op::RateLimited(call) if call < permits.len() => {
                    permits[call].rate_limited(&RateLimits::default());
                }
                Op::Usage { call, tokens } if call < permits.len() => {
                    permits[call].record_usage(tokens);
                }
                Op::SetLimits { key, requests, tokens } => {
                    quota.set_limits(&keys[key], Some(requests), Some(tokens));
                }
                _ => {}
            }
            let latest = latest.lock().unwrap();
            for key in keys {
                let Some(&(_, requests, tokens)) = latest.get(key) else {
                    continue;
                };
                let snapshot = quota.snapshot(&key).expect("a reported key is kept");
                let expected = (
                    snapshot.requests_limit.map(|_| snapshot.requests_available),
                    snapshot.tokens_limit.map(|_| snapshot.tokens_available),
                );
                proptest::prop_assert_eq!((requests, tokens), expected, "{}", key);
            }
        }
    }
}
