use super::cool_down::{CoolDownWaits, WaitSlot};
use super::events::{GiveUpReason, RetryEvent, RetryReason};
use super::future::RetryDelay;
use super::{Builder, Cloneable, Protocol, RetryBudget};
use crate::backoff::{Backoff, Rng};
use crate::circuit_breaker::{Admission, CircuitBreaker, CircuitState};
use crate::events::Listeners;
use crate::outcome::DefaultClassifier;
use crate::random::AtomicSplitMix64;
use crate::rejection::{Rejection, RejectionKind};
use crate::{Classify, Outcome};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// A `tower::retry::Policy` that retries only what is safe, spreads retries out, and stops when
/// retrying cannot help. See the [module docs](super) for the rules, and
/// [`RetryPolicy::builder`] for the settings.
///
/// `tower::retry::Retry` clones the policy for every request: a clone is cheap (one `Arc` and a
/// few words) and carries the per-request state (attempt count, start time, last delay), while
/// the budget, the random generator and the listeners are shared by all clones.
///
/// An open breaker's rejection is never retried: the caller gets `CircuitOpen` at once.
///
/// ```
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
/// use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen};
/// use tower_breaker::retry::RetryPolicy;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let breaker = CircuitBreaker::builder("llm").build()?;
/// let mut client = ServiceBuilder::new()
///     .retry(RetryPolicy::builder().max_attempts(5).deadline(Duration::from_secs(20)).build()?)
///     .layer(breaker.layer())
///     .service(service_fn(|q: String| async move { Ok::<_, tower::BoxError>(q) }));
///
/// breaker.force_open();
/// let err = client.ready().await?.call("hi".into()).await.unwrap_err();
/// assert!(err.is::<CircuitOpen>());
/// assert_eq!(breaker.metrics().not_permitted_calls, 1); // one attempt, no retry
/// # Ok(())
/// # }
/// ```
pub struct RetryPolicy<C = DefaultClassifier, P = Cloneable> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) classifier: C,
    pub(crate) protocol: P,
    /// Attempts whose result this copy has seen.
    attempt: u32,
    /// When the first attempt started (set by `clone_request` before it is sent).
    started: Option<Instant>,
    /// The delay before the previous retry (decorrelated jitter grows from it).
    previous: Option<Duration>,
}

/// The checked settings and the state shared by every clone of a policy.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) deadline: Option<Duration>,
    /// The share of the deadline kept for the last attempt, as a duration.
    pub(crate) reserve: Duration,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) max_server_delay: Duration,
    pub(crate) retry_non_idempotent: bool,
    pub(crate) retry_bulkhead_full: bool,
    pub(crate) rng: PolicyRng,
    pub(crate) listeners: Listeners<RetryEvent>,
    /// The breaker the attempts go through, watched so that no attempt sleeps toward it.
    pub(crate) breaker: Option<CircuitBreaker>,
    /// The bound on calls that wait out the breaker's rate-limit cool-down; `None`: they fail
    /// fast.
    pub(crate) cool_down_waits: Option<CoolDownWaits>,
}

/// The jitter's random numbers, shared by every clone so that requests do not jitter in step.
pub(crate) enum PolicyRng {
    /// The built-in generator: lock-free.
    Seeded(AtomicSplitMix64),
    /// A caller's generator: locked for each draw (one per retry, never on the first attempt).
    Custom(Mutex<Box<dyn Rng + Send>>),
}

/// What to do with one attempt's result.
enum Decision {
    /// Not a failure: hand it back.
    Done,
    GiveUp(GiveUpReason),
    Retry {
        /// From the decision to `wake`, for the events.
        delay: Duration,
        /// When the next attempt starts: the one instant the wait sleeps to.
        wake: Instant,
        reason: RetryReason,
        server_delay: bool,
        /// The breaker the request's attempts go through, watched during the wait.
        breaker: Option<CircuitBreaker>,
        /// A place among the calls waiting out a cool-down (a rejected call, not an attempt).
        slot: Option<WaitSlot>,
    },
}

impl Decision {
    /// The next attempt right away: the breaker rejects it without calling the upstream, and
    /// the policy gives up with the breaker's error.
    fn at_once(now: Instant, reason: RetryReason) -> Self {
        Decision::Retry {
            delay: Duration::ZERO,
            wake: now,
            reason,
            server_delay: false,
            breaker: None,
            slot: None,
        }
    }
}

impl RetryPolicy {
    /// A builder with the defaults:
    ///
    /// | setting | default | allowed |
    /// |---|---|---|
    /// | `name` | `"retry"` | any |
    /// | `max_attempts` | 3 (the first call and two retries) | 1 to 100 |
    /// | `backoff` | `Backoff::exponential(100 ms, 10 s).full_jitter()` | see [`Backoff::validate`] |
    /// | `deadline` | none | 1 ms to 24 h |
    /// | `reserve_for_last_attempt` | 0.0 | 0.0 <= x < 1.0, with a deadline |
    /// | `budget` | `RetryBudget::new(0.2, 10)` (20 % of calls, 10 retries/s minimum) | see [`RetryBudget::validate`] |
    /// | `max_server_delay` | 30 s | 0 to 24 h |
    /// | `retry_non_idempotent` | false | |
    /// | `retry_bulkhead_full` | true | |
    /// | classifier | [`DefaultClassifier`]: every `Err` is a failure | any [`Classify`] |
    /// | protocol | [`Cloneable`]: `Clone` requests, all idempotent | any [`Protocol`] |
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl<C, P> RetryPolicy<C, P> {
    pub(crate) fn from_parts(shared: Shared, classifier: C, protocol: P) -> Self {
        Self {
            shared: Arc::new(shared),
            classifier,
            protocol,
            attempt: 0,
            started: None,
            previous: None,
        }
    }

    /// The policy's name (in every event and log line).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The most attempts per request, the first call included.
    pub fn max_attempts(&self) -> u32 {
        self.shared.max_attempts
    }

    /// The backoff between attempts.
    pub fn backoff(&self) -> &Backoff {
        &self.shared.backoff
    }

    /// The retry budget, if there is one.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// How many attempts this copy of the policy has seen the result of (the per-request
    /// state; 0 for the policy held by the service).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// A `tower::retry::RetryLayer` with this policy (the same as
    /// `tower::retry::RetryLayer::new(policy)`).
    pub fn layer(&self) -> tower::retry::RetryLayer<Self>
    where
        Self: Clone,
    {
        tower::retry::RetryLayer::new(self.clone())
    }

    fn decide<Req, Res, E>(&mut self, req: &Req, result: &Result<Res, E>) -> Decision
    where
        C: Classify<Res, E>,
        P: Protocol<Req, Res, E>,
        E: 'static,
    {
        // A result that is not retried reads no clock and looks up no breaker. Past the
        // classification: one clock read for the whole decision (the wake, the breaker's wait
        // and the deadline are compared as instants, never as durations read at different
        // times), and the breaker this request's attempts go through: its key's (one per
        // model), or the policy's own.
        let now = Instant::now;
        let breaker = || {
            self.protocol
                .breaker(req)
                .or_else(|| self.shared.breaker.clone())
        };
        let shared = &*self.shared;
        let reason = match result {
            Err(err) => match Rejection::of_any(err).map(|r| r.kind()) {
                Some(RejectionKind::CircuitOpen) => {
                    return Decision::GiveUp(GiveUpReason::CircuitOpen);
                }
                // Our breaker's cool-down: wait for its end if it is short enough and the
                // bound allows, as the SDKs wait after a 429.
                Some(RejectionKind::RateLimited) => {
                    return self
                        .wait_out_cool_down(breaker, now())
                        .unwrap_or(Decision::GiveUp(GiveUpReason::RateLimited));
                }
                // A quota with no room within its own `max_wait`: retrying sooner cannot fit
                // either; the caller has the error's wait.
                Some(RejectionKind::QuotaExceeded) => {
                    return Decision::GiveUp(GiveUpReason::RateLimited);
                }
                Some(kind) if kind.is_bulkhead() && shared.retry_bulkhead_full => {
                    RetryReason::BulkheadFull
                }
                Some(_) => return Decision::GiveUp(GiveUpReason::BulkheadFull),
                None if self.classifier.classify(result) == Outcome::Failure => RetryReason::Error,
                None => return Decision::GiveUp(GiveUpReason::NotRetryable),
            },
            Ok(_) if self.classifier.classify(result) == Outcome::Failure => RetryReason::Response,
            Ok(_) => return Decision::Done,
        };

        if self.attempt >= shared.max_attempts {
            return Decision::GiveUp(GiveUpReason::MaxAttempts);
        }
        if !shared.retry_non_idempotent && !self.protocol.is_idempotent(req) {
            return Decision::GiveUp(GiveUpReason::NotIdempotent);
        }

        let now = now();
        let started = *self.started.get_or_insert(now);
        let breaker = breaker();
        let server = self
            .protocol
            .server_delay(result)
            .map(|wait| wait.min(shared.max_server_delay));
        let delay = match server {
            Some(wait) => wait,
            None => shared.next_delay(self.attempt, self.previous),
        };
        let mut server_delay = server.is_some();
        let mut wake = now.checked_add(delay).unwrap_or(now);

        if let Some(breaker) = &breaker {
            match breaker.admission() {
                Admission::Now => {}
                // Free by the time the wait ends.
                Admission::At(_, until) if until <= wake => {}
                // A rate-limit cool-down that ends soon: wait for exactly its end (the
                // breaker's own instant, so the next attempt is admitted), as for a server's
                // `Retry-After` (the deadline and budget still apply).
                Admission::At(CircuitState::RateLimited, until)
                    if until - now <= shared.max_server_delay =>
                {
                    wake = until;
                    server_delay = true;
                }
                // Open, or no telling when: the next attempt is rejected at once, and the
                // policy gives up with the breaker's error.
                _ => return Decision::at_once(now, reason),
            }
        }

        if !shared.fits(started, wake) {
            return Decision::GiveUp(GiveUpReason::Deadline);
        }
        // Last, so that a retry refused for another reason spends no token.
        if let Some(budget) = &shared.budget {
            if !budget.withdraw() {
                return Decision::GiveUp(GiveUpReason::BudgetExhausted);
            }
        }
        Decision::Retry {
            delay: wake - now,
            wake,
            reason,
            server_delay,
            breaker,
            slot: None,
        }
    }

    /// A call that `breaker`'s rate-limit cool-down rejected waits for its end, when waiting
    /// out cool-downs is on, the deadline leaves room after it, and fewer than the bound of
    /// calls already wait. The rejected call did not reach the upstream: no attempt is counted
    /// and no budget token spent.
    fn wait_out_cool_down(
        &self,
        breaker: impl FnOnce() -> Option<CircuitBreaker>,
        now: Instant,
    ) -> Option<Decision> {
        let shared = &*self.shared;
        let waits = shared.cool_down_waits.as_ref()?;
        // Without a deadline a wait could not be bounded by the caller's time.
        shared.deadline?;
        let started = self.started.unwrap_or(now);
        let breaker = breaker()?;
        let Admission::At(CircuitState::RateLimited, until) = breaker.admission() else {
            return None;
        };
        if !shared.fits(started, until) {
            return None;
        }
        let slot = waits.try_take()?;
        Some(Decision::Retry {
            delay: until - now,
            wake: until,
            reason: RetryReason::CoolDown,
            server_delay: true,
            breaker: Some(breaker),
            slot: Some(slot),
        })
    }
}

impl Shared {
    /// True when an attempt that starts at `wake` does so before the deadline (counted from
    /// `started`) with the reserve still ahead; always, without a deadline.
    fn fits(&self, started: Instant, wake: Instant) -> bool {
        let Some(deadline) = self.deadline else {
            return true;
        };
        started
            .checked_add(deadline)
            .is_some_and(|end| wake < end && end - wake >= self.reserve)
    }

    /// Accounts for a call that never reached the policy because the breaker was open (the
    /// stack's gate rejected it first) as the policy would have: the call's deposit into the
    /// budget, and the first attempt given up with `CircuitOpen`.
    #[cfg(feature = "stack")]
    pub(crate) fn rejected_before_sending(&self) {
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        self.report(1, &Decision::GiveUp(GiveUpReason::CircuitOpen));
    }

    fn next_delay(&self, retry: u32, previous: Option<Duration>) -> Duration {
        match &self.rng {
            PolicyRng::Seeded(rng) => {
                let mut draw = || rng.next_f64();
                self.backoff.next_delay(retry, previous, &mut draw)
            }
            PolicyRng::Custom(rng) => {
                // A generator that panicked mid-draw left no invariant to protect.
                let mut rng = rng.lock().unwrap_or_else(PoisonError::into_inner);
                self.backoff.next_delay(retry, previous, &mut **rng)
            }
        }
    }

    fn report(&self, attempt: u32, decision: &Decision) {
        match *decision {
            Decision::Done => {
                if attempt > 1 {
                    tracing::debug!(policy = %self.name, attempt, "retry succeeded");
                    self.listeners.emit(|| RetryEvent::Succeeded {
                        name: self.name.clone(),
                        attempt,
                    });
                }
            }
            Decision::GiveUp(reason) => {
                if reason == GiveUpReason::BudgetExhausted {
                    // A spent budget means many calls are failing: worth a warning.
                    tracing::warn!(policy = %self.name, attempt, reason = reason.as_str(), "retry budget exhausted, not retrying");
                } else {
                    tracing::debug!(policy = %self.name, attempt, reason = reason.as_str(), "not retrying");
                }
                self.listeners.emit(|| RetryEvent::GaveUp {
                    name: self.name.clone(),
                    attempt,
                    reason,
                });
            }
            Decision::Retry {
                delay,
                reason,
                server_delay,
                ..
            } => {
                tracing::debug!(
                    policy = %self.name,
                    attempt,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    reason = reason.as_str(),
                    server_delay,
                    "retrying"
                );
                self.listeners.emit(|| RetryEvent::Retrying {
                    name: self.name.clone(),
                    attempt,
                    delay,
                    reason,
                    server_delay,
                });
            }
        }
    }
}

impl<C, P, Req, Res, E> tower::retry::Policy<Req, Res, E> for RetryPolicy<C, P>
where
    C: Classify<Res, E>,
    P: Protocol<Req, Res, E>,
    E: 'static,
{
    type Future = RetryDelay;

    fn retry(&mut self, req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        self.attempt = self.attempt.saturating_add(1);
        let decision = self.decide(req, result);
        self.shared.report(self.attempt, &decision);
        match decision {
            Decision::Retry {
                delay,
                wake,
                reason,
                breaker,
                slot,
                ..
            } => {
                if reason == RetryReason::CoolDown {
                    // Rejected by the breaker's cool-down: the upstream was not called, so
                    // the call keeps its attempts.
                    self.attempt -= 1;
                } else {
                    self.previous = Some(delay);
                }
                // `tower::retry` drops `result` (and with it a failed response's body) as soon
                // as this returns, before it polls the delay.
                Some(match breaker {
                    Some(breaker) if !delay.is_zero() => RetryDelay::watching(wake, &breaker, slot),
                    _ => RetryDelay::until(wake),
                })
            }
            Decision::Done | Decision::GiveUp(_) => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        // `tower::retry` asks for a copy just before each attempt it sends.
        crate::call_span::record_attempts(self.attempt.saturating_add(1));
        if self.attempt == 0 {
            // The first attempt: `tower::retry::Retry` asks for its copy just before sending
            // it, on the policy it then clones for this request. Start the clock, count the
            // call, and skip the copy when the request will never be retried.
            self.started = Some(Instant::now());
            let shared = &*self.shared;
            if let Some(budget) = &shared.budget {
                budget.deposit();
            }
            if shared.max_attempts <= 1
                || (!shared.retry_non_idempotent && !self.protocol.is_idempotent(req))
            {
                return None;
            }
        }
        self.protocol.clone_request(req)
    }
}

impl<C: Clone, P: Clone> Clone for RetryPolicy<C, P> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            protocol: self.protocol.clone(),
            attempt: self.attempt,
            started: self.started,
            previous: self.previous,
        }
    }
}

impl<C, P> fmt::Debug for RetryPolicy<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &*self.shared;
        f.debug_struct("RetryPolicy")
            .field("name", &shared.name)
            .field("max_attempts", &shared.max_attempts)
            .field("backoff", &shared.backoff)
            .field("deadline", &shared.deadline)
            .field("reserve", &shared.reserve)
            .field("budget", &shared.budget)
            .field("max_server_delay", &shared.max_server_delay)
            .field("retry_non_idempotent", &shared.retry_non_idempotent)
            .field("retry_bulkhead_full", &shared.retry_bulkhead_full)
            .field("listeners", &shared.listeners)
            .field(
                "breaker",
                &shared.breaker.as_ref().map(CircuitBreaker::name),
            )
            .field(
                "wait_out_cool_downs",
                &shared.cool_down_waits.as_ref().map(CoolDownWaits::max),
            )
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}
