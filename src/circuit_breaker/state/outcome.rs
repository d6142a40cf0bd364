//! Outcomes: a call's result goes into the window (closed) or its half-open round, and may
//! trip, close or reopen the breaker, or start a rate-limit cool-down.

use super::Shared;
use super::policy::{self, Decision};
use super::word::{Hint, Kind, Tag, Ticket, Word};
use crate::Outcome;
use crate::circuit_breaker::events::CircuitBreakerEvent;
use crate::circuit_breaker::window::Counts;
use crate::sync::{Ordering, now};
use std::time::Duration;
use tokio::time::Instant;

impl Shared {
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
                let elapsed = now().saturating_duration_since(start);
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
    pub(super) fn settle_normal(&self, ticket: Ticket, outcome: Outcome, hint: Hint, slow: bool) {
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
        let now = self.window.needs_clock().then(now);
        let counts = self.window.record(failure, slow, now);
        // The outage rule: a run of failures trips whatever the window holds. A success reads
        // the run and writes only when it ends one.
        let limit = self.core.run_limit;
        let run_ended = limit != 0
            && self
                .streak
                .record(failure)
                .is_some_and(|run| policy::run_trips(limit, run.failures));
        let tripped =
            run_ended || counts.is_some_and(|counts| policy::should_trip(&self.settings, counts));
        if tripped && matches!(word.tag(), Tag::Closed | Tag::RateLimited) {
            self.trip(word, counts, hint);
        }
    }

    /// Starts (or extends) a rate-limit cool-down: calls are rejected with the breaker's
    /// `RateLimited` state until it ends, and nothing counts toward a trip.
    pub(super) fn cool_down(&self, ticket: Ticket, wait: Option<Duration>) {
        let wait = policy::server_wait(
            &self.settings,
            wait.unwrap_or(self.settings.rate_limit_cooldown),
        );
        let until = self.deadline_ms(wait);
        let mut word = self.load();
        loop {
            if self.is_stale(word, ticket) {
                return;
            }
            let extend = match word.tag() {
                Tag::Closed => true,
                Tag::RateLimited => word.payload() < until,
                _ => false,
            };
            if !extend {
                return;
            }
            let next = Word::new(Tag::RateLimited, word.generation(), until);
            match self.cas(word, next) {
                Ok(()) => {
                    if word.tag() == Tag::Closed {
                        self.transitioned(word, next, false);
                    }
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Opens the breaker from the closed generation of `word`. `counts` are the window's
    /// after the record that tripped it, when the window moved (else it is read again, for a
    /// load-aware open time).
    #[cold]
    pub(super) fn trip(&self, word: Word, counts: Option<Counts>, hint: Hint) {
        let base = policy::trip_wait(&self.settings, || {
            counts.unwrap_or_else(|| self.window.counts(now())).calls
        });
        let open = policy::at_least_server_wait(
            &self.settings,
            policy::open_time(&self.settings, base, 0, || self.random()),
            hint,
        );
        let until = self.deadline_ms(open);
        let mut word = word;
        loop {
            let next = Word::new(Tag::Open, word.next_generation(), until);
            match self.cas(word, next) {
                Ok(()) => {
                    self.transitioned(word, next, false);
                    return;
                }
                // A cool-down began or ended in the same generation: the trip still stands.
                Err(actual)
                    if actual.generation() == word.generation()
                        && matches!(actual.tag(), Tag::Closed | Tag::RateLimited) =>
                {
                    word = actual;
                }
                // Another thread already moved the breaker on.
                Err(_) => return,
            }
        }
    }

    pub(super) fn settle_probe(&self, ticket: Ticket, outcome: Outcome, hint: Hint, slow: bool) {
        if outcome == Outcome::Ignored || matches!(hint, Hint::RateLimited(_)) {
            // Relaxed: a statistic, read on its own.
            self.ignored.fetch_add(1, Ordering::Relaxed);
        }
        if let Hint::RateLimited(wait) = hint {
            // The upstream is up but asks us to wait: a rate-limit cool-down for its wait,
            // without counting a failed round, rather than let more probes hit the limit. Not
            // `Open`: the upstream answered, and dashboards read `Open` as an outage.
            let wait = policy::server_wait(
                &self.settings,
                wait.unwrap_or(self.settings.rate_limit_cooldown),
            );
            let until = self.deadline_ms(wait);
            let mut word = self.load();
            while word.tag() == Tag::HalfOpen && !self.is_stale(word, ticket) {
                let next = Word::new(Tag::RateLimited, word.next_generation(), until);
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
            if word.tag() != Tag::HalfOpen || self.is_stale(word, ticket) {
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
                policy::decide(
                    &self.settings,
                    self.probe_limit(),
                    probes,
                    outcome == Outcome::Failure,
                )
            };
            let next = match decision {
                Decision::Undecided => Word::new(Tag::HalfOpen, word.generation(), probes.pack()),
                Decision::Close => Word::new(Tag::Closed, word.next_generation(), 0),
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

    /// The word for a reopen from half-open: open time grown by the reopen count, from now,
    /// or from `since_ms` (an expired round's deadline, in ms since the breaker was built).
    pub(super) fn reopen_word(
        &self,
        word: Word,
        hint: Option<Hint>,
        since_ms: Option<u64>,
    ) -> Word {
        // Relaxed: the count only sizes the open time. It is bumped just after the previous
        // reopen's compare-and-swap, at least one open wait (>= 1 ms) before this round began.
        let reopens = self.reopens.load(Ordering::Relaxed) + 1;
        let open = policy::open_time(&self.settings, self.settings.wait_in_open, reopens, || {
            self.random()
        });
        let open = policy::at_least_server_wait(&self.settings, open, hint.unwrap_or(Hint::None));
        let until = match since_ms {
            Some(since) => since.saturating_add(policy::ceil_ms(open)),
            None => self.deadline_ms(open),
        };
        Word::new(Tag::Open, word.next_generation(), until)
    }

    /// A uniform number in `[0, 1)` (the crate's seeded splitmix64, lock-free).
    pub(super) fn random(&self) -> f64 {
        self.rng.next_f64()
    }
}
