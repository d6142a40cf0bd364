use super::Protocol;
use crate::circuit_breaker::CircuitBreaker;
use crate::keyed::KeyedCircuitBreakers;
use std::fmt;
use std::hash::Hash;
use std::time::Duration;

/// A [`Protocol`] that also names the breaker each request's attempts go through: the one of
/// its key (a model, a host) in a [`KeyedCircuitBreakers`] registry. Made by
/// [`Builder::breaker_per_key`](super::Builder::breaker_per_key); every other rule is `P`'s.
pub struct BreakerPerKey<P, K, KF> {
    inner: P,
    breakers: KeyedCircuitBreakers<K>,
    key: KF,
}

impl<P, K, KF> BreakerPerKey<P, K, KF> {
    pub(crate) fn new(inner: P, breakers: KeyedCircuitBreakers<K>, key: KF) -> Self {
        Self {
            inner,
            breakers,
            key,
        }
    }

    /// The registry the breakers are looked up in.
    pub fn breakers(&self) -> &KeyedCircuitBreakers<K> {
        &self.breakers
    }
}

impl<P: Clone, K, KF: Clone> Clone for BreakerPerKey<P, K, KF> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breakers: self.breakers.clone(),
            key: self.key.clone(),
        }
    }
}

impl<P: fmt::Debug, K, KF> fmt::Debug for BreakerPerKey<P, K, KF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPerKey")
            .field("inner", &self.inner)
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

impl<P, K, KF, Req, Res, E> Protocol<Req, Res, E> for BreakerPerKey<P, K, KF>
where
    P: Protocol<Req, Res, E>,
    K: Hash + Eq + Clone + fmt::Display,
    KF: Fn(&Req) -> K,
{
    fn clone_request(&self, req: &Req) -> Option<Req> {
        self.inner.clone_request(req)
    }

    fn is_idempotent(&self, req: &Req) -> bool {
        self.inner.is_idempotent(req)
    }

    fn server_delay(&self, result: &Result<Res, E>) -> Option<Duration> {
        self.inner.server_delay(result)
    }

    /// The breaker of `req`'s key (the registry's overflow breaker when it is full, as for the
    /// keyed layer).
    fn breaker(&self, req: &Req) -> Option<CircuitBreaker> {
        Some(self.breakers.get(&(self.key)(req)))
    }
}
