use super::CircuitState;
use super::future::{Rejection, ResponseFuture};
use super::hold::{Held, HoldPolicy, HoldRejected};
use super::{CircuitBreaker, CircuitBreakerLayer, CircuitOpen, ClassifyNow, Permit, RecordOutcome};
use crate::BoxError;
use std::fmt;
use std::task::{Context, Poll};
use tower_service::Service;

/// A service guarded by a [`CircuitBreaker`]; made by [`CircuitBreakerLayer`].
///
/// `poll_ready` asks the breaker first. When the call is permitted it reserves the permit (a
/// half-open probe slot, if half-open) and then waits for the inner service. When it is not,
/// `poll_ready` still reports ready, without polling the inner service, and the call's future
/// fails at once with [`CircuitOpen`] (or [`RateLimited`](super::RateLimited) during a
/// rate-limit cool-down); the inner service is never called. Errors are [`BoxError`]s.
///
/// Cloning gives a service that shares the breaker but not the reservation.
pub struct CircuitBreakerService<S, R = ClassifyNow> {
    inner: S,
    breaker: CircuitBreaker,
    recorder: R,
    reservation: Reservation,
    pub(crate) hold: Option<HoldPolicy>,
    held: Option<Held>,
}

enum Reservation {
    None,
    Admitted(Permit),
    Rejected(CircuitOpen),
    // Boxed: a cold path, and it would double the size of every service and reservation.
    HoldFailed(Box<HoldRejected>),
}

impl<S> CircuitBreakerService<S> {
    /// Wraps `inner` with `breaker` and the default classifier.
    pub fn new(inner: S, breaker: CircuitBreaker) -> Self {
        Self::with_recorder(inner, breaker, ClassifyNow::default())
    }

    /// A layer for `breaker`; the same as [`CircuitBreakerLayer::new`].
    pub fn layer(breaker: CircuitBreaker) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(breaker)
    }
}

impl<S, R> CircuitBreakerService<S, R> {
    /// Wraps `inner` with `breaker`, recording results with `recorder` (for a plain
    /// [`Classify`](crate::Classify), pass [`ClassifyNow(classifier)`](ClassifyNow)).
    pub fn with_recorder(inner: S, breaker: CircuitBreaker, recorder: R) -> Self {
        Self {
            inner,
            breaker,
            recorder,
            reservation: Reservation::None,
            hold: None,
            held: None,
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

impl<S, R, Req> Service<Req> for CircuitBreakerService<S, R>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    R: RecordOutcome<S::Response, S::Error> + Clone,
{
    type Response = R::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        while !matches!(self.reservation, Reservation::Admitted(_)) {
            // Ask again even after a rejection: the breaker may have moved on.
            let open = match self.breaker.try_acquire() {
                Ok(permit) => {
                    self.reservation = Reservation::Admitted(permit);
                    if self.held.is_some() {
                        self.held = None;
                    }
                    break;
                }
                Err(open) => open,
            };
            let policy = match self.hold {
                Some(policy) if open.state() != CircuitState::ForcedOpen => policy,
                _ => {
                    // Not held (or no longer): give back any place in the hold.
                    self.held = None;
                    self.reservation = Reservation::Rejected(open);
                    return Poll::Ready(Ok(()));
                }
            };
            let held = match &mut self.held {
                Some(held) => held,
                None => match Held::enter(&self.breaker.shared, &policy, open.clone()) {
                    Ok(held) => self.held.insert(held),
                    Err(rejected) => {
                        self.reservation = Reservation::HoldFailed(Box::new(rejected));
                        return Poll::Ready(Ok(()));
                    }
                },
            };
            match held.poll_wait(cx, &policy, &open) {
                Poll::Pending => {
                    self.reservation = Reservation::None;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(rejected)) => {
                    self.held = None;
                    self.reservation = Reservation::HoldFailed(Box::new(rejected));
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
            // The breaker may have tripped since `poll_ready` (the inner service was not ready
            // at once): a permit of an earlier generation must not reach the upstream.
            Reservation::Admitted(permit) if permit.is_current() => permit,
            Reservation::Admitted(stale) => {
                drop(stale);
                match self.breaker.try_acquire() {
                    Ok(permit) => permit,
                    Err(open) => return ResponseFuture::rejected(open),
                }
            }
            Reservation::Rejected(open) => return ResponseFuture::rejected(open),
            Reservation::HoldFailed(rejected) => {
                return ResponseFuture::failed(Rejection::Hold(rejected));
            }
            // `call` without `poll_ready` breaks the `Service` contract; rather than panic,
            // ask the breaker now.
            Reservation::None => match self.breaker.try_acquire() {
                Ok(permit) => permit,
                Err(open) => return ResponseFuture::rejected(open),
            },
        };
        let mut permit = permit;
        permit.restart_clock();
        ResponseFuture::called(self.inner.call(req), permit, self.recorder.clone())
    }
}

impl<S: Clone, R: Clone> Clone for CircuitBreakerService<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            recorder: self.recorder.clone(),
            // A clone has not been polled ready: it holds no reservation.
            reservation: Reservation::None,
            hold: self.hold,
            held: None,
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for CircuitBreakerService<S, R> {
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
                    Reservation::HoldFailed(_) => "hold failed",
                },
            )
            .finish()
    }
}
