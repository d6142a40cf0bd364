//! Breakers shared across replicas: one fleet state per breaker name, kept in a store (Redis),
//! with the store never on a call's path.
//!
//! A service that runs as twenty replicas has twenty breakers, and each has to learn on its own
//! that the upstream is down. A breaker built with
//! [`shared_state`](crate::circuit_breaker::Builder::shared_state) shares its state with
//! every breaker of the same name that uses the same store:
//!
//! - **Transitions**: when one replica trips, the others open too, with the same open time.
//!   Half-open rounds, their decisions (close or reopen), manual states
//!   ([`force_open`](crate::circuit_breaker::CircuitBreaker::force_open),
//!   [`disable`](crate::circuit_breaker::CircuitBreaker::disable),
//!   [`metrics_only`](crate::circuit_breaker::CircuitBreaker::metrics_only),
//!   [`reset`](crate::circuit_breaker::CircuitBreaker::reset)) and rate-limit cool-downs are
//!   shared the same way.
//! - **Probes are bounded fleet-wide**: after the open wait, at most
//!   `permitted_calls_in_half_open` probes run in the whole fleet, not per replica. Each
//!   replica reserves slots of the round with one atomic store operation, ahead of time and in
//!   the background; a replica that got none keeps rejecting until the round decides.
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::time::Duration;
//! use tower_breaker::circuit_breaker::CircuitBreaker;
//! use tower_breaker::shared_state::{RedisStore, SharedState};
//!
//! let store = RedisStore::builder("redis://127.0.0.1:6379").prefix("checkout").build()?;
//! let breaker = CircuitBreaker::builder("openai")
//!     .shared_state(SharedState::new(store).sync_interval(Duration::from_millis(500)))
//!     .build()?; // inside a Tokio runtime: it starts the sync task
//! # let _ = breaker;
//! # Ok(())
//! # }
//! ```
//!
//! # Redis is never on the call path
//!
//! Every call is decided by the local breaker, as without a store: one atomic load when
//! closed. A background task per breaker publishes the breaker's transitions, applies the
//! fleet's, and reserves probe slots. If the store is slow or down, the breaker keeps working
//! on its local state (it trips, probes and closes on its own; a replica that was waiting for
//! probe slots uses its own probe limit, one that holds slots keeps to them); `RedisStore`
//! logs the outage once when it begins and once when it ends, and the task resyncs when the
//! store is back. A store outage never becomes an error for a caller. If the sync task ends
//! (its runtime shut down), the breaker goes on as a local one.
//!
//! # Consistency
//!
//! - **Bounded delay.** A replica learns of another's transition through the store's
//!   notifications (Redis pub/sub: one round trip, usually under a millisecond on a LAN), and
//!   at the latest after `sync_interval` (default 1 s) plus one store timeout, by a periodic
//!   read (which also covers a subscription that died without notice). Until then it decides
//!   on its own state.
//! - **One order of fleet states.** The store keeps one state per breaker with a generation
//!   that only grows; every change is one compare-and-set against the generation it was based
//!   on ([`Proposal`]). Two replicas that trip at once agree on one open state; a half-open
//!   decision from a round the fleet has left is refused, and its replica takes the fleet's
//!   state instead. Manual states always win.
//! - **Open times in the store's clock.** Open and cool-down deadlines are kept in the
//!   store's time (Redis `TIME`) and handed out as "the time left", so the replicas' clocks
//!   need not agree.
//! - **Window counts** are shared only with
//!   [`fleet_failure_rate`](SharedState::fleet_failure_rate): without it each replica trips
//!   on the calls it saw, and the fleet opens when the first replica trips; with it the fleet
//!   also opens when all replicas' calls together cross the thresholds (counts reach the store
//!   every `sync_interval`, so the fleet rate lags by up to that much). Calls in flight when a replica adopts the fleet's state
//!   are of an older generation and their outcomes are dropped, as for a local transition.
//! - **During a store outage** the replicas act as independent breakers (each bounds its own
//!   probes); when the store is back, each publishes what changed meanwhile and the store's
//!   compare-and-set picks one state for the fleet. A store that lost its data (a restart
//!   without persistence) is filled again from the replicas' states.

mod attach;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod sync;

pub use self::memory::MemoryStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisStore, RedisStoreBuilder};

use crate::BoxError;
use crate::token_bucket;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A breaker's state as the fleet shares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FleetMode {
    /// Calls go through.
    Closed,
    /// Calls are rejected until the open time is over; then the fleet's half-open round.
    Open,
    /// A rate-limit cool-down: calls are rejected until it is over, then closed again.
    RateLimited,
    /// Forced open by an operator.
    ForcedOpen,
    /// Disabled by an operator.
    Disabled,
    /// Metrics-only, by an operator.
    MetricsOnly,
}

impl FleetMode {
    /// The mode's name as stored (`closed`, `open`, `rate_limited`, `forced_open`,
    /// `disabled`, `metrics_only`).
    pub fn as_str(self) -> &'static str {
        match self {
            FleetMode::Closed => "closed",
            FleetMode::Open => "open",
            FleetMode::RateLimited => "rate_limited",
            FleetMode::ForcedOpen => "forced_open",
            FleetMode::Disabled => "disabled",
            FleetMode::MetricsOnly => "metrics_only",
        }
    }

    /// The mode named `name` (as [`as_str`](Self::as_str) writes it).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "closed" => FleetMode::Closed,
            "open" => FleetMode::Open,
            "rate_limited" => FleetMode::RateLimited,
            "forced_open" => FleetMode::ForcedOpen,
            "disabled" => FleetMode::Disabled,
            "metrics_only" => FleetMode::MetricsOnly,
            _ => return None,
        })
    }

    /// True for the modes that have a deadline (`Open`, `RateLimited`).
    pub fn has_deadline(self) -> bool {
        matches!(self, FleetMode::Open | FleetMode::RateLimited)
    }
}

impl fmt::Display for FleetMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A breaker's fleet state, as a store read or notification gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetState {
    /// Grows with every change; 0 for a breaker the store knows nothing of (closed).
    pub generation: u64,
    /// The state.
    pub mode: FleetMode,
    /// For `Open` and `RateLimited`: the time left when the store answered (zero when over).
    pub remaining: Option<Duration>,
    /// True when an operator chose this state ([`ProposalKind::Manual`]): a manual `Closed` is
    /// a reset, which empties every replica's window.
    pub manual: bool,
}

impl FleetState {
    /// The state of a breaker the store has no record of.
    pub const UNKNOWN: FleetState = FleetState {
        generation: 0,
        mode: FleetMode::Closed,
        remaining: None,
        manual: false,
    };
}

/// What a replica asks the store to make the fleet's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// The fleet generation the replica's state is based on.
    pub base: u64,
    /// The new state.
    pub mode: FleetMode,
    /// For `Open` and `RateLimited`: how long from now.
    pub wait: Option<Duration>,
    /// Why: decides whether the store accepts it (see [`Proposal::accepted_over`]).
    pub kind: ProposalKind,
}

/// Why a replica proposes a fleet state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProposalKind {
    /// A closed replica tripped or was rate-limited: accepted while the fleet is closed or
    /// rate-limited, or when based on the current generation (or a later one: see
    /// [`Proposal::accepted_over`]).
    Trip,
    /// A half-open round decided (or a stuck round is given up): accepted only when based on
    /// the current generation (or a later one).
    Decision,
    /// An operator's choice: always accepted.
    Manual,
}

impl ProposalKind {
    /// The kind's name as stored (`trip`, `decision`, `manual`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalKind::Trip => "trip",
            ProposalKind::Decision => "decision",
            ProposalKind::Manual => "manual",
        }
    }
}

impl Proposal {
    /// The rule every store applies, atomically with the write: is this proposal accepted
    /// over the fleet state `current`? A base later than the store's generation means the
    /// store lost its data (a restart without persistence); such a proposal is accepted so
    /// that the replicas fill the store again and the generation never goes back.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_breaker::shared_state::{FleetMode, FleetState, Proposal, ProposalKind};
    ///
    /// let open = FleetState {
    ///     generation: 7, mode: FleetMode::Open, remaining: None, manual: false,
    /// };
    /// let stale_close = Proposal {
    ///     base: 6, mode: FleetMode::Closed, wait: None, kind: ProposalKind::Decision,
    /// };
    /// assert!(!stale_close.accepted_over(&open)); // a round the fleet has left
    /// let close = Proposal { base: 7, ..stale_close };
    /// assert!(close.accepted_over(&open));
    /// ```
    pub fn accepted_over(&self, current: &FleetState) -> bool {
        match self.kind {
            ProposalKind::Manual => true,
            _ if self.base == current.generation => true,
            // Based on a later generation than the store has: the store lost its data and the
            // replicas fill it again (the generation goes on from theirs). Not a close over a
            // newer open state, though: that one was set after the loss.
            _ if self.base > current.generation => {
                self.mode != FleetMode::Closed
                    || matches!(current.mode, FleetMode::Closed | FleetMode::RateLimited)
            }
            ProposalKind::Trip => {
                matches!(current.mode, FleetMode::Closed | FleetMode::RateLimited)
            }
            _ => false,
        }
    }
}

/// A store's answer to a [`Proposal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposed {
    /// True when the proposal became the fleet's state.
    pub accepted: bool,
    /// The fleet's state after (the proposal's, or the one that refused it).
    pub state: FleetState,
}

/// A change the store tells every replica of.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// The fleet state of the breaker named `breaker` changed.
    Changed {
        /// The breaker's name.
        breaker: Arc<str>,
        /// Its new state.
        state: FleetState,
    },
    /// Notifications may have been missed (the subscription was re-established): read again.
    Resync,
}

/// Calls counted toward a fleet-wide failure rate
/// ([`SharedState::fleet_failure_rate`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Calls that succeeded or failed (ignored ones are not counted).
    pub calls: u64,
    /// Failed calls.
    pub failures: u64,
    /// Slow calls (failed or not).
    pub slow: u64,
}

impl WindowCounts {
    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.calls == 0 && self.failures == 0 && self.slow == 0
    }
}

/// An error of a state store. Breakers never return it to a caller: the sync task logs it
/// and keeps the local state.
#[derive(Debug)]
pub struct StoreError {
    source: BoxError,
}

impl StoreError {
    /// Wraps the store's own error.
    pub fn new(source: impl Into<BoxError>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state store: {}", self.source)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// The future a [`StateStore`] operation returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where a fleet keeps its breakers' states. [`RedisStore`] is the one for production;
/// [`MemoryStore`] shares breakers inside one process (tests, and to try the behaviour).
///
/// Every operation is called from the breakers' background sync tasks, never on a call's
/// path. An implementation should bound each operation's time (a slow store only delays the
/// fleet's convergence, but a hung one stalls it).
pub trait StateStore: Send + Sync + 'static {
    /// Makes `proposal` the fleet state of `breaker` if [`Proposal::accepted_over`] the
    /// current one, atomically, with a generation one above the larger of the current one
    /// and `proposal.base`, and notifies every subscriber. Returns the state after.
    fn propose<'a>(&'a self, breaker: &'a str, proposal: Proposal) -> StoreFuture<'a, Proposed>;

    /// The fleet state of `breaker` ([`FleetState::UNKNOWN`] when there is none), refreshing
    /// its expiry.
    fn load<'a>(&'a self, breaker: &'a str) -> StoreFuture<'a, FleetState>;

    /// Reserves up to `want` probe slots of the half-open round that follows fleet generation
    /// `round`, of at most `limit` in all for the round, atomically. Returns how many this
    /// caller got (0 when others hold them all).
    fn reserve_probes<'a>(
        &'a self,
        breaker: &'a str,
        round: u64,
        want: u32,
        limit: u32,
    ) -> StoreFuture<'a, u32>;

    /// A receiver of every change notification of this store (all breakers).
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Notice>;

    /// Adds one replica's `counts` (calls since its last report) to the fleet's counts of
    /// `breaker` in fleet generation `generation`, and returns the fleet's counts over the last
    /// `window` (in buckets of a tenth of it). Counts of other generations are kept apart: a
    /// fleet that closes starts from nothing.
    fn add_counts<'a>(
        &'a self,
        breaker: &'a str,
        generation: u64,
        counts: WindowCounts,
        window: Duration,
    ) -> StoreFuture<'a, WindowCounts>;
}

/// Where the [`Quota`](crate::quota::Quota) governors of a fleet keep their budgets (given to
/// the quota builder's `shared_state`): [`MemoryStore`] and [`RedisStore`] keep quotas beside
/// breakers. Unlike a [`StateStore`], a quota store is on the call's path: one operation per
/// admission.
///
/// ```
/// use tower_breaker::shared_state::{QuotaGrant, QuotaStore, QuotaTake, StoreFuture};
///
/// /// A store with room for everything (a stand-in for tests).
/// struct Boundless;
/// impl QuotaStore for Boundless {
///     fn take_quota<'a>(&'a self, _: &'a str, _: QuotaTake) -> StoreFuture<'a, QuotaGrant> {
///         Box::pin(async { Ok(QuotaGrant::Granted { wait: std::time::Duration::ZERO }) })
///     }
/// }
/// ```
pub trait QuotaStore: Send + Sync + 'static {
    /// Takes one call's share of the quota named `quota` ([`QuotaTake::apply`]), atomically,
    /// with every budget refilled up to the store's time first.
    fn take_quota<'a>(&'a self, quota: &'a str, take: QuotaTake) -> StoreFuture<'a, QuotaGrant>;
}

/// One budget of a [`QuotaTake`]: `limit` units per `window`, refilled continuously, of
/// which the call takes `cost` (negative: gives back), after lowering the level to `ceiling`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaBudget {
    /// Units per window (at least 1).
    pub limit: u64,
    /// The window.
    pub window: Duration,
    /// What this call takes.
    pub cost: f64,
    /// The most the level may be (`None`: no bound): what the provider reported remaining,
    /// less what the reporting replica admitted since. The level is lowered to it, never
    /// raised; a budget the store has not seen starts at it instead of full.
    pub ceiling: Option<f64>,
}

/// What a quota governor asks of the store for one call (feature `quota` uses it; see
/// [`QuotaStore::take_quota`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaTake {
    /// The request budget, when a limit is known.
    pub requests: Option<QuotaBudget>,
    /// The token budget, when a limit is known.
    pub tokens: Option<QuotaBudget>,
    /// The longest wait the call accepts; `None`: take in any case (a correction, or a
    /// refund).
    pub max_wait: Option<Duration>,
}

/// The store's answer to a [`QuotaTake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaGrant {
    /// Taken: the call goes after `wait`.
    Granted {
        /// How long the call waits for its turn (zero: at once).
        wait: Duration,
    },
    /// Not taken: the call would wait `retry_after`, longer than it accepts.
    Refused {
        /// When it would fit.
        retry_after: Duration,
        /// True when the token budget is the one without room.
        tokens: bool,
    },
}

impl QuotaTake {
    /// The rule every store applies, atomically: given each budget's level (`None`: a budget
    /// the store has not seen, which starts full) refilled up to now, the store's answer and
    /// the levels after. A level above the budget's `ceiling` is lowered to it first. A
    /// budget's wait is `(cost - level) / rate` when its level is below the cost; a call takes
    /// its cost (the level may go below zero: the debt of a waiting call) when the longest
    /// wait is within `max_wait`; a refused call still leaves the levels lowered to their
    /// ceilings. An admission (`max_wait` given) whose cost is more than a budget's whole
    /// `limit` never fits, whatever the wait: it is refused with a `retry_after` of
    /// [`Duration::MAX`] and takes nothing (a take without `max_wait`, a correction or a
    /// refund, applies in any case).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_breaker::shared_state::{QuotaBudget, QuotaGrant, QuotaTake};
    ///
    /// let one = QuotaBudget { limit: 60, window: Duration::from_secs(60), cost: 1.0, ceiling: None };
    /// let take = QuotaTake { requests: Some(one), tokens: None, max_wait: Some(Duration::ZERO) };
    /// let (grant, levels) = take.apply([Some(0.5), None]);
    /// assert_eq!(grant, QuotaGrant::Refused { retry_after: Duration::from_millis(500), tokens: false });
    /// assert_eq!(levels, [Some(0.5), None]);
    /// ```
    pub fn apply(&self, levels: [Option<f64>; 2]) -> (QuotaGrant, [Option<f64>; 2]) {
        let budgets = [self.requests, self.tokens];
        let never = self.never_fits();
        let mut now = levels;
        let mut wait = Duration::ZERO;
        let mut tokens = false;
        for (i, budget) in budgets.iter().enumerate() {
            let Some(b) = budget else { continue };
            let limit = b.limit as f64;
            let mut level = levels[i].unwrap_or(limit);
            if let Some(ceiling) = b.ceiling {
                level = level.min(ceiling);
            }
            now[i] = Some(level);
            let rate = token_bucket::rate(limit, b.window);
            let w = token_bucket::duration(token_bucket::wait(level, b.cost, rate));
            if w > wait {
                wait = w;
                tokens = i == 1;
            }
        }
        if let Some(refused) = never {
            return (refused, now);
        }
        if self.max_wait.is_some_and(|max| wait > max) {
            let refused = QuotaGrant::Refused {
                retry_after: wait,
                tokens,
            };
            return (refused, now);
        }
        let mut after = now;
        for (i, budget) in budgets.iter().enumerate() {
            if let (Some(b), Some(level)) = (budget, now[i]) {
                after[i] = Some(token_bucket::take(level, b.cost, b.limit as f64));
            }
        }
        (QuotaGrant::Granted { wait }, after)
    }

    /// The refusal of an admission (`max_wait` given) that costs more than a budget's whole
    /// limit, the request budget first: it never fits (`retry_after` is `Duration::MAX`).
    pub(crate) fn never_fits(&self) -> Option<QuotaGrant> {
        self.max_wait?;
        [self.requests, self.tokens]
            .iter()
            .position(|b| b.is_some_and(|b| token_bucket::never_fits(b.cost, b.limit as f64)))
            .map(|i| QuotaGrant::Refused {
                retry_after: Duration::MAX,
                tokens: i == 1,
            })
    }
}

/// How a breaker shares its state: the store and the sync settings. Given to
/// [`Builder::shared_state`](crate::circuit_breaker::Builder::shared_state).
///
/// Two replicas of one breaker sharing an in-process [`MemoryStore`] (use a [`RedisStore`]
/// across processes, feature `redis`): one trips, the other opens too.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::Outcome;
/// use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
/// use tower_breaker::shared_state::{MemoryStore, SharedState};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let store = MemoryStore::new();
/// let replica = || {
///     CircuitBreaker::builder("openai")
///         .sliding_window(SlidingWindow::consecutive(1))
///         .shared_state(SharedState::new(store.clone()).sync_interval(Duration::from_secs(1)))
///         .build()
/// };
/// let (a, b) = (replica()?, replica()?);
/// a.try_acquire().unwrap().record(Outcome::Failure);
/// // `b` learns it from the store's notice, or at its next read (every second) at the latest.
/// tokio::time::sleep(Duration::from_secs(1)).await;
/// assert_eq!(b.state(), CircuitState::Open);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SharedState {
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) sync_interval: Duration,
    pub(crate) probes_per_replica: Option<u32>,
    pub(crate) fleet_window: Option<Duration>,
    pub(crate) share_local_trips: bool,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState")
            .field("sync_interval", &self.sync_interval)
            .field("probes_per_replica", &self.probes_per_replica)
            .field("fleet_window", &self.fleet_window)
            .field("share_local_trips", &self.share_local_trips)
            .finish_non_exhaustive()
    }
}

impl SharedState {
    /// Shares through `store`, with a 1 s periodic read and every probe slot available to
    /// one replica.
    pub fn new(store: impl StateStore) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Shares through a store that is already shared (one store for many breakers).
    pub fn from_arc(store: Arc<dyn StateStore>) -> Self {
        Self {
            store,
            sync_interval: Duration::from_secs(1),
            probes_per_replica: None,
            fleet_window: None,
            share_local_trips: true,
        }
    }

    /// How often the sync task reads the fleet state when no notification came (the backstop
    /// for lost notifications, and the bound on how late a replica learns of a change). Also
    /// how early, before the open time is over, probe slots are reserved.
    /// 1 ms ..= 24 h; default 1 s.
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// Also trips on the **fleet's** failure rate: every `sync_interval` each replica adds the
    /// calls it recorded to the fleet's counts for the last `window` (1 s ..= 24 h), and
    /// opens (for the whole fleet) when those reach `minimum_calls` and the breaker's
    /// failure-rate (or slow-call-rate) threshold, even if no replica alone would trip.
    /// The local window still trips on its own. Counting adds an event listener, so the closed
    /// path pays for one event per call (see `benches/README.md`).
    pub fn fleet_failure_rate(mut self, window: Duration) -> Self {
        self.fleet_window = Some(window);
        self
    }

    /// Whether one replica's own trip opens the whole fleet (`true`, the default). With
    /// `false`, a replica that trips on its own window opens alone and probes alone (its
    /// failures may be its own: its network path, its connection pool), and the fleet opens
    /// only on the fleet's failure rate ([`fleet_failure_rate`](Self::fleet_failure_rate)),
    /// an operator's action, or a rate-limit cool-down. This guards against one bad replica
    /// opening the breaker for all (the risk Polly's maintainers raise against shared state).
    pub fn share_local_trips(mut self, share: bool) -> Self {
        self.share_local_trips = share;
        self
    }

    /// The most probe slots one replica reserves per round (default: all of
    /// `permitted_calls_in_half_open`). Lower it to spread a round's probes over replicas.
    /// Each replica decides the round on its own probes (as a breaker whose
    /// `permitted_calls_in_half_open` is the slots it got), and the first replica to decide
    /// decides for the fleet: with `probes_per_replica(1)`, one successful probe closes the
    /// fleet and one failed probe reopens it.
    pub fn probes_per_replica(mut self, slots: u32) -> Self {
        self.probes_per_replica = Some(slots);
        self
    }
}
