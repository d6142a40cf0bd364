//! The outage demo: the same load, through a naive retrying client and through a tower-breaker
//! stack, while a mock AI provider goes down in every way real ones do.
//!
//! ```text
//! cargo run --release --features chaos,http --example outage              # about a minute, 500 requests a minute
//! cargo run --release --features chaos,http --example outage -- --quick   # under 15 s (what CI runs)
//! cargo run --release --features chaos,http --example outage -- --svg outage.svg
//! cargo run --release --features chaos,http --example outage -- --help
//! ```
//!
//! Two mock providers run on 127.0.0.1: the crate's mock LLM upstream (`tests/support/upstream.rs`,
//! OpenAI-style `/v1/chat/completions`, JSON and SSE streaming). `primary` goes through a phase
//! script, played by a `ChaosLayer` whose faults each switch on during their phase: healthy,
//! hard outage (503), hang (no answer), 429 storm with `Retry-After`, streams cut midway,
//! recovery. `backup` stays healthy.
//! Each client gets its own pair of providers, both following the same clock, so neither
//! client's load changes what the other sees.
//!
//! - The naive client calls `primary` with a timeout and retries up to three times.
//! - The stack: a fallback answer, over a failover from `primary` to `backup`, each provider
//!   behind its own circuit breaker, bulkhead and attempt timeout.

#[path = "../tests/support/upstream.rs"]
mod upstream;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::{BoxCloneService, BoxCloneSyncService};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::Outcome;
use tower_breaker::bulkhead::Bulkhead;
use tower_breaker::chaos::{ChaosLayer, Fault};
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerEvent, CircuitState, Permit, RecordOutcome, SlidingWindow,
};
use tower_breaker::failover::Failover;
use tower_breaker::fallback::FallbackLayer;
use upstream::Upstream;

// ---------------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Options {
    duration: Duration,
    rate_per_min: f64,
    svg: Option<String>,
    check: bool,
    quick: bool,
}

const HELP: &str = "\
outage: the same load through a naive retrying client and through a tower-breaker stack,
while a mock AI provider has an outage (503s, hangs, a 429 storm, streams cut midway).

USAGE:
    cargo run --release --features chaos,http --example outage -- [OPTIONS]

OPTIONS:
    --quick            A short run for CI: 10 s at 1,800 requests a minute (finishes in < 15 s)
    --duration SECS    Length of the phase script, 5 to 600 seconds [default: 60]
    --rate N           Requests per minute, 10 to 60000 [default: 500]
    --svg FILE         Also write the breaker timeline and latency over time as an SVG chart
    --check            Exit with status 1 unless the stack beats the naive client: requests
                       reaching the failing provider during the outage at most 5 % of the
                       naive client's, and p99 latency during the outage at most 1/20 of its
    -h, --help         Print this help
";

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        duration: Duration::from_secs(60),
        rate_per_min: 500.0,
        svg: None,
        check: false,
        quick: false,
    };
    let mut duration_set = false;
    let mut rate_set = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--quick" => options.quick = true,
            "--check" => options.check = true,
            "--svg" => {
                options.svg = Some(args.next().ok_or("--svg needs a file name")?);
            }
            "--duration" => {
                let value = args.next().ok_or("--duration needs a number of seconds")?;
                let secs: f64 = value
                    .parse()
                    .map_err(|_| format!("--duration: `{value}` is not a number of seconds"))?;
                if !(5.0..=600.0).contains(&secs) {
                    return Err(format!("--duration: {secs} is outside 5 to 600 seconds"));
                }
                options.duration = Duration::from_secs_f64(secs);
                duration_set = true;
            }
            "--rate" => {
                let value = args
                    .next()
                    .ok_or("--rate needs a number of requests a minute")?;
                let rate: f64 = value
                    .parse()
                    .map_err(|_| format!("--rate: `{value}` is not a number"))?;
                if !(10.0..=60_000.0).contains(&rate) {
                    return Err(format!("--rate: {rate} is outside 10 to 60000 a minute"));
                }
                options.rate_per_min = rate;
                rate_set = true;
            }
            other => return Err(format!("unknown option `{other}` (try --help)")),
        }
    }
    if options.quick {
        if !duration_set {
            options.duration = Duration::from_secs(10);
        }
        if !rate_set {
            options.rate_per_min = 1_800.0;
        }
    }
    Ok(options)
}

// ---------------------------------------------------------------------------------------------
// The phase script

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Healthy,
    Outage,
    Hang,
    RateLimited,
    CutStreams,
    Recovery,
}

impl Phase {
    /// (phase, start as a fraction of the run)
    const SCRIPT: [(Phase, f64); 6] = [
        (Phase::Healthy, 0.0),
        (Phase::Outage, 0.15),
        (Phase::Hang, 0.35),
        (Phase::RateLimited, 0.50),
        (Phase::CutStreams, 0.65),
        (Phase::Recovery, 0.80),
    ];

    fn at(fraction: f64) -> Phase {
        Self::SCRIPT
            .iter()
            .rev()
            .find(|(_, start)| fraction >= *start)
            .map_or(Phase::Healthy, |(p, _)| *p)
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::Outage => "hard outage (503)",
            Phase::Hang => "hang (no answer)",
            Phase::RateLimited => "429 storm",
            Phase::CutStreams => "streams cut midway",
            Phase::Recovery => "recovery",
        }
    }

    fn is_outage(self) -> bool {
        !matches!(self, Phase::Healthy | Phase::Recovery)
    }
}

#[derive(Clone)]
struct Clock {
    start: Instant,
    length: Duration,
}

impl Clock {
    fn fraction(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64() / self.length.as_secs_f64()
    }

    fn phase(&self, at: Instant) -> Phase {
        Phase::at(self.fraction(at))
    }

    fn start_of(&self, phase: Phase) -> Duration {
        let fraction = Phase::SCRIPT
            .iter()
            .find(|(p, _)| *p == phase)
            .map_or(0.0, |(_, f)| *f);
        self.length.mul_f64(fraction)
    }
}

// ---------------------------------------------------------------------------------------------
// Mock providers: the crate's mock LLM upstream, with the phase script as chaos faults

/// The failing provider's faults: each one on while the clock is in its phase.
fn phase_faults(
    clock: &Clock,
    retry_after_secs: u64,
) -> Result<ChaosLayer<http::request::Parts>, BoxError> {
    let during = |phase: Phase| {
        let clock = clock.clone();
        move |_: &http::request::Parts| clock.phase(Instant::now()) == phase
    };
    let cut = during(Phase::CutStreams);
    let cut_json = during(Phase::CutStreams);
    let streaming = |req: &http::request::Parts| {
        req.headers
            .get("accept")
            .is_some_and(|accept| accept == "text/event-stream")
    };
    Ok(ChaosLayer::http("primary")
        .inject_when(Fault::service_unavailable(), 1.0, during(Phase::Outage))
        // A hang: no answer within any timeout of the run.
        .inject_when(
            Fault::latency(Duration::from_secs(3600)),
            1.0,
            during(Phase::Hang),
        )
        .inject_when(
            Fault::rate_limited(Some(Duration::from_secs(retry_after_secs))),
            1.0,
            during(Phase::RateLimited),
        )
        // The upstream dies halfway through a streamed answer: the connection is reset.
        .inject_when(Fault::reset_after(3), 1.0, move |req| {
            cut(req) && streaming(req)
        })
        .inject_when(Fault::error("connection reset"), 1.0, move |req| {
            cut_json(req) && !streaming(req)
        })
        .build()?)
}

/// One provider on 127.0.0.1: healthy answers take a few milliseconds, like a small
/// completion on loopback; streams send an event every 2 ms.
async fn start_provider(name: &str, chaos: Option<ChaosLayer<http::request::Parts>>) -> Upstream {
    let builder = Upstream::builder()
        .reply(format!("Hello from {name}"))
        .latency(Duration::from_millis(5))
        .chunks(3)
        .chunk_interval(Duration::from_millis(2));
    match chaos {
        Some(layer) => builder.chaos(layer),
        None => builder,
    }
    .start()
    .await
}

// ---------------------------------------------------------------------------------------------
// The client side

#[derive(Debug, Clone)]
struct ChatRequest {
    stream: bool,
}

/// One real HTTP call: POST the request, read the JSON or the whole SSE stream. A non-2xx
/// status, a transport error or a stream that ends before `[DONE]` is an error.
fn http_client(addr: SocketAddr) -> BoxCloneSyncService<ChatRequest, String, BoxError> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("a reqwest client with default settings");
    let url = format!("http://{addr}/v1/chat/completions");
    BoxCloneSyncService::new(service_fn(move |req: ChatRequest| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = format!(
                r#"{{"model":"demo","stream":{},"messages":[{{"role":"user","content":"hi"}}]}}"#,
                req.stream
            );
            let accept = if req.stream {
                "text/event-stream"
            } else {
                "application/json"
            };
            let mut res = http
                .post(&url)
                .header("accept", accept)
                .body(body)
                .send()
                .await?;
            let status = res.status();
            if !status.is_success() {
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .map(Duration::from_secs);
                return Err::<String, BoxError>(Box::new(UpstreamError {
                    status: status.as_u16(),
                    retry_after,
                }));
            }
            let mut text = String::new();
            while let Some(chunk) = res.chunk().await? {
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
            let complete = if req.stream {
                text.contains("[DONE]")
            } else {
                text.trim_end().ends_with('}')
            };
            if !complete {
                return Err("the answer ended midway".into());
            }
            Ok(text)
        }
    }))
}

/// An answer with a status that is not a success.
#[derive(Debug)]
struct UpstreamError {
    status: u16,
    retry_after: Option<Duration>,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream answered {}", self.status)
    }
}

impl std::error::Error for UpstreamError {}

/// How the stack's breakers count results: a 429 is a rate limit (a cool-down for its
/// `Retry-After`, not a failure); a 5xx with `Retry-After` keeps the breaker open at least that
/// long; any other error (timeouts, resets, streams cut midway) is a failure.
#[derive(Clone)]
struct ProviderRecorder;

impl RecordOutcome<Answer, BoxError> for ProviderRecorder {
    type Response = Answer;

    fn record(&self, result: Result<Answer, BoxError>, permit: Permit) -> Result<Answer, BoxError> {
        match &result {
            Ok(_) => permit.record(Outcome::Success),
            Err(e) => match e.downcast_ref::<UpstreamError>() {
                Some(u) if u.status == 429 => permit.record_rate_limited(u.retry_after),
                Some(u) => permit.record_with_retry_after(Outcome::Failure, u.retry_after),
                None => permit.record(Outcome::Failure),
            },
        }
        result
    }
}

/// The naive client: the primary only, a timeout per attempt, three attempts, 100 ms apart.
fn naive_client(
    primary: SocketAddr,
    timeout: Duration,
) -> BoxCloneService<ChatRequest, String, BoxError> {
    let client = http_client(primary);
    BoxCloneService::new(service_fn(move |req: ChatRequest| {
        let client = client.clone();
        async move {
            let mut last = None;
            for attempt in 0..3 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let call = client.clone().oneshot(req.clone());
                match tokio::time::timeout(timeout, call).await {
                    Ok(Ok(answer)) => return Ok(answer),
                    Ok(Err(e)) => last = Some(e),
                    Err(elapsed) => last = Some(elapsed.into()),
                }
            }
            Err(last.unwrap_or_else(|| "no attempt was made".into()))
        }
    }))
}

struct Stack {
    service: BoxCloneService<ChatRequest, Answer, BoxError>,
    primary: CircuitBreaker,
}

/// The `primary` breaker's transitions: (time since start, new state).
type Timeline = Arc<Mutex<Vec<(Duration, CircuitState)>>>;
/// One provider's stack, boxed so that both providers have one type (and `Sync`, so that the
/// failover's futures are `Send`).
type ProviderService = BoxCloneSyncService<ChatRequest, Answer, BoxError>;

/// The tower-breaker stack: fallback over failover over per-provider breaker + bulkhead +
/// attempt timeout.
fn breaker_stack(
    primary: SocketAddr,
    backup: SocketAddr,
    clock: &Clock,
    timeline: Timeline,
) -> Result<Stack, BoxError> {
    let quick = clock.length < Duration::from_secs(20);
    let attempt_timeout = Duration::from_millis(150);
    let start = clock.start;
    let provider = |name: &str,
                    addr: SocketAddr,
                    on_event: Option<Timeline>|
     -> Result<(CircuitBreaker, ProviderService), BoxError> {
        let mut builder = CircuitBreaker::builder(name)
            .sliding_window(SlidingWindow::count_based(20))
            .minimum_calls(5)
            .failure_rate_threshold(0.5)
            .wait_in_open(if quick {
                Duration::from_millis(700)
            } else {
                Duration::from_secs(3)
            })
            .open_time_growth(1.5, Duration::from_secs(if quick { 2 } else { 10 }))
            .permitted_calls_in_half_open(1);
        if let Some(timeline) = on_event {
            builder = builder.on_event(move |e: &CircuitBreakerEvent| {
                if let CircuitBreakerEvent::StateTransition { to, .. } = e {
                    if let Ok(mut t) = timeline.lock() {
                        t.push((start.elapsed(), *to));
                    }
                }
            });
        }
        let breaker = builder.build()?;
        let bulkhead = Bulkhead::builder(name)
            .max_concurrent(64)
            .max_queue(0)
            .max_wait(Duration::from_millis(50))
            .build()?;
        let provider_name: &'static str = if name == "primary" {
            "primary"
        } else {
            "backup"
        };
        let service = ServiceBuilder::new()
            .layer(breaker.layer().record_with(ProviderRecorder))
            .layer(bulkhead.layer())
            .timeout(attempt_timeout)
            .map_response(move |_text: String| Answer::Provider(provider_name))
            .service(http_client(addr));
        Ok((breaker, BoxCloneSyncService::new(service)))
    };
    let (primary_breaker, primary_svc): (CircuitBreaker, ProviderService) =
        provider("primary", primary, Some(timeline))?;
    let (backup_breaker, backup_svc) = provider("backup", backup, None)?;
    let failover = Failover::builder()
        .provider("primary", Some(primary_breaker.clone()), primary_svc)
        .provider("backup", Some(backup_breaker), backup_svc)
        .build();
    let service = ServiceBuilder::new()
        .layer(FallbackLayer::from_fn(|_failed| Ok(Answer::Fallback)))
        .service(failover);
    Ok(Stack {
        service: BoxCloneService::new(service),
        primary: primary_breaker,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Provider(&'static str),
    Fallback,
}

// ---------------------------------------------------------------------------------------------
// Load and measurement

#[derive(Debug, Clone, Copy)]
struct Sample {
    started: Duration,
    latency: Duration,
    answered: bool,
    fallback: bool,
    from_primary: bool,
}

struct World {
    clock: Clock,
    primary: Upstream,
    _backup: Upstream,
    samples: Arc<Mutex<Vec<Sample>>>,
    done: Arc<AtomicUsize>,
}

impl World {
    async fn new(
        clock: Clock,
        retry_after_secs: u64,
    ) -> Result<(Self, SocketAddr, SocketAddr), BoxError> {
        let primary =
            start_provider("primary", Some(phase_faults(&clock, retry_after_secs)?)).await;
        let backup = start_provider("backup", None).await;
        let (primary_addr, backup_addr) = (primary.addr, backup.addr);
        Ok((
            Self {
                clock,
                primary,
                _backup: backup,
                samples: Arc::new(Mutex::new(Vec::new())),
                done: Arc::new(AtomicUsize::new(0)),
            },
            primary_addr,
            backup_addr,
        ))
    }
}

/// Sends `count` requests at a fixed rate (open loop: a slow answer does not slow the
/// arrivals), each through `call`.
async fn run_load<F, Fut>(world: &World, count: usize, interval: Duration, call: F)
where
    F: Fn(ChatRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Answer, BoxError>> + Send + 'static,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        ticker.tick().await;
        let req = ChatRequest { stream: i % 3 == 0 };
        let started = world.clock.start.elapsed();
        let begin = Instant::now();
        let future = call(req);
        let (samples, done) = (world.samples.clone(), world.done.clone());
        tasks.push(tokio::spawn(async move {
            let result = future.await;
            let sample = Sample {
                started,
                latency: begin.elapsed(),
                answered: result.is_ok(),
                fallback: matches!(result, Ok(Answer::Fallback)),
                from_primary: matches!(result, Ok(Answer::Provider("primary"))),
            };
            if let Ok(mut s) = samples.lock() {
                s.push(sample);
            }
            done.fetch_add(1, Ordering::Relaxed);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

#[derive(Debug, Default)]
struct Summary {
    requests: usize,
    answered: usize,
    from_provider: usize,
    fallback: usize,
    outage_requests: usize,
    p50: Duration,
    p95: Duration,
    p99: Duration,
    primary_hits_during_outage: usize,
    recovered_after: Option<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summarize(world: &World) -> Summary {
    let samples = world.samples.lock().map(|s| s.clone()).unwrap_or_default();
    let clock = &world.clock;
    let outage_start = clock.start_of(Phase::Outage);
    let recovery_start = clock.start_of(Phase::Recovery);
    let mut outage: Vec<Duration> = samples
        .iter()
        .filter(|s| s.started >= outage_start && s.started < recovery_start)
        .map(|s| s.latency)
        .collect();
    outage.sort();
    let recovered_after = samples
        .iter()
        .filter(|s| s.started >= recovery_start && s.from_primary)
        .map(|s| s.started + s.latency - recovery_start)
        .min();
    Summary {
        requests: samples.len(),
        answered: samples.iter().filter(|s| s.answered).count(),
        from_provider: samples.iter().filter(|s| s.answered && !s.fallback).count(),
        fallback: samples.iter().filter(|s| s.fallback).count(),
        outage_requests: outage.len(),
        p50: percentile(&outage, 50.0),
        p95: percentile(&outage, 95.0),
        p99: percentile(&outage, 99.0),
        primary_hits_during_outage: world
            .primary
            .received()
            .iter()
            .filter(|r| clock.phase(r.at).is_outage())
            .count(),
        recovered_after,
    }
}

fn ms(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn pct(part: usize, whole: usize) -> String {
    if whole == 0 {
        "-".to_string()
    } else {
        format!("{:.1} %", 100.0 * part as f64 / whole as f64)
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}\n\n{HELP}");
            std::process::exit(2);
        }
    };
    match run(options).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

async fn run(options: Options) -> Result<bool, BoxError> {
    let count = (options.rate_per_min / 60.0 * options.duration.as_secs_f64()).round() as usize;
    let interval = Duration::from_secs_f64(options.duration.as_secs_f64() / count.max(1) as f64);
    let quick = options.duration < Duration::from_secs(20);
    // A typical client timeout, shortened for the quick run so that it still ends in time.
    let naive_timeout = if quick {
        Duration::from_millis(2500)
    } else {
        Duration::from_secs(10)
    };
    let retry_after_secs = 1;
    println!(
        "outage demo: {count} requests over {:.0} s ({:.0} a minute), the same load through each client",
        options.duration.as_secs_f64(),
        options.rate_per_min
    );
    println!("phase script for `primary` (`backup` stays healthy):");
    for (phase, start) in Phase::SCRIPT {
        println!(
            "  from {:>5.1} s  {}",
            options.duration.as_secs_f64() * start,
            phase.name()
        );
    }
    println!();

    let start = Instant::now();
    let clock = Clock {
        start,
        length: options.duration,
    };
    let (naive_world, naive_primary, _naive_backup) =
        World::new(clock.clone(), retry_after_secs).await?;
    let (stack_world, stack_primary, stack_backup) =
        World::new(clock.clone(), retry_after_secs).await?;
    let timeline = Arc::new(Mutex::new(vec![(Duration::ZERO, CircuitState::Closed)]));
    let stack = breaker_stack(stack_primary, stack_backup, &clock, timeline.clone())?;
    let naive = naive_client(naive_primary, naive_timeout);

    let progress = {
        let (naive_done, stack_done) = (naive_world.done.clone(), stack_world.done.clone());
        let length = options.duration;
        let tty = std::io::stderr().is_terminal();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis(if tty { 200 } else { 2000 }));
            loop {
                tick.tick().await;
                let elapsed = start.elapsed();
                let fraction = (elapsed.as_secs_f64() / length.as_secs_f64()).min(1.0);
                let filled = (fraction * 30.0) as usize;
                let line = format!(
                    "[{}{}] {:>5.1} s  {:<20} naive {:>4}/{count}  stack {:>4}/{count}",
                    "#".repeat(filled),
                    ".".repeat(30 - filled),
                    elapsed.as_secs_f64(),
                    Phase::at(fraction).name(),
                    naive_done.load(Ordering::Relaxed),
                    stack_done.load(Ordering::Relaxed),
                );
                if tty {
                    eprint!("\r{line}");
                } else {
                    eprintln!("{line}");
                }
                let _ = std::io::stderr().flush();
            }
        })
    };

    let naive_load = run_load(&naive_world, count, interval, |req| {
        let naive = naive.clone();
        async move {
            naive
                .oneshot(req)
                .await
                .map(|_| Answer::Provider("primary"))
        }
    });
    let stack_load = run_load(&stack_world, count, interval, |req| {
        let mut service = stack.service.clone();
        async move { service.ready().await?.call(req).await }
    });
    tokio::join!(naive_load, stack_load);
    progress.abort();
    eprintln!();

    let naive_summary = summarize(&naive_world);
    let stack_summary = summarize(&stack_world);
    let timeline = timeline.lock().map(|t| t.clone()).unwrap_or_default();
    print_report(
        &clock,
        &naive_summary,
        &stack_summary,
        &timeline,
        &stack.primary,
    );

    if let Some(path) = &options.svg {
        write_svg(path, &clock, &naive_world, &stack_world, &timeline)?;
        println!("\nwrote {path}");
    }

    let hits_ok =
        stack_summary.primary_hits_during_outage * 20 <= naive_summary.primary_hits_during_outage;
    let p99_ok = stack_summary.p99 * 20 <= naive_summary.p99;
    println!();
    println!(
        "headline: requests reaching the failing provider during the outage: stack {} vs naive {} ({}, target <= 5 %): {}",
        stack_summary.primary_hits_during_outage,
        naive_summary.primary_hits_during_outage,
        pct(
            stack_summary.primary_hits_during_outage,
            naive_summary.primary_hits_during_outage
        ),
        if hits_ok { "met" } else { "MISSED" }
    );
    println!(
        "headline: p99 latency during the outage: stack {} vs naive {} (target <= 1/20): {}",
        ms(stack_summary.p99),
        ms(naive_summary.p99),
        if p99_ok { "met" } else { "MISSED" }
    );
    if options.check {
        return Ok(hits_ok && p99_ok);
    }
    Ok(true)
}

fn print_report(
    clock: &Clock,
    naive: &Summary,
    stack: &Summary,
    timeline: &[(Duration, CircuitState)],
    primary: &CircuitBreaker,
) {
    let outage_start = clock.start_of(Phase::Outage);
    let detected = timeline
        .iter()
        .find(|(t, s)| *t >= outage_start && *s == CircuitState::Open)
        .map(|(t, _)| *t - outage_start);
    let row = |label: &str, a: String, b: String| println!("{label:<44} {a:>14} {b:>14}");
    row("", "naive".into(), "tower-breaker".into());
    row(
        "requests",
        naive.requests.to_string(),
        stack.requests.to_string(),
    );
    row(
        "answered (success rate)",
        pct(naive.answered, naive.requests),
        pct(stack.answered, stack.requests),
    );
    row(
        "answered by a provider",
        pct(naive.from_provider, naive.requests),
        pct(stack.from_provider, stack.requests),
    );
    row(
        "answered by the fallback",
        naive.fallback.to_string(),
        stack.fallback.to_string(),
    );
    row(
        "requests during the outage",
        naive.outage_requests.to_string(),
        stack.outage_requests.to_string(),
    );
    row(
        "latency p50 during the outage",
        ms(naive.p50),
        ms(stack.p50),
    );
    row(
        "latency p95 during the outage",
        ms(naive.p95),
        ms(stack.p95),
    );
    row(
        "latency p99 during the outage",
        ms(naive.p99),
        ms(stack.p99),
    );
    row(
        "calls reaching the failing provider (outage)",
        naive.primary_hits_during_outage.to_string(),
        stack.primary_hits_during_outage.to_string(),
    );
    row(
        "time to detect the outage",
        "never".into(),
        detected.map_or("-".into(), ms),
    );
    row(
        "time to recover (first primary answer)",
        naive.recovered_after.map_or("-".into(), ms),
        stack.recovered_after.map_or("-".into(), ms),
    );
    println!();
    println!("`primary` breaker timeline (stack):");
    for (t, state) in timeline {
        println!(
            "  {:>7.2} s  {:<13} ({})",
            t.as_secs_f64(),
            state.as_str(),
            clock.phase(clock.start + *t).name()
        );
    }
    let m = primary.metrics();
    println!(
        "  now: {} with {} calls in its window; {} rate-limited or cancelled calls ignored",
        m.state, m.calls, m.ignored_calls
    );
}

fn write_svg(
    path: &str,
    clock: &Clock,
    naive: &World,
    stack: &World,
    timeline: &[(Duration, CircuitState)],
) -> Result<(), BoxError> {
    use plotters::prelude::*;
    let length = clock.length.as_secs_f64();
    let naive = naive.samples.lock().map(|s| s.clone()).unwrap_or_default();
    let stack = stack.samples.lock().map(|s| s.clone()).unwrap_or_default();
    let max_latency = naive
        .iter()
        .chain(&stack)
        .map(|s| s.latency.as_secs_f64() * 1e3)
        .fold(1.0, f64::max);

    let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(460);

    let mut latency = ChartBuilder::on(&top)
        .caption(
            "Latency by request start (ms, log scale)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..length, (0.5..max_latency * 1.2).log_scale())?;
    latency
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("latency (ms)")
        .draw()?;
    for (samples, color, label) in [
        (&naive, RED, "naive client"),
        (&stack, BLUE, "tower-breaker stack"),
    ] {
        latency
            .draw_series(samples.iter().map(|s| {
                Circle::new(
                    (
                        s.started.as_secs_f64(),
                        (s.latency.as_secs_f64() * 1e3).max(0.5),
                    ),
                    2,
                    color.filled(),
                )
            }))?
            .label(label)
            .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
    }
    for (phase, start) in Phase::SCRIPT.iter().skip(1) {
        let x = start * length;
        latency.draw_series(LineSeries::new(
            [(x, 0.5), (x, max_latency * 1.2)],
            BLACK.mix(0.2),
        ))?;
        latency.draw_series(std::iter::once(Text::new(
            phase.name(),
            (x, max_latency),
            ("sans-serif", 12),
        )))?;
    }
    latency
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;

    let level = |s: CircuitState| match s {
        CircuitState::Closed | CircuitState::Disabled | CircuitState::MetricsOnly => 0.0,
        CircuitState::HalfOpen => 1.0,
        CircuitState::RateLimited => 1.5,
        CircuitState::Open | CircuitState::ForcedOpen => 2.0,
    };
    let mut states = ChartBuilder::on(&bottom)
        .caption(
            "`primary` breaker state (0 closed, 1 half-open, 1.5 rate-limited, 2 open)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..length, -0.2..2.3)?;
    states
        .configure_mesh()
        .x_desc("seconds since start")
        .draw()?;
    let mut steps = Vec::new();
    let mut current = 0.0;
    for (t, s) in timeline {
        let x = t.as_secs_f64();
        steps.push((x, current));
        current = level(*s);
        steps.push((x, current));
    }
    steps.push((length, current));
    states.draw_series(LineSeries::new(steps, BLUE.stroke_width(2)))?;
    root.present()?;
    Ok(())
}
