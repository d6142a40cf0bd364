//! One circuit breaker per key (provider, model, host), built from one template, with a
//! bounded number of keys.
//!
//! Keys often come from requests, so their number must not grow without end: at most
//! `max_keys` breakers are kept. When a new key arrives and the registry is full, idle closed
//! breakers are evicted, an eighth of the registry at a time (so eviction is rare), those not
//! used since the last eviction first (a clock sweep: an approximation of least recently used
//! that costs a lookup no clock read and no shared write). A breaker with a call in flight, or
//! whose handle someone holds, is never evicted. Breakers that are open, half-open,
//! rate-limited are not evicted while their wait runs: an open provider is never silently
//! forgotten. Only when no closed breaker can go, one whose next call would be admitted as a
//! probe anyway (open or rate-limited with its wait over, or half-open with no probe in flight)
//! is evicted, with a warning. A breaker an operator set by hand
//! ([`disable`](CircuitBreaker::disable), [`metrics_only`](CircuitBreaker::metrics_only),
//! [`force_open`](CircuitBreaker::force_open)) is never evicted: it would come back closed. If
//! nothing can be evicted, calls for new keys share one overflow breaker (named
//! `<name>:overflow`) until room is made. That is never silent:
//! [`lookup`](KeyedCircuitBreakers::lookup) says [`Lookup::Overflow`],
//! [`overflowed`](KeyedCircuitBreakers::overflowed) counts the lookups and calls it served,
//! and a warning is logged when the registry starts overflowing. Every key without room
//! shares that one breaker: a manual [`force_open`](CircuitBreaker::force_open) through it
//! rejects all of them.
//!
//! No lock of the registry is held while a breaker's listener (user code) runs: a listener
//! may look keys up. A registry whose template cannot build a key's breaker (a
//! [`shared_state`](crate::circuit_breaker::Builder::shared_state) template asked for a new
//! key outside a Tokio runtime) logs the error and answers with the overflow breaker.
//!
//! # Cost
//!
//! [`get`](KeyedCircuitBreakers::get) hashes the key, takes the read lock of one of 16 shards
//! (so threads on different keys rarely meet) and clones the breaker's handle: no clock read,
//! no allocation, no shared write but the handle's count. The layer's service keeps the last
//! few keys' breakers it used and finds them again without a lock or a hash (compared by
//! `Eq`; a weak reference upgraded and a fence, so that an eviction sweep and a call never
//! miss each other); `benches/keyed.rs` measures both, from 10 to 100,000 keys.
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

mod service;

pub use self::service::{KeyedCircuitBreakerLayer, KeyedCircuitBreakerService};

use crate::circuit_breaker::{
    Builder as BreakerBuilder, CircuitBreaker, CircuitBreakerMetrics, CircuitState,
};
use crate::config::ConfigError;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

/// Shards of the registry: a power of two, enough that two threads on different keys rarely
/// take the same shard's lock.
const SHARDS: usize = 16;

/// One shard: its keys' nodes.
type Shard<K> = RwLock<HashMap<K, Arc<Node>>>;

/// A registry of breakers, one per key; a cheap `Clone` handle. See the [module docs](self).
///
/// ```
/// use tower_breaker::Outcome;
/// use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
/// use tower_breaker::keyed::KeyedCircuitBreakers;
///
/// let template = CircuitBreaker::builder("host").sliding_window(SlidingWindow::consecutive(1));
/// let hosts = KeyedCircuitBreakers::builder(template).max_keys(10_000).build()?;
///
/// hosts.get(&"api.example.com").try_acquire().unwrap().record(Outcome::Failure);
/// assert_eq!(hosts.state(&"api.example.com"), Some(CircuitState::Open));
/// assert!(hosts.get(&"cdn.example.com").try_acquire().is_ok());
/// assert_eq!(hosts.get(&"cdn.example.com").name(), "host:cdn.example.com");
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
pub struct KeyedCircuitBreakers<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    name: Arc<str>,
    template: BreakerBuilder,
    overrides: HashMap<K, BreakerBuilder>,
    max_keys: usize,
    /// Picks a key's shard; each shard's map has its own hasher.
    hasher: RandomState,
    shards: Box<[Shard<K>]>,
    /// Places taken in the shards, counting insertions under way: never above `max_keys`.
    reserved: AtomicUsize,
    /// One eviction at a time; the shard where the next sweep starts.
    sweep: Mutex<usize>,
    overflow: CircuitBreaker,
    evicted: AtomicU64,
    /// Lookups and calls served by the overflow breaker.
    overflowed: AtomicU64,
    /// Set at the first overflow after the registry had room (the warning is logged then),
    /// cleared when a key gets its own breaker again.
    overflowing: AtomicBool,
}

/// What [`KeyedCircuitBreakers::lookup`] found for a key.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The key's own breaker.
    Key(CircuitBreaker),
    /// The registry is full of breakers that may not be evicted, and the key has none: the
    /// overflow breaker, which every key without room shares. A manual change to it
    /// ([`force_open`](CircuitBreaker::force_open)) applies to all of them.
    Overflow(CircuitBreaker),
}

impl Lookup {
    /// The breaker, the key's own or the overflow one.
    pub fn breaker(&self) -> &CircuitBreaker {
        match self {
            Lookup::Key(breaker) | Lookup::Overflow(breaker) => breaker,
        }
    }

    /// The breaker, the key's own or the overflow one.
    pub fn into_breaker(self) -> CircuitBreaker {
        match self {
            Lookup::Key(breaker) | Lookup::Overflow(breaker) => breaker,
        }
    }

    /// True when the registry had no room for the key: the breaker is the shared overflow one.
    pub fn is_overflow(&self) -> bool {
        matches!(self, Lookup::Overflow(_))
    }
}

/// One key's breaker, shared by the registry and the services' caches.
pub(crate) struct Node {
    pub(crate) breaker: CircuitBreaker,
    /// Set by a lookup, cleared by an eviction sweep: "used since the last sweep". Written
    /// only when it changes, so a hot key's lookups only read it.
    used: AtomicBool,
    /// Set (under the shard's write lock) when the registry drops this node, so that caches
    /// holding it look the key up again.
    evicted: AtomicBool,
    /// Set by an eviction sweep when it picks this node as a candidate (under the shard's
    /// write lock), cleared by any lookup: a sweep reads the states of its candidates with no
    /// lock held (a state read may run a listener), and removes only those still unlooked-at.
    candidate: AtomicBool,
}

impl Node {
    /// A lookup: marks the node used (the clock sweep's hint) and withdraws it from a sweep
    /// under way. Each flag is written only when it changes, so a hot key's lookups only read.
    #[inline]
    pub(crate) fn touch(&self) {
        // Relaxed: the sweep reads both under the shard's write lock, after every lookup made
        // under the shard's read lock; a service's cache (no lock) is ordered by the fences
        // of `claimed` and `Cache::find`.
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
        self.withdraw();
    }

    /// Withdraws the node from a sweep under way, without marking it used.
    #[inline]
    fn withdraw(&self) {
        if self.candidate.load(Ordering::Relaxed) {
            self.candidate.store(false, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// No call in flight and no handle held outside the registry, and no strong reference
    /// to the node but the map's: no service's cache is using it (a cache holds a `Weak`
    /// between calls), no sweep is reading its state.
    fn is_idle(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1 && Arc::strong_count(&self.breaker.shared) == 1
    }
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

/// Which breakers an eviction sweep may remove.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Idle closed breakers not used since the last sweep (used ones lose their mark).
    Unused,
    /// Idle closed breakers.
    Closed,
    /// Idle breakers whose next call would be admitted as a probe anyway.
    ProbeReady,
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

    /// The breaker for `key`, built from the template (or the key's override) on first use;
    /// the [`overflow`](Self::overflow) breaker when the registry is full of breakers that may
    /// not be evicted. [`lookup`](Self::lookup) tells the two apart.
    pub fn get(&self, key: &K) -> CircuitBreaker {
        self.lookup(key).into_breaker()
    }

    /// The breaker for `key`, as [`get`](Self::get), saying whether it is the key's own or
    /// the shared overflow breaker.
    ///
    /// ```
    /// use tower_breaker::Outcome;
    /// use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
    /// use tower_breaker::keyed::{KeyedCircuitBreakers, Lookup};
    ///
    /// let template = CircuitBreaker::builder("model").sliding_window(SlidingWindow::consecutive(1));
    /// let models = KeyedCircuitBreakers::builder(template).max_keys(1).build()?;
    /// // The only place holds an open breaker, which is not evicted while its wait runs.
    /// models.get(&"a").try_acquire().unwrap().record(Outcome::Failure);
    ///
    /// let lookup = models.lookup(&"b");
    /// assert!(lookup.is_overflow());
    /// assert_eq!(lookup.breaker().name(), "model:overflow");
    /// assert_eq!(models.overflowed(), 1);
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    pub fn lookup(&self, key: &K) -> Lookup {
        if let Some(breaker) = self.find(key, |node| node.breaker.clone()) {
            return Lookup::Key(breaker);
        }
        match self.insert(key) {
            Some(node) => Lookup::Key(node.breaker.clone()),
            None => Lookup::Overflow(self.overflowed_for(key).clone()),
        }
    }

    /// `key`'s node, made on first use; `None`: no room (use the overflow breaker).
    pub(crate) fn node(&self, key: &K) -> Option<Arc<Node>> {
        self.find(key, Arc::clone).or_else(|| self.insert(key))
    }

    /// The overflow breaker, for a lookup or a call of `key` that found no room: counted, and
    /// logged when the registry starts overflowing.
    #[cold]
    pub(crate) fn overflowed_for(&self, key: &K) -> &CircuitBreaker {
        let s = &self.shared;
        s.overflowed.fetch_add(1, Ordering::Relaxed);
        if !s.overflowing.load(Ordering::Relaxed) && !s.overflowing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                registry = %s.name,
                key = %key,
                max_keys = s.max_keys,
                overflow = %s.overflow.name(),
                "keyed circuit breakers are full of breakers that may not be evicted: keys without room share the overflow breaker"
            );
        }
        &s.overflow
    }

    #[inline]
    fn shard(&self, key: &K) -> &Shard<K> {
        let s = &self.shared;
        // SHARDS is a power of two; the low bits of SipHash are as good as any.
        &s.shards[s.hasher.hash_one(key) as usize & (SHARDS - 1)]
    }

    #[inline]
    fn find<R>(&self, key: &K, f: impl FnOnce(&Arc<Node>) -> R) -> Option<R> {
        let map = self
            .shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(key).map(|node| {
            node.touch();
            f(node)
        })
    }

    #[cold]
    fn insert(&self, key: &K) -> Option<Arc<Node>> {
        let s = &self.shared;
        if !self.reserve() {
            self.evict();
            if !self.reserve() {
                return None;
            }
        }
        let builder = s.overrides.get(key).unwrap_or(&s.template).clone();
        // Every builder was checked when the registry was built; only the name differs. What
        // can still fail is the environment: a shared-state breaker needs a Tokio runtime.
        let breaker = match builder.name(format!("{}:{key}", s.name)).build() {
            Ok(breaker) => breaker,
            Err(error) => {
                s.reserved.fetch_sub(1, Ordering::Relaxed);
                tracing::error!(
                    registry = %s.name,
                    key = %key,
                    %error,
                    overflow = %s.overflow.name(),
                    "cannot build the breaker of a new key: the call uses the overflow breaker"
                );
                return None;
            }
        };
        let mut map = self
            .shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(node) = map.get(key) {
            // Another thread made it meanwhile: give the place back.
            s.reserved.fetch_sub(1, Ordering::Relaxed);
            node.touch();
            return Some(node.clone());
        }
        let node = Arc::new(Node {
            breaker,
            used: AtomicBool::new(true),
            evicted: AtomicBool::new(false),
            candidate: AtomicBool::new(false),
        });
        map.insert(key.clone(), node.clone());
        drop(map);
        if s.overflowing.load(Ordering::Relaxed) {
            s.overflowing.store(false, Ordering::Relaxed);
        }
        Some(node)
    }

    /// Takes a place for a new key, if there is one.
    fn reserve(&self) -> bool {
        let s = &self.shared;
        s.reserved
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < s.max_keys).then_some(n + 1)
            })
            .is_ok()
    }

    /// Makes room: see the module docs for the order. Sweeps one shard at a time, from where
    /// the last sweep stopped, so that no shard is always emptied first.
    ///
    /// A breaker's state is read with no lock held (a read may move it, and run its
    /// listeners, which may look keys up), so each pass goes in three steps: candidates are
    /// picked under a shard's write lock (idle ones, marked `candidate`); their states are
    /// read with no lock; the chosen ones are removed under the write lock again if nothing
    /// looked them up or used them meanwhile (`candidate` still set, still idle).
    fn evict(&self) {
        let s = &self.shared;
        let batch = (s.max_keys / 8).max(1);
        for pass in [Pass::Unused, Pass::Closed, Pass::ProbeReady] {
            let limit = if pass == Pass::ProbeReady { 1 } else { batch };
            let first = *s.sweep.lock().unwrap_or_else(PoisonError::into_inner);
            let mut chosen = Vec::new();
            let mut last = first;
            for i in 0..SHARDS {
                let index = (first + i) & (SHARDS - 1);
                last = index;
                for (key, node) in self.candidates(index) {
                    // A strong reference only while the state is read: a reference the sweep
                    // kept would look, to another sweep, like a call using the node.
                    if chosen.len() < limit
                        && let Some(state) = node.upgrade().and_then(|n| Self::evictable(&n, pass))
                    {
                        chosen.push((index, key, node, state));
                    }
                }
                if chosen.len() >= limit {
                    break;
                }
            }
            if chosen.is_empty() {
                continue;
            }
            let mut start = s.sweep.lock().unwrap_or_else(PoisonError::into_inner);
            if s.reserved.load(Ordering::Relaxed) < s.max_keys {
                // Another sweep made room while this one read states.
                return;
            }
            let mut removed = Vec::new();
            for (index, key, node, state) in chosen {
                let mut map = s.shards[index]
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                if map.get(&key).is_some_and(|n| {
                    std::ptr::eq(Arc::as_ptr(n), node.as_ptr()) && Self::claimed(n)
                }) && let Some(node) = map.remove(&key)
                {
                    removed.push((node, state));
                }
            }
            if !removed.is_empty() {
                *start = last + 1;
                s.reserved.fetch_sub(removed.len(), Ordering::Relaxed);
                s.evicted.fetch_add(removed.len() as u64, Ordering::Relaxed);
                drop(start);
                if pass == Pass::ProbeReady {
                    for (node, state) in &removed {
                        tracing::warn!(
                            breaker = %node.breaker.name(),
                            %state,
                            "evicted a circuit breaker whose next call would be a probe, to make room for a new key"
                        );
                    }
                }
                // The evicted breakers are dropped here, with no lock held.
                return;
            }
        }
    }

    /// The idle nodes of shard `index`, marked as the sweep's candidates. Under the shard's
    /// write lock, so that no lookup runs meanwhile; no state is read.
    fn candidates(&self, index: usize) -> Vec<(K, Weak<Node>)> {
        let map = self.shared.shards[index]
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let candidates: Vec<_> = map
            .iter()
            .filter(|(_, node)| node.is_idle())
            .map(|(key, node)| {
                node.candidate.store(true, Ordering::Relaxed);
                (key.clone(), Arc::downgrade(node))
            })
            .collect();
        drop(map);
        // Pairs with the release of the last handle or permit dropped (the strong count's
        // decrement): whatever it did to the breaker is seen by the state reads that follow.
        fence(Ordering::Acquire);
        candidates
    }

    /// Under the shard's write lock: marks a chosen node evicted if it is still unused since
    /// it was picked, else leaves it. A service's cache finds nodes with no lock: it takes a
    /// strong reference, withdraws the node, and then (after a SeqCst fence) checks
    /// `evicted`; here `evicted` is set first and the node checked after the fence. Either
    /// the cache sees `evicted` and looks the key up again, or this sees its reference or its
    /// withdrawal and keeps the node.
    fn claimed(node: &Arc<Node>) -> bool {
        node.evicted.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        // The map's reference only.
        if node.candidate.load(Ordering::Relaxed) && node.is_idle() {
            return true;
        }
        node.evicted.store(false, Ordering::Relaxed);
        false
    }

    /// `Some(state)` when `node` may go in this pass. Reads the state with no lock held; a
    /// node not chosen keeps its place in the clock sweep.
    fn evictable(node: &Node, pass: Pass) -> Option<CircuitState> {
        let used = node.used.swap(false, Ordering::Relaxed);
        let state = node.breaker.state();
        let evictable = match pass {
            // Second chance: a used breaker loses its mark and stays, this time.
            Pass::Unused => state == CircuitState::Closed && !used,
            Pass::Closed => state == CircuitState::Closed,
            Pass::ProbeReady => {
                matches!(
                    state,
                    CircuitState::Open | CircuitState::HalfOpen | CircuitState::RateLimited
                ) && node.breaker.is_call_permitted()
            }
        };
        if !evictable && used && pass != Pass::Unused {
            node.used.store(true, Ordering::Relaxed);
        }
        evictable.then_some(state)
    }
}

impl<K> KeyedCircuitBreakers<K> {
    /// The registry's name (the template breaker's name).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// How many keys have a breaker now.
    pub fn len(&self) -> usize {
        self.shared
            .shards
            .iter()
            .map(|shard| shard.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
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

    /// How many lookups and calls the [`overflow`](Self::overflow) breaker served because
    /// the registry had no room for their key (or could not build its breaker).
    pub fn overflowed(&self) -> u64 {
        self.shared.overflowed.load(Ordering::Relaxed)
    }

    /// `f(key, breaker)` for every key. The handles are taken one shard (read-locked) at a
    /// time, and `f` runs with no lock held: reading a state may run a listener, which may
    /// look keys up.
    fn collect<T>(&self, f: impl Fn(&K, &CircuitBreaker) -> T) -> Vec<T>
    where
        K: Clone,
    {
        let all = self.breakers();
        all.iter().map(|(k, b)| f(k, b)).collect()
    }

    /// Every key with its breaker, in no particular order. (The handles are taken one shard,
    /// read-locked, at a time.)
    pub fn breakers(&self) -> Vec<(K, CircuitBreaker)>
    where
        K: Clone,
    {
        let mut all = Vec::new();
        for shard in self.shared.shards.iter() {
            let map = shard.read().unwrap_or_else(PoisonError::into_inner);
            all.extend(map.iter().map(|(k, node)| {
                node.withdraw();
                (k.clone(), node.breaker.clone())
            }));
        }
        all
    }

    /// Every key with its state.
    pub fn states(&self) -> Vec<(K, CircuitState)>
    where
        K: Clone,
    {
        self.collect(|k, b| (k.clone(), b.state()))
    }

    /// Every key with a snapshot of its breaker's metrics.
    pub fn metrics(&self) -> Vec<(K, CircuitBreakerMetrics)>
    where
        K: Clone,
    {
        self.collect(|k, b| (k.clone(), b.metrics()))
    }

    /// The state of `key`'s breaker, if it has one (does not create it).
    pub fn state(&self, key: &K) -> Option<CircuitState>
    where
        K: Hash + Eq,
    {
        let s = &self.shared;
        let shard = &s.shards[s.hasher.hash_one(key) as usize & (SHARDS - 1)];
        let breaker = {
            let map = shard.read().unwrap_or_else(PoisonError::into_inner);
            let node = map.get(key)?;
            node.withdraw();
            node.breaker.clone()
        };
        // With no lock held: reading the state may run a listener.
        Some(breaker.state())
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
                hasher: RandomState::new(),
                shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
                reserved: AtomicUsize::new(0),
                sweep: Mutex::new(0),
                overflow,
                evicted: AtomicU64::new(0),
                overflowed: AtomicU64::new(0),
                overflowing: AtomicBool::new(false),
            }),
        })
    }
}
