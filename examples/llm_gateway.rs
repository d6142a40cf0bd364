//! An OpenAI-compatible LLM gateway in one file: `POST /v1/chat/completions` (streamed or not)
//! and `GET /v1/breakers`, with one breaker and one quota per model, a fallback chain per
//! request (`"fallbacks": [..]` in the body, or every other model), recovery of streams that
//! fail after their first token, and errors as OpenAI-style bodies.
//!
//! ```text
//! cargo run --all-features --example llm_gateway
//! ```
//!
//! It starts the crate's chaos mock upstream (`tests/support/upstream.rs`): its first stream
//! is cut after four events, and its third answer is a 503. A request with `x-recover:
//! restart` (and every non-streamed one) gets a whole answer, read before it is sent and
//! restarted on the next model if the stream fails; other streams go out as they come.

#[path = "../tests/support/upstream.rs"]
mod upstream;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, routing};
use bytes::Bytes;
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use serde_json::{Value, json};
use std::{future::Future, pin::Pin, sync::Arc, time::Duration};
use tower::{BoxError, Layer, ServiceBuilder, ServiceExt, util::BoxCloneSyncService};
use tower_breaker::chaos::{Fault, FaultPlan};
use tower_breaker::circuit_breaker::CircuitBreaker;
use tower_breaker::failover::{AllProvidersFailed, Failover, HttpRequests};
use tower_breaker::quota::{Quota, QuotaLayer};
use tower_breaker::stream::StreamGuardLayer;
use tower_breaker::stream::recover::{AnswerIncomplete, DeadlineExceeded, Recover};
use tower_breaker::stream::recover::{RecoverLayer, RecoveredBody, RecoveryMode, RecoveryReport};

type Req = http::Request<Bytes>;
type Answer = http::Response<UnsyncBoxBody<Bytes, BoxError>>;
type Model = BoxCloneSyncService<Req, Answer, BoxError>;
type Models = Recover<Failover<Model, Req, Answer, HttpRequests>>;
type Recovered = Result<http::Response<RecoveredBody<UnsyncBoxBody<Bytes, BoxError>>>, BoxError>;
const MODELS: [&str; 3] = ["gpt-4o", "gpt-4o-mini", "local-llama"];

/// The models to try for one request, in order.
#[derive(Clone)]
struct Chain(Vec<Arc<str>>);

#[derive(Clone)]
struct Gateway {
    upstream: String,
    breakers: Vec<CircuitBreaker>,
    restart: Models,
    stream: Models,
}

/// One model: its breaker, its quota (paced by the provider's rate-limit headers), a stream
/// guard (first token within 5 s, then at most 5 s between tokens), then the HTTP call.
fn model(name: &'static str, quota: &Quota<String>) -> Result<(CircuitBreaker, Model), BoxError> {
    let breaker = CircuitBreaker::builder(name).build()?;
    let guard = StreamGuardLayer::builder()
        .first_token_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
        .build()?;
    let service = ServiceBuilder::new()
        .map_response(|r: http::Response<_>| r.map(BodyExt::boxed_unsync))
        .layer(breaker.http_layer())
        .layer(QuotaLayer::new(quota.clone(), move |_: &Req| name.to_string()).http_headers())
        .layer(guard)
        .map_response(http::Response::<reqwest::Body>::from)
        .map_request(|req: Req| reqwest::Request::try_from(req).expect("an absolute URL"))
        .service(reqwest::Client::new());
    Ok((breaker, BoxCloneSyncService::new(service)))
}

fn gateway(upstream: String) -> Result<Gateway, BoxError> {
    let quota = Quota::builder("models").requests_per_window(600).build()?;
    let (mut models, mut breakers) = (Failover::builder().http(), Vec::new());
    for name in MODELS {
        let (breaker, service) = model(name, &quota)?;
        // Each model gets the request with its own name.
        let named = move |req: Req| {
            let mut body: Value = serde_json::from_slice(req.body()).unwrap_or_default();
            body["model"] = json!(name);
            req.map(|_| Bytes::from(body.to_string()))
        };
        models = models.provider_with_adapter(name, Some(breaker.clone()), service, named);
        breakers.push(breaker);
    }
    let models = models
        .providers_for(|req: &Req| req.extensions().get::<Chain>().map(|c| c.0.clone()))
        .fail_over_when(|r: &Result<Answer, _>| {
            r.as_ref().map_or(true, |r| r.status().as_u16() >= 429)
        })
        .build();
    let recover = |mode| {
        RecoverLayer::builder()
            .mode(mode)
            .deadline(Duration::from_secs(60))
            .build()
    };
    let (restart, stream) = (
        recover(RecoveryMode::Restart)?,
        recover(RecoveryMode::Error)?,
    );
    Ok(Gateway {
        upstream,
        breakers,
        restart: restart.layer(models.clone()),
        stream: stream.layer(models),
    })
}

async fn chat(State(gw): State<Gateway>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(mut body) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "the body is not JSON",
        );
    };
    let model: Arc<str> = body["model"].as_str().unwrap_or(MODELS[0]).into();
    let fallbacks: Vec<Arc<str>> = match body.as_object_mut().and_then(|b| b.remove("fallbacks")) {
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(|n| n.as_str().map(Arc::from))
            .collect(),
        _ => MODELS
            .iter()
            .filter(|&&m| m != &*model)
            .map(|&m| Arc::from(m))
            .collect(),
    };
    let restart =
        body["stream"] != json!(true) || headers.get("x-recover").is_some_and(|v| v == "restart");
    let mut req =
        http::Request::post(gw.upstream.as_str()).header("content-type", "application/json");
    req.extensions_mut()
        .map(|e| e.insert(Chain([vec![model], fallbacks].concat())));
    let Ok(req) = req.body(Bytes::from(body.to_string())) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "bad upstream URL",
        );
    };
    match send(if restart { gw.restart } else { gw.stream }, req).await {
        Err(e) => from_error(&e),
        Ok(answer) => {
            let (mut parts, body) = answer.into_parts();
            // Hop-by-hop: this connection frames the body its own way.
            for name in ["transfer-encoding", "connection", "content-length"] {
                parts.headers.remove(name);
            }
            if let Some(report) = parts.extensions.get::<RecoveryReport>().cloned() {
                let provider = report.provider.as_deref().unwrap_or("?").parse();
                parts
                    .headers
                    .insert("x-provider", provider.expect("a model name"));
                parts
                    .headers
                    .insert("x-attempts", report.attempts.len().into());
            }
            Response::from_parts(parts, axum::body::Body::new(body))
        }
    }
}

/// The call, proved `Send` here: rustc cannot prove it inside the handler's `async fn` for
/// this generic future (rust-lang/rust#110338).
fn send(models: Models, req: Req) -> Pin<Box<dyn Future<Output = Recovered> + Send>> {
    Box::pin(models.oneshot(req))
}

/// An OpenAI-style error body.
fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": kind, "code": null}})),
    )
        .into_response()
}

fn from_error(e: &BoxError) -> Response {
    let (status, kind) = if e.is::<AllProvidersFailed>() {
        (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
    } else if e.is::<DeadlineExceeded>() {
        (StatusCode::GATEWAY_TIMEOUT, "timeout")
    } else if e.is::<AnswerIncomplete>() {
        (StatusCode::BAD_GATEWAY, "upstream_error")
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "api_error")
    };
    error(status, kind, &e.to_string())
}

async fn breakers(State(gw): State<Gateway>) -> Json<Value> {
    let list = gw.breakers.iter().map(|b| {
        let m = b.metrics();
        json!({"model": b.name(), "state": b.state().to_string(), "failed": m.failed_calls, "succeeded": m.successful_calls})
    });
    Json(json!({"data": list.collect::<Vec<_>>()}))
}

/// Sends one request to the gateway: the answer's model, attempts and text.
async fn ask(url: &str, body: Value, restart: bool) -> Result<[String; 3], BoxError> {
    let req = reqwest::Client::new().post(url).json(&body);
    let res = req
        .header("x-recover", if restart { "restart" } else { "no" })
        .send()
        .await?;
    let header = |name| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("?").to_string())
    };
    let [model, attempts] =
        ["x-provider", "x-attempts"].map(|name| header(name).unwrap_or_default());
    assert!(res.status().is_success(), "{}", res.status());
    Ok([model, attempts, res.text().await?])
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let plan = FaultPlan::new().then(Fault::cut_after(4)).then_healthy(1);
    let plan = plan.then(Fault::service_unavailable());
    let mock = upstream::Upstream::builder().chunks(8).plan(plan);
    let mock = mock.chunk_interval(Duration::from_millis(5)).start().await;
    let app = axum::Router::new()
        .route("/v1/chat/completions", routing::post(chat))
        .route("/v1/breakers", routing::get(breakers))
        .with_state(gateway(mock.chat_url())?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let url = format!("{base}/chat/completions");
    let streamed = json!({"model": "gpt-4o", "stream": true, "fallbacks": ["gpt-4o-mini"]});
    let whole = json!({"model": "gpt-4o", "messages": []});
    let asks = [
        (
            "1. a stream cut after 3 tokens, restarted",
            streamed.clone(),
            true,
            "gpt-4o-mini 2",
        ),
        ("2. a 503, failed over", whole, false, "gpt-4o-mini 2"),
        ("3. a healthy stream, streamed", streamed, false, "gpt-4o 1"),
    ];
    for (what, body, restart, expected) in asks {
        let [model, attempts, text] = ask(&url, body, restart).await?;
        println!("{what}: answered by {model} after {attempts} attempts");
        assert_eq!(format!("{model} {attempts}"), expected);
        assert!(text.contains(r#""finish_reason":"stop""#), "{text}");
    }
    let breakers = reqwest::get(format!("{base}/breakers"))
        .await?
        .text()
        .await?;
    println!("4. GET /v1/breakers: {breakers}");
    Ok(())
}
