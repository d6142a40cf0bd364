//! End to end: a real hyper server on 127.0.0.1, a real hyper-util client, and the stack
//! `RetryLayer` + our breaker + `tower::timeout`.

use crate::harness::call;
use crate::support::{ms, secs};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tower::{BoxError, ServiceBuilder};
use tower_breaker::Outcome;
use tower_breaker::backoff::Backoff;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
use tower_breaker::retry::{IdempotencyKeyLayer, RetryPolicy};

/// A local HTTP/1 server: request `n` is answered by `respond(n, headers)`. Stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start<F>(respond: F) -> Server
    where
        F: Fn(usize, &HeaderMap) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                let respond = respond.clone();
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let response = respond(n, req.headers());
                    async move { Ok::<_, Infallible>(response) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Server { addr, hits, task }
    }

    /// A server that answers 503 to the first `failures` requests, then 200 "ok".
    pub async fn failing(failures: usize) -> Server {
        Server::start(move |n, _| {
            let status = if n < failures { 503 } else { 200 };
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(if n < failures {
                    "busy"
                } else {
                    "ok"
                })))
                .unwrap()
        })
        .await
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type HyperClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn hyper_client() -> HyperClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The breaker's classifier for this stack: 5xx and errors are failures.
pub fn server_errors(result: &Result<Response<Incoming>, BoxError>) -> Outcome {
    match result {
        Ok(response) if response.status().is_server_error() => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

pub fn get(url: String) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test]
async fn a_server_that_fails_twice_then_answers_sees_three_requests() {
    let server = Server::failing(2).await;
    let breaker = CircuitBreaker::builder("e2e")
        .sliding_window(SlidingWindow::consecutive(5))
        .build()
        .unwrap();
    let policy = RetryPolicy::builder()
        .http()
        .max_attempts(3)
        .backoff(Backoff::exponential(ms(10), ms(100)).full_jitter())
        .seed(1)
        .deadline(secs(10))
        .build()
        .unwrap();
    let mut client = ServiceBuilder::new()
        .retry(policy)
        .layer(breaker.layer().classify(server_errors))
        .timeout(secs(5))
        .service(hyper_client());

    let response = call(&mut client, get(server.url("/v1/models")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");
    assert_eq!(server.hits(), 3);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test]
async fn a_post_gets_one_key_for_all_its_attempts_over_the_wire() {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let seen = keys.clone();
    let server = Server::start(move |n, headers| {
        seen.lock()
            .unwrap()
            .push(headers.get("idempotency-key").cloned());
        let status = if n < 2 { 503 } else { 200 };
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::new()))
            .unwrap()
    })
    .await;
    let policy = RetryPolicy::builder()
        .http()
        .backoff(Backoff::constant(ms(5)))
        .build()
        .unwrap();
    let post = || {
        Request::post(server.url("/v1/chat/completions"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };

    // Without a key: sent once.
    let mut bare = ServiceBuilder::new()
        .retry(policy.clone())
        .timeout(secs(5))
        .service(hyper_client());
    let response = call(&mut bare, post()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.hits(), 1);

    // With the key layer outside the retry: retried, one key for every attempt.
    let mut keyed = ServiceBuilder::new()
        .layer(IdempotencyKeyLayer::new())
        .retry(policy)
        .timeout(secs(5))
        .service(hyper_client());
    let response = call(&mut keyed, post()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.hits(), 3);
    let keys = keys.lock().unwrap();
    assert_eq!(keys[0], None);
    assert!(keys[1].is_some());
    assert_eq!(keys[1], keys[2]);
}

#[cfg(feature = "reqwest")]
mod with_reqwest {
    use super::*;
    use tower_breaker::retry::ReqwestRequests;

    #[tokio::test]
    async fn reqwest_requests_are_copied_with_try_clone() {
        let server = Server::failing(2).await;
        let policy = RetryPolicy::builder()
            .reqwest()
            .backoff(Backoff::constant(ms(5)))
            .build()
            .unwrap();
        let mut client = ServiceBuilder::new()
            .retry(policy.clone())
            .service(reqwest::Client::new());
        let req = reqwest::Request::new(
            reqwest::Method::GET,
            server.url("/v1/models").parse().unwrap(),
        );
        let response = call(&mut client, req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "ok");
        assert_eq!(server.hits(), 3);
    }

    #[tokio::test]
    async fn a_streamed_body_is_sent_once_never_dropped() {
        let server = Server::failing(usize::MAX).await;
        let policy = RetryPolicy::builder()
            .reqwest()
            .backoff(Backoff::constant(ms(5)))
            .build()
            .unwrap();
        let mut client = ServiceBuilder::new()
            .retry(policy)
            .service(reqwest::Client::new());
        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from("{}"))]);
        let mut req = reqwest::Request::new(
            reqwest::Method::POST,
            server.url("/v1/chat/completions").parse().unwrap(),
        );
        req.headers_mut()
            .insert("idempotency-key", "k".parse().unwrap());
        *req.body_mut() = Some(reqwest::Body::wrap_stream(chunks));
        assert!(
            <ReqwestRequests as tower_breaker::retry::Protocol<_, reqwest::Response, ()>>::clone_request(
                &ReqwestRequests,
                &req
            )
            .is_none()
        );
        let response = call(&mut client, req).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(server.hits(), 1);
    }
}
