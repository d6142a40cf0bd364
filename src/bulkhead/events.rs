use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Something a bulkhead did. Delivered to every [`Listener`](crate::events::Listener)
/// registered with [`Builder::on_event`](super::Builder::on_event); never built when there is
/// none.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tower_breaker::bulkhead::{Bulkhead, BulkheadEvent, RejectionReason};
///
/// let rejections = Arc::new(Mutex::new(Vec::new()));
/// let sink = rejections.clone();
/// let bulkhead = Bulkhead::builder("tools")
///     .max_concurrent(1)
///     .on_event(move |event: &BulkheadEvent| {
///         if let BulkheadEvent::CallRejected { reason, .. } = event {
///             sink.lock().unwrap().push(*reason);
///         }
///     })
///     .build()?;
/// let _running = bulkhead.try_acquire().expect("a free slot");
/// assert!(bulkhead.try_acquire().is_err());
/// assert_eq!(*rejections.lock().unwrap(), vec![RejectionReason::Full]);
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BulkheadEvent {
    /// A call got a slot.
    CallPermitted {
        /// The bulkhead's name.
        name: Arc<str>,
        /// How long it waited in the queue (zero when a slot was free).
        waited: Duration,
    },
    /// A call was rejected without reaching the inner service.
    CallRejected {
        /// The bulkhead's name.
        name: Arc<str>,
        /// Why.
        reason: RejectionReason,
    },
    /// A call gave its slot back (it finished, failed, or was dropped).
    CallFinished {
        /// The bulkhead's name.
        name: Arc<str>,
    },
    /// A call found every slot busy and took a place in the wait queue.
    CallQueued {
        /// The bulkhead's name.
        name: Arc<str>,
    },
    /// A queued call left the queue: it got a slot ([`CallPermitted`](Self::CallPermitted)
    /// follows), waited `max_wait` ([`CallRejected`](Self::CallRejected) follows), or was
    /// dropped while waiting. Exactly one per [`CallQueued`](Self::CallQueued).
    CallLeftQueue {
        /// The bulkhead's name.
        name: Arc<str>,
    },
}

/// Why a bulkhead rejected a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionReason {
    /// Every slot busy and no room in the queue: [`BulkheadFull`](super::BulkheadFull).
    Full,
    /// Waited `max_wait` without a slot: [`BulkheadTimeout`](super::BulkheadTimeout).
    Timeout,
}

impl RejectionReason {
    /// The reason in `snake_case`, as used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionReason::Full => "full",
            RejectionReason::Timeout => "timeout",
        }
    }
}

impl fmt::Display for RejectionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
