//! End to end: the mock upstream on 127.0.0.1 (`support::upstream`, scripted by fault plans),
//! a real hyper-util client, and the stack `RetryLayer` + our breaker + `tower::timeout`.

use crate::harness::call;
use crate::support::upstream::Upstream;
use crate::support::{ms, secs};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, ServiceBuilder};
use tower_breaker::Outcome;
use tower_breaker::backoff::Backoff;
use tower_breaker::chaos::{ChaosLayer, Fault, FaultPlan};
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
use tower_breaker::retry::{IdempotencyKeyLayer, RetryPolicy};

/// The shared mock upstream, failing its first `failures` requests with 503 (every request,
/// for `usize::MAX`), then answering.
pub async fn failing(failures: usize) -> Upstream {
    if failures == usize::MAX {
        let down = ChaosLayer::http("down")
            .inject(Fault::service_unavailable(), 1.0)
            .build()
            .unwrap();
        return Upstream::with_chaos(down).await;
    }
    Upstream::with_plan(FaultPlan::new().then_times(failures, Fault::service_unavailable())).await
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
    let server = failing(2).await;
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
    assert!(body.starts_with(br#"{"data":"#), "the model list");
    assert_eq!(server.hits(), 3);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test]
async fn a_post_gets_one_key_for_all_its_attempts_over_the_wire() {
    let server = failing(2).await;
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
    let keys: Vec<_> = server
        .received()
        .iter()
        .map(|r| r.headers.get("idempotency-key").cloned())
        .collect();
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
        let server = failing(2).await;
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
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains(r#""object":"list""#)
        );
        assert_eq!(server.hits(), 3);
    }

    #[tokio::test]
    async fn a_streamed_body_is_sent_once_never_dropped() {
        let server = failing(usize::MAX).await;
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
