//! The layer and service: one breaker per key of the request, with a small per-service cache.

use super::{KeyedCircuitBreakers, Node};
use crate::BoxError;
use crate::circuit_breaker::{ClassifyNow, RecordOutcome, ResponseFuture};
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{Ordering, fence};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

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
            cache: Cache::new(),
        }
    }
}

/// A service guarded by one breaker per key; made by [`KeyedCircuitBreakerLayer`].
///
/// The key is only known in `call`, so the permit is taken there: the inner service is polled
/// ready first, and a rejected call leaves it ready for the next one.
///
/// Each service (each clone) remembers the breakers of the last few keys it called, so that a
/// call for one of them finds its breaker without a lock or a hash.
pub struct KeyedCircuitBreakerService<S, K, KF, R = ClassifyNow> {
    inner: S,
    layer: KeyedCircuitBreakerLayer<K, KF, R>,
    cache: Cache<K>,
}

impl<S: Clone, K, KF: Clone, R: Clone> Clone for KeyedCircuitBreakerService<S, K, KF, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
            // A clone starts with an empty cache: it costs no allocation.
            cache: Cache::new(),
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
        let admitted = match self.cache.find(&key) {
            Some(node) => node.breaker.try_acquire(),
            None => match self.layer.breakers.node(&key) {
                Some(node) => {
                    let admitted = node.breaker.try_acquire();
                    self.cache.insert(key, &node);
                    admitted
                }
                None => self.layer.breakers.overflowed_for(&key).try_acquire(),
            },
        };
        match admitted {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.layer.recorder.clone())
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}

/// Keys a service remembers.
const CACHED_KEYS: usize = 8;

/// The nodes of the last keys a service called, found by `Eq` (no hash, no lock).
///
/// It holds a `Weak` reference to the registry's `Node`, not a breaker handle: between calls
/// it keeps nothing alive (an evicted breaker, and its shared-state sync task, go when the
/// registry drops them) and does not make the breaker look busy to the eviction sweep. During
/// a call it holds the node, which the sweep sees; a node evicted before it is found is
/// marked, and the key is looked up in the registry again (see `KeyedCircuitBreakers::claimed`
/// for how the two meet with no lock).
struct Cache<K> {
    entries: Vec<(K, Weak<Node>)>,
    /// The entry the next insertion replaces once the cache is full.
    next: usize,
}

impl<K> Cache<K> {
    fn new() -> Self {
        Self {
            entries: Vec::new(),
            next: 0,
        }
    }
}

impl<K: Eq> Cache<K> {
    #[inline]
    fn find(&mut self, key: &K) -> Option<Arc<Node>> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        let Some(node) = self.entries[i].1.upgrade() else {
            // Evicted and dropped by the registry.
            self.entries.swap_remove(i);
            return None;
        };
        // The reference is taken and the node withdrawn from a sweep before `evicted` is
        // read; the sweep sets `evicted` before it checks them (SeqCst fences on both sides).
        node.touch();
        fence(Ordering::SeqCst);
        if node.is_evicted() {
            self.entries.swap_remove(i);
            return None;
        }
        Some(node)
    }

    #[cold]
    fn insert(&mut self, key: K, node: &Arc<Node>) {
        let node = Arc::downgrade(node);
        if self.entries.len() < CACHED_KEYS {
            if self.entries.capacity() == 0 {
                self.entries.reserve_exact(CACHED_KEYS);
            }
            self.entries.push((key, node));
        } else {
            self.next = (self.next + 1) % CACHED_KEYS;
            self.entries[self.next] = (key, node);
        }
    }
}

// Not under loom: these build breakers outside a loom model.
#[cfg(all(test, not(tower_breaker_loom)))]
mod tests {
    use super::*;
    use crate::circuit_breaker::{CircuitBreaker, CircuitState};
    use tower::{ServiceExt, service_fn};

    fn registry() -> KeyedCircuitBreakers<String> {
        KeyedCircuitBreakers::builder(CircuitBreaker::builder("model"))
            .max_keys(1)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn call<S: Service<String, Error = BoxError>>(svc: &mut S, key: &str) {
        let svc = svc.ready().await.unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = svc.call(key.to_owned()).await {
            panic!("{e}")
        }
    }

    /// Regression: the cache held the registry's node, so an evicted breaker (and, with
    /// shared state, its sync task) lived on until the service looked that key up again.
    #[tokio::test(start_paused = true)]
    async fn an_evicted_breaker_is_dropped_though_a_service_called_its_key() {
        let keyed = registry();
        let mut svc = KeyedCircuitBreakerLayer::new(keyed.clone(), |k: &String| k.clone())
            .layer(service_fn(|_: String| async { Ok::<_, BoxError>(()) }));
        let a = "a".to_string();
        call(&mut svc, &a).await;
        assert_eq!(svc.cache.entries.len(), 1, "the service remembers `a`");
        let breaker = keyed
            .node(&a)
            .map(|node| Arc::downgrade(&node.breaker.shared))
            .unwrap_or_else(|| panic!("`a` has a breaker"));

        // `b` takes the only place: `a` is evicted, and its breaker is gone.
        drop(keyed.get(&"b".to_string()));
        assert_eq!(keyed.evicted(), 1);
        assert_eq!(
            breaker.strong_count(),
            0,
            "the service's memory of `a` keeps its breaker alive"
        );
        // The service finds its way back to the registry.
        call(&mut svc, &a).await;
        assert_eq!(keyed.state(&a), Some(CircuitState::Closed));
    }

    /// Regression: a call that found its key's node in the cache could have it evicted under
    /// it (the sweep looked only at the breaker's handles), and then recorded its outcome on
    /// a breaker the registry no longer had.
    #[test]
    fn a_sweep_never_evicts_the_node_a_call_has_found() {
        let keyed = registry();
        let a = "a".to_string();
        let mut cache = Cache::new();
        let node = keyed.node(&a).unwrap_or_else(|| panic!("room for `a`"));
        cache.insert(a.clone(), &node);
        drop(node);

        // A call has found `a` and is about to take a permit when a sweep runs.
        let found = cache.find(&a).unwrap_or_else(|| panic!("cached"));
        assert!(
            keyed.lookup(&"b".to_string()).is_overflow(),
            "`a` is in use"
        );
        assert!(!found.is_evicted());
        let permit = found
            .breaker
            .try_acquire()
            .unwrap_or_else(|e| panic!("{e}"));
        permit.record(crate::Outcome::Success);
        assert_eq!(keyed.get(&a).metrics().successful_calls, 1);
        drop(found);

        // Between calls, the cache does not hold the node: it can go.
        assert!(!keyed.lookup(&"b".to_string()).is_overflow());
        assert_eq!(keyed.evicted(), 1);
        assert!(cache.find(&a).is_none(), "evicted and dropped");
    }
}
