//! The budgets of every key behind one mutex: admission, learning from answers, give-backs.

use super::bucket::Bucket;
use super::error::NEVER;
use super::ledger::{Ledger, Mark};
use super::permit::Pending;
use super::{Exhausted, QuotaEvent, QuotaExceeded, RateLimits};
use crate::events::Listeners;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// The number of the next [`QuotaEvent::LevelsChanged`] of any governor, taken under the
/// governor's lock. One count for the process, not one per governor: a listener keeps a key's
/// latest level by governor name, and a governor rebuilt under the same name (a configuration
/// reload) must report after the one it replaces, not from 0 again.
static LEVEL_SEQ: AtomicU64 = AtomicU64::new(0);

pub(crate) struct Shared<K> {
    pub(crate) name: Arc<str>,
    pub(super) window: Duration,
    pub(crate) max_wait: Duration,
    pub(super) max_keys: usize,
    pub(super) default_pause: Duration,
    pub(super) requests_per_window: Option<u64>,
    pub(super) tokens_per_window: Option<u64>,
    pub(super) keys: Mutex<HashMap<K, KeyState>>,
    pub(super) listeners: Listeners<QuotaEvent>,
    #[cfg(feature = "shared-state")]
    pub(crate) store: Option<Arc<dyn crate::shared_state::QuotaStore>>,
}

/// One key's budgets.
pub(super) struct KeyState {
    pub(super) requests: Bucket,
    pub(super) tokens: Bucket,
    /// Limits set by hand are kept; headers only move the levels.
    pub(super) manual_requests: bool,
    pub(super) manual_tokens: bool,
    pub(super) paused_until: Option<Instant>,
    /// The calls admitted so far: the baseline that observations count from.
    pub(super) ledger: Ledger,
    /// Per budget (requests, tokens): the last call whose report set the level. That report
    /// counted what the provider really charged it and every call before it, so a later
    /// change to one of those calls (its usage, a 429, a cancellation) is already in the
    /// level, and only goes to the ledger.
    pub(super) synced: [Option<u64>; 2],
    pub(super) last_used: Instant,
    /// The key as events write it, made at its first event and kept.
    pub(super) label: Option<Arc<str>>,
}

impl KeyState {
    /// The budget a call of one request and `tokens` tokens never fits in (it costs more than
    /// the whole limit), if any: no wait helps, so it is refused at once. Unknown limits admit
    /// everything.
    pub(super) fn never_fits(&self, tokens: f64) -> Option<Exhausted> {
        if self.requests.never_fits(1.0) {
            Some(Exhausted::Requests)
        } else if self.tokens.never_fits(tokens) {
            Some(Exhausted::Tokens)
        } else {
            None
        }
    }
}

/// A call admitted with a wait, not yet sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admitted {
    pub(crate) wait: Duration,
    pub(crate) mark: Mark,
    /// The latest it may go: its admission plus `max_wait`.
    pub(crate) deadline: Instant,
}

impl<K> Shared<K> {
    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<K, KeyState>> {
        // No code panics while holding the lock; a poisoned map still holds valid budgets.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq + Clone + fmt::Display + Send + 'static> Shared<K> {
    pub(super) fn new_key(&self, now: Instant) -> KeyState {
        let mut state = KeyState {
            requests: Bucket::unlimited(now),
            tokens: Bucket::unlimited(now),
            manual_requests: false,
            manual_tokens: false,
            paused_until: None,
            ledger: Ledger::default(),
            synced: [None, None],
            last_used: now,
            label: None,
        };
        if let Some(r) = self.requests_per_window {
            state.requests.set_limit(r, self.window, now);
            state.manual_requests = true;
        }
        if let Some(t) = self.tokens_per_window {
            state.tokens.set_limit(t, self.window, now);
            state.manual_tokens = true;
        }
        state
    }

    pub(super) fn with_key<R>(
        &self,
        key: &K,
        now: Instant,
        f: impl FnOnce(&mut KeyState) -> R,
    ) -> R {
        let mut keys = self.lock();
        if !keys.contains_key(key) && keys.len() >= self.max_keys {
            let oldest = keys
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                keys.remove(&oldest);
            }
        }
        let state = keys.entry(key.clone()).or_insert_with(|| self.new_key(now));
        state.last_used = now;
        state.requests.refill(now);
        state.tokens.refill(now);
        f(state)
    }

    /// As [`with_key`](Self::with_key) for a key that is kept; `None` (and nothing done) for a
    /// key forgotten since (its calls' corrections have nothing left to correct).
    pub(super) fn with_known_key<R>(
        &self,
        key: &K,
        now: Instant,
        f: impl FnOnce(&mut KeyState) -> R,
    ) -> Option<R> {
        let mut keys = self.lock();
        let state = keys.get_mut(key)?;
        state.requests.refill(now);
        state.tokens.refill(now);
        Some(f(state))
    }

    pub(super) fn key_name(key: &K) -> Arc<str> {
        Arc::from(key.to_string())
    }

    /// Reports `key`'s levels now ([`QuotaEvent::LevelsChanged`]) after a change, and
    /// returns the key's name for the other events of that change. Nothing (not even the
    /// lock) without a listener; `None` then, or for a key not kept.
    ///
    /// The levels and their number are read under one hold of the lock, so a higher number
    /// is a later level; the key's name is made once and kept with the key.
    pub(super) fn levels_changed(&self, key: &K) -> Option<Arc<str>> {
        if !self.listeners.is_active() {
            return None;
        }
        let (label, requests_left, tokens_left, seq) =
            self.with_known_key(key, Instant::now(), |state| {
                let label = state
                    .label
                    .get_or_insert_with(|| Self::key_name(key))
                    .clone();
                let left = |b: &Bucket| b.is_limited().then_some(b.level);
                let seq = LEVEL_SEQ.fetch_add(1, Ordering::Relaxed);
                (label, left(&state.requests), left(&state.tokens), seq)
            })?;
        self.listeners.emit(|| QuotaEvent::LevelsChanged {
            name: self.name.clone(),
            key: label.clone(),
            requests_left,
            tokens_left,
            seq,
        });
        Some(label)
    }

    /// True when the budgets are kept in a store: the local levels are then not charged.
    pub(super) fn local_levels(&self) -> bool {
        #[cfg(feature = "shared-state")]
        if self.store.is_some() {
            return false;
        }
        true
    }

    /// Admits a call locally: its share is taken now and it waits `wait`, or it is refused
    /// (at once, with [`NEVER`], when it costs more than a whole limit).
    pub(crate) fn admit_local(
        &self,
        key: &K,
        tokens: u64,
        max_wait: Duration,
    ) -> Result<Admitted, QuotaExceeded> {
        let now = Instant::now();
        let tokens = tokens as f64;
        let decided = self.with_key(key, now, |state| {
            // Before the pause: a call that never fits is refused whatever the wait, and
            // without touching the budgets.
            if let Some(budget) = state.never_fits(tokens) {
                return Err((NEVER, budget));
            }
            let pause = state
                .paused_until
                .map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
            let waits = [
                (pause, Exhausted::Paused),
                (state.requests.wait(1.0), Exhausted::Requests),
                (state.tokens.wait(tokens), Exhausted::Tokens),
            ];
            // `waits` is not empty.
            let (wait, budget) = waits
                .into_iter()
                .max_by_key(|(w, _)| *w)
                .unwrap_or((Duration::ZERO, Exhausted::Requests));
            if wait > max_wait {
                return Err((wait, budget));
            }
            state.requests.take(1.0);
            state.tokens.take(tokens);
            Ok(Admitted {
                wait,
                mark: state.ledger.admit(1.0, tokens),
                deadline: now + max_wait,
            })
        });
        self.decided(key, decided)
    }

    /// Reports an admission decision, and turns a refusal into the error.
    pub(crate) fn decided(
        &self,
        key: &K,
        decided: Result<Admitted, (Duration, Exhausted)>,
    ) -> Result<Admitted, QuotaExceeded> {
        match decided {
            Ok(admitted) => {
                if self.listeners.is_active() {
                    let label = self
                        .levels_changed(key)
                        .unwrap_or_else(|| Self::key_name(key));
                    self.listeners.emit(|| QuotaEvent::Admitted {
                        name: self.name.clone(),
                        key: label,
                        wait: admitted.wait,
                    });
                }
                Ok(admitted)
            }
            Err((retry_after, budget)) => Err(self.rejected(key, retry_after, budget)),
        }
    }

    pub(super) fn rejected(
        &self,
        key: &K,
        retry_after: Duration,
        budget: Exhausted,
    ) -> QuotaExceeded {
        tracing::debug!(
            quota = %self.name,
            key = %key,
            budget = budget.as_str(),
            retry_after_ms = retry_after.as_millis() as u64,
            "call rejected: quota exceeded"
        );
        self.listeners.emit(|| QuotaEvent::Rejected {
            name: self.name.clone(),
            key: Self::key_name(key),
            budget,
            retry_after,
        });
        QuotaExceeded::new(self.name.clone(), key.to_string(), retry_after, budget)
    }

    /// How long a call admitted at `mark` still waits, checked again against the key as it is
    /// now (a pause after a 429, a lower limit, a lower level) before it goes out: zero when
    /// its turn has come; refused when it would go after `deadline`, or at once when a limit
    /// lowered since its admission is below its cost (it never fits).
    pub(crate) fn recheck(
        &self,
        key: &K,
        mark: &Mark,
        tokens: f64,
        deadline: Instant,
    ) -> Result<Duration, QuotaExceeded> {
        let now = Instant::now();
        let local = self.local_levels();
        let waits = self.with_known_key(key, now, |state| {
            let pause = state
                .paused_until
                .map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
            let mut waits = [(pause, Exhausted::Paused); 3];
            // A limit lowered below the call's cost since its admission: it never fits now.
            // (The limits are kept here with a store too; only the levels are the store's.)
            if let Some(budget) = state.never_fits(tokens) {
                waits[0] = (NEVER, budget);
                return waits;
            }
            let (behind_requests, behind_tokens) = state.ledger.since(mark);
            if local {
                // The call's share is taken; it goes when the level, without the calls
                // admitted after it, is back to zero.
                waits[1] = (
                    state.requests.wait_with(behind_requests + 1.0, 1.0),
                    Exhausted::Requests,
                );
                waits[2] = (
                    state.tokens.wait_with(behind_tokens + tokens, tokens),
                    Exhausted::Tokens,
                );
            }
            waits
        });
        let (wait, budget) = waits
            .into_iter()
            .flatten()
            .max_by_key(|(w, _)| *w)
            .unwrap_or((Duration::ZERO, Exhausted::Requests));
        // Below the timer's resolution: the float rounding of a wait that is over.
        if wait < Duration::from_millis(1) {
            return Ok(Duration::ZERO);
        }
        if now.checked_add(wait).is_none_or(|at| at > deadline) {
            return Err(self.rejected(key, wait, budget));
        }
        Ok(wait)
    }

    /// The call admitted at `mark` is charged `requests` and `tokens` more (negative: less):
    /// a refund, a 429, the usage reported. A level that a report of this call or a later one
    /// has set counts the real charge already, and does not move.
    pub(super) fn change(&self, key: &K, mark: &Mark, requests: f64, tokens: f64) {
        let local = self.local_levels();
        self.with_known_key(key, Instant::now(), |state| {
            let moves = |synced: Option<u64>| local && synced.is_none_or(|s| mark.seq > s);
            if moves(state.synced[0]) {
                state.requests.take(requests);
            }
            if moves(state.synced[1]) {
                state.tokens.take(tokens);
            }
            state.ledger.change(mark.seq, requests, tokens);
        });
        self.levels_changed(key);
    }

    /// The call admitted at `mark` is gone (answered and dropped, or cancelled).
    pub(super) fn release(&self, key: &K, mark: &Mark) {
        self.with_known_key(key, Instant::now(), |state| state.ledger.release(mark.seq));
    }

    /// What the provider said about a call admitted at `mark` (or outside any call: `None`,
    /// as if it had seen every call admitted so far).
    pub(crate) fn observe(
        &self,
        key: &K,
        mark: Option<&Mark>,
        limits: &RateLimits,
        rate_limited: bool,
    ) {
        let now = Instant::now();
        let window = self.window;
        let default_pause = self.default_pause;
        let tokens = limits.token_budget();
        let (learned, pause) = self.with_key(key, now, |state| {
            let (since_requests, since_tokens) = mark.map_or((0.0, 0.0), |m| state.ledger.since(m));
            let mut learned = false;
            if let (Some(limit @ 1..), false) = (limits.requests.limit, state.manual_requests) {
                learned |= state.requests.capacity != limit as f64;
                state.requests.set_limit(limit, window, now);
            }
            if let (Some(limit @ 1..), false) = (tokens.limit, state.manual_tokens) {
                learned |= state.tokens.capacity != limit as f64;
                state.tokens.set_limit(limit, window, now);
            }
            // A report older than the one a level was set from knows less (the calls between
            // the two have been charged for real since): it does not set the level.
            let seen = mark.map_or_else(|| state.ledger.last_seq(), |m| Some(m.seq));
            let newer = |synced: Option<u64>| synced.is_none_or(|s| seen >= Some(s));
            if let (Some(remaining), true) = (limits.requests.remaining, newer(state.synced[0])) {
                state.requests.observe(remaining, since_requests);
                state.synced[0] = seen;
            }
            if let (Some(remaining), true) = (tokens.remaining, newer(state.synced[1])) {
                state.tokens.observe(remaining, since_tokens);
                state.synced[1] = seen;
            }
            let pause = rate_limited.then(|| limits.pause().unwrap_or(default_pause));
            if let Some(pause) = pause {
                let until = now + pause;
                state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
            }
            let limit = |b: &Bucket| b.is_limited().then_some(b.capacity as u64);
            (
                learned.then(|| (limit(&state.requests), limit(&state.tokens))),
                pause,
            )
        });
        #[cfg(feature = "shared-state")]
        if let Some(store) = &self.store {
            self.store_observe(store.clone(), key, mark, limits);
        }
        let label = self.levels_changed(key);
        let label = || label.clone().unwrap_or_else(|| Self::key_name(key));
        if let Some((requests, tokens)) = learned {
            self.listeners.emit(|| QuotaEvent::LimitsLearned {
                name: self.name.clone(),
                key: label(),
                requests,
                tokens,
            });
        }
        if let Some(pause) = pause {
            tracing::debug!(quota = %self.name, key = %key, pause_ms = pause.as_millis() as u64, "rate limited: key paused");
            self.listeners.emit(|| QuotaEvent::RateLimited {
                name: self.name.clone(),
                key: label(),
                pause,
            });
        }
    }

    /// A correction by hand, for no call in particular: it counts as a call admitted now.
    pub(crate) fn reconcile(&self, key: &K, estimated: u64, actual: u64) {
        let extra = actual as f64 - estimated as f64;
        if extra == 0.0 {
            return;
        }
        #[cfg(feature = "shared-state")]
        if let Some(store) = &self.store {
            self.store_adjust(store.clone(), key, extra);
        }
        let local = self.local_levels();
        self.with_key(key, Instant::now(), |state| {
            if local {
                state.tokens.take(extra);
            }
            let seq = state.ledger.fresh_seq();
            state.ledger.change(seq, 0.0, extra);
        });
        self.levels_changed(key);
    }

    /// Admits a call, through the store when there is one.
    pub(super) async fn admit_async(
        self: Arc<Self>,
        key: K,
        tokens: u64,
    ) -> Result<Pending<K>, QuotaExceeded> {
        #[cfg(feature = "shared-state")]
        if let Some(store) = self.store.clone() {
            let admitted = self.admit_shared(store, &key, tokens).await?;
            return Ok(Pending::new(self, key, tokens, admitted));
        }
        let admitted = self.admit_local(&key, tokens, self.max_wait)?;
        Ok(Pending::new(self, key, tokens, admitted))
    }
}
