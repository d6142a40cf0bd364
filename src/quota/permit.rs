//! A call admitted and waiting ([`Pending`]), and one sent ([`QuotaPermit`]).

use super::ledger::Mark;
use super::shared::{Admitted, Shared};
use super::{Observation, Quota, QuotaExceeded, RateLimits};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A call admitted and waiting for its turn: its share is given back if it is dropped before
/// [`into_permit`](Pending::into_permit).
pub(crate) struct Pending<K: Hash + Eq + Clone + fmt::Display + Send + 'static> {
    pub(super) shared: Arc<Shared<K>>,
    pub(super) key: Option<K>,
    pub(super) tokens: u64,
    pub(super) admitted: Admitted,
}

impl<K: Hash + Eq + Clone + fmt::Display + Send + 'static> Pending<K> {
    pub(crate) fn new(shared: Arc<Shared<K>>, key: K, tokens: u64, admitted: Admitted) -> Self {
        Self {
            shared,
            key: Some(key),
            tokens,
            admitted,
        }
    }

    pub(crate) fn wait(&self) -> Duration {
        self.admitted.wait
    }

    /// How long the call still waits, checked against the key as it is now; an error when it
    /// would go after its `max_wait` (dropping `self` then gives its share back).
    pub(crate) fn recheck(&self) -> Result<Duration, QuotaExceeded> {
        match &self.key {
            Some(key) => self.shared.recheck(
                key,
                &self.admitted.mark,
                self.tokens as f64,
                self.admitted.deadline,
            ),
            None => Ok(Duration::ZERO),
        }
    }

    pub(crate) fn into_permit(mut self) -> QuotaPermit<K> {
        QuotaPermit {
            quota: Quota {
                shared: self.shared.clone(),
            },
            // Only taken here, and `self` is consumed.
            key: self.key.take(),
            mark: self.admitted.mark,
            tokens: self.tokens,
            charged: self.tokens as f64,
            reconciled: false,
            given_back: AtomicBool::new(false),
        }
    }
}

impl<K: Hash + Eq + Clone + fmt::Display + Send + 'static> Drop for Pending<K> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mark = &self.admitted.mark;
            #[cfg(feature = "shared-state")]
            if let Some(store) = &self.shared.store {
                self.shared
                    .store_refund(store.clone(), &key, 1.0, self.tokens as f64);
            }
            // Never sent: the provider will not count it.
            self.shared.change(&key, mark, -1.0, -(self.tokens as f64));
            self.shared.release(&key, mark);
        }
    }
}

impl<K: Hash + Eq + Clone + fmt::Display + Send + 'static> fmt::Debug for Pending<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("quota", &self.shared.name)
            .field("wait", &self.admitted.wait)
            .finish()
    }
}

/// A call admitted by a [`Quota`]: tell it what the provider answered. Dropping it changes
/// nothing (the call was sent and counts).
#[must_use = "a permit is how the governor learns from the answer"]
pub struct QuotaPermit<K: Hash + Eq + Clone + fmt::Display + Send + 'static> {
    pub(super) quota: Quota<K>,
    /// Always `Some` (an `Option` only to share `Pending`'s drop logic).
    pub(super) key: Option<K>,
    pub(super) mark: Mark,
    pub(super) tokens: u64,
    /// What the call is charged now: the estimate, or the usage reported.
    pub(super) charged: f64,
    pub(super) reconciled: bool,
    /// A 429 gave the tokens back (once).
    pub(super) given_back: AtomicBool,
}

impl<K: Hash + Eq + Clone + fmt::Display + Send + 'static> QuotaPermit<K> {
    /// The tokens the call was estimated to use.
    pub fn estimated_tokens(&self) -> u64 {
        self.tokens
    }

    /// Learns from the limits the answer reported (a success, or any answer that is not a
    /// rate limit).
    pub fn observe(&self, limits: &RateLimits) {
        if let Some(key) = &self.key {
            self.quota
                .shared
                .observe(key, Some(&self.mark), limits, false);
        }
    }

    /// The provider answered 429 (or 529): the call cost no tokens there, so its estimate
    /// goes back to the budget (once; the request still counts, as providers count rejected
    /// requests); then learns from `limits` and pauses the key for the wait they ask for.
    pub fn rate_limited(&self, limits: &RateLimits) {
        if let Some(key) = &self.key {
            if !self.given_back.swap(true, Ordering::Relaxed) {
                self.quota
                    .shared
                    .change(key, &self.mark, 0.0, -self.charged);
                #[cfg(feature = "shared-state")]
                if let Some(store) = &self.quota.shared.store {
                    self.quota
                        .shared
                        .store_refund(store.clone(), key, 0.0, self.charged);
                }
            }
            self.quota
                .shared
                .observe(key, Some(&self.mark), limits, true);
        }
    }

    /// Corrects the estimate with the tokens the call really used (once; later calls, and
    /// calls after a 429, are ignored). Either order with [`observe`](Self::observe) counts
    /// the call once.
    pub fn record_usage(&mut self, actual_tokens: u64) {
        if self.reconciled || self.given_back.load(Ordering::Relaxed) {
            return;
        }
        let Some(key) = &self.key else { return };
        self.reconciled = true;
        let extra = actual_tokens as f64 - self.charged;
        self.charged = actual_tokens as f64;
        if extra == 0.0 {
            return;
        }
        #[cfg(feature = "shared-state")]
        if let Some(store) = &self.quota.shared.store {
            self.quota.shared.store_adjust(store.clone(), key, extra);
        }
        self.quota.shared.change(key, &self.mark, 0.0, extra);
    }

    /// Learns all an answer says, in the order that counts the call once: a 429 gives the
    /// estimate back and pauses the key; otherwise the usage replaces the estimate, then the
    /// limits set the levels.
    pub fn answered(&mut self, seen: &Observation) {
        if seen.rate_limited {
            self.rate_limited(&seen.limits);
            return;
        }
        if let Some(used) = seen.usage {
            self.record_usage(used);
        }
        if !seen.limits.is_empty() {
            self.observe(&seen.limits);
        }
    }
}

impl<K: Hash + Eq + Clone + fmt::Display + Send + 'static> Drop for QuotaPermit<K> {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            self.quota.shared.release(key, &self.mark);
        }
    }
}

impl<K: Hash + Eq + Clone + fmt::Display + Send + 'static> fmt::Debug for QuotaPermit<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaPermit")
            .field("quota", &self.quota.shared.name)
            .field("estimated_tokens", &self.tokens)
            .finish()
    }
}
