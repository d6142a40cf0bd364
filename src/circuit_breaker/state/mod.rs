//! The breaker's shared state: one atomic state word and a window.
//!
//! The state word packs, in 64 bits:
//!
//! ```text
//!  63            43 42                                      3 2   0
//! +----------------+------------------------------------------+-----+
//! | generation: 21 |                payload: 40               | tag |
//! +----------------+------------------------------------------+-----+
//! Open:      payload = the time the open state ends, in ms since the breaker was built
//! Rate-limited: payload = the time the cool-down ends (same generation as the closed state)
//! Half-open: payload = admitted | settled | failures | slow, 10 bits each
//! ```
//!
//! Every transition is one compare-and-swap of this word and bumps the generation, so: exactly
//! one thread wins each transition; a permit remembers the generation it was admitted in and its
//! outcome is dropped if the word has moved on; half-open probe slots are reserved and settled
//! by CAS on the same word, so at most `permitted_calls_in_half_open` are ever admitted per round
//! and the round is decided exactly once.

use super::CircuitState;
use super::config::{Settings, WindowKind};
use super::error::ErrorName;
use super::events::CircuitBreakerEvent;
use super::window::{Consecutive, CountWindow, TimeWindow, Window};
use crate::counter::Counter;
use crate::events::Listeners;
use crate::random::AtomicSplitMix64;
use crate::sync::{AtomicU64, Ordering, now};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

mod admission;
mod metrics;
mod outcome;
mod policy;
mod transition;
#[cfg(feature = "retry")]
mod wake;
mod word;

pub use self::metrics::CircuitBreakerMetrics;
#[cfg(feature = "retry")]
pub(crate) use self::wake::Admission;
use self::word::{DEADLINE_GEN_SHIFT, DEADLINE_MS_MASK, MAX_TICKET_AGE, Word};
pub(crate) use self::word::{Hint, Kind, Tag, Ticket};

// Without `shared-state` no link is ever set: the hooks are one `OnceLock` check on cold paths.
#[cfg_attr(not(feature = "shared-state"), allow(dead_code, unused_imports))]
mod fleet;
#[cfg_attr(not(feature = "shared-state"), allow(unused_imports))]
pub(crate) use self::fleet::{Fleet, FleetAttachment, FleetLink, LocalState, Remote, UNBOUNDED};

/// The state word and the count of generations, side by side: every admission reads both and
/// only transitions write them, so the second read hits the cache line the first one brought
/// in. The outage rule's limit sits with them: every record reads the state word, and then
/// the limit from the same line rather than from `Settings`, another line, on every closed
/// success. (Aligned to 32 bytes so that the three never straddle two lines.)
#[repr(C, align(32))]
struct Core {
    state: AtomicU64,
    /// Generations started since the breaker was built (64 bits: never wraps). Bumped by the
    /// winner of each transition that starts a generation, just after its compare-and-swap.
    generations: AtomicU64,
    /// `consecutive_failure_threshold`, or 0 when it is off. Never changes.
    run_limit: u32,
}

pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    /// The name as rejections carry it (see `ErrorName`).
    error_name: ErrorName,
    pub(crate) settings: Settings,
    core: Core,
    window: Window,
    /// The current run of failures, for `consecutive_failure_threshold` (unused without it).
    /// Cleared with the window.
    streak: Consecutive,
    origin: Instant,
    /// The current half-open round's deadline: its generation (bits 43..) and the time in ms
    /// since the breaker was built (bits 0..43). Published by the thread that opened the round,
    /// after winning that transition, and only while the state word is still of that round
    /// (`publish`): a late store can never replace a newer round's deadline.
    half_open_deadline: AtomicU64,
    /// The generation whose window is in place: published after the window is cleared for a
    /// new closed (or metrics-only) generation, so that a record made between the transition
    /// and the end of the clear cannot read the old window and trip the breaker again.
    /// Published forward only (`publish`), so two overlapping closes cannot leave the older
    /// generation in place, which would drop every later record.
    window_generation: AtomicU64,
    reopens: AtomicU64,
    rng: AtomicSplitMix64,
    /// Exact, and cheap on the rejection path (see `Counter`).
    not_permitted: Counter,
    ignored: AtomicU64,
    listeners: Listeners<CircuitBreakerEvent>,
    /// Woken on every transition, for calls held while the breaker is open.
    pub(crate) changed: tokio::sync::Notify,
    /// Calls held (waiting for the breaker to let them through) right now.
    pub(crate) held: std::sync::atomic::AtomicUsize,
    /// Set once when the breaker shares its state with a fleet (`shared_state`).
    pub(crate) fleet: std::sync::OnceLock<Arc<FleetLink>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &self.state())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(
        name: Arc<str>,
        settings: Settings,
        listeners: Listeners<CircuitBreakerEvent>,
    ) -> Self {
        let origin = now();
        let window = match settings.window {
            WindowKind::Count(n) => Window::Count(CountWindow::new(n)),
            WindowKind::Time { length, buckets } => {
                Window::Time(TimeWindow::new(origin, length, buckets))
            }
            WindowKind::Consecutive(_) => Window::Consecutive(Consecutive::new()),
        };
        let seed = settings.seed;
        let run_limit = settings.consecutive_failures.unwrap_or(0);
        Self {
            error_name: ErrorName::new(&name),
            name,
            settings,
            core: Core {
                state: AtomicU64::new(Word::new(Tag::Closed, 0, 0).0),
                generations: AtomicU64::new(0),
                run_limit,
            },
            window,
            streak: Consecutive::new(),
            origin,
            half_open_deadline: AtomicU64::new(0),
            window_generation: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
            rng: AtomicSplitMix64::new(seed),
            not_permitted: Counter::new(),
            ignored: AtomicU64::new(0),
            listeners,
            changed: tokio::sync::Notify::new(),
            held: std::sync::atomic::AtomicUsize::new(0),
            fleet: std::sync::OnceLock::new(),
        }
    }

    /// The state word as stored. Acquire: pairs with the Release half of the transition's
    /// compare-and-swap, so whatever the winner wrote before it (the half-open deadline of an
    /// earlier round, a cleared window) is visible to the reader of the new word.
    #[inline]
    fn load(&self) -> Word {
        Word(self.core.state.load(Ordering::Acquire))
    }

    /// The count of generations, read just after the state word: with it a ticket's age is
    /// known exactly (see `is_stale`). Acquire: a bump made before another transition that
    /// this thread has seen is seen too.
    #[inline]
    fn generations(&self) -> u64 {
        self.core.generations.load(Ordering::Acquire)
    }

    /// Every transition is this one compare-and-swap. AcqRel on success: the winner sees
    /// everything published before the word it replaces, and publishes the new word to every
    /// later `load`. Acquire on failure: the word returned is as fresh as a `load`.
    fn cas(&self, current: Word, new: Word) -> Result<(), Word> {
        self.core
            .state
            .compare_exchange(current.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(Word)
    }

    /// The state word with the one expiry rule applied (see `expire`): what every reader of
    /// the state uses, so that none of them sees a half-open round that is over.
    #[inline]
    fn current(&self) -> Word {
        let word = self.load();
        if word.tag() == Tag::HalfOpen {
            self.expire(word)
        } else {
            word
        }
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.current().state()
    }

    /// True when `ticket` belongs to a finished generation, given the state word `word`.
    ///
    /// Exact, although the state word keeps only 21 bits of the generation: a ticket also
    /// carries the 64-bit count of generations, read just before the word that admitted it,
    /// and one admitted `MAX_TICKET_AGE` (2^20) generations ago or more is stale. The count is
    /// bumped by each winner just after its compare-and-swap, so it lags the state word by at
    /// most the transitions whose winners have not bumped it yet: one per thread, and far
    /// fewer than 2^20 threads ever run. So if the 21-bit generation came round to the
    /// ticket's, at least 2^21 generations passed since the ticket's count was read, and the
    /// count read now is more than 2^21 - 2^20 = 2^20 past it: stale. A ticket of the current
    /// generation has seen the count move only by such lagging bumps (a cool-down keeps the
    /// generation and does not bump it): under 2^20, current. (Read after the word instead,
    /// the count could be that of a thread preempted for 2^21 transitions in between.)
    #[inline]
    fn is_stale(&self, word: Word, ticket: Ticket) -> bool {
        word.generation() != ticket.generation
            || self.generations().wrapping_sub(ticket.epoch) >= MAX_TICKET_AGE
    }

    /// Publishes `value` into `slot` for the generation `generation`: only while the state
    /// word is still of that generation, by compare-and-swap, so a thread preempted after its
    /// transition can never overwrite what the winner of a newer transition has published.
    /// (If a newer transition lands after the check, its winner publishes after it, or our
    /// swap fails because it already did and the check runs again.)
    fn publish(&self, slot: &AtomicU64, value: u64, generation: u32) {
        // Acquire/AcqRel: the value is read by `load`s that pair with it (Acquire); the loop
        // sees another publisher's value before deciding.
        let mut current = slot.load(Ordering::Acquire);
        loop {
            if self.load().generation() != generation {
                return;
            }
            match slot.compare_exchange(current, value, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Time since the breaker was built.
    #[inline]
    fn elapsed(&self) -> Duration {
        now().saturating_duration_since(self.origin)
    }

    /// Milliseconds since the breaker was built, rounded down.
    #[inline]
    fn now_ms(&self) -> u64 {
        u64::try_from(self.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The time `wait` from now, in ms since the breaker was built, rounded up: a wait is
    /// never cut short by the rounding.
    #[inline]
    fn deadline_ms(&self, wait: Duration) -> u64 {
        policy::ceil_ms(self.elapsed().saturating_add(wait))
    }

    /// The time left until `until_ms`, or `None` once it has come.
    #[inline]
    fn remaining(&self, until_ms: u64) -> Option<Duration> {
        let until = Duration::from_millis(until_ms);
        let now = self.elapsed();
        (until > now).then(|| until - now)
    }

    /// The time `until_ms` stands for, or `None` once it has come. Cheaper than `remaining`:
    /// two `Instant`s compare without the division that `as_millis` of an elapsed time costs.
    #[inline]
    fn not_yet(&self, until_ms: u64) -> Option<Instant> {
        let until = self.origin + Duration::from_millis(until_ms);
        (now() < until).then_some(until)
    }

    /// The deadline (ms since the breaker was built) of the half-open round of generation
    /// `generation`, once its opener has published it.
    fn round_deadline(&self, generation: u32) -> Option<u64> {
        self.settings.max_wait_in_half_open?;
        // Acquire: pairs with the publisher's compare-and-swap.
        let stored = self.half_open_deadline.load(Ordering::Acquire);
        ((stored >> DEADLINE_GEN_SHIFT) as u32 == generation).then_some(stored & DEADLINE_MS_MASK)
    }

    /// The one expiry rule for half-open rounds, which every reader of the state applies
    /// (`current`): a round whose every slot is taken and that has not decided by its deadline
    /// (`max_wait_in_half_open`) is over, and the breaker reopens as of that deadline, as a
    /// failed round (open-time growth applies). A round with a free slot is not stuck: the
    /// next call takes the slot. Returns the word after (whoever won the reopen).
    #[cold]
    fn expire(&self, mut word: Word) -> Word {
        while word.tag() == Tag::HalfOpen
            && policy::round_is_full(word.probes(), self.probe_limit())
        {
            let Some(deadline) = self.round_deadline(word.generation()) else {
                break;
            };
            if !policy::round_expired(deadline, self.now_ms()) {
                break;
            }
            let next = self.reopen_word(word, None, Some(deadline));
            match self.cas(word, next) {
                Ok(()) => {
                    self.transitioned(word, next, true);
                    return next;
                }
                Err(actual) => word = actual,
            }
        }
        word
    }

    /// When the state may next change without a call: the end of the open wait or cool-down,
    /// or the deadline of a half-open round whose every slot is taken. For held calls, which
    /// must ask again then.
    pub(crate) fn next_change(&self) -> Option<Instant> {
        let word = self.current();
        let at_ms = match word.tag() {
            Tag::Open | Tag::RateLimited => word.payload(),
            Tag::HalfOpen if policy::round_is_full(word.probes(), self.probe_limit()) => {
                self.round_deadline(word.generation())?
            }
            _ => return None,
        };
        Some(self.origin + Duration::from_millis(at_ms))
    }

    /// True when a slow-call rule is set, so calls must be timed.
    #[inline]
    pub(crate) fn times_calls(&self) -> bool {
        self.settings.slow_call_duration.is_some()
    }

    /// True when a call reserved with `ticket` may still be made: its generation is current
    /// and no cool-down has begun in it since (a cool-down of a closed breaker keeps the
    /// generation, so that the window and the outcomes of calls in flight go on through it,
    /// but a call not yet made must not reach a rate-limited upstream).
    #[inline]
    pub(crate) fn still_admits(&self, ticket: Ticket) -> bool {
        let word = self.load();
        word.tag() != Tag::RateLimited && !self.is_stale(word, ticket)
    }

    /// True when a call would be admitted now (does not reserve anything).
    pub(crate) fn would_permit(&self) -> bool {
        let word = self.current();
        match word.tag() {
            Tag::Closed | Tag::MetricsOnly | Tag::Disabled => true,
            Tag::ForcedOpen => false,
            Tag::Open => self.remaining(word.payload()).is_none() && self.probe_limit() > 0,
            Tag::RateLimited => self.remaining(word.payload()).is_none(),
            _ => !policy::round_is_full(word.probes(), self.probe_limit()),
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        let word = self.current();
        match word.tag() {
            Tag::Open | Tag::RateLimited => self.remaining(word.payload()),
            _ => None,
        }
    }
}
