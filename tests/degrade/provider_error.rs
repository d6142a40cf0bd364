//! Errors by kind: the provider's error body decides, read within a bound.

use crate::provider::{Http, Provider, ask, ask_at, json, report};
use axum::body::Body as AxumBody;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};
use tower_breaker::provider_error::{
    DEFAULT_MAX_ERROR_BODY, ProviderError, ProviderErrorKind, ProviderErrorLayer,
};

/// An endless error body that counts the bytes it has given.
struct Endless {
    given: Arc<AtomicUsize>,
}

const CHUNK: usize = 1024;

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        self.given.fetch_add(CHUNK, Ordering::SeqCst);
        Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![
            b'x';
            CHUNK
        ])))))
    }
}

#[tokio::test]
async fn an_endless_error_body_is_read_no_further_than_the_bound() {
    let given = Arc::new(AtomicUsize::new(0));
    let counter = given.clone();
    let mut svc = ProviderErrorLayer::new().layer(service_fn(move |()| {
        let given = counter.clone();
        async move {
            let res = http::Response::builder()
                .status(500)
                .body(Endless { given })?;
            Ok::<_, BoxError>(res)
        }
    }));
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    let read = given.load(Ordering::SeqCst);
    assert!(read <= DEFAULT_MAX_ERROR_BODY + CHUNK, "read {read} bytes");
    assert!(read > DEFAULT_MAX_ERROR_BODY);
    assert!(res.extensions().get::<ProviderError>().is_none());
    // The caller reads the same bytes: those read, then the rest of the stream.
    let mut body = res.into_body();
    let mut seen = 0;
    while seen < 3 * DEFAULT_MAX_ERROR_BODY {
        let frame = body.frame().await.unwrap().unwrap();
        let data = frame.into_data().unwrap();
        assert!(data.iter().all(|&b| b == b'x'));
        seen += data.len();
    }

    // A body whose declared length is over the bound is not read at all.
    let given = Arc::new(AtomicUsize::new(0));
    let counter = given.clone();
    let mut svc = ProviderErrorLayer::new()
        .max_body(100)
        .unwrap()
        .layer(service_fn(move |()| {
            let given = counter.clone();
            async move {
                let res = http::Response::builder()
                    .status(400)
                    .header("content-length", "5000")
                    .body(Endless { given })?;
                Ok::<_, BoxError>(res)
            }
        }));
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(given.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn over_reqwest_the_body_is_rebuilt_with_the_same_bytes() {
    const TOO_LONG: &str = r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    let json_error = Provider::answering(400, TOO_LONG).await;
    let html = Provider::start(|_, _| {
        http::Response::builder()
            .status(502)
            .header("content-type", "text/html")
            .body(AxumBody::from("<html>bad gateway</html>"))
            .unwrap()
    })
    .await;
    // 1 MiB of error body, chunked (no Content-Length): read up to the bound, then passed on.
    let huge = Provider::start(|_, _| {
        let chunks = (0..1024).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 1024])));
        http::Response::builder()
            .status(500)
            .body(AxumBody::from_stream(futures_util::stream::iter(chunks)))
            .unwrap()
    })
    .await;
    let mut svc = ProviderErrorLayer::new().layer(reqwest::Client::new());

    let res = ask_at(&mut svc, &json_error.url()).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.url().as_str(), json_error.url());
    let error = res
        .extensions()
        .get::<ProviderError>()
        .cloned()
        .expect("parsed");
    assert_eq!(error.kind, ProviderErrorKind::ContextLength);
    assert_eq!(error.code.as_deref(), Some("context_length_exceeded"));
    assert_eq!(res.text().await.unwrap(), TOO_LONG);

    let res = ask_at(&mut svc, &html.url()).await;
    assert!(res.extensions().get::<ProviderError>().is_none());
    assert_eq!(res.text().await.unwrap(), "<html>bad gateway</html>");

    let res = ask_at(&mut svc, &huge.url()).await;
    assert!(res.extensions().get::<ProviderError>().is_none());
    let body = res.bytes().await.unwrap();
    assert_eq!(body.len(), 1024 * 1024);
    assert!(body.iter().all(|&b| b == b'y'));
}

#[cfg(feature = "stack")]
mod in_the_llm_stack {
    use super::*;
    use std::time::Duration;
    use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
    use tower_breaker::failover::{Failover, TryOutcome};
    use tower_breaker::provider_error::fail_over_on_provider_error;
    use tower_breaker::stack::StandardResilience;

    const TOO_LONG: &str = r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    const REFUSED: &str = r#"{"error":{"code":"content_policy_violation","message":"Your request was rejected as a result of our safety system.","param":null,"type":"invalid_request_error"}}"#;
    const NO_QUOTA: &str = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    const ANSWER: &str = r#"{"choices":[{"message":{"content":"hello"}}]}"#;

    /// A provider: the `.llm()` stack over a reqwest client, requests pointed at `server`, with
    /// a breaker that opens after `failures` failures in a row.
    fn provider(name: &str, server: &Provider, failures: u32) -> (CircuitBreaker, Http) {
        let stack = StandardResilience::builder(name)
            .llm()
            .configure_breaker(|b| {
                b.sliding_window(SlidingWindow::consecutive(failures))
                    .wait_in_open(Duration::from_secs(60))
            })
            // Short backoffs: a retry, if one were made, would not slow the test down.
            .configure_retry(|r| {
                r.backoff(tower_breaker::backoff::Backoff::constant(
                    Duration::from_millis(1),
                ))
            })
            .build()
            .unwrap();
        let breaker = stack.breaker().clone();
        let url = server.url();
        let client = tower::ServiceBuilder::new()
            .map_request(move |mut req: reqwest::Request| {
                *req.url_mut() = url.parse().unwrap();
                req
            })
            .layer(stack)
            .service(reqwest::Client::new());
        (breaker, tower::util::BoxCloneService::new(client))
    }

    /// A failover from the small model (its breaker opening after `trip` failures) to the
    /// large one, with the LLM rule; and the small model's breaker.
    fn small_then_large(
        small: &Provider,
        large: &Provider,
        trip: u32,
    ) -> (
        CircuitBreaker,
        Failover<Http, reqwest::Request, reqwest::Response, tower_breaker::failover::HttpRequests>,
    ) {
        let (small_breaker, small_svc) = provider("small", small, trip);
        let (large_breaker, large_svc) = provider("large", large, 1);
        let failover = Failover::builder()
            .http()
            .provider("small", Some(small_breaker.clone()), small_svc)
            .provider("large", Some(large_breaker), large_svc)
            .fail_over_when(fail_over_on_provider_error)
            .build();
        (small_breaker, failover)
    }

    #[tokio::test]
    async fn a_context_length_error_fails_over_to_the_larger_model_and_is_never_retried() {
        let small = Provider::answering(400, TOO_LONG).await;
        let large = Provider::answering(200, ANSWER).await;
        let (small_breaker, mut failover) = small_then_large(&small, &large, 1);
        let res = ask(&mut failover).await;
        assert_eq!(res.status(), 200);
        let report = report(&res);
        assert_eq!(&*report.provider, "large");
        let small_try = report.get("small").unwrap();
        assert_eq!(
            (small_try.outcome.clone(), small_try.attempts),
            (TryOutcome::Rejected, 1)
        );
        assert_eq!(small.hits(), 1, "retried on the same model");
        // A 400 is an answer: the small model's breaker stays closed.
        assert_eq!(small_breaker.state(), CircuitState::Closed);
    }

    #[tokio::test]
    async fn a_content_policy_refusal_is_neither_retried_nor_failed_over_and_its_reason_reaches_the_caller()
     {
        let small = Provider::answering(400, REFUSED).await;
        let large = Provider::answering(200, ANSWER).await;
        let (_, mut failover) = small_then_large(&small, &large, 1);
        let res = ask(&mut failover).await;
        assert_eq!(res.status(), 400);
        let error = res.extensions().get::<ProviderError>().cloned().unwrap();
        assert_eq!(error.kind, ProviderErrorKind::ContentPolicy);
        assert!(error.message.unwrap().contains("safety system"));
        assert_eq!(res.text().await.unwrap(), REFUSED);
        assert_eq!((small.hits(), large.hits()), (1, 0));
    }

    #[tokio::test]
    async fn insufficient_quota_is_an_outage_of_the_key_not_a_cool_down() {
        let small = Provider::start(|_, _| {
            let mut res = json(429, NO_QUOTA);
            // OpenAI sends a wait with it; honouring it would only burn time.
            res.headers_mut()
                .insert("retry-after", "1".parse().unwrap());
            res
        })
        .await;
        let large = Provider::answering(200, ANSWER).await;
        let (small_breaker, mut failover) = small_then_large(&small, &large, 1);
        let res = ask(&mut failover).await;
        assert_eq!(res.status(), 200);
        assert_eq!(small.hits(), 1, "retried a key with no quota");
        // A failure, so the breaker opened: not a rate-limit cool-down.
        assert_eq!(small_breaker.state(), CircuitState::Open);
        // The next call skips the key without a network call.
        ask(&mut failover).await;
        assert_eq!((small.hits(), large.hits()), (1, 2));
    }

    /// Each attempt of a provider is counted by the stack's innermost layer, for the report.
    #[tokio::test]
    async fn the_report_counts_the_retries_of_each_provider() {
        let small = Provider::answering(503, r#"{"error":{"message":"busy"}}"#).await;
        let large = Provider::answering(200, ANSWER).await;
        let (_, mut failover) = small_then_large(&small, &large, 10);
        let res = ask(&mut failover).await;
        let report = report(&res);
        // The `.llm()` retry makes 3 attempts.
        assert_eq!(small.hits(), 3);
        assert_eq!(report.get("small").unwrap().attempts, 3);
        assert_eq!(report.get("large").unwrap().attempts, 1);
    }
}
