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
