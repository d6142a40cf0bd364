use super::Protocol;
use crate::{Classify, Outcome};
use http::{HeaderMap, Method, StatusCode};
use std::time::Duration;

/// The header that makes a POST or PATCH safe to retry, for APIs that deduplicate on it.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// True when a request with this method and these headers may be sent twice: GET, HEAD,
/// OPTIONS, TRACE, PUT and DELETE always (RFC 9110 §9.2.2), any other method (POST, PATCH, ...)
/// only with an `Idempotency-Key` header.
///
/// ```
/// use http::{HeaderMap, Method};
/// use tower_breaker::retry::is_idempotent;
///
/// let mut headers = HeaderMap::new();
/// assert!(is_idempotent(&Method::GET, &headers));
/// assert!(!is_idempotent(&Method::POST, &headers));
/// headers.insert("idempotency-key", "8e03978e-40d5-43e8-bc93-6894a57f9324".parse().unwrap());
/// assert!(is_idempotent(&Method::POST, &headers));
/// ```
pub fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || headers.contains_key(IDEMPOTENCY_KEY)
}

/// The [`Protocol`] for `http::Request<B>` and `http::Response<B>`:
///
/// - copies a request with `Clone`, so its body must be `Clone` (`Full<Bytes>`, `String`,
///   `Bytes`, `Empty<Bytes>` are);
/// - idempotent requests only, by [`is_idempotent`] (unless `retry_non_idempotent(true)`);
/// - on a 429 or 503, the wait the server asked for with `retry-after-ms` or `Retry-After`
///   (seconds or an HTTP date), read by [`crate::http::retry_after`].
///
/// ```
/// use http::{Request, Response};
/// use std::time::Duration;
/// use tower_breaker::retry::{HttpRequests, Protocol};
///
/// // `Protocol` is generic over the response and error types: name them once.
/// fn rules() -> impl Protocol<Request<String>, Response<()>, std::io::Error> {
///     HttpRequests
/// }
/// let rules = rules();
///
/// let post = Request::post("/v1/chat").body(String::from("{}"))?;
/// assert!(!rules.is_idempotent(&post));
/// let keyed = Request::post("/v1/chat").header("idempotency-key", "k-1").body(String::new())?;
/// assert!(rules.is_idempotent(&keyed));
/// assert!(rules.clone_request(&keyed).is_some());
///
/// let busy = Response::builder().status(503).header("retry-after", "2").body(())?;
/// assert_eq!(rules.server_delay(&Ok(busy)), Some(Duration::from_secs(2)));
/// let failed = Response::builder().status(500).header("retry-after", "2").body(())?;
/// assert_eq!(rules.server_delay(&Ok(failed)), None); // only 429 and 503
/// # Ok::<_, http::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpRequests;

impl<B, ResBody, E> Protocol<http::Request<B>, http::Response<ResBody>, E> for HttpRequests
where
    B: Clone,
{
    fn clone_request(&self, req: &http::Request<B>) -> Option<http::Request<B>> {
        Some(req.clone())
    }

    fn is_idempotent(&self, req: &http::Request<B>) -> bool {
        is_idempotent(req.method(), req.headers())
    }

    fn server_delay(&self, result: &Result<http::Response<ResBody>, E>) -> Option<Duration> {
        let response = result.as_ref().ok()?;
        server_delay(response.status(), response.headers())
    }
}

/// The server's wait on a 429 or 503.
pub(crate) fn server_delay(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        crate::http::retry_after(headers)
    } else {
        None
    }
}

/// A classifier for retries of HTTP calls: an error, or a response whose status is in the set,
/// is a [`Outcome::Failure`] (retried); any other response is a success.
///
/// It differs from the breaker's classifier on purpose: a 429 is no sign of an outage (the
/// breaker ignores it) but is worth retrying after the server's `Retry-After`.
///
/// ```
/// use http::Response;
/// use tower_breaker::{Classify, Outcome};
/// use tower_breaker::retry::RetryOnStatus;
///
/// let classify = RetryOnStatus::standard().with(409).without(500);
/// let status = |code: u16| Ok::<_, ()>(Response::builder().status(code).body(()).unwrap());
/// assert_eq!(classify.classify(&status(409)), Outcome::Failure);
/// assert_eq!(classify.classify(&status(503)), Outcome::Failure);
/// assert_eq!(classify.classify(&status(500)), Outcome::Success); // removed from the set
/// assert_eq!(classify.classify(&status(404)), Outcome::Success);
/// assert_eq!(classify.classify(&Err::<Response<()>, _>(())), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOnStatus {
    /// One bit per status from 400 to 655; statuses outside 4xx and 5xx are never retried.
    bits: [u64; 4],
    /// Whether an `x-should-retry: true` / `false` header overrides the status.
    should_retry_header: bool,
}

/// The header with which OpenAI- and Anthropic-style APIs tell their SDKs whether to retry an
/// error response (`true` or `false`), whatever its status; read on 4xx and 5xx only.
pub const X_SHOULD_RETRY: &str = "x-should-retry";

impl RetryOnStatus {
    /// 408 Request Timeout, 429 Too Many Requests, 500 Internal Server Error, 502 Bad Gateway,
    /// 503 Service Unavailable, 504 Gateway Timeout.
    pub fn standard() -> Self {
        [408, 429, 500, 502, 503, 504]
            .into_iter()
            .fold(Self::none(), Self::with)
    }

    /// The official OpenAI and Anthropic SDKs' rules: 408, 409, 429 and every 5xx (529,
    /// "overloaded", included), and an `x-should-retry: true` or `false` header on an error
    /// response overrides its status ([`honour_should_retry`](Self::honour_should_retry)).
    ///
    /// ```
    /// use http::Response;
    /// use tower_breaker::{Classify, Outcome};
    /// use tower_breaker::retry::RetryOnStatus;
    ///
    /// let sdk = RetryOnStatus::llm();
    /// let status = |code: u16| Ok::<_, ()>(Response::builder().status(code).body(()).unwrap());
    /// for code in [408, 409, 429, 500, 503, 529] {
    ///     assert_eq!(sdk.classify(&status(code)), Outcome::Failure, "{code}");
    /// }
    /// assert_eq!(sdk.classify(&status(400)), Outcome::Success);
    /// let told_not_to = Response::builder().status(503).header("x-should-retry", "false").body(()).unwrap();
    /// assert_eq!(sdk.classify(&Ok::<_, ()>(told_not_to)), Outcome::Success);
    /// let told_to = Response::builder().status(400).header("x-should-retry", "true").body(()).unwrap();
    /// assert_eq!(sdk.classify(&Ok::<_, ()>(told_to)), Outcome::Failure);
    /// let answered = Response::builder().status(200).header("x-should-retry", "true").body(()).unwrap();
    /// assert_eq!(sdk.classify(&Ok::<_, ()>(answered)), Outcome::Success); // never bought twice
    /// ```
    pub fn llm() -> Self {
        (500..=599)
            .fold(Self::none(), Self::with)
            .with(408)
            .with(409)
            .with(429)
            .honour_should_retry(true)
    }

    /// No status: only errors are retried.
    pub fn none() -> Self {
        Self {
            bits: [0; 4],
            should_retry_header: false,
        }
    }

    /// Lets an `x-should-retry: true` or `false` header on an error response (4xx, 5xx)
    /// decide, whatever its status (default false, true for [`llm`](Self::llm)). Other values
    /// are ignored, and so is the header on any other response: a 200 is an answer, never
    /// retried.
    pub fn honour_should_retry(mut self, yes: bool) -> Self {
        self.should_retry_header = yes;
        self
    }

    /// Adds `status` (400 to 599; anything else is ignored).
    pub fn with(mut self, status: u16) -> Self {
        if let Some((word, bit)) = Self::slot(status) {
            self.bits[word] |= 1 << bit;
        }
        self
    }

    /// Removes `status`.
    pub fn without(mut self, status: u16) -> Self {
        if let Some((word, bit)) = Self::slot(status) {
            self.bits[word] &= !(1 << bit);
        }
        self
    }

    /// True when a response with `status` is retried.
    pub fn contains(&self, status: u16) -> bool {
        Self::slot(status).is_some_and(|(word, bit)| self.bits[word] & (1 << bit) != 0)
    }

    fn slot(status: u16) -> Option<(usize, u32)> {
        if (400..=599).contains(&status) {
            let index = status - 400;
            Some((usize::from(index / 64), u32::from(index % 64)))
        } else {
            None
        }
    }

    fn outcome(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        // Read on an error status only, as the SDKs do (they look at it once the status has
        // raised): any other response is an answer, and retrying a 200 buys it twice.
        if self.should_retry_header && (status.is_client_error() || status.is_server_error()) {
            match headers.get(X_SHOULD_RETRY).map(|v| v.as_bytes()) {
                Some(b"true") => return Outcome::Failure,
                Some(b"false") => return Outcome::Success,
                _ => {}
            }
        }
        if self.contains(status.as_u16()) {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }
}

impl Default for RetryOnStatus {
    /// [`RetryOnStatus::standard`].
    fn default() -> Self {
        Self::standard()
    }
}

impl<B, E> Classify<http::Response<B>, E> for RetryOnStatus {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            // A provider error no retry can help: the same answer would come back.
            Ok(response) if crate::provider_error::is_final(response.extensions()) => {
                Outcome::Success
            }
            Ok(response) => self.outcome(response.status(), response.headers()),
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(feature = "reqwest")]
impl<E> Classify<reqwest::Response, E> for RetryOnStatus {
    fn classify(&self, result: &Result<reqwest::Response, E>) -> Outcome {
        match result {
            Ok(response) if crate::provider_error::is_final(response.extensions()) => {
                Outcome::Success
            }
            Ok(response) => self.outcome(response.status(), response.headers()),
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_set() {
        let set = RetryOnStatus::standard();
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(set.contains(code), "{code}");
        }
        for code in [
            200,
            301,
            400,
            401,
            404,
            409,
            501,
            505,
            599,
            600,
            0,
            u16::MAX,
        ] {
            assert!(!set.contains(code), "{code}");
        }
        assert!(RetryOnStatus::none().with(599).contains(599));
        assert_eq!(RetryOnStatus::none().with(700), RetryOnStatus::none());
    }

    #[test]
    fn idempotent_methods() {
        let empty = HeaderMap::new();
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(is_idempotent(&m, &empty), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_idempotent(&m, &empty), "{m}");
        }
        let mut keyed = HeaderMap::new();
        keyed.insert("Idempotency-Key", http::HeaderValue::from_static("k"));
        assert!(is_idempotent(&Method::PATCH, &keyed));
    }
}
