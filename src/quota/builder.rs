//! [`Builder`]: the settings of a [`Quota`](super::Quota), validated.

use super::shared::Shared;
use super::{Quota, QuotaEvent};
use crate::config::{Check, ConfigError, MAX_DURATION};
use crate::events::{Listener, Listeners};
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Builds a [`Quota`]; see [`Quota::builder`].
pub struct Builder<K> {
    pub(super) name: Arc<str>,
    pub(super) window: Duration,
    pub(super) max_wait: Duration,
    pub(super) max_keys: usize,
    pub(super) default_pause: Duration,
    pub(super) requests_per_window: Option<u64>,
    pub(super) tokens_per_window: Option<u64>,
    pub(super) listeners: Listeners<QuotaEvent>,
    #[cfg(feature = "shared-state")]
    pub(super) store: Option<Arc<dyn crate::shared_state::QuotaStore>>,
    pub(super) _key: std::marker::PhantomData<fn(K)>,
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
    /// replicas together stay within one quota. See the [module docs](super#many-replicas-one-quota).
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
