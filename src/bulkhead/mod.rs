//! A bulkhead: at most `max_concurrent` calls at once, at most `max_queue` more waiting for a
//! slot, none waiting longer than `max_wait`, and everything beyond rejected at once.
//!
//! A slow or failing upstream holds on to every call sent to it. Without a bound, those calls
//! take every task, connection and socket, and the rest of the service starves. A [`Bulkhead`]
//! caps what one upstream (or one operation: "chat", "embeddings", "tools") can take, and turns
//! the excess into an immediate, typed error that a fallback can answer.
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::bulkhead::{Bulkhead, BulkheadTimeout};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let chat = Bulkhead::builder("chat")
//!     .max_concurrent(10)
//!     .max_queue(100) // 0: fail fast when every slot is busy
//!     .max_wait(Duration::from_secs(5))
//!     .build()?;
//!
//! let mut client = ServiceBuilder::new()
//!     .layer(chat.layer())
//!     .service(service_fn(|prompt: String| async move {
//!         Ok::<_, std::io::Error>(format!("echo: {prompt}"))
//!     }));
//! assert_eq!(client.ready().await?.call("hi".into()).await?, "echo: hi");
//!
//! // Every slot busy: the call waits in the queue, and gives up after `max_wait`
//! // (the paused clock of this example jumps ahead).
//! let held = (0..10).map(|_| chat.try_acquire()).collect::<Result<Vec<_>, _>>()?;
//! let err = client.ready().await?.call("hi".into()).await.unwrap_err();
//! assert!(err.is::<BulkheadTimeout>());
//!
//! let metrics = chat.metrics();
//! assert_eq!((metrics.active, metrics.queued, metrics.rejected_timeout), (10, 0, 1));
//! drop(held);
//! assert_eq!(chat.metrics().active, 0);
//! # Ok(())
//! # }
//! ```
//!
//! # Rules
//!
//! - **Slots** are taken in `poll_ready`, move into the response future in `call`, and are
//!   given back when the response arrives, on an error, and when the future or the service
//!   holding them is dropped. The inner service is only called with a slot and once it is
//!   ready.
//! - **The queue**: when every slot is busy, `poll_ready` waits (returns `Pending`) in a queue
//!   of at most `max_queue` callers, served in arrival order; a slot given back goes to the
//!   first of them, never to a newcomer. A caller that stops waiting (its future or service
//!   dropped) leaves the queue at once, so the count of waiters is exact.
//! - **Rejections** never come out of `poll_ready` as an `Err` (that would tell the caller to
//!   discard the service, like tower's `load_shed`): `poll_ready` reports ready and the call's
//!   future fails at once, with [`BulkheadFull`] (no slot, queue full or `max_queue` = 0) or
//!   [`BulkheadTimeout`] (waited `max_wait`). Both carry the bulkhead's name, are counted in
//!   [`metrics`](Bulkhead::metrics), reported as [`BulkheadEvent::CallRejected`] and logged
//!   with `tracing` at `debug`.
//! - **Cost**: with a free slot, a call takes it with one compare-and-swap and gives it back
//!   with another, takes no lock, reads no clock and allocates nothing (the benches put it
//!   below tower's `ConcurrencyLimit`). Waiting goes through a `tokio::sync::Semaphore`; a
//!   service's first wait allocates its wait once, later waits reuse it.
//! - **Time** is `tokio::time`, so `tokio::time::pause()` drives `max_wait` in tests. Waiting
//!   needs a tokio runtime with the time driver enabled.
//!
//! # Without tower
//!
//! The bulkhead is a cheap [`Clone`] handle to shared state; a [`Permit`] holds one slot until
//! it is dropped:
//!
//! ```
//! use tower_breaker::bulkhead::{AcquireError, Bulkhead};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tools = Bulkhead::builder("tools").max_concurrent(2).max_queue(8).build()?;
//! let permit = tools.acquire().await?; // waits in the queue if need be
//! assert_eq!(tools.metrics().active, 1);
//! drop(permit);
//! let permit = tools.try_acquire()?; // never waits
//! # drop(permit);
//! # Ok(())
//! # }
//! ```
//!
//! # Sharing
//!
//! Clones of a [`Bulkhead`], of its [`BulkheadLayer`] and of every service the layer wraps
//! share **one** set of slots and one queue. A layer applied to several services (as axum does
//! for each route) caps them all together. For separate limits, build separate bulkheads:
//!
//! ```
//! use tower::{ServiceBuilder, service_fn};
//! use tower_breaker::bulkhead::Bulkhead;
//!
//! let chat = Bulkhead::builder("chat").max_concurrent(10).build()?;
//! let embeddings = Bulkhead::builder("embeddings").max_concurrent(50).build()?;
//! let chat_svc = ServiceBuilder::new()
//!     .layer(chat.layer())
//!     .service(service_fn(|_: ()| async { Ok::<_, std::io::Error>("chat") }));
//! let embeddings_svc = ServiceBuilder::new()
//!     .layer(embeddings.layer())
//!     .service(service_fn(|_: ()| async { Ok::<_, std::io::Error>("embeddings") }));
//! # let _ = (chat_svc, embeddings_svc);
//! # Ok::<_, tower_breaker::ConfigError>(())
//! ```
//!
//! # HTTP responses
//!
//! By default a slot is given back when the response head arrives. A streamed answer (an LLM
//! writing tokens) still uses the upstream until its last byte: with the `http` feature,
//! [`BulkheadLayer::hold_until_body_end`] keeps the slot in the response body
//! ([`BulkheadBody`]) until the body ends, fails or is dropped. [`HoldPermit`] does the same for
//! other response types.
//!
//! # A limit that finds the upstream's capacity
//!
//! A fixed limit is either too low (capacity wasted) or too high (429 storms and queueing
//! upstream), and the right value moves with the provider's load. [`AdaptiveBulkhead`] moves
//! its limit by itself: AIMD or a gradient controller in the manner of Netflix's
//! `Gradient2Limit` ([`LimitAlgorithm`]), with 429, 529 and timeouts as congestion and the
//! time to the response head or first token as the latency signal.
//!
//! # Where it goes in a stack
//!
//! Inside the circuit breaker and outside the timeout: the breaker rejects calls to a failing
//! upstream before they take a slot, and the timeout bounds how long a slot is held.

mod adaptive;
mod config;
mod error;
mod events;
pub mod future;
mod hold;
mod layer;
mod service;
mod state;
mod wait;

#[cfg(feature = "http")]
mod body;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::adaptive::HttpSignals;
pub use self::adaptive::{
    AdaptiveBuilder, AdaptiveBulkhead, AdaptiveBulkheadLayer, AdaptiveBulkheadService,
    AdaptiveEvent, AdaptiveMetrics, AdaptivePermit, AdaptiveResponseFuture, Aimd, ClassifySignal,
    DefaultSignals, Gradient, LimitAlgorithm, LimitChange, Signal,
};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::body::{BulkheadBody, HoldUntilBodyEnd};
pub use self::config::Builder;
pub use self::error::{AcquireError, BulkheadFull, BulkheadTimeout};
pub use self::events::{BulkheadEvent, RejectionReason};
pub use self::future::ResponseFuture;
pub use self::hold::{HoldPermit, ReleaseOnResponse};
pub use self::layer::BulkheadLayer;
pub use self::service::BulkheadService;

use self::state::{Entry, Shared};
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::time::Instant;

/// A bulkhead: a cheap `Clone` handle to shared slots and a shared wait queue. See the
/// [module docs](self).
///
/// Used without tower: a [`Permit`] holds a slot until it is dropped.
///
/// ```
/// use tower_breaker::bulkhead::{Bulkhead, BulkheadFull};
///
/// let embeddings = Bulkhead::builder("embeddings")
///     .max_concurrent(2)
///     .max_queue(0) // fail fast when both slots are busy
///     .build()?;
/// let first = embeddings.try_acquire().expect("a free slot");
/// let _second = embeddings.try_acquire().expect("a free slot");
/// let full: BulkheadFull = embeddings.try_acquire().unwrap_err();
/// # let _ = full;
/// drop(first);
/// assert!(embeddings.try_acquire().is_ok());
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Bulkhead {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl Bulkhead {
    /// A builder with the defaults, for the bulkhead named `name` (the name is in every error,
    /// event and log line).
    ///
    /// | setting | default |
    /// |---|---|
    /// | `max_concurrent` | 25 |
    /// | `max_queue` | 0 (fail fast) |
    /// | `max_wait` | 5 s |
    pub fn builder(name: impl Into<Arc<str>>) -> Builder {
        Builder::new(name)
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Takes a free slot now, or fails with [`BulkheadFull`] (counted as a rejection). Never
    /// waits, and never takes a slot that a queued caller is waiting for.
    ///
    /// One compare-and-swap, no allocation.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit, BulkheadFull> {
        match self.shared.try_permit() {
            Some(permit) => Ok(permit),
            None => Err(self.shared.reject_full()),
        }
    }

    /// Takes a slot, waiting in the queue for at most `max_wait` when every slot is busy. Fails
    /// with [`AcquireError::Full`] when the queue is full too, and with
    /// [`AcquireError::Timeout`] when the wait is over. Dropping the future leaves the queue.
    ///
    /// Waiting needs a tokio runtime with the time driver enabled.
    pub async fn acquire(&self) -> Result<Permit, AcquireError> {
        let shared = &self.shared;
        if let Some(permit) = shared.try_permit() {
            return Ok(permit);
        }
        // Declared before the place, so dropped after it, also when this future is dropped:
        // the place is given back before the semaphore's queue is left (see `state.rs`).
        let mut acquire = pin!(shared.semaphore.acquire());
        let place = match shared.enter_queue()? {
            Entry::Slot(permit) => return Ok(permit),
            Entry::Queued(place) => place,
        };
        let since = Instant::now();
        let mut sleep = pin!(tokio::time::sleep_until(since + shared.max_wait));
        let acquired = poll_fn(|cx| match acquire.as_mut().poll(cx) {
            Poll::Ready(acquired) => Poll::Ready(Some(acquired)),
            Poll::Pending => sleep.as_mut().poll(cx).map(|()| None),
        })
        .await;
        drop(place);
        match acquired {
            Some(Ok(permit)) => {
                permit.forget();
                Ok(shared.permitted(since.elapsed()))
            }
            // The semaphore is never closed.
            Some(Err(_)) => Err(AcquireError::Full(shared.reject_full())),
            None => Err(AcquireError::Timeout(
                shared.reject_timeout(since.elapsed()),
            )),
        }
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> BulkheadMetrics {
        self.shared.metrics()
    }

    /// How many calls may wait for a slot.
    pub fn max_queue(&self) -> u32 {
        self.shared.max_queue()
    }

    /// How long a call waits for a slot at most.
    pub fn max_wait(&self) -> Duration {
        self.shared.max_wait
    }

    /// A layer that wraps services with this bulkhead (shared, not copied).
    pub fn layer(&self) -> BulkheadLayer {
        BulkheadLayer::new(self.clone())
    }
}

/// One slot of a [`Bulkhead`], given back when dropped. See [`Bulkhead::try_acquire`] and
/// [`Bulkhead::acquire`].
#[must_use = "a permit holds a slot until it is dropped; dropping it at once frees the slot"]
pub struct Permit {
    shared: Arc<Shared>,
}

impl Permit {
    /// The name of the bulkhead this slot belongs to.
    pub fn bulkhead_name(&self) -> &str {
        &self.shared.name
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("bulkhead", &self.shared.name)
            .finish()
    }
}

/// A snapshot of a bulkhead's counters.
///
/// `active` is read from the semaphore, `queued` from the queue count: each is exact, but they
/// are two reads, so a snapshot taken while calls come and go may catch a call in both (it has
/// been handed a slot and not yet left the queue) or in neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadMetrics {
    /// Slots held now.
    pub active: u32,
    /// Callers waiting for a slot now.
    pub queued: u32,
    /// Calls rejected because every slot was busy and the queue full, since the bulkhead was
    /// built.
    pub rejected_full: u64,
    /// Calls rejected after waiting `max_wait`, since the bulkhead was built.
    pub rejected_timeout: u64,
    /// The number of slots.
    pub max_concurrent: u32,
    /// The most callers that may wait.
    pub max_queue: u32,
}

/// The admission steps, exported for the loom models only (`--cfg tower_breaker_loom`): the exact code the
/// services and [`Bulkhead::acquire`] run when every slot is busy.
#[cfg(tower_breaker_loom)]
#[doc(hidden)]
impl Bulkhead {
    /// A caller's first step: a free slot, if any (not counted as a rejection otherwise).
    pub fn loom_try_permit(&self) -> Option<Permit> {
        self.shared.try_permit()
    }

    /// For a caller that found no free slot: a slot that came free since, or a place in the
    /// queue (given back when dropped), or the rejection, counted.
    pub fn loom_enter_queue(&self) -> Result<LoomEntry, BulkheadFull> {
        Ok(match self.shared.enter_queue()? {
            Entry::Slot(permit) => LoomEntry::Slot(permit),
            Entry::Queued(place) => LoomEntry::Queued(LoomPlace(place)),
        })
    }
}

/// What [`Bulkhead::loom_enter_queue`] got (loom models only).
#[cfg(tower_breaker_loom)]
#[doc(hidden)]
#[derive(Debug)]
pub enum LoomEntry {
    /// A slot.
    Slot(Permit),
    /// A place in the queue.
    Queued(LoomPlace),
}

/// A place in the queue (loom models only).
#[cfg(tower_breaker_loom)]
#[doc(hidden)]
#[derive(Debug)]
pub struct LoomPlace(state::QueueGuard);

#[cfg(tower_breaker_loom)]
#[doc(hidden)]
impl LoomPlace {
    /// One poll of the waiter's acquire future, as the semaphore answers it when the waiter
    /// is first in line: a slot handed to the waiters, taken by this one. On success the place
    /// is given back, as the service does.
    pub fn try_take(self) -> Result<Permit, LoomPlace> {
        let shared = self.0.shared().clone();
        match shared.semaphore.try_acquire() {
            Ok(permit) => {
                permit.forget();
                drop(self);
                Ok(shared.permitted(Duration::ZERO))
            }
            Err(_) => Err(self),
        }
    }
}
