//! The one token-bucket formula of the crate: a budget of `limit` units per `window`, refilled
//! continuously, that a call may take into debt (the level goes below zero) and then waits
//! until the refill has paid it back. The quota governor's buckets, [`QuotaTake::apply`] and
//! [`MemoryStore`] use these functions; the Redis script (`QUOTA` in `shared_state/redis.rs`)
//! writes the same lines in Lua, and its comment points here.
//!
//! Pure arithmetic: no clock is read, so every caller passes its own time (tokio's, or Redis's).
//!
//! [`QuotaTake::apply`]: crate::shared_state::QuotaTake::apply
//! [`MemoryStore`]: crate::shared_state::MemoryStore

use std::time::Duration;

/// Units per second of a budget of `limit` per `window` (a window under 1 ms counts as 1 ms).
pub(crate) fn rate(limit: f64, window: Duration) -> f64 {
    limit / window.as_secs_f64().max(1e-3)
}

/// The level `elapsed` seconds later: refilled at `rate`, never above `limit`.
pub(crate) fn refill(level: f64, limit: f64, rate: f64, elapsed: f64) -> f64 {
    (level + rate * elapsed.max(0.0)).min(limit)
}

/// Seconds until `cost` fits at `level` (zero when it fits now, or costs nothing).
pub(crate) fn wait(level: f64, cost: f64, rate: f64) -> f64 {
    if cost <= 0.0 || level >= cost {
        0.0
    } else {
        (cost - level) / rate
    }
}

/// True when `cost` is more than the whole `limit`: the level never rises above the limit, so
/// no wait makes it fit (an admission refuses it at once; a correction or a refund, which
/// takes in any case, is not asked).
pub(crate) fn never_fits(cost: f64, limit: f64) -> bool {
    cost > limit
}

/// The level after taking `cost` (negative: giving back), never above `limit`.
pub(crate) fn take(level: f64, cost: f64, limit: f64) -> f64 {
    (level - cost).min(limit)
}

/// `seconds` as a `Duration`, saturating (a wait too long to represent is `Duration::MAX`).
pub(crate) fn duration(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_unit_a_second_pays_a_debt_in_its_size() {
        let r = rate(60.0, Duration::from_secs(60));
        assert_eq!(r, 1.0);
        let level = take(0.5, 2.0, 60.0);
        assert_eq!(level, -1.5);
        assert_eq!(wait(level, 1.0, r), 2.5);
        assert_eq!(refill(level, 60.0, r, 100.0), 60.0);
        assert_eq!(take(59.0, -5.0, 60.0), 60.0, "a refund stops at the limit");
        assert_eq!(wait(-3.0, 0.0, r), 0.0, "nothing to take: no wait");
        assert!(
            !never_fits(60.0, 60.0),
            "the whole limit fits a full bucket"
        );
        assert!(never_fits(60.5, 60.0));
    }
}
