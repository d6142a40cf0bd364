//! The arithmetic of one key's budgets: two token buckets (requests, tokens) that refill
//! continuously, as the providers' limits do, and that admit a call against a debt: a call
//! that does not fit now takes its share at once (the level goes below zero) and waits until
//! the refill has paid it back. So waiting calls are served in arrival order, each knows its
//! wait when it is admitted, and nothing wakes up to find the budget taken by someone else.
//!
//! No clock is read here: every function takes `now`, so the tests and the property tests
//! drive it exactly.

use crate::token_bucket;
use std::time::Duration;
use tokio::time::Instant;

/// One budget: `capacity` units per `window`, refilled continuously. A capacity of zero means
/// "no limit known": everything fits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    pub(crate) capacity: f64,
    /// Units per second.
    pub(crate) rate: f64,
    pub(crate) level: f64,
    pub(crate) at: Instant,
}

impl Bucket {
    pub(crate) fn unlimited(now: Instant) -> Self {
        Self {
            capacity: 0.0,
            rate: 0.0,
            level: 0.0,
            at: now,
        }
    }

    pub(crate) fn is_limited(&self) -> bool {
        self.capacity > 0.0
    }

    /// Brings the level up to `now`.
    pub(crate) fn refill(&mut self, now: Instant) {
        if now > self.at {
            if self.is_limited() {
                let secs = now.duration_since(self.at).as_secs_f64();
                self.level = token_bucket::refill(self.level, self.capacity, self.rate, secs);
            }
            self.at = now;
        }
    }

    /// Sets the limit to `limit` units per `window` (0: no limit). A new bucket starts full;
    /// a known one keeps its level (at most the new capacity).
    pub(crate) fn set_limit(&mut self, limit: u64, window: Duration, now: Instant) {
        self.refill(now);
        let capacity = limit as f64;
        if !self.is_limited() {
            self.level = capacity;
        }
        self.capacity = capacity;
        self.rate = token_bucket::rate(capacity, window);
        self.level = self.level.min(capacity);
    }

    /// How long until `cost` fits (after [`refill`](Self::refill)): zero when it does now.
    pub(crate) fn wait(&self, cost: f64) -> Duration {
        self.wait_with(0.0, cost)
    }

    /// How long until `cost` fits at the level plus `extra` (the shares of calls that do not
    /// count for this one: the call itself, and those admitted after it).
    pub(crate) fn wait_with(&self, extra: f64, cost: f64) -> Duration {
        if !self.is_limited() {
            return Duration::ZERO;
        }
        token_bucket::duration(token_bucket::wait(self.level + extra, cost, self.rate))
    }

    /// True when `cost` is more than the whole limit: it never fits, whatever the wait. An
    /// unknown limit admits everything.
    pub(crate) fn never_fits(&self, cost: f64) -> bool {
        self.is_limited() && token_bucket::never_fits(cost, self.capacity)
    }

    /// Takes `cost` (negative: gives back), never above the capacity.
    pub(crate) fn take(&mut self, cost: f64) {
        if self.is_limited() {
            self.level = token_bucket::take(self.level, cost, self.capacity);
        }
    }

    /// What the provider reported: `remaining` units when it saw a call, of which `since`
    /// have been taken here by calls it had not seen yet. Providers report whole units,
    /// rounded down, so the true level was in `remaining .. remaining + 1` (a whole unit
    /// above is not in it): a level here in that range is kept (snapping it to `remaining` at
    /// every answer would lose up to a unit each time), one outside it is set to the report.
    pub(crate) fn observe(&mut self, remaining: u64, since: f64) {
        if self.is_limited() {
            let low = remaining as f64 - since;
            if !(low..low + 1.0).contains(&self.level) {
                self.level = low.min(self.capacity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_admits_its_capacity_then_paces_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::unlimited(t0);
        b.set_limit(60, Duration::from_secs(60), t0);
        for _ in 0..60 {
            assert_eq!(b.wait(1.0), Duration::ZERO);
            b.take(1.0);
        }
        assert_eq!(b.wait(1.0), Duration::from_secs(1));
        b.take(1.0);
        // The next one waits behind the debt of the last.
        assert_eq!(b.wait(1.0), Duration::from_secs(2));
        b.refill(t0 + Duration::from_secs(2));
        assert_eq!(b.wait(1.0), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_rounded_down_keeps_a_level_it_agrees_with() {
        let t0 = Instant::now();
        let mut b = Bucket::unlimited(t0);
        b.set_limit(60, Duration::from_secs(60), t0);
        b.level = 7.5;
        b.observe(7, 0.0);
        assert_eq!(b.level, 7.5, "7.5 is reported as 7");
        b.observe(3, 1.0);
        assert_eq!(
            b.level, 2.0,
            "less room: its report, less the call it had not seen"
        );
        b.observe(9, 0.0);
        assert_eq!(b.level, 9.0, "the provider saw more room: up to its report");
        b.observe(4, 0.0);
        assert_eq!(
            b.level, 4.0,
            "from above, down to the report, not its upper end"
        );
    }

    proptest! {
        /// Over any run of admissions, what was taken never exceeds the capacity plus the
        /// refill of the elapsed time, plus the debt waiting calls are owed.
        #[test]
        fn admitted_units_stay_within_capacity_and_refill(
            steps in proptest::collection::vec((0u64..2_000, 1u64..50), 1..200),
            limit in 1u64..1_000,
        ) {
            let t0 = Instant::now();
            let window = Duration::from_secs(60);
            let mut b = Bucket::unlimited(t0);
            b.set_limit(limit, window, t0);
            let mut now = t0;
            let mut taken = 0.0;
            for (advance_ms, cost) in steps {
                now += Duration::from_millis(advance_ms);
                b.refill(now);
                let wait = b.wait(cost as f64);
                if wait.is_zero() {
                    b.take(cost as f64);
                    taken += cost as f64;
                }
                let elapsed = now.duration_since(t0).as_secs_f64();
                let allowed = limit as f64 + limit as f64 / 60.0 * elapsed;
                prop_assert!(taken <= allowed + 1e-6, "{} > {}", taken, allowed);
            }
        }
    }
}
