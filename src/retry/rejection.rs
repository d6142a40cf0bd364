//! Recognises the rejections of our own middleware in an error of any type.

use crate::BoxError;
use crate::bulkhead::{AcquireError, BulkheadFull, BulkheadTimeout};
use crate::circuit_breaker::{CircuitOpen, RateLimited};
use std::any::Any;
use std::error::Error;

/// A rejection by one of this crate's middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    CircuitOpen,
    RateLimited,
    Bulkhead,
}

/// The rejection `err` is or wraps, if any.
///
/// `err` is usually a [`BoxError`] (every layer in this crate returns one, and so do tower's
/// `timeout` and `buffer`): its `source()` chain is searched, so a rejection wrapped by another
/// layer is still found. A bare `CircuitOpen`, `RateLimited`, `BulkheadFull`,
/// `BulkheadTimeout` or `AcquireError` error type is recognised too. Other error types cannot be looked into
/// without an `Error` bound, and are never rejections.
pub(crate) fn rejection<E: 'static>(err: &E) -> Option<Rejection> {
    let any: &dyn Any = err;
    if let Some(boxed) = any.downcast_ref::<BoxError>() {
        let mut current: Option<&(dyn Error + 'static)> = Some(boxed.as_ref());
        while let Some(error) = current {
            if let Some(found) = classify_error(error) {
                return Some(found);
            }
            current = error.source();
        }
        None
    } else if any.is::<CircuitOpen>() {
        Some(Rejection::CircuitOpen)
    } else if any.is::<RateLimited>() {
        Some(Rejection::RateLimited)
    } else if any.is::<BulkheadFull>() || any.is::<BulkheadTimeout>() || any.is::<AcquireError>() {
        Some(Rejection::Bulkhead)
    } else {
        None
    }
}

fn classify_error(error: &(dyn Error + 'static)) -> Option<Rejection> {
    if let Some(open) = error.downcast_ref::<CircuitOpen>() {
        // A `CircuitOpen` in the rate-limit state is the same rejection as `RateLimited`.
        Some(if open.is_rate_limited() {
            Rejection::RateLimited
        } else {
            Rejection::CircuitOpen
        })
    } else if error.is::<RateLimited>() {
        Some(Rejection::RateLimited)
    } else if error.is::<BulkheadFull>() || error.is::<BulkheadTimeout>() {
        Some(Rejection::Bulkhead)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit_breaker::CircuitBreaker;
    use std::fmt;

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
    fn finds_rejections_boxed_wrapped_or_bare() {
        let boxed: BoxError = open().into_box_error();
        assert_eq!(rejection(&boxed), Some(Rejection::CircuitOpen));
        let wrapped: BoxError = Box::new(Wrapper(open().into_box_error()));
        assert_eq!(rejection(&wrapped), Some(Rejection::CircuitOpen));
        assert_eq!(rejection(&open()), Some(Rejection::CircuitOpen));
        let other: BoxError = "boom".into();
        assert_eq!(rejection(&other), None);
        assert_eq!(rejection(&std::io::Error::other("x")), None);
    }
}
