//! [`QuotaSettings`]: a quota's settings.

use super::{SettingsError, duration};
use crate::quota::{Builder, Quota};
use serde::Deserialize;
use std::fmt;
use std::hash::Hash;
use std::time::Duration;

/// The settings of a [`Quota`], one key per setter of its [`Builder`]; a key left out keeps
/// the builder's value.
///
/// ```toml
/// window = "60s"
/// requests_per_window = 500
/// tokens_per_window = 200000
/// max_wait = "10s"
/// ```
///
/// Not in the file: listeners and the shared store (code, set on the builder).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct QuotaSettings {
    /// [`Builder::window`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub window: Option<Duration>,
    /// [`Builder::max_wait`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub max_wait: Option<Duration>,
    /// [`Builder::max_keys`].
    pub max_keys: Option<usize>,
    /// [`Builder::default_pause`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub default_pause: Option<Duration>,
    /// [`Builder::requests_per_window`].
    pub requests_per_window: Option<u64>,
    /// [`Builder::tokens_per_window`].
    pub tokens_per_window: Option<u64>,
}

impl QuotaSettings {
    /// Calls the builder's setter for every key that is set.
    pub fn apply<K>(&self, mut builder: Builder<K>) -> Builder<K>
    where
        K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    {
        if let Some(window) = self.window {
            builder = builder.window(window);
        }
        if let Some(wait) = self.max_wait {
            builder = builder.max_wait(wait);
        }
        if let Some(keys) = self.max_keys {
            builder = builder.max_keys(keys);
        }
        if let Some(pause) = self.default_pause {
            builder = builder.default_pause(pause);
        }
        if let Some(requests) = self.requests_per_window {
            builder = builder.requests_per_window(requests);
        }
        if let Some(tokens) = self.tokens_per_window {
            builder = builder.tokens_per_window(tokens);
        }
        builder
    }

    /// Applies the settings to `builder` and builds the quota; a value the builder rejects is
    /// an error at `path` and the builder's field.
    pub fn build<K>(&self, path: &str, builder: Builder<K>) -> Result<Quota<K>, SettingsError>
    where
        K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    {
        self.apply(builder)
            .build()
            .map_err(|err| SettingsError::config(path, err.field(), err))
    }
}
