use super::Exhausted;
use std::sync::Arc;
use std::time::Duration;

/// Something a quota governor did. Delivered to every
/// [`Listener`](crate::events::Listener) registered with
/// [`Builder::on_event`](super::Builder::on_event); never built when there is none.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tower_breaker::quota::{Quota, QuotaEvent};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let seen = Arc::new(Mutex::new(0));
/// let sink = seen.clone();
/// let quota = Quota::<&str>::builder("llm")
///     .on_event(move |event: &QuotaEvent| {
///         if let QuotaEvent::Admitted { .. } = event {
///             *sink.lock().unwrap() += 1;
///         }
///     })
///     .build()?;
/// let _permit = quota.acquire(&"gpt", 100).await?;
/// assert_eq!(*seen.lock().unwrap(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum QuotaEvent {
    /// A call fits (perhaps after a wait).
    Admitted {
        /// The governor's name.
        name: Arc<str>,
        /// The key, as `Display` writes it.
        key: Arc<str>,
        /// How long it waits (or waited) for its budget.
        wait: Duration,
    },
    /// A call would not fit within `max_wait`.
    Rejected {
        /// The governor's name.
        name: Arc<str>,
        /// The key.
        key: Arc<str>,
        /// The budget without room.
        budget: Exhausted,
        /// When it would fit; `Duration::MAX` when it never does (it costs more than the
        /// whole limit: [`QuotaExceeded::never_fits`](super::QuotaExceeded::never_fits)).
        retry_after: Duration,
    },
    /// The provider answered 429 (or 529): the key pauses.
    RateLimited {
        /// The governor's name.
        name: Arc<str>,
        /// The key.
        key: Arc<str>,
        /// How long the key pauses.
        pause: Duration,
    },
    /// Limits read from the provider's headers changed the key's budgets.
    LimitsLearned {
        /// The governor's name.
        name: Arc<str>,
        /// The key.
        key: Arc<str>,
        /// Requests per window, when known.
        requests: Option<u64>,
        /// Tokens per window, when known.
        tokens: Option<u64>,
    },
    /// The key's budgets moved: an admission took a call's share, an answer's headers set
    /// the level, a refund or a usage report changed a call's charge, or limits were set by
    /// hand. The levels are what [`Quota::snapshot`](super::Quota::snapshot) reads at that
    /// moment (its `requests_available` and `tokens_available`); between two events they
    /// refill on their own, unreported.
    LevelsChanged {
        /// The governor's name.
        name: Arc<str>,
        /// The key.
        key: Arc<str>,
        /// Requests that fit now (negative: owed to calls waiting for their turn); `None`
        /// while no request limit is known.
        requests_left: Option<f64>,
        /// Tokens that fit now (negative: owed to waiting calls); `None` while no token
        /// limit is known.
        tokens_left: Option<f64>,
        /// Orders the level events: the levels are read under the governor's lock and
        /// reported after it is released, so two events of one key can reach a listener in
        /// the wrong order; the higher number is the later level. Numbers are unique and
        /// increase across every governor of the process, so a governor rebuilt under the
        /// same name reports after the one it replaces.
        seq: u64,
    },
}
