//! Staying under a provider's quota: request and token budgets per key (provider, model, API
//! key), learned from the provider's rate-limit headers or set by hand; a call that would not
//! fit waits (at most `max_wait`) or is rejected with the time until it would fit.
//!
//! LLM providers limit requests **and tokens** per minute, and tell you where you stand on
//! every answer (OpenAI's `x-ratelimit-*`, Anthropic's `anthropic-ratelimit-*`). A
//! [`Quota`] reads those headers (feature `http`, see [`RateLimits`]), keeps one pair of
//! budgets per key, and paces calls so that they arrive when the provider has room: a 429 is
//! prevented instead of handled.
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::quota::{Quota, QuotaExceeded, QuotaLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! // Requests are (model, prompt). At most 2 requests and 1,000 tokens a minute per model.
//! let quota = Quota::<String>::builder("openai")
//!     .requests_per_window(2)
//!     .tokens_per_window(1_000)
//!     .max_wait(Duration::from_secs(10))
//!     .build()?;
//! let layer = QuotaLayer::new(quota.clone(), |req: &(String, String)| req.0.clone())
//!     // The estimate of a call's tokens: prompt plus the most the answer may take.
//!     .cost(|req: &(String, String)| req.1.len() as u64 / 4 + 200);
//! let mut client = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|(_, prompt): (String, String)| async move {
//!         Ok::<_, std::io::Error>(format!("echo: {prompt}"))
//!     }));
//!
//! let call = |prompt: &str| ("gpt".to_string(), prompt.to_string());
//! client.ready().await?.call(call("hi")).await?;
//! client.ready().await?.call(call("hi")).await?;
//! // The third request of the minute would wait 30 s, longer than `max_wait`:
//! let err = client.ready().await?.call(call("hi")).await.unwrap_err();
//! let exceeded = err.downcast_ref::<QuotaExceeded>().expect("a quota rejection");
//! assert_eq!(exceeded.retry_after(), Duration::from_secs(30));
//! # Ok(())
//! # }
//! ```
//!
//! # How it decides
//!
//! - **Budgets** are token buckets that refill continuously, `limit` units per `window`
//!   (default one minute: the providers' RPM and TPM), as the providers' own limits do. A key
//!   has a request budget and a token budget; an unknown limit admits everything.
//! - **A call** costs one request and its estimated tokens (from the [cost
//!   function](QuotaLayer::cost); 0 by default). When both fit it goes at once. When they fit
//!   within `max_wait`, the call takes its share now and waits until the refill has paid it
//!   back: waiting calls go in arrival order, and none is overtaken. Otherwise it fails at once
//!   with [`QuotaExceeded`], which says when the call would fit.
//! - **Before a waiting call goes** it checks the key again: a pause after a 429, a lower
//!   limit or a lower level learned since it was admitted move its turn (a call that would
//!   then go after its `max_wait` fails with [`QuotaExceeded`] and gives its share back). So
//!   a 10 s `retry-after` costs one 429, not one per call already waiting.
//! - **Headers** (with [`HttpHeaders`], or [`QuotaPermit::observe`]) set the limits (unless set
//!   by hand) and the remaining budget: the provider's `remaining`, less what this governor
//!   admitted since the call that reported it (which the provider had not seen yet). A report
//!   older than the one the level was last set from (a long answer that started earlier) does
//!   not set it.
//! - **Usage**: the estimate is corrected when the answer says what the call really used
//!   ([`Observation::usage`], [`QuotaPermit::record_usage`], [`Quota::reconcile`]).
//! - **A 429** (or 529) cost no tokens at the provider: the call's estimate goes back to the
//!   budget (its request still counts, as providers count rejected requests). It pauses the
//!   key for the provider's `retry-after-ms`, `x-ms-retry-after-ms` or `Retry-After`, or else
//!   until the exhausted budget resets.
//! - **Every change counts once**: a refund (a call cancelled while it waits), a 429 or a usage
//!   report changes what its own call is charged, and so only the reports of calls admitted
//!   before it; a report of a later call has counted the real charge already.
//!
//! # The estimate
//!
//! The token estimate must count what the provider counts, or the governor admits a little
//! more than there is and the difference comes back as 429s near the limit. OpenAI-style
//! limits count the prompt as the model sees it (the chat format adds a few tokens to every
//! message and to the reply: about 3 each in OpenAI's own token-counting guide) plus
//! `max_tokens`, the most the answer may take, when the call is admitted. So estimate
//! `prompt_tokens + messages × 3 + 3 + max_tokens`, not `prompt_tokens + max_tokens` alone
//! (with the latter, one governor measured against llmock got 5.8 % 429s at 99.9 % of a token
//! limit, against 0.3 % with an exact estimate). The usage an answer reports corrects the charge afterwards
//! ([`Observation::usage`]); it cannot correct an estimate below what the provider charged at
//! admission.
//!
//! # Where it goes in a stack
//!
//! Inside the retries: with the standard stack (`StandardResilience::builder(..).llm()`,
//! feature `stack`), the quota layer wraps the client and the stack wraps the quota layer.
//! Then every attempt, retries too, is paced and observed, and a retry after a 429 waits out
//! the key's pause (measured against llmock, a mock of OpenAI's and Anthropic's limits: 6.2 %
//! 429s, against 11.6 % with the quota outside the stack, where the retries of one governed
//! call go out unpaced). Keep `max_wait` under the
//! stack's attempt timeout, which the wait counts against.
//!
//! # Many replicas, one quota
//!
//! A quota belongs to an API key, not to a process. With
//! [`Builder::shared_state`] (feature `shared-state`), the budgets live in a
//! [`QuotaStore`](crate::shared_state::QuotaStore) ([`MemoryStore`](crate::shared_state::MemoryStore)
//! in tests, [`RedisStore`](crate::shared_state::RedisStore) in production, one atomic Lua
//! script per call), so all replicas together stay within one quota. The store is then on
//! the call's path (one round trip per admission); if it fails, a replica falls back to its
//! local budgets, with a warning. The store's levels follow the provider: every replica's
//! reports lower them to the `remaining` reported (less what that replica admitted since),
//! never raise them, so a fleet that starts on a busy key (or after the store forgot it: a
//! flush, an expiry, where the store starts full) is held back from the first answer. A
//! 429's pause is kept per replica.
//!
//! # Cost
//!
//! One mutex over the keys' budgets, taken to admit a call, once more when a waiting call's
//! turn comes, to learn from its answer and to let the call go; no allocation for a key
//! already seen (a change to a call's charge is logged only while a call admitted before it
//! is alive). Calls to LLM APIs take hundreds of milliseconds; this takes a few hundred
//! nanoseconds. With a store, each answer that reports a `remaining` adds one store
//! operation, in the background.

mod bucket;
mod error;
mod events;
pub mod future;
#[cfg(feature = "http")]
mod headers;
mod keys;
mod layer;
mod ledger;
#[cfg(feature = "shared-state")]
mod store;

pub use self::error::{Exhausted, QuotaExceeded};
pub use self::events::QuotaEvent;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::headers::{MAX_RESET, format_go_duration, parse_go_duration, parse_rfc3339};
pub use self::layer::{
    EstimateCost, NoCost, NoObservation, Observation, ObserveResponse, QuotaLayer, QuotaService,
};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::layer::{HttpHeaders, NoUsage};

use self::bucket::Bucket;
use self::ledger::{Ledger, Mark};
use crate::config::{Check, ConfigError, MAX_DURATION};
use crate::events::{Listener, Listeners};
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// One budget as a provider reports it. Every field is `None` when its header is missing or
/// unreadable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Budget {
    /// The most the window allows.
    pub limit: Option<u64>,
    /// What is left of it.
    pub remaining: Option<u64>,
    /// How long until it is full again.
    pub reset: Option<Duration>,
}

impl Budget {
    /// A budget of `limit` with `remaining` left, full again in `reset`.
    pub fn new(limit: Option<u64>, remaining: Option<u64>, reset: Option<Duration>) -> Self {
        Self {
            limit,
            remaining,
            reset,
        }
    }

    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.limit.is_none() && self.remaining.is_none() && self.reset.is_none()
    }

    /// `self`, or `other` when `self` knows nothing.
    pub fn or(self, other: Budget) -> Budget {
        if self.is_empty() { other } else { self }
    }
}

/// What a provider's answer says about its limits: read from headers with
/// [`RateLimits::from_headers`] (feature `http`), or filled in by hand for other transports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimits {
    /// Requests per window.
    pub requests: Budget,
    /// Tokens per window (Anthropic: the most restrictive of its token limits).
    pub tokens: Budget,
    /// Anthropic's input-token budget.
    pub input_tokens: Budget,
    /// Anthropic's output-token budget.
    pub output_tokens: Budget,
    /// How long the provider asked to wait (`retry-after-ms`, `x-ms-retry-after-ms`,
    /// `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl RateLimits {
    /// True when no header was found.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.tokens.is_empty()
            && self.input_tokens.is_empty()
            && self.output_tokens.is_empty()
            && self.retry_after.is_none()
    }

    /// The token budget the governor follows: `tokens`, or else `input_tokens`.
    fn token_budget(&self) -> Budget {
        self.tokens.or(self.input_tokens)
    }

    /// How long a 429 with these limits asks to pause: the wait asked for, or the reset of an
    /// exhausted budget.
    fn pause(&self) -> Option<Duration> {
        self.retry_after.or_else(|| {
            [
                self.requests,
                self.tokens,
                self.input_tokens,
                self.output_tokens,
            ]
            .iter()
            .filter(|b| b.remaining == Some(0))
            .filter_map(|b| b.reset)
            .max()
        })
    }
}

/// A quota governor: request and token budgets per key, a cheap `Clone` handle. See the
/// [module docs](self).
pub struct Quota<K> {
    shared: Arc<Shared<K>>,
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

pub(crate) struct Shared<K> {
    pub(crate) name: Arc<str>,
    window: Duration,
    pub(crate) max_wait: Duration,
    max_keys: usize,
    default_pause: Duration,
    requests_per_window: Option<u64>,
    tokens_per_window: Option<u64>,
    keys: Mutex<HashMap<K, KeyState>>,
    listeners: Listeners<QuotaEvent>,
    #[cfg(feature = "shared-state")]
    pub(crate) store: Option<Arc<dyn crate::shared_state::QuotaStore>>,
}

/// One key's budgets.
struct KeyState {
    requests: Bucket,
    tokens: Bucket,
    /// Limits set by hand are kept; headers only move the levels.
    manual_requests: bool,
    manual_tokens: bool,
    paused_until: Option<Instant>,
    /// The calls admitted so far: the baseline that observations count from.
    ledger: Ledger,
    /// Per budget (requests, tokens): the last call whose report set the level. That report
    /// counted what the provider really charged it and every call before it, so a later
    /// change to one of those calls (its usage, a 429, a cancellation) is already in the
    /// level, and only goes to the ledger.
    synced: [Option<u64>; 2],
    last_used: Instant,
}

/// A call admitted with a wait, not yet sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admitted {
    pub(crate) wait: Duration,
    pub(crate) mark: Mark,
    /// The latest it may go: its admission plus `max_wait`.
    pub(crate) deadline: Instant,
}

/// Builds a [`Quota`]; see [`Quota::builder`].
pub struct Builder<K> {
    name: Arc<str>,
    window: Duration,
    max_wait: Duration,
    max_keys: usize,
    default_pause: Duration,
    requests_per_window: Option<u64>,
    tokens_per_window: Option<u64>,
    listeners: Listeners<QuotaEvent>,
    #[cfg(feature = "shared-state")]
    store: Option<Arc<dyn crate::shared_state::QuotaStore>>,
    _key: std::marker::PhantomData<fn(K)>,
}

impl<K> fmt::Debug for Builder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("window", &self.window)
            .field("max_wait", &self.max_wait)
            .field("max_keys", &self.max_keys)
            .field("requests_per_window", &self.requests_per_window)
            .field("tokens_per_window", &self.tokens_per_window)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone + fmt::Display + Send + 'static> Builder<K> {
    /// The window the limits count over: default 60 s (requests and tokens per minute);
    /// allowed 1 s ..= 24 h.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long a call may wait for its budget before it is rejected instead: default 30 s;
    /// allowed 0 (never wait) ..= 24 h.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The most keys kept (default 1,000; 1 ..= 1,000,000). A new key beyond it replaces the
    /// key used least recently.
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// How long a key pauses after a 429 that says neither how long to wait nor when a
    /// budget resets: default 1 s; allowed 1 ms ..= 24 h.
    pub fn default_pause(mut self, pause: Duration) -> Self {
        self.default_pause = pause;
        self
    }

    /// Requests per window for every key, set by hand (headers do not change it). Default:
    /// unknown until a header says it. 0 is not allowed (use no limit instead).
    pub fn requests_per_window(mut self, requests: u64) -> Self {
        self.requests_per_window = Some(requests);
        self
    }

    /// Tokens per window for every key, set by hand (headers do not change it). Default:
    /// unknown until a header says it.
    pub fn tokens_per_window(mut self, tokens: u64) -> Self {
        self.tokens_per_window = Some(tokens);
        self
    }

    /// Adds a listener for every event of this governor.
    pub fn on_event(mut self, listener: impl Listener<QuotaEvent>) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Keeps the budgets in `store`, shared by every governor of the same name on it: N
    /// replicas together stay within one quota. See the [module docs](self#many-replicas-one-quota).
    #[cfg(feature = "shared-state")]
    #[cfg_attr(docsrs, doc(cfg(feature = "shared-state")))]
    pub fn shared_state(mut self, store: impl crate::shared_state::QuotaStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Checks every value and builds the governor.
    pub fn build(self) -> Result<Quota<K>, ConfigError> {
        let check = Check {
            component: &self.name,
        };
        let window = check.duration("window", self.window, Duration::from_secs(1), MAX_DURATION)?;
        let max_wait = check.duration("max_wait", self.max_wait, Duration::ZERO, MAX_DURATION)?;
        let max_keys = check.range_u64("max_keys", self.max_keys as u64, 1, 1_000_000)? as usize;
        let default_pause = check.duration(
            "default_pause",
            self.default_pause,
            Duration::from_millis(1),
            MAX_DURATION,
        )?;
        if let Some(r) = self.requests_per_window {
            check.range_u64("requests_per_window", r, 1, u64::MAX)?;
        }
        if let Some(t) = self.tokens_per_window {
            check.range_u64("tokens_per_window", t, 1, u64::MAX)?;
        }
        Ok(Quota {
            shared: Arc::new(Shared {
                name: self.name,
                window,
                max_wait,
                max_keys,
                default_pause,
                requests_per_window: self.requests_per_window,
                tokens_per_window: self.tokens_per_window,
                keys: Mutex::new(HashMap::new()),
                listeners: self.listeners,
                #[cfg(feature = "shared-state")]
                store: self.store,
            }),
        })
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

impl<K> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, KeyState>> {
        // No code panics while holding the lock; a poisoned map still holds valid budgets.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq + Clone + fmt::Display + Send + 'static> Shared<K> {
    fn new_key(&self, now: Instant) -> KeyState {
        let mut state = KeyState {
            requests: Bucket::unlimited(now),
            tokens: Bucket::unlimited(now),
            manual_requests: false,
            manual_tokens: false,
            paused_until: None,
            ledger: Ledger::default(),
            synced: [None, None],
            last_used: now,
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

    fn with_key<R>(&self, key: &K, now: Instant, f: impl FnOnce(&mut KeyState) -> R) -> R {
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
    fn with_known_key<R>(
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

    fn key_name(key: &K) -> Arc<str> {
        Arc::from(key.to_string())
    }

    /// True when the budgets are kept in a store: the local levels are then not charged.
    fn local_levels(&self) -> bool {
        #[cfg(feature = "shared-state")]
        if self.store.is_some() {
            return false;
        }
        true
    }

    /// Admits a call locally: its share is taken now and it waits `wait`, or it is refused.
    pub(crate) fn admit_local(
        &self,
        key: &K,
        tokens: u64,
        max_wait: Duration,
    ) -> Result<Admitted, QuotaExceeded> {
        let now = Instant::now();
        let tokens = tokens as f64;
        let decided = self.with_key(key, now, |state| {
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
                self.listeners.emit(|| QuotaEvent::Admitted {
                    name: self.name.clone(),
                    key: Self::key_name(key),
                    wait: admitted.wait,
                });
                Ok(admitted)
            }
            Err((retry_after, budget)) => Err(self.rejected(key, retry_after, budget)),
        }
    }

    fn rejected(&self, key: &K, retry_after: Duration, budget: Exhausted) -> QuotaExceeded {
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
    /// its turn has come; refused when it would go after `deadline`.
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
            let (behind_requests, behind_tokens) = state.ledger.since(mark);
            let mut waits = [(pause, Exhausted::Paused); 3];
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
        if now + wait > deadline {
            return Err(self.rejected(key, wait, budget));
        }
        Ok(wait)
    }

    /// The call admitted at `mark` is charged `requests` and `tokens` more (negative: less):
    /// a refund, a 429, the usage reported. A level that a report of this call or a later one
    /// has set counts the real charge already, and does not move.
    fn change(&self, key: &K, mark: &Mark, requests: f64, tokens: f64) {
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
    }

    /// The call admitted at `mark` is gone (answered and dropped, or cancelled).
    fn release(&self, key: &K, mark: &Mark) {
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
        if let Some((requests, tokens)) = learned {
            self.listeners.emit(|| QuotaEvent::LimitsLearned {
                name: self.name.clone(),
                key: Self::key_name(key),
                requests,
                tokens,
            });
        }
        if let Some(pause) = pause {
            tracing::debug!(quota = %self.name, key = %key, pause_ms = pause.as_millis() as u64, "rate limited: key paused");
            self.listeners.emit(|| QuotaEvent::RateLimited {
                name: self.name.clone(),
                key: Self::key_name(key),
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
    }

    /// Admits a call, through the store when there is one.
    async fn admit_async(
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

/// A call admitted and waiting for its turn: its share is given back if it is dropped before
/// [`into_permit`](Pending::into_permit).
pub(crate) struct Pending<K: Hash + Eq + Clone + fmt::Display + Send + 'static> {
    shared: Arc<Shared<K>>,
    key: Option<K>,
    tokens: u64,
    admitted: Admitted,
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
    quota: Quota<K>,
    /// Always `Some` (an `Option` only to share `Pending`'s drop logic).
    key: Option<K>,
    mark: Mark,
    tokens: u64,
    /// What the call is charged now: the estimate, or the usage reported.
    charged: f64,
    reconciled: bool,
    /// A 429 gave the tokens back (once).
    given_back: AtomicBool,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(max_wait: Duration) -> Quota<&'static str> {
        Quota::builder("q")
            .max_wait(max_wait)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_limits_admit_everything() {
        let q = quota(Duration::ZERO);
        for _ in 0..1000 {
            let _p = q.acquire(&"k", 1_000_000).await.expect("no limit known");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_its_turn_within_max_wait_and_is_rejected_beyond() {
        let q = quota(Duration::from_secs(2));
        q.set_limits(&"k", Some(60), Some(600));
        let start = Instant::now();
        // 600 tokens: the whole token budget.
        let _p = q.acquire(&"k", 600).await.expect("fits");
        assert_eq!(start.elapsed(), Duration::ZERO);
        // 10 more tokens: 1 s of refill.
        let _p = q.acquire(&"k", 10).await.expect("fits in 1 s");
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // 30 more: 3 s, beyond max_wait.
        let err = q.acquire(&"k", 30).await.expect_err("too long a wait");
        assert_eq!(err.budget(), Exhausted::Tokens);
        assert_eq!(err.retry_after(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiting_call_gives_its_share_back() {
        let q = quota(Duration::from_secs(60));
        q.set_limits(&"k", Some(1), None);
        let _first = q.acquire(&"k", 0).await.expect("fits");
        {
            let waiting = q.acquire(&"k", 0);
            let _ = tokio::time::timeout(Duration::from_secs(1), waiting).await;
        }
        let snap = q.snapshot(&"k").expect("known");
        // One second of refill, and nothing owed.
        assert!(
            (snap.requests_available - 1.0 / 60.0).abs() < 1e-9,
            "{snap:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn headers_set_limits_and_count_calls_the_provider_had_not_seen() {
        let q = quota(Duration::ZERO);
        let first = q.acquire(&"k", 100).await.expect("fits");
        let _second = q.acquire(&"k", 100).await.expect("fits");
        // The provider saw the first call only: 1,000 - 100 left.
        first.observe(&RateLimits {
            requests: Budget::new(Some(10), Some(9), None),
            tokens: Budget::new(Some(1_000), Some(900), None),
            ..RateLimits::default()
        });
        let snap = q.snapshot(&"k").expect("known");
        assert_eq!(snap.requests_limit, Some(10));
        assert_eq!(snap.requests_available, 8.0);
        assert_eq!(snap.tokens_available, 800.0);
    }

    #[tokio::test(start_paused = true)]
    async fn usage_corrects_the_estimate() {
        let q = quota(Duration::ZERO);
        q.set_limits(&"k", None, Some(1_000));
        let mut permit = q.acquire(&"k", 500).await.expect("fits");
        permit.record_usage(100);
        permit.record_usage(900); // ignored: once only
        assert_eq!(q.snapshot(&"k").expect("known").tokens_available, 900.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_the_key_for_the_wait_asked() {
        let q = quota(Duration::from_secs(1));
        let permit = q.acquire(&"k", 0).await.expect("fits");
        permit.rate_limited(&RateLimits {
            retry_after: Some(Duration::from_secs(5)),
            ..RateLimits::default()
        });
        let err = q.acquire(&"k", 0).await.expect_err("paused");
        assert_eq!(err.budget(), Exhausted::Paused);
        assert_eq!(err.retry_after(), Duration::from_secs(5));
        // Other keys are not paused.
        let _other = q.acquire(&"other", 0).await.expect("not paused");
    }

    #[test]
    fn bad_config_names_the_field() {
        let err = Quota::<u8>::builder("q")
            .window(Duration::ZERO)
            .build()
            .expect_err("zero window");
        assert_eq!(err.field(), "window");
        let err = Quota::<u8>::builder("q")
            .requests_per_window(0)
            .build()
            .expect_err("zero limit");
        assert_eq!(err.field(), "requests_per_window");
    }

    fn tokens(remaining: u64) -> RateLimits {
        RateLimits {
            tokens: Budget::new(Some(1_000), Some(remaining), None),
            ..RateLimits::default()
        }
    }

    /// Issue "Correctness, round two", 2: A (500) and B (500) wait on a spent budget of 1,000
    /// tokens; A is cancelled; B's answer reports 500 left, and the governor believes 500.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_gives_back_exactly_its_share() {
        use std::future::Future;
        use std::task::{Context, Waker};
        let q = quota(Duration::from_secs(120));
        q.set_limits(&"k", None, Some(1_000));
        let _all = q.acquire(&"k", 1_000).await.expect("fits");
        let mut cx = Context::from_waker(Waker::noop());
        let mut a = Box::pin(q.acquire(&"k", 500));
        let mut b = Box::pin(q.acquire(&"k", 500));
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        drop(a);
        let b = b.await.expect("admitted");
        b.observe(&tokens(500));
        let believed = q.snapshot(&"k").expect("known").tokens_available;
        assert!((believed - 500.0).abs() < 1e-6, "believes {believed}");
    }

    /// Issue "Correctness, round two", 3b: the provider charged nothing for a 429, so its
    /// estimate goes back, and a later report of an earlier call does not take it again.
    #[tokio::test(start_paused = true)]
    async fn what_a_429_did_not_cost_goes_back_to_the_budget() {
        let q = quota(Duration::from_secs(1));
        q.set_limits(&"k", None, Some(1_000));
        let earlier = q.acquire(&"k", 300).await.expect("fits");
        let limited = q.acquire(&"k", 400).await.expect("fits");
        limited.rate_limited(&RateLimits {
            retry_after: Some(Duration::from_millis(1)),
            ..tokens(700)
        });
        limited.rate_limited(&tokens(700)); // once only
        assert_eq!(q.snapshot(&"k").expect("known").tokens_available, 700.0);
        // The provider charged the earlier call alone.
        earlier.observe(&tokens(700));
        assert_eq!(q.snapshot(&"k").expect("known").tokens_available, 700.0);
    }

    /// The usage an answer reports and its `remaining` count the call once, in either order.
    #[tokio::test(start_paused = true)]
    async fn usage_and_remaining_count_a_call_once_in_either_order() {
        for usage_first in [true, false] {
            let q = quota(Duration::ZERO);
            q.set_limits(&"k", None, Some(1_000));
            let mut permit = q.acquire(&"k", 500).await.expect("fits");
            // The provider charged what the call used: 100.
            if usage_first {
                permit.record_usage(100);
                permit.observe(&tokens(900));
            } else {
                permit.observe(&tokens(900));
                permit.record_usage(100);
            }
            let snap = q.snapshot(&"k").expect("known");
            assert_eq!(snap.tokens_available, 900.0, "usage first: {usage_first}");
        }
    }

    /// One step of [`the_governor_follows_a_reference_model`].
    #[derive(Debug, Clone)]
    enum Step {
        /// A call estimated at `estimate` tokens that uses `used` (at most the estimate, as
        /// the providers' own estimates, prompt plus `max_tokens`, are), and whose answer says
        /// so or not.
        Admit {
            estimate: u64,
            used: u64,
            reports_usage: bool,
        },
        /// The waiting call at this position (modulo their number) is cancelled.
        Cancel(usize),
        /// The oldest waiting call goes out; the provider charges it, or answers 429.
        Send,
        /// The answer of the call in flight at this position arrives.
        Answer(usize),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (1u64..400, 0u64..=100, any::<bool>()).prop_map(|(estimate, pct, reports_usage)| {
                Step::Admit { estimate, used: estimate * pct / 100, reports_usage }
            }),
            1 => any::<usize>().prop_map(Step::Cancel),
            3 => Just(Step::Send),
            3 => any::<usize>().prop_map(Step::Answer),
        ]
    }

    struct ModelCall {
        pending: Option<Pending<&'static str>>,
        permit: Option<QuotaPermit<&'static str>>,
        estimate: f64,
        /// What the provider charges it: what it used when the answer says, else the estimate.
        charge: f64,
        reports_usage: bool,
        /// Once sent: the provider's levels after it, and whether it was a 429.
        answer: Option<([f64; 2], bool)>,
    }

    proptest::proptest! {
        /// Issue "Correctness, round two", 2: any interleaving of admissions, cancellations,
        /// answers with and without usage and 429s keeps the governor's levels equal to a
        /// reference model, and never above what the provider last reported remaining. The
        /// model: the provider's levels, less the shares of the calls still waiting, less what
        /// the calls in flight were estimated above their charge, except for those admitted
        /// before the latest call answered (whose report counted their real charge). Time
        /// stands still: no refill.
        #[test]
        fn the_governor_follows_a_reference_model(
            steps in proptest::collection::vec(step(), 1..120),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("a runtime");
            let _guard = runtime.enter();
            let q = Quota::<&'static str>::builder("model")
                .max_wait(Duration::from_secs(24 * 3600))
                .requests_per_window(10_000)
                .tokens_per_window(2_000)
                .build()
                .expect("valid");
            let shared = q.shared.clone();
            let mut provider = [10_000.0f64, 2_000.0];
            let mut calls: Vec<ModelCall> = Vec::new();
            // The latest call (in admission order) whose answer was read.
            let mut synced = None;
            for step in steps {
                let mut reported = None;
                match step {
                    Step::Admit { estimate, used, reports_usage } => {
                        let admitted = shared.admit_local(&"k", estimate, shared.max_wait);
                        let admitted = admitted.expect("a day's wait is enough");
                        let pending = Pending::new(shared.clone(), "k", estimate, admitted);
                        calls.push(ModelCall {
                            pending: Some(pending),
                            permit: None,
                            estimate: estimate as f64,
                            charge: if reports_usage { used as f64 } else { estimate as f64 },
                            reports_usage,
                            answer: None,
                        });
                    }
                    Step::Cancel(i) => {
                        let waiting: Vec<usize> =
                            (0..calls.len()).filter(|&i| calls[i].pending.is_some()).collect();
                        if !waiting.is_empty() {
                            calls[waiting[i % waiting.len()]].pending = None;
                        }
                    }
                    Step::Send => {
                        if let Some(call) = calls.iter_mut().find(|c| c.pending.is_some()) {
                            let pending = call.pending.take().expect("waiting");
                            call.permit = Some(pending.into_permit());
                            // Every call counts as a request (providers count 429s too).
                            provider[0] -= 1.0;
                            let fits = provider[1] >= call.charge;
                            if fits {
                                provider[1] -= call.charge;
                            }
                            call.answer = Some((provider, !fits));
                        }
                    }
                    Step::Answer(i) => {
                        let in_flight: Vec<usize> =
                            (0..calls.len()).filter(|&i| calls[i].permit.is_some()).collect();
                        if !in_flight.is_empty() {
                            let index = in_flight[i % in_flight.len()];
                            synced = synced.max(Some(index));
                            let call = &mut calls[index];
                            let mut permit = call.permit.take().expect("in flight");
                            let (levels, rate_limited) = call.answer.expect("sent");
                            let limits = RateLimits {
                                requests: Budget::new(Some(10_000), Some(levels[0] as u64), None),
                                tokens: Budget::new(Some(2_000), Some(levels[1] as u64), None),
                                retry_after: Some(Duration::from_secs(1)),
                                ..RateLimits::default()
                            };
                            let usage = (call.reports_usage && !rate_limited)
                                .then_some(call.charge as u64);
                            permit.answered(
                                &Observation::limits(limits).rate_limited(rate_limited).usage(usage),
                            );
                            call.answer = None;
                            call.estimate = 0.0;
                            call.charge = 0.0;
                            reported = Some(levels);
                        }
                    }
                }
                let mut model = provider;
                for (index, call) in calls.iter().enumerate() {
                    if call.pending.is_some() {
                        model[0] -= 1.0;
                        model[1] -= call.estimate;
                    } else if synced.is_some_and(|s| index < s) {
                        // Reported on by a later call's answer.
                    } else if let Some((_, rate_limited)) = call.answer {
                        let charged = if rate_limited { 0.0 } else { call.charge };
                        model[1] -= call.estimate - charged;
                    }
                }
                let governor = q
                    .snapshot(&"k")
                    .map_or([10_000.0, 2_000.0], |s| [s.requests_available, s.tokens_available]);
                proptest::prop_assert_eq!(governor, model);
                if let Some(reported) = reported {
                    proptest::prop_assert!(governor[0] <= reported[0] && governor[1] <= reported[1]);
                }
            }
        }
    }
}
