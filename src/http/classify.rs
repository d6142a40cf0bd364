use super::body::{RecordingBody, SuccessOnEos};
use super::retry_after::retry_after;
use crate::circuit_breaker::{Permit, RecordOutcome};
use crate::config::{Check, ConfigError, MAX_DURATION, MIN_DURATION};
use crate::{BoxError, Outcome};
use ::http::{HeaderMap, StatusCode};
use http_body::Body;
use std::any::Any;
use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::time::Duration;

/// What a response (its status, or a gRPC status) means to a breaker.
///
/// Richer than [`Outcome`]: a rate limit is neither a success nor a failure, and it carries
/// the server's wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResponseClass {
    /// The upstream answered. With a streamed body, the call is recorded when the body ends:
    /// a clean end is a success, a body error or an idle timeout a failure, a body dropped by
    /// our own caller `Ignored`.
    Success,
    /// The upstream failed. Recorded at once, with the response's `Retry-After` (if any) as the
    /// least time the breaker stays open if this failure opens it
    /// ([`Permit::record_with_retry_after`]).
    Failure,
    /// The upstream rate-limited us (429, gRPC `RESOURCE_EXHAUSTED`). Recorded at once as a
    /// rate limit: the breaker cools down for the response's `Retry-After` without counting a
    /// failure ([`Permit::record_rate_limited`]).
    RateLimit,
    /// Counts toward nothing ([`Outcome::Ignored`]). Recorded at once.
    Ignored,
}

impl ResponseClass {
    /// Records this class on `permit`, reading the server's wait from `headers` (the response
    /// head, or the trailers) for failures and rate limits.
    pub(crate) fn record(self, permit: Permit, headers: Option<&HeaderMap>) {
        match self {
            ResponseClass::Success => permit.record(Outcome::Success),
            ResponseClass::Ignored => permit.record(Outcome::Ignored),
            ResponseClass::Failure => {
                permit.record_with_retry_after(Outcome::Failure, headers.and_then(retry_after))
            }
            ResponseClass::RateLimit => permit.record_rate_limited(headers.and_then(retry_after)),
        }
    }
}

/// Turns an error of type `E` (the inner service's error) into an [`Outcome`].
///
/// Closures `Fn(&E) -> Outcome` implement it. The default is [`DefaultErrorClassifier`].
///
/// ```
/// use tower_breaker::{BoxError, Outcome};
/// use tower_breaker::http::ClassifyError;
///
/// /// Only timeouts count against the upstream.
/// struct TimeoutsOnly;
///
/// impl ClassifyError<BoxError> for TimeoutsOnly {
///     fn classify_error(&self, error: &BoxError) -> Outcome {
///         if error.is::<tower::timeout::error::Elapsed>() {
///             Outcome::Failure
///         } else {
///             Outcome::Ignored
///         }
///     }
/// }
///
/// let elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
/// assert_eq!(TimeoutsOnly.classify_error(&elapsed), Outcome::Failure);
/// let other: BoxError = "bad request body".into();
/// assert_eq!(TimeoutsOnly.classify_error(&other), Outcome::Ignored);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot classify errors of type `{E}`",
    label = "no `ClassifyError<{E}>`",
    note = "closures `Fn(&{E}) -> Outcome` implement `ClassifyError`; `DefaultErrorClassifier` takes any `'static` error"
)]
pub trait ClassifyError<E> {
    /// The outcome of a call that ended in `error`.
    fn classify_error(&self, error: &E) -> Outcome;
}

impl<E, F> ClassifyError<E> for F
where
    F: Fn(&E) -> Outcome,
{
    fn classify_error(&self, error: &E) -> Outcome {
        self(error)
    }
}

/// The default error classification: every error is a [`Outcome::Failure`] (timeouts,
/// `tower::timeout::error::Elapsed`, `tokio::time::error::Elapsed`, connection and transport
/// errors, anything else), except errors that never reached the upstream, which are
/// [`Outcome::Ignored`]:
///
/// - in a [`BoxError`] (the error of most tower stacks), a [`CircuitOpen`](crate::circuit_breaker::CircuitOpen) or
///   [`RateLimited`](crate::circuit_breaker::RateLimited)
///   from an inner breaker, or a [`BulkheadFull`](crate::bulkhead::BulkheadFull) or
///   [`BulkheadTimeout`](crate::bulkhead::BulkheadTimeout) from an inner bulkhead, anywhere in
///   the error's `source()` chain;
/// - with the `reqwest` feature, a `reqwest::Error` that `is_builder()` (the request could
///   not be built), on its own or in a [`BoxError`].
///
/// Error types are told apart by downcasting, so no dependency on `tower` or on the client
/// is needed.
///
/// ```
/// use tower_breaker::{BoxError, Outcome};
/// use tower_breaker::circuit_breaker::CircuitBreaker;
/// use tower_breaker::http::{ClassifyError, DefaultErrorClassifier};
///
/// let timeout: BoxError = Box::new(tower::timeout::error::Elapsed::new());
/// assert_eq!(DefaultErrorClassifier.classify_error(&timeout), Outcome::Failure);
/// let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// assert_eq!(DefaultErrorClassifier.classify_error(&io), Outcome::Failure);
///
/// let inner = CircuitBreaker::builder("inner").build()?;
/// inner.force_open();
/// let rejected = inner.try_acquire().unwrap_err().into_box_error();
/// assert_eq!(DefaultErrorClassifier.classify_error(&rejected), Outcome::Ignored);
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultErrorClassifier;

impl<E: 'static> ClassifyError<E> for DefaultErrorClassifier {
    fn classify_error(&self, error: &E) -> Outcome {
        let any: &dyn Any = error;
        if let Some(boxed) = any.downcast_ref::<BoxError>() {
            return classify_dyn(&**boxed);
        }
        #[cfg(feature = "reqwest")]
        if let Some(error) = any.downcast_ref::<reqwest::Error>() {
            return super::reqwest::classify_reqwest_error(error);
        }
        Outcome::Failure
    }
}

fn classify_dyn(error: &(dyn std::error::Error + 'static)) -> Outcome {
    let mut next = Some(error);
    while let Some(error) = next {
        if crate::rejection::Rejection::of(error).is_some() {
            // Refused by our own middleware: the upstream was not asked.
            return Outcome::Ignored;
        }
        #[cfg(feature = "reqwest")]
        if let Some(error) = error.downcast_ref::<reqwest::Error>() {
            return super::reqwest::classify_reqwest_error(error);
        }
        next = error.source();
    }
    Outcome::Failure
}

/// Statuses 100 to 999 (all `http::StatusCode` can hold), one class each.
const FIRST_STATUS: u16 = 100;
const LAST_STATUS: u16 = 999;

type StatusPredicate = dyn Fn(StatusCode, &HeaderMap) -> Option<ResponseClass> + Send + Sync;

struct Rules {
    /// Index `status - 100`.
    table: Box<[ResponseClass]>,
    predicate: Option<Box<StatusPredicate>>,
}

impl Rules {
    fn defaults() -> Vec<ResponseClass> {
        (FIRST_STATUS..=LAST_STATUS)
            .map(|status| match status {
                408 | 529 => ResponseClass::Failure,
                429 => ResponseClass::RateLimit,
                100..=499 => ResponseClass::Success,
                _ => ResponseClass::Failure,
            })
            .collect()
    }
}

/// Classifies HTTP responses and their errors for a circuit breaker, and records streamed
/// responses when their body ends.
///
/// As a [`RecordOutcome`] it makes a [`CircuitBreakerService`] return
/// `http::Response<RecordingBody<B>>` (and, with the `reqwest` feature, `reqwest::Response`).
/// [`CircuitBreaker::http_layer`](crate::circuit_breaker::CircuitBreaker::http_layer) is the
/// one-line setup with the defaults:
///
/// | response | class |
/// |---|---|
/// | 5xx, 408 Request Timeout, 529 Overloaded | [`Failure`](ResponseClass::Failure) (with `Retry-After`: open at least that long) |
/// | 429 Too Many Requests | [`RateLimit`](ResponseClass::RateLimit): cool down for `Retry-After` |
/// | other 4xx, 1xx, 2xx, 3xx | [`Success`](ResponseClass::Success) (the upstream answered) |
/// | non-standard 600 to 999 | [`Failure`](ResponseClass::Failure) |
/// | an error | [`DefaultErrorClassifier`]: a failure, unless it never reached the upstream |
///
/// A success is recorded when its body ends (see [`RecordingBody`]), so a stream that dies
/// halfway is a failure and a half-open probe slot is held until the last byte; everything
/// else is recorded as soon as the head arrives.
///
/// Cloning is cheap (the rules are shared behind an `Arc`).
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::Outcome;
/// use tower_breaker::circuit_breaker::CircuitBreaker;
/// use tower_breaker::http::{HttpClassifier, ResponseClass};
///
/// let classifier = HttpClassifier::builder()
///     .status_range(400..500, ResponseClass::Ignored)              // client errors count for nothing
///     .status(http::StatusCode::NOT_FOUND, ResponseClass::Failure) // later rules win: 404 fails
///     .classify_with(|status, headers| {
///         // Some providers say "overloaded" with a 200 and a header.
///         (status.is_success() && headers.contains_key("x-overloaded")).then_some(ResponseClass::Failure)
///     })
///     .body_idle_timeout(Duration::from_secs(60)) // a stream silent for 60 s is a failure
///     .build()?;
/// assert_eq!(classifier.classify_response(http::StatusCode::NOT_FOUND, &http::HeaderMap::new()), ResponseClass::Failure);
/// assert_eq!(classifier.classify_response(http::StatusCode::FORBIDDEN, &http::HeaderMap::new()), ResponseClass::Ignored);
///
/// let breaker = CircuitBreaker::builder("llm").build()?;
/// let layer = breaker.layer().record_with(classifier);
/// # let _ = layer;
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
///
/// [`CircuitBreakerService`]: crate::circuit_breaker::CircuitBreakerService
#[derive(Clone)]
pub struct HttpClassifier<F = DefaultErrorClassifier> {
    rules: Arc<Rules>,
    record_at_body_end: bool,
    body_idle_timeout: Option<Duration>,
    errors: F,
}

impl HttpClassifier {
    /// The default classifier (see the table above).
    pub fn new() -> Self {
        Self {
            rules: Arc::new(Rules {
                table: Rules::defaults().into_boxed_slice(),
                predicate: None,
            }),
            record_at_body_end: true,
            body_idle_timeout: None,
            errors: DefaultErrorClassifier,
        }
    }

    /// A builder that starts from the defaults.
    pub fn builder() -> HttpClassifierBuilder {
        HttpClassifierBuilder {
            table: Rules::defaults(),
            predicate: None,
            record_at_body_end: true,
            body_idle_timeout: None,
            errors: DefaultErrorClassifier,
            error: None,
        }
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl<F> HttpClassifier<F> {
    /// The class of a response head: the predicate set with
    /// [`classify_with`](HttpClassifierBuilder::classify_with) if it has an answer, else the
    /// status rules.
    pub fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> ResponseClass {
        if let Some(class) = self
            .rules
            .predicate
            .as_ref()
            .and_then(|predicate| predicate(status, headers))
        {
            return class;
        }
        let index = usize::from(status.as_u16().saturating_sub(FIRST_STATUS));
        // `StatusCode` holds 100 to 999, so the index is always in the table.
        self.rules
            .table
            .get(index)
            .copied()
            .unwrap_or(ResponseClass::Failure)
    }

    /// The class of a response head with its extensions: a provider error of the
    /// [`InsufficientQuota`](crate::provider_error::ProviderErrorKind::InsufficientQuota) kind
    /// (read by a [`ProviderErrorLayer`](crate::provider_error::ProviderErrorLayer)) is a
    /// failure whatever its status: the key is out, which no cool-down mends.
    pub(crate) fn classify_head(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        extensions: &::http::Extensions,
    ) -> ResponseClass {
        if extensions.get::<KeyOutOfQuota>().is_some() {
            return ResponseClass::Failure;
        }
        self.classify_response(status, headers)
    }

    /// The idle timeout of recorded bodies, if one is set.
    pub fn body_idle_timeout(&self) -> Option<Duration> {
        self.body_idle_timeout
    }

    /// Records `response` on `permit`, now or when its body ends, and returns it with a
    /// [`RecordingBody`]. This is what the tower service does; call it yourself to use the
    /// classifier with a permit from
    /// [`CircuitBreaker::try_acquire`](crate::circuit_breaker::CircuitBreaker::try_acquire).
    ///
    /// ```
    /// use http_body_util::BodyExt;
    /// use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
    /// use tower_breaker::http::HttpClassifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// let breaker = CircuitBreaker::builder("api").build()?;
    /// let classifier = HttpClassifier::new();
    ///
    /// let permit = breaker.try_acquire()?;
    /// let response = http::Response::new(String::from("streamed answer"));
    /// let response = classifier.record_response(response, permit);
    /// assert!(response.body().holds_permit()); // recorded when the body ends
    /// let body = response.into_body().collect().await?.to_bytes();
    /// assert_eq!(body, "streamed answer");
    /// assert_eq!(breaker.metrics().successful_calls, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn record_response<B: Body>(
        &self,
        response: ::http::Response<B>,
        permit: Permit,
    ) -> ::http::Response<RecordingBody<B>> {
        let class =
            self.classify_head(response.status(), response.headers(), response.extensions());
        if class == ResponseClass::Success && self.record_at_body_end {
            let idle = self.body_idle_timeout;
            response.map(|body| RecordingBody::new(body, permit, SuccessOnEos, idle))
        } else {
            class.record(permit, Some(response.headers()));
            response.map(RecordingBody::recorded)
        }
    }

    /// The error classifier.
    pub fn errors(&self) -> &F {
        &self.errors
    }

    /// True when successes are recorded at the end of their body (the default); see
    /// [`HttpClassifierBuilder::record_at_body_end`].
    pub fn records_at_body_end(&self) -> bool {
        self.record_at_body_end
    }
}

impl<B, E, F> RecordOutcome<::http::Response<B>, E> for HttpClassifier<F>
where
    B: Body,
    F: ClassifyError<E>,
{
    type Response = ::http::Response<RecordingBody<B>>;

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

impl<F> fmt::Debug for HttpClassifier<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClassifier")
            .field("predicate", &self.rules.predicate.is_some())
            .field("record_at_body_end", &self.record_at_body_end)
            .field("body_idle_timeout", &self.body_idle_timeout)
            .finish_non_exhaustive()
    }
}

/// Builds an [`HttpClassifier`], starting from the defaults. Rules added later win over
/// earlier ones and over the defaults.
///
/// ```
/// use tower_breaker::http::{HttpClassifier, ResponseClass};
///
/// let err = HttpClassifier::builder().status_range(500..=450, ResponseClass::Failure).build().unwrap_err();
/// assert_eq!(err.field(), "status_range");
/// ```
pub struct HttpClassifierBuilder<F = DefaultErrorClassifier> {
    table: Vec<ResponseClass>,
    predicate: Option<Box<StatusPredicate>>,
    record_at_body_end: bool,
    body_idle_timeout: Option<Duration>,
    errors: F,
    error: Option<ConfigError>,
}

const COMPONENT: &str = "HttpClassifier";

impl<F> HttpClassifierBuilder<F> {
    /// Classifies one status.
    pub fn status(self, status: StatusCode, class: ResponseClass) -> Self {
        let status = status.as_u16();
        self.status_range(status..=status, class)
    }

    /// Classifies every status in `range` (`500..600`, `500..=599`, `400..`; within 100 to
    /// 999). An empty or out-of-range range is a [`ConfigError`] at
    /// [`build`](Self::build).
    pub fn status_range(mut self, range: impl RangeBounds<u16>, class: ResponseClass) -> Self {
        let start = match range.start_bound() {
            Bound::Included(&s) => Some(s),
            Bound::Excluded(&s) => s.checked_add(1),
            Bound::Unbounded => Some(FIRST_STATUS),
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Some(e),
            Bound::Excluded(&e) => e.checked_sub(1),
            Bound::Unbounded => Some(LAST_STATUS),
        };
        match (start, end) {
            (Some(start), Some(end))
                if FIRST_STATUS <= start && start <= end && end <= LAST_STATUS =>
            {
                let (start, end) = (
                    usize::from(start - FIRST_STATUS),
                    usize::from(end - FIRST_STATUS),
                );
                if let Some(slots) = self.table.get_mut(start..=end) {
                    slots.fill(class);
                }
            }
            _ => {
                let value = format!("{:?}..{:?}", range.start_bound(), range.end_bound());
                self.error.get_or_insert_with(|| {
                    ConfigError::new(
                        COMPONENT,
                        "status_range",
                        value,
                        "a non-empty range within 100 ..= 999",
                    )
                });
            }
        }
        self
    }

    /// A predicate asked first for every response head; `None` falls through to the status
    /// rules. Only one predicate is kept (the last one set).
    pub fn classify_with<P>(mut self, predicate: P) -> Self
    where
        P: Fn(StatusCode, &HeaderMap) -> Option<ResponseClass> + Send + Sync + 'static,
    {
        self.predicate = Some(Box::new(predicate));
        self
    }

    /// How errors of the inner service count: a closure `Fn(&E) -> Outcome` or any
    /// [`ClassifyError`]. Replaces [`DefaultErrorClassifier`].
    pub fn classify_errors<F2>(self, errors: F2) -> HttpClassifierBuilder<F2> {
        HttpClassifierBuilder {
            table: self.table,
            predicate: self.predicate,
            record_at_body_end: self.record_at_body_end,
            body_idle_timeout: self.body_idle_timeout,
            errors,
            error: self.error,
        }
    }

    /// When `true` (the default), a success is recorded when its body ends, fails or is
    /// dropped. When `false`, it is recorded as soon as the head arrives: use this when your
    /// code often drops bodies unread (each would count as `Ignored`), and give up the
    /// detection of streams that fail midway.
    pub fn record_at_body_end(mut self, yes: bool) -> Self {
        self.record_at_body_end = yes;
        self
    }

    /// Fails a recorded body that yields nothing for `idle` while it is being read (1 ms to
    /// 24 h; default: none). The body then returns a [`BodyIdleTimeout`](super::BodyIdleTimeout)
    /// error and the call counts as a failure: an upstream that stalls mid-stream is caught.
    ///
    /// A timeout layer around the service only bounds the wait for the response head, and a
    /// caller that gives up on a silent body and drops it records `Ignored`. The timer runs
    /// only while the caller waits on the body, so a slow reader does not trip it. It needs a
    /// tokio runtime with the time driver, like `tokio::time::timeout`.
    pub fn body_idle_timeout(mut self, idle: Duration) -> Self {
        self.body_idle_timeout = Some(idle);
        self
    }

    /// The classifier, or the first out-of-range setting.
    pub fn build(self) -> Result<HttpClassifier<F>, ConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let check = Check {
            component: COMPONENT,
        };
        if let Some(idle) = self.body_idle_timeout {
            check.duration("body_idle_timeout", idle, MIN_DURATION, MAX_DURATION)?;
        }
        Ok(HttpClassifier {
            rules: Arc::new(Rules {
                table: self.table.into_boxed_slice(),
                predicate: self.predicate,
            }),
            record_at_body_end: self.record_at_body_end,
            body_idle_timeout: self.body_idle_timeout,
            errors: self.errors,
        })
    }
}

impl<F> fmt::Debug for HttpClassifierBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClassifierBuilder")
            .field("predicate", &self.predicate.is_some())
            .field("record_at_body_end", &self.record_at_body_end)
            .field("body_idle_timeout", &self.body_idle_timeout)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// Marks a response whose provider said the key is out of quota (OpenAI's
/// `insufficient_quota`): set by the provider-error layer, read by [`HttpClassifier`], which
/// then counts a failure whatever the status (no cool-down mends an empty account).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyOutOfQuota;
