//! Atomics used by the lock-free cores, swapped for `loom`'s in the library's own tests under
//! `--cfg tower_breaker_loom`, so that the loom models (`tests/loom`, compiled into those
//! tests) explore every interleaving of the real code. Only there: `loom` is a
//! dev-dependency, so that it never reaches a user's lockfile.
//!
//! The cfg is this crate's own rather than the usual `loom`: under `--cfg loom`, tokio leaves
//! out `tokio::net`, which the HTTP dev-dependencies need, so the test build would fail.

#[cfg(all(test, tower_breaker_loom))]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
#[cfg(not(all(test, tower_breaker_loom)))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

/// The time the breaker's engine reads: tokio's clock, so that `tokio::time::pause()` drives
/// every test.
#[cfg(not(all(test, tower_breaker_loom)))]
#[inline]
pub(crate) fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

#[cfg(all(test, tower_breaker_loom))]
pub(crate) use self::manual_clock::{advance, now};

/// In the loom build, a clock the models move by hand: loom does not model time, and a real
/// sleep in a model is slow and proves nothing about time. Per OS thread: a loom model's
/// threads are coroutines on the test's own thread, and tests running side by side do not
/// move each other's clocks.
#[cfg(all(test, tower_breaker_loom))]
mod manual_clock {
    use std::cell::Cell;
    use std::time::Duration;
    use tokio::time::Instant;

    thread_local! {
        static BASE: Instant = Instant::now();
        static OFFSET: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }

    pub(crate) fn now() -> Instant {
        BASE.with(|base| *base) + OFFSET.with(Cell::get)
    }

    /// Moves this thread's clock forward by `by`.
    pub(crate) fn advance(by: Duration) {
        OFFSET.with(|offset| offset.set(offset.get() + by));
    }
}
