//! The decision behind every request: which faults fire, drawn from a seeded, lock-free
//! sequence, or taken from the plan.

use super::events::ChaosEvent;
use super::fault::Fault;
use crate::events::Listeners;
use crate::random::{nth, unit};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Decides whether a fault (or the whole layer) applies to a request; `V` is what the closure
/// sees of the request (the request itself, or `http::request::Parts` for the HTTP layer).
pub(crate) type Switch<V> = Arc<dyn Fn(&V) -> bool + Send + Sync>;

/// A fault with its injection rate and switch.
pub(crate) struct Slot<V> {
    pub(crate) fault: Fault,
    pub(crate) rate: f64,
    pub(crate) enabled: Option<Switch<V>>,
}

impl<V> Clone for Slot<V> {
    fn clone(&self) -> Self {
        Self {
            fault: self.fault.clone(),
            rate: self.rate,
            enabled: self.enabled.clone(),
        }
    }
}

/// The faults and their rates, for `Debug`.
pub(crate) fn describe<V>(slots: &[Slot<V>]) -> Vec<(&Fault, f64)> {
    slots.iter().map(|s| (&s.fault, s.rate)).collect()
}

/// Everything a layer and its services share.
pub(crate) struct Injector<V> {
    pub(crate) name: Arc<str>,
    pub(crate) seed: u64,
    pub(crate) slots: Vec<Slot<V>>,
    pub(crate) plan: Vec<Vec<Fault>>,
    pub(crate) cycle: bool,
    pub(crate) enabled: Option<Switch<V>>,
    pub(crate) listeners: Listeners<ChaosEvent>,
    /// Requests decided so far: request `n` uses draws `n * stride ..`, so its faults depend
    /// only on the seed and `n`, never on timing or on which clone served it.
    requests: AtomicU64,
    /// Draws per request: two per fault (does it fire, its value) of the longest list.
    stride: u64,
}

impl<V> fmt::Debug for Injector<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Injector")
            .field("name", &self.name)
            .field("seed", &self.seed)
            .field("faults", &describe(&self.slots))
            .field("plan_steps", &self.plan.len())
            .field("requests", &self.requests.load(Ordering::Relaxed))
            .finish()
    }
}

/// What happens to one request.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    /// Total injected delay before anything else.
    pub(crate) delay: Duration,
    /// An error or a status that answers instead of the inner service.
    pub(crate) answer: Option<Fault>,
    /// A fault applied to the response body.
    #[cfg(feature = "http")]
    pub(crate) stream: Option<super::fault::StreamFault>,
}

impl Decision {
    /// Adds one fault that fired. The first answer wins; a stream fault only applies when no
    /// answer replaces the upstream's.
    fn add(&mut self, fault: &Fault, draw: f64) -> bool {
        match fault {
            Fault::Latency { min, max } => {
                // Whole milliseconds (tokio's timer resolution), `min ..= max` inclusive: the
                // reported delay is the one the caller waits.
                let span = max.saturating_sub(*min);
                let steps = span.as_millis().saturating_add(1) as f64;
                let offset = Duration::from_millis((draw * steps) as u64).min(span);
                self.delay += *min + offset;
                true
            }
            Fault::Error(_) => self.answer_with(fault),
            #[cfg(feature = "http")]
            Fault::Status(_) => self.answer_with(fault),
            #[cfg(feature = "http")]
            Fault::Stream(stream) => {
                if self.answer.is_some() || self.stream.is_some() {
                    return false;
                }
                self.stream = Some(*stream);
                true
            }
        }
    }

    fn answer_with(&mut self, fault: &Fault) -> bool {
        if self.answer.is_some() {
            return false;
        }
        #[cfg(feature = "http")]
        {
            // An answer replaces the upstream, so a stream fault chosen earlier has no body.
            self.stream = None;
        }
        self.answer = Some(fault.clone());
        true
    }
}

impl<V> Injector<V> {
    pub(crate) fn new(
        name: Arc<str>,
        seed: u64,
        slots: Vec<Slot<V>>,
        plan: Vec<Vec<Fault>>,
        cycle: bool,
        enabled: Option<Switch<V>>,
        listeners: Listeners<ChaosEvent>,
    ) -> Self {
        let longest = plan.iter().map(Vec::len).chain([slots.len(), 1]).max();
        let stride = 2 * longest.unwrap_or(1) as u64;
        Self {
            name,
            seed,
            slots,
            plan,
            cycle,
            enabled,
            listeners,
            requests: AtomicU64::new(0),
            stride,
        }
    }

    /// The `i`th number of request `n`'s draws, in `[0, 1)`.
    fn draw(&self, n: u64, i: u64) -> f64 {
        let index = n.wrapping_mul(self.stride).wrapping_add(i).wrapping_add(1);
        // The splitmix64 sequence from `seed`, addressed by index (as `SplitMix64` would
        // produce it), so that concurrent requests need no lock.
        unit(nth(self.seed, index))
    }

    /// Decides the faults of the next request and reports each one that fires.
    pub(crate) fn decide(&self, view: &V) -> Decision {
        if let Some(enabled) = &self.enabled {
            if !enabled(view) {
                return Decision::default();
            }
        }
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let mut decision = Decision::default();
        let plan_len = self.plan.len() as u64;
        if plan_len > 0 && (self.cycle || n < plan_len) {
            let step = &self.plan[(n % plan_len) as usize];
            for (i, fault) in step.iter().enumerate() {
                let before = decision.delay;
                if decision.add(fault, self.draw(n, 2 * i as u64 + 1)) {
                    self.report(fault, decision.delay - before);
                }
            }
            return decision;
        }
        // After the plan, the random faults take over, numbered from where the plan ended.
        let n = n - plan_len.min(n);
        for (i, slot) in self.slots.iter().enumerate() {
            let fires = self.draw(n, 2 * i as u64) < slot.rate;
            if !fires || !slot.enabled.as_ref().is_none_or(|enabled| enabled(view)) {
                continue;
            }
            let before = decision.delay;
            if decision.add(&slot.fault, self.draw(n, 2 * i as u64 + 1)) {
                self.report(&slot.fault, decision.delay - before);
            }
        }
        decision
    }

    fn report(&self, fault: &Fault, delay: Duration) {
        let kind = fault.kind();
        tracing::debug!(chaos = %self.name, fault = %kind, "fault injected");
        self.listeners.emit(|| ChaosEvent::FaultInjected {
            name: self.name.clone(),
            fault: kind,
            delay: match fault {
                Fault::Latency { .. } => Some(delay),
                _ => None,
            },
            #[cfg(feature = "http")]
            status: match fault {
                Fault::Status(status) => Some(status.status),
                _ => None,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::SplitMix64;

    /// The draws are splitmix64's sequence from the seed, addressed by index: the `k`th draw
    /// is the `k`th number `SplitMix64::new(seed)` yields.
    #[test]
    fn draws_are_the_seeded_splitmix64_sequence() {
        let slots = vec![Slot::<()> {
            fault: Fault::error("x"),
            rate: 0.5,
            enabled: None,
        }];
        let injector = Injector::new(
            Arc::from("t"),
            99,
            slots,
            Vec::new(),
            false,
            None,
            Listeners::new(),
        );
        let mut rng = SplitMix64::new(99);
        for n in 0..50 {
            for i in 0..2 {
                assert_eq!(
                    injector.draw(n, i).to_bits(),
                    unit(rng.next_u64()).to_bits()
                );
            }
        }
    }
}
