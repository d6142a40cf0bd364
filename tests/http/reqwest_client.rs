//! `reqwest::Client` (a `Service<reqwest::Request>`) behind `CircuitBreaker::http_layer`.

use crate::server::{Log, event, serve, sse, sse_then_reset, status};
use crate::support::{ms, secs};
use futures_util::StreamExt;
use reqwest::{Method, Request, Url};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, CircuitState, SlidingWindow};

fn request(url: &str) -> Request {
    Request::new(Method::GET, Url::parse(url).unwrap())
}

#[tokio::test]
async fn a_reqwest_stack_trips_on_503_and_stops_calling() {
    let server = serve(|_req| async { status(503, &[]) }).await;
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
            .call(request(&server.url("/v1/chat")))
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
            .call(request(&server.url("/v1/chat")))
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
    let hang = serve(|_req| std::future::pending()).await;
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
    let server = serve(|req: http::Request<hyper::body::Incoming>| async move {
        match req.uri().path() {
            "/clean" => sse(futures_util::stream::iter((1..=3).map(event))),
            _ => sse(futures_util::stream::iter([event(1)]).chain(futures_util::stream::pending())),
        }
    })
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
        .oneshot(request(&server.url("/clean")))
        .await
        .unwrap();
    // The URL survives the body being wrapped.
    assert_eq!(response.url().path(), "/clean");
    assert!(log.outcomes().is_empty());
    assert_eq!(
        response.text().await.unwrap(),
        "data: 1\n\ndata: 2\n\ndata: 3\n\n"
    );
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
    let mut response = client.oneshot(request(&server.url("/open"))).await.unwrap();
    response.chunk().await.unwrap();
    drop(response);
    assert_eq!(
        log.outcomes(),
        vec![Outcome::Success, Outcome::Failure, Outcome::Ignored]
    );
}
