//! A simulated LLM provider, on tokio's paused clock, for the quota governor and the adaptive
//! limit. Shared by `tests/quota` (the properties, checked in CI) and `benches/quota_sim.rs`
//! (the figures in `benches/README.md`).
//!
//! - **Quota**: request and token buckets (RPM, TPM) that refill continuously, as OpenAI's
//!   do; each answer carries OpenAI's `x-ratelimit-*` headers and the tokens it used; a call
//!   that does not fit gets a 429 with `retry-after-ms`.
//! - **Capacity**: at most `capacity` calls in service (changeable while it runs), a short
//!   queue of a tenth of that in front (its wait shows in the time to first token), and a
//!   529 for anything beyond.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::bulkhead::{AdaptiveBulkhead, Aimd, Gradient, LimitAlgorithm, Signal};
use tower_breaker::quota::{HttpHeaders, Quota, QuotaExceeded, format_go_duration};
use tower_breaker::shared_state::MemoryStore;

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

// ---- quota ----------------------------------------------------------------------------------

/// The provider's two buckets and what it counted.
#[derive(Debug)]
struct Buckets {
    rpm: f64,
    tpm: f64,
    requests: f64,
    tokens: f64,
    at: Instant,
    accepted: u64,
    accepted_tokens: f64,
    rejected: u64,
    /// Calls after this are served but not counted (those admitted before the end and sent
    /// after their wait).
    end: Instant,
    /// When both limits halve (once).
    halve_at: Option<Instant>,
    /// The last call that reached the provider, the longest time without one, the last 429
    /// (counted calls only).
    last_call: Instant,
    longest_idle: Duration,
    last_rejected: Option<Instant>,
}

impl Buckets {
    fn refill(&mut self, now: Instant) {
        if let Some(at) = self.halve_at.filter(|at| *at <= now) {
            self.halve_at = None;
            self.refill(at);
            self.rpm /= 2.0;
            self.tpm /= 2.0;
            self.requests = self.requests.min(self.rpm);
            self.tokens = self.tokens.min(self.tpm);
        }
        let secs = now.duration_since(self.at).as_secs_f64();
        self.requests = (self.requests + self.rpm / 60.0 * secs).min(self.rpm);
        self.tokens = (self.tokens + self.tpm / 60.0 * secs).min(self.tpm);
        self.at = now;
    }
}

/// A call to the simulated provider: the tokens of its prompt, and (known to the simulation
/// only) how long its answer will be.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub prompt: u64,
    pub completion: u64,
}

impl Call {
    /// The client's estimate: the prompt and an average answer.
    pub fn estimate(&self) -> u64 {
        self.prompt + 250
    }
}

/// Settings of a quota run.
#[derive(Debug, Clone, Copy)]
pub struct QuotaSim {
    pub rpm: u64,
    pub tpm: u64,
    /// Client replicas, each with its own governor.
    pub replicas: usize,
    /// Workers per replica, each sending one call after the other.
    pub workers: usize,
    pub minutes: u64,
    /// Replicas share their budgets through one `MemoryStore`.
    pub shared: bool,
    /// Limits learned from the headers (else set by hand).
    pub learn: bool,
    /// No governor at all: the workers send and back off on 429 by `retry-after-ms`.
    pub ungoverned: bool,
    /// The key is busy at the start: another client has just spent both budgets.
    pub busy_start: bool,
    /// Both limits halve this many seconds into the run.
    pub halve_after: Option<u64>,
    pub seed: u64,
}

impl Default for QuotaSim {
    fn default() -> Self {
        Self {
            rpm: 600,
            tpm: 100_000,
            replicas: 1,
            workers: 20,
            minutes: 10,
            shared: false,
            learn: true,
            ungoverned: false,
            busy_start: false,
            halve_after: None,
            seed: 7,
        }
    }
}

impl QuotaSim {
    /// One replica learning the limits from the headers; both limits halve at 5 minutes.
    pub fn halving() -> Self {
        Self {
            halve_after: Some(300),
            ..Self::default()
        }
    }

    /// Three replicas of 7 workers, limits by hand, for one minute on a key that another
    /// client has just spent; sharing a store or not.
    pub fn busy_fleet(shared: bool) -> Self {
        Self {
            replicas: 3,
            workers: 7,
            learn: false,
            busy_start: true,
            shared,
            minutes: 1,
            ..Self::default()
        }
    }
}

/// What a quota run measured.
#[derive(Debug, Clone, Copy)]
pub struct QuotaReport {
    /// Calls that reached the provider.
    pub sent: u64,
    pub accepted: u64,
    pub rate_limited: u64,
    /// Calls the governors rejected (too long a wait) without sending them.
    pub rejected_locally: u64,
    /// Accepted tokens and requests over the most the quota allowed in the run (one full
    /// bucket plus the refill of every minute).
    pub tokens_used: f64,
    pub requests_used: f64,
    /// Calls sent over the most one quota allows: the requests bucket's, or the calls the
    /// token bucket can hold at the mean call size, whichever is smaller.
    pub sent_over_quota: f64,
    /// Seconds into the run of the last 429.
    pub last_rate_limited: Option<f64>,
    /// The longest time no call reached the provider, in seconds.
    pub longest_idle: f64,
}

impl QuotaReport {
    pub fn rate_limited_share(&self) -> f64 {
        self.rate_limited as f64 / self.sent.max(1) as f64
    }

    /// The share of the binding budget used.
    pub fn quota_used(&self) -> f64 {
        self.tokens_used.max(self.requests_used)
    }
}

/// Runs the quota scenario on the paused clock (call from a paused runtime).
pub async fn run_quota(sim: QuotaSim) -> QuotaReport {
    let start = Instant::now();
    let end = start + Duration::from_secs(60 * sim.minutes);
    let buckets = Arc::new(Mutex::new(Buckets {
        rpm: sim.rpm as f64,
        tpm: sim.tpm as f64,
        requests: if sim.busy_start { 0.0 } else { sim.rpm as f64 },
        tokens: if sim.busy_start { 0.0 } else { sim.tpm as f64 },
        at: start,
        accepted: 0,
        accepted_tokens: 0.0,
        rejected: 0,
        end,
        halve_at: sim.halve_after.map(|s| start + Duration::from_secs(s)),
        last_call: start,
        longest_idle: Duration::ZERO,
        last_rejected: None,
    }));
    let provider = {
        let buckets = buckets.clone();
        service_fn(move |call: Call| {
            let buckets = buckets.clone();
            async move {
                let now = Instant::now();
                let tokens = (call.prompt + call.completion) as f64;
                let answer = {
                    let mut b = buckets.lock().expect("provider lock");
                    b.refill(now);
                    let counted = u64::from(now < b.end);
                    if counted == 1 {
                        b.longest_idle = b.longest_idle.max(now - b.last_call);
                        b.last_call = now;
                    }
                    if b.requests >= 1.0 && b.tokens >= tokens {
                        b.requests -= 1.0;
                        b.tokens -= tokens;
                        b.accepted += counted;
                        b.accepted_tokens += counted as f64 * tokens;
                        Ok(headers(&b))
                    } else {
                        b.rejected += counted;
                        if counted == 1 {
                            b.last_rejected = Some(now);
                        }
                        let wait = ((1.0 - b.requests) / (b.rpm / 60.0))
                            .max((tokens - b.tokens) / (b.tpm / 60.0))
                            .max(0.0);
                        Err((headers(&b), wait))
                    }
                };
                let response = match answer {
                    Ok(builder) => {
                        // Time to first token, then the answer at 5 ms a token.
                        tokio::time::sleep(Duration::from_millis(300 + 5 * call.completion)).await;
                        builder.status(200).header(
                            "x-usage-tokens",
                            (call.prompt + call.completion).to_string(),
                        )
                    }
                    Err((builder, wait)) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        builder.status(429).header(
                            "retry-after-ms",
                            ((wait * 1000.0).ceil() as u64).to_string(),
                        )
                    }
                };
                Ok::<_, std::convert::Infallible>(response.body(()).expect("a response"))
            }
        })
    };

    let store = MemoryStore::new();
    let mut handles = Vec::new();
    let rejected_locally = Arc::new(Mutex::new(0u64));
    for replica in 0..sim.replicas {
        let mut builder = Quota::<&'static str>::builder("sim").max_wait(Duration::from_secs(30));
        if !sim.learn {
            builder = builder
                .requests_per_window(sim.rpm)
                .tokens_per_window(sim.tpm);
        }
        if sim.shared {
            builder = builder.shared_state(store.clone());
        }
        let quota = builder.build().expect("a valid quota");
        let layer = quota
            .layer(|_: &Call| "gpt")
            .cost(|call: &Call| call.estimate())
            .observe(HttpHeaders::new().usage(|r: &http::Response<()>| {
                r.headers()
                    .get("x-usage-tokens")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
            }));
        for worker in 0..sim.workers {
            let mut rng = Rng::new(sim.seed * 1_000 + (replica * 100 + worker) as u64);
            let provider = provider.clone();
            let mut governed = ServiceBuilder::new()
                .layer(layer.clone())
                .service(provider.clone());
            let rejected_locally = rejected_locally.clone();
            let ungoverned = sim.ungoverned;
            handles.push(tokio::spawn(async move {
                // Spread the start over a second, as real traffic is.
                tokio::time::sleep(Duration::from_millis(rng.range(0, 1000))).await;
                let mut raw = provider;
                while Instant::now() < end {
                    let call = Call {
                        prompt: rng.range(100, 300),
                        completion: rng.range(50, 450),
                    };
                    if ungoverned {
                        let response = raw
                            .ready()
                            .await
                            .expect("ready")
                            .call(call)
                            .await
                            .expect("infallible");
                        if response.status() == 429 {
                            let wait = tower_breaker::http::retry_after(response.headers())
                                .unwrap_or(Duration::from_secs(1));
                            tokio::time::sleep(wait).await;
                        }
                        continue;
                    }
                    match governed.ready().await.expect("ready").call(call).await {
                        Ok(_) => {}
                        Err(e) => {
                            let exceeded = e
                                .downcast_ref::<QuotaExceeded>()
                                .expect("a quota rejection");
                            *rejected_locally.lock().expect("lock") += 1;
                            tokio::time::sleep(exceeded.retry_after().min(Duration::from_secs(5)))
                                .await;
                        }
                    }
                }
            }));
        }
    }
    for handle in handles {
        handle.await.expect("worker");
    }
    let b = buckets.lock().expect("provider lock");
    let minutes = sim.minutes as f64 + 1.0;
    let mean_tokens = 200.0 + 250.0;
    let calls_allowed = (sim.rpm as f64).min(sim.tpm as f64 / mean_tokens) * minutes;
    let sent = b.accepted + b.rejected;
    QuotaReport {
        sent,
        accepted: b.accepted,
        rate_limited: b.rejected,
        rejected_locally: *rejected_locally.lock().expect("lock"),
        tokens_used: b.accepted_tokens / (sim.tpm as f64 * minutes),
        requests_used: b.accepted as f64 / (sim.rpm as f64 * minutes),
        sent_over_quota: sent as f64 / calls_allowed,
        last_rate_limited: b
            .last_rejected
            .map(|t| t.duration_since(start).as_secs_f64()),
        longest_idle: b.longest_idle.as_secs_f64(),
    }
}

fn headers(b: &Buckets) -> http::response::Builder {
    let reset = |level: f64, limit: f64| {
        let secs = ((limit - level) / (limit / 60.0)).max(0.0);
        format_go_duration(Duration::from_millis((secs * 1000.0) as u64))
    };
    http::Response::builder()
        .header("x-ratelimit-limit-requests", (b.rpm as u64).to_string())
        .header(
            "x-ratelimit-remaining-requests",
            (b.requests.max(0.0) as u64).to_string(),
        )
        .header("x-ratelimit-reset-requests", reset(b.requests, b.rpm))
        .header("x-ratelimit-limit-tokens", (b.tpm as u64).to_string())
        .header(
            "x-ratelimit-remaining-tokens",
            (b.tokens.max(0.0) as u64).to_string(),
        )
        .header("x-ratelimit-reset-tokens", reset(b.tokens, b.tpm))
}

// ---- capacity -------------------------------------------------------------------------------

/// A provider that serves at most `capacity` calls at once, queues a tenth more, and
/// answers 529 beyond.
#[derive(Debug)]
pub struct Capacity {
    state: Mutex<CapacityState>,
}

#[derive(Debug)]
struct CapacityState {
    capacity: usize,
    serving: usize,
    queue: VecDeque<oneshot::Sender<()>>,
}

impl Capacity {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(CapacityState {
                capacity,
                serving: 0,
                queue: VecDeque::new(),
            }),
        })
    }

    pub fn set_capacity(&self, capacity: usize) {
        let mut s = self.state.lock().expect("capacity lock");
        s.capacity = capacity;
        Self::hand_over(&mut s);
    }

    fn hand_over(s: &mut CapacityState) {
        while s.serving < s.capacity {
            match s.queue.pop_front() {
                Some(next) => {
                    if next.send(()).is_ok() {
                        s.serving += 1;
                    }
                }
                None => break,
            }
        }
    }

    /// Waits for a place in service; `false` for a 529.
    async fn enter(&self) -> bool {
        let waiting = {
            let mut s = self.state.lock().expect("capacity lock");
            if s.serving < s.capacity && s.queue.is_empty() {
                s.serving += 1;
                return true;
            }
            if s.queue.len() >= (s.capacity / 10).max(1) {
                None
            } else {
                let (tx, rx) = oneshot::channel();
                s.queue.push_back(tx);
                Some(rx)
            }
        };
        match waiting {
            Some(rx) => rx.await.is_ok(),
            None => false,
        }
    }

    fn leave(&self) {
        let mut s = self.state.lock().expect("capacity lock");
        s.serving -= 1;
        Self::hand_over(&mut s);
    }
}

/// Settings of a capacity run.
#[derive(Debug, Clone)]
pub struct CapacitySim {
    /// `(from second, capacity)`, in order, the first at 0.
    pub phases: Vec<(u64, usize)>,
    pub seconds: u64,
    pub workers: usize,
    /// `None`: a fixed limit of `fixed`.
    pub algorithm: Option<LimitAlgorithm>,
    pub fixed: u32,
    pub initial_limit: u32,
    /// Time to first token when served at once.
    pub ttft: Duration,
    /// Answer lengths in tokens (5 ms each).
    pub answer_tokens: (u64, u64),
    /// Sample the total duration instead of the time to first token (to show why not).
    pub sample_total_duration: bool,
    pub seed: u64,
}

impl Default for CapacitySim {
    fn default() -> Self {
        Self {
            phases: vec![(0, 40), (40, 20), (80, 80)],
            seconds: 120,
            workers: 240,
            algorithm: Some(LimitAlgorithm::Gradient(Gradient::default())),
            fixed: 40,
            initial_limit: 20,
            ttft: Duration::from_millis(300),
            answer_tokens: (50, 250),
            sample_total_duration: false,
            seed: 11,
        }
    }
}

impl CapacitySim {
    pub fn aimd() -> Self {
        Self {
            algorithm: Some(LimitAlgorithm::Aimd(Aimd::default())),
            ..Self::default()
        }
    }

    pub fn fixed(limit: u32) -> Self {
        Self {
            algorithm: None,
            fixed: limit,
            ..Self::default()
        }
    }
}

/// What a capacity run measured.
#[derive(Debug, Clone)]
pub struct CapacityReport {
    /// The limit every 100 ms: (seconds, limit).
    pub limits: Vec<(f64, u32)>,
    /// Completed calls per phase, per second of the phase.
    pub throughput: Vec<f64>,
    /// 529s per phase.
    pub overloaded: Vec<u64>,
}

impl CapacityReport {
    /// The least and the most limit from `from` to `to` seconds.
    pub fn range(&self, from: f64, to: f64) -> (u32, u32) {
        let inside = self.limits.iter().filter(|(t, _)| *t >= from && *t < to);
        let min = inside.clone().map(|(_, l)| *l).min().unwrap_or(0);
        let max = inside.map(|(_, l)| *l).max().unwrap_or(0);
        (min, max)
    }

    /// The first time at or after `from` from which the limit stays within `lo..=hi` until
    /// `to`; `None` when it never settles.
    pub fn settled_at(&self, from: f64, to: f64, lo: u32, hi: u32) -> Option<f64> {
        let window: Vec<_> = self
            .limits
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .collect();
        let last_out = window.iter().rposition(|(_, l)| *l < lo || *l > hi);
        match last_out {
            None => Some(from),
            Some(i) if i + 1 < window.len() => Some(window[i + 1].0),
            Some(_) => None,
        }
    }
}

/// Runs the capacity scenario on the paused clock (call from a paused runtime).
pub async fn run_capacity(sim: CapacitySim) -> CapacityReport {
    let start = Instant::now();
    let provider = Capacity::new(sim.phases[0].1);
    let (min, max, initial, algorithm) = match sim.algorithm {
        Some(a) => (1, 1_000, sim.initial_limit, a),
        None => (
            sim.fixed,
            sim.fixed,
            sim.fixed,
            LimitAlgorithm::Aimd(Aimd::default()),
        ),
    };
    let bulkhead = AdaptiveBulkhead::builder("sim")
        .algorithm(algorithm)
        .initial_limit(initial)
        .limits(min, max)
        .max_queue(sim.workers as u32)
        .max_wait(Duration::from_secs(3600))
        .build()
        .expect("a valid bulkhead");
    let end = start + Duration::from_secs(sim.seconds);
    let phase_of = {
        let phases = sim.phases.clone();
        move |t: Instant| {
            let secs = t.duration_since(start).as_secs();
            phases
                .iter()
                .rposition(|(from, _)| *from <= secs)
                .unwrap_or(0)
        }
    };
    let completed = Arc::new(Mutex::new(vec![0u64; sim.phases.len()]));
    let overloaded = Arc::new(Mutex::new(vec![0u64; sim.phases.len()]));
    let mut handles = Vec::new();
    for worker in 0..sim.workers {
        let mut rng = Rng::new(sim.seed * 10_000 + worker as u64);
        let (provider, bulkhead) = (provider.clone(), bulkhead.clone());
        let (completed, overloaded, phase_of) =
            (completed.clone(), overloaded.clone(), phase_of.clone());
        let (ttft, tokens, total) = (sim.ttft, sim.answer_tokens, sim.sample_total_duration);
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(rng.range(0, 1000))).await;
            while Instant::now() < end {
                let Ok(mut permit) = bulkhead.acquire().await else {
                    continue;
                };
                let began = Instant::now();
                if !provider.enter().await {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    overloaded.lock().expect("lock")[phase_of(Instant::now())] += 1;
                    permit.record(Signal::Congestion);
                    continue;
                }
                tokio::time::sleep(ttft).await;
                if !total {
                    permit.first_token();
                }
                tokio::time::sleep(Duration::from_millis(5 * rng.range(tokens.0, tokens.1))).await;
                provider.leave();
                if total {
                    permit.record_latency(began.elapsed());
                }
                permit.record(Signal::Success);
                completed.lock().expect("lock")[phase_of(Instant::now())] += 1;
            }
        }));
    }
    // The capacity steps and the limit's trace.
    let mut limits = Vec::new();
    let mut next_phase = 1;
    while Instant::now() < end {
        let secs = Instant::now().duration_since(start).as_secs_f64();
        if next_phase < sim.phases.len() && secs >= sim.phases[next_phase].0 as f64 {
            provider.set_capacity(sim.phases[next_phase].1);
            next_phase += 1;
        }
        limits.push((secs, bulkhead.limit()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for handle in handles {
        handle.await.expect("worker");
    }
    let completed = completed.lock().expect("lock").clone();
    let throughput = completed
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let from = sim.phases[i].0;
            let to = sim.phases.get(i + 1).map_or(sim.seconds, |p| p.0);
            *n as f64 / (to - from) as f64
        })
        .collect();
    CapacityReport {
        limits,
        throughput,
        overloaded: overloaded.lock().expect("lock").clone(),
    }
}
