//! Per-model circuit breakers with failover from one model to another, and a cached fallback.
//!
//! ```text
//! cargo run --example llm_failover
//! ```
//!
//! A mock LLM API on 127.0.0.1 serves two models. Partway through, `big-model` starts failing.
//! Requests name the model they want; one breaker per model (a keyed registry) notices the
//! failures, the failover moves the request to `small-model` with the model name rewritten,
//! and when every model is down a cache of the last good answer per prompt answers instead.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
use tower_breaker::failover::Failover;
use tower_breaker::fallback::{FallbackEvent, FallbackLayer};
use tower_breaker::keyed::{KeyedCircuitBreakerLayer, KeyedCircuitBreakers};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Completion {
    model: String,
    prompt: String,
}

#[derive(Clone, Default)]
struct Api {
    big_down: Arc<AtomicBool>,
    small_down: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

async fn complete(State(api): State<Api>, body: String) -> (StatusCode, String) {
    api.calls.fetch_add(1, Ordering::Relaxed);
    let (model, prompt) = body.split_once('\n').unwrap_or((&body, ""));
    let down = match model {
        "big-model" => api.big_down.load(Ordering::Relaxed),
        _ => api.small_down.load(Ordering::Relaxed),
    };
    if down {
        return (StatusCode::SERVICE_UNAVAILABLE, "overloaded".into());
    }
    (StatusCode::OK, format!("[{model}] an answer to `{prompt}`"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let api = Api::default();
    let app = Router::new()
        .route("/v1/completions", post(complete))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/completions", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The HTTP call: a 5xx is an error.
    let http = reqwest::Client::new();
    let call = service_fn(move |req: Completion| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let res = http
                .post(url)
                .body(format!("{}\n{}", req.model, req.prompt))
                .send()
                .await?;
            let status = res.status();
            let text = res.text().await?;
            if status.is_server_error() {
                return Err::<String, BoxError>(format!("{} answered {status}", req.model).into());
            }
            Ok(text)
        }
    });

    // One breaker per model, built from one template.
    let template = CircuitBreaker::builder("model")
        .sliding_window(SlidingWindow::consecutive(2))
        .wait_in_open(Duration::from_secs(30));
    let models = KeyedCircuitBreakers::builder(template)
        .max_keys(100)
        .build()?;
    let guarded = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(KeyedCircuitBreakerLayer::new(
                models.clone(),
                |r: &Completion| r.model.clone(),
            ))
            .service(call),
    );

    // Failover: the requested model first, then the small one. The keyed breakers are looked
    // up through the same registry, so an open model is skipped without a call.
    let failover = Failover::builder()
        .provider(
            "big-model",
            Some(models.get(&"big-model".to_string())),
            guarded.clone(),
        )
        .provider_with_adapter(
            "small-model",
            Some(models.get(&"small-model".to_string())),
            guarded,
            |mut req: Completion| {
                req.model = "small-model".into();
                req
            },
        )
        .build();

    // The last good answer per prompt, for 10 minutes, when every model is down.
    let mut client = ServiceBuilder::new()
        .layer(
            FallbackLayer::cache(
                |r: &Completion| Some(r.prompt.clone()),
                Duration::from_secs(600),
                1_000,
            )
            .on_event(|e: &FallbackEvent| {
                if let FallbackEvent::Served(served) = e {
                    println!(
                        "    (served from the {} fallback: {})",
                        served.source, served.reason
                    );
                }
            }),
        )
        .service(failover.clone());

    let ask = |prompt: &str| Completion {
        model: "big-model".into(),
        prompt: prompt.into(),
    };

    println!("1. both models healthy:");
    println!("   {}", client.ready().await?.call(ask("hello")).await?);

    println!("2. big-model goes down; its breaker opens after two failures:");
    api.big_down.store(true, Ordering::Relaxed);
    for _ in 0..4 {
        println!("   {}", client.ready().await?.call(ask("hello")).await?);
    }
    println!("   models available: {:?}", failover.available());
    for (model, state) in models.states() {
        println!("   breaker {model}: {state}");
    }

    println!("3. small-model goes down too; the cached answer is served:");
    api.small_down.store(true, Ordering::Relaxed);
    for _ in 0..3 {
        println!("   {}", client.ready().await?.call(ask("hello")).await?);
    }
    match client.ready().await?.call(ask("a prompt never seen")).await {
        Ok(answer) => println!("   {answer}"),
        Err(e) => println!("   no cached answer for a new prompt: {e}"),
    }
    println!(
        "\nthe API saw {} calls for 9 requests",
        api.calls.load(Ordering::Relaxed)
    );
    Ok(())
}
