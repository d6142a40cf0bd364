//! gRPC responses for circuit breakers: `grpc-status` in the headers or in the trailers
//! (feature `grpc`).
//!
//! A gRPC call answers HTTP 200 and puts its status in `grpc-status`: in the headers of a
//! trailers-only response (an error before any message), or in the trailers after the last
//! message. [`GrpcClassifier`] reads it from the headers when it is there and records at once;
//! otherwise it wraps the body in a [`RecordingBody`] that records when the trailers
//! arrive ([`GrpcEos`], gRPC's [`ClassifyEos`]), so a server stream that ends with an error counts as a failure.
//!
//! | `grpc-status` | counts as |
//! |---|---|
//! | `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN`, `DATA_LOSS` | failure |
//! | `RESOURCE_EXHAUSTED` | rate limit: a cool-down (for `retry-after`/`retry-after-ms` if the server sent one) |
//! | every other code, `OK` included | success |
//! | none at the end of the stream, or not a number | `UNKNOWN`: failure |
//! | a non-200 HTTP status without `grpc-status` (a proxy answered) | the code the gRPC spec maps it to (502, 503, 504: `UNAVAILABLE`; 429: `RESOURCE_EXHAUSTED`) |
//! | a body error, or silence for `body_idle_timeout` | failure |
//! | a body dropped early by the caller | ignored |
//!
//! It works with tonic: `tonic::transport::Channel` is a `Service<http::Request<_>>` whose
//! responses are `http::Response<_>`, and the wrapped service is still a tonic `GrpcService`
//! (tonic's generated clients take it as it is):
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_breaker::circuit_breaker::CircuitBreaker;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = CircuitBreaker::builder("inference").build()?;
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
//! let channel = ServiceBuilder::new().layer(breaker.grpc_layer()).service(channel);
//! let mut client = tonic::client::Grpc::new(channel); // or a generated `FooClient::new(channel)`
//! # let _ = &mut client;
//! # Ok(())
//! # }
//! ```
//!
//! Recording by hand, with the codes configured:
//!
//! ```
//! use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState};
//! use tower_breaker::grpc::{Code, GrpcClassifier};
//! use tower_breaker::http::ResponseClass;
//!
//! let breaker = CircuitBreaker::builder("inference").build()?;
//! let classifier = GrpcClassifier::builder()
//!     .code(Code::Cancelled, ResponseClass::Ignored)
//!     .build()?;
//!
//! // A trailers-only answer: the status is in the headers, recorded at once.
//! let response = http::Response::builder()
//!     .header("grpc-status", "8") // RESOURCE_EXHAUSTED
//!     .header("retry-after", "3")
//!     .body(String::new())
//!     .expect("a valid response");
//! let response = classifier.record_response(response, breaker.try_acquire()?);
//! assert!(!response.body().holds_permit());
//! assert_eq!(breaker.state(), CircuitState::RateLimited);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

mod code;

pub use self::code::{Code, grpc_status};

use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, Permit, RecordOutcome};
use crate::config::{Check, ConfigError, MAX_DURATION, MIN_DURATION};
use crate::http::{
    ClassifyEos, ClassifyError, DefaultErrorClassifier, RecordingBody, ResponseClass,
};
use ::http::{HeaderMap, StatusCode};
use http_body::Body;
use std::fmt;
use std::time::Duration;

/// One [`ResponseClass`] per gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CodeTable([ResponseClass; Code::COUNT]);

impl CodeTable {
    fn defaults() -> Self {
        let mut table = Self([ResponseClass::Success; Code::COUNT]);
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Internal,
            Code::Unknown,
            Code::DataLoss,
        ] {
            table.set(code, ResponseClass::Failure);
        }
        table.set(Code::ResourceExhausted, ResponseClass::RateLimit);
        table
    }

    pub(crate) fn class(&self, code: Code) -> ResponseClass {
        // `Code` discriminants are 0 to 16, the table's indices: this cannot panic.
        self.0[code as usize]
    }

    fn set(&mut self, code: Code, class: ResponseClass) {
        // As above: always in bounds.
        self.0[code as usize] = class;
    }
}

/// gRPC's end of stream for a [`RecordingBody`]: the `grpc-status` of the trailers, classified
/// by the [`GrpcClassifier`]'s codes; a stream that ends without one is `UNKNOWN`. Made by the
/// classifier; it is the `E` of the bodies it returns.
#[derive(Debug, Clone, Copy)]
pub struct GrpcEos {
    codes: CodeTable,
}

impl ClassifyEos for GrpcEos {
    fn classify_eos(&self, trailers: Option<&HeaderMap>) -> ResponseClass {
        let code = trailers.and_then(grpc_status).unwrap_or(Code::Unknown);
        self.codes.class(code)
    }
}

/// Classifies gRPC responses by `grpc-status` (headers or trailers) for a circuit breaker.
///
/// As a [`RecordOutcome`] it makes a
/// [`CircuitBreakerService`](crate::circuit_breaker::CircuitBreakerService) return
/// `http::Response<RecordingBody<B>>`; [`CircuitBreaker::grpc_layer`] is the one-line setup
/// with the defaults of the [module docs](self). Errors of the inner service (a
/// `tonic::transport::Error`, a timeout) go through [`DefaultErrorClassifier`] unless
/// [`classify_errors`](GrpcClassifierBuilder::classify_errors) says otherwise.
///
/// ```
/// use tower_breaker::grpc::{Code, GrpcClassifier};
/// use tower_breaker::http::ResponseClass;
///
/// let classifier = GrpcClassifier::new();
/// assert_eq!(classifier.classify_code(Code::Unavailable), ResponseClass::Failure);
/// assert_eq!(classifier.classify_code(Code::ResourceExhausted), ResponseClass::RateLimit);
/// assert_eq!(classifier.classify_code(Code::NotFound), ResponseClass::Success);
/// ```
#[derive(Clone)]
pub struct GrpcClassifier<F = DefaultErrorClassifier> {
    codes: CodeTable,
    body_idle_timeout: Option<Duration>,
    errors: F,
}

impl GrpcClassifier {
    /// The default classifier.
    pub fn new() -> Self {
        Self {
            codes: CodeTable::defaults(),
            body_idle_timeout: None,
            errors: DefaultErrorClassifier,
        }
    }

    /// A builder that starts from the defaults.
    pub fn builder() -> GrpcClassifierBuilder {
        GrpcClassifierBuilder {
            codes: CodeTable::defaults(),
            body_idle_timeout: None,
            errors: DefaultErrorClassifier,
        }
    }
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl<F> GrpcClassifier<F> {
    /// The class of a gRPC status code.
    pub fn classify_code(&self, code: Code) -> ResponseClass {
        self.codes.class(code)
    }

    /// Records `response` on `permit`: at once when its headers carry `grpc-status` (or its
    /// HTTP status is not 200), else when its trailers arrive. This is what the tower service
    /// does; call it yourself with a permit from
    /// [`CircuitBreaker::try_acquire`](crate::circuit_breaker::CircuitBreaker::try_acquire).
    pub fn record_response<B: Body>(
        &self,
        response: ::http::Response<B>,
        permit: Permit,
    ) -> ::http::Response<RecordingBody<B, GrpcEos>> {
        let code = match grpc_status(response.headers()) {
            Some(code) => Some(code),
            None if response.status() != StatusCode::OK => {
                Some(Code::from_http_status(response.status()))
            }
            None => None,
        };
        match code {
            Some(code) => {
                self.codes
                    .class(code)
                    .record(permit, Some(response.headers()));
                response.map(RecordingBody::recorded)
            }
            None => {
                let (end, idle) = (GrpcEos { codes: self.codes }, self.body_idle_timeout);
                response.map(|body| RecordingBody::new(body, permit, end, idle))
            }
        }
    }
}

impl<B, E, F> RecordOutcome<::http::Response<B>, E> for GrpcClassifier<F>
where
    B: Body,
    F: ClassifyError<E>,
{
    type Response = ::http::Response<RecordingBody<B, GrpcEos>>;

    fn record(
        &self,
        result: Result<::http::Response<B>, E>,
        permit: Permit,
    ) -> Result<Self::Response, E> {
        match result {
            Ok(response) => Ok(self.record_response(response, permit)),
            Err(error) => {
                permit.record(self.errors.classify_error(&error));
                Err(error)
            }
        }
    }
}

impl<F> fmt::Debug for GrpcClassifier<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClassifier")
            .field("codes", &self.codes)
            .field("body_idle_timeout", &self.body_idle_timeout)
            .finish_non_exhaustive()
    }
}

/// Builds a [`GrpcClassifier`], starting from the defaults.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::grpc::{Code, GrpcClassifier};
/// use tower_breaker::http::ResponseClass;
///
/// let classifier = GrpcClassifier::builder()
///     .code(Code::Cancelled, ResponseClass::Ignored)
///     .code(Code::Aborted, ResponseClass::Failure)
///     .body_idle_timeout(Duration::from_secs(30))
///     .build()?;
/// assert_eq!(classifier.classify_code(Code::Aborted), ResponseClass::Failure);
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
pub struct GrpcClassifierBuilder<F = DefaultErrorClassifier> {
    codes: CodeTable,
    body_idle_timeout: Option<Duration>,
    errors: F,
}

impl<F> GrpcClassifierBuilder<F> {
    /// Classifies one code.
    pub fn code(mut self, code: Code, class: ResponseClass) -> Self {
        self.codes.set(code, class);
        self
    }

    /// How errors of the inner service count: a closure `Fn(&E) -> Outcome` or any
    /// [`ClassifyError`]. Replaces [`DefaultErrorClassifier`].
    pub fn classify_errors<F2>(self, errors: F2) -> GrpcClassifierBuilder<F2> {
        GrpcClassifierBuilder {
            codes: self.codes,
            body_idle_timeout: self.body_idle_timeout,
            errors,
        }
    }

    /// Fails a streamed body that yields nothing for `idle` while it is being read (1 ms to
    /// 24 h; default: none); see
    /// [`HttpClassifierBuilder::body_idle_timeout`](crate::http::HttpClassifierBuilder::body_idle_timeout).
    pub fn body_idle_timeout(mut self, idle: Duration) -> Self {
        self.body_idle_timeout = Some(idle);
        self
    }

    /// The classifier, or the first out-of-range setting.
    pub fn build(self) -> Result<GrpcClassifier<F>, ConfigError> {
        if let Some(idle) = self.body_idle_timeout {
            Check {
                component: "GrpcClassifier",
            }
            .duration("body_idle_timeout", idle, MIN_DURATION, MAX_DURATION)?;
        }
        Ok(GrpcClassifier {
            codes: self.codes,
            body_idle_timeout: self.body_idle_timeout,
            errors: self.errors,
        })
    }
}

impl<F> fmt::Debug for GrpcClassifierBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClassifierBuilder")
            .field("codes", &self.codes)
            .field("body_idle_timeout", &self.body_idle_timeout)
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A layer for this breaker that classifies gRPC responses with the default
    /// [`GrpcClassifier`]: `grpc-status` from the headers, or from the trailers when the
    /// stream ends. For other rules:
    /// `breaker.layer().record_with(GrpcClassifier::builder()/* ... */.build()?)`.
    #[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
    pub fn grpc_layer(&self) -> CircuitBreakerLayer<GrpcClassifier> {
        self.layer().record_with(GrpcClassifier::new())
    }
}
