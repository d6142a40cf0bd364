//! Prometheus metrics for a breaker, a bulkhead, a quota and a stream guard, served on
//! `/metrics` by a real axum server.
//!
//! ```text
//! cargo run --example prometheus --features metrics,stream,quota,stack,chaos,reqwest
//! ```
//!
//! The example installs the Prometheus recorder, starts an axum server on 127.0.0.1 (a free
//! port) with two routes, `/chat` (calls a flaky in-process upstream through a circuit breaker
//! and a bulkhead) and `/metrics` (the Prometheus text), then plays a short outage with
//! reqwest: the upstream fails 3 times and the breaker opens, 2 calls are rejected at once,
//! and after the open wait 2 probes succeed and the breaker closes. Then a quota admits one
//! call (its `*_left` gauges), and a stream guard reads one streamed answer whose first token
//! comes after 50 ms (time to first token, and a `completed` stream). It prints `/metrics`,
//! checks that every breaker, bulkhead, quota-level and stream series the Grafana board
//! (`docs/grafana/tower-breaker.json`) queries is there, and exits.
//!
//! # Prometheus and Grafana
//!
//! To look at it in Grafana, keep the server running on a known address:
//!
//! ```text
//! cargo run --all-features --example prometheus -- --serve 127.0.0.1:9898
//! ```
//!
//! After its checks it then plays a provider's outages on a loop, so that every panel of the
//! board moves: six clients call a mock OpenAI-style provider (streamed answers, the head after
//! 20 to 200 ms, the first token 40 ms later or, for some, 0.3 or 0.9 s later) through a quota
//! (300 calls and 100,000 tokens a minute), an adaptive bulkhead, a fallback and the `.llm()`
//! stack (its stream guard's deadlines lowered to 2 s), while the provider goes, every 90 s,
//! through 30 s healthy, 15 s of 503s, 10 s of 429s with `Retry-After: 2`, 10 s of streams
//! that stall before their first token, 10 s of streams cut after 3 events, and 15 s
//! healthy again. The screenshot in `docs/grafana-board.png` is of this run
//! (`docs/grafana/README.md` says how it was made).
//!
//! point Prometheus at it (`prometheus.yml`; in your service, the address of its `/metrics`):
//!
//! ```text
//! scrape_configs:
//!   - job_name: tower-breaker-example
//!     scrape_interval: 5s
//!     static_configs:
//!       - targets: ["127.0.0.1:9898"]
//! ```
//!
//! then in Grafana add that Prometheus as a data source and import the board: Dashboards >
//! New > Import > upload `docs/grafana/tower-breaker.json`, and pick the data source. Its
//! `component` variable lists every `name` label. The time-open and time-to-first-token panels
//! need histogram buckets for `tower_breaker_circuit_breaker_open_seconds` and
//! `tower_breaker_stream_first_token_seconds`, set below with `set_buckets_for_metric`;
//! without them the exporter writes a summary. The board works the
//! same with the OpenTelemetry listener behind a Prometheus exporter (the names agree).

#[path = "../tests/support/upstream.rs"]
mod upstream;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::bulkhead::Bulkhead;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, SlidingWindow};
use tower_breaker::metrics::MetricsListener;
use tower_breaker::quota::Quota;
use tower_breaker::stream::StreamGuardLayer;

const OPEN_FOR: Duration = Duration::from_millis(300);

#[derive(Clone)]
struct App {
    upstream: BoxCloneSyncService<(), String, BoxError>,
    prometheus: PrometheusHandle,
}

async fn chat(State(app): State<App>) -> (StatusCode, String) {
    match app.upstream.oneshot(()).await {
        Ok(answer) => (StatusCode::OK, answer),
        Err(e) if e.is::<CircuitOpen>() => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn metrics(State(app): State<App>) -> String {
    app.prometheus.render()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The recorder first: series are bound to the recorder installed when first used.
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("tower_breaker_circuit_breaker_open_seconds".into()),
            &[0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full("tower_breaker_stream_first_token_seconds".into()),
            &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0],
        )?
        .install_recorder()?;

    let listener = MetricsListener::new();
    let breaker = CircuitBreaker::builder("upstream")
        .sliding_window(SlidingWindow::consecutive(3))
        .wait_in_open(OPEN_FOR)
        .permitted_calls_in_half_open(2)
        .on_event(listener.clone())
        .build()?;
    let bulkhead = Bulkhead::builder("upstream")
        .max_concurrent(4)
        .on_event(listener.clone())
        .build()?;

    // Down for its first 3 calls, then fine.
    let calls = Arc::new(AtomicUsize::new(0));
    let upstream = ServiceBuilder::new()
        .layer(breaker.layer())
        .layer(bulkhead.layer())
        .service(service_fn(move |()| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    Err::<String, BoxError>("503 from the upstream".into())
                } else {
                    Ok("hello from the upstream".to_string())
                }
            }
        }));
    let app = Router::new()
        .route("/chat", get(chat))
        .route("/metrics", get(metrics))
        .with_state(App {
            upstream: BoxCloneSyncService::new(upstream),
            prometheus,
        });

    // `--serve ADDR`: listen there and keep serving after the checks (for a real Prometheus).
    let serve = std::env::args().skip_while(|a| a != "--serve").nth(1);
    let tcp = tokio::net::TcpListener::bind(serve.as_deref().unwrap_or("127.0.0.1:0")).await?;
    let base = format!("http://{}", tcp.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(tcp, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    let client = reqwest::Client::new();
    let chat = |phase: &'static str| {
        let (client, url) = (client.clone(), format!("{base}/chat"));
        async move {
            let status = client.get(url).send().await?.status();
            println!("{phase:<10} GET /chat -> {status}");
            Ok::<_, BoxError>(status)
        }
    };
    for _ in 0..3 {
        assert_eq!(chat("outage").await?, StatusCode::BAD_GATEWAY);
    }
    for _ in 0..2 {
        assert_eq!(chat("open").await?, StatusCode::SERVICE_UNAVAILABLE);
    }
    tokio::time::sleep(OPEN_FOR).await;
    for _ in 0..2 {
        assert_eq!(chat("recovered").await?, StatusCode::OK);
    }

    // A quota: one call of 100 tokens, against 60 requests and 10,000 tokens a minute.
    let quota = Quota::<String>::builder("llm")
        .requests_per_window(60)
        .tokens_per_window(10_000)
        .on_event(listener.clone())
        .build()?;
    let _permit = quota.acquire(&"gpt".to_string(), 100).await?;

    // A streamed answer through a guard: its first token after 50 ms, then `[DONE]`.
    let guard = StreamGuardLayer::builder()
        .name("llm")
        .first_token_timeout(Duration::from_secs(5))
        .on_event(listener.clone())
        .build()?;
    let streamed = ServiceBuilder::new()
        .layer(guard)
        .service(service_fn(|()| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let sse = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
            Ok::<_, BoxError>(http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(sse.as_bytes()),
            )))
        }));
    let answer = streamed.oneshot(()).await?;
    http_body_util::BodyExt::collect(answer.into_body()).await?;
    println!("streamed   one answer through a stream guard");

    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    println!("\nGET /metrics\n\n{text}");
    for line in [
        r#"tower_breaker_circuit_breaker_calls_total{name="upstream",outcome="failure"} 3"#,
        r#"tower_breaker_circuit_breaker_calls_total{name="upstream",outcome="rejected"} 2"#,
        r#"tower_breaker_circuit_breaker_calls_total{name="upstream",outcome="success"} 2"#,
        r#"tower_breaker_circuit_breaker_state{name="upstream",state="closed"} 1"#,
        r#"tower_breaker_circuit_breaker_state{name="upstream",state="open"} 0"#,
        r#"tower_breaker_circuit_breaker_open_seconds_count{name="upstream"} 1"#,
        r#"tower_breaker_bulkhead_calls_total{name="upstream",outcome="permitted"} 5"#,
        r#"tower_breaker_bulkhead_active_calls{name="upstream"} 0"#,
        r#"tower_breaker_stream_calls_total{name="llm",outcome="completed"} 1"#,
        r#"tower_breaker_stream_first_token_seconds_count{name="llm"} 1"#,
    ] {
        if !text.lines().any(|l| l == line) {
            return Err(format!("`{line}` missing from /metrics").into());
        }
    }

    // The quota's levels after its call: 59 requests and 9,900 tokens, and the little the
    // budgets refilled (in real time) before the level was read.
    for (series, taken_to) in [
        (
            r#"tower_breaker_quota_requests_left{name="llm",key="gpt"}"#,
            59.0,
        ),
        (
            r#"tower_breaker_quota_tokens_left{name="llm",key="gpt"}"#,
            9_900.0,
        ),
    ] {
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok());
        if !value.is_some_and(|v| (taken_to..taken_to + 1.0).contains(&v)) {
            return Err(format!("`{series}` is {value:?}, not {taken_to} and a little").into());
        }
    }

    // The board's breaker, bulkhead, quota-level and stream queries find their series here.
    let board: serde_json::Value =
        serde_json::from_str(include_str!("../docs/grafana/tower-breaker.json"))?;
    for name in board_metrics(&board) {
        let emitted = [
            "circuit_breaker_",
            "bulkhead_",
            "quota_requests_left",
            "quota_tokens_left",
            "stream_",
        ]
        .iter()
        .any(|c| name.starts_with(&format!("tower_breaker_{c}")));
        if emitted && !text.lines().any(|l| l.starts_with(&format!("{name}{{"))) {
            return Err(
                format!("the Grafana board queries `{name}`, missing from /metrics").into(),
            );
        }
    }
    println!(
        "every breaker, bulkhead, quota-level and stream series of docs/grafana/tower-breaker.json is served"
    );

    if let Some(addr) = serve {
        println!("serving http://{addr}/metrics until Ctrl-C, with an outage every 90 s");
        let load = tokio::spawn(load::play_outages(listener.clone()));
        tokio::select! {
            stopped = tokio::signal::ctrl_c() => stopped?,
            failed = load => failed??,
        }
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// The metric names in the board's queries (words that start with `tower_breaker_`).
fn board_metrics(node: &serde_json::Value) -> Vec<String> {
    match node {
        serde_json::Value::Object(map) => map
            .iter()
            .flat_map(|(key, value)| match (key.as_str(), value.as_str()) {
                ("expr", Some(expr)) => expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("tower_breaker_"))
                    .map(str::to_string)
                    .collect(),
                _ => board_metrics(value),
            })
            .collect(),
        serde_json::Value::Array(list) => list.iter().flat_map(board_metrics).collect(),
        _ => Vec::new(),
    }
}

/// `--serve`: a provider's outages on a loop, through every component the board shows.
mod load {
    use super::upstream;
    use std::time::Duration;
    use tokio::time::Instant;
    use tower::{BoxError, Layer, ServiceExt};
    use tower_breaker::bulkhead::{AdaptiveBulkhead, Aimd, LimitAlgorithm, Signal};
    use tower_breaker::chaos::{ChaosLayer, Fault};
    use tower_breaker::fallback::{FallbackLayer, OnFailure, service_unavailable};
    use tower_breaker::http::HttpClassifier;
    use tower_breaker::metrics::MetricsListener;
    use tower_breaker::quota::Quota;
    use tower_breaker::retry::RetryOnStatus;
    use tower_breaker::stack::StandardResilience;
    use tower_breaker::stream::{SseRules, StreamGuardLayer, StreamRecorder};

    const CYCLE: Duration = Duration::from_secs(90);

    /// The provider's phase at `elapsed` into the run, as seconds into the cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Phase {
        Healthy,
        Outage,
        RateLimited,
        Stalls,
        Cuts,
    }

    fn phase(started: Instant) -> Phase {
        match started.elapsed().as_secs() % CYCLE.as_secs() {
            30..45 => Phase::Outage,
            45..55 => Phase::RateLimited,
            55..65 => Phase::Stalls,
            65..75 => Phase::Cuts,
            _ => Phase::Healthy,
        }
    }

    pub(super) async fn play_outages(listener: MetricsListener) -> Result<(), BoxError> {
        // 300 calls and 100,000 tokens a minute: about what the clients ask for, so that the
        // quota runs low, and some calls wait or are turned away.
        let quota = Quota::<String>::builder("openai")
            .requests_per_window(300)
            .tokens_per_window(100_000)
            .max_wait(Duration::from_secs(2))
            .on_event(listener.clone())
            .build()?;
        let started = Instant::now();
        let during = move |p: Phase| move |_: &http::request::Parts| phase(started) == p;
        let provider = upstream::Upstream::builder()
            .chunks(8)
            .chunk_interval(Duration::from_millis(40))
            .chaos(
                ChaosLayer::http("provider")
                    .seed(2026)
                    .inject(
                        Fault::latency_between(
                            Duration::from_millis(20),
                            Duration::from_millis(200),
                        ),
                        1.0,
                    )
                    .inject_when(Fault::service_unavailable(), 1.0, during(Phase::Outage))
                    .inject_when(
                        Fault::rate_limited(Some(Duration::from_secs(2))),
                        1.0,
                        during(Phase::RateLimited),
                    )
                    .inject_when(
                        Fault::stall_before_first_byte(Duration::from_secs(30)),
                        1.0,
                        during(Phase::Stalls),
                    )
                    .inject_when(Fault::cut_after(3), 1.0, during(Phase::Cuts))
                    // Outside those phases, some answers think before their first token (time
                    // to first token is measured from the response head). After the phases'
                    // faults: the first stream fault that fires applies.
                    .inject(
                        Fault::stall_before_first_byte(Duration::from_millis(300)),
                        0.3,
                    )
                    .inject(
                        Fault::stall_before_first_byte(Duration::from_millis(900)),
                        0.1,
                    )
                    .on_event(listener.clone())
                    .build()?,
            )
            .start()
            .await;

        // The `.llm()` stack, its guard's deadlines lowered to 2 s, its breaker open 5 s (not
        // 15) and a call slower than 1.5 s counted slow (a healthy answer takes under 1 s).
        let guard = StreamGuardLayer::builder()
            .name("openai")
            .first_token_timeout(Duration::from_secs(2))
            .idle_timeout(Duration::from_secs(2))
            .rules(SseRules::openai())
            .build()?;
        let stack = StandardResilience::builder("openai")
            .llm()
            .record_with(StreamRecorder::new(&guard, HttpClassifier::new()))
            .configure_breaker(|breaker| {
                breaker
                    .wait_in_open(Duration::from_secs(5))
                    .slow_call_duration(Duration::from_millis(1500))
            })
            .on_event(listener.clone())
            .on_stream_event(listener.clone())
            .build()?;
        let fallback = FallbackLayer::from_fn(service_unavailable)
            .on(OnFailure(RetryOnStatus::llm()))
            .name("openai")
            .on_event(listener.clone());
        let openai = fallback.layer(stack.layer(reqwest::Client::new()));
        let adaptive = AdaptiveBulkhead::builder("openai-adaptive")
            .algorithm(LimitAlgorithm::Aimd(Aimd::default()))
            .initial_limit(4)
            .limits(1, 16)
            .max_queue(16)
            .max_wait(Duration::from_secs(5))
            .on_event(listener.clone())
            .on_limit_event(listener.clone())
            .build()?;

        let mut clients = tokio::task::JoinSet::new();
        for client in 0..6u64 {
            let (openai, adaptive, quota) = (openai.clone(), adaptive.clone(), quota.clone());
            let url = provider.chat_url();
            clients.spawn(async move {
                let mut n = client;
                loop {
                    // 4 to 7 calls a second among the six clients.
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    tokio::time::sleep(Duration::from_millis(800 + (n >> 33) % 700)).await;
                    let Ok(_budget) = quota.acquire(&"gpt-4o-mini".to_string(), 400).await else {
                        continue;
                    };
                    let Ok(mut slot) = adaptive.acquire().await else {
                        continue;
                    };
                    let request = reqwest::Client::new()
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("accept", "text/event-stream")
                        .body(r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#)
                        .build()?;
                    let signal = match openai.clone().oneshot(request).await {
                        Ok(answer) if answer.status().is_success() => {
                            slot.first_token();
                            match answer.bytes().await {
                                Ok(_) => Signal::Success,
                                Err(_) => Signal::Congestion,
                            }
                        }
                        Ok(_) | Err(_) => Signal::Congestion,
                    };
                    slot.record(signal);
                }
                #[allow(unreachable_code)]
                Ok::<(), BoxError>(())
            });
        }
        match clients.join_next().await {
            Some(ended) => ended?,
            None => Ok(()),
        }
    }
}
