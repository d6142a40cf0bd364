//! Every builder fed arbitrary values: each returns a value or a `ConfigError` naming a field,
//! never panics. What builds is then driven a little (on a paused clock) and checked against
//! simple invariants: breakers never hold more probes than they allow and release them all,
//! bulkheads count their slots exactly, backoffs stay under their max, retry policies stop at
//! `max_attempts`, classifiers follow the rules they were given.
#![no_main]

use http::{HeaderMap, StatusCode};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::ops::Bound;
use std::time::Duration;
use tower::retry::Policy;
use tower_breaker::backoff::{Backoff, Jitter, SplitMix64};
use tower_breaker::bulkhead::{AcquireError, Bulkhead};
use tower_breaker::circuit_breaker::{
    self, CircuitBreaker, CircuitState, LoadAwareThresholds, SlidingWindow, Tier,
};
use tower_breaker::grpc::{Code, GrpcClassifier};
use tower_breaker::http::{HttpClassifier, ResponseClass};
use tower_breaker::keyed::KeyedCircuitBreakers;
use tower_breaker::retry::{RetryBudget, RetryPolicy};
use tower_breaker::stack::StandardResilience;
use tower_breaker::{BoxError, ConfigError, Outcome};

// --- arbitrary values, biased toward the edges of the allowed ranges -----------------------------

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Dur {
    Zero,
    Nanos(u64),
    Micros(u32),
    Millis(u16),
    Secs(u32),
    Raw(u64, u32),
    Day,
    Max,
}

impl Dur {
    fn get(self) -> Duration {
        match self {
            Dur::Zero => Duration::ZERO,
            Dur::Nanos(n) => Duration::from_nanos(n),
            Dur::Micros(n) => Duration::from_micros(u64::from(n)),
            Dur::Millis(n) => Duration::from_millis(u64::from(n)),
            Dur::Secs(n) => Duration::from_secs(u64::from(n)),
            Dur::Raw(s, n) => {
                Duration::from_secs(s).saturating_add(Duration::from_nanos(u64::from(n)))
            }
            Dur::Day => Duration::from_secs(24 * 60 * 60),
            Dur::Max => Duration::MAX,
        }
    }
}

/// A float: any bit pattern, or a fraction of `u16::MAX` (so that in-range values are common).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Float {
    Bits(f64),
    Unit(u16),
    Scaled(u16, u8),
}

impl Float {
    fn get(self) -> f64 {
        match self {
            Float::Bits(f) => f,
            Float::Unit(n) => f64::from(n) / f64::from(u16::MAX),
            Float::Scaled(n, scale) => f64::from(n) / 100.0 * f64::from(scale),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Count {
    Small(u8),
    Any(u32),
}

impl Count {
    fn get(self) -> u32 {
        match self {
            Count::Small(n) => u32::from(n),
            Count::Any(n) => n,
        }
    }
}

// --- the circuit breaker --------------------------------------------------------------------

#[derive(Arbitrary, Debug, Clone)]
enum Window {
    Count(Count),
    Time(Dur, Option<Count>),
    Consecutive(Count),
}

#[derive(Arbitrary, Debug, Clone)]
struct BreakerConfig {
    window: Option<Window>,
    failure_rate_threshold: Option<Float>,
    slow_call_rate_threshold: Option<Float>,
    slow_call_duration: Option<Dur>,
    minimum_calls: Option<Count>,
    wait_in_open: Option<Dur>,
    permitted_calls_in_half_open: Option<Count>,
    max_wait_in_half_open: Option<Option<Dur>>,
    open_time_growth: Option<(Float, Dur)>,
    open_time_jitter: Option<Float>,
    jitter_seed: Option<u64>,
    load_aware: Option<Vec<(Float, Count, Dur)>>,
    rate_limit_cooldown: Option<Dur>,
    max_retry_after: Option<Dur>,
}

impl BreakerConfig {
    fn builder(&self) -> circuit_breaker::Builder {
        let mut b = CircuitBreaker::builder("fuzz");
        if let Some(window) = &self.window {
            b = b.sliding_window(match window {
                Window::Count(n) => SlidingWindow::count_based(n.get()),
                Window::Time(length, None) => SlidingWindow::time_based(length.get()),
                Window::Time(length, Some(buckets)) => {
                    SlidingWindow::time_based(length.get()).buckets(buckets.get())
                }
                Window::Consecutive(n) => SlidingWindow::consecutive(n.get()),
            });
        }
        if let Some(v) = self.failure_rate_threshold {
            b = b.failure_rate_threshold(v.get());
        }
        if let Some(v) = self.slow_call_rate_threshold {
            b = b.slow_call_rate_threshold(v.get());
        }
        if let Some(v) = self.slow_call_duration {
            b = b.slow_call_duration(v.get());
        }
        if let Some(v) = self.minimum_calls {
            b = b.minimum_calls(v.get());
        }
        if let Some(v) = self.wait_in_open {
            b = b.wait_in_open(v.get());
        }
        if let Some(v) = self.permitted_calls_in_half_open {
            b = b.permitted_calls_in_half_open(v.get());
        }
        if let Some(v) = self.max_wait_in_half_open {
            b = b.max_wait_in_half_open(v.map(Dur::get));
        }
        if let Some((multiplier, max)) = self.open_time_growth {
            b = b.open_time_growth(multiplier.get(), max.get());
        }
        if let Some(v) = self.open_time_jitter {
            b = b.open_time_jitter(v.get());
        }
        if let Some(v) = self.jitter_seed {
            b = b.jitter_seed(v);
        }
        if let Some(tiers) = &self.load_aware {
            let tiers = tiers
                .iter()
                .map(|(max, failures, wait)| Tier {
                    max_calls_per_minute: max.get(),
                    failures: failures.get(),
                    wait_in_open: wait.get(),
                })
                .collect();
            b = b.load_aware(LoadAwareThresholds::new(tiers));
        }
        if let Some(v) = self.rate_limit_cooldown {
            b = b.rate_limit_cooldown(v.get());
        }
        if let Some(v) = self.max_retry_after {
            b = b.max_retry_after(v.get());
        }
        b
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Class {
    Success,
    Failure,
    Ignored,
}

impl Class {
    fn outcome(self) -> Outcome {
        match self {
            Class::Success => Outcome::Success,
            Class::Failure => Outcome::Failure,
            Class::Ignored => Outcome::Ignored,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum BreakerOp {
    /// Acquire and record at once.
    Call(Class),
    /// Acquire and keep the permit.
    Hold,
    /// Record a held permit (by index, modulo the number held).
    Record(u8, Class),
    RecordWithRetryAfter(u8, Class, Option<Dur>),
    RecordRateLimited(u8, Option<Dur>),
    /// Drop a held permit unrecorded.
    Drop(u8),
    Advance(Dur),
    ForceOpen,
    Disable,
    MetricsOnly,
    Reset,
}

/// The longest any open state, cool-down or wait may last: 24 h, grown by jitter up to twice.
const LONGEST_WAIT: Duration = Duration::from_secs(2 * 24 * 60 * 60 + 1);

async fn advance(d: Dur) {
    // At most a day at a time: `tokio::time::advance` adds to an `Instant`.
    tokio::time::advance(d.get().min(Duration::from_secs(24 * 60 * 60))).await;
}

async fn drive_breaker(breaker: &CircuitBreaker, permitted: u32, ops: &[BreakerOp]) {
    let mut held = Vec::new();
    let pick = |held: &mut Vec<circuit_breaker::Permit>, i: u8| {
        (!held.is_empty()).then(|| {
            let i = usize::from(i) % held.len();
            held.swap_remove(i)
        })
    };
    for op in ops {
        match *op {
            BreakerOp::Call(class) => {
                if let Ok(permit) = breaker.try_acquire() {
                    permit.record(class.outcome());
                }
            }
            BreakerOp::Hold => {
                if let Ok(permit) = breaker.try_acquire() {
                    held.push(permit);
                }
            }
            BreakerOp::Record(i, class) => {
                if let Some(p) = pick(&mut held, i) {
                    p.record(class.outcome());
                }
            }
            BreakerOp::RecordWithRetryAfter(i, class, wait) => {
                if let Some(p) = pick(&mut held, i) {
                    p.record_with_retry_after(class.outcome(), wait.map(Dur::get));
                }
            }
            BreakerOp::RecordRateLimited(i, wait) => {
                if let Some(p) = pick(&mut held, i) {
                    p.record_rate_limited(wait.map(Dur::get));
                }
            }
            BreakerOp::Drop(i) => drop(pick(&mut held, i)),
            BreakerOp::Advance(d) => advance(d).await,
            BreakerOp::ForceOpen => breaker.force_open(),
            BreakerOp::Disable => breaker.disable(),
            BreakerOp::MetricsOnly => breaker.metrics_only(),
            BreakerOp::Reset => breaker.reset(),
        }
        let m = breaker.metrics();
        assert!(m.probes_in_flight <= permitted, "{m:?}");
        let probes_held = held.iter().filter(|p| p.is_probe()).count();
        assert!(
            m.probes_in_flight as usize <= probes_held,
            "{m:?}, {probes_held} held"
        );
        assert!(
            m.failed_calls <= m.calls && m.slow_calls <= m.calls,
            "{m:?}"
        );
        assert_eq!(m.successful_calls, m.calls - m.failed_calls, "{m:?}");
        for rate in [m.failure_rate, m.slow_call_rate].into_iter().flatten() {
            assert!((0.0..=1.0).contains(&rate), "{m:?}");
        }
        if let Some(wait) = breaker.retry_after() {
            assert!(wait <= LONGEST_WAIT, "{wait:?}");
        }
        let _ = breaker.is_call_permitted();
    }
    drop(held);
    let m = breaker.metrics();
    assert_eq!(m.probes_in_flight, 0, "every permit dropped: {m:?}");
    // Not wedged: after the longest wait, calls go through again (unless forced open).
    advance(Dur::Day).await;
    advance(Dur::Day).await;
    advance(Dur::Secs(1)).await;
    if breaker.state() != CircuitState::ForcedOpen {
        assert!(breaker.try_acquire().is_ok(), "{:?}", breaker.metrics());
    }
}

// --- bulkhead, backoff, retry ---------------------------------------------------------------

#[derive(Arbitrary, Debug, Clone)]
struct BulkheadConfig {
    max_concurrent: Option<Count>,
    max_queue: Option<Count>,
    max_wait: Option<Dur>,
}

impl BulkheadConfig {
    fn builder(&self) -> tower_breaker::bulkhead::Builder {
        let mut b = Bulkhead::builder("fuzz");
        if let Some(v) = self.max_concurrent {
            b = b.max_concurrent(v.get());
        }
        if let Some(v) = self.max_queue {
            b = b.max_queue(v.get());
        }
        if let Some(v) = self.max_wait {
            b = b.max_wait(v.get());
        }
        b
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum BulkheadOp {
    Take,
    Give(u8),
    /// Wait for a slot (only when none is free, so that it ends in a rejection).
    Wait,
}

async fn drive_bulkhead(bulkhead: &Bulkhead, ops: &[BulkheadOp]) {
    let max = bulkhead.metrics().max_concurrent;
    let mut held = Vec::new();
    let mut full = 0;
    let mut timed_out = 0;
    for op in ops {
        match *op {
            BulkheadOp::Take => match bulkhead.try_acquire() {
                Ok(permit) => held.push(permit),
                Err(_) => full += 1,
            },
            BulkheadOp::Give(i) => {
                if !held.is_empty() {
                    drop(held.swap_remove(usize::from(i) % held.len()));
                }
            }
            BulkheadOp::Wait => {
                if held.len() as u32 == max {
                    // Nobody gives a slot back: full at once, or a timeout after `max_wait`
                    // (the paused clock jumps there).
                    match bulkhead.acquire().await {
                        Ok(_) => panic!("a slot while all {max} are held"),
                        Err(AcquireError::Full(_)) => {
                            assert_eq!(bulkhead.max_queue(), 0);
                            full += 1;
                        }
                        Err(AcquireError::Timeout(_)) => timed_out += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }
        let m = bulkhead.metrics();
        assert_eq!(m.active as usize, held.len(), "{m:?}");
        assert!(m.active <= m.max_concurrent && m.queued == 0, "{m:?}");
        assert_eq!(
            (m.rejected_full, m.rejected_timeout),
            (full, timed_out),
            "{m:?}"
        );
    }
    drop(held);
    assert_eq!(bulkhead.metrics().active, 0);
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Curve {
    Constant(Dur),
    Linear(Dur, Dur, Option<Dur>),
    Exponential(Dur, Dur, Option<Float>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum JitterChoice {
    None,
    Full,
    Equal,
    Decorrelated,
    Fraction(Float),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct BackoffConfig {
    curve: Curve,
    jitter: JitterChoice,
}

impl BackoffConfig {
    fn get(self) -> Backoff {
        let backoff = match self.curve {
            Curve::Constant(d) => Backoff::constant(d.get()),
            Curve::Linear(base, max, step) => {
                let b = Backoff::linear(base.get(), max.get());
                step.map_or(b, |s| b.step(s.get()))
            }
            Curve::Exponential(base, max, factor) => {
                let b = Backoff::exponential(base.get(), max.get());
                factor.map_or(b, |f| b.factor(f.get()))
            }
        };
        match self.jitter {
            JitterChoice::None => backoff.no_jitter(),
            JitterChoice::Full => backoff.full_jitter(),
            JitterChoice::Equal => backoff.equal_jitter(),
            JitterChoice::Decorrelated => backoff.decorrelated_jitter(),
            JitterChoice::Fraction(f) => backoff.with_jitter(Jitter::Fraction(f.get())),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Budget {
    Default,
    None,
    Some(Float, Count, Option<Dur>),
}

#[derive(Arbitrary, Debug, Clone)]
struct RetryConfig {
    max_attempts: Option<Count>,
    backoff: Option<BackoffConfig>,
    deadline: Option<Dur>,
    reserve_for_last_attempt: Option<Float>,
    budget: Budget,
    max_server_delay: Option<Dur>,
    retry_non_idempotent: bool,
    retry_bulkhead_full: bool,
    seed: u64,
}

impl RetryConfig {
    fn builder(&self) -> tower_breaker::retry::Builder {
        let mut b = RetryPolicy::builder()
            .seed(self.seed)
            .retry_non_idempotent(self.retry_non_idempotent)
            .retry_bulkhead_full(self.retry_bulkhead_full);
        if let Some(v) = self.max_attempts {
            b = b.max_attempts(v.get());
        }
        if let Some(v) = self.backoff {
            b = b.backoff(v.get());
        }
        if let Some(v) = self.deadline {
            b = b.deadline(v.get());
        }
        if let Some(v) = self.reserve_for_last_attempt {
            b = b.reserve_for_last_attempt(v.get());
        }
        match self.budget {
            Budget::Default => {}
            Budget::None => b = b.no_budget(),
            Budget::Some(ratio, min, ttl) => {
                let budget = RetryBudget::new(ratio.get(), min.get());
                b = b.budget(ttl.map_or(budget.clone(), |t| budget.ttl(t.get())));
            }
        }
        if let Some(v) = self.max_server_delay {
            b = b.max_server_delay(v.get());
        }
        b
    }
}

fn check_backoff(backoff: Backoff, retries: &[u32], seed: u64) {
    let valid = backoff.validate();
    if let Err(e) = &valid {
        check_error(e);
        assert!(backoff.delays().is_err());
        return;
    }
    let max = backoff.max_delay();
    let mut rng = SplitMix64::new(seed);
    let mut previous = None;
    for &retry in retries {
        assert!(backoff.base_delay(retry) <= max);
        let delay = backoff.next_delay(retry, previous, &mut rng);
        assert!(delay <= max, "{delay:?} > {max:?} for {backoff:?}");
        previous = Some(delay);
    }
    let delays = backoff
        .delays_with_rng(SplitMix64::new(seed))
        .expect("valid");
    for delay in delays.take(8) {
        assert!(delay <= max);
    }
}

fn drive_policy(mut policy: RetryPolicy, failures: u8) {
    let max_attempts = policy.max_attempts();
    let mut request = 7u32;
    let mut per_request = policy.clone();
    let _ = Policy::<u32, (), BoxError>::clone_request(&mut per_request, &request);
    let mut attempts = 1;
    for _ in 0..failures.min(12) {
        let mut result: Result<(), BoxError> = Err("upstream failed".into());
        match per_request.retry(&mut request, &mut result) {
            Some(delay) => {
                drop(delay);
                attempts += 1;
                assert!(
                    attempts <= max_attempts,
                    "attempt {attempts} of {max_attempts}"
                );
                let _ = Policy::<u32, (), BoxError>::clone_request(&mut per_request, &request);
            }
            None => break,
        }
    }
    let mut ok: Result<(), BoxError> = Ok(());
    assert!(
        policy.retry(&mut request, &mut ok).is_none(),
        "a success is never retried"
    );
}

// --- classifiers ----------------------------------------------------------------------------

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ClassChoice {
    Success,
    Failure,
    Ignored,
    RateLimit,
}

impl ClassChoice {
    fn get(self) -> ResponseClass {
        match self {
            ClassChoice::Success => ResponseClass::Success,
            ClassChoice::Failure => ResponseClass::Failure,
            ClassChoice::Ignored => ResponseClass::Ignored,
            ClassChoice::RateLimit => ResponseClass::RateLimit,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum End {
    Included(u16),
    Excluded(u16),
    Unbounded,
}

impl End {
    fn get(self) -> Bound<u16> {
        match self {
            End::Included(n) => Bound::Included(n),
            End::Excluded(n) => Bound::Excluded(n),
            End::Unbounded => Bound::Unbounded,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum HttpRule {
    Status(u16, ClassChoice),
    Range(End, End, ClassChoice),
    RecordAtBodyEnd(bool),
    BodyIdleTimeout(Dur),
}

/// Within the range every builder allows for a duration: 1 ms to 24 h.
fn in_range(d: Duration) -> bool {
    (Duration::from_millis(1)..=Duration::from_secs(86_400)).contains(&d)
}

/// The statuses a range covers within 100 ..= 999, or `None` when the builder must refuse it.
fn covered(start: End, end: End) -> Option<(u16, u16)> {
    let start = match start {
        End::Included(s) => Some(s),
        End::Excluded(s) => s.checked_add(1),
        End::Unbounded => Some(100),
    }?;
    let end = match end {
        End::Included(e) => Some(e),
        End::Excluded(e) => e.checked_sub(1),
        End::Unbounded => Some(999),
    }?;
    (100 <= start && start <= end && end <= 999).then_some((start, end))
}

fn check_http_classifier(rules: &[HttpRule], probes: &[u16]) {
    let defaults = HttpClassifier::new();
    let empty = HeaderMap::new();
    let mut model: Vec<ResponseClass> = (100..=999)
        .map(|s| defaults.classify_response(StatusCode::from_u16(s).expect("a status"), &empty))
        .collect();
    let mut valid = true;
    let mut idle = None;
    let mut b = HttpClassifier::builder();
    for rule in rules {
        b = match *rule {
            HttpRule::Status(s, class) => {
                let Ok(status) = StatusCode::from_u16(s) else {
                    continue;
                };
                model[usize::from(s - 100)] = class.get();
                b.status(status, class.get())
            }
            HttpRule::Range(start, end, class) => {
                match covered(start, end) {
                    Some((s, e)) => {
                        model[usize::from(s - 100)..=usize::from(e - 100)].fill(class.get())
                    }
                    None => valid = false,
                }
                b.status_range((start.get(), end.get()), class.get())
            }
            HttpRule::RecordAtBodyEnd(yes) => b.record_at_body_end(yes),
            HttpRule::BodyIdleTimeout(d) => {
                idle = Some(d.get());
                b.body_idle_timeout(d.get())
            }
        };
    }
    // The last idle timeout set counts.
    let valid = valid && idle.is_none_or(in_range);
    match b.build() {
        Ok(classifier) => {
            assert!(valid, "built from an invalid rule: {rules:?}");
            for &s in probes {
                let Ok(status) = StatusCode::from_u16(s) else {
                    continue;
                };
                assert_eq!(
                    classifier.classify_response(status, &empty),
                    model[usize::from(s - 100)],
                    "{status} after {rules:?}"
                );
            }
        }
        Err(e) => {
            assert!(!valid, "refused valid rules: {e}");
            check_error(&e);
        }
    }
}

fn check_grpc_classifier(rules: &[(i32, ClassChoice)], idle: Option<Dur>) {
    let mut model: Vec<ResponseClass> = (0..17)
        .map(|c| GrpcClassifier::new().classify_code(Code::from_i32(c)))
        .collect();
    let mut b = GrpcClassifier::builder();
    for &(code, class) in rules {
        let code = Code::from_i32(code);
        model[code as usize] = class.get();
        b = b.code(code, class.get());
    }
    let valid = idle.is_none_or(|d| in_range(d.get()));
    if let Some(d) = idle {
        b = b.body_idle_timeout(d.get());
    }
    match b.build() {
        Ok(classifier) => {
            assert!(valid);
            for c in 0..17 {
                assert_eq!(
                    classifier.classify_code(Code::from_i32(c)),
                    model[c as usize]
                );
            }
        }
        Err(e) => {
            assert!(!valid, "{e}");
            check_error(&e);
        }
    }
}

// --- the input --------------------------------------------------------------------------------

#[derive(Arbitrary, Debug)]
struct Input {
    breaker: BreakerConfig,
    breaker_ops: Vec<BreakerOp>,
    bulkhead: BulkheadConfig,
    bulkhead_ops: Vec<BulkheadOp>,
    backoff: BackoffConfig,
    retries: Vec<u32>,
    retry: RetryConfig,
    failures: u8,
    total_timeout: Option<Dur>,
    attempt_timeout: Option<Dur>,
    max_keys: Option<usize>,
    key_override: Option<(u8, BreakerConfig)>,
    keys: Vec<u8>,
    http_rules: Vec<HttpRule>,
    statuses: Vec<u16>,
    grpc_rules: Vec<(i32, ClassChoice)>,
    grpc_idle: Option<Dur>,
}

/// A refusal names its field and says what is allowed.
fn check_error(e: &ConfigError) {
    assert!(!e.field().is_empty() && !e.allowed().is_empty(), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(e.field()), "{text}");
}

fuzz_target!(|input: Input| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        match input.breaker.builder().build() {
            Ok(breaker) => {
                let permitted = match input.breaker.permitted_calls_in_half_open {
                    Some(n) => n.get(),
                    None => 10,
                };
                drive_breaker(&breaker, permitted, &input.breaker_ops).await;
            }
            Err(e) => check_error(&e),
        }

        match input.bulkhead.builder().build() {
            Ok(bulkhead) => drive_bulkhead(&bulkhead, &input.bulkhead_ops).await,
            Err(e) => check_error(&e),
        }

        check_backoff(input.backoff.get(), &input.retries, input.retry.seed);
        match input.retry.builder().build() {
            Ok(policy) => drive_policy(policy, input.failures),
            Err(e) => check_error(&e),
        }

        let mut stack = StandardResilience::builder("fuzz")
            .breaker(input.breaker.builder())
            .bulkhead(input.bulkhead.builder())
            .retry(input.retry.builder());
        if let Some(d) = input.total_timeout {
            stack = stack.total_timeout(d.get());
        }
        if let Some(d) = input.attempt_timeout {
            stack = stack.attempt_timeout(d.get());
        }
        match stack.build() {
            Ok(stack) => assert!(stack.attempt_timeout() <= stack.total_timeout()),
            Err(e) => check_error(&e),
        }

        let mut keyed = KeyedCircuitBreakers::<u8>::builder(input.breaker.builder());
        if let Some(n) = input.max_keys {
            keyed = keyed.max_keys(n);
        }
        if let Some((key, config)) = &input.key_override {
            keyed = keyed.override_for(*key, config.builder());
        }
        match keyed.build() {
            Ok(keyed) => {
                for key in &input.keys {
                    let breaker = keyed.get(key);
                    if let Ok(permit) = breaker.try_acquire() {
                        permit.record(Outcome::Failure);
                    }
                }
                assert!(keyed.len() <= input.max_keys.unwrap_or(1000));
            }
            Err(e) => check_error(&e),
        }
    });

    check_http_classifier(&input.http_rules, &input.statuses);
    check_grpc_classifier(&input.grpc_rules, input.grpc_idle);
});
