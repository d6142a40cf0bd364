//! Test servers on 127.0.0.1 and a hyper-util client.

use bytes::Bytes;
use futures_util::Stream;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// A hyper (HTTP/1.1) server that counts the requests it receives.
pub struct Server {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests that reached the server.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `handler` on an ephemeral port of 127.0.0.1.
pub async fn serve<H, Fut>(handler: H) -> Server
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let answer = handler(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server { addr, hits, task }
}

/// A response with `status`, `headers` and a short body.
pub fn status(code: u16, headers: &[(&'static str, &'static str)]) -> Response<Body> {
    let mut builder = Response::builder().status(code);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(
            Full::new(Bytes::from(format!("status {code}")))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

/// A `text/event-stream` response streaming `frames`.
pub fn sse<S>(frames: S) -> Response<Body>
where
    S: Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync + 'static,
{
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .unwrap()
}

pub fn event(n: usize) -> Result<Frame<Bytes>, std::io::Error> {
    Ok(Frame::data(Bytes::from(format!("data: {n}\n\n"))))
}

/// A raw TCP server for one connection: answers the first request with an SSE head and
/// `events` events, waits for the returned signal, then resets the connection (RST, not FIN).
pub async fn sse_then_reset(events: usize) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reset, signal) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed before sending its request");
            head.extend_from_slice(&buf[..n]);
        }
        let mut out = String::from(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        for n in 1..=events {
            let chunk = format!("data: {n}\n\n");
            out.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
        }
        stream.write_all(out.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        let _ = signal.await;
        stream.set_zero_linger().unwrap();
        drop(stream);
    });
    (addr, reset)
}

pub type HyperClient = Client<HttpConnector, Full<Bytes>>;

/// A hyper-util client (no pool timers, so paused tokio time does not disturb it).
pub fn hyper_client() -> HyperClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

/// What a breaker reported: its transitions and recorded outcomes, in order.
#[derive(Clone, Default)]
pub struct Log(Arc<std::sync::Mutex<Vec<tower_breaker::circuit_breaker::CircuitBreakerEvent>>>);

impl Log {
    pub fn listener(
        &self,
    ) -> impl Fn(&tower_breaker::circuit_breaker::CircuitBreakerEvent) + Send + Sync + 'static {
        let events = self.0.clone();
        move |event| events.lock().unwrap().push(event.clone())
    }

    pub fn outcomes(&self) -> Vec<tower_breaker::Outcome> {
        use tower_breaker::circuit_breaker::CircuitBreakerEvent;
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                CircuitBreakerEvent::CallRecorded { outcome, .. } => Some(*outcome),
                _ => None,
            })
            .collect()
    }

    pub fn states(&self) -> Vec<tower_breaker::circuit_breaker::CircuitState> {
        use tower_breaker::circuit_breaker::CircuitBreakerEvent;
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                CircuitBreakerEvent::StateTransition { to, .. } => Some(*to),
                _ => None,
            })
            .collect()
    }
}
