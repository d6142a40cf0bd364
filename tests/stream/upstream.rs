//! A scripted OpenAI-style SSE upstream on paused time: each call gets a plan (time to first
//! token, gap between tokens, how many tokens, and a fault), and its body plays the plan with
//! `tokio::time::sleep`, so `start_paused` tests run it exactly and instantly.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::BoxError;
use tower_breaker::stream::SseParser;

pub type Body = StreamBody<BoxStream<'static, Result<Frame<Bytes>, BoxError>>>;

/// What goes wrong with one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Headers, then keepalive comments every second, never a token.
    StallBeforeFirstToken,
    /// This many tokens, then keepalive comments only.
    IdleAfter(u64),
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub ttft: Duration,
    pub gap: Duration,
    pub tokens: u64,
    pub fault: Fault,
}

impl Plan {
    pub fn ok(ttft: Duration) -> Self {
        Self {
            ttft,
            gap: Duration::from_millis(20),
            tokens: 10,
            fault: Fault::None,
        }
    }
}

#[derive(Clone)]
pub enum Step {
    Wait(Duration),
    Send(Bytes),
    Stall,
}

/// An OpenAI chat chunk carrying token `seq` from `from`.
pub fn token(from: &str, seq: u64, finish: bool) -> Bytes {
    let finish = if finish { "\"stop\"" } else { "null" };
    Bytes::from(format!(
        "data: {{\"seq\":{seq},\"from\":\"{from}\",\"choices\":[{{\"delta\":{{\"content\":\"t{seq}\"}},\"finish_reason\":{finish}}}]}}\n\n"
    ))
}

pub fn steps(from: &str, plan: Plan) -> Vec<Step> {
    let keepalives = |steps: &mut Vec<Step>| {
        for _ in 0..600 {
            steps.push(Step::Wait(Duration::from_secs(1)));
            steps.push(Step::Send(Bytes::from_static(b": keepalive\n\n")));
        }
        steps.push(Step::Stall);
    };
    let mut steps = vec![Step::Wait(plan.ttft)];
    if plan.fault == Fault::StallBeforeFirstToken {
        steps.pop();
        keepalives(&mut steps);
        return steps;
    }
    let sent = match plan.fault {
        Fault::IdleAfter(n) => n.min(plan.tokens),
        _ => plan.tokens,
    };
    for seq in 0..sent {
        if seq > 0 {
            steps.push(Step::Wait(plan.gap));
        }
        let last = seq + 1 == plan.tokens && plan.fault == Fault::None;
        steps.push(Step::Send(token(from, seq, last)));
    }
    match plan.fault {
        Fault::None => steps.push(Step::Send(Bytes::from_static(b"data: [DONE]\n\n"))),
        Fault::IdleAfter(_) => keepalives(&mut steps),
        Fault::StallBeforeFirstToken => {}
    }
    steps
}

/// Counts live bodies, to see that a losing attempt is dropped.
#[derive(Default)]
pub struct Live(AtomicU64);

struct LiveGuard(Arc<Live>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Live {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn body(steps: Vec<Step>, live: Option<Arc<Live>>) -> Body {
    let guard = live.map(|live| {
        live.0.fetch_add(1, Ordering::SeqCst);
        LiveGuard(live)
    });
    let state = (steps.into_iter(), guard);
    let stream = futures_util::stream::unfold(state, |(mut steps, guard)| async move {
        loop {
            match steps.next()? {
                Step::Wait(d) => tokio::time::sleep(d).await,
                Step::Send(bytes) => return Some((Ok(Frame::data(bytes)), (steps, guard))),
                Step::Stall => std::future::pending::<()>().await,
            }
        }
    });
    StreamBody::new(Box::pin(stream))
}

/// A seeded generator (SplitMix64) so that every run plays the same plans.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next_u64() % (high - low + 1))
    }
}

/// One call the upstream received.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub at: Instant,
    pub plan: Plan,
}

/// An upstream provider: each call draws its plan from `plans`, is logged, and answers with a
/// 200 and the plan's stream.
#[derive(Clone)]
pub struct Upstream {
    pub name: &'static str,
    plans: Arc<Mutex<dyn FnMut() -> Plan + Send>>,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub live: Arc<Live>,
}

impl Upstream {
    pub fn new(name: &'static str, plans: impl FnMut() -> Plan + Send + 'static) -> Self {
        Self {
            name,
            plans: Arc::new(Mutex::new(plans)),
            received: Arc::default(),
            live: Arc::default(),
        }
    }

    pub fn calls(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// The upstream as a service of any request type.
    pub fn service<Req: Send + 'static>(
        &self,
    ) -> impl tower::Service<
        Req,
        Response = http::Response<Body>,
        Error = BoxError,
        Future = futures_util::future::Ready<Result<http::Response<Body>, BoxError>>,
    >
    + Clone
    + Send
    + 'static
    + use<Req> {
        let this = self.clone();
        tower::service_fn(move |_req: Req| {
            let plan = (this.plans.lock().unwrap())();
            let mut received = this.received.lock().unwrap();
            received.push(Received {
                at: Instant::now(),
                plan,
            });
            // Each attempt signs its tokens, so that a splice of two would show.
            let from = format!("{}#{}", this.name, received.len());
            let body = body(steps(&from, plan), Some(this.live.clone()));
            futures_util::future::ready(Ok(http::Response::new(body)))
        })
    }
}

/// What a caller read: the tokens (`seq`, `from`: provider `#` attempt) in order, and how the
/// body ended.
#[derive(Debug)]
pub struct Read {
    pub tokens: Vec<(u64, String)>,
    pub error: Option<BoxError>,
    /// When the last token (or the error) arrived.
    pub last_token_at: Option<Instant>,
    pub ended_at: Instant,
}

impl Read {
    /// The provider of every token, checking that all come from one attempt, numbered from 0
    /// without a gap or a repeat.
    pub fn one_attempt(&self) -> &str {
        let from = &self.tokens[0].1;
        for (i, (seq, token_from)) in self.tokens.iter().enumerate() {
            assert_eq!((*seq, token_from), (i as u64, from), "spliced or repeated");
        }
        from.split('#').next().unwrap()
    }
}

pub async fn read<B>(body: B) -> Read
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut body = body;
    let mut parser = SseParser::new();
    let mut tokens = Vec::new();
    let mut last_token_at = None;
    let error = loop {
        match body.frame().await {
            None => break None,
            Some(Err(e)) => break Some(e.into()),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    parser.push(data, |event| {
                        let json = &event.data;
                        if let Some(seq) = field(json, "\"seq\":") {
                            let from = field(json, "\"from\":\"").unwrap_or_default();
                            tokens.push((seq.parse().unwrap(), from));
                            last_token_at = Some(Instant::now());
                        }
                    });
                }
            }
        }
    };
    Read {
        tokens,
        error,
        last_token_at,
        ended_at: Instant::now(),
    }
}

fn field(json: &str, key: &str) -> Option<String> {
    let at = json.find(key)? + key.len();
    let rest = &json[at..];
    let end = rest.find([',', '"', '}'])?;
    Some(rest[..end].to_string())
}

/// The `q` quantile (nearest rank) of `values`.
pub fn quantile(values: &[Duration], q: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[rank]
}

/// A breaker whose window holds a whole test run (so its counts are the run's), that never
/// opens: the tests count what it records.
pub fn counting_breaker(name: &'static str) -> tower_breaker::circuit_breaker::CircuitBreaker {
    let breaker = tower_breaker::circuit_breaker::CircuitBreaker::builder(name)
        .sliding_window(tower_breaker::circuit_breaker::SlidingWindow::count_based(
            10_000,
        ))
        .build()
        .unwrap();
    breaker.metrics_only();
    breaker
}
