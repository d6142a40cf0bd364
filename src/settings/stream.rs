//! [`StreamGuardSettings`] and [`HedgeSettings`]: the settings of the streaming guards.

use super::error::join;
use super::{SettingsError, duration};
use crate::stream::{
    Hedge, HedgeBuilder, HedgeDelay, SseRules, StreamGuardBuilder, StreamGuardLayer,
};
use serde::Deserialize;
use std::time::Duration;

/// The settings of a [`StreamGuardLayer`], one key per setter of its [`StreamGuardBuilder`].
///
/// ```toml
/// name = "anthropic"
/// first_token_timeout = "10s"
/// idle_timeout = "30s"
/// rules = "anthropic"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StreamGuardSettings {
    /// [`StreamGuardBuilder::name`].
    pub name: Option<String>,
    /// [`StreamGuardBuilder::first_token_timeout`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub first_token_timeout: Option<Duration>,
    /// [`StreamGuardBuilder::idle_timeout`].
    #[serde(default, deserialize_with = "duration::optional")]
    pub idle_timeout: Option<Duration>,
    /// [`StreamGuardBuilder::rules`], by name (rules of your own are code).
    pub rules: Option<RulesSettings>,
    /// [`StreamGuardBuilder::respond_at_first_token`].
    pub respond_at_first_token: Option<bool>,
}

/// The ready-made [`SseRules`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RulesSettings {
    /// [`SseRules::openai`].
    Openai,
    /// [`SseRules::anthropic`].
    Anthropic,
    /// [`SseRules::any_data`].
    AnyData,
}

impl RulesSettings {
    /// The rules.
    pub fn to_rules(self) -> SseRules {
        match self {
            RulesSettings::Openai => SseRules::openai(),
            RulesSettings::Anthropic => SseRules::anthropic(),
            RulesSettings::AnyData => SseRules::any_data(),
        }
    }
}

impl StreamGuardSettings {
    /// Calls the builder's setter for every key that is set.
    pub fn apply(&self, mut builder: StreamGuardBuilder) -> StreamGuardBuilder {
        if let Some(name) = &self.name {
            builder = builder.name(name.as_str());
        }
        if let Some(deadline) = self.first_token_timeout {
            builder = builder.first_token_timeout(deadline);
        }
        if let Some(idle) = self.idle_timeout {
            builder = builder.idle_timeout(idle);
        }
        if let Some(rules) = self.rules {
            builder = builder.rules(rules.to_rules());
        }
        if let Some(yes) = self.respond_at_first_token {
            builder = builder.respond_at_first_token(yes);
        }
        builder
    }

    /// Applies the settings to `builder` and builds the layer; a value the builder rejects is
    /// an error at `path` and the builder's field.
    pub fn build(
        &self,
        path: &str,
        builder: StreamGuardBuilder,
    ) -> Result<StreamGuardLayer, SettingsError> {
        self.apply(builder)
            .build()
            .map_err(|err| SettingsError::config(path, err.field(), err))
    }
}

/// The settings of a [`Hedge`], one key per setter of its [`HedgeBuilder`].
///
/// ```toml
/// delay = { quantile = 0.95, floor = "200ms", cap = "3s" }   # or { fixed = "1s" }
/// budget = 0.1
/// budget_burst = 10
/// hedge_non_idempotent = true
/// ```
///
/// Not in the file: which requests are idempotent and the target's breaker (code, set on the
/// builder).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HedgeSettings {
    /// [`HedgeBuilder::delay`].
    pub delay: Option<HedgeDelaySettings>,
    /// [`HedgeBuilder::budget`].
    pub budget: Option<f64>,
    /// [`HedgeBuilder::budget_burst`].
    pub budget_burst: Option<u32>,
    /// [`HedgeBuilder::hedge_non_idempotent`].
    pub hedge_non_idempotent: Option<bool>,
}

/// A [`HedgeDelay`]: `{ fixed = "1s" }` ([`HedgeDelay::fixed`]) or `{ quantile = 0.95,
/// floor = "200ms", cap = "3s" }` ([`HedgeDelay::percentile`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HedgeDelaySettings {
    /// A fixed delay.
    #[serde(default, deserialize_with = "duration::optional")]
    pub fixed: Option<Duration>,
    /// The quantile of the observed latencies.
    pub quantile: Option<f64>,
    /// The shortest percentile delay.
    #[serde(default, deserialize_with = "duration::optional")]
    pub floor: Option<Duration>,
    /// The longest percentile delay.
    #[serde(default, deserialize_with = "duration::optional")]
    pub cap: Option<Duration>,
}

impl HedgeDelaySettings {
    /// The delay, or an error at `path` when the keys mix or miss a kind.
    pub fn to_delay(&self, path: &str) -> Result<HedgeDelay, SettingsError> {
        match (self.fixed, self.quantile, self.floor, self.cap) {
            (Some(fixed), None, None, None) => Ok(HedgeDelay::fixed(fixed)),
            (None, Some(quantile), Some(floor), Some(cap)) => {
                Ok(HedgeDelay::percentile(quantile, floor, cap))
            }
            (Some(_), ..) => Err(SettingsError::invalid(
                join(path, "fixed"),
                "a fixed delay takes no `quantile`, `floor` or `cap`",
            )),
            _ => Err(SettingsError::invalid(
                path.to_string(),
                "give `fixed`, or all of `quantile`, `floor` and `cap`",
            )),
        }
    }
}

impl HedgeSettings {
    /// Calls the builder's setter for every key that is set, after checking the delay's keys;
    /// `path` is where these settings sit in the file.
    pub fn apply<Req>(
        &self,
        path: &str,
        mut builder: HedgeBuilder<Req>,
    ) -> Result<HedgeBuilder<Req>, SettingsError> {
        if let Some(delay) = &self.delay {
            builder = builder.delay(delay.to_delay(&join(path, "delay"))?);
        }
        if let Some(ratio) = self.budget {
            builder = builder.budget(ratio);
        }
        if let Some(hedges) = self.budget_burst {
            builder = builder.budget_burst(hedges);
        }
        if let Some(yes) = self.hedge_non_idempotent {
            builder = builder.hedge_non_idempotent(yes);
        }
        Ok(builder)
    }

    /// Applies the settings to `builder` and builds a hedge on `service` (see
    /// [`HedgeBuilder::build`]); a value the builder rejects is an error at `path` and the
    /// key it was written under.
    pub fn build<S: Clone, Req>(
        &self,
        path: &str,
        builder: HedgeBuilder<Req>,
        service: S,
    ) -> Result<Hedge<S, Req>, SettingsError> {
        self.apply(path, builder)?.build(service).map_err(|err| {
            // A fixed delay's error names `delay`; it is written at `delay.fixed`.
            let fixed = self.delay.is_some_and(|delay| delay.fixed.is_some());
            let key = match err.field() {
                "delay" if fixed => "delay.fixed",
                other => other,
            };
            SettingsError::config(path, key, err)
        })
    }
}
