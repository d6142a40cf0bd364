//! Hedged calls: a second attempt when the first is slow to produce its first token.

use crate::BoxError;
use crate::circuit_breaker::CircuitBreaker;
use crate::config::{Check, ConfigError};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// The longest hedge delay a builder takes.
const MAX_DELAY: Duration = Duration::from_secs(3_600);
/// Observed latencies kept for a percentile delay.
const WINDOW: usize = 1_000;
/// Latencies observed before a percentile delay is trusted (until then: its cap).
const MIN_SAMPLES: usize = 20;
/// The percentile is recomputed every this many observations.
const RECOMPUTE_EVERY: u32 = 16;
/// One hedge in the budget's fixed-point balance.
const ONE_HEDGE: u64 = 1_000_000;

/// How long a [`Hedge`] waits for the first attempt before it starts the second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgeDelay {
    kind: DelayKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DelayKind {
    Fixed(Duration),
    Percentile {
        quantile: f64,
        floor: Duration,
        cap: Duration,
    },
}

impl HedgeDelay {
    /// Always `delay`.
    pub fn fixed(delay: Duration) -> Self {
        Self {
            kind: DelayKind::Fixed(delay),
        }
    }

    /// The `quantile` (0.95 for p95) of the latencies observed by this hedge (the time to the
    /// first token, behind a [`StreamGuard`](super::StreamGuard)), over its last 1,000 calls,
    /// kept between `floor` and `cap`. Until 20 calls are observed, `cap`.
    pub fn percentile(quantile: f64, floor: Duration, cap: Duration) -> Self {
        Self {
            kind: DelayKind::Percentile {
                quantile,
                floor,
                cap,
            },
        }
    }
}

/// What a [`Hedge`] has done, since it was built (clones share it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HedgeStats {
    /// Calls made.
    pub calls: u64,
    /// Second attempts started.
    pub hedges: u64,
    /// Calls answered by the second attempt.
    pub hedge_wins: u64,
    /// Hedges due but refused by the budget.
    pub declined_budget: u64,
    /// Hedges due but refused because the target's breaker would reject the call.
    pub declined_breaker: u64,
    /// Calls never hedged because their request is not idempotent.
    pub declined_not_idempotent: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    hedges: AtomicU64,
    hedge_wins: AtomicU64,
    declined_budget: AtomicU64,
    declined_breaker: AtomicU64,
    declined_not_idempotent: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Hedges as a share of calls: each call adds `ratio` of a hedge to a balance (up to `burst`
/// hedges), each hedge takes one whole hedge from it. Over any run, hedges stay at most
/// `ratio × calls + burst`.
struct Budget {
    balance: AtomicU64,
    per_call: u64,
    max: u64,
}

impl Budget {
    fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_add(self.per_call).min(self.max))
            });
    }

    fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                b.checked_sub(ONE_HEDGE)
            })
            .is_ok()
    }
}

/// The last observed latencies and the delay they give.
struct Latencies {
    quantile: f64,
    floor: Duration,
    cap: Duration,
    samples: Mutex<Samples>,
    delay_nanos: AtomicU64,
}

#[derive(Default)]
struct Samples {
    ring: Vec<u64>,
    next: usize,
    since_update: u32,
}

impl Latencies {
    fn record(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        // A poisoned lock only means another thread panicked mid-record: the samples are
        // still numbers.
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.ring.len() < WINDOW {
            samples.ring.push(nanos);
        } else {
            let at = samples.next;
            samples.ring[at] = nanos;
            samples.next = (at + 1) % WINDOW;
        }
        samples.since_update += 1;
        if samples.ring.len() >= MIN_SAMPLES && samples.since_update >= RECOMPUTE_EVERY {
            samples.since_update = 0;
            let mut sorted = samples.ring.clone();
            drop(samples);
            let rank =
                ((sorted.len() as f64 * self.quantile).ceil() as usize).clamp(1, sorted.len()) - 1;
            let (_, value, _) = sorted.select_nth_unstable(rank);
            let delay = Duration::from_nanos(*value).clamp(self.floor, self.cap);
            let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
            self.delay_nanos.store(nanos, Ordering::Relaxed);
        }
    }

    fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay_nanos.load(Ordering::Relaxed))
    }
}

type IsIdempotent<Req> = Arc<dyn Fn(&Req) -> bool + Send + Sync>;

struct Shared<Req> {
    fixed: Option<Duration>,
    latencies: Option<Latencies>,
    budget: Budget,
    target_breaker: Option<CircuitBreaker>,
    idempotent: Option<IsIdempotent<Req>>,
    hedge_non_idempotent: bool,
    counters: Counters,
}

impl<Req> Shared<Req> {
    fn delay(&self) -> Duration {
        match (&self.latencies, self.fixed) {
            (Some(latencies), _) => latencies.delay(),
            (None, Some(fixed)) => fixed,
            (None, None) => MAX_DELAY,
        }
    }

    fn record(&self, latency: Duration) {
        if let Some(latencies) = &self.latencies {
            latencies.record(latency);
        }
    }

    fn may_hedge(&self, req: &Req) -> bool {
        self.hedge_non_idempotent || self.idempotent.as_ref().is_some_and(|f| f(req))
    }
}

/// Starts a second attempt of a call whose first attempt is slow: after a delay (fixed, or a
/// percentile of the latencies it observed), on the same service or on a backup. The first
/// attempt to answer wins; the other is dropped (cancelled). See the [module docs](super).
///
/// Behind a [`StreamGuard`](super::StreamGuard) that resolves at the first token, "answer"
/// means "first token", so the hedge races time to first token, and the caller's stream comes
/// from one attempt only.
///
/// A hedge is started only when:
/// - the request may be sent twice: idempotent by
///   [`idempotent_when`](HedgeBuilder::idempotent_when) (for `http::Request`,
///   [`http_idempotency`](HedgeBuilder::http_idempotency): method or `Idempotency-Key`), or
///   [`hedge_non_idempotent(true)`](HedgeBuilder::hedge_non_idempotent);
/// - the budget has room (hedges at most a share of calls);
/// - the target's breaker would permit a call (not open, not cooling down after a 429);
/// - the first attempt has neither answered nor failed (a failure is the business of
///   failover or retry, not of a hedge). A first attempt that fails before its hedge has
///   started (its delay running, or the target's `poll_ready` pending at its concurrency
///   limit) fails the call at once, and that hedge never goes out.
///
/// Clones share the budget, the observed latencies and the stats.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use tower::{Service, ServiceExt, service_fn};
/// use tower_breaker::BoxError;
/// use tower_breaker::stream::{Hedge, HedgeDelay};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), BoxError> {
/// // A stand-in for a guarded provider: its first answer takes 5 s, later ones 100 ms.
/// let calls = Arc::new(AtomicU32::new(0));
/// let provider = service_fn(move |prompt: &'static str| {
///     let n = calls.fetch_add(1, Ordering::SeqCst);
///     async move {
///         let wait = if n == 0 { 5_000 } else { 100 };
///         tokio::time::sleep(Duration::from_millis(wait)).await;
///         Ok::<_, BoxError>(format!("answer {n} to {prompt}"))
///     }
/// });
/// let mut hedged = Hedge::builder()
///     .delay(HedgeDelay::fixed(Duration::from_millis(500)))
///     .hedge_non_idempotent(true)
///     .build(provider)?;
///
/// let started = tokio::time::Instant::now();
/// let answer = hedged.ready().await?.call("hi").await?;
/// assert_eq!(answer, "answer 1 to hi"); // the hedge, started at 500 ms, won
/// assert_eq!(started.elapsed(), Duration::from_millis(600));
/// assert_eq!((hedged.stats().hedges, hedged.stats().hedge_wins), (1, 1));
/// # Ok(())
/// # }
/// ```
pub struct Hedge<S, Req> {
    primary: S,
    target: S,
    shared: Arc<Shared<Req>>,
}

impl<S: Clone, Req> Clone for Hedge<S, Req> {
    fn clone(&self) -> Self {
        Self {
            primary: self.primary.clone(),
            target: self.target.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, Req> fmt::Debug for Hedge<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<Req> Hedge<(), Req> {
    /// A builder: no hedge until [`delay`](HedgeBuilder::delay) is set; a budget of 10 % of
    /// calls (bursts of up to 10 hedges); no request hedged until you say which are
    /// idempotent. The service is given last, to [`build`](HedgeBuilder::build).
    pub fn builder() -> HedgeBuilder<Req> {
        HedgeBuilder {
            delay: None,
            budget: 0.1,
            burst: 10,
            target_breaker: None,
            idempotent: None,
            hedge_non_idempotent: false,
        }
    }
}

impl<S, Req> Hedge<S, Req> {
    /// What it has done so far.
    pub fn stats(&self) -> HedgeStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HedgeStats {
            calls: get(&c.calls),
            hedges: get(&c.hedges),
            hedge_wins: get(&c.hedge_wins),
            declined_budget: get(&c.declined_budget),
            declined_breaker: get(&c.declined_breaker),
            declined_not_idempotent: get(&c.declined_not_idempotent),
        }
    }

    /// The delay a call made now would wait before hedging.
    pub fn current_delay(&self) -> Duration {
        self.shared.delay()
    }

    /// The first attempt's service.
    pub fn get_ref(&self) -> &S {
        &self.primary
    }
}

/// Builds a [`Hedge`].
pub struct HedgeBuilder<Req> {
    delay: Option<HedgeDelay>,
    budget: f64,
    burst: u32,
    target_breaker: Option<CircuitBreaker>,
    idempotent: Option<IsIdempotent<Req>>,
    hedge_non_idempotent: bool,
}

impl<Req> fmt::Debug for HedgeBuilder<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeBuilder")
            .field("delay", &self.delay)
            .field("budget", &self.budget)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl<Req> HedgeBuilder<Req> {
    /// How long to wait for the first attempt. Required. Delays: 0 to 1 hour; a percentile's
    /// quantile in `(0, 1]` and `floor <= cap`.
    pub fn delay(mut self, delay: HedgeDelay) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Hedges as a share of calls, in `(0, 1]`. Default: 0.1 (10 %).
    pub fn budget(mut self, ratio: f64) -> Self {
        self.budget = ratio;
        self
    }

    /// How many unused hedges the budget saves up (and starts with), 1 to 1,000. Default: 10.
    pub fn budget_burst(mut self, hedges: u32) -> Self {
        self.burst = hedges;
        self
    }

    /// The breaker of the hedge's target (the backup, or the primary when hedging on the same
    /// service): while it would reject a call (open, rate-limited, half-open and full), no
    /// hedge is started.
    pub fn target_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.target_breaker = Some(breaker);
        self
    }

    /// Which requests may be sent twice. Without it (and without
    /// [`hedge_non_idempotent`](Self::hedge_non_idempotent)), no request is hedged.
    pub fn idempotent_when(mut self, f: impl Fn(&Req) -> bool + Send + Sync + 'static) -> Self {
        self.idempotent = Some(Arc::new(f));
        self
    }

    /// Hedge every request, idempotent or not. An LLM completion is a POST, so it is not
    /// idempotent by its method; sending it twice costs tokens but is usually harmless: say
    /// so here, or give it an `Idempotency-Key`.
    pub fn hedge_non_idempotent(mut self, yes: bool) -> Self {
        self.hedge_non_idempotent = yes;
        self
    }

    /// A hedge on the same service: the second attempt is a clone of `service`.
    pub fn build<S: Clone>(self, service: S) -> Result<Hedge<S, Req>, ConfigError> {
        let target = service.clone();
        self.build_with_backup(service, target)
    }

    /// A hedge whose second attempt goes to `backup` (the next provider).
    pub fn build_with_backup<S>(self, primary: S, backup: S) -> Result<Hedge<S, Req>, ConfigError> {
        let check = Check { component: "hedge" };
        let budget = check.rate("budget", self.budget)?;
        let burst = check.range_u64("budget_burst", u64::from(self.burst), 1, 1_000)?;
        let Some(delay) = self.delay else {
            return Err(ConfigError::new(
                "hedge",
                "delay",
                "none",
                "a fixed delay or a percentile",
            ));
        };
        let (fixed, latencies) = match delay.kind {
            DelayKind::Fixed(d) => (
                Some(check.duration("delay", d, Duration::ZERO, MAX_DELAY)?),
                None,
            ),
            DelayKind::Percentile {
                quantile,
                floor,
                cap,
            } => {
                let quantile = check.rate("delay.quantile", quantile)?;
                let cap = check.duration("delay.cap", cap, Duration::ZERO, MAX_DELAY)?;
                let floor = check.duration("delay.floor", floor, Duration::ZERO, cap)?;
                let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
                let latencies = Latencies {
                    quantile,
                    floor,
                    cap,
                    samples: Mutex::new(Samples::default()),
                    delay_nanos: AtomicU64::new(cap_nanos),
                };
                (None, Some(latencies))
            }
        };
        // `budget <= 1` and `burst <= 1000`: no overflow.
        let per_call = (budget * ONE_HEDGE as f64).round() as u64;
        let max = burst * ONE_HEDGE;
        Ok(Hedge {
            primary,
            target: backup,
            shared: Arc::new(Shared {
                fixed,
                latencies,
                budget: Budget {
                    balance: AtomicU64::new(max),
                    per_call,
                    max,
                },
                target_breaker: self.target_breaker,
                idempotent: self.idempotent,
                hedge_non_idempotent: self.hedge_non_idempotent,
                counters: Counters::default(),
            }),
        })
    }
}

impl<B> HedgeBuilder<http::Request<B>> {
    /// Idempotent HTTP requests only, by the retry module's rule
    /// ([`is_idempotent`](crate::retry::is_idempotent)): GET, HEAD, OPTIONS, TRACE, PUT,
    /// DELETE, or any request with an `Idempotency-Key` header.
    pub fn http_idempotency(self) -> Self {
        self.idempotent_when(|req: &http::Request<B>| {
            crate::retry::is_idempotent(req.method(), req.headers())
        })
    }
}

impl<S, Req> Service<Req> for Hedge<S, Req>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.primary.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.shared;
        bump(&shared.counters.calls);
        shared.budget.deposit();
        let hedge = if shared.may_hedge(&req) {
            Some((self.target.clone(), req.clone()))
        } else {
            bump(&shared.counters.declined_not_idempotent);
            None
        };
        // The ready service is the one called; the clone left behind is polled ready next.
        let clone = self.primary.clone();
        let mut primary = std::mem::replace(&mut self.primary, clone);
        let now = Instant::now();
        let timer = hedge.as_ref().and_then(|_| {
            let at = now.checked_add(shared.delay())?;
            Some(Box::pin(tokio::time::sleep_until(at)))
        });
        ResponseFuture {
            primary: Attempt::Running {
                future: primary.call(req),
                started: now,
            },
            backup: Attempt::Idle,
            hedge,
            due: false,
            timer,
            first_error: None,
            started: now,
            shared: self.shared.clone(),
        }
    }
}

pin_project! {
    #[project = AttemptProj]
    enum Attempt<F> {
        Idle,
        Running { #[pin] future: F, started: Instant },
        Failed,
    }
}

pin_project! {
    /// The future of a [`Hedge`] call.
    pub struct ResponseFuture<S: Service<Req>, Req> {
        #[pin]
        primary: Attempt<S::Future>,
        #[pin]
        backup: Attempt<S::Future>,
        // What a hedge needs, until it starts or is declined.
        hedge: Option<(S, Req)>,
        due: bool,
        timer: Option<Pin<Box<Sleep>>>,
        first_error: Option<BoxError>,
        started: Instant,
        shared: Arc<Shared<Req>>,
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("hedge_pending", &self.hedge.is_some())
            .field("hedged", &matches!(self.backup, Attempt::Running { .. }))
            .finish_non_exhaustive()
    }
}

/// Polls one attempt: its answer, or `None` (still running, or failed: the error is kept).
fn poll_attempt<F, T, E>(
    mut attempt: Pin<&mut Attempt<F>>,
    cx: &mut Context<'_>,
    first_error: &mut Option<BoxError>,
) -> Option<(T, Duration)>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    let AttemptProj::Running { future, started } = attempt.as_mut().project() else {
        return None;
    };
    let started = *started;
    match future.poll(cx) {
        Poll::Pending => None,
        Poll::Ready(Ok(answer)) => Some((answer, started.elapsed())),
        Poll::Ready(Err(error)) => {
            first_error.get_or_insert(error.into());
            attempt.set(Attempt::Failed);
            None
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared = &**this.shared;
        loop {
            if let Some((answer, took)) = poll_attempt(this.primary.as_mut(), cx, this.first_error)
            {
                shared.record(took);
                return Poll::Ready(Ok(answer));
            }
            if let Some((answer, _)) = poll_attempt(this.backup.as_mut(), cx, this.first_error) {
                // The latency the caller saw, not the backup's own: recording the backup's
                // would hide the slow tail from the percentile, which would then fall and hedge
                // ever more calls.
                shared.record(this.started.elapsed());
                bump(&shared.counters.hedge_wins);
                return Poll::Ready(Ok(answer));
            }
            let primary_failed = matches!(*this.primary, Attempt::Failed);
            if primary_failed && matches!(*this.backup, Attempt::Idle) {
                // A failure is the caller's at once: a hedge not started yet (its delay still
                // running, or due but its target not ready) never goes out after it.
                *this.hedge = None;
                *this.due = false;
            }
            if this.hedge.is_some()
                && !*this.due
                && this
                    .timer
                    .as_mut()
                    .is_some_and(|t| t.as_mut().poll(cx).is_ready())
            {
                *this.timer = None;
                if shared
                    .target_breaker
                    .as_ref()
                    .is_some_and(|b| !b.is_call_permitted())
                {
                    bump(&shared.counters.declined_breaker);
                    *this.hedge = None;
                } else if !shared.budget.try_withdraw() {
                    bump(&shared.counters.declined_budget);
                    *this.hedge = None;
                } else {
                    *this.due = true;
                }
            }
            if *this.due {
                if let Some((service, _)) = this.hedge.as_mut() {
                    match service.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            if let Some((mut service, req)) = this.hedge.take() {
                                bump(&shared.counters.hedges);
                                this.backup.set(Attempt::Running {
                                    future: service.call(req),
                                    started: Instant::now(),
                                });
                                // Poll the new attempt once, so that it registers its wakers.
                                continue;
                            }
                        }
                        Poll::Ready(Err(error)) => {
                            let _ = this.first_error.get_or_insert(error.into());
                            *this.hedge = None;
                        }
                        Poll::Pending => {}
                    }
                }
            }
            let backup_done = match *this.backup {
                Attempt::Running { .. } => false,
                Attempt::Failed => true,
                Attempt::Idle => this.hedge.is_none(),
            };
            if primary_failed && backup_done {
                let error = this
                    .first_error
                    .take()
                    .unwrap_or_else(|| "hedged call failed".into());
                return Poll::Ready(Err(error));
            }
            return Poll::Pending;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn latencies(quantile: f64, floor_ms: u64, cap_ms: u64) -> Latencies {
        let cap = Duration::from_millis(cap_ms);
        Latencies {
            quantile,
            floor: Duration::from_millis(floor_ms),
            cap,
            samples: Mutex::new(Samples::default()),
            delay_nanos: AtomicU64::new(cap.as_nanos() as u64),
        }
    }

    /// The delay after `records`: the nearest-rank quantile of the last 1,000 samples, as of the
    /// last recomputation (at 20 samples, then every 16), clamped; the cap before that.
    fn reference(records: &[u64], quantile: f64, floor_ms: u64, cap_ms: u64) -> Duration {
        let cap = Duration::from_millis(cap_ms);
        let mut computed_at = None;
        let mut since = 0;
        for n in 1..=records.len() {
            since += 1;
            if n >= MIN_SAMPLES && since >= RECOMPUTE_EVERY as usize {
                since = 0;
                computed_at = Some(n);
            }
        }
        let Some(n) = computed_at else { return cap };
        let mut window: Vec<u64> = records[n.saturating_sub(WINDOW)..n].to_vec();
        window.sort_unstable();
        let rank = ((window.len() as f64 * quantile).ceil() as usize).clamp(1, window.len()) - 1;
        Duration::from_millis(window[rank]).clamp(Duration::from_millis(floor_ms), cap)
    }

    proptest! {
        #[test]
        fn the_percentile_delay_matches_a_sorted_reference(
            records in prop::collection::vec(0u64..5_000, 0..2_500),
            quantile in 0.01f64..=1.0,
            floor_ms in 0u64..500,
            cap_extra in 0u64..5_000,
        ) {
            let cap_ms = floor_ms + cap_extra;
            let window = latencies(quantile, floor_ms, cap_ms);
            for &ms in &records {
                window.record(Duration::from_millis(ms));
            }
            prop_assert_eq!(window.delay(), reference(&records, quantile, floor_ms, cap_ms));
        }

        #[test]
        fn hedges_never_exceed_the_budget_share_plus_the_burst(
            ops in prop::collection::vec(any::<bool>(), 0..5_000),
            budget in 0.001f64..=1.0,
            burst in 1u64..20,
        ) {
            let per_call = (budget * ONE_HEDGE as f64).round() as u64;
            let b = Budget { balance: AtomicU64::new(burst * ONE_HEDGE), per_call, max: burst * ONE_HEDGE };
            let (mut calls, mut hedges) = (0u64, 0u64);
            for op in ops {
                if op {
                    b.deposit();
                    calls += 1;
                } else if b.try_withdraw() {
                    hedges += 1;
                }
                prop_assert!(hedges * ONE_HEDGE <= calls * per_call + burst * ONE_HEDGE);
            }
        }
    }
}
