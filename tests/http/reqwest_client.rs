//! `reqwest::Client` (a `Service<reqwest::Request>`) behind `CircuitBreaker::http_layer`.

use crate::server::{DONE, Log, sse_then_reset};
use crate::support::upstream::Upstream;
use crate::support::{ms, secs};
use reqwest::{Method, Request, Url};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_breaker::Outcome;
use tower_breaker::chaos::{ChaosLayer, Fault, FaultPlan};
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, CircuitState, SlidingWindow};

fn request(url: &str) -> Request {
    Request::new(Method::GET, Url::parse(url).unwrap())
}

/// A streamed chat completion request.
fn stream_request(url: &str) -> Request {
    let mut request = Request::new(Method::POST, Url::parse(url).unwrap());
    *request.body_mut() = Some(r#"{"model":"m","stream":true}"#.into());
    request
}

#[tokio::test]
async fn a_reqwest_stack_trips_on_503_and_stops_calling() {
    let down = ChaosLayer::http("down")
        .inject(Fault::service_unavailable(), 1.0)
        .build()
        .unwrap();
    let server = Upstream::with_chaos(down).await;
    let breaker = CircuitBreaker::builder("reqwest")
        .sliding_window(SlidingWindow::consecutive(3))
        .wait_in_open(secs(30))
        .build()
        .unwrap();
    let mut client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .service(reqwest::Client::new());

    for _ in 0..3 {
        let response = client
            .ready()
            .await
            .unwrap()
            .call(request(&server.chat_url()))
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    for _ in 0..3 {
        let err = client
            .ready()
            .await
            .unwrap()
            .call(request(&server.chat_url()))
            .await
            .unwrap_err();
        assert!(err.is::<CircuitOpen>(), "{err}");
    }
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn reqwest_timeouts_and_connect_errors_are_failures() {
    let log = Log::default();
    let breaker = CircuitBreaker::builder("reqwest")
        .sliding_window(SlidingWindow::consecutive(2))
        .on_event(log.listener())
        .build()
        .unwrap();
    let hang = ChaosLayer::http("hang")
        .inject(Fault::latency(secs(3600)), 1.0)
        .build()
        .unwrap();
    let hang = Upstream::with_chaos(hang).await;
    let client = reqwest::Client::builder().timeout(ms(100)).build().unwrap();
    let client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .service(client);

    let err = client
        .clone()
        .oneshot(request(&hang.url("/")))
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<reqwest::Error>().unwrap().is_timeout());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let err = client.clone().oneshot(request(&refused)).await.unwrap_err();
    assert!(err.downcast_ref::<reqwest::Error>().unwrap().is_connect());

    assert_eq!(log.outcomes(), vec![Outcome::Failure, Outcome::Failure]);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test]
async fn a_reqwest_stream_is_recorded_when_it_ends() {
    // A clean stream, then one that sends an event and stays open.
    let server = Upstream::with_plan(
        FaultPlan::new()
            .then_healthy(1)
            .then(Fault::stall_after(1, secs(3600))),
    )
    .await;
    let log = Log::default();
    let breaker = CircuitBreaker::builder("reqwest")
        .on_event(log.listener())
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .service(reqwest::Client::new());

    let response = client
        .clone()
        .oneshot(stream_request(&server.chat_url()))
        .await
        .unwrap();
    // The URL survives the body being wrapped.
    assert_eq!(response.url().path(), "/v1/chat/completions");
    assert!(log.outcomes().is_empty());
    assert!(response.text().await.unwrap().ends_with(DONE));
    assert_eq!(log.outcomes(), vec![Outcome::Success]);

    // Three events, then the connection is reset.
    let (addr, reset) = sse_then_reset(3).await;
    let mut response = client
        .clone()
        .oneshot(request(&format!("http://{addr}/cut")))
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("data: 3") {
        let chunk = response.chunk().await.unwrap().expect("three events");
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    reset.send(()).unwrap();
    let err = loop {
        match response.chunk().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a cut stream must not end cleanly"),
            Err(err) => break err,
        }
    };
    assert!(err.is_body() || err.is_decode(), "{err:?}");
    assert_eq!(log.outcomes(), vec![Outcome::Success, Outcome::Failure]);

    // Dropped early by the caller: ignored.
    let mut response = client
        .oneshot(stream_request(&server.chat_url()))
        .await
        .unwrap();
    response.chunk().await.unwrap();
    drop(response);
    assert_eq!(
        log.outcomes(),
        vec![Outcome::Success, Outcome::Failure, Outcome::Ignored]
    );
}

/// A guard's error raised while reqwest reads the body reaches the caller as a
/// `reqwest::Error` ("error decoding response body"), where `is::<StreamTruncated>()` cannot
/// see it; `rejection::find` walks the chain (and `io::Error`s in it) to it.
#[cfg(feature = "stream")]
#[tokio::test]
async fn a_stream_guard_error_is_found_inside_reqwests_error() {
    use tower_breaker::rejection::{Rejection, find};
    use tower_breaker::stream::{SseRules, StreamGuardLayer, StreamTruncated};

    // The role-only chunk and one content chunk (one token), then a clean end before `[DONE]`.
    let server = Upstream::with_plan(FaultPlan::new().then(Fault::cut_after(2))).await;
    let log = Log::default();
    let breaker = CircuitBreaker::builder("reqwest")
        .on_event(log.listener())
        .build()
        .unwrap();
    let guard = StreamGuardLayer::builder()
        .rules(SseRules::openai())
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .layer(guard)
        .service(reqwest::Client::new());
    let response = client
        .oneshot(stream_request(&server.chat_url()))
        .await
        .unwrap();
    let err: reqwest::Error = response.bytes().await.unwrap_err();
    assert!(err.is_decode() || err.is_body(), "{err:?}");
    assert!(!(&err as &dyn std::error::Error).is::<StreamTruncated>());

    let truncated = find::<StreamTruncated>(&err).expect("the guard's error, through reqwest");
    assert_eq!(truncated.tokens(), 1, "{truncated}");
    assert!(find::<CircuitOpen>(&err).is_none());
    // Not a rejection: the upstream answered, and the call counted as a failure.
    assert!(Rejection::of(&err).is_none());
    assert_eq!(log.outcomes(), vec![Outcome::Failure]);
}
