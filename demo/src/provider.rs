//! A mock AI provider on 127.0.0.1: an OpenAI-style `POST /v1/chat/completions` answering JSON,
//! or an SSE stream (`data: {chunk}` ... `data: [DONE]`) when the body asks for `"stream":true`,
//! with an optional `ChaosLayer` in front. A plain hyper server, so the demo needs no web
//! framework (the crate's tests use the fuller `tests/support/upstream.rs`).

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceExt, service_fn};
use tower_breaker::chaos::ChaosLayer;

/// How long a healthy answer takes before its head: a small completion on loopback.
const LATENCY: Duration = Duration::from_millis(5);
/// The pause before each streamed event.
const EVENT_INTERVAL: Duration = Duration::from_millis(2);

type ProviderBody = UnsyncBoxBody<Bytes, BoxError>;
type App = BoxCloneSyncService<Request<Bytes>, Response<ProviderBody>, BoxError>;

/// A running provider; the server stops when it is dropped.
pub struct Provider {
    /// Where it listens.
    pub addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Provider {
    /// Starts a provider that answers `Hello from {name}`, behind `chaos` if given.
    pub async fn start(
        name: &str,
        chaos: Option<ChaosLayer<http::request::Parts>>,
    ) -> std::io::Result<Provider> {
        let reply = format!("Hello from {name}");
        let healthy = service_fn(move |req: Request<Bytes>| {
            let reply = reply.clone();
            async move {
                tokio::time::sleep(LATENCY).await;
                Ok::<_, Infallible>(answer(&reply, &req))
            }
        });
        let app: App = match chaos {
            Some(chaos) => BoxCloneSyncService::new(
                tower::Layer::layer(&chaos, healthy)
                    .map_response(|res| res.map(|body| body.boxed_unsync())),
            ),
            None => BoxCloneSyncService::new(
                healthy
                    .map_response(|res| res.map(|body| body.map_err(BoxError::from).boxed_unsync()))
                    .map_err(BoxError::from),
            ),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(listener, app, arrivals.clone()));
        Ok(Provider {
            addr,
            arrivals,
            task,
        })
    }

    /// When each request arrived, faulted or not.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

async fn serve(listener: tokio::net::TcpListener, app: App, arrivals: Arc<Mutex<Vec<Instant>>>) {
    while let Ok((stream, _)) = listener.accept().await {
        // Stream events as they are written, not 40 ms later (Nagle + delayed ACK).
        let _ = stream.set_nodelay(true);
        let (app, arrivals) = (app.clone(), arrivals.clone());
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            if let Ok(mut a) = arrivals.lock() {
                a.push(Instant::now());
            }
            let app = app.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(std::io::Error::other)?
                    .to_bytes();
                // An injected error becomes a service error: hyper closes the connection
                // without an answer, as a provider that resets it.
                app.oneshot(Request::from_parts(parts, body))
                    .await
                    .map_err(std::io::Error::other)
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The healthy answer: one JSON completion, or six SSE events ending with `[DONE]`.
fn answer(reply: &str, req: &Request<Bytes>) -> Response<Events> {
    let stream = String::from_utf8_lossy(req.body()).contains(r#""stream":true"#);
    let chunk = |delta: &str, finish: &str| {
        format!(
            r#"data: {{"id":"chatcmpl-demo","object":"chat.completion.chunk","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#
        ) + "\n\n"
    };
    let (content_type, events) = if stream {
        let mut events = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
        let words: Vec<&str> = reply.split_inclusive(' ').collect();
        for part in words.chunks(words.len().div_ceil(3).max(1)) {
            events.push(chunk(
                &format!(r#"{{"content":"{}"}}"#, part.concat()),
                "null",
            ));
        }
        events.push(chunk("{}", r#""stop""#));
        events.push("data: [DONE]\n\n".to_string());
        ("text/event-stream", events)
    } else {
        let json = format!(
            r#"{{"id":"chatcmpl-demo","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"{reply}"}},"finish_reason":"stop"}}]}}"#
        );
        ("application/json", vec![json])
    };
    let mut response = Response::new(Events {
        events: events.into_iter().map(Bytes::from).collect(),
        interval: if stream {
            EVENT_INTERVAL
        } else {
            Duration::ZERO
        },
        pause: None,
    });
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// A body that waits `interval` before each event.
pub struct Events {
    events: VecDeque<Bytes>,
    interval: Duration,
    pause: Option<Pin<Box<Sleep>>>,
}

impl Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.events.is_empty() {
            return Poll::Ready(None);
        }
        if !self.interval.is_zero() {
            let interval = self.interval;
            let pause = self
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
            ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        Poll::Ready(self.events.pop_front().map(|event| Ok(Frame::data(event))))
    }

    fn is_end_stream(&self) -> bool {
        self.events.is_empty()
    }
}
