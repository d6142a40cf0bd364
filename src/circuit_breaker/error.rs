use super::CircuitState;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The breaker did not permit the call: it is open, forced open, or half-open with every probe
/// slot taken. The inner service was not called.
///
/// Carries the breaker's name and, when known, how long until it lets a probe through, so
/// that a caller can answer with `Retry-After` or pick another provider.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen};
///
/// let breaker = CircuitBreaker::builder("openai").wait_in_open(Duration::from_secs(30)).build()?;
/// breaker.force_open();
/// let err: CircuitOpen = breaker.try_acquire().unwrap_err();
/// assert_eq!(err.name(), "openai");
/// assert_eq!(err.retry_after(), None); // forced open: no probe is scheduled
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CircuitOpen {
    name: ErrorName,
    state: CircuitState,
    /// When the breaker lets a probe through; `retry_after` is computed from it when asked, so
    /// that a rejection does not pay for a subtraction nobody reads.
    retry_at: Option<Instant>,
}

impl CircuitOpen {
    #[inline]
    pub(crate) fn new(name: ErrorName, state: CircuitState, retry_at: Option<Instant>) -> Self {
        Self {
            name,
            state,
            retry_at,
        }
    }

    /// The name of the breaker that rejected the call.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The state the breaker was in: `Open`, `ForcedOpen`, `HalfOpen` (every probe slot
    /// taken) or `RateLimited` (a rate-limit cool-down).
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// True when the call was rejected by a rate-limit cool-down rather than an open circuit.
    pub fn is_rate_limited(&self) -> bool {
        self.state == CircuitState::RateLimited
    }

    /// Boxes the rejection as the error type a service returns: [`RateLimited`] during a
    /// rate-limit cool-down, `CircuitOpen` otherwise, so that `err.is::<RateLimited>()` and
    /// `err.is::<CircuitOpen>()` tell them apart.
    pub fn into_box_error(self) -> crate::BoxError {
        if self.is_rate_limited() {
            Box::new(RateLimited { inner: self })
        } else {
            Box::new(self)
        }
    }

    /// How long from now until the breaker lets a probe through (zero once that time has
    /// come, so an error held for a while still tells the truth); `None` when no probe is
    /// scheduled (forced open) or the wait depends on probes in flight (half-open).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_at
            .map(|at| at.saturating_duration_since(crate::sync::now()))
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, self.retry_after()) {
            (CircuitState::HalfOpen, _) => write!(
                f,
                "circuit breaker `{}` is half-open and every probe slot is taken",
                self.name()
            ),
            (CircuitState::ForcedOpen, _) => {
                write!(f, "circuit breaker `{}` is forced open", self.name())
            }
            (CircuitState::RateLimited, wait) => write!(
                f,
                "circuit breaker `{}` is cooling down after a rate limit; retry in {:.3}s",
                self.name(),
                wait.unwrap_or_default().as_secs_f64()
            ),
            (_, Some(wait)) => write!(
                f,
                "circuit breaker `{}` is open; next probe in {:.3}s",
                self.name(),
                wait.as_secs_f64()
            ),
            (_, None) => write!(f, "circuit breaker `{}` is open", self.name()),
        }
    }
}

impl std::error::Error for CircuitOpen {}

impl crate::rejection::OwnRejection for CircuitOpen {
    fn rejection(&self) -> crate::rejection::Rejection<'_> {
        // A `CircuitOpen` in the rate-limit state is the same rejection as `RateLimited`.
        let kind = if self.is_rate_limited() {
            crate::rejection::RejectionKind::RateLimited
        } else {
            crate::rejection::RejectionKind::CircuitOpen
        };
        crate::rejection::Rejection::new(kind, self.name(), self.retry_after())
    }
}

/// A breaker's name as a rejection carries it. A short name (most are) is copied in place, so
/// that a rejection touches no reference count: an `Arc` clone and its drop are two locked
/// read-modify-writes, a large part of a rejection's cost. A longer name is shared.
#[derive(Clone)]
pub(crate) enum ErrorName {
    Inline(InlineName),
    Shared(Arc<str>),
}

/// Up to `INLINE_NAME` bytes of name, in whole aligned words: copied as three 8-byte moves.
/// (Packed at odd offsets, the copy was made of overlapping moves that the CPU cannot forward
/// to the next read, which cost more than the reference count it saves.)
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct InlineName {
    len: u8,
    bytes: [u8; INLINE_NAME],
}

/// The longest name kept in place.
const INLINE_NAME: usize = 23;

impl ErrorName {
    pub(crate) fn new(name: &Arc<str>) -> Self {
        let len = name.len();
        match u8::try_from(len) {
            Ok(short) if len <= INLINE_NAME => {
                let mut bytes = [0; INLINE_NAME];
                bytes[..len].copy_from_slice(name.as_bytes());
                ErrorName::Inline(InlineName { len: short, bytes })
            }
            _ => ErrorName::Shared(name.clone()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // The bytes are a whole `str` (never cut), so this is always `Ok`.
            ErrorName::Inline(inline) => {
                std::str::from_utf8(&inline.bytes[..inline.len as usize]).unwrap_or_default()
            }
            ErrorName::Shared(name) => name,
        }
    }
}

impl fmt::Debug for ErrorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The upstream rate-limited us and the breaker is cooling down: the call was rejected without
/// reaching it. Not an outage: nothing counted toward the failure rate.
///
/// Services return it (boxed) instead of [`CircuitOpen`] while the breaker is in
/// [`CircuitState::RateLimited`]; see [`Permit::record_rate_limited`](super::Permit::record_rate_limited).
#[derive(Debug, Clone)]
pub struct RateLimited {
    inner: CircuitOpen,
}

impl RateLimited {
    /// The name of the breaker that rejected the call.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// How long until the cool-down ends.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after()
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl std::error::Error for RateLimited {}

impl crate::rejection::OwnRejection for RateLimited {
    fn rejection(&self) -> crate::rejection::Rejection<'_> {
        self.inner.rejection()
    }
}
