//! [`SettingsError`]: what is wrong in a settings file, and where.

use crate::config::ConfigError;
use std::fmt;

/// A settings value that cannot be used, with its path in the file
/// (`openai.breaker.failure_rate_threshold`).
///
/// It comes from one of three places: the file itself (a wrong type, an unknown key, a bad
/// duration), reported by [`deserialize`](super::deserialize); a builder's validation (a
/// [`ConfigError`], kept as [`config_error`](Self::config_error)); or two settings that
/// exclude each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    path: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// The deserializer's message.
    Format(String),
    /// The builder's verdict; the path ends with its field.
    Config(ConfigError),
    /// A rule of the settings themselves.
    Invalid(String),
}

impl SettingsError {
    /// A wrong type, unknown key or bad value found while reading the file at `path`.
    pub(crate) fn format(path: String, message: String) -> Self {
        Self {
            path,
            kind: Kind::Format(message),
        }
    }

    /// A builder's `ConfigError` for the settings at `prefix`; `field` is where in them the
    /// error's field is written.
    pub(crate) fn config(prefix: &str, field: &str, error: ConfigError) -> Self {
        Self {
            path: join(prefix, field),
            kind: Kind::Config(error),
        }
    }

    /// A rule broken by the settings at `path`.
    pub(crate) fn invalid(path: String, message: impl Into<String>) -> Self {
        Self {
            path,
            kind: Kind::Invalid(message.into()),
        }
    }

    /// The path of the value in the file, dotted (`openai.retry.backoff.max_delay`,
    /// `chaos.faults[1].injection_rate`); empty for the whole document.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The builder's error, when a builder rejected the value.
    pub fn config_error(&self) -> Option<&ConfigError> {
        match &self.kind {
            Kind::Config(error) => Some(error),
            _ => None,
        }
    }
}

/// `prefix.field`, or either alone when the other is empty.
pub(crate) fn join(prefix: &str, field: &str) -> String {
    match (prefix.is_empty(), field.is_empty()) {
        (true, _) => field.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{field}"),
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "."
        } else {
            &self.path
        };
        match &self.kind {
            Kind::Format(message) => write!(f, "{path}: {message}"),
            Kind::Config(error) => {
                write!(
                    f,
                    "{path}: {} (allowed: {})",
                    error.value(),
                    error.allowed()
                )
            }
            Kind::Invalid(message) => write!(f, "{path}: {message}"),
        }
    }
}

impl std::error::Error for SettingsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Config(error) => Some(error),
            _ => None,
        }
    }
}
