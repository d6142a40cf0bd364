//! The layer and service that open the span.

use super::future::ResponseFuture;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

/// The name of the span [`CallSpan`] opens for each call.
pub const SPAN_NAME: &str = "tower_breaker.call";

/// A span named `tower_breaker.call` (target `tower_breaker`, level `INFO`) with `stack =
/// name` and every field this crate records declared empty; see the [module docs](super).
///
/// For a span of your own, declare the fields the same way:
///
/// ```
/// use tracing::field::Empty;
///
/// let span = tracing::info_span!(
///     "my_call",
///     attempts = Empty,
///     breaker.name = Empty,
///     breaker.state = Empty,
///     outcome = Empty,
///     ttft_ms = Empty,
///     quota.wait_ms = Empty,
///     error.kind = Empty,
/// );
/// # let _ = span;
/// ```
pub fn call_span(name: &str) -> Span {
    tracing::info_span!(
        target: "tower_breaker",
        "tower_breaker.call",
        stack = name,
        attempts = tracing::field::Empty,
        breaker.name = tracing::field::Empty,
        breaker.state = tracing::field::Empty,
        outcome = tracing::field::Empty,
        ttft_ms = tracing::field::Empty,
        quota.wait_ms = tracing::field::Empty,
        error.kind = tracing::field::Empty,
    )
}

/// Opens a [`call_span`] around each call of the services it wraps; see the
/// [module docs](super). Cloning it, or wrapping several services, shares the name only.
#[derive(Debug, Clone)]
pub struct CallSpanLayer {
    name: Arc<str>,
}

impl CallSpanLayer {
    /// A layer whose spans carry `stack = name`.
    pub fn new(name: &str) -> Self {
        Self { name: name.into() }
    }
}

impl<S> Layer<S> for CallSpanLayer {
    type Service = CallSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallSpan {
            inner,
            name: self.name.clone(),
        }
    }
}

/// Runs each call of `S` in its own [`call_span`], and records its `outcome` and `error.kind`
/// when it ends; made by [`CallSpanLayer`].
#[derive(Debug, Clone)]
pub struct CallSpan<S> {
    inner: S,
    name: Arc<str>,
}

impl<S> CallSpan<S> {
    /// Wraps `inner`; its spans carry `stack = name`.
    pub fn new(inner: S, name: &str) -> Self {
        CallSpanLayer::new(name).layer(inner)
    }

    /// A [`CallSpanLayer`] with this name.
    pub fn layer(name: &str) -> CallSpanLayer {
        CallSpanLayer::new(name)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for CallSpan<S>
where
    S: Service<Req>,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        // With no subscriber (the global max level is `OFF`: one relaxed load), no span is
        // made, entered or dropped.
        if !tracing::level_enabled!(tracing::Level::INFO) {
            return ResponseFuture::new(self.inner.call(req), None);
        }
        let span = call_span(&self.name);
        if span.is_disabled() {
            return ResponseFuture::new(self.inner.call(req), None);
        }
        // Entered for `call` too: `tower::retry` sends the first attempt from its `call`, and
        // the breaker admits it there.
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ResponseFuture::new(future, Some(span))
    }
}
