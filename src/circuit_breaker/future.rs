use super::{CircuitOpen, Permit};
use crate::BoxError;
use crate::outcome::Classify;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    /// The future of a [`CircuitBreakerService`](super::CircuitBreakerService) call.
    ///
    /// Holds the call's permit and records the classified outcome when the inner future
    /// finishes; dropped before that, the permit counts as `Ignored` and frees its slot.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F>,
        permit: Option<Permit>,
        classifier: Option<C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F },
        Rejected { error: CircuitOpen },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, permit: Permit, classifier: C) -> Self {
        Self {
            kind: Kind::Called { future },
            permit: Some(permit),
            classifier: Some(classifier),
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        Self {
            kind: Kind::Rejected { error },
            permit: None,
            classifier: None,
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called { future } => {
                let result = ready!(future.poll(cx));
                if let (Some(permit), Some(classifier)) = (this.permit.take(), this.classifier.as_ref()) {
                    permit.record(classifier.classify(&result));
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Rejected { error } => Poll::Ready(Err(error.clone().into())),
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field(
                "state",
                &match self.kind {
                    Kind::Called { .. } => "called",
                    Kind::Rejected { .. } => "rejected",
                },
            )
            .finish()
    }
}
