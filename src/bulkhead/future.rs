//! The future of a bulkhead-guarded call.

use super::error::Rejection;
use super::{HoldPermit, Permit, ReleaseOnResponse};
use crate::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    /// The future of a [`BulkheadService`](super::BulkheadService) call.
    ///
    /// Holds the call's slot while the inner future runs and gives it back when that future
    /// finishes (to the [`HoldPermit`] on success) or fails, or when this future is dropped.
    /// A call the bulkhead rejected fails on its first poll.
    pub struct ResponseFuture<F, H = ReleaseOnResponse> {
        #[pin]
        kind: Kind<F>,
        // After `kind`: on drop the inner future goes before the slot is given back, so the
        // inner service never has more than `max_concurrent` futures alive.
        permit: Option<Permit>,
        hold: H,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F },
        Rejected { rejection: Option<Rejection> },
    }
}

impl<F, H> ResponseFuture<F, H> {
    pub(crate) fn called(future: F, permit: Permit, hold: H) -> Self {
        Self {
            kind: Kind::Called { future },
            permit: Some(permit),
            hold,
        }
    }

    pub(crate) fn rejected(rejection: Rejection, hold: H) -> Self {
        Self {
            kind: Kind::Rejected {
                rejection: Some(rejection),
            },
            permit: None,
            hold,
        }
    }
}

fn polled_after_completion() -> BoxError {
    "bulkhead::ResponseFuture polled after completion".into()
}

impl<F, H, T, E> Future for ResponseFuture<F, H>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    H: HoldPermit<T>,
{
    type Output = Result<H::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called { future } => {
                let result = ready!(future.poll(cx));
                Poll::Ready(match (result, this.permit.take()) {
                    (Ok(response), Some(permit)) => Ok(this.hold.hold(response, permit)),
                    (Err(err), permit) => {
                        drop(permit);
                        Err(err.into())
                    }
                    // The inner future answered twice.
                    (Ok(_), None) => Err(polled_after_completion()),
                })
            }
            KindProj::Rejected { rejection } => Poll::Ready(Err(match rejection.take() {
                Some(rejection) => rejection.into_box_error(),
                None => polled_after_completion(),
            })),
        }
    }
}

impl<F, H> fmt::Debug for ResponseFuture<F, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field(
                "state",
                &match (&self.kind, &self.permit) {
                    (Kind::Called { .. }, Some(_)) => "running",
                    (Kind::Called { .. }, None) => "done",
                    (Kind::Rejected { .. }, _) => "rejected",
                },
            )
            .finish()
    }
}
