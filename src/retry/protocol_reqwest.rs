use super::Protocol;
use super::protocol_http::{is_idempotent, server_delay};
use std::time::Duration;

/// The [`Protocol`] for `reqwest::Request` and `reqwest::Response` (`reqwest::Client` is a
/// tower `Service<reqwest::Request>`): the rules of [`HttpRequests`](super::HttpRequests), with
/// requests copied by `Request::try_clone`. A request with a streamed body cannot be copied: it
/// is sent once and its result returned as it is.
///
/// ```
/// use tower_breaker::retry::{Protocol, ReqwestRequests};
///
/// let get = reqwest::Request::new(reqwest::Method::GET, "http://127.0.0.1/v1/models".parse()?);
/// let copy = <ReqwestRequests as Protocol<_, reqwest::Response, ()>>::clone_request(&ReqwestRequests, &get);
/// assert_eq!(copy.map(|r| r.url().path().to_string()).as_deref(), Some("/v1/models"));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
///
/// The HTTP rules copy `http::Request`s, not `reqwest::Request`s; a policy built with `.http()`
/// around a `reqwest::Client` does not compile, and the error says what to use instead
/// ("`HttpRequests` is no retry protocol for `reqwest::Request` requests ... for
/// `reqwest::Client`: `RetryPolicy::builder().reqwest()`"):
///
/// ```compile_fail,E0277
/// use tower_breaker::retry::{HttpRequests, Protocol};
///
/// fn protocol_for_reqwest<P: Protocol<reqwest::Request, reqwest::Response, reqwest::Error>>(_: P) {}
/// protocol_for_reqwest(HttpRequests);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ReqwestRequests;

impl<E> Protocol<reqwest::Request, reqwest::Response, E> for ReqwestRequests {
    fn clone_request(&self, req: &reqwest::Request) -> Option<reqwest::Request> {
        req.try_clone()
    }

    fn is_idempotent(&self, req: &reqwest::Request) -> bool {
        is_idempotent(req.method(), req.headers())
    }

    fn server_delay(&self, result: &Result<reqwest::Response, E>) -> Option<Duration> {
        let response = result.as_ref().ok()?;
        server_delay(response.status(), response.headers())
    }
}
