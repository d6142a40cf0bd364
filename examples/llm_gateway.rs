//! An OpenAI-compatible LLM gateway: `POST /v1/chat/completions` (streamed or not) and `GET
//! /v1/breakers`; a breaker and a quota per model, a fallback chain per request (`"fallbacks"`
//! in the body, or every other model), recovery, and OpenAI-style errors. A request with
//! `x-recover: restart` (and every non-streamed one) gets a whole answer, restarted on the next
//! model if the stream fails; other streams go out as they come. `cargo run --all-features
//! --example llm_gateway` runs it against the crate's chaos mock upstream.

#[path = "../tests/support/upstream.rs"]
mod upstream;

use axum::response::{IntoResponse, Response};
use axum::{Json, extract::State, http::HeaderMap, http::StatusCode, routing};
use bytes::Bytes;
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use serde_json::{Value, json};
use std::{future::Future, pin::Pin, sync::Arc, time::Duration};
use tower::{BoxError, Layer, ServiceBuilder, ServiceExt, util::BoxCloneSyncService};
use tower_breaker::chaos::{Fault, FaultPlan};
use tower_breaker::failover::{AllProvidersFailed, Failover, HttpRequests};
use tower_breaker::stream::{StreamGuardLayer, recover::*};
use tower_breaker::{circuit_breaker::CircuitBreaker, quota::Quota, quota::QuotaLayer};

type Req = http::Request<Bytes>;
type Answer = http::Response<UnsyncBoxBody<Bytes, BoxError>>;
type Model = BoxCloneSyncService<Req, Answer, BoxError>;
type Models = Recover<Failover<Model, Req, Answer, HttpRequests>>;
type Recovered = Result<http::Response<RecoveredBody<UnsyncBoxBody<Bytes, BoxError>>>, BoxError>;
const MODELS: [&str; 3] = ["gpt-4o", "gpt-4o-mini", "local-llama"];

/// The models to try for one request, in order.
#[derive(Clone)]
struct Chain(Vec<Arc<str>>);

/// The upstream URL, each model's breaker, and the models in restart and in error mode.
#[derive(Clone)]
struct Gateway(String, Vec<CircuitBreaker>, Models, Models);

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
    // An error, a 429 or a 5xx moves on to the next model.
    let models = models
        .providers_for(|req: &Req| req.extensions().get::<Chain>().map(|c| c.0.clone()))
        .fail_over_when(|r: &Result<Answer, _>| !matches!(r, Ok(r) if r.status().as_u16() < 429))
        .build();
    // One deadline over every model and restart.
    let recover = RecoverLayer::builder().deadline(Duration::from_secs(60));
    let restart = recover.clone().mode(RecoveryMode::Restart).build()?;
    let stream = recover.mode(RecoveryMode::Error).build()?;
    let (restart, stream) = (restart.layer(models.clone()), stream.layer(models));
    Ok(Gateway(upstream, breakers, restart, stream))
}

/// The models for a request: its own, then its `"fallbacks"` (or every other model).
fn chain(body: &mut Value) -> Chain {
    let model = body["model"].as_str().unwrap_or(MODELS[0]).to_string();
    let named = body.as_object_mut().and_then(|b| b.remove("fallbacks"));
    let others = MODELS.iter().filter(|&&m| m != model).map(|m| json!(m));
    let fallbacks = named.and_then(|f| f.as_array().cloned());
    let mut names = vec![json!(model)];
    names.extend(fallbacks.unwrap_or(others.collect()));
    let names = names.iter().filter_map(Value::as_str);
    Chain(names.map(Arc::from).collect())
}

async fn chat(State(gw): State<Gateway>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(mut body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "invalid_request_error", "not JSON");
    };
    let x_recover = headers.get("x-recover");
    let whole = body["stream"] != json!(true) || x_recover.is_some_and(|v| v == "restart");
    let req = http::Request::post(gw.0).header("content-type", "application/json");
    let req = req.extension(chain(&mut body));
    let Ok(req) = req.body(Bytes::from(body.to_string())) else {
        return error(502, "api_error", "bad upstream URL");
    };
    match send(if whole { gw.2 } else { gw.3 }, req).await {
        Err(e) => from_error(&e),
        Ok(answer) => {
            let (mut parts, body) = answer.into_parts();
            // Hop-by-hop: this connection frames the body its own way.
            parts.headers.remove("transfer-encoding");
            if let Some(report) = parts.extensions.get::<RecoveryReport>().cloned() {
                let (headers, model) = (&mut parts.headers, report.provider.unwrap_or_default());
                headers.insert("x-attempts", report.attempts.len().into());
                let model = model.parse().ok();
                model.map(|model| headers.insert("x-provider", model));
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
fn error(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "code": null}});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

fn from_error(e: &BoxError) -> Response {
    let (status, kind) = match () {
        () if e.is::<AllProvidersFailed>() => (503, "service_unavailable"),
        () if e.is::<DeadlineExceeded>() => (504, "timeout"),
        () if e.is::<AnswerIncomplete>() => (502, "upstream_error"),
        () => (500, "api_error"),
    };
    error(status, kind, &e.to_string())
}

async fn breakers(State(Gateway(_, breakers, ..)): State<Gateway>) -> Json<Value> {
    let list = breakers.iter().map(|b| {
        let m = b.metrics();
        json!({"model": b.name(), "state": b.state().to_string(), "failed": m.failed_calls, "succeeded": m.successful_calls})
    });
    Json(json!({"data": list.collect::<Vec<_>>()}))
}

/// Sends one request to the gateway: the answer's model, attempts and text.
async fn ask(url: &str, body: &Value, restart: bool) -> Result<[String; 3], BoxError> {
    let req = reqwest::Client::new().post(url).json(body);
    let recover = if restart { "restart" } else { "error" };
    let res = req.header("x-recover", recover).send().await?;
    assert!(res.status().is_success(), "{}", res.status());
    let header = |name| res.headers().get(name).and_then(|v| v.to_str().ok());
    let [model, attempts] = ["x-provider", "x-attempts"].map(|n| header(n).unwrap_or("-").into());
    Ok([model, attempts, res.text().await?])
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The upstream: its first stream is cut after 4 events, its third answer is a 503.
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
        ("1. cut, restarted", &streamed, true, "gpt-4o-mini 2"),
        ("2. a 503, failed over", &whole, false, "gpt-4o-mini 2"),
        ("3. healthy, streamed", &streamed, false, "gpt-4o 1"),
    ];
    for (what, body, restart, expected) in asks {
        let [model, attempts, text] = ask(&url, body, restart).await?;
        println!("{what}: answered by {model} after {attempts} attempts");
        assert_eq!(format!("{model} {attempts}"), expected);
        assert!(text.contains(r#""finish_reason":"stop""#), "{text}");
    }
    let breakers = reqwest::get(format!("{base}/breakers")).await?;
    let breakers = breakers.text().await?;
    println!("4. GET /v1/breakers: {breakers}");
    Ok(())
}
