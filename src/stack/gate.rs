//! The stack's outermost layer: an open breaker rejects before the retry layer and the
//! timeouts do any work.

use crate::BoxError;
use crate::circuit_breaker::{CircuitBreaker, CircuitOpen};
use crate::retry::PolicyShared;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// The outermost service of a [`StandardResilience`](super::StandardResilience) stack: while
/// the stack's breaker is open (its wait not over) or forced open, a call fails at once with
/// the breaker's [`CircuitOpen`], before the total timeout arms a timer and the retry layer
/// copies the request. In every other state (closed, half-open, a rate-limit cool-down, an
/// open wait that is over) it passes the call on, and the breaker inside decides as before,
/// so a retry that waits out a cool-down still does.
///
/// Nothing a caller sees changes: the rejection is the one the breaker would have returned,
/// counted and reported once as the breaker's own; the retry policy counts the call in its
/// budget and reports that it gave up with
/// [`GiveUpReason::CircuitOpen`](crate::retry::GiveUpReason::CircuitOpen) at the first
/// attempt, as it does when the breaker inside rejects.
pub struct BreakerGate<S> {
    inner: S,
    breaker: CircuitBreaker,
    retry: Arc<PolicyShared>,
    /// The rejection `poll_ready` met, for `call`.
    rejected: Option<CircuitOpen>,
}

impl<S> BreakerGate<S> {
    pub(crate) fn new(inner: S, breaker: CircuitBreaker, retry: Arc<PolicyShared>) -> Self {
        Self {
            inner,
            breaker,
            retry,
            rejected: None,
        }
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

impl<S, Req> Service<Req> for BreakerGate<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BreakerGateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.rejected.is_some() {
            // Asked again before `call`: the rejection is counted already; the breaker may
            // have moved on since.
            self.rejected = self.breaker.shared.gate::<false>();
            if self.rejected.is_some() {
                return Poll::Ready(Ok(()));
            }
        } else if let Some(open) = self.breaker.shared.gate::<true>() {
            self.retry.rejected_before_sending();
            self.rejected = Some(open);
            // Ready, as the breaker's own service is when it rejects: the call fails instead.
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.rejected.take() {
            Some(open) => BreakerGateFuture {
                kind: Kind::Rejected { open: Some(open) },
            },
            None => BreakerGateFuture {
                kind: Kind::Passed {
                    future: self.inner.call(req),
                },
            },
        }
    }
}

impl<S: Clone> Clone for BreakerGate<S> {
    fn clone(&self) -> Self {
        // A clone has not been polled ready: it carries no rejection.
        Self::new(self.inner.clone(), self.breaker.clone(), self.retry.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for BreakerGate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerGate")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker.name())
            .field("rejected", &self.rejected.is_some())
            .finish()
    }
}

pin_project! {
    /// The future of a [`BreakerGate`] call: the inner future, or the breaker's rejection.
    pub struct BreakerGateFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Passed { #[pin] future: F },
        Rejected { open: Option<CircuitOpen> },
    }
}

impl<F, T, E> Future for BreakerGateFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passed { future } => future.poll(cx).map_err(Into::into),
            KindProj::Rejected { open } => Poll::Ready(Err(match open.take() {
                Some(open) => {
                    // What the retry and the breaker inside would have recorded into the call's
                    // span: one attempt, refused by this breaker in this state.
                    crate::call_span::record_attempts(1);
                    crate::call_span::record_rejected(open.name(), open.state().as_str());
                    open.into_box_error()
                }
                // Only reachable by polling again after completion.
                None => "breaker gate future polled after completion".into(),
            })),
        }
    }
}

impl<F> fmt::Debug for BreakerGateFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Kind::Passed { .. } => "passed",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("BreakerGateFuture")
            .field("state", &state)
            .finish()
    }
}
