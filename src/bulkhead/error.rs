use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Every slot of the bulkhead was busy and its wait queue was full (or it has none): the call
/// was rejected at once and the inner service was not called.
///
/// ```
/// use tower_breaker::bulkhead::{Bulkhead, BulkheadFull};
///
/// let bulkhead = Bulkhead::builder("chat").max_concurrent(1).build()?;
/// let _running = bulkhead.try_acquire().expect("a free slot");
/// let err: BulkheadFull = bulkhead.try_acquire().unwrap_err();
/// assert_eq!(err.name(), "chat");
/// assert_eq!(err.to_string(), "bulkhead `chat` is full (1 running, no queue)");
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadFull {
    name: Arc<str>,
    max_concurrent: u32,
    max_queue: u32,
}

impl BulkheadFull {
    pub(crate) fn new(name: Arc<str>, max_concurrent: u32, max_queue: u32) -> Self {
        Self {
            name,
            max_concurrent,
            max_queue,
        }
    }

    /// The name of the bulkhead that rejected the call.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many calls the bulkhead runs at once.
    pub fn max_concurrent(&self) -> u32 {
        self.max_concurrent
    }

    /// How many calls may wait for a slot (0: none, the bulkhead fails fast).
    pub fn max_queue(&self) -> u32 {
        self.max_queue
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.max_queue == 0 {
            write!(
                f,
                "bulkhead `{}` is full ({} running, no queue)",
                self.name, self.max_concurrent
            )
        } else {
            write!(
                f,
                "bulkhead `{}` is full ({} running, {} waiting)",
                self.name, self.max_concurrent, self.max_queue
            )
        }
    }
}

impl std::error::Error for BulkheadFull {}

impl crate::rejection::OwnRejection for BulkheadFull {
    fn rejection(&self) -> crate::rejection::Rejection<'_> {
        let kind = crate::rejection::RejectionKind::BulkheadFull;
        crate::rejection::Rejection::new(kind, self.name(), None)
    }
}

/// The call waited in the bulkhead's queue for `max_wait` and no slot came free: it was
/// rejected and the inner service was not called.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::bulkhead::{AcquireError, Bulkhead};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bulkhead = Bulkhead::builder("chat")
///     .max_concurrent(1)
///     .max_queue(1)
///     .max_wait(Duration::from_secs(2))
///     .build()?;
/// let _running = bulkhead.acquire().await?;
/// let Err(AcquireError::Timeout(err)) = bulkhead.acquire().await else { panic!() };
/// assert_eq!(err.name(), "chat");
/// assert_eq!(err.waited(), Duration::from_secs(2));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadTimeout {
    name: Arc<str>,
    waited: Duration,
}

impl BulkheadTimeout {
    pub(crate) fn new(name: Arc<str>, waited: Duration) -> Self {
        Self { name, waited }
    }

    /// The name of the bulkhead that rejected the call.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long the call waited before it gave up: `max_wait`, or a little more (the timer's
    /// resolution is a millisecond).
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Display for BulkheadTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bulkhead `{}`: no slot came free within {:.3}s",
            self.name,
            self.waited.as_secs_f64()
        )
    }
}

impl std::error::Error for BulkheadTimeout {}

impl crate::rejection::OwnRejection for BulkheadTimeout {
    fn rejection(&self) -> crate::rejection::Rejection<'_> {
        let kind = crate::rejection::RejectionKind::BulkheadTimeout;
        crate::rejection::Rejection::new(kind, self.name(), None)
    }
}

/// Why [`Bulkhead::acquire`](super::Bulkhead::acquire) gave no permit.
///
/// Its [`source`](std::error::Error::source) is the cause, so that error reporters that walk
/// the chain find it. The layer's services return the causes themselves, boxed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AcquireError {
    /// No free slot and no room in the queue.
    Full(BulkheadFull),
    /// Waited `max_wait` in the queue without getting a slot.
    Timeout(BulkheadTimeout),
}

impl AcquireError {
    /// The name of the bulkhead that rejected the call.
    pub fn name(&self) -> &str {
        match self {
            AcquireError::Full(e) => e.name(),
            AcquireError::Timeout(e) => e.name(),
        }
    }
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::Full(e) => e.fmt(f),
            AcquireError::Timeout(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AcquireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AcquireError::Full(e) => Some(e),
            AcquireError::Timeout(e) => Some(e),
        }
    }
}

impl crate::rejection::OwnRejection for AcquireError {
    fn rejection(&self) -> crate::rejection::Rejection<'_> {
        match self {
            AcquireError::Full(e) => e.rejection(),
            AcquireError::Timeout(e) => e.rejection(),
        }
    }
}

impl From<BulkheadFull> for AcquireError {
    fn from(e: BulkheadFull) -> Self {
        AcquireError::Full(e)
    }
}

impl From<BulkheadTimeout> for AcquireError {
    fn from(e: BulkheadTimeout) -> Self {
        AcquireError::Timeout(e)
    }
}

/// The rejection a service decided in `poll_ready`, handed to the call's future.
#[derive(Debug, Clone)]
pub(crate) enum Rejection {
    Full(BulkheadFull),
    Timeout(BulkheadTimeout),
}

impl Rejection {
    /// Boxed as its cause, so that `err.is::<BulkheadFull>()` works.
    pub(crate) fn into_box_error(self) -> crate::BoxError {
        match self {
            Rejection::Full(e) => Box::new(e),
            Rejection::Timeout(e) => Box::new(e),
        }
    }
}
