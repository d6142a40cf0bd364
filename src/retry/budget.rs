use crate::config::{Check, ConfigError};
use std::fmt;
use std::sync::Arc;
// Plain std atomics: the budget is not part of the loom models (it is approximate by design).
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How many retries a client may make: at most a share of its recent calls, plus a minimum per
/// second, so that a failing upstream sees a bounded amount of extra traffic, not a multiple of
/// the load. The design of Finagle's `RetryBudget` and tower's `TpsBudget`.
///
/// Every call deposits `retry_ratio` of a token; every retry withdraws one. Deposits and
/// withdrawals count for `ttl` (default 10 s) and then expire. On top of that, a reserve of
/// `min_retries_per_sec * ttl` tokens lets a quiet client retry at all. When the balance is below
/// one token, a retry is refused: the failure goes back to the caller at once.
///
/// Clones share one budget, so one budget can cover several policies (every route to one
/// upstream, say). It is lock-free: a deposit is one clock read and one compare-and-swap. Two
/// retries racing for the last token may both get it; the budget is a bound on load, not an
/// exact count.
///
/// ```
/// use tower_breaker::retry::RetryBudget;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // Retries at most 10 % of calls; no minimum.
/// let budget = RetryBudget::new(0.1, 0);
/// assert!(!budget.withdraw(), "no calls yet, no retries");
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// assert_eq!(budget.available(), 1);
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw());
///
/// // With a minimum of 3 retries a second (over the 10 s window: 30 tokens).
/// let budget = RetryBudget::new(0.2, 3);
/// assert_eq!(budget.available(), 30);
/// # }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    state: Arc<State>,
}

/// Fixed-point: one token (one retry) is this many units.
const TOKEN: i64 = 1000;
const BUCKETS: usize = 10;

struct State {
    retry_ratio: f64,
    min_retries_per_sec: u32,
    ttl: Duration,
    /// Units deposited per call.
    deposit: i64,
    /// Units always available.
    reserve: i64,
    bucket_nanos: u128,
    origin: Instant,
    /// Each bucket: the low 32 bits of its epoch (the tag) and a signed 32-bit balance.
    buckets: [AtomicU64; BUCKETS],
}

impl RetryBudget {
    /// A budget that allows retries of at most `retry_ratio` of the calls (0.0 to 10.0: 0.2
    /// allows one retry per five calls), and at least `min_retries_per_sec` (up to 1,000,000)
    /// retries a second, averaged over the ttl. Checked when the policy is built (or by
    /// [`validate`](Self::validate)); until then an out-of-range value is clamped.
    pub fn new(retry_ratio: f64, min_retries_per_sec: u32) -> Self {
        Self::with_ttl(retry_ratio, min_retries_per_sec, Duration::from_secs(10))
    }

    /// How long a deposit or withdrawal counts (1 s to 60 s, default 10 s). Returns a new
    /// budget: clones made before share the old one.
    pub fn ttl(self, ttl: Duration) -> Self {
        Self::with_ttl(self.state.retry_ratio, self.state.min_retries_per_sec, ttl)
    }

    fn with_ttl(retry_ratio: f64, min_retries_per_sec: u32, ttl: Duration) -> Self {
        let ratio = if retry_ratio.is_nan() {
            0.0
        } else {
            retry_ratio.clamp(0.0, 10.0)
        };
        // Both casts are of finite values far inside `i64`'s range (ratio <= 10, reserve
        // <= 1e6 * 60 s * 1000 after validation); `as` saturates rather than panics anyway.
        let deposit = (ratio * TOKEN as f64).round() as i64;
        let reserve =
            (f64::from(min_retries_per_sec) * ttl.as_secs_f64() * TOKEN as f64).round() as i64;
        let bucket_nanos = (ttl.as_nanos() / BUCKETS as u128).max(1_000_000);
        Self {
            state: Arc::new(State {
                retry_ratio,
                min_retries_per_sec,
                ttl,
                deposit,
                reserve,
                bucket_nanos,
                origin: Instant::now(),
                buckets: Default::default(),
            }),
        }
    }

    /// Checks the settings: ratio 0.0 to 10.0, minimum up to 1,000,000 a second, ttl 1 s to
    /// 60 s.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check("retry_budget")
    }

    pub(crate) fn check(&self, component: &str) -> Result<(), ConfigError> {
        let check = Check { component };
        let ratio = self.state.retry_ratio;
        if !(0.0..=10.0).contains(&ratio) {
            return Err(ConfigError::new(
                component,
                "budget.retry_ratio",
                ratio,
                "0.0 <= x <= 10.0",
            ));
        }
        check.range_u64(
            "budget.min_retries_per_sec",
            u64::from(self.state.min_retries_per_sec),
            0,
            1_000_000,
        )?;
        check.duration(
            "budget.ttl",
            self.state.ttl,
            Duration::from_secs(1),
            Duration::from_secs(60),
        )?;
        Ok(())
    }

    /// Records a call: adds `retry_ratio` of a token.
    pub fn deposit(&self) {
        let state = &self.state;
        if state.deposit != 0 {
            state.add(state.epoch(), state.deposit);
        }
    }

    /// Takes one token for a retry; false (and nothing taken) when less than one is left.
    pub fn withdraw(&self) -> bool {
        let state = &self.state;
        let epoch = state.epoch();
        if state.balance(epoch) >= TOKEN {
            state.add(epoch, -TOKEN);
            true
        } else {
            false
        }
    }

    /// How many retries the budget would allow now.
    pub fn available(&self) -> u64 {
        let state = &self.state;
        u64::try_from(state.balance(state.epoch()) / TOKEN).unwrap_or(0)
    }

    /// The share of calls that may be retried.
    pub fn retry_ratio(&self) -> f64 {
        self.state.retry_ratio
    }

    /// The retries a second allowed whatever the traffic.
    pub fn min_retries_per_sec(&self) -> u32 {
        self.state.min_retries_per_sec
    }
}

impl State {
    fn epoch(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.origin);
        // More than 2^64 buckets would take longer than the universe has existed.
        u64::try_from(elapsed.as_nanos() / self.bucket_nanos).unwrap_or(u64::MAX)
    }

    fn add(&self, epoch: u64, amount: i64) {
        let tag = epoch as u32; // the low 32 bits: wraps after 13 years of 100 ms buckets
        // In bounds: the index is a remainder of the division by `BUCKETS`.
        let slot = &self.buckets[(epoch % BUCKETS as u64) as usize];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (old_tag, old_value) = unpack(current);
            let base = if old_tag == tag {
                i64::from(old_value)
            } else {
                0
            };
            let value = base
                .saturating_add(amount)
                .clamp(i64::from(i32::MIN), i64::from(i32::MAX));
            // In range after the clamp.
            let next = pack(tag, value as i32);
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// The reserve plus every bucket of the last `BUCKETS` epochs.
    fn balance(&self, epoch: u64) -> i64 {
        let tag = epoch as u32;
        let recent: i64 = self
            .buckets
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Acquire)))
            .filter(|(bucket_tag, _)| (tag.wrapping_sub(*bucket_tag) as usize) < BUCKETS)
            .map(|(_, value)| i64::from(value))
            .sum();
        self.reserve.saturating_add(recent)
    }
}

fn pack(tag: u32, value: i32) -> u64 {
    (u64::from(tag) << 32) | u64::from(value as u32)
}

fn unpack(word: u64) -> (u32, i32) {
    ((word >> 32) as u32, word as u32 as i32)
}

impl tower::retry::budget::Budget for RetryBudget {
    fn deposit(&self) {
        RetryBudget::deposit(self);
    }

    fn withdraw(&self) -> bool {
        RetryBudget::withdraw(self)
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("retry_ratio", &self.state.retry_ratio)
            .field("min_retries_per_sec", &self.state.min_retries_per_sec)
            .field("ttl", &self.state.ttl)
            .field("available", &self.available())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        for (tag, value) in [(0, 0), (7, -1000), (u32::MAX, i32::MIN), (1, i32::MAX)] {
            assert_eq!(unpack(pack(tag, value)), (tag, value));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_and_withdrawals_expire_after_the_ttl() {
        let budget = RetryBudget::new(0.5, 0);
        for _ in 0..4 {
            budget.deposit();
        }
        assert_eq!(budget.available(), 2);
        assert!(budget.withdraw());
        assert_eq!(budget.available(), 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(budget.available(), 1, "still inside the 10 s window");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(budget.available(), 0, "everything expired");
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_refills_as_withdrawals_expire() {
        let budget = RetryBudget::new(0.0, 1).ttl(Duration::from_secs(2));
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(budget.available(), 2);
    }

    #[test]
    fn validation_names_the_field() {
        let err = RetryBudget::new(-1.0, 0).validate().unwrap_err();
        assert_eq!(err.field(), "budget.retry_ratio");
        let err = RetryBudget::new(0.1, 0)
            .ttl(Duration::from_millis(10))
            .validate()
            .unwrap_err();
        assert_eq!(err.field(), "budget.ttl");
    }
}
