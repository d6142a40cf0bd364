//! The one-call stack with one circuit breaker per key (per model, per host).

use super::{Builder, check_window, with_deadline};
use crate::bulkhead::{Bulkhead, BulkheadService};
use crate::call_span::{CallSpan, CallSpanLayer};
use crate::circuit_breaker::Builder as BreakerBuilder;
use crate::config::ConfigError;
use crate::keyed::{KeyedCircuitBreakerLayer, KeyedCircuitBreakerService, KeyedCircuitBreakers};
use crate::retry::{BreakerPerKey, RetryPolicy};
use std::fmt;
use std::hash::Hash;
use std::time::Duration;
use tower::retry::Retry;
use tower::timeout::Timeout;
use tower_layer::{Identity, Layer};

impl<C, P, R, I> Builder<C, P, R, I> {
    /// One circuit breaker per key instead of one for all calls: `key` picks it from the
    /// request (the model of an OpenAI-compatible gateway, say), and every key's breaker is
    /// built with this builder's breaker settings (a preset's included) and named
    /// `<name>:<key>`. The retry asks the breaker of the request's key: it stops when that
    /// one opens and waits out that one's cool-down, while the other keys' calls go on.
    ///
    /// ```
    /// use tower::Layer;
    /// use tower_breaker::stack::StandardResilience;
    ///
    /// // The model, from a header the gateway sets (parse the body's `model` as you like).
    /// let model = |req: &http::Request<String>| {
    ///     req.headers().get("x-model").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    /// };
    /// let gateway = StandardResilience::builder("gateway").llm().per_key(model).max_keys(100).build()?;
    /// let client = gateway.layer(tower::service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, tower::BoxError>(http::Response::new(String::new()))
    /// }));
    /// # let _ = client;
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    pub fn per_key<Req, K, KF>(self, key: KF) -> KeyedBuilder<K, KF, C, P, R, I>
    where
        KF: Fn(&Req) -> K,
    {
        KeyedBuilder {
            stack: self,
            key,
            max_keys: None,
            overrides: Vec::new(),
        }
    }
}

/// Builds a [`KeyedStandardResilience`]; see [`Builder::per_key`].
pub struct KeyedBuilder<K, KF, C, P, R, I = Identity> {
    stack: Builder<C, P, R, I>,
    key: KF,
    max_keys: Option<usize>,
    overrides: Vec<(K, BreakerBuilder)>,
}

impl<K, KF, C, P, R, I> fmt::Debug for KeyedBuilder<K, KF, C, P, R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBuilder")
            .field("stack", &self.stack)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl<K, KF, C, P, R, I> KeyedBuilder<K, KF, C, P, R, I>
where
    K: Hash + Eq + Clone + fmt::Display,
    KF: Clone,
{
    /// At most this many keys have a breaker (see [`crate::keyed`]; 1 to 1,000,000, default
    /// 1,000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = Some(max_keys);
        self
    }

    /// Builds `key`'s breaker from `breaker` instead of the stack's settings.
    pub fn override_for(mut self, key: K, breaker: BreakerBuilder) -> Self {
        self.overrides.push((key, breaker));
        self
    }

    /// Builds every part and checks that they fit, as [`Builder::build`] does, for the
    /// stack's breaker settings and every override.
    pub fn build(self) -> Result<KeyedStandardResilience<K, KF, C, P, R, I>, ConfigError> {
        let stack = self.stack;
        stack.check_timeouts()?;
        let mut keys = KeyedCircuitBreakers::builder(stack.breaker);
        if let Some(max_keys) = self.max_keys {
            keys = keys.max_keys(max_keys);
        }
        for (key, breaker) in self.overrides {
            check_window(
                &stack.name,
                stack.attempt_timeout,
                &breaker.clone().build()?,
            )?;
            keys = keys.override_for(key, breaker);
        }
        let breakers = keys.build()?;
        // The overflow breaker is built with the stack's breaker settings.
        check_window(&stack.name, stack.attempt_timeout, breakers.overflow())?;
        let retry = with_deadline(stack.retry, stack.total_timeout)
            .keyed_breakers(breakers.clone(), self.key.clone())
            .build()?;
        Ok(KeyedStandardResilience {
            innermost: stack.innermost,
            total_timeout: stack.total_timeout,
            attempt_timeout: stack.attempt_timeout,
            retry,
            breakers,
            key: self.key,
            recorder: stack.recorder,
            bulkhead: stack.bulkhead.build()?,
            span: CallSpanLayer::new(&stack.name),
        })
    }
}

/// [`StandardResilience`](super::StandardResilience) with one circuit breaker per key: total
/// timeout, retry, the key's breaker, bulkhead (one for all keys) and attempt timeout, in
/// that order. Made by [`Builder::per_key`]. A `Layer`: every service it wraps shares the
/// breakers, the bulkhead and the retry budget.
pub struct KeyedStandardResilience<K, KF, C, P, R, I = Identity> {
    innermost: I,
    total_timeout: Duration,
    attempt_timeout: Duration,
    retry: RetryPolicy<C, BreakerPerKey<P, K, KF>>,
    breakers: KeyedCircuitBreakers<K>,
    key: KF,
    recorder: R,
    bulkhead: Bulkhead,
    /// Outermost: one span per call, named after the stack.
    span: CallSpanLayer,
}

impl<K, KF: Clone, C: Clone, P: Clone, R: Clone, I: Clone> Clone
    for KeyedStandardResilience<K, KF, C, P, R, I>
{
    fn clone(&self) -> Self {
        Self {
            span: self.span.clone(),
            innermost: self.innermost.clone(),
            total_timeout: self.total_timeout,
            attempt_timeout: self.attempt_timeout,
            retry: self.retry.clone(),
            breakers: self.breakers.clone(),
            key: self.key.clone(),
            recorder: self.recorder.clone(),
            bulkhead: self.bulkhead.clone(),
        }
    }
}

impl<K, KF, C, P, R, I> fmt::Debug for KeyedStandardResilience<K, KF, C, P, R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedStandardResilience")
            .field("total_timeout", &self.total_timeout)
            .field("retry", &self.retry.name())
            .field("breakers", &self.breakers)
            .field("bulkhead", &self.bulkhead.name())
            .field("attempt_timeout", &self.attempt_timeout)
            .finish()
    }
}

impl<K, KF, C, P, R, I> KeyedStandardResilience<K, KF, C, P, R, I> {
    /// The breakers, one per key (for health reports, metrics, manual control).
    pub fn breakers(&self) -> &KeyedCircuitBreakers<K> {
        &self.breakers
    }

    /// The bulkhead, shared by every key.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy<C, BreakerPerKey<P, K, KF>> {
        &self.retry
    }

    /// The timeout of the whole call.
    pub fn total_timeout(&self) -> Duration {
        self.total_timeout
    }

    /// The timeout of one attempt.
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }
}

/// The service a [`KeyedStandardResilience`] makes.
pub type KeyedStandardResilienceService<S, K, KF, C, P, R> = CallSpan<
    Timeout<
        Retry<
            RetryPolicy<C, BreakerPerKey<P, K, KF>>,
            KeyedCircuitBreakerService<BulkheadService<Timeout<S>>, K, KF, R>,
        >,
    >,
>;

impl<S, K, KF: Clone, C: Clone, P: Clone, R: Clone, I: Layer<S>> Layer<S>
    for KeyedStandardResilience<K, KF, C, P, R, I>
{
    type Service = KeyedStandardResilienceService<I::Service, K, KF, C, P, R>;

    fn layer(&self, inner: S) -> Self::Service {
        let attempt = Timeout::new(self.innermost.layer(inner), self.attempt_timeout);
        let limited = self.bulkhead.layer().layer(attempt);
        let guarded = KeyedCircuitBreakerLayer::new(self.breakers.clone(), self.key.clone())
            .record_with(self.recorder.clone())
            .layer(limited);
        let retried = Retry::new(self.retry.clone(), guarded);
        // Outermost: one span per call (the stack's name; the key's breaker records its own).
        self.span.layer(Timeout::new(retried, self.total_timeout))
    }
}

impl<K, KF, C, P, R, I> crate::builder_ext::sealed::StandardStack
    for KeyedStandardResilience<K, KF, C, P, R, I>
{
}
