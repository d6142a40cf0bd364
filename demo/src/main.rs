//! The outage demo: the same load through three clients while a mock AI provider goes down in
//! every way real ones do: a naive retrying client, the same naive client with a failover to a
//! backup provider, and a tower-breaker stack with the same two providers.
//!
//! ```text
//! cargo run --release -p outage-demo                       # about a minute, 500 requests a minute
//! cargo run --release -p outage-demo -- --quick --check    # 10 s (what CI runs)
//! cargo run --release -p outage-demo -- --svg outage.svg
//! cargo run --release -p outage-demo -- --help
//! ```
//!
//! Each client gets its own pair of mock providers on 127.0.0.1 (`provider.rs`, OpenAI-style
//! `/v1/chat/completions`, JSON and SSE streaming), all following the same clock, so no
//! client's load changes what another sees. `primary` goes through a phase script, played by a
//! `ChaosLayer` whose faults each switch on during their phase: healthy, hard outage (503), hang
//! (no answer), 429 storm with `Retry-After`, streams cut midway, recovery. `backup` stays
//! healthy.
//!
//! - naive: `primary` only, a timeout per attempt, three attempts 100 ms apart.
//! - naive + failover: the same three attempts on `primary`, then three on `backup`.
//! - the stack: a fallback answer, over a failover from `primary` to `backup`, each provider
//!   behind its own circuit breaker, bulkhead and attempt timeout.

mod provider;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use provider::Provider;
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
outage: the same load through a naive retrying client, the same client with a failover to a
backup provider, and a tower-breaker stack with the same two providers, while the primary
provider has an outage (503s, hangs, a 429 storm, streams cut midway).

USAGE:
    cargo run --release -p outage-demo -- [OPTIONS]

OPTIONS:
    --quick            A short run for CI: 10 s at 1,800 requests a minute (finishes in < 15 s)
    --duration SECS    Length of the phase script, 5 to 600 seconds [default: 60]
    --rate N           Requests per minute, 10 to 60000 [default: 500]
    --svg FILE         Also write the breaker timeline and latency over time as an SVG chart
    --check            Exit with status 1 unless the stack beats both naive clients: requests
                       reaching the failing provider during the outage at most 5 % of each
                       naive client's, and p99 latency during the outage at most 1/20 of each
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
// Mock providers (`provider.rs`), with the phase script as chaos faults

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

// ---------------------------------------------------------------------------------------------
// The client side

#[derive(Debug, Clone)]
struct ChatRequest {
    stream: bool,
}

/// One real HTTP call: POST the request, read the JSON or the whole SSE stream. A non-2xx
/// status, a transport error or a stream that ends before `[DONE]` is an error.
fn http_client(addr: SocketAddr) -> BoxCloneSyncService<ChatRequest, String, BoxError> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build(connector);
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
            let request = http::Request::post(url)
                .header("accept", accept)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))?;
            let res = http.request(request).await?;
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
            // A stream reset midway is an error here.
            let body = res.into_body().collect().await?.to_bytes();
            let text = String::from_utf8_lossy(&body).into_owned();
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

/// Up to three attempts, 100 ms apart, each with `timeout`: what a hand-written client does.
async fn three_attempts(
    client: &BoxCloneSyncService<ChatRequest, String, BoxError>,
    req: &ChatRequest,
    timeout: Duration,
) -> Result<String, BoxError> {
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

/// The naive client: the primary only, three attempts with a timeout each.
fn naive_client(
    primary: SocketAddr,
    timeout: Duration,
) -> BoxCloneService<ChatRequest, Answer, BoxError> {
    let client = http_client(primary);
    BoxCloneService::new(service_fn(move |req: ChatRequest| {
        let client = client.clone();
        async move {
            three_attempts(&client, &req, timeout).await?;
            Ok(Answer::Provider("primary"))
        }
    }))
}

/// The naive client with the stack's two providers: three attempts on the primary, then three
/// on the backup. Like for like with the stack, minus the breakers.
fn naive_failover_client(
    primary: SocketAddr,
    backup: SocketAddr,
    timeout: Duration,
) -> BoxCloneService<ChatRequest, Answer, BoxError> {
    let (primary, backup) = (http_client(primary), http_client(backup));
    BoxCloneService::new(service_fn(move |req: ChatRequest| {
        let (primary, backup) = (primary.clone(), backup.clone());
        async move {
            if three_attempts(&primary, &req, timeout).await.is_ok() {
                return Ok(Answer::Provider("primary"));
            }
            three_attempts(&backup, &req, timeout).await?;
            Ok(Answer::Provider("backup"))
        }
    }))
}

/// The breakers' first wait in open, and the most it grows to (1.5x with each reopening in a
/// row); shorter in the quick run, so that it still shows a few rounds.
fn wait_in_open(quick: bool) -> (Duration, Duration) {
    if quick {
        (Duration::from_millis(700), Duration::from_secs(2))
    } else {
        (Duration::from_secs(3), Duration::from_secs(10))
    }
}

/// The stack's timeout for one call to one provider.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(150);

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
    let start = clock.start;
    let provider = |name: &str,
                    addr: SocketAddr,
                    on_event: Option<Timeline>|
     -> Result<(CircuitBreaker, ProviderService), BoxError> {
        let mut builder = CircuitBreaker::builder(name)
            .sliding_window(SlidingWindow::count_based(20))
            .minimum_calls(5)
            .failure_rate_threshold(0.5)
            .wait_in_open(wait_in_open(quick).0)
            .open_time_growth(1.5, wait_in_open(quick).1)
            .permitted_calls_in_half_open(1);
        if let Some(timeline) = on_event {
            builder = builder.on_event(move |e: &CircuitBreakerEvent| {
                if let CircuitBreakerEvent::StateTransition { to, .. } = e
                    && let Ok(mut t) = timeline.lock()
                {
                    t.push((start.elapsed(), *to));
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
            .timeout(ATTEMPT_TIMEOUT)
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
    from_backup: bool,
}

struct World {
    clock: Clock,
    primary: Provider,
    _backup: Provider,
    samples: Arc<Mutex<Vec<Sample>>>,
    done: Arc<AtomicUsize>,
}

impl World {
    /// A client's own pair of providers, with `primary` on the phase script.
    async fn new(
        clock: Clock,
        retry_after_secs: u64,
    ) -> Result<(Self, SocketAddr, SocketAddr), BoxError> {
        let primary =
            Provider::start("primary", Some(phase_faults(&clock, retry_after_secs)?)).await?;
        let backup = Provider::start("backup", None).await?;
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
                from_backup: matches!(result, Ok(Answer::Provider("backup"))),
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

/// Runs three futures at once on this task and waits for all three (what `tokio::join!` does,
/// without tokio's `macros` feature and the proc-macro crates it compiles).
async fn join3(
    a: impl Future<Output = ()>,
    b: impl Future<Output = ()>,
    c: impl Future<Output = ()>,
) {
    let (mut a, mut b, mut c) = (std::pin::pin!(a), std::pin::pin!(b), std::pin::pin!(c));
    let mut done = [false; 3];
    std::future::poll_fn(|cx| {
        done[0] = done[0] || a.as_mut().poll(cx).is_ready();
        done[1] = done[1] || b.as_mut().poll(cx).is_ready();
        done[2] = done[2] || c.as_mut().poll(cx).is_ready();
        if done == [true; 3] {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

#[derive(Debug, Default)]
struct Summary {
    requests: usize,
    answered: usize,
    from_provider: usize,
    from_backup: usize,
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
        from_backup: samples.iter().filter(|s| s.from_backup).count(),
        fallback: samples.iter().filter(|s| s.fallback).count(),
        outage_requests: outage.len(),
        p50: percentile(&outage, 50.0),
        p95: percentile(&outage, 95.0),
        p99: percentile(&outage, 99.0),
        primary_hits_during_outage: world
            .primary
            .arrivals()
            .iter()
            .filter(|at| clock.phase(**at).is_outage())
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

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}\n\n{HELP}");
            std::process::exit(2);
        }
    };
    // The runtime `#[tokio::main]` would build, without its proc-macro (and syn) to compile.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: no tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    match runtime.block_on(run(options)) {
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
    println!("clients (each with its own pair of providers):");
    println!(
        "  naive             `primary` only: 3 attempts, 100 ms apart, {} timeout each",
        ms(naive_timeout)
    );
    println!("  naive + failover  the same 3 attempts on `primary`, then 3 on `backup`");
    println!(
        "  tower-breaker     fallback > failover `primary` -> `backup`, each behind a breaker, a bulkhead and a {} attempt timeout",
        ms(ATTEMPT_TIMEOUT)
    );
    println!();

    let start = Instant::now();
    let clock = Clock {
        start,
        length: options.duration,
    };
    let (naive_world, naive_primary, _) = World::new(clock.clone(), retry_after_secs).await?;
    let (failover_world, failover_primary, failover_backup) =
        World::new(clock.clone(), retry_after_secs).await?;
    let (stack_world, stack_primary, stack_backup) =
        World::new(clock.clone(), retry_after_secs).await?;
    let timeline = Arc::new(Mutex::new(vec![(Duration::ZERO, CircuitState::Closed)]));
    let stack = breaker_stack(stack_primary, stack_backup, &clock, timeline.clone())?;
    let naive = naive_client(naive_primary, naive_timeout);
    let naive_failover = naive_failover_client(failover_primary, failover_backup, naive_timeout);

    let progress = {
        let done = [
            naive_world.done.clone(),
            failover_world.done.clone(),
            stack_world.done.clone(),
        ];
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
                    "[{}{}] {:>5.1} s  {:<20} naive {:>4}/{count}  +failover {:>4}/{count}  stack {:>4}/{count}",
                    "#".repeat(filled),
                    ".".repeat(30 - filled),
                    elapsed.as_secs_f64(),
                    Phase::at(fraction).name(),
                    done[0].load(Ordering::Relaxed),
                    done[1].load(Ordering::Relaxed),
                    done[2].load(Ordering::Relaxed),
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
        async move { naive.oneshot(req).await }
    });
    let failover_load = run_load(&failover_world, count, interval, |req| {
        let naive_failover = naive_failover.clone();
        async move { naive_failover.oneshot(req).await }
    });
    let stack_load = run_load(&stack_world, count, interval, |req| {
        let mut service = stack.service.clone();
        async move { service.ready().await?.call(req).await }
    });
    join3(naive_load, failover_load, stack_load).await;
    progress.abort();
    eprintln!();

    let summaries = [
        summarize(&naive_world),
        summarize(&failover_world),
        summarize(&stack_world),
    ];
    let timeline = timeline.lock().map(|t| t.clone()).unwrap_or_default();
    print_report(&clock, &summaries, &timeline, &stack.primary, naive_timeout);

    if let Some(path) = &options.svg {
        write_svg(
            path,
            &clock,
            [&naive_world, &failover_world, &stack_world],
            &timeline,
        )?;
        println!("\nwrote {path}");
    }

    let [naive, failover, stack] = &summaries;
    println!();
    let mut met = true;
    for (name, other) in [("naive", naive), ("naive + failover", failover)] {
        let hits_ok = stack.primary_hits_during_outage * 20 <= other.primary_hits_during_outage;
        let p99_ok = stack.p99 * 20 <= other.p99;
        met &= hits_ok && p99_ok;
        println!(
            "headline vs {name}: requests reaching the failing provider during the outage: stack {} vs {} ({}, target <= 5 %): {}",
            stack.primary_hits_during_outage,
            other.primary_hits_during_outage,
            pct(
                stack.primary_hits_during_outage,
                other.primary_hits_during_outage
            ),
            if hits_ok { "met" } else { "MISSED" }
        );
        println!(
            "headline vs {name}: p99 latency during the outage: stack {} vs {} (target <= 1/20): {}",
            ms(stack.p99),
            ms(other.p99),
            if p99_ok { "met" } else { "MISSED" }
        );
    }
    if options.check {
        return Ok(met);
    }
    Ok(true)
}

/// Whether a row's figure is better when higher or lower (or not compared).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
    Neither,
}

fn print_report(
    clock: &Clock,
    summaries: &[Summary; 3],
    timeline: &[(Duration, CircuitState)],
    primary: &CircuitBreaker,
    naive_timeout: Duration,
) {
    let outage_start = clock.start_of(Phase::Outage);
    let recovery_start = clock.start_of(Phase::Recovery);
    let quick = clock.length < Duration::from_secs(20);
    let detected = timeline
        .iter()
        .find(|(t, s)| *t >= outage_start && *s == CircuitState::Open)
        .map(|(t, _)| *t - outage_start);
    let header = |a: &str, b: &str, c: &str| println!("{:<44} {a:>14} {b:>18} {c:>14}", "");
    header("naive", "naive + failover", "tower-breaker");
    let mut behind = Vec::new();
    let mut row = |label: &'static str,
                   better: Better,
                   value: &dyn Fn(&Summary) -> Option<f64>,
                   show: &dyn Fn(&Summary) -> String| {
        let [a, b, c] = summaries;
        println!(
            "{label:<44} {:>14} {:>18} {:>14}",
            show(a),
            show(b),
            show(c)
        );
        let stack = value(c);
        let worse = |other: Option<f64>| match (stack, other, better) {
            (Some(s), Some(o), Better::Higher) => s < o,
            (Some(s), Some(o), Better::Lower) => s > o,
            (None, Some(_), Better::Higher | Better::Lower) => true,
            _ => false,
        };
        if worse(value(a)) || worse(value(b)) {
            behind.push(label);
        }
    };
    let count = |n: usize| Some(n as f64);
    let secs = |d: Duration| Some(d.as_secs_f64());
    row("requests", Better::Neither, &|s| count(s.requests), &|s| {
        s.requests.to_string()
    });
    row(
        "answered (success rate)",
        Better::Higher,
        &|s| count(s.answered),
        &|s| pct(s.answered, s.requests),
    );
    row(
        "answered by a provider",
        Better::Higher,
        &|s| count(s.from_provider),
        &|s| pct(s.from_provider, s.requests),
    );
    row(
        "answered by `backup`",
        Better::Neither,
        &|s| count(s.from_backup),
        &|s| s.from_backup.to_string(),
    );
    row(
        "answered by the fallback",
        Better::Neither,
        &|s| count(s.fallback),
        &|s| s.fallback.to_string(),
    );
    row(
        "requests during the outage",
        Better::Neither,
        &|s| count(s.outage_requests),
        &|s| s.outage_requests.to_string(),
    );
    row(
        "latency p50 during the outage",
        Better::Lower,
        &|s| secs(s.p50),
        &|s| ms(s.p50),
    );
    row(
        "latency p95 during the outage",
        Better::Lower,
        &|s| secs(s.p95),
        &|s| ms(s.p95),
    );
    row(
        "latency p99 during the outage",
        Better::Lower,
        &|s| secs(s.p99),
        &|s| ms(s.p99),
    );
    row(
        "calls reaching the failing provider (outage)",
        Better::Lower,
        &|s| count(s.primary_hits_during_outage),
        &|s| s.primary_hits_during_outage.to_string(),
    );
    println!(
        "{:<44} {:>14} {:>18} {:>14}",
        "time to detect the outage",
        "never",
        "never",
        detected.map_or("-".into(), ms)
    );
    row(
        "time to recover (first primary answer)",
        Better::Lower,
        &|s| s.recovered_after.and_then(secs),
        &|s| s.recovered_after.map_or("-".into(), ms),
    );

    let [_, failover, stack] = summaries;
    // The last open wait before the recovery, and when the breaker closed after it.
    let last_open = timeline
        .windows(2)
        .rfind(|w| w[0].1 == CircuitState::Open && w[0].0 < recovery_start)
        .map(|w| (w[0].0, w[1].0 - w[0].0));
    let closed = timeline
        .iter()
        .find(|(t, s)| *t >= recovery_start && *s == CircuitState::Closed)
        .map(|(t, _)| *t - recovery_start);
    let opens = timeline
        .iter()
        .filter(|(t, s)| *t >= outage_start && *t < recovery_start && *s == CircuitState::Open)
        .count();
    let explain = |label: &str| -> String {
        match label {
            "time to recover (first primary answer)" => format!(
                "the naive clients send every request to `primary`, so the first one after the recovery \
                 finds it back. The stack's `primary` breaker opened {opens} times during the outage, \
                 its open time growing 1.5x with each reopening in a row (from {}, at most {}); its last open wait was {} (from {} s), and it \
                 closed {} into the recovery, after one probe. Meanwhile `backup` answered, in a few \
                 ms: callers lose nothing, `primary` gets its traffic back later.",
                ms(wait_in_open(quick).0),
                ms(wait_in_open(quick).1),
                last_open.map_or("-".into(), |(_, w)| ms(w)),
                last_open.map_or("-".into(), |(t, _)| format!("{:.2}", t.as_secs_f64())),
                closed.map_or("-".into(), ms),
            ),
            "answered (success rate)" | "answered by a provider" => format!(
                "{} requests got the stack's fallback answer (or an error) instead of waiting: \
                 each provider gets one attempt of at most {}, where the naive client with failover \
                 waits for up to 6 attempts of {} (its p99 during the outage: {}) and answered \
                 {} more.",
                stack.requests - stack.from_provider,
                ms(ATTEMPT_TIMEOUT),
                ms(naive_timeout),
                ms(failover.p99),
                failover.from_provider.saturating_sub(stack.from_provider),
            ),
            other => format!("{other}: no explanation written for this row yet"),
        }
    };
    if !behind.is_empty() {
        println!();
        println!("where the stack is behind, and why:");
        for label in behind {
            println!("  {label}: {}", explain(label));
        }
    }

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
    worlds: [&World; 3],
    timeline: &[(Duration, CircuitState)],
) -> Result<(), BoxError> {
    use plotters::prelude::*;
    let length = clock.length.as_secs_f64();
    let [naive, failover, stack] =
        worlds.map(|w| w.samples.lock().map(|s| s.clone()).unwrap_or_default());
    let max_latency = naive
        .iter()
        .chain(&failover)
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
        (&failover, MAGENTA, "naive client + failover"),
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
        // A state added later: drawn as open until this chart learns it.
        _ => 2.0,
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
