//! The dashboard (feature `dashboard`): its routes and settings, its stream of snapshots under
//! paused time, and the page in a real headless Chromium during an outage.

mod adversarial_dashboard;
mod browser;
mod routes;
mod stream;
mod time_in_state;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};

/// A closed breaker whose window holds 4 calls, one failed: a failure rate of 25 %.
fn one_failure_in_four(name: &str) -> CircuitBreaker {
    let breaker = CircuitBreaker::builder(name)
        .sliding_window(SlidingWindow::count_based(10))
        .minimum_calls(4)
        .build()
        .unwrap();
    for outcome in [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Success,
        Outcome::Success,
    ] {
        breaker.try_acquire().unwrap().record(outcome);
    }
    breaker
}

/// Sends one request to `app` (no network) and returns the status and the whole body.
async fn call(app: &Router, method: Method, path: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The JSON of one server-sent event (`event: snapshot`, `data: {...}`).
fn event_json(frame: &[u8]) -> Value {
    let text = std::str::from_utf8(frame).unwrap();
    assert!(text.starts_with("event: snapshot\n"), "{text}");
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data line in {text:?}"));
    serde_json::from_str(data).unwrap()
}
