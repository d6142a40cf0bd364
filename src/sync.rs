//! Atomics used by the lock-free cores, swapped for `loom`'s under `--cfg tower_breaker_loom`
//! so that the loom models in `tests/loom` explore every interleaving of the real code.
//!
//! The cfg is this crate's own rather than the usual `loom`: under `--cfg loom`, tokio leaves
//! out `tokio::net`, which the HTTP dev-dependencies need, so the test build would fail.

#[cfg(tower_breaker_loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
#[cfg(not(tower_breaker_loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
