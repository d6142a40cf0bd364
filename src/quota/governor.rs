//! The [`Quota`] handle: admission, snapshots, the tower layer.

use super::bucket::Bucket;
use super::shared::Shared;
use super::{Builder, QuotaExceeded, QuotaLayer, QuotaPermit, RateLimits};
use crate::events::Listeners;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A quota governor: request and token budgets per key, a cheap `Clone` handle. See the
/// [module docs](super).
pub struct Quota<K> {
    pub(super) shared: Arc<Shared<K>>,
}

impl<K> Clone for Quota<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K> fmt::Debug for Quota<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("name", &self.shared.name)
            .field("window", &self.shared.window)
            .field("max_wait", &self.shared.max_wait)
            .field("keys", &self.shared.lock().len())
            .finish_non_exhaustive()
    }
}
/// What a key's budgets hold now; see [`Quota::snapshot`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct QuotaSnapshot {
    /// Requests per window (`None`: no limit known).
    pub requests_limit: Option<u64>,
    /// Requests that fit now (negative: owed to calls waiting for their turn).
    pub requests_available: f64,
    /// Tokens per window (`None`: no limit known).
    pub tokens_limit: Option<u64>,
    /// Tokens that fit now (negative: owed to waiting calls).
    pub tokens_available: f64,
    /// How long the key still pauses after a 429.
    pub paused_for: Duration,
}

impl<K: Hash + Eq + Clone + fmt::Display + Send + 'static> Quota<K> {
    /// A builder with the defaults, for the governor named `name`.
    ///
    /// | setting | default |
    /// |---|---|
    /// | `window` | 60 s |
    /// | `max_wait` | 30 s |
    /// | `max_keys` | 1,000 |
    /// | `default_pause` | 1 s |
    /// | limits | learned from headers |
    pub fn builder(name: impl Into<Arc<str>>) -> Builder<K> {
        Builder {
            name: name.into(),
            window: Duration::from_secs(60),
            max_wait: Duration::from_secs(30),
            max_keys: 1_000,
            default_pause: Duration::from_secs(1),
            requests_per_window: None,
            tokens_per_window: None,
            listeners: Listeners::new(),
            #[cfg(feature = "shared-state")]
            store: None,
            _key: std::marker::PhantomData,
        }
    }

    /// The governor's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Admits a call of `key` that is estimated to use `tokens` tokens: at once when it fits,
    /// after a wait of at most `max_wait` when it will, or fails with [`QuotaExceeded`]
    /// (nothing is taken then). Dropping the future while it waits gives its share back.
    ///
    /// A call that costs more than the key's whole token limit (or, likewise, its request
    /// limit) never fits, as the budget never holds more than its limit: it fails at once,
    /// whatever `max_wait`, with [`QuotaExceeded::never_fits`] true and a `retry_after` of
    /// `Duration::MAX`, and takes nothing (the provider would refuse it too: OpenAI answers
    /// 429 "Request too large"). A call already waiting when a limit below its cost is
    /// learned fails the same way when it checks the key again at its turn, and gives its
    /// share back. Unknown limits admit everything.
    ///
    /// Waiting needs a tokio runtime with the time driver enabled (a call that fits at once
    /// reads the clock but sets no timer).
    pub async fn acquire(&self, key: &K, tokens: u64) -> Result<QuotaPermit<K>, QuotaExceeded> {
        let pending = self.shared.clone().admit_async(key.clone(), tokens).await?;
        // No timer for a call that fits now: that path needs no time driver.
        let mut wait = pending.wait();
        while !wait.is_zero() {
            tokio::time::sleep(wait).await;
            // A 429, a lower limit or a lower level since it was admitted moves its turn.
            wait = pending.recheck()?;
        }
        Ok(pending.into_permit())
    }

    /// Sets `key`'s limits by hand (per window); `None` leaves a limit as it is. Headers no
    /// longer change a limit set this way (they still move what remains).
    pub fn set_limits(&self, key: &K, requests: Option<u64>, tokens: Option<u64>) {
        let now = Instant::now();
        let window = self.shared.window;
        self.shared.with_key(key, now, |state| {
            if let Some(r) = requests {
                state.requests.set_limit(r, window, now);
                state.manual_requests = true;
            }
            if let Some(t) = tokens {
                state.tokens.set_limit(t, window, now);
                state.manual_tokens = true;
            }
        });
        self.shared.levels_changed(key);
    }

    /// Learns from `limits` reported for `key` outside any call of this governor (a call made
    /// another way); the remaining budgets are taken as they are.
    pub fn observe(&self, key: &K, limits: &RateLimits) {
        self.shared.observe(key, None, limits, false);
    }

    /// Corrects `key`'s token budget for a call whose estimate was `estimated` tokens and that
    /// used `actual` (for example the `usage` at the end of a stream).
    pub fn reconcile(&self, key: &K, estimated: u64, actual: u64) {
        self.shared.reconcile(key, estimated, actual);
    }

    /// `key`'s budgets now, or `None` for a key never seen.
    pub fn snapshot(&self, key: &K) -> Option<QuotaSnapshot> {
        let now = Instant::now();
        let mut keys = self.shared.lock();
        let state = keys.get_mut(key)?;
        state.requests.refill(now);
        state.tokens.refill(now);
        let limit = |b: &Bucket| b.is_limited().then_some(b.capacity as u64);
        Some(QuotaSnapshot {
            requests_limit: limit(&state.requests),
            requests_available: state.requests.level,
            tokens_limit: limit(&state.tokens),
            tokens_available: state.tokens.level,
            paused_for: state
                .paused_until
                .map_or(Duration::ZERO, |u| u.saturating_duration_since(now)),
        })
    }

    /// How many keys are kept.
    pub fn len(&self) -> usize {
        self.shared.lock().len()
    }

    /// True when no key was seen.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A layer that governs calls by the key `key` computes from each request; see
    /// [`QuotaLayer`].
    pub fn layer<Req, KF>(&self, key: KF) -> QuotaLayer<K, KF>
    where
        KF: Fn(&Req) -> K,
    {
        QuotaLayer::new(self.clone(), key)
    }
}
