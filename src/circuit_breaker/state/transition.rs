//! What follows a transition this thread won (a fresh window, the generation count, events,
//! wakers, the fleet), manual control, and giving back an unused probe slot.

use super::Shared;
use super::word::{Kind, Tag, Ticket, Word};
use crate::circuit_breaker::CircuitState;
use crate::circuit_breaker::events::CircuitBreakerEvent;
use crate::sync::Ordering;

impl Shared {
    /// Side effects of a transition this thread won. `failed_round` is true for a reopen
    /// that counts toward open-time growth.
    pub(super) fn transitioned(&self, from: Word, to: Word, failed_round: bool) {
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
            Tag::Closed if new_generation => {
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
            Tag::Open if failed_round => {
                self.reopens.fetch_add(1, Ordering::Relaxed);
            }
            // A cool-down in a new generation: a probe was rate-limited (the upstream is back),
            // or the fleet's cool-down was adopted by a breaker that was not closed. It ends
            // closed in this generation, with the window it starts with: an empty one, as a
            // probe's success would have left it, never the one that tripped the breaker.
            // (A cool-down of a closed breaker keeps its generation and its window.)
            Tag::RateLimited if new_generation => {
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
        if new_generation && matches!(to.tag(), Tag::Closed | Tag::MetricsOnly | Tag::RateLimited) {
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

    /// Moves to `tag` (a new generation) from whatever state the breaker is in.
    pub(crate) fn force(&self, tag: Tag) {
        let mut word = self.load();
        loop {
            if word.tag() == tag && tag != Tag::Closed {
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
                        if tag == Tag::Closed {
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

    /// Gives back a ticket a service reserved and never used: a probe's slot is freed (and
    /// held calls woken to take it). Nothing is recorded, counted or reported: no call ran.
    pub(crate) fn release(&self, ticket: Ticket) {
        if ticket.kind != Kind::Probe {
            return;
        }
        let mut word = self.load();
        while word.tag() == Tag::HalfOpen && !self.is_stale(word, ticket) {
            let mut probes = word.probes();
            probes.admitted = probes.admitted.saturating_sub(1);
            let next = Word::new(Tag::HalfOpen, word.generation(), probes.pack());
            match self.cas(word, next) {
                Ok(()) => {
                    self.changed.notify_waiters();
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }
}
