use super::future::ResponseFuture;
use super::{CircuitBreaker, CircuitBreakerLayer, CircuitOpen, Permit};
use crate::BoxError;
use crate::outcome::{Classify, DefaultClassifier};
use std::fmt;
use std::task::{Context, Poll};
use tower_service::Service;

/// A service guarded by a [`CircuitBreaker`]; made by [`CircuitBreakerLayer`].
///
/// `poll_ready` asks the breaker first. When the call is permitted it reserves the permit (a
/// half-open probe slot, if half-open) and then waits for the inner service. When it is not,
/// `poll_ready` still reports ready, without polling the inner service, and the call's future
/// fails at once with [`CircuitOpen`]; the inner service is never called. Errors are
/// [`BoxError`]s.
///
/// Cloning gives a service that shares the breaker but not the reservation.
pub struct CircuitBreakerService<S, C = DefaultClassifier> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: C,
    reservation: Reservation,
}

enum Reservation {
    None,
    Admitted(Permit),
    Rejected(CircuitOpen),
}

impl<S> CircuitBreakerService<S> {
    /// Wraps `inner` with `breaker` and the default classifier.
    pub fn new(inner: S, breaker: CircuitBreaker) -> Self {
        Self::with_classifier(inner, breaker, DefaultClassifier)
    }

    /// A layer for `breaker`; the same as [`CircuitBreakerLayer::new`].
    pub fn layer(breaker: CircuitBreaker) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(breaker)
    }
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Wraps `inner` with `breaker`, classifying results with `classifier`.
    pub fn with_classifier(inner: S, breaker: CircuitBreaker, classifier: C) -> Self {
        Self {
            inner,
            breaker,
            classifier,
            reservation: Reservation::None,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service; any reservation is released.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !matches!(self.reservation, Reservation::Admitted(_)) {
            // Ask again even after a rejection: the breaker may have moved on.
            match self.breaker.try_acquire() {
                Ok(permit) => self.reservation = Reservation::Admitted(permit),
                Err(open) => {
                    self.reservation = Reservation::Rejected(open);
                    return Poll::Ready(Ok(()));
                }
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(err)) => {
                // The call will not happen: give the permit back (Ignored).
                self.reservation = Reservation::None;
                Poll::Ready(Err(err.into()))
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let permit = match std::mem::replace(&mut self.reservation, Reservation::None) {
            Reservation::Admitted(permit) => permit,
            Reservation::Rejected(open) => return ResponseFuture::rejected(open),
            // `call` without `poll_ready` breaks the `Service` contract; rather than panic,
            // ask the breaker now.
            Reservation::None => match self.breaker.try_acquire() {
                Ok(permit) => permit,
                Err(open) => return ResponseFuture::rejected(open),
            },
        };
        let mut permit = permit;
        permit.restart_clock();
        ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreakerService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
            // A clone has not been polled ready: it holds no reservation.
            reservation: Reservation::None,
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreakerService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker.name())
            .field(
                "reservation",
                &match self.reservation {
                    Reservation::None => "none",
                    Reservation::Admitted(_) => "admitted",
                    Reservation::Rejected(_) => "rejected",
                },
            )
            .finish()
    }
}
