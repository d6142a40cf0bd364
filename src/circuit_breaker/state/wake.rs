//! When a breaker admits calls again, as the instant its state word holds: the one deadline
//! that a caller waiting for the breaker (a retry after a 429) must sleep to, so that it never
//! wakes on a clock of its own inside the wait (see `RetryDelay`).

use super::{Shared, Tag};
use crate::circuit_breaker::CircuitState;
use tokio::time::Instant;

/// When a call would be admitted, judged from one read of the state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Now.
    Now,
    /// From this instant on (the end of an open wait or a rate-limit cool-down, exactly as the
    /// breaker compares it); the state is `Open` or `RateLimited`.
    At(CircuitState, Instant),
    /// Not known: forced open, half-open with every probe slot taken, or open in a fleet whose
    /// round this replica holds no slot of.
    Unknown,
}

impl Shared {
    /// When a call would be admitted. Mirrors `would_permit` and, for a wait, `not_yet`.
    pub(crate) fn admission(&self) -> Admission {
        let word = self.current();
        match word.tag() {
            Tag::Closed | Tag::MetricsOnly | Tag::Disabled => Admission::Now,
            Tag::ForcedOpen => Admission::Unknown,
            Tag::RateLimited => match self.not_yet(word.payload()) {
                Some(until) => Admission::At(CircuitState::RateLimited, until),
                None => Admission::Now,
            },
            Tag::Open => match self.not_yet(word.payload()) {
                Some(until) => Admission::At(CircuitState::Open, until),
                None if self.probe_limit() > 0 => Admission::Now,
                None => Admission::Unknown,
            },
            Tag::HalfOpen if word.probes().admitted < self.probe_limit() => Admission::Now,
            Tag::HalfOpen => Admission::Unknown,
        }
    }
}
