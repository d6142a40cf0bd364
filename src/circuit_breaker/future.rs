use super::{CircuitOpen, HoldRejected, Permit, RecordOutcome};
use crate::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    /// The future of a [`CircuitBreakerService`](super::CircuitBreakerService) call.
    ///
    /// Holds the call's permit and hands it to the recorder when the inner future finishes;
    /// dropped before that, the permit counts as `Ignored` and frees its slot.
    pub struct ResponseFuture<F, R> {
        #[pin]
        kind: Kind<F>,
        pending: Option<(Permit, R)>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F },
        Rejected { error: Rejection },
    }
}

/// Why a call failed without reaching the inner service.
#[derive(Debug, Clone)]
pub(crate) enum Rejection {
    Open(CircuitOpen),
    Hold(Box<HoldRejected>),
}

impl<F, R> ResponseFuture<F, R> {
    pub(crate) fn called(future: F, permit: Permit, recorder: R) -> Self {
        permit.record_admission();
        Self {
            kind: Kind::Called { future },
            pending: Some((permit, recorder)),
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        crate::call_span::record_rejected(error.name(), error.state().as_str());
        Self::failed(Rejection::Open(error))
    }

    pub(crate) fn failed(error: Rejection) -> Self {
        Self {
            kind: Kind::Rejected { error },
            pending: None,
        }
    }
}

impl<F, R, T, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    R: RecordOutcome<T, E>,
{
    type Output = Result<R::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called { future } => {
                let result = ready!(future.poll(cx));
                match this.pending.take() {
                    Some((permit, recorder)) => {
                        Poll::Ready(recorder.record(result, permit).map_err(Into::into))
                    }
                    // Only reachable by polling again after completion.
                    None => {
                        Poll::Ready(Err("circuit breaker future polled after completion".into()))
                    }
                }
            }
            KindProj::Rejected { error } => Poll::Ready(Err(match error {
                Rejection::Open(open) => open.clone().into_box_error(),
                Rejection::Hold(rejected) => Box::new((**rejected).clone()),
            })),
        }
    }
}

impl<F, R> fmt::Debug for ResponseFuture<F, R> {
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
