//! [`ChaosSettings`]: fault injection from a file.

use super::error::join;
use super::{SettingsError, duration};
use crate::chaos::{ChaosBuilder, ChaosLayer, Fault};
use serde::Deserialize;
use std::time::Duration;

/// The settings of a [`ChaosLayer`]: its seed and its faults, each with its injection rate
/// ([`ChaosBuilder::seed`], [`ChaosBuilder::inject`]).
///
/// ```toml
/// seed = 42
/// faults = [
///     { kind = "latency", min = "100ms", max = "2s", injection_rate = 0.2 },
///     { kind = "error", message = "injected", injection_rate = 0.05 },
///     { kind = "status", status = 503, injection_rate = 0.1 },          # feature `http`
///     { kind = "rate_limited", retry_after = "2s", injection_rate = 0.1 },  # feature `http`
/// ]
/// ```
///
/// Not in the file: scripted plans, switches and listeners (code, set on the builder), and
/// the stream faults and custom headers of status faults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ChaosSettings {
    /// [`ChaosBuilder::seed`].
    pub seed: Option<u64>,
    /// [`ChaosBuilder::inject`], in order.
    #[serde(default)]
    pub faults: Vec<FaultSettings>,
}

/// One fault and its injection rate (`0.0 ..= 1.0`), by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum FaultSettings {
    /// [`Fault::error`].
    Error {
        /// The error's message.
        message: String,
        /// The share of requests it is injected into.
        injection_rate: f64,
    },
    /// [`Fault::latency`], or [`Fault::latency_between`] with `max`.
    Latency {
        /// The (shortest) delay.
        #[serde(deserialize_with = "duration::required")]
        min: Duration,
        /// The longest delay.
        #[serde(default, deserialize_with = "duration::optional")]
        max: Option<Duration>,
        /// The share of requests it is injected into.
        injection_rate: f64,
    },
    /// `Fault::status`: an HTTP answer with this status (feature `http`).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    Status {
        /// The status code.
        status: u16,
        /// The share of requests it is injected into.
        injection_rate: f64,
    },
    /// `Fault::rate_limited`: a 429 (feature `http`).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    RateLimited {
        /// The `Retry-After` it carries, if any.
        #[serde(default, deserialize_with = "duration::optional")]
        retry_after: Option<Duration>,
        /// The share of requests it is injected into.
        injection_rate: f64,
    },
}

impl FaultSettings {
    /// The fault and its injection rate.
    pub fn to_fault(&self) -> (Fault, f64) {
        match self {
            FaultSettings::Error {
                message,
                injection_rate,
            } => (Fault::error(message.as_str()), *injection_rate),
            FaultSettings::Latency {
                min,
                max,
                injection_rate,
            } => (
                Fault::latency_between(*min, max.unwrap_or(*min)),
                *injection_rate,
            ),
            #[cfg(feature = "http")]
            FaultSettings::Status {
                status,
                injection_rate,
            } => (Fault::status(*status).into(), *injection_rate),
            #[cfg(feature = "http")]
            FaultSettings::RateLimited {
                retry_after,
                injection_rate,
            } => (Fault::rate_limited(*retry_after).into(), *injection_rate),
        }
    }

    /// Whether only an HTTP layer can inject it.
    #[cfg(feature = "http")]
    fn is_http(&self) -> bool {
        !matches!(
            self,
            FaultSettings::Error { .. } | FaultSettings::Latency { .. }
        )
    }
}

impl ChaosSettings {
    /// Checks each fault with the chaos builder's own rules, alone, so that an error names
    /// the fault (`chaos.faults[1].injection_rate`), then adds them to `builder`.
    pub fn apply<V>(
        &self,
        path: &str,
        mut builder: ChaosBuilder<V>,
    ) -> Result<ChaosBuilder<V>, SettingsError> {
        for (index, fault_settings) in self.faults.iter().enumerate() {
            let (fault, rate) = fault_settings.to_fault();
            let alone = |fault: Fault| {
                ChaosLayer::<()>::builder("settings")
                    .inject(fault, rate)
                    .build()
                    .map(drop)
            };
            #[cfg(feature = "http")]
            let checked = if fault_settings.is_http() {
                ChaosLayer::http("settings")
                    .inject(fault.clone(), rate)
                    .build()
                    .map(drop)
            } else {
                alone(fault.clone())
            };
            #[cfg(not(feature = "http"))]
            let checked = alone(fault.clone());
            if let Err(err) = checked {
                let at = join(path, &format!("faults[{index}]"));
                return Err(SettingsError::config(&at, err.field(), err));
            }
            builder = builder.inject(fault, rate);
        }
        if let Some(seed) = self.seed {
            builder = builder.seed(seed);
        }
        Ok(builder)
    }

    /// Applies the settings to `builder` and builds the layer. An HTTP fault in a layer made
    /// by [`ChaosLayer::builder`] (not [`ChaosLayer::http`]) is an error at `path`.
    pub fn build<V>(
        &self,
        path: &str,
        builder: ChaosBuilder<V>,
    ) -> Result<ChaosLayer<V>, SettingsError> {
        self.apply(path, builder)?
            .build()
            .map_err(|err| SettingsError::config(path, err.field(), err))
    }
}
