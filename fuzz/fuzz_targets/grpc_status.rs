//! `grpc_status` on arbitrary header values, and the gRPC classifier on arbitrary responses and
//! trailers: never panics, reads plain numbers exactly, and leaves the breaker in the state its
//! code table says.
#![no_main]

use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
use tower_breaker::grpc::{Code, GrpcClassifier, grpc_status};
use tower_breaker::http::ResponseClass;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// `grpc-status` in the response head (absent when `None`).
    head_status: Option<&'a [u8]>,
    /// `grpc-status` in the trailers (absent when `None`).
    trailer_status: Option<&'a [u8]>,
    retry_after: Option<&'a [u8]>,
    http_status: u16,
    code: i32,
}

/// A body that ends with `trailers` (or with nothing, when `None`).
struct Trailers(Option<HeaderMap>);

impl Body for Trailers {
    type Data = &'static [u8];
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|t| Ok(Frame::trailers(t))))
    }
}

/// The number a value states when it is nothing but ASCII digits (at most 9).
fn plain_number(value: &HeaderValue) -> Option<i32> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn headers_with(status: Option<&[u8]>, retry_after: Option<&HeaderValue>) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    if let Some(status) = status {
        map.insert("grpc-status", HeaderValue::from_bytes(status).ok()?);
    }
    if let Some(retry_after) = retry_after {
        map.insert("retry-after", retry_after.clone());
    }
    Some(map)
}

/// The state a consecutive(1) breaker is left in by one call of `class`.
fn state_after(class: ResponseClass) -> CircuitState {
    match class {
        ResponseClass::Failure => CircuitState::Open,
        ResponseClass::RateLimit => CircuitState::RateLimited,
        _ => CircuitState::Closed,
    }
}

fuzz_target!(|input: Input<'_>| {
    let code = Code::from_i32(input.code);
    assert!(!code.as_str().is_empty());
    if (0..=16).contains(&input.code) {
        assert_eq!(code as i32, input.code);
    } else {
        assert_eq!(code, Code::Unknown);
    }

    let retry_after = input
        .retry_after
        .and_then(|v| HeaderValue::from_bytes(v).ok());
    let Some(head) = headers_with(input.head_status, retry_after.as_ref()) else {
        return;
    };
    let Some(trailers) = headers_with(input.trailer_status, None) else {
        return;
    };

    // The parser: absent is `None`, a plain number is that code (`Unknown` past 16), anything
    // else is `Unknown`.
    for map in [&head, &trailers] {
        let parsed = grpc_status(map);
        match map.get("grpc-status") {
            None => assert_eq!(parsed, None),
            Some(value) => {
                let expected = plain_number(value).map_or(Code::Unknown, Code::from_i32);
                assert_eq!(parsed, Some(expected), "{value:?}");
            }
        }
    }

    let Ok(http_status) = StatusCode::from_u16(input.http_status) else {
        return;
    };
    let classifier = GrpcClassifier::new();
    let breaker = CircuitBreaker::builder("fuzz")
        .sliding_window(SlidingWindow::consecutive(1))
        .build()
        .expect("a valid breaker");
    let mut response = Response::new(Trailers(Some(trailers.clone())));
    *response.status_mut() = http_status;
    *response.headers_mut() = head.clone();
    let permit = breaker.try_acquire().expect("a closed breaker");
    let response = classifier.record_response(response, permit);

    let at_once = grpc_status(&head)
        .or_else(|| (http_status != StatusCode::OK).then(|| Code::from_http_status(http_status)));
    let mut body = response.into_body();
    match at_once {
        Some(code) => {
            assert!(!body.holds_permit(), "recorded from the head");
            assert_eq!(breaker.state(), state_after(classifier.classify_code(code)));
        }
        None => {
            assert!(body.holds_permit(), "recorded at the end of the stream");
            assert_eq!(breaker.state(), CircuitState::Closed);
            let mut cx = Context::from_waker(Waker::noop());
            // The trailers, then the end: no timer is set, so every poll is ready.
            for _ in 0..3 {
                match Pin::new(&mut body).poll_frame(&mut cx) {
                    Poll::Ready(None) => break,
                    Poll::Ready(Some(_)) => {}
                    Poll::Pending => panic!("a body with no idle timeout never waits"),
                }
            }
            assert!(!body.holds_permit());
            let code = grpc_status(&trailers).unwrap_or(Code::Unknown);
            assert_eq!(breaker.state(), state_after(classifier.classify_code(code)));
        }
    }
    assert_eq!(breaker.metrics().probes_in_flight, 0);
});
