use super::cool_down::CoolDownWaits;
use super::events::RetryEvent;
use super::policy::{PolicyRng, Shared};
use super::protocol_keyed::BreakerPerKey;
use super::{Cloneable, RetryBudget, RetryPolicy};
use crate::backoff::{Backoff, Rng};
use crate::circuit_breaker::CircuitBreaker;
use crate::config::{Check, ConfigError, MAX_DURATION, MIN_DURATION};
use crate::events::{Listener, Listeners};
use crate::keyed::KeyedCircuitBreakers;
use crate::outcome::DefaultClassifier;
use crate::random::{AtomicSplitMix64, entropy_seed};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The most calls that may wait out a cool-down at once.
const MAX_COOL_DOWN_WAITS: u64 = 100_000;

/// Builds a [`RetryPolicy`]; see [`RetryPolicy::builder`] for the defaults.
/// [`build`](Builder::build) checks every setting and returns a [`ConfigError`] naming the one
/// that is wrong.
///
/// `C` is the classifier (which results are failures worth retrying) and `P` the
/// [`Protocol`](super::Protocol) (how to copy requests, which are idempotent, what the server
/// asked); [`classify`](Builder::classify) and [`protocol`](Builder::protocol) replace them.
pub struct Builder<C = DefaultClassifier, P = Cloneable> {
    name: Arc<str>,
    max_attempts: u32,
    backoff: Backoff,
    deadline: Option<Duration>,
    reserve_for_last_attempt: f64,
    budget: Option<RetryBudget>,
    max_server_delay: Duration,
    retry_non_idempotent: bool,
    retry_bulkhead_full: bool,
    rng: Option<Rngs>,
    listeners: Listeners<RetryEvent>,
    breaker: Option<CircuitBreaker>,
    wait_out_cool_downs: usize,
    classifier: C,
    protocol: P,
}

enum Rngs {
    Seed(u64),
    Custom(Box<dyn Rng + Send>),
}

impl Builder {
    pub(crate) fn new() -> Self {
        Self {
            name: Arc::from("retry"),
            max_attempts: 3,
            backoff: Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10))
                .full_jitter(),
            deadline: None,
            reserve_for_last_attempt: 0.0,
            budget: Some(RetryBudget::new(0.2, 10)),
            max_server_delay: Duration::from_secs(30),
            retry_non_idempotent: false,
            retry_bulkhead_full: true,
            rng: None,
            listeners: Listeners::new(),
            breaker: None,
            wait_out_cool_downs: 0,
            classifier: DefaultClassifier,
            protocol: Cloneable,
        }
    }
}

impl<C, P> Builder<C, P> {
    /// The policy's name, in every event, log line and configuration error (default `"retry"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The most attempts per request, the first call included (1 to 100, default 3; 1 never
    /// retries).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The delays between attempts (default: exponential from 100 ms to 10 s, full jitter).
    /// A server's `Retry-After` replaces the delay for that retry.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The total time for all attempts and waits of one request, from the start of the first
    /// attempt (1 ms to 24 h, default none). The policy gives up at once, instead of sleeping,
    /// when the next wait would not end before it (see
    /// [`reserve_for_last_attempt`](Self::reserve_for_last_attempt)).
    ///
    /// The policy cannot cancel an attempt in flight: put a `tower::timeout` around the retry
    /// layer to bound the whole call, and one inside it to bound each attempt.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The share of the deadline (0.0 to just under 1.0, default 0.0; needs a
    /// [`deadline`](Self::deadline)) that must still be left when a retry starts, so that the
    /// last attempt has time to finish. A retry whose wait would leave less is not made.
    pub fn reserve_for_last_attempt(mut self, fraction: f64) -> Self {
        self.reserve_for_last_attempt = fraction;
        self
    }

    /// The retry budget (default `RetryBudget::new(0.2, 10)`, one per built policy). Pass a
    /// clone of one budget to several policies to share it.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// No retry budget: every failure may be retried up to `max_attempts`. Beware: during an
    /// outage this multiplies the load on the upstream by `max_attempts`.
    pub fn no_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// The longest server-requested wait (`Retry-After` on a 429 or 503) that is honoured as
    /// is (0 to 24 h, default 30 s); a longer one is cut to this.
    pub fn max_server_delay(mut self, max: Duration) -> Self {
        self.max_server_delay = max;
        self
    }

    /// Retries requests that the protocol says are not idempotent (a POST without an
    /// `Idempotency-Key`, say) as if they were (default false). Only for upstreams that
    /// deduplicate on their own.
    pub fn retry_non_idempotent(mut self, retry: bool) -> Self {
        self.retry_non_idempotent = retry;
        self
    }

    /// Retries calls that our own bulkhead rejected (`BulkheadFull`, `BulkheadTimeout`) after
    /// the backoff (default true: the upstream was not called, a slot may be free soon).
    pub fn retry_bulkhead_full(mut self, retry: bool) -> Self {
        self.retry_bulkhead_full = retry;
        self
    }

    /// Seeds the built-in jitter generator, for reproducible delays in tests (default: a seed
    /// from the process's hash randomness).
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = Some(Rngs::Seed(seed));
        self
    }

    /// Draws the jitter from `rng`, shared by every clone of the policy (it is locked for each
    /// draw, once per retry).
    pub fn rng(mut self, rng: impl Rng + Send + 'static) -> Self {
        self.rng = Some(Rngs::Custom(Box::new(rng)));
        self
    }

    /// Adds a listener for every [`RetryEvent`].
    pub fn on_event(mut self, listener: impl Listener<RetryEvent>) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// The circuit breaker this policy's attempts go through (inside the retry layer), so that
    /// no attempt sleeps toward a breaker that rejects:
    ///
    /// - when a result comes back and the breaker already rejects (this failure opened it, say)
    ///   and will still reject when the backoff ends, the next attempt is made at once, without
    ///   a budget token: the breaker rejects it without calling the upstream, and the policy
    ///   gives up with the breaker's error ([`GiveUpReason::CircuitOpen`](super::GiveUpReason)
    ///   or `RateLimited`);
    /// - an attempt already sleeping in backoff wakes as soon as the breaker opens (on the
    ///   breaker's state change, not by polling) and gives up the same way.
    ///
    /// So during an outage a caller waits for the breaker to open, not for backoffs toward it.
    /// [`StandardResilience`](crate::stack::StandardResilience) sets this for its own breaker.
    ///
    /// ```
    /// use tower_breaker::circuit_breaker::CircuitBreaker;
    /// use tower_breaker::retry::RetryPolicy;
    ///
    /// let breaker = CircuitBreaker::builder("openai").build()?;
    /// let policy = RetryPolicy::builder().breaker(&breaker).build()?;
    /// let client = tower::ServiceBuilder::new()
    ///     .retry(policy)
    ///     .layer(breaker.layer())
    ///     .service(tower::service_fn(|q: String| async move { Ok::<_, tower::BoxError>(q) }));
    /// # let _ = client;
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    pub fn breaker(mut self, breaker: &CircuitBreaker) -> Self {
        self.breaker = Some(breaker.clone());
        self
    }

    /// The breakers this policy's attempts go through when there is one per key (a model, a
    /// host): a request's attempts are judged by, and wait for, the breaker of `key(request)`
    /// in `breakers`, with every rule of [`breaker`](Self::breaker) (which it replaces). Give
    /// the same registry and key to the [`KeyedCircuitBreakerLayer`](crate::keyed::KeyedCircuitBreakerLayer)
    /// inside the retry layer, or use [`StandardResilience`](crate::stack::StandardResilience)'s
    /// `per_key`, which does both.
    ///
    /// ```
    /// use tower_breaker::circuit_breaker::CircuitBreaker;
    /// use tower_breaker::keyed::{KeyedCircuitBreakerLayer, KeyedCircuitBreakers};
    /// use tower_breaker::retry::RetryPolicy;
    ///
    /// // Requests are (model, prompt).
    /// let model = |req: &(String, String)| req.0.clone();
    /// let breakers: KeyedCircuitBreakers<String> =
    ///     KeyedCircuitBreakers::builder(CircuitBreaker::builder("model")).build()?;
    /// let policy = RetryPolicy::builder().breaker_per_key(breakers.clone(), model).build()?;
    /// let client = tower::ServiceBuilder::new()
    ///     .retry(policy)
    ///     .layer(KeyedCircuitBreakerLayer::new(breakers, model))
    ///     .service(tower::service_fn(|(_, q): (String, String)| async move { Ok::<_, tower::BoxError>(q) }));
    /// # let _ = client;
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    pub fn breaker_per_key<Req, K, KF>(
        self,
        breakers: KeyedCircuitBreakers<K>,
        key: KF,
    ) -> Builder<C, BreakerPerKey<P, K, KF>>
    where
        KF: Fn(&Req) -> K,
    {
        self.keyed_breakers(breakers, key)
    }

    /// [`breaker_per_key`](Self::breaker_per_key) without naming the request type (the key
    /// function's bound is checked where the policy is used).
    pub(crate) fn keyed_breakers<K, KF>(
        self,
        breakers: KeyedCircuitBreakers<K>,
        key: KF,
    ) -> Builder<C, BreakerPerKey<P, K, KF>> {
        let mut builder = self.map_protocol(|inner| BreakerPerKey::new(inner, breakers, key));
        builder.breaker = None;
        builder
    }

    /// Lets a call that the breaker's rate-limit cool-down rejected wait for the cool-down to
    /// end and go out then, as the official SDKs wait after a 429, instead of failing fast with
    /// [`RateLimited`](crate::circuit_breaker::RateLimited): at most `max_waiting` calls wait
    /// at once (0 to 100,000, default 0: every such call fails fast), each only when the
    /// [`deadline`](Self::deadline) leaves room after the cool-down (with
    /// [`reserve_for_last_attempt`](Self::reserve_for_last_attempt)); the others fail fast.
    /// Needs a [`breaker`](Self::breaker) (or [`breaker_per_key`](Self::breaker_per_key)) and a
    /// deadline; [`StandardResilience`](crate::stack::StandardResilience) gives its total
    /// timeout as the deadline, and its `.llm()` preset waits with up to 32 calls.
    ///
    /// The waiting call wakes at the very instant the breaker admits calls again, counts as no
    /// attempt (the upstream was not called) and spends no budget token
    /// ([`RetryReason::CoolDown`](super::RetryReason::CoolDown) in its event). A request the
    /// policy does not copy (not idempotent, say) is never retried, so it fails fast.
    pub fn wait_out_cool_downs(mut self, max_waiting: usize) -> Self {
        self.wait_out_cool_downs = max_waiting;
        self
    }

    /// True when a [`deadline`](Self::deadline) was set.
    #[cfg(feature = "stack")]
    pub(crate) fn has_deadline(&self) -> bool {
        self.deadline.is_some()
    }

    /// Retries the results that `classifier` counts as [`Outcome::Failure`](crate::Outcome)
    /// (default: every `Err`, no `Ok`). The same [`Classify`](crate::Classify) trait as the
    /// circuit breaker's, so closures work.
    pub fn classify<C2>(self, classifier: C2) -> Builder<C2, P> {
        Builder {
            name: self.name,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            deadline: self.deadline,
            reserve_for_last_attempt: self.reserve_for_last_attempt,
            budget: self.budget,
            max_server_delay: self.max_server_delay,
            retry_non_idempotent: self.retry_non_idempotent,
            retry_bulkhead_full: self.retry_bulkhead_full,
            rng: self.rng,
            listeners: self.listeners,
            breaker: self.breaker,
            wait_out_cool_downs: self.wait_out_cool_downs,
            classifier,
            protocol: self.protocol,
        }
    }

    /// Copies requests, judges idempotency and reads server delays with `protocol` (default
    /// [`Cloneable`]).
    pub fn protocol<P2>(self, protocol: P2) -> Builder<C, P2> {
        self.map_protocol(|_| protocol)
    }

    /// Replaces the protocol with one made from it (a wrapper).
    pub(crate) fn map_protocol<P2>(self, wrap: impl FnOnce(P) -> P2) -> Builder<C, P2> {
        Builder {
            name: self.name,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            deadline: self.deadline,
            reserve_for_last_attempt: self.reserve_for_last_attempt,
            budget: self.budget,
            max_server_delay: self.max_server_delay,
            retry_non_idempotent: self.retry_non_idempotent,
            retry_bulkhead_full: self.retry_bulkhead_full,
            rng: self.rng,
            listeners: self.listeners,
            breaker: self.breaker,
            wait_out_cool_downs: self.wait_out_cool_downs,
            classifier: self.classifier,
            protocol: wrap(self.protocol),
        }
    }

    /// For `http::Request<B>` (with a `Clone` body) and `http::Response<B>`: retries the
    /// statuses of [`RetryOnStatus::standard`](super::RetryOnStatus::standard) and errors,
    /// honours `Retry-After` / `retry-after-ms` on 429 and 503, and retries only idempotent
    /// requests ([`HttpRequests`](super::HttpRequests)).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http(self) -> Builder<super::RetryOnStatus, super::HttpRequests> {
        self.classify(super::RetryOnStatus::standard())
            .protocol(super::HttpRequests)
    }

    /// For `reqwest::Request` and `reqwest::Response` (`reqwest::Client` is a tower
    /// `Service`): the same rules as [`http`](Self::http), with requests copied by
    /// `try_clone` ([`ReqwestRequests`](super::ReqwestRequests)).
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub fn reqwest(self) -> Builder<super::RetryOnStatus, super::ReqwestRequests> {
        self.classify(super::RetryOnStatus::standard())
            .protocol(super::ReqwestRequests)
    }

    /// The official OpenAI and Anthropic SDKs' retry rules, for LLM APIs over
    /// `http::Request<B>` (a `Clone` body) or `reqwest::Request`:
    ///
    /// | rule | setting |
    /// |---|---|
    /// | what is retried | errors (timeouts, connection errors), 408, 409, 429, every 5xx (529 included); `x-should-retry: true/false` on an error status overrides it ([`RetryOnStatus::llm`](super::RetryOnStatus::llm)) |
    /// | which requests | POSTs too: a completion creates nothing, a retry costs tokens, not correctness ([`LlmRequests`](super::LlmRequests)) |
    /// | the wait | `retry-after-ms`, then `Retry-After`, when above zero and at most 60 s; otherwise the backoff |
    /// | backoff | exponential from 0.5 s, doubling to 8 s, ±25 % jitter |
    /// | attempts | 3 (2 retries) |
    ///
    /// The budget, the deadline and every other setting keep their values, and each can be
    /// changed after this call. With a breaker inside the retry, a 429 cools the breaker down
    /// (see [`HttpClassifier`](crate::http::HttpClassifier)) and give
    /// [`breaker`](Self::breaker) so that retries stop as soon as it opens.
    ///
    /// ```
    /// use tower_breaker::retry::RetryPolicy;
    ///
    /// let policy = RetryPolicy::builder().name("openai").llm().build()?;
    /// assert_eq!(policy.max_attempts(), 3);
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn llm(self) -> Builder<super::RetryOnStatus, super::LlmRequests> {
        self.classify(super::RetryOnStatus::llm())
            .protocol(super::LlmRequests)
            .max_attempts(3)
            .backoff(
                Backoff::exponential(Duration::from_millis(500), Duration::from_secs(8))
                    .jitter(0.25),
            )
            .max_server_delay(super::LLM_MAX_SERVER_DELAY)
    }

    /// Checks every setting and builds the policy.
    pub fn build(self) -> Result<RetryPolicy<C, P>, ConfigError> {
        let name = self.name;
        let check = Check { component: &name };
        check.range_u64("max_attempts", u64::from(self.max_attempts), 1, 100)?;
        self.backoff.check(&name)?;
        if let Some(deadline) = self.deadline {
            check.duration("deadline", deadline, MIN_DURATION, MAX_DURATION)?;
        }
        let fraction = self.reserve_for_last_attempt;
        if !(0.0..1.0).contains(&fraction) {
            return Err(ConfigError::new(
                &*name,
                "reserve_for_last_attempt",
                fraction,
                "0.0 <= x < 1.0",
            ));
        }
        if fraction > 0.0 && self.deadline.is_none() {
            return Err(ConfigError::new(
                &*name,
                "reserve_for_last_attempt",
                fraction,
                "0.0 without a deadline (a reserve is a share of the deadline)",
            ));
        }
        check.duration(
            "max_server_delay",
            self.max_server_delay,
            Duration::ZERO,
            MAX_DURATION,
        )?;
        if let Some(budget) = &self.budget {
            budget.check(&name)?;
        }
        check.range_u64(
            "wait_out_cool_downs",
            self.wait_out_cool_downs as u64,
            0,
            MAX_COOL_DOWN_WAITS,
        )?;
        if self.wait_out_cool_downs > 0 && self.deadline.is_none() {
            return Err(ConfigError::new(
                &*name,
                "wait_out_cool_downs",
                self.wait_out_cool_downs,
                "0 without a deadline (a call waits only when its deadline outlasts the cool-down)",
            ));
        }
        let reserve = self
            .deadline
            .and_then(|deadline| {
                Duration::try_from_secs_f64(deadline.as_secs_f64() * fraction).ok()
            })
            .unwrap_or(Duration::ZERO);
        let rng = match self.rng {
            None => PolicyRng::Seeded(AtomicSplitMix64::new(entropy_seed())),
            Some(Rngs::Seed(seed)) => PolicyRng::Seeded(AtomicSplitMix64::new(seed)),
            Some(Rngs::Custom(rng)) => PolicyRng::Custom(Mutex::new(rng)),
        };
        let shared = Shared {
            name,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            deadline: self.deadline,
            reserve,
            budget: self.budget,
            max_server_delay: self.max_server_delay,
            retry_non_idempotent: self.retry_non_idempotent,
            retry_bulkhead_full: self.retry_bulkhead_full,
            rng,
            listeners: self.listeners,
            breaker: self.breaker,
            cool_down_waits: (self.wait_out_cool_downs > 0)
                .then(|| CoolDownWaits::new(self.wait_out_cool_downs)),
        };
        Ok(RetryPolicy::from_parts(
            shared,
            self.classifier,
            self.protocol,
        ))
    }
}

impl<C, P> fmt::Debug for Builder<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("deadline", &self.deadline)
            .field("reserve_for_last_attempt", &self.reserve_for_last_attempt)
            .field("budget", &self.budget)
            .field("max_server_delay", &self.max_server_delay)
            .field("retry_non_idempotent", &self.retry_non_idempotent)
            .field("retry_bulkhead_full", &self.retry_bulkhead_full)
            .field("listeners", &self.listeners)
            .field("breaker", &self.breaker.as_ref().map(CircuitBreaker::name))
            .field("wait_out_cool_downs", &self.wait_out_cool_downs)
            .finish_non_exhaustive()
    }
}
