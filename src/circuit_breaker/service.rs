use super::CircuitState;
use super::future::{Rejection, ResponseFuture};
use super::hold::{Held, HoldPolicy, HoldRejected};
use super::state::Ticket;
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
/// # When the breaker moves between `poll_ready` and `call`
///
/// The breaker can trip, be reset or start a rate-limit cool-down after `poll_ready` has
/// reserved a permit, most often while the inner service was not ready at once (a bulkhead's
/// queue). `call` checks the permit again: a permit of a finished generation, or one reserved
/// before a cool-down that is still on, never reaches the upstream. If the breaker
/// admits the call anew, it goes through on the inner service's readiness. If it rejects it,
/// the inner service has been made ready for a call that will not happen, and may be holding
/// a reservation for it (a bulkhead slot, a connection): tower has no way to undo
/// `poll_ready`, so the service drops its ready inner service and keeps a clone of it in its
/// place, which by tower's convention holds no reservation (as tower's `Retry` takes a ready
/// service out with `std::mem::replace`). That is why the inner service must be [`Clone`],
/// which every tower stack that shares a client already is.
///
/// # Reservations and reports
///
/// A reserved permit (a half-open probe slot) is given back when the service is dropped,
/// when the inner service's `poll_ready` fails, and when a stale permit is replaced. A call
/// let through is reported ([`CallPermitted`](super::CircuitBreakerEvent::CallPermitted))
/// when it is made, in `call`: a service made ready and then dropped reports nothing and
/// counts nothing, since no call ran. A rejection is counted and reported
/// ([`CallRejected`](super::CircuitBreakerEvent::CallRejected)) when `poll_ready` meets it,
/// once per call even when the call is then held (see
/// [`hold_while_open`](CircuitBreakerLayer::hold_while_open)).
///
/// Cloning gives a service that shares the breaker but not the reservation.
pub struct CircuitBreakerService<S, R = ClassifyNow> {
    inner: S,
    reserved: Reserved,
    recorder: R,
    pub(crate) hold: Option<HoldPolicy>,
    held: Option<Held>,
}

/// The breaker and what `poll_ready` reserved on it. An admitted call is kept as its ticket
/// (16 bytes, no reference count) and becomes a `Permit` only in `call`: a permit moved
/// through the reservation on every call cost more than the rest of the service. A separate
/// type so that a reserved ticket (a half-open probe slot) is given back when the service is
/// dropped, while `into_inner` can still move the inner service out.
struct Reserved {
    breaker: CircuitBreaker,
    reservation: Reservation,
}

enum Reservation {
    None,
    Admitted(Ticket),
    Rejected(CircuitOpen),
    // Boxed: a cold path, and it would double the size of every service and reservation.
    HoldFailed(Box<HoldRejected>),
}

impl Reserved {
    fn new(breaker: CircuitBreaker) -> Self {
        Self {
            breaker,
            reservation: Reservation::None,
        }
    }

    /// Takes the reservation out, leaving none.
    #[inline]
    fn take(&mut self) -> Reservation {
        std::mem::replace(&mut self.reservation, Reservation::None)
    }

    /// Gives back an admitted ticket unused: a probe slot is freed; nothing is recorded or
    /// reported, since no call ran.
    fn release(&self, ticket: Ticket) {
        self.breaker.shared.release(ticket);
    }

    /// Gives back whatever is reserved.
    fn clear(&mut self) {
        if let Reservation::Admitted(ticket) = self.take() {
            self.release(ticket);
        }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.clear();
    }
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
            reserved: Reserved::new(breaker),
            recorder,
            hold: None,
            held: None,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.reserved.breaker
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
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    R: RecordOutcome<S::Response, S::Error> + Clone,
{
    type Response = R::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        while !matches!(self.reserved.reservation, Reservation::Admitted(_)) {
            // Ask again even after a rejection: the breaker may have moved on.
            let open = match self.reserved.breaker.shared.reserve() {
                Ok(ticket) => {
                    self.reserved.reservation = Reservation::Admitted(ticket);
                    if self.held.is_some() {
                        self.held = None;
                    }
                    break;
                }
                Err(open) => {
                    // Counted once per call: not again when a held call is woken and asks
                    // again, nor when `poll_ready` is called again before `call`.
                    let counted = self.held.is_some()
                        || matches!(
                            self.reserved.reservation,
                            Reservation::Rejected(_) | Reservation::HoldFailed(_)
                        );
                    if !counted {
                        self.reserved.breaker.shared.report_rejected(open.state());
                    }
                    open
                }
            };
            let policy = match self.hold {
                Some(policy) if open.state() != CircuitState::ForcedOpen => policy,
                _ => {
                    // Not held (or no longer): give back any place in the hold.
                    self.held = None;
                    self.reserved.reservation = Reservation::Rejected(open);
                    return Poll::Ready(Ok(()));
                }
            };
            let held = match &mut self.held {
                Some(held) => held,
                None => match Held::enter(&self.reserved.breaker.shared, &policy, open.clone()) {
                    Ok(held) => self.held.insert(held),
                    Err(rejected) => {
                        self.reserved.reservation = Reservation::HoldFailed(Box::new(rejected));
                        return Poll::Ready(Ok(()));
                    }
                },
            };
            match held.poll_wait(cx, &policy, &open) {
                Poll::Pending => {
                    self.reserved.reservation = Reservation::None;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(rejected)) => {
                    self.held = None;
                    self.reserved.reservation = Reservation::HoldFailed(Box::new(rejected));
                    return Poll::Ready(Ok(()));
                }
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(err)) => {
                // The call will not happen: give the permit back (nothing is recorded).
                self.reserved.clear();
                Poll::Ready(Err(err.into()))
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let reservation = self.reserved.take();
        let shared = &self.reserved.breaker.shared;
        let ticket = match reservation {
            Reservation::Admitted(ticket) if shared.still_admits(ticket) => ticket,
            // The breaker moved on since `poll_ready` (see the type's docs): a permit of an
            // earlier generation, or reserved before a cool-down, must not reach the upstream.
            Reservation::Admitted(stale) => {
                shared.release(stale);
                match shared.reserve() {
                    Ok(ticket) => ticket,
                    Err(open) => {
                        // Drop the ready inner service, and whatever it reserved for this
                        // call; its clone reserves nothing.
                        let fresh = self.inner.clone();
                        drop(std::mem::replace(&mut self.inner, fresh));
                        shared.report_rejected(open.state());
                        return ResponseFuture::rejected(open);
                    }
                }
            }
            Reservation::Rejected(open) => return ResponseFuture::rejected(open),
            Reservation::HoldFailed(rejected) => {
                return ResponseFuture::failed(Rejection::Hold(rejected));
            }
            // `call` without `poll_ready` breaks the `Service` contract; rather than panic,
            // ask the breaker now.
            Reservation::None => match shared.reserve() {
                Ok(ticket) => ticket,
                Err(open) => {
                    shared.report_rejected(open.state());
                    return ResponseFuture::rejected(open);
                }
            },
        };
        shared.report_permitted(ticket);
        // The slow-call clock starts now, when the call does.
        let permit = Permit::new(shared, ticket);
        ResponseFuture::called(self.inner.call(req), permit, self.recorder.clone())
    }
}

impl<S: Clone, R: Clone> Clone for CircuitBreakerService<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            // A clone has not been polled ready: it holds no reservation.
            reserved: Reserved::new(self.reserved.breaker.clone()),
            recorder: self.recorder.clone(),
            hold: self.hold,
            held: None,
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for CircuitBreakerService<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.reserved.breaker.name())
            .field(
                "reservation",
                &match self.reserved.reservation {
                    Reservation::None => "none",
                    Reservation::Admitted(_) => "admitted",
                    Reservation::Rejected(_) => "rejected",
                    Reservation::HoldFailed(_) => "hold failed",
                },
            )
            .finish()
    }
}
