//! What both servers' tests share: where the servers are, the README's stack with probes to
//! check it by, and the reading of a streamed answer.

use std::error::Error as StdError;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_breaker::BoxError;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitBreakerEvent, CircuitState};
use tower_breaker::fallback::{
    FallbackLayer, FallbackServed, MarkExtension, OnFailure, service_unavailable,
};
use tower_breaker::retry::{RetryEvent, RetryOnStatus};
use tower_breaker::stack::StandardResilience;
use tower_breaker::stream::{FirstTokenTimeout, SseRules, StreamGuardLayer};
use tower_breaker::{ConfigError, Outcome};

/// Set to `1` (by `.ci/thirdparty`) to make a missing server a failure instead of a skip.
pub const REQUIRE: &str = "TOWER_BREAKER_REQUIRE_THIRDPARTY";

/// The server's base URL from `var`, or `None` after printing why the test is skipped.
///
/// The line goes to the process's stderr directly: libtest captures `eprintln!` of a passing
/// test, not a write to the stream itself, so a skip is seen in the normal output.
pub fn server_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_string()),
        _ => {
            assert!(
                std::env::var(REQUIRE).as_deref() != Ok("1"),
                "{test}: {var} is not set and {REQUIRE}=1 (run .ci/thirdparty, which starts \
                 fakellm and llmock and sets it)"
            );
            // One write, so that the line is not interleaved with libtest's.
            let line = format!(
                "SKIPPED {test}: {var} is not set (.ci/thirdparty starts the server and sets it)\n"
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
            None
        }
    }
}

/// Events with the instant each arrived.
pub struct Log<E>(Arc<Mutex<Vec<(Instant, E)>>>);

impl<E> Clone for Log<E> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<E: Clone + Send + 'static> Log<E> {
    pub fn new() -> Self {
        Self(Arc::default())
    }

    pub fn listener(&self) -> impl Fn(&E) + Send + Sync + 'static {
        let sink = self.0.clone();
        move |event: &E| sink.lock().unwrap().push((Instant::now(), event.clone()))
    }

    pub fn all(&self) -> Vec<(Instant, E)> {
        self.0.lock().unwrap().clone()
    }
}

impl Log<CircuitBreakerEvent> {
    /// When the breaker first entered `state`.
    pub fn first_entered(&self, state: CircuitState) -> Option<Instant> {
        self.all().into_iter().find_map(|(at, e)| match e {
            CircuitBreakerEvent::StateTransition { to, .. } if to == state => Some(at),
            _ => None,
        })
    }

    /// How many times the breaker entered `state`.
    pub fn entered(&self, state: CircuitState) -> usize {
        self.all()
            .iter()
            .filter(|(_, e)| {
                matches!(e, CircuitBreakerEvent::StateTransition { to, .. } if *to == state)
            })
            .count()
    }

    /// The outcomes the breaker recorded, in order.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.all()
            .into_iter()
            .filter_map(|(_, e)| match e {
                CircuitBreakerEvent::CallRecorded { outcome, .. } => Some(outcome),
                _ => None,
            })
            .collect()
    }
}

/// One attempt that left the client: when, and how its call (not its body) ended.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub started: Instant,
    pub ended: Instant,
    /// The status of the response head, if one came.
    pub status: Option<u16>,
    /// The call's error, if it failed before a response.
    pub error: Option<String>,
    /// The call failed with the stream guard's `FirstTokenTimeout`.
    pub first_token_timeout: bool,
}

impl Attempt {
    /// No answer, or an answer the LLM rules count as a failure (5xx).
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.status.is_some_and(|s| s >= 500)
    }
}

/// Records every attempt that goes through it (the retry's included): the stack's innermost
/// layer, outside the stream guard so that the guard's errors are seen too.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    log: Arc<Mutex<Vec<Attempt>>>,
}

impl<S> Service<reqwest::Request> for Observe<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = reqwest::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: reqwest::Request) -> Self::Future {
        let started = Instant::now();
        let future = self.inner.call(req);
        let log = self.log.clone();
        Box::pin(async move {
            let result = future.await.map_err(Into::into);
            let attempt = Attempt {
                started,
                ended: Instant::now(),
                status: result.as_ref().ok().map(|r| r.status().as_u16()),
                error: result.as_ref().err().map(|e| chain(e.as_ref())),
                first_token_timeout: result
                    .as_ref()
                    .err()
                    .is_some_and(|e| find::<FirstTokenTimeout>(e.as_ref()).is_some()),
            };
            log.lock().unwrap().push(attempt);
            result
        })
    }
}

/// The guard's deadlines in these tests: the first token within 1 s of the call, then no gap
/// over 1 s between tokens. The scripted stalls last [`STALL`], so an error between the two
/// is the guard's, never the server's.
pub const FIRST_TOKEN: Duration = Duration::from_secs(1);
pub const IDLE: Duration = Duration::from_secs(1);
pub const STALL: Duration = Duration::from_secs(3);

/// A provider's service: requests in, responses (or our errors) out.
pub type Client = BoxCloneSyncService<reqwest::Request, reqwest::Response, BoxError>;

/// One provider behind the README's `.llm()` stack, with what the tests check it by.
pub struct Provider {
    /// The stack over `reqwest::Client`, without a fallback (for `Failover`).
    pub service: Client,
    pub breaker: CircuitBreaker,
    pub breaker_events: Log<CircuitBreakerEvent>,
    pub retry_events: Log<RetryEvent>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
}

/// How the provider's stream answers are guarded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// `.llm()` as it is: whatever the preset does with a stream.
    Preset,
    /// The README's streaming recipe inside the stack (`StreamGuardLayer` inside the breaker,
    /// OpenAI rules) with [`FIRST_TOKEN`] and [`IDLE`], so that a stall costs seconds. `.llm()`
    /// has no stream guard of its own yet (the `stream` branch adds one); once it has, with a
    /// setter for its deadlines, this becomes that setter and the added layer goes.
    Deadlines,
}

impl Provider {
    /// `StandardResilience::builder(name).llm()` over `reqwest::Client`.
    pub fn llm(name: &str, guard: Guard) -> Result<Self, ConfigError> {
        let (breaker_events, retry_events) = (Log::new(), Log::new());
        let resilience = StandardResilience::builder(name)
            .llm()
            .on_breaker_event(breaker_events.listener())
            .on_retry_event(retry_events.listener())
            .build()?;
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::new();
        let inner: Client = match guard {
            Guard::Preset => BoxCloneSyncService::new(Observe {
                inner: client,
                log: attempts.clone(),
            }),
            Guard::Deadlines => {
                let guard = StreamGuardLayer::builder()
                    .first_token_timeout(FIRST_TOKEN)
                    .idle_timeout(IDLE)
                    .rules(SseRules::openai())
                    .build()?;
                BoxCloneSyncService::new(Observe {
                    inner: guard.layer(client),
                    log: attempts.clone(),
                })
            }
        };
        Ok(Self {
            service: BoxCloneSyncService::new(resilience.layer(inner)),
            breaker: resilience.breaker().clone(),
            breaker_events,
            retry_events,
            attempts,
        })
    }

    /// The provider behind the README's fallback: every failure the fallback can answer is
    /// answered (a 503 with `Retry-After`, marked `FallbackServed`).
    pub fn with_fallback(&self) -> Client {
        BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(
                    FallbackLayer::from_fn(service_unavailable)
                        .on(OnFailure(RetryOnStatus::llm()))
                        .mark(MarkExtension),
                )
                .service(self.service.clone()),
        )
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }
}

/// Whether the fallback, not the provider, answered.
pub fn from_fallback(response: &reqwest::Response) -> bool {
    response.extensions().get::<FallbackServed>().is_some()
}

/// A chat completion request to `base`'s OpenAI-compatible endpoint.
pub fn chat(base: &str, model: &str, stream: bool, headers: &[(&str, &str)]) -> reqwest::Request {
    let body = serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello."}],
    });
    let mut request = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-thirdparty")
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.build().unwrap()
}

/// `service.oneshot(request)`.
pub async fn call(
    service: &Client,
    request: reqwest::Request,
) -> Result<reqwest::Response, BoxError> {
    service.clone().oneshot(request).await
}

/// A streamed answer as the caller read it.
#[derive(Debug)]
pub struct Streamed {
    /// The text of the `delta.content` of every chunk read, in order.
    pub text: String,
    /// Whether `data: [DONE]` was read.
    pub done: bool,
    /// How the body ended, if not cleanly.
    pub error: Option<reqwest::Error>,
    /// When the last chunk carrying text was read.
    pub last_token_at: Option<Instant>,
    /// When the body ended (cleanly or not).
    pub ended_at: Instant,
}

/// Reads `response`'s SSE body to its end.
pub async fn read_stream(mut response: reqwest::Response) -> Streamed {
    let (mut raw, mut last_token_at, mut error) = (Vec::new(), None, None);
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                let before = content_of(&raw).0.len();
                raw.extend_from_slice(&bytes);
                if content_of(&raw).0.len() > before {
                    last_token_at = Some(Instant::now());
                }
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let (text, done) = content_of(&raw);
    Streamed {
        text,
        done,
        error,
        last_token_at,
        ended_at: Instant::now(),
    }
}

/// The concatenated `choices[0].delta.content` of the complete `data:` events in `raw`, and
/// whether `[DONE]` was among them.
fn content_of(raw: &[u8]) -> (String, bool) {
    let raw = String::from_utf8_lossy(raw);
    let (mut text, mut done) = (String::new(), false);
    // Only complete events (ended by a blank line) count: a half-received one is not read.
    let complete = raw.rfind("\n\n").map_or("", |end| &raw[..end]);
    for line in complete.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let event: serde_json::Value = serde_json::from_str(data).unwrap();
        if let Some(piece) = event["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
    }
    (text, done)
}

/// `E` in `err` or its source chain (through `std::io::Error`'s inner error too, which is how
/// hyper and reqwest carry a body's error).
pub fn find<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| find::<E>(inner));
        if inner.is_some() {
            return inner;
        }
        next = err.source();
    }
    None
}

/// `err` and its sources, for messages.
pub fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}
