//! Settings from files and the environment (feature `serde`).
//!
//! Every builder's settings deserialise through plain `serde`, so TOML, YAML, JSON, `figment`
//! and `config` all work, and go through the builders' own validation: a bad value is an
//! error that names its path in the file, never a panic or a silent default.
//!
//! - One settings struct per builder, one key per setter, each key optional: a key left
//!   out keeps the builder's value (its default, or a preset's). Unknown keys are errors.
//! - Durations are strings with a unit: `"30s"`, `"250ms"`, `"1m"`, `"1.5s"`
//!   ([`parse_duration`]). A bare number, a negative or an unknown unit is an error.
//! - Each settings struct has `apply(builder)`, which calls the setters, and
//!   `build(path, builder)`, which also builds and turns the builder's
//!   [`ConfigError`](crate::ConfigError) into a [`SettingsError`] at `path` and the field.
//!   What is code rather than data (listeners, classifiers, closures, shared stores) is set
//!   on the builder you pass in.
//! - [`deserialize`] reads any serde format and names the path of a wrong type or an unknown
//!   key: `openai.breaker.minimum_calls: invalid type: string "ten", expected u32`.
//!
//! | builder | settings |
//! |---|---|
//! | [`CircuitBreaker::builder`](crate::circuit_breaker::CircuitBreaker::builder) | [`BreakerSettings`] |
//! | [`Bulkhead::builder`](crate::bulkhead::Bulkhead::builder) | [`BulkheadSettings`] |
//! | `RetryPolicy::builder` (feature `retry`) | `RetrySettings` |
//! | `StandardResilience::builder` and its `.http()`, `.reqwest()`, `.llm()` presets (feature `stack`) | `StackSettings` |
//! | `Quota::builder` (feature `quota`) | `QuotaSettings` |
//! | `StreamGuardLayer::builder`, `Hedge::builder` (feature `stream`) | `StreamGuardSettings`, `HedgeSettings` |
//! | `ChaosLayer::builder`, `ChaosLayer::http` (feature `chaos`) | `ChaosSettings` |
//!
//! ```
//! use serde::Deserialize;
//! use tower_breaker::circuit_breaker::CircuitBreaker;
//! use tower_breaker::settings::{self, BreakerSettings, BulkheadSettings};
//! use tower_breaker::bulkhead::Bulkhead;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     breaker: BreakerSettings,
//!     bulkhead: BulkheadSettings,
//! }
//!
//! let json = r#"{
//!     "breaker": { "sliding_window": { "kind": "count", "calls": 20 }, "wait_in_open": "30s" },
//!     "bulkhead": { "max_concurrent": 8 }
//! }"#;
//! let config: Config = settings::deserialize(&mut serde_json::Deserializer::from_str(json))?;
//! let breaker = config.breaker.build("breaker", CircuitBreaker::builder("search"))?;
//! let bulkhead = config.bulkhead.build("bulkhead", Bulkhead::builder("search"))?;
//! # let _ = (breaker, bulkhead);
//!
//! let typo = r#"{ "breaker": { "minimum_cals": 5 }, "bulkhead": {} }"#;
//! let err = settings::deserialize::<Config, _>(&mut serde_json::Deserializer::from_str(typo))
//!     .err()
//!     .unwrap();
//! assert_eq!(err.path(), "breaker.minimum_cals");
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! The [settings guide](crate::guide::settings) shows a whole file, the environment, and
//! the errors.

mod breaker;
mod bulkhead;
#[cfg(feature = "chaos")]
mod chaos;
mod duration;
mod error;
#[cfg(feature = "quota")]
mod quota;
#[cfg(feature = "retry")]
mod retry;
#[cfg(feature = "stack")]
mod stack;
#[cfg(feature = "stream")]
mod stream;

pub use self::breaker::{
    BreakerSettings, GrowthSettings, LoadAwareSettings, TierSettings, WindowSettings,
};
pub use self::bulkhead::BulkheadSettings;
#[cfg(feature = "chaos")]
#[cfg_attr(docsrs, doc(cfg(feature = "chaos")))]
pub use self::chaos::{ChaosSettings, FaultSettings};
pub use self::duration::parse_duration;
pub use self::error::SettingsError;
#[cfg(feature = "quota")]
#[cfg_attr(docsrs, doc(cfg(feature = "quota")))]
pub use self::quota::QuotaSettings;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub use self::retry::{
    BackoffKind, BackoffSettings, BudgetSettings, JitterSettings, RetrySettings,
};
#[cfg(feature = "stack")]
#[cfg_attr(docsrs, doc(cfg(feature = "stack")))]
pub use self::stack::StackSettings;
#[cfg(feature = "stream")]
#[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
pub use self::stream::{HedgeDelaySettings, HedgeSettings, RulesSettings, StreamGuardSettings};

/// Deserialises `T` from any serde `deserializer`, and names the path of a wrong type, an
/// unknown key or a bad duration in the error (serde alone gives no path, toml only a line).
///
/// ```
/// use tower_breaker::settings::{self, BulkheadSettings};
///
/// let json = r#"{ "max_wait": "-2s" }"#;
/// let err = settings::deserialize::<BulkheadSettings, _>(
///     &mut serde_json::Deserializer::from_str(json),
/// )
/// .unwrap_err();
/// assert_eq!(err.path(), "max_wait");
/// assert!(err.to_string().contains("negative"));
/// ```
pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, SettingsError>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        // `serde_path_to_error` writes the root as ".".
        let path = if path == "." { String::new() } else { path };
        SettingsError::format(path, err.into_inner().to_string())
    })
}
