//! How a failover copies requests and marks answers: [`FailoverProtocol`] and its
//! ready-made implementations.

use super::FailoverReport;
use std::sync::Arc;

/// What a [`Failover`](super::Failover) needs to know about a protocol's requests and
/// responses: how to copy a request for the next provider, and (optionally) how to mark the
/// answer with a [`FailoverReport`].
///
/// Ready-made: [`Cloneable`] (any `Clone` request; the default) and, with the `http` feature,
/// [`HttpRequests`] (`http::Request<B>` by `Clone`, `reqwest::Request` by `try_clone`, and the
/// report as a response extension). Closures `Fn(&Req) -> Option<Req>` implement it too.
///
/// A request that [`clone_request`](Self::clone_request) cannot copy (a streamed body) is sent
/// to the first provider that permits a call, and never to another: if that provider fails,
/// the [`AllProvidersFailed`](super::AllProvidersFailed) error says, for each provider left,
/// that the request could not be copied.
///
/// ```
/// use tower_breaker::failover::FailoverProtocol;
///
/// /// Requests that carry a one-shot token: a copy gets a fresh one.
/// struct Fresh;
///
/// impl FailoverProtocol<(u64, String), String> for Fresh {
///     fn clone_request(&self, req: &(u64, String)) -> Option<(u64, String)> {
///         Some((req.0 + 1, req.1.clone()))
///     }
/// }
/// assert_eq!(Fresh.clone_request(&(1, "hi".into())), Some((2, "hi".to_string())));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot copy `{Req}` requests for failover to the next provider",
    label = "a failover sends a copy of the request to each provider it tries",
    note = "for `reqwest::Request` (copied with `try_clone`) or `http::Request<B>`: `Failover::builder().http()` (feature `http`)",
    note = "for any `Clone` request: the default `Cloneable`; otherwise a closure `Fn(&Req) -> Option<Req>` or your own `FailoverProtocol`"
)]
pub trait FailoverProtocol<Req, Res> {
    /// A copy of `req` for another provider, or `None` when it cannot be copied.
    fn clone_request(&self, req: &Req) -> Option<Req>;

    /// Marks the answer with what the failover did. The default marks nothing.
    fn report(&self, res: &mut Res, report: FailoverReport) {
        let _ = (res, report);
    }

    /// Providers to try only after every other one, for this request (a restart after a
    /// provider cut its stream). The default: none. [`HttpRequests`] reads a [`TryLast`]
    /// extension of an `http::Request`.
    fn try_last(&self, req: &Req) -> Vec<Arc<str>> {
        let _ = req;
        Vec::new()
    }
}

/// The providers a [`Failover`](super::Failover) with [`HttpRequests`] tries only after
/// every other one, as an extension of the `http::Request`. The
/// [`Recover`](crate::stream::recover::Recover) middleware (feature `stream`) sets it when it
/// restarts an answer that a provider cut or stalled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TryLast(pub Vec<Arc<str>>);

/// Copies requests with `Clone`; counts nothing, marks nothing. The default
/// [`FailoverProtocol`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Cloneable;

impl<Req: Clone, Res> FailoverProtocol<Req, Res> for Cloneable {
    fn clone_request(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

impl<F, Req, Res> FailoverProtocol<Req, Res> for F
where
    F: Fn(&Req) -> Option<Req>,
{
    fn clone_request(&self, req: &Req) -> Option<Req> {
        self(req)
    }
}

/// The [`FailoverProtocol`] of HTTP clients (feature `http`):
///
/// - copies `http::Request<B>` with `Clone` (so `B: Clone`: `Full<Bytes>`, `String`,
///   `Bytes`), and `reqwest::Request` with `try_clone` (feature `reqwest`), which fails for a
///   streamed body: such a request goes to one provider only (see [`FailoverProtocol`]);
/// - inserts the [`FailoverReport`] as an extension of the response (`http::Response<B>`,
///   `reqwest::Response`).
///
/// ```
/// use tower::{ServiceExt, util::BoxCloneService};
/// use tower_breaker::BoxError;
/// use tower_breaker::failover::Failover;
///
/// let client = BoxCloneService::new(reqwest::Client::new().map_err(BoxError::from));
/// let failover = Failover::builder()
///     .http() // `reqwest::Request` has no `Clone`: copied with `try_clone`
///     .provider("openai", None, client.clone())
///     .provider("backup", None, client)
///     .build();
/// # fn takes<S: tower::Service<reqwest::Request>>(_: S) {}
/// takes(failover);
/// ```
///
/// Without it, the error says that the request cannot be copied:
///
/// ```compile_fail,E0277
/// use tower::{ServiceExt, util::BoxCloneService};
/// use tower_breaker::BoxError;
/// use tower_breaker::failover::Failover;
///
/// let client = BoxCloneService::new(reqwest::Client::new().map_err(BoxError::from));
/// let failover = Failover::builder().provider("openai", None, client).build();
/// # fn takes<S: tower::Service<reqwest::Request>>(_: S) {}
/// takes(failover); // `Cloneable` cannot copy `reqwest::Request` requests for failover
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpRequests;

#[cfg(feature = "http")]
impl<B: Clone, ResBody> FailoverProtocol<http::Request<B>, http::Response<ResBody>>
    for HttpRequests
{
    fn clone_request(&self, req: &http::Request<B>) -> Option<http::Request<B>> {
        Some(req.clone())
    }

    fn report(&self, res: &mut http::Response<ResBody>, report: FailoverReport) {
        res.extensions_mut().insert(report);
    }

    fn try_last(&self, req: &http::Request<B>) -> Vec<Arc<str>> {
        req.extensions()
            .get::<TryLast>()
            .map(|last| last.0.clone())
            .unwrap_or_default()
    }
}

#[cfg(feature = "reqwest")]
impl FailoverProtocol<reqwest::Request, reqwest::Response> for HttpRequests {
    fn clone_request(&self, req: &reqwest::Request) -> Option<reqwest::Request> {
        req.try_clone()
    }

    fn report(&self, res: &mut reqwest::Response, report: FailoverReport) {
        res.extensions_mut().insert(report);
    }
}
