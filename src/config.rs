//! Configuration errors shared by every builder in the crate.

use std::fmt;

/// A builder value that is out of range, or a combination of values that cannot work.
///
/// The error names the field, the value that was given and the range that is allowed, so that
/// a configuration read from a file can be reported to an operator as it is.
///
/// ```
/// use tower_breaker::circuit_breaker::CircuitBreaker;
///
/// let err = CircuitBreaker::builder("openai")
///     .failure_rate_threshold(1.5)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "failure_rate_threshold");
/// assert_eq!(
///     err.to_string(),
///     "invalid `failure_rate_threshold` for `openai`: 1.5 (allowed: 0.0 < x <= 1.0)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    component: String,
    field: &'static str,
    value: String,
    allowed: String,
}

impl ConfigError {
    /// A new error for `field` of the component named `component`.
    pub fn new(
        component: impl Into<String>,
        field: &'static str,
        value: impl fmt::Debug,
        allowed: impl Into<String>,
    ) -> Self {
        Self {
            component: component.into(),
            field,
            value: format!("{value:?}"),
            allowed: allowed.into(),
        }
    }

    /// The name of the component (breaker, bulkhead, ...) whose configuration is wrong.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// The builder field that is wrong, as it is named in the builder.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The value that was given, formatted with `Debug`.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The allowed range, or the rule the combination breaks.
    pub fn allowed(&self) -> &str {
        &self.allowed
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid `{}` for `{}`: {} (allowed: {})",
            self.field, self.component, self.value, self.allowed
        )
    }
}

impl std::error::Error for ConfigError {}

/// Checks shared by the builders. Each returns the value when it is in range.
pub(crate) struct Check<'a> {
    pub(crate) component: &'a str,
}

impl Check<'_> {
    pub(crate) fn range_u64(
        &self,
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(
                self.component,
                field,
                value,
                format!("{min} ..= {max}"),
            ))
        }
    }

    /// A rate in `(0.0, 1.0]`.
    pub(crate) fn rate(&self, field: &'static str, value: f64) -> Result<f64, ConfigError> {
        if value > 0.0 && value <= 1.0 {
            Ok(value)
        } else {
            Err(ConfigError::new(
                self.component,
                field,
                value,
                "0.0 < x <= 1.0",
            ))
        }
    }

    pub(crate) fn duration(
        &self,
        field: &'static str,
        value: std::time::Duration,
        min: std::time::Duration,
        max: std::time::Duration,
    ) -> Result<std::time::Duration, ConfigError> {
        if value >= min && value <= max {
            Ok(value)
        } else {
            Err(ConfigError::new(
                self.component,
                field,
                value,
                format!("{min:?} ..= {max:?}"),
            ))
        }
    }
}

/// The longest duration any builder accepts: longer than this is a unit mistake.
pub(crate) const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
/// The shortest duration any builder accepts for waits and windows.
pub(crate) const MIN_DURATION: std::time::Duration = std::time::Duration::from_millis(1);
