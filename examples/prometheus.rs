//! Prometheus metrics for a breaker and a bulkhead, served on `/metrics` by a real axum server.
//!
//! ```text
//! cargo run --example prometheus --features metrics
//! ```
//!
//! The example installs the Prometheus recorder, starts an axum server on 127.0.0.1 (a free
//! port) with two routes, `/chat` (calls a flaky in-process upstream through a circuit breaker
//! and a bulkhead) and `/metrics` (the Prometheus text), then plays a short outage with
//! reqwest: the upstream fails 3 times and the breaker opens, 2 calls are rejected at once,
//! and after the open wait 2 probes succeed and the breaker closes. It prints `/metrics` and
//! exits. In a real service, point Prometheus at `/metrics` and keep the server running.

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

    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
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
    ] {
        if !text.lines().any(|l| l == line) {
            return Err(format!("`{line}` missing from /metrics").into());
        }
    }

    let _ = stop.send(());
    server.await??;
    Ok(())
}
