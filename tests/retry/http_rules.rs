//! HTTP rules with `http::Request` / `http::Response`: Retry-After, idempotency, keys.

use crate::harness::{Events, call, upstream};
use crate::support::{ms, secs};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, ServiceBuilder};
use tower_breaker::backoff::Backoff;
use tower_breaker::retry::{GiveUpReason, IdempotencyKeyLayer, RetryEvent, RetryPolicy};

type Req = Request<String>;

/// An upstream that answers call `n` with `statuses[n]` (the last one repeated) and `headers`.
fn answers(
    statuses: &[u16],
    headers: &'static [(&'static str, &'static str)],
) -> (
    impl tower::Service<
        Req,
        Response = Response<String>,
        Error = BoxError,
        Future = impl std::future::Future + Send + use<>,
    > + Clone
    + Send
    + use<>,
    crate::harness::Calls,
) {
    let statuses = statuses.to_vec();
    upstream(Duration::ZERO, move |n, _: &Req| {
        let status = statuses[n.min(statuses.len() - 1)];
        let mut response = Response::builder().status(status);
        if status != 200 {
            for (name, value) in headers {
                response = response.header(*name, *value);
            }
        }
        Ok(response.body(format!("answer {n}")).unwrap())
    })
}

fn http_policy() -> tower_breaker::retry::Builder<
    tower_breaker::retry::RetryOnStatus,
    tower_breaker::retry::HttpRequests,
> {
    RetryPolicy::builder()
        .http()
        .max_attempts(3)
        .backoff(Backoff::constant(ms(100)))
        .no_budget()
}

fn get() -> Req {
    Request::get("http://upstream/v1/models")
        .body(String::new())
        .unwrap()
}

fn post() -> Req {
    Request::post("http://upstream/v1/chat/completions")
        .body(r#"{"model":"m"}"#.to_string())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn retry_after_replaces_the_backoff() {
    let events = Events::default();
    let policy = http_policy().on_event(events.listener()).build().unwrap();
    let (svc, calls) = answers(&[503, 200], &[("retry-after", "3")]);
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    let response = call(&mut svc, get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.gaps(), [secs(3)]);
    assert!(matches!(
        events.all()[0],
        RetryEvent::Retrying {
            server_delay: true,
            ..
        }
    ));

    // retry-after-ms on a 429 is more precise and wins.
    let policy = http_policy().build().unwrap();
    let (svc, calls) = answers(
        &[429, 200],
        &[("retry-after", "3"), ("retry-after-ms", "1500")],
    );
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert!(call(&mut svc, get()).await.is_ok());
    assert_eq!(calls.gaps(), [ms(1500)]);

    // Only on 429 and 503: a 500's Retry-After is ignored, the backoff applies.
    let policy = http_policy().build().unwrap();
    let (svc, calls) = answers(&[500, 200], &[("retry-after", "3")]);
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert!(call(&mut svc, get()).await.is_ok());
    assert_eq!(calls.gaps(), [ms(100)]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_capped_by_max_server_delay() {
    let policy = http_policy().max_server_delay(secs(10)).build().unwrap();
    let (svc, calls) = answers(&[503, 200], &[("retry-after", "120")]);
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert!(call(&mut svc, get()).await.is_ok());
    assert_eq!(calls.gaps(), [secs(10)]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_gives_up_at_once() {
    let events = Events::default();
    let policy = http_policy()
        .deadline(secs(10))
        .on_event(events.listener())
        .build()
        .unwrap();
    let (svc, calls) = answers(&[503, 200], &[("retry-after", "20")]);
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    let start = Instant::now();
    let response = call(&mut svc, get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()["retry-after"],
        "20",
        "the caller sees the server's wait"
    );
    assert_eq!(calls.count(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(events.gave_up(), [GiveUpReason::Deadline]);

    // Capped to 5 s, the wait fits.
    let policy = http_policy()
        .deadline(secs(10))
        .max_server_delay(secs(5))
        .build()
        .unwrap();
    let (svc, calls) = answers(&[503, 200], &[("retry-after", "20")]);
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert!(call(&mut svc, get()).await.unwrap().status().is_success());
    assert_eq!(calls.gaps(), [secs(5)]);
}

#[tokio::test(start_paused = true)]
async fn statuses_that_are_answers_are_not_retried() {
    for status in [400, 401, 404, 409, 422, 501] {
        let policy = http_policy().build().unwrap();
        let (svc, calls) = answers(&[status, 200], &[]);
        let mut svc = ServiceBuilder::new().retry(policy).service(svc);
        assert_eq!(call(&mut svc, get()).await.unwrap().status(), status);
        assert_eq!(calls.count(), 1, "{status}");
    }
    for status in [408, 429, 500, 502, 503, 504] {
        let policy = http_policy().build().unwrap();
        let (svc, calls) = answers(&[status, 200], &[]);
        let mut svc = ServiceBuilder::new().retry(policy).service(svc);
        assert_eq!(call(&mut svc, get()).await.unwrap().status(), 200);
        assert_eq!(calls.count(), 2, "{status}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_post_is_retried_only_with_an_idempotency_key() {
    let events = Events::default();
    let policy = http_policy().on_event(events.listener()).build().unwrap();
    let (svc, calls) = answers(&[503, 200], &[]);
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    let response = call(&mut svc, post()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.count(), 1, "a POST without a key is sent once");
    assert!(events.all().is_empty(), "never eligible: not even copied");

    let policy = http_policy().build().unwrap();
    let (svc, calls) = answers(&[503, 200], &[]);
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    let mut keyed = post();
    keyed
        .headers_mut()
        .insert("Idempotency-Key", "key-1".parse().unwrap());
    assert_eq!(call(&mut svc, keyed).await.unwrap().status(), 200);
    assert_eq!(calls.count(), 2);

    // PATCH follows the same rule; PUT, DELETE, GET, HEAD, OPTIONS are idempotent.
    for (method, expected) in [
        (Method::PATCH, 1),
        (Method::PUT, 2),
        (Method::DELETE, 2),
        (Method::HEAD, 2),
        (Method::OPTIONS, 2),
    ] {
        let policy = http_policy().build().unwrap();
        let (svc, calls) = answers(&[503, 200], &[]);
        let mut svc = ServiceBuilder::new().retry(policy).service(svc);
        let req = Request::builder()
            .method(method.clone())
            .uri("http://upstream/x")
            .body(String::new())
            .unwrap();
        let _ = call(&mut svc, req).await.unwrap();
        assert_eq!(calls.count(), expected, "{method}");
    }

    // `retry_non_idempotent(true)` overrides.
    let policy = http_policy().retry_non_idempotent(true).build().unwrap();
    let (svc, calls) = answers(&[503, 200], &[]);
    let mut svc = ServiceBuilder::new().retry(policy).service(svc);
    assert_eq!(call(&mut svc, post()).await.unwrap().status(), 200);
    assert_eq!(calls.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_key_layer_makes_a_post_retryable_with_one_key_for_every_attempt() {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let seen = keys.clone();
    let (svc, calls) = upstream(Duration::ZERO, move |n, req: &Req| {
        seen.lock()
            .unwrap()
            .push(req.headers().get("idempotency-key").cloned());
        let status = if n < 2 { 503 } else { 200 };
        Ok::<_, BoxError>(
            Response::builder()
                .status(status)
                .body(String::new())
                .unwrap(),
        )
    });
    let mut svc = ServiceBuilder::new()
        .layer(IdempotencyKeyLayer::with_seed(5))
        .retry(http_policy().build().unwrap())
        .service(svc);
    assert_eq!(call(&mut svc, post()).await.unwrap().status(), 200);
    assert_eq!(calls.count(), 3);
    let first = std::mem::take(&mut *keys.lock().unwrap());
    assert!(first[0].is_some());
    assert!(first.iter().all(|k| *k == first[0]), "{first:?}");

    // A request that has a key keeps it; a GET gets none.
    let mut own = post();
    own.headers_mut()
        .insert("idempotency-key", "mine".parse().unwrap());
    let _ = call(&mut svc, own).await.unwrap();
    let _ = call(&mut svc, get()).await.unwrap();
    let rest = std::mem::take(&mut *keys.lock().unwrap());
    assert_eq!(rest, [Some(HeaderValue::from_static("mine")), None]);
}

#[tokio::test(start_paused = true)]
async fn errors_are_retried_too() {
    let (svc, calls) = upstream(Duration::ZERO, |n, _: &Req| {
        if n == 0 {
            Err::<Response<String>, BoxError>("connection reset".into())
        } else {
            Ok(Response::new(String::new()))
        }
    });
    let mut svc = ServiceBuilder::new()
        .retry(http_policy().build().unwrap())
        .service(svc);
    assert!(call(&mut svc, get()).await.is_ok());
    assert_eq!(calls.count(), 2);
}
