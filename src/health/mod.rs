//! Health of the breakers and bulkheads a service depends on: a registry, a report, JSON
//! (feature `serde`), and an axum `/health` handler (feature `axum`).
//!
//! The overall status is **healthy** when every breaker is closed, **degraded** when any is
//! not (open, half-open, rate-limited, forced open) or a bulkhead is saturated, and
//! **unhealthy** when at least half of the breakers are open (the ratio and the whole rule
//! are configurable).
//!
//! ```
//! use tower_breaker::circuit_breaker::CircuitBreaker;
//! use tower_breaker::health::{HealthRegistry, HealthStatus};
//!
//! let openai = CircuitBreaker::builder("openai").build()?;
//! let anthropic = CircuitBreaker::builder("anthropic").build()?;
//! let health = HealthRegistry::new();
//! health.register_breaker(&openai);
//! health.register_breaker(&anthropic);
//! assert_eq!(health.report().status, HealthStatus::Healthy);
//!
//! openai.force_open();
//! // One of two open: at least half, so unhealthy by the default rule.
//! assert_eq!(health.report().status, HealthStatus::Unhealthy);
//! # Ok::<_, tower_breaker::ConfigError>(())
//! ```

#[cfg(feature = "axum")]
mod axum;

use crate::bulkhead::Bulkhead;
use crate::circuit_breaker::{CircuitBreaker, CircuitState};
use crate::keyed::KeyedCircuitBreakers;
use std::fmt;
use std::sync::{Arc, RwLock};

/// The overall status of a [`HealthReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum HealthStatus {
    /// Every breaker closed, no bulkhead saturated.
    Healthy,
    /// Some dependency is failing or saturated, but the service can still answer.
    Degraded,
    /// Too many dependencies are down.
    Unhealthy,
}

impl HealthStatus {
    /// `"healthy"`, `"degraded"` or `"unhealthy"`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of component a [`ComponentHealth`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum ComponentKind {
    /// A circuit breaker.
    CircuitBreaker,
    /// A bulkhead.
    Bulkhead,
}

/// The health of one breaker or bulkhead.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ComponentHealth {
    /// The component's name.
    pub name: String,
    /// Breaker or bulkhead.
    pub kind: ComponentKind,
    /// The breaker's state (`closed`, `open`, ...), or the bulkhead's (`available`,
    /// `saturated`).
    pub state: String,
    /// This component's own status.
    pub status: HealthStatus,
    /// A breaker's failure rate in its window, once it holds `minimum_calls`.
    pub failure_rate: Option<f64>,
    /// Calls in a breaker's window, or calls running in a bulkhead.
    pub calls: u64,
    /// Calls rejected since the component was built.
    pub rejected: u64,
}

/// A snapshot of every registered component.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct HealthReport {
    /// The overall status.
    pub status: HealthStatus,
    /// Breakers that are open or forced open.
    pub open_breakers: usize,
    /// Breakers in all.
    pub breakers: usize,
    /// Each component.
    pub components: Vec<ComponentHealth>,
}

type Rule = Arc<dyn Fn(&HealthReport) -> HealthStatus + Send + Sync>;
type KeyedSource = Arc<dyn Fn() -> Vec<CircuitBreaker> + Send + Sync>;

enum Source {
    Breaker(CircuitBreaker),
    Bulkhead(Bulkhead),
    Keyed(KeyedSource),
}

struct Inner {
    sources: Vec<Source>,
    unhealthy_ratio: f64,
    rule: Option<Rule>,
}

/// Named breakers and bulkheads; a cheap `Clone` handle (clones share the registry).
///
/// Bulkheads and keyed registries count too, and the rule is yours to set:
///
/// ```
/// use tower_breaker::bulkhead::Bulkhead;
/// use tower_breaker::circuit_breaker::CircuitBreaker;
/// use tower_breaker::health::{HealthRegistry, HealthStatus};
/// use tower_breaker::keyed::KeyedCircuitBreakers;
///
/// let chat = CircuitBreaker::builder("chat").build()?;
/// let slots = Bulkhead::builder("chat").max_concurrent(4).build()?;
/// let models = KeyedCircuitBreakers::<String>::builder(CircuitBreaker::builder("model")).build()?;
/// let health = HealthRegistry::new();
/// health
///     .register_breaker(&chat)
///     .register_bulkhead(&slots)
///     .register_keyed(&models)
///     .unhealthy_ratio(1.0); // unhealthy only when every breaker is open
///
/// models.get(&"gpt-4o".to_string()).force_open();
/// let report = health.report();
/// assert_eq!(report.status, HealthStatus::Degraded);
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct HealthRegistry {
    inner: Arc<RwLock<Inner>>,
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("HealthRegistry")
            .field("sources", &inner.sources.len())
            .field("unhealthy_ratio", &inner.unhealthy_ratio)
            .finish_non_exhaustive()
    }
}

impl Default for HealthRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthRegistry {
    /// An empty registry with the default rule (unhealthy when at least half the breakers are
    /// open).
    pub fn new() -> Self {
        Self {
            inner: Arc::new(RwLock::new(Inner {
                sources: Vec::new(),
                unhealthy_ratio: 0.5,
                rule: None,
            })),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere mid-update of a Vec push; the data is
        // still consistent enough to report on.
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a breaker (a clone of the handle: the registry sees its live state).
    pub fn register_breaker(&self, breaker: &CircuitBreaker) -> &Self {
        self.write().sources.push(Source::Breaker(breaker.clone()));
        self
    }

    /// Adds a bulkhead.
    pub fn register_bulkhead(&self, bulkhead: &Bulkhead) -> &Self {
        self.write()
            .sources
            .push(Source::Bulkhead(bulkhead.clone()));
        self
    }

    /// Adds every breaker of a keyed registry, as it is at each report.
    pub fn register_keyed<K>(&self, keyed: &KeyedCircuitBreakers<K>) -> &Self
    where
        K: Clone + Send + Sync + 'static,
    {
        let keyed = keyed.clone();
        let source: KeyedSource =
            Arc::new(move || keyed.breakers().into_iter().map(|(_, b)| b).collect());
        self.write().sources.push(Source::Keyed(source));
        self
    }

    /// Unhealthy when at least this share of the breakers is open (0.0 to 1.0; values
    /// outside are clamped). Default 0.5.
    pub fn unhealthy_ratio(&self, ratio: f64) -> &Self {
        let ratio = if ratio.is_nan() {
            0.5
        } else {
            ratio.clamp(0.0, 1.0)
        };
        self.write().unhealthy_ratio = ratio;
        self
    }

    /// Replaces the whole rule: the report's `status` is what `rule` says of it.
    pub fn rule(
        &self,
        rule: impl Fn(&HealthReport) -> HealthStatus + Send + Sync + 'static,
    ) -> &Self {
        self.write().rule = Some(Arc::new(rule));
        self
    }

    /// A snapshot of every component and the overall status.
    pub fn report(&self) -> HealthReport {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut components = Vec::new();
        for source in &inner.sources {
            match source {
                Source::Breaker(b) => components.push(breaker_health(b)),
                Source::Bulkhead(b) => components.push(bulkhead_health(b)),
                Source::Keyed(list) => components.extend(list().iter().map(breaker_health)),
            }
        }
        let breakers = components
            .iter()
            .filter(|c| c.kind == ComponentKind::CircuitBreaker)
            .count();
        let open_breakers = components
            .iter()
            .filter(|c| {
                c.kind == ComponentKind::CircuitBreaker && c.status == HealthStatus::Unhealthy
            })
            .count();
        let any_degraded = components.iter().any(|c| c.status != HealthStatus::Healthy);
        let status = if breakers > 0
            && open_breakers as f64 >= inner.unhealthy_ratio * breakers as f64
            && open_breakers > 0
        {
            HealthStatus::Unhealthy
        } else if any_degraded {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        };
        let mut report = HealthReport {
            status,
            open_breakers,
            breakers,
            components,
        };
        if let Some(rule) = &inner.rule {
            report.status = rule(&report);
        }
        report
    }
}

fn breaker_health(b: &CircuitBreaker) -> ComponentHealth {
    let m = b.metrics();
    let status = match m.state {
        CircuitState::Closed | CircuitState::Disabled | CircuitState::MetricsOnly => {
            HealthStatus::Healthy
        }
        CircuitState::HalfOpen | CircuitState::RateLimited => HealthStatus::Degraded,
        CircuitState::Open | CircuitState::ForcedOpen => HealthStatus::Unhealthy,
    };
    ComponentHealth {
        name: b.name().to_string(),
        kind: ComponentKind::CircuitBreaker,
        state: m.state.as_str().to_string(),
        status,
        failure_rate: m.failure_rate,
        calls: m.calls as u64,
        rejected: m.not_permitted_calls,
    }
}

fn bulkhead_health(b: &Bulkhead) -> ComponentHealth {
    let m = b.metrics();
    let saturated = m.active >= m.max_concurrent && m.queued >= m.max_queue;
    ComponentHealth {
        name: b.name().to_string(),
        kind: ComponentKind::Bulkhead,
        state: if saturated { "saturated" } else { "available" }.to_string(),
        status: if saturated {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        },
        failure_rate: None,
        calls: m.active as u64,
        rejected: m.rejected_full + m.rejected_timeout,
    }
}

#[cfg(feature = "axum")]
pub use self::axum::health;
