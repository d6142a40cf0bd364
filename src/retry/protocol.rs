use crate::circuit_breaker::CircuitBreaker;
use std::time::Duration;

/// What a [`RetryPolicy`](super::RetryPolicy) needs to know about the requests and responses
/// of a protocol: how to copy a request for the next attempt, whether it is safe to send twice,
/// and how long the server asked us to wait.
///
/// Ready-made: [`Cloneable`] (any `Clone` request), `HttpRequests` (feature `http`) and
/// `ReqwestRequests` (feature `reqwest`). Closures `Fn(&Req) -> Option<Req>` implement it too
/// (every request idempotent, no server delay).
///
/// A request that [`clone_request`](Self::clone_request) cannot copy is sent once, and its
/// result goes back to the caller as it is: it is never dropped.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::retry::Protocol;
///
/// /// A toy protocol: requests are (is_write, payload) pairs; a response says how long to wait.
/// #[derive(Clone)]
/// struct Toy;
///
/// impl<E> Protocol<(bool, String), Option<Duration>, E> for Toy {
///     fn clone_request(&self, req: &(bool, String)) -> Option<(bool, String)> {
///         Some(req.clone())
///     }
///
///     fn is_idempotent(&self, req: &(bool, String)) -> bool {
///         !req.0 // reads only
///     }
///
///     fn server_delay(&self, result: &Result<Option<Duration>, E>) -> Option<Duration> {
///         result.as_ref().ok().copied().flatten()
///     }
/// }
///
/// let toy = Toy;
/// let read = (false, "get".to_string());
/// assert!(Protocol::<_, _, ()>::is_idempotent(&toy, &read));
/// assert_eq!(
///     Protocol::<_, _, ()>::server_delay(&toy, &Ok(Some(Duration::from_secs(2)))),
///     Some(Duration::from_secs(2))
/// );
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is no retry protocol for `{Req}` requests and `{Res}` responses",
    label = "cannot copy, judge or read `{Req}` / `{Res}` for a retry",
    note = "for `reqwest::Client`: `RetryPolicy::builder().reqwest()` (or `.llm()` for LLM APIs, feature `reqwest`)",
    note = "for `http::Request<B>` with a `Clone` body: `.http()` (or `.llm()`); for any `Clone` request: the default `Cloneable`; otherwise implement `Protocol`"
)]
pub trait Protocol<Req, Res, E> {
    /// A copy of `req` for another attempt, or `None` when it cannot be copied (a streamed
    /// body, say): then it is sent once and never retried.
    fn clone_request(&self, req: &Req) -> Option<Req>;

    /// True when sending `req` twice does no harm. The default: every request is.
    fn is_idempotent(&self, req: &Req) -> bool {
        let _ = req;
        true
    }

    /// How long the server asked us to wait before trying again (`Retry-After`), if it did.
    /// When it did, this wait replaces the backoff's delay. The default: never.
    fn server_delay(&self, result: &Result<Res, E>) -> Option<Duration> {
        let _ = result;
        None
    }

    /// The circuit breaker `req`'s attempts go through, when it depends on the request (one
    /// breaker per model: [`Builder::breaker_per_key`](super::Builder::breaker_per_key)). The
    /// default: none, and the policy's own [`Builder::breaker`](super::Builder::breaker)
    /// applies.
    fn breaker(&self, req: &Req) -> Option<CircuitBreaker> {
        let _ = req;
        None
    }
}

/// Copies requests with `Clone`; every request is idempotent; no server delays. The default
/// [`Protocol`] of a [`RetryPolicy`](super::RetryPolicy).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cloneable;

impl<Req: Clone, Res, E> Protocol<Req, Res, E> for Cloneable {
    fn clone_request(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

impl<F, Req, Res, E> Protocol<Req, Res, E> for F
where
    F: Fn(&Req) -> Option<Req>,
{
    fn clone_request(&self, req: &Req) -> Option<Req> {
        self(req)
    }
}
