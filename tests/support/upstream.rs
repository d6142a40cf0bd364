//! A mock LLM upstream on 127.0.0.1 for tests and examples: OpenAI-compatible `GET /v1/models`
//! and `POST /v1/chat/completions` (JSON, or SSE `data: {chunk}` ... `data: [DONE]` when the body
//! says `"stream": true`) and Anthropic-style `POST /v1/messages` (JSON, or SSE ending with
//! `event: message_stop`), with a [`ChaosLayer`] in front of the healthy app.
//!
//! Usage (tests: `mod support;` then `support::upstream`; examples:
//! `#[path = "../tests/support/upstream.rs"] mod upstream;`):
//!
//! ```ignore
//! use tower_breaker::chaos::{Fault, FaultPlan};
//! let upstream = Upstream::with_plan(
//!     FaultPlan::new()
//!         .then_times(2, Fault::service_unavailable())              // 503, 503
//!         .then(Fault::rate_limited(Some(Duration::from_secs(2))))  // 429, Retry-After: 2
//!         .then(Fault::overloaded()),                               // 529, then healthy
//! ).await;
//! reqwest::Client::new().post(upstream.chat_url()).body(r#"{"stream":true}"#).send().await?;
//! upstream.hits();      // requests received (faulted or not)
//! upstream.answered();  // requests the healthy app answered (not replaced by a fault)
//! upstream.received();  // each request: arrival time, method, URI, headers, body
//! upstream.base_url();  // "http://127.0.0.1:PORT/v1", for SDKs (async-openai's api_base)
//! ```
//!
//! Any layer: `Upstream::with_chaos(ChaosLayer::http("name").inject(..).build()?)`; options:
//! `Upstream::builder().chunks(6).chunk_interval(ms(2)).plan(..).start().await`.
//! A [`Fault::error`](tower_breaker::chaos::Fault::error) closes the connection without an
//! answer (the client sees a transport error); a stream cut with `reset` aborts the body
//! (give the upstream a `chunk_interval` so the head is flushed before the reset; otherwise
//! the client may see a send error instead of a body error).
//! The server stops when the `Upstream` is dropped. Keep this API additive: other test
//! binaries and examples use it.
#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;
use tower_breaker::chaos::{ChaosLayer, FaultPlan};

/// What the healthy app answers.
#[derive(Debug, Clone)]
pub struct Options {
    /// Content chunks in a streamed answer (before the final chunk and `[DONE]`).
    pub chunks: usize,
    /// The pause before each streamed chunk.
    pub chunk_interval: Duration,
    /// The pause before a healthy answer's head.
    pub latency: Duration,
    /// The assistant's whole answer. A streamed answer splits it into `chunks` pieces whose
    /// concatenation is this text.
    pub reply: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            chunks: 5,
            chunk_interval: Duration::ZERO,
            latency: Duration::ZERO,
            reply: "Hello from the mock upstream.".to_string(),
        }
    }
}

/// A request as the upstream received it (before any fault).
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived (tokio time, so paused time works).
    pub at: tokio::time::Instant,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    /// The request body (lossy UTF-8).
    pub body: String,
}

/// Builds an [`Upstream`].
#[derive(Debug, Clone, Default)]
pub struct UpstreamBuilder {
    options: Options,
    plan: Option<FaultPlan>,
    chaos: Option<ChaosLayer<axum::http::request::Parts>>,
}

impl UpstreamBuilder {
    pub fn chunks(mut self, chunks: usize) -> Self {
        self.options.chunks = chunks;
        self
    }

    pub fn chunk_interval(mut self, interval: Duration) -> Self {
        self.options.chunk_interval = interval;
        self
    }

    pub fn latency(mut self, latency: Duration) -> Self {
        self.options.latency = latency;
        self
    }

    pub fn reply(mut self, reply: impl Into<String>) -> Self {
        self.options.reply = reply.into();
        self
    }

    /// Faults from a script (then healthy). Ignored when [`chaos`](Self::chaos) is given.
    pub fn plan(mut self, plan: FaultPlan) -> Self {
        self.plan = Some(plan);
        self
    }

    /// Any HTTP chaos layer in front of the healthy app.
    pub fn chaos(mut self, layer: ChaosLayer<axum::http::request::Parts>) -> Self {
        self.chaos = Some(layer);
        self
    }

    pub async fn start(self) -> Upstream {
        let chaos = match (self.chaos, self.plan) {
            (Some(layer), _) => layer,
            (None, plan) => ChaosLayer::http("upstream")
                .seed(0)
                .plan(plan.unwrap_or_default())
                .build()
                .expect("a valid fault plan"),
        };
        Upstream::serve(self.options, chaos).await
    }
}

/// The running server. Dropping it stops the server.
pub struct Upstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .field("hits", &self.hits())
            .finish()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub fn builder() -> UpstreamBuilder {
        UpstreamBuilder::default()
    }

    /// A healthy upstream.
    pub async fn start() -> Upstream {
        Self::builder().start().await
    }

    /// The plan's faults, request by request, then healthy.
    pub async fn with_plan(plan: FaultPlan) -> Upstream {
        Self::builder().plan(plan).start().await
    }

    /// `layer` in front of the healthy app.
    pub async fn with_chaos(layer: ChaosLayer<axum::http::request::Parts>) -> Upstream {
        Self::builder().chaos(layer).start().await
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`: the base URL for SDKs.
    pub fn base_url(&self) -> String {
        self.url("/v1")
    }

    /// The OpenAI-compatible chat completions endpoint.
    pub fn chat_url(&self) -> String {
        self.url("/v1/chat/completions")
    }

    /// The Anthropic-style messages endpoint.
    pub fn messages_url(&self) -> String {
        self.url("/v1/messages")
    }

    /// Requests received, faulted or not.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Requests the healthy app answered (a fault did not replace the answer).
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    /// Every request received, in the order their bodies were read.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    async fn serve(options: Options, chaos: ChaosLayer<axum::http::request::Parts>) -> Upstream {
        let answered = Arc::new(AtomicUsize::new(0));
        let app = tower::ServiceBuilder::new()
            .layer(chaos)
            .service(app(options, answered.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (hits2, received2) = (hits.clone(), received.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // Stream events as they are written, not 40 ms later (Nagle + delayed ACK).
                let _ = stream.set_nodelay(true);
                let (app, hits, received) = (app.clone(), hits2.clone(), received2.clone());
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let at = tokio::time::Instant::now();
                        let (app, received) = (app.clone(), received.clone());
                        async move {
                            // The body is read whole, kept, and handed on.
                            let (parts, body) = req.into_parts();
                            let body = match body.collect().await {
                                Ok(body) => body.to_bytes(),
                                Err(e) => return Err(std::io::Error::other(e.to_string())),
                            };
                            received.lock().unwrap().push(Received {
                                at,
                                method: parts.method.clone(),
                                uri: parts.uri.clone(),
                                headers: parts.headers.clone(),
                                body: String::from_utf8_lossy(&body).into_owned(),
                            });
                            let req = Request::from_parts(parts, Body::from(body));
                            // An injected error becomes a service error: hyper closes the
                            // connection without an answer. (A concrete error type: a boxed one
                            // trips a rustc limitation on `Send` futures here.)
                            match app.oneshot(req).await {
                                Ok(response) => Ok(response.map(Body::new)),
                                Err(e) => Err(std::io::Error::other(e.to_string())),
                            }
                        }
                    });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            hits,
            answered,
            received,
            task,
        }
    }
}

/// The healthy app: OpenAI-compatible chat completions and Anthropic-style messages.
pub fn app(options: Options, answered: Arc<AtomicUsize>) -> Router {
    let options = Arc::new(options);
    let (o2, a2) = (options.clone(), answered.clone());
    Router::new()
        .route(
            "/v1/models",
            axum::routing::get(|| async {
                json(
                    serde_json::json!({"data": [{"id": "mock-model", "object": "model",
                    "owned_by": "tower-breaker"}], "object": "list"}),
                )
            }),
        )
        .route(
            "/v1/chat/completions",
            post(move |body: String| {
                let (options, answered) = (options.clone(), answered.clone());
                async move {
                    answered.fetch_add(1, Ordering::SeqCst);
                    chat(&options, &body).await
                }
            }),
        )
        .route(
            "/v1/messages",
            post(move |body: String| {
                let (options, answered) = (o2.clone(), a2.clone());
                async move {
                    answered.fetch_add(1, Ordering::SeqCst);
                    messages(&options, &body).await
                }
            }),
        )
}

/// `text` in `n` pieces of nearly equal length (in characters) whose concatenation is `text`.
pub fn pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    (0..n)
        .map(|i| {
            chars[i * chars.len() / n..(i + 1) * chars.len() / n]
                .iter()
                .collect()
        })
        .collect()
}

struct Asked {
    stream: bool,
    model: String,
    /// `"stream_options": {"include_usage": true}`: a usage chunk before `[DONE]`, as OpenAI.
    include_usage: bool,
}

fn asked(body: &str) -> Asked {
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    Asked {
        stream: json["stream"].as_bool().unwrap_or(false),
        model: json["model"].as_str().unwrap_or("mock-model").to_string(),
        include_usage: json["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false),
    }
}

/// An SSE response of `events`, each after `interval`.
fn sse(events: Vec<String>, interval: Duration) -> Response {
    let stream = futures_util::stream::unfold(events.into_iter(), move |mut events| async move {
        let event = events.next()?;
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        Some((Ok::<_, Infallible>(event), events))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn json(value: serde_json::Value) -> Response {
    ([("content-type", "application/json")], value.to_string()).into_response()
}

async fn chat(options: &Options, body: &str) -> Response {
    let asked = asked(body);
    if !options.latency.is_zero() {
        tokio::time::sleep(options.latency).await;
    }
    let id = "chatcmpl-mock";
    if !asked.stream {
        return json(serde_json::json!({
            "id": id,
            "object": "chat.completion",
            "created": 0,
            "model": asked.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": options.reply},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 1, "completion_tokens": options.chunks, "total_tokens": options.chunks + 1}
        }));
    }
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let chunk = serde_json::json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": asked.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        });
        format!("data: {chunk}\n\n")
    };
    let mut events = vec![chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        None,
    )];
    events.extend(
        pieces(&options.reply, options.chunks)
            .into_iter()
            .map(|piece| chunk(serde_json::json!({ "content": piece }), None)),
    );
    events.push(chunk(serde_json::json!({}), Some("stop")));
    if asked.include_usage {
        let usage = serde_json::json!({"id": id, "object": "chat.completion.chunk", "created": 0,
            "model": asked.model, "choices": [], "usage": {"prompt_tokens": 1,
            "completion_tokens": options.chunks, "total_tokens": options.chunks + 1}});
        events.push(format!("data: {usage}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    sse(events, options.chunk_interval)
}

async fn messages(options: &Options, body: &str) -> Response {
    let asked = asked(body);
    if !options.latency.is_zero() {
        tokio::time::sleep(options.latency).await;
    }
    if !asked.stream {
        return json(serde_json::json!({
            "id": "msg_mock",
            "type": "message",
            "role": "assistant",
            "model": asked.model,
            "content": [{"type": "text", "text": options.reply}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": options.chunks}
        }));
    }
    let event = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![
        event(
            "message_start",
            serde_json::json!({"type": "message_start", "message": {
                "id": "msg_mock", "type": "message", "role": "assistant", "model": asked.model,
                "content": [], "usage": {"input_tokens": 1, "output_tokens": 0}}}),
        ),
        event(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    events.extend(
        pieces(&options.reply, options.chunks)
            .into_iter()
            .map(|piece| {
                event(
                    "content_block_delta",
                    serde_json::json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": piece}}),
                )
            }),
    );
    events.push(event(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(event(
        "message_delta",
        serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": options.chunks}}),
    ));
    events.push(event(
        "message_stop",
        serde_json::json!({"type": "message_stop"}),
    ));
    sse(events, options.chunk_interval)
}
