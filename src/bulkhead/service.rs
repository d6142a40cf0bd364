use super::error::Rejection;
use super::future::ResponseFuture;
use super::state::{Entry, QueueGuard, Shared};
use super::wait::{self, Wait, WaitEnd};
use super::{Bulkhead, BulkheadLayer, HoldPermit, Permit, ReleaseOnResponse};
use crate::BoxError;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::Instant;
use tower_service::Service;

/// A service guarded by a [`Bulkhead`]; made by [`BulkheadLayer`].
///
/// `poll_ready` takes a slot first, then waits for the inner service to be ready. When every
/// slot is busy it waits in the bulkhead's queue (returning `Pending`), in arrival order, for at
/// most `max_wait`. When the queue is full, or the wait times out, `poll_ready` still reports
/// ready, without polling the inner service, and the call's future fails at once with
/// [`BulkheadFull`](super::BulkheadFull) or [`BulkheadTimeout`](super::BulkheadTimeout): an
/// `Err` from `poll_ready` would tell the caller to throw the service away. The inner service
/// is never called without a slot. Errors are [`BoxError`]s.
///
/// The slot moves into the response future in `call` and is given back when the future
/// finishes (or, with [`HoldPermit`], later), fails, or is dropped; a service dropped while it
/// holds a slot, or while it waits for one, gives it (or its place in the queue) back too.
///
/// Cloning gives a service that shares the bulkhead but holds no slot and no place.
pub struct BulkheadService<S, H = ReleaseOnResponse> {
    inner: S,
    bulkhead: Bulkhead,
    hold: H,
    // Before `wait`: on drop the place in the queue is given back before the semaphore's queue
    // is left (see `state.rs`).
    state: State,
    /// The wait for a slot: allocated at this service's first wait, reused by later ones.
    wait: Option<Pin<Box<dyn Wait>>>,
}

enum State {
    /// Nothing reserved.
    Idle,
    /// In the queue; `wait` holds the wait.
    Waiting { _place: QueueGuard, since: Instant },
    /// Holds a slot; the inner service may not be ready yet.
    Admitted(Permit),
    /// Rejected: reported ready, and the next call fails with this.
    Rejected(Rejection),
}

impl<S> BulkheadService<S> {
    /// Wraps `inner` with `bulkhead`; slots are given back when responses arrive.
    pub fn new(inner: S, bulkhead: Bulkhead) -> Self {
        Self::with_hold(inner, bulkhead, ReleaseOnResponse)
    }

    /// A layer for `bulkhead`; the same as [`BulkheadLayer::new`].
    pub fn layer(bulkhead: Bulkhead) -> BulkheadLayer {
        BulkheadLayer::new(bulkhead)
    }
}

impl<S, H> BulkheadService<S, H> {
    /// Wraps `inner` with `bulkhead`; `hold` decides when each slot is given back.
    pub fn with_hold(inner: S, bulkhead: Bulkhead, hold: H) -> Self {
        Self {
            inner,
            bulkhead,
            hold,
            state: State::Idle,
            wait: None,
        }
    }

    /// The bulkhead.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service; a slot or place in the queue that this service holds is given back.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Takes a free slot, or a place in the queue (and starts the wait), or rejects the call.
#[inline]
fn admit(shared: &Arc<Shared>, wait: &mut Option<Pin<Box<dyn Wait>>>) -> State {
    if let Some(permit) = shared.try_permit() {
        return State::Admitted(permit);
    }
    match shared.enter_queue() {
        Ok(Entry::Slot(permit)) => State::Admitted(permit),
        Ok(Entry::Queued(place)) => {
            let since = Instant::now();
            let wait = wait.get_or_insert_with(wait::new);
            wait.as_mut().start(shared.clone(), since + shared.max_wait);
            State::Waiting {
                _place: place,
                since,
            }
        }
        Err(full) => State::Rejected(Rejection::Full(full)),
    }
}

impl<S, H, Req> Service<Req> for BulkheadService<S, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    H: HoldPermit<S::Response> + Clone,
{
    type Response = H::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let shared = &self.bulkhead.shared;
        // A rejection from an earlier `poll_ready` that no `call` took (the caller polled
        // again, or a breaker in front did not call through) may be stale: if a slot has come
        // free since, take it rather than fail a later call. Otherwise the rejection stands
        // (and is not counted again).
        if let State::Rejected(_) = self.state {
            if let Some(permit) = shared.try_permit() {
                self.state = State::Admitted(permit);
            }
        }
        loop {
            match &self.state {
                State::Idle => self.state = admit(shared, &mut self.wait),
                State::Waiting { since, .. } => {
                    let since = *since;
                    let end = match self.wait.as_mut() {
                        Some(wait) => match wait.as_mut().poll_wait(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(end) => end,
                        },
                        // Never: `Waiting` is only entered by `admit`, which starts the wait.
                        None => WaitEnd::TimedOut,
                    };
                    // Give the place back, then leave the semaphore's queue (see `state.rs`),
                    // before the permit or rejection is reported.
                    self.state = State::Idle;
                    if let Some(wait) = self.wait.as_mut() {
                        wait.as_mut().finish();
                    }
                    self.state = match end {
                        WaitEnd::Slot => State::Admitted(shared.permitted(since.elapsed())),
                        WaitEnd::TimedOut => State::Rejected(Rejection::Timeout(
                            shared.reject_timeout(since.elapsed()),
                        )),
                    };
                }
                State::Admitted(_) => {
                    return match self.inner.poll_ready(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
                        Poll::Ready(Err(err)) => {
                            // The call will not happen: give the slot back.
                            self.state = State::Idle;
                            Poll::Ready(Err(err.into()))
                        }
                    };
                }
                State::Rejected(_) => return Poll::Ready(Ok(())),
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Admitted(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.hold.clone())
            }
            State::Rejected(rejection) => ResponseFuture::rejected(rejection, self.hold.clone()),
            // `call` without a ready `poll_ready` breaks the `Service` contract (tower's
            // `ConcurrencyLimit` panics). The inner service may not be ready, so it is not
            // called: the call is rejected (and counted) as if the bulkhead were full.
            State::Idle | State::Waiting { .. } => ResponseFuture::rejected(
                Rejection::Full(self.bulkhead.shared.reject_full()),
                self.hold.clone(),
            ),
        }
    }
}

impl<S: Clone, H: Clone> Clone for BulkheadService<S, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            bulkhead: self.bulkhead.clone(),
            hold: self.hold.clone(),
            // A clone has not been polled ready: no slot, no place, no wait.
            state: State::Idle,
            wait: None,
        }
    }
}

impl<S: fmt::Debug, H> fmt::Debug for BulkheadService<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadService")
            .field("inner", &self.inner)
            .field("bulkhead", &self.bulkhead.name())
            .field(
                "state",
                &match self.state {
                    State::Idle => "idle",
                    State::Waiting { .. } => "waiting",
                    State::Admitted(_) => "admitted",
                    State::Rejected(_) => "rejected",
                },
            )
            .finish()
    }
}
