//! The layer and service: one breaker per key of the request, with a small per-service cache.

use super::{KeyedCircuitBreakers, Node};
use crate::BoxError;
use crate::circuit_breaker::{ClassifyNow, RecordOutcome, ResponseFuture};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
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
                    self.cache.insert(key, node);
                    admitted
                }
                None => self.layer.breakers.overflow().try_acquire(),
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
/// It holds the registry's `Node`, not a breaker handle, so it does not make the breaker look
/// busy to the eviction sweep. An evicted node is marked, and dropped here at its next use. A
/// call racing with its key's eviction (the sweep saw the breaker idle just before) may still
/// be recorded by the evicted breaker: an idle closed one, and that one outcome is lost.
struct Cache<K> {
    entries: Vec<(K, Arc<Node>)>,
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
    fn find(&mut self, key: &K) -> Option<&Arc<Node>> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        if self.entries[i].1.is_evicted() {
            self.entries.swap_remove(i);
            return None;
        }
        let node = &self.entries[i].1;
        node.touch();
        Some(node)
    }

    #[cold]
    fn insert(&mut self, key: K, node: Arc<Node>) {
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
