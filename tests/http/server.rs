//! A raw TCP server that resets its connection, a hyper-util client, and a breaker event log.
//! HTTP upstreams are the shared mock upstream (`support::upstream`), scripted by fault plans.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

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

/// A streamed chat completion request.
pub fn post_stream(url: &str) -> Request<Full<Bytes>> {
    Request::post(url)
        .body(Full::new(Bytes::from_static(
            br#"{"model":"m","stream":true}"#,
        )))
        .unwrap()
}

/// The upstream's last SSE event.
pub const DONE: &str = "data: [DONE]\n\n";

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
