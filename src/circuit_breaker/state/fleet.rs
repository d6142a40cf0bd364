//! The breaker's side of fleet sharing (see [`crate::shared_state`]): what the background sync
//! task may read and change. Nothing here runs on the closed call path.
//!
//! - [`FleetLink`] is set once, when a breaker is built with a state store. Every transition
//!   wakes the sync task; a manual transition is marked so that it is published as one.
//! - The probe quota bounds half-open probes fleet-wide: the sync task reserves slots for the
//!   fleet's round in the store ahead of time and stores how many it got. While the quota is 0,
//!   an open breaker whose wait is over keeps rejecting instead of probing. `u32::MAX` means
//!   "no fleet bound" (no store connected): the breaker's own limit applies.
//! - [`Shared::apply_remote`] moves the local state word to a state the fleet agreed on, as
//!   one compare-and-swap and a new local generation, like any other transition.

use super::policy;
use super::{Shared, Tag, Word};
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerEvent, CircuitState};
use crate::config::ConfigError;
use crate::events::Listener;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// No fleet bound on probes: the breaker's own `permitted_calls_in_half_open` applies.
pub(crate) const UNBOUNDED: u32 = u32::MAX;

pub(crate) struct FleetLink {
    /// Woken (one stored permit) on every transition of the breaker.
    pub(crate) wake: tokio::sync::Notify,
    /// Probe slots this replica holds for the fleet's current round.
    quota: AtomicU32,
    /// True while the store answers: a new open state then waits for a reservation.
    connected: std::sync::atomic::AtomicBool,
    /// 1 + the local generation of the last manual transition (0: none).
    manual: AtomicU64,
}

impl FleetLink {
    pub(crate) fn new() -> Self {
        Self {
            wake: tokio::sync::Notify::new(),
            quota: AtomicU32::new(UNBOUNDED),
            connected: std::sync::atomic::AtomicBool::new(false),
            manual: AtomicU64::new(0),
        }
    }

    /// Acquire/Release: the quota is set by the sync task after it reserved the slots in the
    /// store; a caller that sees it also sees what the task wrote before.
    pub(crate) fn quota(&self) -> u32 {
        self.quota.load(Ordering::Acquire)
    }

    pub(crate) fn set_quota(&self, quota: u32) {
        self.quota.store(quota, Ordering::Release);
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected
            .store(connected, std::sync::atomic::Ordering::Release);
        if !connected && self.quota() == 0 {
            // Waiting for slots that the fleet cannot hand out now: the local limit applies.
            // (Slots already held stay held: the store counted them.)
            self.set_quota(UNBOUNDED);
        }
    }

    /// True when the transition to local generation `generation` was a manual one.
    pub(crate) fn is_manual(&self, generation: u32) -> bool {
        self.manual.load(Ordering::Acquire) == generation as u64 + 1
    }

    /// Release, paired with `is_manual`'s Acquire: written right after the manual transition's
    /// compare-and-swap and before the sync task is woken for it.
    fn mark_manual(&self, generation: u32) {
        self.manual.store(generation as u64 + 1, Ordering::Release);
    }

    /// Called after every transition this replica won.
    fn transitioned(&self, to: Tag) {
        match to {
            // No probes until the fleet's round has given this replica slots.
            Tag::Open if self.connected.load(std::sync::atomic::Ordering::Acquire) => {
                self.set_quota(0)
            }
            // Opened while the store is away: a local round, on the breaker's own limit.
            Tag::Open => self.set_quota(UNBOUNDED),
            // The round's own probes: its slots stay as they are.
            Tag::HalfOpen => {}
            // The round is over: its slots mean nothing to the next one.
            _ => self.set_quota(UNBOUNDED),
        }
        self.wake.notify_one();
    }
}

/// The port a fleet attaches through: what `Builder::build` needs from whatever shares a
/// breaker's state (`shared_state::SharedState` implements it; the breaker names no fleet
/// code).
pub(crate) trait Fleet: Send + Sync {
    /// Called by `build` before the breaker exists.
    fn prepare(&self) -> FleetAttachment;
}

/// What a fleet needs from `build`: a listener the breaker has from its first call, and the
/// step that links the built breaker to its fleet (checking the fleet's settings).
pub(crate) struct FleetAttachment {
    pub(crate) listener: Option<std::sync::Arc<dyn Listener<CircuitBreakerEvent>>>,
    pub(crate) attach: Attach,
}

/// Links a built breaker to its fleet.
pub(crate) type Attach = Box<dyn FnOnce(&CircuitBreaker) -> Result<(), ConfigError> + Send>;

/// A state the fleet agreed on, to apply locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Remote {
    /// Closed. `reset` empties the window even when the breaker is closed already.
    Closed {
        reset: bool,
    },
    /// Open for `wait` more.
    Open {
        wait: Duration,
    },
    /// A rate-limit cool-down for `wait` more.
    RateLimited {
        wait: Duration,
    },
    ForcedOpen,
    Disabled,
    MetricsOnly,
}

/// A local state as the sync task sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalState {
    pub(crate) state: CircuitState,
    pub(crate) generation: u32,
    /// The rest of the open wait or cool-down (zero when over).
    pub(crate) remaining: Option<Duration>,
    /// The open wait's or cool-down's end as stored (0 otherwise): tells two cool-downs of
    /// one generation apart.
    pub(crate) until: u64,
}

impl Shared {
    /// The most probes the current round may admit: the breaker's own limit, or fewer when
    /// the fleet gave this replica fewer slots.
    #[inline]
    pub(super) fn probe_limit(&self) -> u32 {
        let own = self.settings.permitted_in_half_open;
        match self.fleet.get() {
            Some(link) => own.min(link.quota()),
            None => own,
        }
    }

    pub(super) fn fleet_transitioned(&self, to: Word) {
        if let Some(link) = self.fleet.get() {
            link.transitioned(to.tag());
        }
    }

    pub(super) fn fleet_manual(&self, to: Word) {
        if let Some(link) = self.fleet.get() {
            link.mark_manual(to.generation());
        }
    }

    pub(crate) fn local_state(&self) -> LocalState {
        // With the expiry rule applied, as every reader of the state does.
        self.local_of(self.current())
    }

    fn local_of(&self, word: Word) -> LocalState {
        let (remaining, until) = match word.tag() {
            Tag::Open | Tag::RateLimited => (
                Some(self.remaining(word.payload()).unwrap_or_default()),
                word.payload(),
            ),
            _ => (None, 0),
        };
        LocalState {
            state: word.state(),
            generation: word.generation(),
            remaining,
            until,
        }
    }

    /// Moves to the state the fleet agreed on; returns the local state it made (whatever
    /// happened after).
    pub(crate) fn apply_remote(&self, remote: Remote) -> LocalState {
        let mut word = self.load();
        loop {
            let next = match remote {
                Remote::Closed { reset: false } if word.tag() == Tag::Closed => {
                    return self.local_of(word);
                }
                // The fleet's cool-down is over: closed in the same generation, with the
                // window, as a local one ends. (A reset starts a new one: next arm.)
                Remote::Closed { reset: false } if word.tag() == Tag::RateLimited => {
                    Word::new(Tag::Closed, word.generation(), 0)
                }
                Remote::Closed { .. } => Word::new(Tag::Closed, word.next_generation(), 0),
                Remote::Open { wait } => {
                    Word::new(Tag::Open, word.next_generation(), self.deadline_ms(wait))
                }
                Remote::RateLimited { wait } => {
                    // A cool-down of a closed breaker keeps its generation, as a local one does.
                    let generation = if matches!(word.tag(), Tag::Closed | Tag::RateLimited) {
                        word.generation()
                    } else {
                        word.next_generation()
                    };
                    Word::new(Tag::RateLimited, generation, self.deadline_ms(wait))
                }
                Remote::ForcedOpen => Word::new(Tag::ForcedOpen, word.next_generation(), 0),
                Remote::Disabled => Word::new(Tag::Disabled, word.next_generation(), 0),
                Remote::MetricsOnly => Word::new(Tag::MetricsOnly, word.next_generation(), 0),
            };
            if next == word {
                return self.local_of(word);
            }
            match self.cas(word, next) {
                Ok(()) => {
                    tracing::debug!(breaker = %self.name, state = %next.state(), "fleet state applied");
                    self.transitioned(word, next, false);
                    return self.local_of(next);
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// For an open breaker whose wait is not over and whose probes are not bounded by the
    /// fleet yet (it opened before the store answered): bound them now, until slots are
    /// reserved.
    pub(crate) fn await_fleet_slots(&self) {
        let Some(link) = self.fleet.get() else { return };
        let word = self.load();
        if word.tag() == Tag::Open
            && self.remaining(word.payload()).is_some()
            && link.quota() == UNBOUNDED
        {
            link.set_quota(0);
        }
    }

    /// The fleet's counts say trip: with this many calls, failures and slow calls over the
    /// fleet window, do the breaker's thresholds say so? (`minimum_calls` applies to the
    /// fleet's calls.)
    pub(crate) fn fleet_should_trip(&self, calls: u64, failures: u64, slow: u64) -> bool {
        let s = &self.settings;
        let whole = u32::try_from(calls).unwrap_or(u32::MAX);
        let part = |n: u64| u32::try_from(n.min(calls)).unwrap_or(u32::MAX);
        whole >= s.minimum_calls
            && (policy::at_least(part(failures), whole, s.failure_ppm)
                || (s.slow_call_duration.is_some()
                    && policy::at_least(part(slow), whole, s.slow_ppm)))
    }

    /// Opens a closed breaker because the fleet's counts crossed a threshold. Returns false
    /// when the breaker was not closed (nothing to do).
    pub(crate) fn trip_for_fleet(&self) -> bool {
        let mut word = self.load();
        loop {
            if word.tag() != Tag::Closed {
                return false;
            }
            let open = policy::open_time(&self.settings, self.settings.wait_in_open, 0, || {
                self.random()
            });
            let next = Word::new(Tag::Open, word.next_generation(), self.deadline_ms(open));
            match self.cas(word, next) {
                Ok(()) => {
                    tracing::warn!(breaker = %self.name, "the fleet's failure rate opened the circuit breaker");
                    self.transitioned(word, next, false);
                    return true;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// True when the breaker is open, its wait is over and it has no probe slot: it waits for
    /// the fleet's round to decide.
    pub(crate) fn waiting_for_fleet(&self) -> bool {
        let word = self.load();
        word.tag() == Tag::Open
            && self.remaining(word.payload()).is_none()
            && self.probe_limit() == 0
    }
}
