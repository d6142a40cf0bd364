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
