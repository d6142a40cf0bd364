//! Admission: a call asks the state word for a ticket (closed: two loads), is rejected, or
//! takes a half-open probe slot (one compare-and-swap); and the reports of both.

use super::Shared;
use super::policy;
use super::word::{DEADLINE_GEN_SHIFT, DEADLINE_MS_MASK, Kind, Probes, Tag, Ticket, Word};
use crate::circuit_breaker::events::CircuitBreakerEvent;
use crate::circuit_breaker::{CircuitOpen, CircuitState};
use tokio::time::Instant;

impl Shared {
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
            Tag::Closed | Tag::MetricsOnly => {
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
    pub(super) fn acquire_open<T, const REPORT: bool>(
        &self,
        word: Word,
        make: impl FnOnce(Ticket) -> T,
    ) -> Result<T, CircuitOpen> {
        if word.tag() == Tag::Open {
            if let Some(until) = self.not_yet(word.payload()) {
                return Err(self.reject::<REPORT>(CircuitState::Open, Some(until)));
            }
        }
        self.acquire_slow::<REPORT>(word).map(make)
    }

    /// Reports an admitted call, in the state `word` says. Without a listener: one check of
    /// the listener list, no atomic, no clock.
    #[inline]
    pub(super) fn permitted(&self, word: Word) {
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
                    if word.tag() == Tag::MetricsOnly && word.generation() == ticket.generation {
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
    pub(super) fn emit_permitted(&self, state: CircuitState) {
        self.listeners.emit(|| CircuitBreakerEvent::CallPermitted {
            name: self.name.clone(),
            state,
        });
    }

    /// A ticket for a call admitted in `word`, with `epoch`, the count of generations read
    /// before `word` was (see `is_stale`).
    #[inline]
    pub(super) fn ticket(word: Word, kind: Kind, epoch: u64) -> Ticket {
        Ticket {
            generation: word.generation(),
            kind,
            epoch,
        }
    }

    #[cold]
    pub(super) fn acquire_slow<const REPORT: bool>(
        &self,
        mut word: Word,
    ) -> Result<Ticket, CircuitOpen> {
        loop {
            // Read before the word that admits the call: the word below is `word` loaded
            // again, or the one a compare-and-swap replaces.
            let epoch = self.generations();
            match word.tag() {
                Tag::Closed | Tag::MetricsOnly | Tag::Disabled => {
                    let now = self.load();
                    if now != word {
                        word = now;
                        continue;
                    }
                    if REPORT {
                        self.permitted(word);
                    }
                    let kind = if word.tag() == Tag::Disabled {
                        Kind::Passthrough
                    } else {
                        Kind::Normal
                    };
                    return Ok(Self::ticket(word, kind, epoch));
                }
                Tag::ForcedOpen => {
                    return Err(self.reject::<REPORT>(CircuitState::ForcedOpen, None));
                }
                Tag::RateLimited => {
                    if let Some(until) = self.not_yet(word.payload()) {
                        return Err(self.reject::<REPORT>(CircuitState::RateLimited, Some(until)));
                    }
                    // The cool-down is over: closed again, in the same generation.
                    let next = Word::new(Tag::Closed, word.generation(), 0);
                    match self.cas(word, next) {
                        Ok(()) => {
                            self.transitioned(word, next, false);
                            word = next;
                        }
                        Err(actual) => word = actual,
                    }
                }
                Tag::Open => {
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
                    let next = Word::new(Tag::HalfOpen, word.next_generation(), probes.pack());
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
                    // Tag::HalfOpen
                    let mut probes = word.probes();
                    if !policy::round_is_full(probes, self.probe_limit()) {
                        probes.admitted += 1;
                        let next = Word::new(Tag::HalfOpen, word.generation(), probes.pack());
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

    /// For a gate in front of work only an admitted call needs (a retry layer, timeouts):
    /// the rejection a call would get now when the breaker is open (its wait not over) or
    /// forced open, counted and reported as the breaker's own rejection of that call would
    /// be (with `REPORT` false, neither: a call asking again). `None` in every other state
    /// (closed, half-open, a cool-down, an open wait that is over), where the breaker itself
    /// decides. Reserves nothing. Closed: one load.
    #[cfg_attr(not(feature = "stack"), allow(dead_code))]
    #[inline]
    pub(crate) fn gate<const REPORT: bool>(&self) -> Option<CircuitOpen> {
        let word = self.load();
        match word.tag() {
            Tag::Open | Tag::ForcedOpen => self.gate_open::<REPORT>(word),
            _ => None,
        }
    }

    #[cold]
    #[cfg_attr(not(feature = "stack"), allow(dead_code))]
    fn gate_open<const REPORT: bool>(&self, word: Word) -> Option<CircuitOpen> {
        if word.tag() == Tag::ForcedOpen {
            return Some(self.reject::<REPORT>(CircuitState::ForcedOpen, None));
        }
        let until = self.not_yet(word.payload())?;
        Some(self.reject::<REPORT>(CircuitState::Open, Some(until)))
    }

    // Inline into its callers, which are all cold: a call more cost the open path 5%.
    #[inline(always)]
    pub(super) fn reject<const REPORT: bool>(
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
    pub(super) fn emit_rejected(&self, state: CircuitState) {
        self.listeners.emit(|| CircuitBreakerEvent::CallRejected {
            name: self.name.clone(),
            state,
        });
    }
}
