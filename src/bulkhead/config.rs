use super::Bulkhead;
use super::events::BulkheadEvent;
use super::state::Shared;
use crate::config::{Check, ConfigError, MAX_DURATION, MIN_DURATION};
use crate::events::{Listener, Listeners};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The most calls a bulkhead may run at once, and the most that may wait: more is a unit mistake
/// (or a bulkhead that limits nothing).
pub(crate) const MAX_CALLS: u32 = 1_000_000;

/// Builds a [`Bulkhead`]; see [`Bulkhead::builder`]. Every setter documents its default and
/// allowed range; [`build`](Builder::build) checks them all.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::bulkhead::Bulkhead;
///
/// let err = Bulkhead::builder("chat").max_concurrent(0).build().unwrap_err();
/// assert_eq!(err.field(), "max_concurrent");
/// assert_eq!(
///     err.to_string(),
///     "invalid `max_concurrent` for `chat`: 0 (allowed: 1 ..= 1000000)"
/// );
/// ```
pub struct Builder {
    name: Arc<str>,
    max_concurrent: u32,
    max_queue: u32,
    max_wait: Duration,
    listeners: Listeners<BulkheadEvent>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("max_concurrent", &self.max_concurrent)
            .field("max_queue", &self.max_queue)
            .field("max_wait", &self.max_wait)
            .field("listeners", &self.listeners)
            .finish()
    }
}

impl Builder {
    pub(crate) fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            max_concurrent: 25,
            max_queue: 0,
            max_wait: Duration::from_secs(5),
            listeners: Listeners::new(),
        }
    }

    /// How many calls run at once. Default 25; allowed 1 to 1,000,000.
    pub fn max_concurrent(mut self, calls: u32) -> Self {
        self.max_concurrent = calls;
        self
    }

    /// How many calls may wait for a slot when every slot is busy; the next one is rejected
    /// with [`BulkheadFull`](super::BulkheadFull). Default 0: fail fast, no call ever waits.
    /// Allowed 0 to 1,000,000. Waiting needs a tokio runtime with the time driver enabled (for
    /// `max_wait`).
    pub fn max_queue(mut self, calls: u32) -> Self {
        self.max_queue = calls;
        self
    }

    /// How long a call waits in the queue before it is rejected with
    /// [`BulkheadTimeout`](super::BulkheadTimeout). Default 5 s; allowed 1 ms to 24 h. Has no
    /// effect when `max_queue` is 0.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Adds a listener for every event of this bulkhead (permitted, rejected, finished).
    pub fn on_event(mut self, listener: impl Listener<BulkheadEvent>) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Checks every value and builds the bulkhead.
    pub fn build(self) -> Result<Bulkhead, ConfigError> {
        let check = Check {
            component: &self.name,
        };
        let max_concurrent = check.range_u64(
            "max_concurrent",
            self.max_concurrent as u64,
            1,
            MAX_CALLS as u64,
        )? as u32;
        let max_queue =
            check.range_u64("max_queue", self.max_queue as u64, 0, MAX_CALLS as u64)? as u32;
        let max_wait = check.duration("max_wait", self.max_wait, MIN_DURATION, MAX_DURATION)?;
        Ok(Bulkhead {
            shared: Arc::new(Shared::new(
                self.name,
                max_concurrent,
                max_queue,
                max_wait,
                self.listeners,
            )),
        })
    }
}
