//! What the `metrics` and `opentelemetry` adapters share: the catalogue of instruments, and the
//! translation of every component's events into measurements. Each adapter only says how to
//! make and move one series ([`Backend`]).
//!
//! Series that move on every call (a breaker's call counters, a bulkhead's counters and gauges)
//! are made once per component name and kept; the rest (transitions, retries, fallbacks) are
//! looked up when they happen, which is rare.
//!
//! Finding a component's kept series is on every call's path, so each thread remembers the
//! last few it used ([`Recent`]): found by the identity of the event's name (`Arc::ptr_eq`, no
//! hash) without a lock; only the first event of a name on a thread takes the map's lock.

#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "opentelemetry")]
pub mod opentelemetry;

mod instrument;
mod recent;
#[cfg(test)]
mod tests;
mod translate;
