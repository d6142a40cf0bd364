//! [`BulkheadSettings`]: a bulkhead's settings.

use super::SettingsError;
use super::duration;
use crate::bulkhead::{Builder, Bulkhead};
use serde::Deserialize;
use std::time::Duration;

/// The settings of a [`Bulkhead`], one key per setter of its [`Builder`]; a key left out
/// keeps the builder's value.
///
/// ```toml
/// max_concurrent = 64
/// max_queue = 16
/// max_wait = "2s"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BulkheadSettings {
    /// [`Builder::max_concurrent`].
    pub max_concurrent: Option<u32>,
    /// [`Builder::max_queue`].
    pub max_queue: Option<u32>,
    /// [`Builder::max_wait`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub max_wait: Option<Duration>,
}

impl BulkheadSettings {
    /// Calls the builder's setter for every key that is set.
    pub fn apply(&self, mut builder: Builder) -> Builder {
        if let Some(calls) = self.max_concurrent {
            builder = builder.max_concurrent(calls);
        }
        if let Some(calls) = self.max_queue {
            builder = builder.max_queue(calls);
        }
        if let Some(wait) = self.max_wait {
            builder = builder.max_wait(wait);
        }
        builder
    }

    /// Applies the settings to `builder` and builds the bulkhead; a value the builder rejects
    /// is an error at `path` (where these settings sit in the file) and the builder's field.
    pub fn build(&self, path: &str, builder: Builder) -> Result<Bulkhead, SettingsError> {
        self.apply(builder)
            .build()
            .map_err(|err| SettingsError::config(path, err.field(), err))
    }
}
