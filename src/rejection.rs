//! One recogniser of this crate's own rejections, for every component that must tell "our
//! middleware refused the call" from "the upstream failed".
//!
//! A call rejected by a breaker ([`CircuitOpen`](crate::circuit_breaker::CircuitOpen),
//! [`RateLimited`](crate::circuit_breaker::RateLimited), a held call that gave up with
//! [`HoldRejected`](crate::circuit_breaker::HoldRejected)), by a bulkhead
//! ([`BulkheadFull`](crate::bulkhead::BulkheadFull),
//! [`BulkheadTimeout`](crate::bulkhead::BulkheadTimeout)) or by a quota never reached the
//! upstream. The retry policy must not retry the breaker's rejections, the HTTP classifier
//! must not count any of them against an outer breaker, a fallback may answer them, failover
//! skips a provider that rejected, and an HTTP answer can carry their `Retry-After`. They all
//! ask [`Rejection::of`], so they agree.
//!
//! The error is searched with its [`chain`]: its [`source()`](std::error::Error::source)s and
//! the errors inside `std::io::Error`s, so a rejection wrapped by another layer (a
//! `HoldRejected` wraps the breaker's `CircuitOpen`, tower's `buffer` wraps its inner error,
//! a body read through hyper or reqwest wraps it in an `io::Error`) is still found. [`find`]
//! does the same walk for any error type (a stream guard's error inside a `reqwest::Error`).
//!
//! This module is the bottom layer: it names no other module of the crate. Each rejection
//! type says what it is (a crate-private trait implemented next to the type), and the crate
//! root lists the types.
//!
//! ```
//! use std::time::Duration;
//! use tower_breaker::BoxError;
//! use tower_breaker::circuit_breaker::CircuitBreaker;
//! use tower_breaker::rejection::{Rejection, RejectionKind};
//!
//! let breaker = CircuitBreaker::builder("openai").wait_in_open(Duration::from_secs(30)).build()?;
//! breaker.force_open();
//! let err: BoxError = breaker.try_acquire().unwrap_err().into_box_error();
//! let rejection = Rejection::of(err.as_ref()).expect("our own rejection");
//! assert_eq!(rejection.kind(), RejectionKind::CircuitOpen);
//! assert_eq!(rejection.name(), "openai");
//! assert!(rejection.kind().is_breaker());
//!
//! let upstream: BoxError = "connection reset".into();
//! assert!(Rejection::of(upstream.as_ref()).is_none());
//! # Ok::<_, tower_breaker::ConfigError>(())
//! ```

use crate::BoxError;
use std::any::Any;
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// Which of this crate's middleware refused a call; see [`Rejection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A breaker is open, forced open, or half-open with every probe slot taken
    /// ([`CircuitOpen`](crate::circuit_breaker::CircuitOpen)).
    CircuitOpen,
    /// A breaker is cooling down after a rate limit
    /// ([`RateLimited`](crate::circuit_breaker::RateLimited), or a `CircuitOpen` in the
    /// `RateLimited` state).
    RateLimited,
    /// A bulkhead had no free slot and no room in its queue
    /// ([`BulkheadFull`](crate::bulkhead::BulkheadFull)).
    BulkheadFull,
    /// A call waited in a bulkhead's queue for its `max_wait`
    /// ([`BulkheadTimeout`](crate::bulkhead::BulkheadTimeout)).
    BulkheadTimeout,
    /// A quota governor found no room for the call within its `max_wait`
    /// ([`QuotaExceeded`](crate::quota::QuotaExceeded), feature `quota`): the provider's
    /// quota, not the provider, refused it, and the rejection says when it would fit.
    QuotaExceeded,
}

impl RejectionKind {
    /// True for a breaker's rejections (open or cooling down): the upstream is known to be
    /// down or to want no calls now, so retrying before the breaker's wait cannot help.
    pub fn is_breaker(self) -> bool {
        matches!(
            self,
            RejectionKind::CircuitOpen | RejectionKind::RateLimited
        )
    }

    /// True for a bulkhead's rejections: our own capacity was full, the upstream was not asked.
    pub fn is_bulkhead(self) -> bool {
        matches!(
            self,
            RejectionKind::BulkheadFull | RejectionKind::BulkheadTimeout
        )
    }

    /// The kind in `snake_case`, as in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionKind::CircuitOpen => "circuit_open",
            RejectionKind::RateLimited => "rate_limited",
            RejectionKind::BulkheadFull => "bulkhead_full",
            RejectionKind::BulkheadTimeout => "bulkhead_timeout",
            RejectionKind::QuotaExceeded => "quota_exceeded",
        }
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejection by one of this crate's middleware, found in an error: what refused the call,
/// its name, whether the call had been held first, and how long until it would let a call
/// through (for a `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection<'a> {
    kind: RejectionKind,
    name: &'a str,
    held: bool,
    retry_after: Option<Duration>,
}

/// Implemented by each of this crate's error types that is a rejection, next to the type;
/// the crate root lists them (`crate::REJECTIONS`), so that this module names none of the
/// modules above it.
pub(crate) trait OwnRejection: Error + 'static {
    /// The rejection this error is.
    fn rejection(&self) -> Rejection<'_>;
}

/// How [`Rejection`] recognises one of the crate's error types: a downcast to it, from an
/// error of a chain or from a value of any type.
#[derive(Clone, Copy)]
pub(crate) struct Recogniser {
    of_error: for<'a> fn(&'a (dyn Error + 'static)) -> Option<Rejection<'a>>,
    of_any: for<'a> fn(&'a dyn Any) -> Option<&'a (dyn Error + 'static)>,
}

impl Recogniser {
    /// The recogniser of `T`.
    pub(crate) const fn of<T: OwnRejection>() -> Self {
        Self {
            of_error: |error| error.downcast_ref::<T>().map(T::rejection),
            of_any: |any| any.downcast_ref::<T>().map(|e| e as &(dyn Error + 'static)),
        }
    }
}

impl<'a> Rejection<'a> {
    /// A rejection of `kind` by the component `name`, not held.
    pub(crate) fn new(kind: RejectionKind, name: &'a str, retry_after: Option<Duration>) -> Self {
        Self {
            kind,
            name,
            held: false,
            retry_after,
        }
    }

    /// The same rejection, after the breaker held the call for a while.
    pub(crate) fn after_hold(self) -> Self {
        Self { held: true, ..self }
    }

    /// The first rejection of this crate in `error` or its [`chain`]: its `source()`s, and
    /// the errors wrapped in an `std::io::Error` (a body error read through hyper or
    /// reqwest arrives that way).
    ///
    /// ```
    /// use tower_breaker::circuit_breaker::CircuitBreaker;
    /// use tower_breaker::rejection::{Rejection, RejectionKind};
    ///
    /// let breaker = CircuitBreaker::builder("openai").build()?;
    /// breaker.force_open();
    /// let open = breaker.try_acquire().unwrap_err();
    /// let io = std::io::Error::other(open);
    /// let found = Rejection::of(&io).expect("found inside the io::Error");
    /// assert_eq!(found.kind(), RejectionKind::CircuitOpen);
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    pub fn of(error: &'a (dyn Error + 'static)) -> Option<Self> {
        chain(error).find_map(|link| {
            crate::REJECTIONS
                .iter()
                .find_map(|recogniser| (recogniser.of_error)(link))
        })
    }

    /// The rejection `error` is or wraps, for an error of any type: a [`BoxError`] (searched
    /// with its [`chain`]), an `std::io::Error`, a `reqwest::Error` (feature `reqwest`), a
    /// `reqwest_middleware::Error` (feature `reqwest-middleware`), or one of this crate's
    /// error types on its own. Other types cannot be looked into without an `Error` bound,
    /// and are never rejections.
    pub fn of_any<E: 'static>(error: &'a E) -> Option<Self> {
        let any: &dyn Any = error;
        if let Some(boxed) = any.downcast_ref::<BoxError>() {
            return Self::of(boxed.as_ref());
        }
        if let Some(boxed) = any.downcast_ref::<Box<dyn Error + 'static>>() {
            return Self::of(boxed.as_ref());
        }
        if let Some(io) = any.downcast_ref::<std::io::Error>() {
            return Self::of(io);
        }
        #[cfg(feature = "reqwest")]
        if let Some(error) = any.downcast_ref::<::reqwest::Error>() {
            return Self::of(error);
        }
        #[cfg(feature = "reqwest-middleware")]
        if let Some(error) = any.downcast_ref::<::reqwest_middleware::Error>() {
            return match error {
                // `anyhow`'s chain starts with the wrapped error itself.
                ::reqwest_middleware::Error::Middleware(e) => e.chain().find_map(Self::of),
                ::reqwest_middleware::Error::Reqwest(e) => Self::of(e),
            };
        }
        let error = crate::REJECTIONS
            .iter()
            .find_map(|recogniser| (recogniser.of_any)(any))?;
        Self::of(error)
    }

    /// What refused the call.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The name of the breaker, bulkhead or quota governor that refused it.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// True when a breaker held the call for a while and then gave up
    /// ([`HoldRejected`](crate::circuit_breaker::HoldRejected) with
    /// [`HoldReason::Expired`](crate::circuit_breaker::HoldReason::Expired)). A call turned
    /// away because the hold was full was never held: false.
    pub fn was_held(&self) -> bool {
        self.held
    }

    /// How long until the breaker lets a call through again (or the quota has room for it),
    /// when it knows (`None` for a bulkhead, a forced-open breaker, or a half-open one with
    /// every slot taken).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// Links followed at most by [`chain`]: far more than any real wrapping, and a bound on a
/// `source()` that loops.
const MAX_CHAIN: usize = 64;

/// `error`, then the errors it wraps: each [`source()`](Error::source), and the error inside
/// an `std::io::Error` ([`get_ref`](std::io::Error::get_ref): an `io::Error`'s own `source()`
/// skips the error it wraps and returns that error's source). At most 64 links.
///
/// A body error read through hyper, `reqwest` or `http-body-util` adapters often arrives
/// as `io::Error` inside the client's own error: this walk reaches the error underneath.
pub fn chain<'a>(
    error: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |&error| {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            return Some(inner as &(dyn Error + 'static));
        }
        error.source()
    })
    .take(MAX_CHAIN)
}

/// The first error of type `E` in `error`'s [`chain`] (`error` itself, its `source()`s, and
/// errors wrapped in an `std::io::Error`), however the clients between wrapped it.
///
/// A stream guard's [`StreamIdle`](crate::stream::StreamIdle), a
/// [`StreamTruncated`](crate::stream::StreamTruncated) or a
/// [`BodyIdleTimeout`](crate::http::BodyIdleTimeout) raised while `reqwest` reads a body
/// reaches the caller as a `reqwest::Error` ("error decoding response body"); `err.is::<E>()`
/// cannot see it there, `find` can. For this crate's rejections, [`Rejection::of`] says more.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::BoxError;
/// use tower_breaker::http::BodyIdleTimeout;
/// use tower_breaker::rejection::find;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), BoxError> {
/// # use http_body_util::{BodyExt, StreamBody};
/// # use tower_breaker::circuit_breaker::CircuitBreaker;
/// # use tower_breaker::http::HttpClassifier;
/// # let breaker = CircuitBreaker::builder("llm").build()?;
/// # let classifier = HttpClassifier::builder().body_idle_timeout(Duration::from_secs(30)).build()?;
/// # let stalled = StreamBody::new(futures_util::stream::pending::<
/// #     Result<http_body::Frame<bytes::Bytes>, std::io::Error>,
/// # >());
/// // A body that stalled, read as an `io::Error` by an adapter (as reqwest and hyper do)...
/// let response = classifier.record_response(http::Response::new(stalled), breaker.try_acquire()?);
/// let err: BoxError = response.into_body().collect().await.unwrap_err();
/// let err = std::io::Error::other(err);
/// // (`io::Error::source` skips the error it wraps.)
/// assert!(std::error::Error::source(&err).is_none());
///
/// // ...is found all the same.
/// let idle = find::<BodyIdleTimeout>(&err).expect("ours");
/// assert_eq!(idle.idle(), Duration::from_secs(30));
/// assert!(find::<std::fmt::Error>(&err).is_none());
/// # Ok(())
/// # }
/// ```
pub fn find<'a, E: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a E> {
    chain(error).find_map(|link| link.downcast_ref::<E>())
}

// Not under loom: these build breakers and bulkheads outside a loom model.
#[cfg(all(test, not(tower_breaker_loom)))]
mod tests {
    use super::*;
    use crate::bulkhead::{AcquireError, Bulkhead};
    use crate::circuit_breaker::{CircuitBreaker, CircuitOpen};

    #[derive(Debug)]
    struct Wrapper(BoxError);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    fn open() -> CircuitOpen {
        let breaker = CircuitBreaker::builder("b")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        breaker.force_open();
        match breaker.try_acquire() {
            Err(open) => open,
            Ok(_) => panic!("forced open"),
        }
    }

    #[test]
    fn rejections_are_found_boxed_wrapped_or_bare() {
        let boxed: BoxError = open().into_box_error();
        let kind = |e: &BoxError| Rejection::of(e.as_ref()).map(|r| r.kind());
        assert_eq!(kind(&boxed), Some(RejectionKind::CircuitOpen));
        let wrapped: BoxError = Box::new(Wrapper(open().into_box_error()));
        assert_eq!(kind(&wrapped), Some(RejectionKind::CircuitOpen));
        assert_eq!(
            Rejection::of_any(&open()).map(|r| r.kind()),
            Some(RejectionKind::CircuitOpen)
        );
        assert_eq!(
            Rejection::of_any(&boxed).map(|r| r.name()),
            Some("b"),
            "the breaker's name"
        );
        let other: BoxError = "boom".into();
        assert_eq!(kind(&other), None);
        assert!(Rejection::of_any(&std::io::Error::other("x")).is_none());
    }

    #[test]
    fn rejections_are_found_inside_io_errors() {
        // `io::Error::source` skips the error it wraps: only `get_ref` reaches it.
        let io = std::io::Error::other(open());
        let kind = |e: &(dyn Error + 'static)| Rejection::of(e).map(|r| r.kind());
        assert_eq!(kind(&io), Some(RejectionKind::CircuitOpen));
        assert_eq!(
            Rejection::of_any(&io).map(|r| r.name()),
            Some("b"),
            "an io::Error of any type"
        );
        // Deeper: a boxed wrapper around an io::Error around a boxed rejection.
        let io = std::io::Error::other(Wrapper(open().into_box_error()));
        let nested: BoxError = Box::new(Wrapper(Box::new(io)));
        assert_eq!(kind(nested.as_ref()), Some(RejectionKind::CircuitOpen));
        assert_eq!(kind(&std::io::Error::other("reset")), None);
    }

    #[derive(Debug)]
    struct Loop;

    impl fmt::Display for Loop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loop")
        }
    }

    impl Error for Loop {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self)
        }
    }

    #[test]
    fn find_walks_sources_and_io_errors_and_stops_on_a_loop() {
        let io = std::io::Error::other(Wrapper(open().into_box_error()));
        let found = find::<CircuitOpen>(&io).map(CircuitOpen::name);
        assert_eq!(found, Some("b"));
        assert!(
            find::<Wrapper>(&io).is_some(),
            "the io::Error's own content"
        );
        assert!(find::<fmt::Error>(&io).is_none());
        assert_eq!(chain(&io).count(), 3);
        assert!(find::<fmt::Error>(&Loop).is_none());
        assert_eq!(chain(&Loop).count(), MAX_CHAIN);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_was_held_only_if_it_waited_in_the_hold() {
        use crate::circuit_breaker::{HoldReason, HoldRejected};
        use tower::{Layer, ServiceExt};
        // Open for a minute (a forced-open breaker holds no call).
        let breaker = CircuitBreaker::builder("b")
            .sliding_window(crate::circuit_breaker::SlidingWindow::consecutive(1))
            .wait_in_open(Duration::from_secs(60))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let permit = breaker.try_acquire().unwrap_or_else(|e| panic!("{e}"));
        permit.record(crate::Outcome::Failure);
        let inner = tower::service_fn(|()| async { Ok::<_, BoxError>(()) });
        let rejected = |held_at_most: usize| {
            let layer = breaker
                .layer()
                .hold_while_open(held_at_most, Duration::from_secs(1));
            layer.layer(inner).oneshot(())
        };

        // One call waits in the hold (room for one)...
        let mut first = tokio_test::task::spawn(rejected(1));
        assert!(first.poll().is_pending(), "held");
        // ...so the next is turned away at once: never held.
        let Err(full) = rejected(1).await else {
            panic!("open")
        };
        let hold = full.downcast_ref::<HoldRejected>().map(|h| h.reason());
        assert_eq!(hold, Some(HoldReason::Full { max_held: 1 }));
        let found = Rejection::of(full.as_ref()).unwrap_or_else(|| panic!("not found"));
        assert_eq!(found.kind(), RejectionKind::CircuitOpen);
        assert!(!found.was_held(), "a full hold held nothing");

        // The first was held for its `max_wait`, then given up on.
        let Err(expired) = first.await else {
            panic!("open")
        };
        let hold = expired.downcast_ref::<HoldRejected>().map(|h| h.reason());
        assert!(matches!(hold, Some(HoldReason::Expired { .. })), "{hold:?}");
        let found = Rejection::of(expired.as_ref()).unwrap_or_else(|| panic!("not found"));
        assert!(found.was_held());
        assert_eq!(
            Rejection::of_any(&expired).map(|r| r.was_held()),
            Some(true)
        );
    }

    #[cfg(feature = "quota")]
    #[tokio::test(start_paused = true)]
    async fn quota_rejections_are_found_with_their_wait() {
        use crate::quota::Quota;
        let quota = Quota::<&str>::builder("llm")
            .max_wait(Duration::ZERO)
            .requests_per_window(1)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let _first = quota
            .acquire(&"gpt", 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let Err(exceeded) = quota.acquire(&"gpt", 0).await else {
            panic!("the second call of the minute fits")
        };
        let found = Rejection::of_any(&exceeded).unwrap_or_else(|| panic!("not found bare"));
        assert_eq!(found.kind(), RejectionKind::QuotaExceeded);
        assert_eq!(found.name(), "llm");
        assert_eq!(found.retry_after(), Some(Duration::from_secs(60)));
        let boxed: BoxError = Box::new(Wrapper(exceeded.into()));
        assert_eq!(
            Rejection::of(boxed.as_ref()).map(|r| r.kind()),
            Some(RejectionKind::QuotaExceeded)
        );
    }

    #[test]
    fn bulkhead_rejections_are_found_bare_and_through_acquire_error() {
        let bulkhead = Bulkhead::builder("pool")
            .max_concurrent(1)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let _slot = bulkhead.try_acquire().unwrap_or_else(|e| panic!("{e}"));
        let full = match bulkhead.try_acquire() {
            Err(full) => full,
            Ok(_) => panic!("one slot only"),
        };
        let found = Rejection::of_any(&full).map(|r| (r.kind(), r.name()));
        assert_eq!(found, Some((RejectionKind::BulkheadFull, "pool")));
        let acquire = AcquireError::from(full);
        assert!(Rejection::of_any(&acquire).is_some_and(|r| r.kind().is_bulkhead()));
    }
}
