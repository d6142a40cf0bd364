use super::Protocol;
use super::protocol_http::is_idempotent;
use http::{HeaderMap, Method};
use std::time::Duration;

/// The longest server wait the official OpenAI and Anthropic SDKs honour; past it they use
/// their own backoff instead.
pub const LLM_MAX_SERVER_DELAY: Duration = Duration::from_secs(60);

/// The [`Protocol`] of LLM APIs (OpenAI-compatible, Anthropic), for `http::Request<B>` with a
/// `Clone` body and, with the `reqwest` feature, `reqwest::Request`. The rules of the official
/// Python and TypeScript SDKs (`_base_client.py`):
///
/// - **POSTs are retried**: a chat or text completion, an embedding, a moderation creates
///   nothing; a retry costs tokens, not correctness. So are the idempotent methods and anything
///   with an `Idempotency-Key`; other methods (PATCH) are not.
/// - **The server's wait**: `retry-after-ms`, then `Retry-After` (seconds or an HTTP date), on
///   any response, honoured when it is above zero and at most 60 s
///   ([`LLM_MAX_SERVER_DELAY`]); a longer or missing one gives way to the backoff, as in the SDKs.
///
/// Pair it with [`RetryOnStatus::llm`](super::RetryOnStatus::llm), or take both with
/// [`Builder::llm`](super::Builder::llm).
///
/// ```
/// use http::{Request, Response};
/// use std::time::Duration;
/// use tower_breaker::retry::{LlmRequests, Protocol};
///
/// fn rules() -> impl Protocol<Request<String>, Response<()>, std::io::Error> {
///     LlmRequests
/// }
/// let rules = rules();
/// let chat = Request::post("/v1/chat/completions").body(String::from("{}"))?;
/// assert!(rules.is_idempotent(&chat));
///
/// let limited = Response::builder().status(429).header("retry-after-ms", "1500").body(())?;
/// assert_eq!(rules.server_delay(&Ok(limited)), Some(Duration::from_millis(1500)));
/// let overloaded = Response::builder().status(529).header("retry-after", "600").body(())?;
/// assert_eq!(rules.server_delay(&Ok(overloaded)), None); // past 60 s: the backoff decides
/// # Ok::<_, http::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LlmRequests;

pub(crate) fn llm_is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::POST || is_idempotent(method, headers)
}

pub(crate) fn llm_server_delay(headers: &HeaderMap) -> Option<Duration> {
    crate::http::retry_after(headers)
        .filter(|wait| !wait.is_zero() && *wait <= LLM_MAX_SERVER_DELAY)
}

impl<B, ResBody, E> Protocol<http::Request<B>, http::Response<ResBody>, E> for LlmRequests
where
    B: Clone,
{
    fn clone_request(&self, req: &http::Request<B>) -> Option<http::Request<B>> {
        Some(req.clone())
    }

    fn is_idempotent(&self, req: &http::Request<B>) -> bool {
        llm_is_idempotent(req.method(), req.headers())
    }

    fn server_delay(&self, result: &Result<http::Response<ResBody>, E>) -> Option<Duration> {
        llm_server_delay(result.as_ref().ok()?.headers())
    }
}

#[cfg(feature = "reqwest")]
impl<E> Protocol<reqwest::Request, reqwest::Response, E> for LlmRequests {
    fn clone_request(&self, req: &reqwest::Request) -> Option<reqwest::Request> {
        req.try_clone()
    }

    fn is_idempotent(&self, req: &reqwest::Request) -> bool {
        llm_is_idempotent(req.method(), req.headers())
    }

    fn server_delay(&self, result: &Result<reqwest::Response, E>) -> Option<Duration> {
        llm_server_delay(result.as_ref().ok()?.headers())
    }
}
