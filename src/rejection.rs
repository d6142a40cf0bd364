//! One recogniser of this crate's own rejections, for every component that must tell "our
//! middleware refused the call" from "the upstream failed".
//!
//! A call rejected by a breaker ([`CircuitOpen`], [`RateLimited`], a held call that gave up with
//! [`HoldRejected`]) or by a bulkhead ([`BulkheadFull`], [`BulkheadTimeout`]) never reached the
//! upstream. The retry policy must not retry the breaker's rejections, the HTTP classifier
//! must not count any of them against an outer breaker, a fallback may answer them, failover
//! skips a provider that rejected, and an HTTP answer can carry their `Retry-After`. They all
//! ask [`Rejection::of`], so they agree.
//!
//! The error is searched with its [`source()`](std::error::Error::source) chain, so a
//! rejection wrapped by another layer (a `HoldRejected` wraps the breaker's `CircuitOpen`,
//! tower's `buffer` wraps its inner error) is still found.
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
use crate::bulkhead::{AcquireError, BulkheadFull, BulkheadTimeout};
use crate::circuit_breaker::{CircuitOpen, HoldRejected, RateLimited};
use std::any::Any;
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// Which of this crate's middleware refused a call; see [`Rejection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A breaker is open, forced open, or half-open with every probe slot taken
    /// ([`CircuitOpen`]).
    CircuitOpen,
    /// A breaker is cooling down after a rate limit ([`RateLimited`], or a [`CircuitOpen`] in the
    /// `RateLimited` state).
    RateLimited,
    /// A bulkhead had no free slot and no room in its queue ([`BulkheadFull`]).
    BulkheadFull,
    /// A call waited in a bulkhead's queue for its `max_wait` ([`BulkheadTimeout`]).
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

impl<'a> Rejection<'a> {
    /// The first rejection of this crate in `error` or its `source()` chain, if any.
    pub fn of(error: &'a (dyn Error + 'static)) -> Option<Self> {
        let mut held = false;
        let mut next = Some(error);
        while let Some(error) = next {
            if error.is::<HoldRejected>() {
                // Its source is the breaker's last rejection, which says the rest.
                held = true;
            } else if let Some(found) = Self::direct(error) {
                return Some(Self { held, ..found });
            }
            next = error.source();
        }
        None
    }

    /// The rejection `error` is or wraps, for an error of any type: a [`BoxError`] (searched
    /// with its `source()` chain), a `reqwest_middleware::Error` (feature
    /// `reqwest-middleware`), or one of this crate's error types on its own. Other types
    /// cannot be looked into without an `Error` bound, and are never rejections.
    pub fn of_any<E: 'static>(error: &'a E) -> Option<Self> {
        let any: &dyn Any = error;
        if let Some(boxed) = any.downcast_ref::<BoxError>() {
            return Self::of(boxed.as_ref());
        }
        if let Some(boxed) = any.downcast_ref::<Box<dyn Error + 'static>>() {
            return Self::of(boxed.as_ref());
        }
        #[cfg(feature = "reqwest-middleware")]
        if let Some(error) = any.downcast_ref::<::reqwest_middleware::Error>() {
            return match error {
                // `anyhow`'s chain starts with the wrapped error itself.
                ::reqwest_middleware::Error::Middleware(e) => e.chain().find_map(Self::of),
                ::reqwest_middleware::Error::Reqwest(e) => Self::of(e),
            };
        }
        let error: &'a (dyn Error + 'static) = if let Some(e) = any.downcast_ref::<CircuitOpen>() {
            e
        } else if let Some(e) = any.downcast_ref::<RateLimited>() {
            e
        } else if let Some(e) = any.downcast_ref::<HoldRejected>() {
            e
        } else if let Some(e) = any.downcast_ref::<BulkheadFull>() {
            e
        } else if let Some(e) = any.downcast_ref::<BulkheadTimeout>() {
            e
        } else {
            any.downcast_ref::<AcquireError>()
                .map(|e| e as &'a (dyn Error + 'static))
                .or_else(|| {
                    #[cfg(feature = "quota")]
                    if let Some(e) = any.downcast_ref::<crate::quota::QuotaExceeded>() {
                        return Some(e as &'a (dyn Error + 'static));
                    }
                    None
                })?
        };
        Self::of(error)
    }

    /// One link of a chain, without its sources.
    fn direct(error: &'a (dyn Error + 'static)) -> Option<Self> {
        let (kind, name, retry_after) = if let Some(open) = error.downcast_ref::<CircuitOpen>() {
            // A `CircuitOpen` in the rate-limit state is the same rejection as `RateLimited`.
            let kind = if open.is_rate_limited() {
                RejectionKind::RateLimited
            } else {
                RejectionKind::CircuitOpen
            };
            (kind, open.name(), open.retry_after())
        } else if let Some(limited) = error.downcast_ref::<RateLimited>() {
            (
                RejectionKind::RateLimited,
                limited.name(),
                limited.retry_after(),
            )
        } else if let Some(full) = error.downcast_ref::<BulkheadFull>() {
            (RejectionKind::BulkheadFull, full.name(), None)
        } else if let Some(timeout) = error.downcast_ref::<BulkheadTimeout>() {
            (RejectionKind::BulkheadTimeout, timeout.name(), None)
        } else {
            #[cfg(feature = "quota")]
            if let Some(quota) = error.downcast_ref::<crate::quota::QuotaExceeded>() {
                return Some(Self {
                    kind: RejectionKind::QuotaExceeded,
                    name: quota.name(),
                    held: false,
                    retry_after: Some(quota.retry_after()),
                });
            }
            return None;
        };
        Some(Self {
            kind,
            name,
            held: false,
            retry_after,
        })
    }

    /// What refused the call.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The name of the breaker, bulkhead or quota governor that refused it.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// True when a breaker held the call first and then gave up ([`HoldRejected`]).
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

// Not under loom: these build breakers and bulkheads outside a loom model.
#[cfg(all(test, not(tower_breaker_loom)))]
mod tests {
    use super::*;
    use crate::bulkhead::Bulkhead;
    use crate::circuit_breaker::CircuitBreaker;

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
