//! [`StackSettings`]: the settings of a [`StandardResilience`] stack.

use super::error::join;
use super::retry::key_of;
use super::{BreakerSettings, BulkheadSettings, RetrySettings, SettingsError, duration};
use crate::stack::{Builder, StandardResilience};
use serde::Deserialize;
use std::time::Duration;

/// The settings of a [`StandardResilience`] stack: its two timeouts and a table for each
/// part. Apply them to the preset of your choice (`StandardResilience::builder(name)`, or
/// its `.http()`, `.reqwest()` or `.llm()` flavour): a key left out keeps the preset's value.
///
/// ```toml
/// [openai]
/// total_timeout = "120s"
/// attempt_timeout = "30s"
///
/// [openai.retry]
/// max_attempts = 2
///
/// [openai.breaker]
/// failure_rate_threshold = 0.5
/// minimum_calls = 20
///
/// [openai.bulkhead]
/// max_concurrent = 64
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StackSettings {
    /// [`Builder::total_timeout`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub total_timeout: Option<Duration>,
    /// [`Builder::attempt_timeout`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub attempt_timeout: Option<Duration>,
    /// [`Builder::configure_retry`].
    #[serde(default)]
    pub retry: RetrySettings,
    /// [`Builder::configure_breaker`].
    #[serde(default)]
    pub breaker: BreakerSettings,
    /// [`Builder::configure_bulkhead`].
    #[serde(default)]
    pub bulkhead: BulkheadSettings,
}

impl StackSettings {
    /// Calls the stack builder's setters, and each part's, for every key that is set;
    /// `path` is where these settings sit in the file (`"openai"`).
    pub fn apply<C, P, R, I>(
        &self,
        path: &str,
        mut builder: Builder<C, P, R, I>,
    ) -> Result<Builder<C, P, R, I>, SettingsError> {
        self.breaker.check(&join(path, "breaker"))?;
        if let Some(timeout) = self.total_timeout {
            builder = builder.total_timeout(timeout);
        }
        if let Some(timeout) = self.attempt_timeout {
            builder = builder.attempt_timeout(timeout);
        }
        let backoff = self.retry.check(&join(path, "retry"))?;
        Ok(builder
            .configure_retry(|retry| self.retry.set(retry, backoff))
            .configure_breaker(|breaker| self.breaker.apply(breaker))
            .configure_bulkhead(|bulkhead| self.bulkhead.apply(bulkhead)))
    }

    /// Applies the settings to `builder` and builds the stack; a value a builder rejects is
    /// an error at its path (`openai.breaker.failure_rate_threshold`).
    ///
    /// ```
    /// use tower_breaker::settings::{self, StackSettings};
    /// use tower_breaker::stack::StandardResilience;
    ///
    /// let json = r#"{ "breaker": { "minimum_calls": 0 } }"#;
    /// let settings: StackSettings =
    ///     settings::deserialize(&mut serde_json::Deserializer::from_str(json))?;
    /// let err = settings.build("search", StandardResilience::builder("search")).unwrap_err();
    /// assert_eq!(err.path(), "search.breaker.minimum_calls");
    /// # Ok::<_, tower_breaker::settings::SettingsError>(())
    /// ```
    pub fn build<C, P, R, I>(
        &self,
        path: &str,
        builder: Builder<C, P, R, I>,
    ) -> Result<StandardResilience<C, P, R, I>, SettingsError> {
        self.apply(path, builder)?
            .build()
            .map_err(|err| SettingsError::config(path, &stack_key_of(err.field()), err))
    }
}

/// Where a stack builder's error `field` is written in [`StackSettings`]: the stack's own
/// checks name `total_timeout`, `attempt_timeout` or `breaker.sliding_window`; the parts'
/// fields are told apart by name (they share none).
fn stack_key_of(field: &str) -> String {
    match field {
        "total_timeout" | "attempt_timeout" => field.to_string(),
        _ if field.starts_with("breaker.") => field.to_string(),
        "max_concurrent" | "max_queue" | "max_wait" => format!("bulkhead.{field}"),
        _ if is_retry_field(field) => format!("retry.{}", key_of(field)),
        _ => format!("breaker.{field}"),
    }
}

/// The fields a retry builder's `ConfigError` may name (for a stack to tell its parts
/// apart). The settings test `stack_errors_name_the_part` holds this list to the builders.
fn is_retry_field(field: &str) -> bool {
    matches!(
        field,
        "max_attempts"
            | "base_delay"
            | "max_delay"
            | "factor"
            | "step"
            | "jitter"
            | "deadline"
            | "reserve_for_last_attempt"
            | "max_server_delay"
            | "wait_out_cool_downs"
    ) || field.starts_with("budget")
}
