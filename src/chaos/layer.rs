use super::events::ChaosEvent;
use super::fault::{Fault, FaultPlan};
use super::inject::{Injector, Slot, Switch, describe};
use super::service::Chaos;
use crate::config::{ConfigError, MAX_DURATION};
use crate::events::{Listener, Listeners};
use std::fmt;
use std::sync::Arc;
use tower_layer::Layer;

/// Injects faults into the requests that go through it. Built by [`ChaosLayer::builder`]
/// (any request type: errors and latency) or [`ChaosLayer::http`] (`http::Request`s: also
/// statuses with headers and streamed-body faults). See the [module docs](super).
///
/// `V` is what the `enabled` closures see of a request: the request itself, or its
/// `http::request::Parts` for the HTTP layer.
///
/// Clones of the layer, and every service it makes, share one injector: one seeded sequence,
/// one plan position, one set of listeners. Build two layers for two independent sequences.
pub struct ChaosLayer<V> {
    injector: Arc<Injector<V>>,
}

impl<V> Clone for ChaosLayer<V> {
    fn clone(&self) -> Self {
        Self {
            injector: self.injector.clone(),
        }
    }
}

impl<V> fmt::Debug for ChaosLayer<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLayer")
            .field("injector", &self.injector)
            .finish()
    }
}

impl<V> ChaosLayer<V> {
    /// A builder for a layer named `name` (used in events, metrics and errors) in front of
    /// any service: error and latency faults. `V` is the service's request type.
    pub fn builder(name: impl Into<String>) -> ChaosBuilder<V> {
        ChaosBuilder::new(name.into(), false)
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.injector.name
    }

    /// The seed of its sequence (given, or drawn from entropy): log it to replay a run.
    pub fn seed(&self) -> u64 {
        self.injector.seed
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl ChaosLayer<http::request::Parts> {
    /// A builder for a layer in front of an HTTP service (`http::Request` to
    /// `http::Response`): every fault, statuses and streamed-body faults included. The
    /// `enabled` closures see the request's `http::request::Parts` (method, URI, headers).
    pub fn http(name: impl Into<String>) -> ChaosBuilder<http::request::Parts> {
        ChaosBuilder::new(name.into(), true)
    }
}

impl<S, V> Layer<S> for ChaosLayer<V> {
    type Service = Chaos<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        Chaos::from_injector(inner, self.injector.clone())
    }
}

/// Builds a [`ChaosLayer`]: the faults with their injection rates, an optional scripted
/// [`FaultPlan`], the seed, the switches and the listeners.
pub struct ChaosBuilder<V> {
    name: String,
    http: bool,
    seed: Option<u64>,
    slots: Vec<Slot<V>>,
    plan: FaultPlan,
    enabled: Option<Switch<V>>,
    listeners: Listeners<ChaosEvent>,
}

impl<V> fmt::Debug for ChaosBuilder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosBuilder")
            .field("name", &self.name)
            .field("http", &self.http)
            .field("seed", &self.seed)
            .field("faults", &describe(&self.slots))
            .field("plan", &self.plan)
            .finish()
    }
}

impl<V> ChaosBuilder<V> {
    fn new(name: String, http: bool) -> Self {
        Self {
            name,
            http,
            seed: None,
            slots: Vec::new(),
            plan: FaultPlan::default(),
            enabled: None,
            listeners: Listeners::new(),
        }
    }

    /// The seed of the random sequence. The same seed and the same faults give the same
    /// faults to the `n`th request, every run. Default: drawn from entropy (see
    /// [`ChaosLayer::seed`]).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Injects `fault` into a fraction `injection_rate` (`0.0 ..= 1.0`) of the requests.
    ///
    /// Each fault draws for every request, independently of the others. Latency adds up;
    /// the first error or status that fires (in the order they were added) answers the
    /// request; a stream fault applies when the upstream answers, the first one that fires.
    pub fn inject(self, fault: impl Into<Fault>, injection_rate: f64) -> Self {
        self.push(fault.into(), injection_rate, None)
    }

    /// As [`inject`](Self::inject), only for the requests where `enabled` says so. The
    /// closure is asked per request, so it can read a header or a flag flipped at run time.
    pub fn inject_when<F>(self, fault: impl Into<Fault>, injection_rate: f64, enabled: F) -> Self
    where
        F: Fn(&V) -> bool + Send + Sync + 'static,
    {
        self.push(fault.into(), injection_rate, Some(Arc::new(enabled)))
    }

    fn push(mut self, fault: Fault, rate: f64, enabled: Option<Switch<V>>) -> Self {
        self.slots.push(Slot {
            fault,
            rate,
            enabled,
        });
        self
    }

    /// The whole layer applies only to requests where `enabled` says so; the others pass
    /// untouched and take no step of the plan. Default: every request.
    pub fn enabled_when<F>(mut self, enabled: F) -> Self
    where
        F: Fn(&V) -> bool + Send + Sync + 'static,
    {
        self.enabled = Some(Arc::new(enabled));
        self
    }

    /// A scripted sequence: the first requests take the plan's steps, in order; after the
    /// plan, the faults given to [`inject`](Self::inject) apply (none: healthy).
    pub fn plan(mut self, plan: FaultPlan) -> Self {
        self.plan = plan;
        self
    }

    /// Reports every injected fault to `listener` (a closure `Fn(&ChaosEvent)`, or a
    /// `MetricsListener` / `OpenTelemetryListener`).
    pub fn on_event(mut self, listener: impl Listener<ChaosEvent>) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Checks every value and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an injection rate outside `0.0 ..= 1.0`, a latency range with
    /// `min > max` or over 24 h, an invalid status code or header, a keepalive interval under
    /// 1 ms, or an HTTP fault given to a layer made by [`ChaosLayer::builder`].
    pub fn build(self) -> Result<ChaosLayer<V>, ConfigError> {
        let name = self.name.as_str();
        for slot in &self.slots {
            if !(0.0..=1.0).contains(&slot.rate) {
                return Err(ConfigError::new(
                    name,
                    "injection_rate",
                    slot.rate,
                    "0.0 <= x <= 1.0",
                ));
            }
            check_fault(name, self.http, &slot.fault)?;
        }
        for fault in self.plan.steps.iter().flatten() {
            check_fault(name, self.http, fault)?;
        }
        let injector = Injector::new(
            Arc::from(self.name),
            self.seed.unwrap_or_else(crate::random::entropy_seed),
            self.slots,
            self.plan.steps,
            self.plan.cycle,
            self.enabled,
            self.listeners,
        );
        Ok(ChaosLayer {
            injector: Arc::new(injector),
        })
    }
}

fn check_fault(name: &str, http: bool, fault: &Fault) -> Result<(), ConfigError> {
    if fault.needs_http() && !http {
        return Err(ConfigError::new(
            name,
            "fault",
            fault,
            "error or latency faults (HTTP faults need `ChaosLayer::http`)",
        ));
    }
    match fault {
        Fault::Latency { min, max } if min > max || *max > MAX_DURATION => Err(ConfigError::new(
            name,
            "latency",
            (min, max),
            format!("min <= max <= {MAX_DURATION:?}"),
        )),
        #[cfg(feature = "http")]
        Fault::Status(status) => super::service::check_status(name, status),
        #[cfg(feature = "http")]
        Fault::Stream(super::fault::StreamFault::KeepaliveOnly(interval))
            if *interval < std::time::Duration::from_millis(1) =>
        {
            Err(ConfigError::new(
                name,
                "keepalive_interval",
                interval,
                ">= 1ms",
            ))
        }
        _ => Ok(()),
    }
}
