//! The response future of [`CallSpan`](super::CallSpan).

use crate::rejection::Rejection;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tracing::Span;

pin_project! {
    /// The future of a [`CallSpan`](super::CallSpan) call: polls the call inside its span,
    /// and records `outcome` and `error.kind` when it ends.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // `None` when no subscriber wanted the span: polls then touch no span at all.
        span: Option<Span>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, span: Option<Span>) -> Self {
        Self { inner, span }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: 'static,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(span) = this.span.as_ref() else {
            return this.inner.poll(cx);
        };
        let _entered = span.enter();
        let result = ready!(this.inner.poll(cx));
        match &result {
            Ok(_) => {
                span.record("outcome", "ok");
            }
            Err(error) => {
                span.record("outcome", "error");
                span.record("error.kind", error_kind(error));
            }
        }
        Poll::Ready(result)
    }
}

/// The kind of a call's error: one of this crate's rejections, a timeout, or `error`.
fn error_kind<E: 'static>(error: &E) -> &'static str {
    if let Some(rejection) = Rejection::of_any(error) {
        return rejection.kind().as_str();
    }
    if is_elapsed(error) {
        return "timeout";
    }
    "error"
}

/// True for tower's timeout error, as the error itself or boxed.
#[cfg(feature = "stack")]
fn is_elapsed<E: 'static>(error: &E) -> bool {
    use tower::timeout::error::Elapsed;
    let any: &dyn std::any::Any = error;
    any.downcast_ref::<crate::BoxError>()
        .is_some_and(|boxed| boxed.is::<Elapsed>())
        || any.is::<Elapsed>()
}

/// Without `stack`, tower's timeout is not compiled in.
#[cfg(not(feature = "stack"))]
fn is_elapsed<E: 'static>(_: &E) -> bool {
    false
}
