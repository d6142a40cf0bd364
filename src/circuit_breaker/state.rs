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

use super::config::{Settings, WindowKind};
use super::error::ErrorName;
use super::events::CircuitBreakerEvent;
use super::window::{Consecutive, CountWindow, Counts, TimeWindow, Window};
use super::{CircuitOpen, CircuitState};
use crate::Outcome;
use crate::counter::Counter;
use crate::events::Listeners;
use crate::random::AtomicSplitMix64;
use crate::sync::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

// Without `shared-state` no link is ever set: the hooks are one `OnceLock` check on cold paths.
#[cfg_attr(not(feature = "shared-state"), allow(dead_code, unused_imports))]
mod fleet;
#[cfg_attr(not(feature = "shared-state"), allow(unused_imports))]
pub(crate) use self::fleet::{Fleet, FleetAttachment, FleetLink, LocalState, Remote, UNBOUNDED};

const TAG_MASK: u64 = 0b111;
pub(crate) const CLOSED: u64 = 0;
pub(crate) const OPEN: u64 = 1;
pub(crate) const HALF_OPEN: u64 = 2;
pub(crate) const FORCED_OPEN: u64 = 3;
pub(crate) const DISABLED: u64 = 4;
pub(crate) const METRICS_ONLY: u64 = 5;
pub(crate) const RATE_LIMITED: u64 = 6;

const PAYLOAD_SHIFT: u32 = 3;
const PAYLOAD_MASK: u64 = (1 << 40) - 1;
const GEN_SHIFT: u32 = 43;
const GEN_MASK: u64 = (1 << 21) - 1;
const PROBE_BITS: u32 = 10;
const PROBE_MASK: u64 = (1 << PROBE_BITS) - 1;
const DEADLINE_GEN_SHIFT: u32 = 43;
const DEADLINE_MS_MASK: u64 = (1 << DEADLINE_GEN_SHIFT) - 1;
/// A permit admitted this many generations ago or more is stale, whatever the 21-bit
/// generation in the state word says (it may have wrapped around to the permit's). See
/// `Shared::is_stale` for why this makes the check exact.
const MAX_TICKET_AGE: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word(u64);

impl Word {
    #[inline]
    fn new(tag: u64, generation: u32, payload: u64) -> Self {
        Word(
            ((generation as u64 & GEN_MASK) << GEN_SHIFT)
                | ((payload & PAYLOAD_MASK) << PAYLOAD_SHIFT)
                | tag,
        )
    }

    #[inline]
    fn tag(self) -> u64 {
        self.0 & TAG_MASK
    }

    #[inline]
    fn generation(self) -> u32 {
        (self.0 >> GEN_SHIFT) as u32
    }

    #[inline]
    fn payload(self) -> u64 {
        (self.0 >> PAYLOAD_SHIFT) & PAYLOAD_MASK
    }

    #[inline]
    fn next_generation(self) -> u32 {
        ((self.generation() as u64 + 1) & GEN_MASK) as u32
    }

    fn probes(self) -> Probes {
        let p = self.payload();
        let field = |i: u32| ((p >> (i * PROBE_BITS)) & PROBE_MASK) as u32;
        Probes {
            admitted: field(0),
            settled: field(1),
            failures: field(2),
            slow: field(3),
        }
    }

    fn state(self) -> CircuitState {
        match self.tag() {
            OPEN => CircuitState::Open,
            HALF_OPEN => CircuitState::HalfOpen,
            FORCED_OPEN => CircuitState::ForcedOpen,
            DISABLED => CircuitState::Disabled,
            METRICS_ONLY => CircuitState::MetricsOnly,
            RATE_LIMITED => CircuitState::RateLimited,
            _ => CircuitState::Closed,
        }
    }
}

/// The tallies of one half-open round. Each is at most `MAX_PERMITTED_IN_HALF_OPEN` (< 1024).
#[derive(Debug, Clone, Copy, Default)]
struct Probes {
    admitted: u32,
    settled: u32,
    failures: u32,
    slow: u32,
}

impl Probes {
    fn pack(self) -> u64 {
        let f = |v: u32, i: u32| (v as u64 & PROBE_MASK) << (i * PROBE_BITS);
        f(self.admitted, 0) | f(self.settled, 1) | f(self.failures, 2) | f(self.slow, 3)
    }
}

/// What an admitted call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Closed or metrics-only: recorded into the window.
    Normal,
    /// Half-open: holds one probe slot of its round.
    Probe,
    /// Disabled: records nothing.
    Passthrough,
}

/// What the upstream said beyond the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hint {
    None,
    /// A rate limit (429): start a cool-down of this long (or the default).
    RateLimited(Option<Duration>),
    /// The server's own wait (503 + Retry-After): if this outcome opens the breaker, stay
    /// open at least this long.
    ServerWait(Duration),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    pub(crate) generation: u32,
    pub(crate) kind: Kind,
    /// The count of generations (`Core::generations`, 64 bits) when admitted.
    pub(crate) epoch: u64,
}

/// The state word and the count of generations, side by side: every admission reads both and
/// only transitions write them, so the second read hits the cache line the first one brought
/// in. (Aligned to 16 bytes so that the two never straddle two lines.)
#[repr(C, align(16))]
struct Core {
    state: AtomicU64,
    /// Generations started since the breaker was built (64 bits: never wraps). Bumped by the
    /// winner of each transition that starts a generation, just after its compare-and-swap.
    generations: AtomicU64,
}

enum Decision {
    Undecided,
    Close,
    Reopen,
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

/// A snapshot of a breaker's counters, taken at one point.
///
/// What "one point" means, field by field:
///
/// - `state` and `probes_in_flight` come from one atomic read of the breaker's state word.
/// - The window counts (`calls`, `failed_calls`, `slow_calls`, `successful_calls`, and the rates
///   made from them) agree with each other: for `count_based` and `consecutive` windows they
///   are one atomic read; a `time_based` window adds up its buckets, each one atomic read, so a
///   call recorded during the snapshot is in it or not, never half in it.
/// - The state and the window counts are of one generation: if a transition happens while the
///   snapshot is taken, the window is read again. (Right after a transition to closed, the old
///   window may still be emptying for a moment.)
/// - `not_permitted_calls`, `ignored_calls` and `consecutive_reopens` are separate counters read
///   just after; a call that ends during the snapshot may be in one and not yet in another.
///
/// It costs a few atomic loads (a `time_based` window: one per bucket) and one clock read; it
/// takes no lock and allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CircuitBreakerMetrics {
    /// The state when the snapshot was taken.
    pub state: CircuitState,
    /// Calls in the window (for the consecutive rule: the current run of failures).
    pub calls: u32,
    /// Failed calls in the window.
    pub failed_calls: u32,
    /// Successful calls in the window.
    pub successful_calls: u32,
    /// Slow calls in the window (failed or not).
    pub slow_calls: u32,
    /// `failed_calls / calls`, or `None` while the window holds fewer than `minimum_calls`.
    pub failure_rate: Option<f64>,
    /// `slow_calls / calls`, or `None` while the window holds fewer than `minimum_calls`.
    pub slow_call_rate: Option<f64>,
    /// Calls rejected since the breaker was built.
    pub not_permitted_calls: u64,
    /// Calls that ended `Ignored` (or were dropped unrecorded) since the breaker was built.
    pub ignored_calls: u64,
    /// Probes admitted in the current half-open round and not yet settled.
    pub probes_in_flight: u32,
    /// Failed half-open rounds since the breaker last closed (drives open-time growth).
    pub consecutive_reopens: u64,
}

impl Shared {
    pub(crate) fn new(
        name: Arc<str>,
        settings: Settings,
        listeners: Listeners<CircuitBreakerEvent>,
    ) -> Self {
        let origin = Instant::now();
        let window = match settings.window {
            WindowKind::Count(n) => Window::Count(CountWindow::new(n)),
            WindowKind::Time { length, buckets } => {
                Window::Time(TimeWindow::new(origin, length, buckets))
            }
            WindowKind::Consecutive(_) => Window::Consecutive(Consecutive::new()),
        };
        let seed = settings.seed;
        Self {
            error_name: ErrorName::new(&name),
            name,
            settings,
            core: Core {
                state: AtomicU64::new(Word::new(CLOSED, 0, 0).0),
                generations: AtomicU64::new(0),
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
        if word.tag() == HALF_OPEN {
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
        Instant::now().saturating_duration_since(self.origin)
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
        ceil_ms(self.elapsed().saturating_add(wait))
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
        (Instant::now() < until).then_some(until)
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
        while word.tag() == HALF_OPEN && word.probes().admitted >= self.probe_limit() {
            let Some(deadline) = self.round_deadline(word.generation()) else {
                break;
            };
            if self.now_ms() < deadline {
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
            OPEN | RATE_LIMITED => word.payload(),
            HALF_OPEN if word.probes().admitted >= self.probe_limit() => {
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

    // -- admission ----------------------------------------------------------------------------

    /// Reserves one call for a service, or says why not, and reports neither: the service
    /// reports the call when it is made (`report_permitted`, `report_rejected`), so that a
    /// service made ready and then dropped reports no call that never ran.
    #[inline]
    pub(crate) fn reserve(&self) -> Result<Ticket, CircuitOpen> {
        self.acquire_as::<_, false>(|ticket| ticket)
    }

    /// Admits one call or says why not, and reports it; with `REPORT` false, reports nothing
    /// (`reserve`). The ticket is made into a `T` (a `Permit`) where it is admitted. An open
    /// breaker's rejection is then written straight into the caller's `Result`: copied there
    /// from a `Result<Ticket, _>`, it was read back in wider moves than it had just been
    /// written with, which the CPU cannot forward, a stall on every rejection. Closed: two
    /// atomic loads from one cache line.
    // Always: small, on every call's path, and LLVM would otherwise keep it a call.
    #[inline(always)]
    pub(crate) fn acquire_as<T, const REPORT: bool>(
        &self,
        make: impl FnOnce(Ticket) -> T,
    ) -> Result<T, CircuitOpen> {
        // The count first: a ticket's count must not be newer than its generation (see
        // `is_stale`). Both loads are Acquire, so they are done in this order.
        let epoch = self.generations();
        let word = self.load();
        match word.tag() {
            CLOSED | METRICS_ONLY => {
                if REPORT {
                    self.permitted(word);
                }
                Ok(make(Ticket {
                    generation: word.generation(),
                    kind: Kind::Normal,
                    epoch,
                }))
            }
            _ => self.acquire_open::<T, REPORT>(word, make),
        }
    }

    /// Not closed. Open: the rejection, without the loop of `acquire_slow` (whose set-up
    /// costs as much as the check). Once the wait is over, and in every other state,
    /// `acquire_slow` decides.
    #[cold]
    fn acquire_open<T, const REPORT: bool>(
        &self,
        word: Word,
        make: impl FnOnce(Ticket) -> T,
    ) -> Result<T, CircuitOpen> {
        if word.tag() == OPEN {
            if let Some(until) = self.not_yet(word.payload()) {
                return Err(self.reject::<REPORT>(CircuitState::Open, Some(until)));
            }
        }
        self.acquire_slow::<REPORT>(word).map(make)
    }

    /// Reports an admitted call, in the state `word` says. Without a listener: one check of
    /// the listener list, no atomic, no clock.
    #[inline]
    fn permitted(&self, word: Word) {
        if self.listeners.is_active() {
            self.emit_permitted(word.state());
        }
    }

    /// Reports a call a service reserved with `reserve` and is making now.
    #[inline]
    pub(crate) fn report_permitted(&self, ticket: Ticket) {
        if self.listeners.is_active() {
            let state = match ticket.kind {
                Kind::Probe => CircuitState::HalfOpen,
                Kind::Passthrough => CircuitState::Disabled,
                Kind::Normal => {
                    let word = self.load();
                    if word.tag() == METRICS_ONLY && word.generation() == ticket.generation {
                        CircuitState::MetricsOnly
                    } else {
                        CircuitState::Closed
                    }
                }
            };
            self.emit_permitted(state);
        }
    }

    // Out of line: building the event would make `acquire` too big to inline into callers.
    #[cold]
    fn emit_permitted(&self, state: CircuitState) {
        self.listeners.emit(|| CircuitBreakerEvent::CallPermitted {
            name: self.name.clone(),
            state,
        });
    }

    /// A ticket for a call admitted in `word`, with `epoch`, the count of generations read
    /// before `word` was (see `is_stale`).
    #[inline]
    fn ticket(word: Word, kind: Kind, epoch: u64) -> Ticket {
        Ticket {
            generation: word.generation(),
            kind,
            epoch,
        }
    }

    #[cold]
    fn acquire_slow<const REPORT: bool>(&self, mut word: Word) -> Result<Ticket, CircuitOpen> {
        loop {
            // Read before the word that admits the call: the word below is `word` loaded
            // again, or the one a compare-and-swap replaces.
            let epoch = self.generations();
            match word.tag() {
                CLOSED | METRICS_ONLY | DISABLED => {
                    let now = self.load();
                    if now != word {
                        word = now;
                        continue;
                    }
                    if REPORT {
                        self.permitted(word);
                    }
                    let kind = if word.tag() == DISABLED {
                        Kind::Passthrough
                    } else {
                        Kind::Normal
                    };
                    return Ok(Self::ticket(word, kind, epoch));
                }
                FORCED_OPEN => return Err(self.reject::<REPORT>(CircuitState::ForcedOpen, None)),
                RATE_LIMITED => {
                    if let Some(until) = self.not_yet(word.payload()) {
                        return Err(self.reject::<REPORT>(CircuitState::RateLimited, Some(until)));
                    }
                    // The cool-down is over: closed again, in the same generation.
                    let next = Word::new(CLOSED, word.generation(), 0);
                    match self.cas(word, next) {
                        Ok(()) => {
                            self.transitioned(word, next, false);
                            word = next;
                        }
                        Err(actual) => word = actual,
                    }
                }
                OPEN => {
                    if let Some(until) = self.not_yet(word.payload()) {
                        return Err(self.reject::<REPORT>(CircuitState::Open, Some(until)));
                    }
                    if self.probe_limit() == 0 {
                        // Shared with a fleet and this replica holds no slot of the fleet's
                        // round: wait for the round to decide.
                        return Err(self.reject::<REPORT>(CircuitState::Open, None));
                    }
                    // The wait is over: this call becomes the first probe of a new round.
                    let probes = Probes {
                        admitted: 1,
                        ..Probes::default()
                    };
                    let next = Word::new(HALF_OPEN, word.next_generation(), probes.pack());
                    match self.cas(word, next) {
                        Ok(()) => {
                            if let Some(max) = self.settings.max_wait_in_half_open {
                                let deadline = self.deadline_ms(max) & DEADLINE_MS_MASK;
                                let generation = next.generation();
                                self.publish(
                                    &self.half_open_deadline,
                                    ((generation as u64) << DEADLINE_GEN_SHIFT) | deadline,
                                    generation,
                                );
                            }
                            self.transitioned(word, next, false);
                            if REPORT {
                                self.permitted(next);
                            }
                            return Ok(Self::ticket(next, Kind::Probe, epoch));
                        }
                        Err(actual) => word = actual,
                    }
                }
                _ => {
                    // HALF_OPEN
                    let mut probes = word.probes();
                    if probes.admitted < self.probe_limit() {
                        probes.admitted += 1;
                        let next = Word::new(HALF_OPEN, word.generation(), probes.pack());
                        match self.cas(word, next) {
                            Ok(()) => {
                                if REPORT {
                                    self.permitted(next);
                                }
                                return Ok(Self::ticket(next, Kind::Probe, epoch));
                            }
                            Err(actual) => {
                                word = actual;
                                continue;
                            }
                        }
                    }
                    // Every slot is taken. Is the round over (the one expiry rule)?
                    let after = self.expire(word);
                    if after != word {
                        word = after;
                        continue;
                    }
                    return Err(self.reject::<REPORT>(CircuitState::HalfOpen, None));
                }
            }
        }
    }

    // Inline into its callers, which are all cold: a call more cost the open path 5%.
    #[inline(always)]
    fn reject<const REPORT: bool>(
        &self,
        state: CircuitState,
        retry_at: Option<Instant>,
    ) -> CircuitOpen {
        if REPORT {
            self.report_rejected(state);
        }
        CircuitOpen::new(self.error_name.clone(), state, retry_at)
    }

    /// Counts and reports a rejected call (at once for `try_acquire`; when the call is made
    /// for a service).
    #[inline(always)]
    pub(crate) fn report_rejected(&self, state: CircuitState) {
        self.not_permitted.increment();
        tracing::debug!(breaker = %self.name, state = %state, "call rejected by circuit breaker");
        if self.listeners.is_active() {
            self.emit_rejected(state);
        }
    }

    #[cold]
    fn emit_rejected(&self, state: CircuitState) {
        self.listeners.emit(|| CircuitBreakerEvent::CallRejected {
            name: self.name.clone(),
            state,
        });
    }

    // -- outcomes -----------------------------------------------------------------------------

    /// Records the outcome of an admitted call that came with no hint (`Permit::record`, the
    /// service's recorder). The common case (a closed breaker, no slow-call rule, no listener)
    /// is small enough to inline; everything else takes `settle`.
    #[inline]
    pub(crate) fn record(&self, ticket: Ticket, outcome: Outcome, start: Option<Instant>) {
        if ticket.kind == Kind::Normal && start.is_none() && !self.listeners.is_active() {
            self.settle_normal(ticket, outcome, Hint::None, false);
        } else {
            self.settle(ticket, outcome, Hint::None, start);
        }
    }

    /// Records the outcome of an admitted call.
    pub(crate) fn settle(
        &self,
        ticket: Ticket,
        outcome: Outcome,
        hint: Hint,
        start: Option<Instant>,
    ) {
        let (slow, elapsed) = match (self.settings.slow_call_duration, start) {
            (Some(limit), Some(start)) if outcome != Outcome::Ignored => {
                let elapsed = start.elapsed();
                (elapsed >= limit, Some(elapsed))
            }
            _ => (false, None),
        };
        match ticket.kind {
            Kind::Passthrough => {}
            Kind::Normal => self.settle_normal(ticket, outcome, hint, slow),
            Kind::Probe => self.settle_probe(ticket, outcome, hint, slow),
        }
        self.listeners.emit(|| CircuitBreakerEvent::CallRecorded {
            name: self.name.clone(),
            outcome,
            slow,
            elapsed,
        });
    }

    #[inline]
    fn settle_normal(&self, ticket: Ticket, outcome: Outcome, hint: Hint, slow: bool) {
        if let Hint::RateLimited(wait) = hint {
            // Relaxed: a statistic, read on its own.
            self.ignored.fetch_add(1, Ordering::Relaxed);
            self.cool_down(ticket, wait);
            return;
        }
        if outcome == Outcome::Ignored {
            // Relaxed: a statistic, read on its own.
            self.ignored.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let word = self.load();
        if self.is_stale(word, ticket) {
            // Admitted before a transition: this outcome belongs to a finished generation.
            // (A record that races with the transition itself may still land in the new
            // window; it can never close a breaker, which only half-open probes do.)
            return;
        }
        // Acquire: pairs with `publish`, which comes after the clear, so a record that sees
        // this generation here records into the cleared window.
        if self.window_generation.load(Ordering::Acquire) != ticket.generation as u64 {
            // The window of this generation is still being cleared: recording now could read
            // the old window's counts and trip the breaker that has just closed.
            return;
        }
        let failure = outcome == Outcome::Failure;
        let now = self.window.needs_clock().then(Instant::now);
        let counts = self.window.record(failure, slow, now);
        // The outage rule: a run of failures trips whatever the window holds. A success reads
        // the run and writes only when it ends one.
        let run_ended = match self.settings.consecutive_failures {
            Some(limit) => self
                .streak
                .record(failure)
                .is_some_and(|run| run.failures >= limit),
            None => false,
        };
        let tripped = run_ended || counts.is_some_and(|counts| self.should_trip(counts));
        if tripped && matches!(word.tag(), CLOSED | RATE_LIMITED) {
            self.trip(word, counts, hint);
        }
    }

    /// Starts (or extends) a rate-limit cool-down: calls are rejected with the breaker's
    /// `RateLimited` state until it ends, and nothing counts toward a trip.
    fn cool_down(&self, ticket: Ticket, wait: Option<Duration>) {
        let wait = self.server_wait(wait.unwrap_or(self.settings.rate_limit_cooldown));
        let until = self.deadline_ms(wait);
        let mut word = self.load();
        loop {
            if self.is_stale(word, ticket) {
                return;
            }
            let extend = match word.tag() {
                CLOSED => true,
                RATE_LIMITED => word.payload() < until,
                _ => false,
            };
            if !extend {
                return;
            }
            let next = Word::new(RATE_LIMITED, word.generation(), until);
            match self.cas(word, next) {
                Ok(()) => {
                    if word.tag() == CLOSED {
                        self.transitioned(word, next, false);
                    }
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// A wait the server asked for, capped by `max_retry_after` and at least 1 ms.
    fn server_wait(&self, wait: Duration) -> Duration {
        wait.min(self.settings.max_retry_after)
            .max(Duration::from_millis(1))
    }

    /// The open time, stretched to the server's own wait when it gave one.
    fn at_least_server_wait(&self, open: Duration, hint: Hint) -> Duration {
        match hint {
            Hint::ServerWait(wait) => open.max(self.server_wait(wait)),
            _ => open,
        }
    }

    fn should_trip(&self, counts: Counts) -> bool {
        let s = &self.settings;
        match s.window {
            WindowKind::Consecutive(n) => counts.failures >= n,
            WindowKind::Time { length, .. } if s.load_aware.is_some() => s
                .load_aware
                .as_ref()
                .and_then(|load| load.tier(counts.calls, length))
                .is_some_and(|tier| counts.failures >= tier.failures),
            _ => {
                counts.calls >= s.minimum_calls
                    && (at_least(counts.failures, counts.calls, s.failure_ppm)
                        || at_least(counts.slow, counts.calls, s.slow_ppm))
            }
        }
    }

    /// Opens the breaker from the closed generation of `word`. `counts` are the window's
    /// after the record that tripped it, when the window moved (else it is read again, for a
    /// load-aware open time).
    #[cold]
    fn trip(&self, word: Word, counts: Option<Counts>, hint: Hint) {
        let base = match (&self.settings.load_aware, self.settings.window) {
            (Some(load), WindowKind::Time { length, .. }) => load
                .tier(
                    counts
                        .unwrap_or_else(|| self.window.counts(Instant::now()))
                        .calls,
                    length,
                )
                .map_or(self.settings.wait_in_open, |t| t.wait_in_open),
            _ => self.settings.wait_in_open,
        };
        let open = self.at_least_server_wait(self.open_time(base, 0), hint);
        let until = self.deadline_ms(open);
        let mut word = word;
        loop {
            let next = Word::new(OPEN, word.next_generation(), until);
            match self.cas(word, next) {
                Ok(()) => {
                    self.transitioned(word, next, false);
                    return;
                }
                // A cool-down began or ended in the same generation: the trip still stands.
                Err(actual)
                    if actual.generation() == word.generation()
                        && matches!(actual.tag(), CLOSED | RATE_LIMITED) =>
                {
                    word = actual;
                }
                // Another thread already moved the breaker on.
                Err(_) => return,
            }
        }
    }

    fn settle_probe(&self, ticket: Ticket, outcome: Outcome, hint: Hint, slow: bool) {
        if outcome == Outcome::Ignored || matches!(hint, Hint::RateLimited(_)) {
            // Relaxed: a statistic, read on its own.
            self.ignored.fetch_add(1, Ordering::Relaxed);
        }
        if let Hint::RateLimited(wait) = hint {
            // The upstream is up but asks us to wait: a rate-limit cool-down for its wait,
            // without counting a failed round, rather than let more probes hit the limit. Not
            // `Open`: the upstream answered, and dashboards read `Open` as an outage.
            let wait = self.server_wait(wait.unwrap_or(self.settings.rate_limit_cooldown));
            let until = self.deadline_ms(wait);
            let mut word = self.load();
            while word.tag() == HALF_OPEN && !self.is_stale(word, ticket) {
                let next = Word::new(RATE_LIMITED, word.next_generation(), until);
                match self.cas(word, next) {
                    Ok(()) => {
                        self.transitioned(word, next, false);
                        return;
                    }
                    Err(actual) => word = actual,
                }
            }
            return;
        }
        let mut word = self.load();
        loop {
            // Only the round the probe was admitted to (`is_stale` is exact across wraps).
            if word.tag() != HALF_OPEN || self.is_stale(word, ticket) {
                return;
            }
            let mut probes = word.probes();
            let decision = if outcome == Outcome::Ignored {
                // Give the slot back to the round.
                probes.admitted = probes.admitted.saturating_sub(1);
                Decision::Undecided
            } else {
                probes.settled += 1;
                probes.failures += (outcome == Outcome::Failure) as u32;
                probes.slow += slow as u32;
                self.decide(probes, outcome == Outcome::Failure)
            };
            let next = match decision {
                Decision::Undecided => Word::new(HALF_OPEN, word.generation(), probes.pack()),
                Decision::Close => Word::new(CLOSED, word.next_generation(), 0),
                Decision::Reopen => self.reopen_word(word, Some(hint), None),
            };
            match self.cas(word, next) {
                Ok(()) => {
                    if !matches!(decision, Decision::Undecided) {
                        self.transitioned(word, next, matches!(decision, Decision::Reopen));
                    } else if outcome == Outcome::Ignored {
                        // A slot came free without a transition: wake held calls to take it.
                        self.changed.notify_waiters();
                    }
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Decides a half-open round as soon as its result can no longer change.
    fn decide(&self, p: Probes, failed: bool) -> Decision {
        let s = &self.settings;
        let n = self.probe_limit().max(1);
        if let WindowKind::Consecutive(_) = s.window {
            return if failed {
                Decision::Reopen
            } else if p.settled - p.failures >= n {
                Decision::Close
            } else {
                Decision::Undecided
            };
        }
        let remaining = n.saturating_sub(p.settled);
        let slow_rule = s.slow_call_duration.is_some();
        let reopen = at_least(p.failures, n, s.failure_ppm)
            || (slow_rule && at_least(p.slow, n, s.slow_ppm));
        if reopen {
            return Decision::Reopen;
        }
        let could_fail = at_least(p.failures + remaining, n, s.failure_ppm)
            || (slow_rule && at_least(p.slow + remaining, n, s.slow_ppm));
        if could_fail {
            Decision::Undecided
        } else {
            Decision::Close
        }
    }

    /// The word for a reopen from half-open: open time grown by the reopen count, from now,
    /// or from `since_ms` (an expired round's deadline, in ms since the breaker was built).
    fn reopen_word(&self, word: Word, hint: Option<Hint>, since_ms: Option<u64>) -> Word {
        // Relaxed: the count only sizes the open time. It is bumped just after the previous
        // reopen's compare-and-swap, at least one open wait (>= 1 ms) before this round began.
        let reopens = self.reopens.load(Ordering::Relaxed) + 1;
        let open = self.open_time(self.settings.wait_in_open, reopens);
        let open = self.at_least_server_wait(open, hint.unwrap_or(Hint::None));
        let until = match since_ms {
            Some(since) => since.saturating_add(ceil_ms(open)),
            None => self.deadline_ms(open),
        };
        Word::new(OPEN, word.next_generation(), until)
    }

    /// `base`, grown for the `reopens`-th consecutive reopen and jittered.
    fn open_time(&self, base: Duration, reopens: u64) -> Duration {
        let mut open = base;
        if let Some((multiplier, max)) = self.settings.growth {
            let exponent = i32::try_from(reopens).unwrap_or(i32::MAX);
            let secs = base.as_secs_f64() * multiplier.powi(exponent);
            open = Duration::try_from_secs_f64(secs).map_or(max, |d| d.min(max));
        }
        let jitter = self.settings.jitter;
        if jitter > 0.0 {
            let factor = 1.0 + jitter * (2.0 * self.random() - 1.0);
            open = Duration::try_from_secs_f64(open.as_secs_f64() * factor).unwrap_or(open);
        }
        open.max(Duration::from_millis(1))
    }

    /// A uniform number in `[0, 1)` (the crate's seeded splitmix64, lock-free).
    fn random(&self) -> f64 {
        self.rng.next_f64()
    }

    /// Side effects of a transition this thread won. `failed_round` is true for a reopen
    /// that counts toward open-time growth.
    fn transitioned(&self, from: Word, to: Word, failed_round: bool) {
        let to_word = to;
        let new_generation = to.generation() != from.generation();
        if new_generation {
            // AcqRel: ordered after our compare-and-swap, so a reader that sees the bump has
            // the new word too (see `is_stale` for why the lag does not matter).
            self.core.generations.fetch_add(1, Ordering::AcqRel);
        }
        match to.tag() {
            // A new closed generation starts with an empty window: after a half-open round,
            // and after a `reset` (even of a cool-down, locally or from the fleet). The end
            // of a cool-down keeps its generation, and the window with it.
            CLOSED if new_generation => {
                // Skipped when a newer transition has already happened: its window is not
                // ours to clear. (One landing between this check and the clear may lose a few
                // records of that newer generation; it cannot trip or close anything.)
                if self.load().generation() == to.generation() {
                    self.window.clear();
                    self.streak.clear();
                }
                // Relaxed: see `reopen_word`.
                self.reopens.store(0, Ordering::Relaxed);
            }
            OPEN if failed_round => {
                self.reopens.fetch_add(1, Ordering::Relaxed);
            }
            // A cool-down in a new generation: a probe was rate-limited (the upstream is back),
            // or the fleet's cool-down was adopted by a breaker that was not closed. It ends
            // closed in this generation, with the window it starts with: an empty one, as a
            // probe's success would have left it, never the one that tripped the breaker.
            // (A cool-down of a closed breaker keeps its generation and its window.)
            RATE_LIMITED if new_generation => {
                // As for a new closed generation: not a newer transition's window to clear.
                if self.load().generation() == to.generation() {
                    self.window.clear();
                    self.streak.clear();
                }
                // Relaxed: see `reopen_word`.
                self.reopens.store(0, Ordering::Relaxed);
            }
            _ => {}
        }
        if new_generation && matches!(to.tag(), CLOSED | METRICS_ONLY | RATE_LIMITED) {
            // After the clear, by the thread that cleared: records of this generation may use
            // the window from now on. (The same-generation end of a cool-down publishes
            // nothing: its generation was published when it started, and publishing it from
            // another thread could overtake a clear still to come.)
            self.publish(
                &self.window_generation,
                to.generation() as u64,
                to.generation(),
            );
        }
        let (from, to) = (from.state(), to.state());
        if from == to {
            tracing::info!(breaker = %self.name, state = %to, "circuit breaker reset");
        } else if to == CircuitState::Open || to == CircuitState::ForcedOpen {
            tracing::warn!(breaker = %self.name, %from, %to, "circuit breaker opened");
        } else if to == CircuitState::Closed {
            tracing::info!(breaker = %self.name, %from, %to, "circuit breaker closed");
        } else {
            tracing::info!(breaker = %self.name, %from, %to, "circuit breaker state changed");
        }
        self.listeners
            .emit(|| CircuitBreakerEvent::StateTransition {
                name: self.name.clone(),
                from,
                to,
            });
        self.changed.notify_waiters();
        self.fleet_transitioned(to_word);
    }

    // -- manual control -----------------------------------------------------------------------

    /// Moves to `tag` (a new generation) from whatever state the breaker is in.
    pub(crate) fn force(&self, tag: u64) {
        let mut word = self.load();
        loop {
            if word.tag() == tag && tag != CLOSED {
                return;
            }
            let next = Word::new(tag, word.next_generation(), 0);
            match self.cas(word, next) {
                Ok(()) => {
                    self.fleet_manual(next);
                    // A reset of a closed breaker still gets a fresh window and generation.
                    self.transitioned(word, next, false);
                    self.listeners.emit(|| {
                        let name = self.name.clone();
                        if tag == CLOSED {
                            CircuitBreakerEvent::Reset { name }
                        } else {
                            CircuitBreakerEvent::Forced {
                                name,
                                state: next.state(),
                            }
                        }
                    });
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// True when a call reserved with `ticket` may still be made: its generation is current
    /// and no cool-down has begun in it since (a cool-down of a closed breaker keeps the
    /// generation, so that the window and the outcomes of calls in flight go on through it,
    /// but a call not yet made must not reach a rate-limited upstream).
    #[inline]
    pub(crate) fn still_admits(&self, ticket: Ticket) -> bool {
        let word = self.load();
        word.tag() != RATE_LIMITED && !self.is_stale(word, ticket)
    }

    /// Gives back a ticket a service reserved and never used: a probe's slot is freed (and
    /// held calls woken to take it). Nothing is recorded, counted or reported: no call ran.
    pub(crate) fn release(&self, ticket: Ticket) {
        if ticket.kind != Kind::Probe {
            return;
        }
        let mut word = self.load();
        while word.tag() == HALF_OPEN && !self.is_stale(word, ticket) {
            let mut probes = word.probes();
            probes.admitted = probes.admitted.saturating_sub(1);
            let next = Word::new(HALF_OPEN, word.generation(), probes.pack());
            match self.cas(word, next) {
                Ok(()) => {
                    self.changed.notify_waiters();
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// True when a call would be admitted now (does not reserve anything).
    pub(crate) fn would_permit(&self) -> bool {
        let word = self.current();
        match word.tag() {
            CLOSED | METRICS_ONLY | DISABLED => true,
            FORCED_OPEN => false,
            OPEN => self.remaining(word.payload()).is_none() && self.probe_limit() > 0,
            RATE_LIMITED => self.remaining(word.payload()).is_none(),
            _ => word.probes().admitted < self.probe_limit(),
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        let word = self.current();
        match word.tag() {
            OPEN | RATE_LIMITED => self.remaining(word.payload()),
            _ => None,
        }
    }

    pub(crate) fn metrics(&self) -> CircuitBreakerMetrics {
        let now = Instant::now();
        // The state word is read again after the window: if a transition came in between, the
        // window is read again (a few times at most), so that the state and the counts are of
        // one generation.
        let mut word = self.current();
        let mut counts = self.window.counts(now);
        for _ in 0..3 {
            let after = self.load();
            if after.generation() == word.generation() {
                word = after;
                break;
            }
            word = after;
            counts = self.window.counts(now);
        }
        let rated = counts.calls > 0
            && counts.calls >= self.settings.minimum_calls
            && !matches!(self.settings.window, WindowKind::Consecutive(_));
        let rate = |n: u32| rated.then(|| n as f64 / counts.calls as f64);
        let probes = if word.tag() == HALF_OPEN {
            let p = word.probes();
            p.admitted.saturating_sub(p.settled)
        } else {
            0
        };
        CircuitBreakerMetrics {
            state: word.state(),
            calls: counts.calls,
            failed_calls: counts.failures,
            successful_calls: counts.calls.saturating_sub(counts.failures),
            slow_calls: counts.slow,
            failure_rate: rate(counts.failures),
            slow_call_rate: rate(counts.slow),
            not_permitted_calls: self.not_permitted.sum(),
            // Relaxed: statistics, documented as read just after the state.
            ignored_calls: self.ignored.load(Ordering::Relaxed),
            probes_in_flight: probes,
            consecutive_reopens: self.reopens.load(Ordering::Relaxed),
        }
    }
}

/// `part / whole >= ppm / 1e6`, in integers.
#[inline]
fn at_least(part: u32, whole: u32, ppm: u64) -> bool {
    whole > 0 && part as u64 * 1_000_000 >= ppm * whole as u64
}

/// A duration in whole milliseconds, rounded up so that a wait is never cut short.
fn ceil_ms(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}
