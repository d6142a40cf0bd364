//! One circuit breaker per key (provider, model, host), built from one template, with a
//! bounded number of keys.
//!
//! Keys often come from requests, so their number must not grow without end: at most
//! `max_keys` breakers are kept. When a new key arrives and the registry is full, the idle
//! closed breakers used least recently are evicted (an eighth of the registry at a time, so
//! eviction is rare). A breaker with a call in flight is never evicted. Breakers that are
//! open, half-open, rate-limited or forced open are not evicted while their wait runs: an open
//! provider is never silently forgotten. Only when no closed breaker can go, an open one whose
//! wait is over is evicted, with a warning. If nothing can be evicted, calls for new keys share
//! one overflow breaker (named `<name>:overflow`) until room is made.
//!
//! A template built with [`shared_state`](crate::circuit_breaker::Builder::shared_state)
//! (feature `shared-state`) gives every key its own fleet-shared breaker, named
//! `<name>:<key>` in the store: one replica's trip for a model opens that model on every
//! replica. A breaker built for a key that is already open elsewhere takes the fleet's state
//! at its first read of the store (right away, in the background).
//!
//! ```
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, CircuitState, SlidingWindow};
//! use tower_breaker::keyed::{KeyedCircuitBreakerLayer, KeyedCircuitBreakers};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let template = CircuitBreaker::builder("model").sliding_window(SlidingWindow::consecutive(1));
//! let breakers = KeyedCircuitBreakers::builder(template).max_keys(1_000).build()?;
//!
//! // Requests are (model, prompt); the model picks the breaker.
//! let mut svc = ServiceBuilder::new()
//!     .layer(KeyedCircuitBreakerLayer::new(breakers.clone(), |req: &(String, String)| req.0.clone()))
//!     .service(service_fn(|(model, _prompt): (String, String)| async move {
//!         if model == "gpt-big" { Err("overloaded") } else { Ok(format!("{model} says hi")) }
//!     }));
//!
//! assert!(svc.ready().await?.call(("gpt-big".into(), "hi".into())).await.is_err());
//! assert_eq!(breakers.state(&"gpt-big".to_string()), Some(CircuitState::Open));
//! // The other model is unaffected.
//! assert_eq!(svc.ready().await?.call(("gpt-small".into(), "hi".into())).await?, "gpt-small says hi");
//! let err = svc.ready().await?.call(("gpt-big".into(), "hi".into())).await.unwrap_err();
//! assert!(err.is::<CircuitOpen>());
//! # Ok(())
//! # }
//! ```

use crate::BoxError;
use crate::circuit_breaker::{
    Builder as BreakerBuilder, CircuitBreaker, CircuitBreakerMetrics, CircuitState, ClassifyNow,
    RecordOutcome, ResponseFuture,
};
use crate::config::ConfigError;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

/// A registry of breakers, one per key; a cheap `Clone` handle. See the [module docs](self).
pub struct KeyedCircuitBreakers<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    name: Arc<str>,
    template: BreakerBuilder,
    overrides: HashMap<K, BreakerBuilder>,
    max_keys: usize,
    map: RwLock<HashMap<K, Entry>>,
    overflow: CircuitBreaker,
    origin: Instant,
    evicted: AtomicU64,
}

struct Entry {
    breaker: CircuitBreaker,
    /// Milliseconds since the registry was built.
    last_used: AtomicU64,
}

impl<K> Clone for KeyedCircuitBreakers<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedCircuitBreakers<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakers")
            .field("name", &self.shared.name)
            .field("max_keys", &self.shared.max_keys)
            .field("keys", &self.len())
            .finish()
    }
}

/// Builds [`KeyedCircuitBreakers`].
pub struct Builder<K> {
    template: BreakerBuilder,
    overrides: HashMap<K, BreakerBuilder>,
    max_keys: usize,
}

impl<K> fmt::Debug for Builder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("template", &self.template)
            .field("overrides", &self.overrides.len())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl<K: Hash + Eq + Clone + fmt::Display> KeyedCircuitBreakers<K> {
    /// A registry whose breakers are built from `template`; each is named
    /// `<template name>:<key>`.
    pub fn builder(template: BreakerBuilder) -> Builder<K> {
        Builder {
            template,
            overrides: HashMap::new(),
            max_keys: 1_000,
        }
    }

    /// The breaker for `key`, built from the template (or the key's override) on first use.
    pub fn get(&self, key: &K) -> CircuitBreaker {
        let s = &self.shared;
        let now = self.now_ms();
        {
            let map = s.map.read().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = map.get(key) {
                entry.last_used.store(now, Ordering::Relaxed);
                return entry.breaker.clone();
            }
        }
        let mut map = s.map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get(key) {
            entry.last_used.store(now, Ordering::Relaxed);
            return entry.breaker.clone();
        }
        if map.len() >= s.max_keys {
            self.evict(&mut map);
            if map.len() >= s.max_keys {
                return s.overflow.clone();
            }
        }
        let builder = s.overrides.get(key).unwrap_or(&s.template).clone();
        // Every builder was checked when the registry was built; only the name differs.
        let Ok(breaker) = builder.name(format!("{}:{key}", s.name)).build() else {
            return s.overflow.clone();
        };
        map.insert(
            key.clone(),
            Entry {
                breaker: breaker.clone(),
                last_used: AtomicU64::new(now),
            },
        );
        breaker
    }

    /// Makes room: evicts the least recently used idle closed breakers, an eighth of the
    /// registry at a time. Only when there is none, an idle open breaker whose wait is over
    /// (it would let its next call through as a probe anyway) is evicted, and a warning says
    /// so: an open breaker is never forgotten silently, nor while its wait runs. A breaker with
    /// a permit or handle outstanding (a call in flight) is never evicted.
    fn evict(&self, map: &mut HashMap<K, Entry>) {
        let idle = |e: &Entry| Arc::strong_count(&e.breaker.shared) == 1;
        let mut closed: Vec<(u64, K)> = map
            .iter()
            .filter(|(_, e)| {
                idle(e)
                    && matches!(
                        e.breaker.state(),
                        CircuitState::Closed | CircuitState::Disabled | CircuitState::MetricsOnly
                    )
            })
            .map(|(k, e)| (e.last_used.load(Ordering::Relaxed), k.clone()))
            .collect();
        let batch = (self.shared.max_keys / 8).max(1).min(closed.len());
        if batch > 0 {
            closed.select_nth_unstable_by_key(batch - 1, |(used, _)| *used);
            for (_, key) in closed.into_iter().take(batch) {
                map.remove(&key);
            }
            self.shared
                .evicted
                .fetch_add(batch as u64, Ordering::Relaxed);
            return;
        }
        let expired = map
            .iter()
            .filter(|(_, e)| {
                idle(e)
                    && matches!(
                        e.breaker.state(),
                        CircuitState::Open | CircuitState::RateLimited
                    )
                    && e.breaker.is_call_permitted()
            })
            .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
            .map(|(k, _)| k.clone());
        if let Some(key) = expired {
            if let Some(entry) = map.remove(&key) {
                tracing::warn!(
                    breaker = %entry.breaker.name(),
                    "evicting an open circuit breaker whose wait is over to make room for a new key"
                );
                self.shared.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<K> KeyedCircuitBreakers<K> {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.shared.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The registry's name (the template breaker's name).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// How many keys have a breaker now.
    pub fn len(&self) -> usize {
        self.shared.map.read().map_or(0, |m| m.len())
    }

    /// True when no key has a breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many idle breakers have been evicted since the registry was built.
    pub fn evicted(&self) -> u64 {
        self.shared.evicted.load(Ordering::Relaxed)
    }

    /// The breaker that calls for new keys share while the registry is full of breakers
    /// that may not be evicted.
    pub fn overflow(&self) -> &CircuitBreaker {
        &self.shared.overflow
    }

    /// Every key with its breaker, in no particular order.
    pub fn breakers(&self) -> Vec<(K, CircuitBreaker)>
    where
        K: Clone,
    {
        let map = self.shared.map.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(k, e)| (k.clone(), e.breaker.clone()))
            .collect()
    }

    /// Every key with its state.
    pub fn states(&self) -> Vec<(K, CircuitState)>
    where
        K: Clone,
    {
        let map = self.shared.map.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(k, e)| (k.clone(), e.breaker.state()))
            .collect()
    }

    /// Every key with a snapshot of its breaker's metrics.
    pub fn metrics(&self) -> Vec<(K, CircuitBreakerMetrics)>
    where
        K: Clone,
    {
        let map = self.shared.map.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(k, e)| (k.clone(), e.breaker.metrics()))
            .collect()
    }

    /// The state of `key`'s breaker, if it has one (does not create it).
    pub fn state(&self, key: &K) -> Option<CircuitState>
    where
        K: Hash + Eq,
    {
        let map = self.shared.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(key).map(|e| e.breaker.state())
    }
}

impl<K: Hash + Eq + Clone + fmt::Display> Builder<K> {
    /// At most this many keys have a breaker (1 to 1,000,000). Default 1,000.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Builds `key`'s breaker from `builder` instead of the template.
    pub fn override_for(mut self, key: K, builder: BreakerBuilder) -> Self {
        self.overrides.insert(key, builder);
        self
    }

    /// Checks the template, every override and `max_keys`.
    pub fn build(self) -> Result<KeyedCircuitBreakers<K>, ConfigError> {
        let name: Arc<str> = Arc::from(self.template.breaker_name());
        if !(1..=1_000_000).contains(&self.max_keys) {
            return Err(ConfigError::new(
                &*name,
                "max_keys",
                self.max_keys,
                "1 ..= 1000000",
            ));
        }
        let overflow = self
            .template
            .clone()
            .name(format!("{name}:overflow"))
            .build()?;
        for builder in self.overrides.values() {
            builder.clone().build()?;
        }
        Ok(KeyedCircuitBreakers {
            shared: Arc::new(Shared {
                name,
                template: self.template,
                overrides: self.overrides,
                max_keys: self.max_keys,
                map: RwLock::new(HashMap::new()),
                overflow,
                origin: Instant::now(),
                evicted: AtomicU64::new(0),
            }),
        })
    }
}

/// Wraps services with one breaker per key of the request.
pub struct KeyedCircuitBreakerLayer<K, KF, R = ClassifyNow> {
    breakers: KeyedCircuitBreakers<K>,
    key: KF,
    recorder: R,
}

impl<K, KF: Clone, R: Clone> Clone for KeyedCircuitBreakerLayer<K, KF, R> {
    fn clone(&self) -> Self {
        Self {
            breakers: self.breakers.clone(),
            key: self.key.clone(),
            recorder: self.recorder.clone(),
        }
    }
}

impl<K, KF, R> fmt::Debug for KeyedCircuitBreakerLayer<K, KF, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

impl<K, KF> KeyedCircuitBreakerLayer<K, KF> {
    /// A layer picking each request's breaker from `breakers` by `key(&request)`.
    pub fn new(breakers: KeyedCircuitBreakers<K>, key: KF) -> Self {
        Self {
            breakers,
            key,
            recorder: ClassifyNow::default(),
        }
    }
}

impl<K, KF, R> KeyedCircuitBreakerLayer<K, KF, R> {
    /// Uses `classifier` to turn results into outcomes.
    pub fn classify<C>(self, classifier: C) -> KeyedCircuitBreakerLayer<K, KF, ClassifyNow<C>> {
        self.record_with(ClassifyNow(classifier))
    }

    /// Uses `recorder` to record results; see [`RecordOutcome`].
    pub fn record_with<R2>(self, recorder: R2) -> KeyedCircuitBreakerLayer<K, KF, R2> {
        KeyedCircuitBreakerLayer {
            breakers: self.breakers,
            key: self.key,
            recorder,
        }
    }
}

impl<S, K, KF: Clone, R: Clone> Layer<S> for KeyedCircuitBreakerLayer<K, KF, R> {
    type Service = KeyedCircuitBreakerService<S, K, KF, R>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreakerService {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service guarded by one breaker per key; made by [`KeyedCircuitBreakerLayer`].
///
/// The key is only known in `call`, so the permit is taken there: the inner service is polled
/// ready first, and a rejected call leaves it ready for the next one.
pub struct KeyedCircuitBreakerService<S, K, KF, R = ClassifyNow> {
    inner: S,
    layer: KeyedCircuitBreakerLayer<K, KF, R>,
}

impl<S: Clone, K, KF: Clone, R: Clone> Clone for KeyedCircuitBreakerService<S, K, KF, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, K, KF, R> fmt::Debug for KeyedCircuitBreakerService<S, K, KF, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerService")
            .field("inner", &self.inner)
            .field("breakers", &self.layer.breakers)
            .finish()
    }
}

impl<S, K, KF, R, Req> Service<Req> for KeyedCircuitBreakerService<S, K, KF, R>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone + fmt::Display,
    KF: Fn(&Req) -> K,
    R: RecordOutcome<S::Response, S::Error> + Clone,
{
    type Response = R::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.layer.key)(&req);
        match self.layer.breakers.get(&key).try_acquire() {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.layer.recorder.clone())
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}
