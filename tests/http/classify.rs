//! The classifiers' rules, without a network.

use std::time::Duration;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState};
use tower_breaker::grpc::{Code, GrpcClassifier, grpc_status};
use tower_breaker::http::{ClassifyError, DefaultErrorClassifier, HttpClassifier, ResponseClass};
use tower_breaker::{BoxError, Outcome};

fn class(classifier: &HttpClassifier, status: u16) -> ResponseClass {
    classifier.classify_response(
        http::StatusCode::from_u16(status).unwrap(),
        &http::HeaderMap::new(),
    )
}

#[test]
fn the_http_defaults() {
    let c = HttpClassifier::new();
    for status in [500, 502, 503, 504, 599, 408, 529, 600, 999] {
        assert_eq!(class(&c, status), ResponseClass::Failure, "{status}");
    }
    assert_eq!(class(&c, 429), ResponseClass::RateLimit);
    for status in [100, 200, 204, 301, 304, 400, 401, 403, 404, 409, 422, 499] {
        assert_eq!(class(&c, status), ResponseClass::Success, "{status}");
    }
}

#[test]
fn later_rules_win_and_the_predicate_comes_first() {
    let c = HttpClassifier::builder()
        .status_range(400.., ResponseClass::Ignored)
        .status_range(..=299, ResponseClass::Failure)
        .status(http::StatusCode::OK, ResponseClass::Success)
        .classify_with(|status, headers| {
            (status == http::StatusCode::OK && headers.contains_key("x-overloaded"))
                .then_some(ResponseClass::Failure)
        })
        .build()
        .unwrap();
    assert_eq!(class(&c, 503), ResponseClass::Ignored);
    assert_eq!(class(&c, 429), ResponseClass::Ignored);
    assert_eq!(class(&c, 201), ResponseClass::Failure);
    assert_eq!(class(&c, 200), ResponseClass::Success);
    let mut overloaded = http::HeaderMap::new();
    overloaded.insert("x-overloaded", "1".parse().unwrap());
    assert_eq!(
        c.classify_response(http::StatusCode::OK, &overloaded),
        ResponseClass::Failure
    );
    assert_eq!(class(&c, 302), ResponseClass::Success);
}

#[test]
#[allow(clippy::reversed_empty_ranges)] // bad ranges are the point
fn bad_settings_are_config_errors() {
    for (builder, field) in [
        (
            HttpClassifier::builder().status_range(600..500, ResponseClass::Failure),
            "status_range",
        ),
        (
            HttpClassifier::builder().status_range(0..=99, ResponseClass::Failure),
            "status_range",
        ),
        (
            HttpClassifier::builder().status_range(500..500, ResponseClass::Failure),
            "status_range",
        ),
        (
            HttpClassifier::builder().status_range(990..=1000, ResponseClass::Failure),
            "status_range",
        ),
        (
            HttpClassifier::builder().body_idle_timeout(Duration::ZERO),
            "body_idle_timeout",
        ),
        (
            HttpClassifier::builder().body_idle_timeout(Duration::from_secs(100_000)),
            "body_idle_timeout",
        ),
    ] {
        let err = builder.build().unwrap_err();
        assert_eq!(err.field(), field);
        assert_eq!(err.component(), "HttpClassifier");
    }
    let err = GrpcClassifier::builder()
        .body_idle_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(
        (err.component(), err.field()),
        ("GrpcClassifier", "body_idle_timeout")
    );
}

#[test]
fn default_error_classification() {
    let c = DefaultErrorClassifier;
    let elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
    assert_eq!(c.classify_error(&elapsed), Outcome::Failure);
    let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    assert_eq!(c.classify_error(&io), Outcome::Failure);

    let inner = CircuitBreaker::builder("inner").build().unwrap();
    inner.force_open();
    let open = inner.try_acquire().unwrap_err();
    assert_eq!(
        c.classify_error(&open.clone().into_box_error()),
        Outcome::Ignored
    );
    // Found through `source()` too.
    #[derive(Debug)]
    struct Wrapper(tower_breaker::circuit_breaker::CircuitOpen);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let wrapped: BoxError = Box::new(Wrapper(open));
    assert_eq!(c.classify_error(&wrapped), Outcome::Ignored);

    // A request reqwest could not build never left the process.
    let builder_error = reqwest::Client::new()
        .get("http://[::1")
        .build()
        .unwrap_err();
    assert!(builder_error.is_builder());
    assert_eq!(c.classify_error(&builder_error), Outcome::Ignored);
    let boxed: BoxError = Box::new(builder_error);
    assert_eq!(c.classify_error(&boxed), Outcome::Ignored);
}

#[test]
fn a_custom_error_classifier_is_a_closure() {
    let breaker = CircuitBreaker::builder("custom").build().unwrap();
    let classifier = HttpClassifier::builder()
        .classify_errors(|e: &BoxError| {
            if e.is::<tower::timeout::error::Elapsed>() {
                Outcome::Failure
            } else {
                Outcome::Ignored
            }
        })
        .build()
        .unwrap();
    let permit = breaker.try_acquire().unwrap();
    let err: BoxError = "refused".into();
    let _ =
        tower_breaker::circuit_breaker::RecordOutcome::<http::Response<String>, BoxError>::record(
            &classifier,
            Err(err),
            permit,
        );
    assert_eq!(breaker.metrics().ignored_calls, 1);
}

#[test]
fn the_grpc_defaults() {
    let c = GrpcClassifier::new();
    for code in [
        Code::Unavailable,
        Code::DeadlineExceeded,
        Code::Internal,
        Code::Unknown,
        Code::DataLoss,
    ] {
        assert_eq!(c.classify_code(code), ResponseClass::Failure, "{code}");
    }
    assert_eq!(
        c.classify_code(Code::ResourceExhausted),
        ResponseClass::RateLimit
    );
    for code in [
        Code::Ok,
        Code::Cancelled,
        Code::InvalidArgument,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Unauthenticated,
    ] {
        assert_eq!(c.classify_code(code), ResponseClass::Success, "{code}");
    }
    for i in 0..17 {
        assert_eq!(Code::from_i32(i) as i32, i);
    }
    assert_eq!(Code::from_i32(-1), Code::Unknown);
}

fn grpc_response(status: u16, grpc: Option<&'static str>) -> http::Response<String> {
    let mut builder = http::Response::builder().status(status);
    if let Some(code) = grpc {
        builder = builder.header("grpc-status", code);
    }
    builder.body("x".to_string()).unwrap()
}

#[test]
fn grpc_heads_without_a_status_map_the_http_status() {
    let c = GrpcClassifier::new();
    let breaker = CircuitBreaker::builder("proxy").build().unwrap();
    for (status, grpc, recorded, state) in [
        (503, None, Some(Outcome::Failure), CircuitState::Closed),
        (404, None, Some(Outcome::Success), CircuitState::Closed),
        (200, Some("0"), Some(Outcome::Success), CircuitState::Closed),
        (
            200,
            Some("14"),
            Some(Outcome::Failure),
            CircuitState::Closed,
        ),
        (
            200,
            Some("banana"),
            Some(Outcome::Failure),
            CircuitState::Closed,
        ),
        (200, None, None, CircuitState::Closed),
        (429, None, Some(Outcome::Ignored), CircuitState::RateLimited),
    ] {
        breaker.reset();
        let before = breaker.metrics();
        let response =
            c.record_response(grpc_response(status, grpc), breaker.try_acquire().unwrap());
        assert_eq!(
            response.body().holds_permit(),
            recorded.is_none(),
            "{status} {grpc:?}"
        );
        let after = breaker.metrics();
        let outcome = if after.failed_calls > before.failed_calls {
            Some(Outcome::Failure)
        } else if after.successful_calls > before.successful_calls {
            Some(Outcome::Success)
        } else if after.ignored_calls > before.ignored_calls {
            Some(Outcome::Ignored)
        } else {
            None
        };
        assert_eq!(outcome, recorded, "{status} {grpc:?}");
        assert_eq!(breaker.state(), state);
    }
    let mut headers = http::HeaderMap::new();
    headers.insert("grpc-status", " 8 ".parse().unwrap());
    assert_eq!(grpc_status(&headers), Some(Code::ResourceExhausted));
    headers.insert("grpc-status", "99999999999999".parse().unwrap());
    assert_eq!(grpc_status(&headers), Some(Code::Unknown));
}

#[test]
fn a_grpc_body_without_trailers_is_unknown() {
    use http_body_util::BodyExt;
    let breaker = CircuitBreaker::builder("trailers").build().unwrap();
    let response = GrpcClassifier::new().record_response(
        http::Response::new("message without trailers".to_string()),
        breaker.try_acquire().unwrap(),
    );
    futures_util::FutureExt::now_or_never(response.into_body().collect())
        .unwrap()
        .unwrap();
    assert_eq!(breaker.metrics().failed_calls, 1);
}

#[test]
fn the_types_travel_across_threads_and_bodies_stay_unpin() {
    fn assert_traits<T: Send + Sync + Unpin>() {}
    assert_traits::<tower_breaker::http::RecordingBody<String>>();
    assert_traits::<tower_breaker::http::RecordingBody<hyper::body::Incoming>>();
    assert_traits::<HttpClassifier>();
    assert_traits::<GrpcClassifier>();
    assert_traits::<tower_breaker::http::BodyIdleTimeout>();
}
