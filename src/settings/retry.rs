//! [`RetrySettings`]: a retry policy's settings, with its backoff and budget.

use super::SettingsError;
use super::duration;
use super::error::join;
use crate::backoff::{Backoff, Jitter};
use crate::retry::{Builder, RetryBudget, RetryPolicy};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// The settings of a [`RetryPolicy`], one key per setter of its [`Builder`]; a key left out
/// keeps the builder's value (its default, or a preset's such as `.llm()`).
///
/// ```toml
/// max_attempts = 3
/// backoff = { kind = "exponential", base_delay = "500ms", max_delay = "8s", jitter = "full" }
/// budget = { retry_ratio = 0.2, min_retries_per_sec = 10 }
/// max_server_delay = "60s"
/// ```
///
/// Not in the file, because they are code: the classifier and protocol (choose them, or a
/// preset, on the builder given to [`build`](Self::build)), the breaker it watches, a custom
/// RNG and the event listeners.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetrySettings {
    /// [`Builder::max_attempts`].
    pub max_attempts: Option<u32>,
    /// [`Builder::backoff`].
    pub backoff: Option<BackoffSettings>,
    /// [`Builder::deadline`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub deadline: Option<Duration>,
    /// [`Builder::reserve_for_last_attempt`].
    pub reserve_for_last_attempt: Option<f64>,
    /// [`Builder::budget`].
    pub budget: Option<BudgetSettings>,
    /// [`Builder::no_budget`] when `true`.
    #[serde(default)]
    pub no_budget: bool,
    /// [`Builder::max_server_delay`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub max_server_delay: Option<Duration>,
    /// [`Builder::retry_non_idempotent`].
    pub retry_non_idempotent: Option<bool>,
    /// [`Builder::retry_bulkhead_full`].
    pub retry_bulkhead_full: Option<bool>,
    /// [`Builder::seed`].
    pub seed: Option<u64>,
    /// [`Builder::wait_out_cool_downs`].
    pub wait_out_cool_downs: Option<usize>,
}

/// A [`Backoff`]: `kind` (`"constant"`, `"linear"` or `"exponential"`), `base_delay` (the
/// constant delay), `max_delay` (not for `constant`), `factor` (exponential), `step`
/// (linear) and `jitter` (`"none"`, `"full"`, `"equal"`, `"decorrelated"`, or a fraction such
/// as `0.2`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackoffSettings {
    /// The curve.
    pub kind: BackoffKind,
    /// The first delay ([`Backoff::base`]).
    #[serde(deserialize_with = "duration::required")]
    pub base_delay: Duration,
    /// The longest delay ([`Backoff::max_delay`]).
    #[serde(default, deserialize_with = "duration::optional")]
    pub max_delay: Option<Duration>,
    /// [`Backoff::factor`].
    pub factor: Option<f64>,
    /// [`Backoff::step`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub step: Option<Duration>,
    /// [`Backoff::with_jitter`].
    pub jitter: Option<JitterSettings>,
}

/// The curve of a [`BackoffSettings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BackoffKind {
    /// [`Backoff::constant`].
    Constant,
    /// [`Backoff::linear`].
    Linear,
    /// [`Backoff::exponential`].
    Exponential,
}

/// A [`Jitter`]: one of its names, or a number for [`Jitter::Fraction`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterSettings(pub Jitter);

impl<'de> Deserialize<'de> for JitterSettings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JitterVisitor;

        impl Visitor<'_> for JitterVisitor {
            type Value = JitterSettings;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"none\", \"full\", \"equal\", \"decorrelated\" or a fraction")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<JitterSettings, E> {
                let jitter = match value {
                    "none" => Jitter::None,
                    "full" => Jitter::Full,
                    "equal" => Jitter::Equal,
                    "decorrelated" => Jitter::Decorrelated,
                    other => {
                        return Err(E::unknown_variant(
                            other,
                            &["none", "full", "equal", "decorrelated"],
                        ));
                    }
                };
                Ok(JitterSettings(jitter))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<JitterSettings, E> {
                Ok(JitterSettings(Jitter::Fraction(value)))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<JitterSettings, E> {
                self.visit_f64(value as f64)
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<JitterSettings, E> {
                self.visit_f64(value as f64)
            }
        }

        deserializer.deserialize_any(JitterVisitor)
    }
}

/// A [`RetryBudget`]: [`RetryBudget::new`]`(retry_ratio, min_retries_per_sec)`, and
/// [`RetryBudget::ttl`] if given.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BudgetSettings {
    /// Retries as a share of calls.
    pub retry_ratio: f64,
    /// Retries a second allowed whatever the ratio.
    pub min_retries_per_sec: u32,
    /// How long a deposit counts.
    #[serde(default, deserialize_with = "duration::optional")]
    pub ttl: Option<Duration>,
}

impl BackoffSettings {
    /// The backoff, or an error at `path` when a key does not fit the kind.
    pub fn to_backoff(&self, path: &str) -> Result<Backoff, SettingsError> {
        let at = |field: &str| join(path, field);
        let unused = |field: &str, kind: &str| {
            SettingsError::invalid(at(field), format!("not used by a {kind} backoff"))
        };
        let max_delay = || {
            self.max_delay.ok_or_else(|| {
                SettingsError::invalid(at("max_delay"), "required by this kind of backoff")
            })
        };
        let mut backoff = match self.kind {
            BackoffKind::Constant => {
                if self.max_delay.is_some() {
                    return Err(unused("max_delay", "constant"));
                }
                Backoff::constant(self.base_delay)
            }
            BackoffKind::Linear => Backoff::linear(self.base_delay, max_delay()?),
            BackoffKind::Exponential => Backoff::exponential(self.base_delay, max_delay()?),
        };
        match (self.kind, self.factor, self.step) {
            (BackoffKind::Exponential, Some(factor), _) => backoff = backoff.factor(factor),
            (BackoffKind::Linear, _, Some(step)) => backoff = backoff.step(step),
            (_, Some(_), _) => return Err(unused("factor", "non-exponential")),
            (_, _, Some(_)) => return Err(unused("step", "non-linear")),
            _ => {}
        }
        if let Some(JitterSettings(jitter)) = self.jitter {
            backoff = backoff.with_jitter(jitter);
        }
        Ok(backoff)
    }
}

impl RetrySettings {
    /// Calls the builder's setter for every key that is set, after checking the rules of
    /// the settings themselves (a backoff's keys fit its kind; `budget` and `no_budget` are
    /// not both given); `path` is where these settings sit in the file.
    pub fn apply<C, P>(
        &self,
        path: &str,
        builder: Builder<C, P>,
    ) -> Result<Builder<C, P>, SettingsError> {
        let backoff = self.check(path)?;
        Ok(self.set(builder, backoff))
    }

    /// The rules of the settings themselves, and the backoff they give.
    pub(crate) fn check(&self, path: &str) -> Result<Option<Backoff>, SettingsError> {
        if self.budget.is_some() && self.no_budget {
            return Err(SettingsError::invalid(
                join(path, "no_budget"),
                "`budget` and `no_budget = true` exclude each other",
            ));
        }
        self.backoff
            .map(|backoff| backoff.to_backoff(&join(path, "backoff")))
            .transpose()
    }

    /// The setters, once [`check`](Self::check) gave `backoff`.
    pub(crate) fn set<C, P>(
        &self,
        mut builder: Builder<C, P>,
        backoff: Option<Backoff>,
    ) -> Builder<C, P> {
        if let Some(backoff) = backoff {
            builder = builder.backoff(backoff);
        }
        if let Some(attempts) = self.max_attempts {
            builder = builder.max_attempts(attempts);
        }
        if let Some(deadline) = self.deadline {
            builder = builder.deadline(deadline);
        }
        if let Some(fraction) = self.reserve_for_last_attempt {
            builder = builder.reserve_for_last_attempt(fraction);
        }
        if let Some(budget) = self.budget {
            let mut retry_budget = RetryBudget::new(budget.retry_ratio, budget.min_retries_per_sec);
            if let Some(ttl) = budget.ttl {
                retry_budget = retry_budget.ttl(ttl);
            }
            builder = builder.budget(retry_budget);
        }
        if self.no_budget {
            builder = builder.no_budget();
        }
        if let Some(max) = self.max_server_delay {
            builder = builder.max_server_delay(max);
        }
        if let Some(retry) = self.retry_non_idempotent {
            builder = builder.retry_non_idempotent(retry);
        }
        if let Some(retry) = self.retry_bulkhead_full {
            builder = builder.retry_bulkhead_full(retry);
        }
        if let Some(seed) = self.seed {
            builder = builder.seed(seed);
        }
        if let Some(waiting) = self.wait_out_cool_downs {
            builder = builder.wait_out_cool_downs(waiting);
        }
        builder
    }

    /// Applies the settings to `builder` and builds the policy; a value the builder rejects
    /// is an error at `path` and the key it was written under.
    pub fn build<C, P>(
        &self,
        path: &str,
        builder: Builder<C, P>,
    ) -> Result<RetryPolicy<C, P>, SettingsError> {
        self.apply(path, builder)?
            .build()
            .map_err(|err| SettingsError::config(path, &key_of(err.field()), err))
    }
}

/// Where the retry builder's error `field` is written in [`RetrySettings`]: the backoff's
/// fields are in its table, the others (`budget.ttl` too) at the same name.
pub(crate) fn key_of(field: &str) -> String {
    match field {
        "base_delay" | "max_delay" | "factor" | "step" | "jitter" => format!("backoff.{field}"),
        other => other.to_string(),
    }
}
