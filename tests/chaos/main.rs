//! Chaos: a real hyper server on 127.0.0.1 that is slowed down, stopped, restarted on the same
//! port and made to reset connections while a hyper-util client sends it steady load through a
//! circuit breaker (`http_layer`) and an attempt timeout. For each fault:
//!
//! - the breaker opens within its threshold: once the calls that were in flight when the fault
//!   began have ended, it lets at most `THRESHOLD + CONCURRENCY` more calls through before it
//!   opens (the threshold's failures, and the calls already in flight when the last of them
//!   lands);
//! - no call waits past its timeout: every call, admitted or rejected, ends within
//!   `ATTEMPT_TIMEOUT + SLACK` of its start;
//! - after the server is back the breaker closes within `wait_in_open` plus one probe (plus a
//!   probe already in flight against the faulty server, the time until the load's next call,
//!   and `SLACK`);
//!
//! and over the whole run every call ends in a response or an error: as many calls finish as
//! were started, and none reaches the guard timeout (which would fail the test).
//!
//! Real time throughout (sockets and timeouts): about 6 s. Only bounds are asserted.

mod regressions;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerEvent, CircuitOpen, CircuitState, SlidingWindow,
};

/// Consecutive failures that open the breaker.
const THRESHOLD: u32 = 5;
const WAIT_IN_OPEN: Duration = Duration::from_millis(250);
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(150);
/// How long the slow server takes to answer: well past the attempt timeout.
const SLOW_ANSWER: Duration = Duration::from_millis(600);
/// Calls in flight at most (the load waits for a free place before it starts a call).
const CONCURRENCY: usize = 4;
/// The load starts a call this often (when a place is free).
const PACE: Duration = Duration::from_millis(2);
/// Scheduling slack on top of a timer: tokio's timers fire on the next 1 ms tick, and the
/// woken task then waits for a worker of the 2-thread runtime, which it shares with the
/// server, the load generator and up to `CONCURRENCY` calls, on a 2-core machine that may be
/// busy with other work (CI runs on such a machine; an OS time slice is a few ms). The worst
/// overshoot measured here was 5 ms (the "slowest call" in the report the test prints, with
/// other builds running); 50 ms is ten times that, and still a third of the attempt timeout,
/// so an attempt that ignored its timeout (waiting for the slow server's 600 ms) cannot hide
/// inside it.
const SLACK: Duration = Duration::from_millis(50);
/// A call that has not ended after this long hangs: the test fails.
const GUARD: Duration = Duration::from_secs(5);

// --- the server -------------------------------------------------------------------------------

const HEALTHY: u8 = 0;
const SLOW: u8 = 1;
const RESET: u8 = 2;

/// A hyper server on a fixed port of 127.0.0.1 that can be stopped and started again.
struct ChaosServer {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    hits: Arc<AtomicU64>,
    task: Option<JoinHandle<()>>,
}

impl ChaosServer {
    async fn start() -> Self {
        let listener = listen_below_ephemeral_ports();
        let addr = listener.local_addr().unwrap();
        let mut server = Self {
            addr,
            mode: Arc::new(AtomicU8::new(HEALTHY)),
            hits: Arc::new(AtomicU64::new(0)),
            task: None,
        };
        server.task = Some(tokio::spawn(accept_loop(
            listener,
            server.mode.clone(),
            server.hits.clone(),
        )));
        server
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn set_mode(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// Closes the listener and every open connection: new connections are refused.
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // Dropped (listener and connections closed) once the abort has been seen.
            let _ = task.await;
        }
    }

    /// Stops the server if it runs, then serves again on the same port in `mode`.
    async fn restart(&mut self, mode: u8) {
        self.stop().await;
        self.set_mode(mode);
        let listener = listen(self.addr).await;
        self.task = Some(tokio::spawn(accept_loop(
            listener,
            self.mode.clone(),
            self.hits.clone(),
        )));
    }
}

impl Drop for ChaosServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A listener on 127.0.0.1, on a free port below the kernel's range of ephemeral ports.
///
/// While the server is stopped, a client connecting to its port could be given that same port
/// as its own (ephemeral) source port and connect to itself (TCP simultaneous open), which
/// would hold the port and fail the restart. Source ports come from the ephemeral range only.
fn listen_below_ephemeral_ports() -> TcpListener {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let span = low.saturating_sub(10_000).max(1);
    let start = std::process::id() as u16 % span;
    for i in 0..span {
        let port = low - 1 - (start + i) % span;
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if let Ok(listener) = socket.bind(addr).and_then(|()| socket.listen(1024)) {
            return listener;
        }
    }
    panic!("no free port below {low}");
}

/// A listener on `addr` again. `SO_REUSEADDR` lets it bind while connections of the previous
/// listener linger in TIME_WAIT.
async fn listen(addr: SocketAddr) -> TcpListener {
    let mut last = None;
    for _ in 0..50 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        match socket.bind(addr).and_then(|()| socket.listen(1024)) {
            Ok(listener) => return listener,
            Err(e) => last = Some(e),
        }
        sleep(Duration::from_millis(10)).await;
    }
    panic!("cannot listen on {addr} again: {last:?}");
}

/// Accepts connections; in `RESET` mode, resets each one at once (RST, not FIN). The
/// connections live in a `JoinSet` owned by this task, so aborting it closes them all.
async fn accept_loop(listener: TcpListener, mode: Arc<AtomicU8>, hits: Arc<AtomicU64>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                if mode.load(Ordering::SeqCst) == RESET {
                    let _ = stream.set_zero_linger();
                    drop(stream);
                    continue;
                }
                let mode = mode.clone();
                let hits = hits.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                        let slow = mode.load(Ordering::SeqCst) == SLOW;
                        hits.fetch_add(1, Ordering::SeqCst);
                        async move {
                            if slow {
                                sleep(SLOW_ANSWER).await;
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

// --- what happened ----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Permitted,
    Rejected,
    Recorded(Outcome),
    Entered(CircuitState),
}

/// The breaker's events, each with the time it was reported.
#[derive(Clone, Default)]
struct EventLog(Arc<Mutex<Vec<(Instant, Seen)>>>);

impl EventLog {
    fn listener(&self) -> impl Fn(&CircuitBreakerEvent) + Send + Sync + 'static {
        let log = self.0.clone();
        move |event| {
            let seen = match event {
                CircuitBreakerEvent::CallPermitted { .. } => Seen::Permitted,
                CircuitBreakerEvent::CallRejected { .. } => Seen::Rejected,
                CircuitBreakerEvent::CallRecorded { outcome, .. } => Seen::Recorded(*outcome),
                CircuitBreakerEvent::StateTransition { to, .. } => Seen::Entered(*to),
                _ => return,
            };
            log.lock().unwrap().push((Instant::now(), seen));
        }
    }

    fn snapshot(&self) -> Vec<(Instant, Seen)> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    Answered(u16),
    Open,
    AttemptTimeout,
    Error(String),
    /// Still running at the guard timeout.
    Hung,
}

#[derive(Debug, Clone)]
struct Call {
    start: Instant,
    end: Instant,
    ended: Ended,
}

/// One call through `client`, from `ready` to the end of the body.
async fn one_call<S>(mut client: S, url: String) -> Ended
where
    S: Service<
            Request<Full<Bytes>>,
            Response = Response<tower_breaker::http::RecordingBody<Incoming>>,
            Error = BoxError,
        >,
{
    let call = async {
        let request = Request::get(url).body(Full::default()).unwrap();
        let response = client.ready().await?.call(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok::<_, BoxError>(status)
    };
    match tokio::time::timeout(GUARD, call).await {
        Err(_) => Ended::Hung,
        Ok(Ok(status)) => Ended::Answered(status),
        Ok(Err(e)) if e.is::<CircuitOpen>() => Ended::Open,
        Ok(Err(e)) if e.is::<tower::timeout::error::Elapsed>() => Ended::AttemptTimeout,
        Ok(Err(e)) => Ended::Error(e.to_string()),
    }
}

/// A fault, from the moment it began to the moment the healthy server was back.
struct Fault {
    name: &'static str,
    began: Instant,
    back: Instant,
    /// The longest a probe sent to the faulty server may still run after `back`.
    probe_in_flight: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_rides_out_a_flaky_server() {
    let mut server = ChaosServer::start().await;
    let log = EventLog::default();
    let breaker = CircuitBreaker::builder("chaos")
        .sliding_window(SlidingWindow::consecutive(THRESHOLD))
        .wait_in_open(WAIT_IN_OPEN)
        .permitted_calls_in_half_open(1)
        .on_event(log.listener())
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .timeout(ATTEMPT_TIMEOUT)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    // The load: a call every `PACE` while fewer than `CONCURRENCY` run, until told to stop.
    let calls = Arc::new(Mutex::new(Vec::<Call>::new()));
    let spawned = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (calls, spawned, stop, url) =
            (calls.clone(), spawned.clone(), stop.clone(), server.url());
        tokio::spawn(async move {
            let places = Arc::new(Semaphore::new(CONCURRENCY));
            let mut tasks = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let place = places.clone().acquire_owned().await.unwrap();
                spawned.fetch_add(1, Ordering::SeqCst);
                let (client, url, calls) = (client.clone(), url.clone(), calls.clone());
                tasks.push(tokio::spawn(async move {
                    let start = Instant::now();
                    let ended = one_call(client, url).await;
                    let end = Instant::now();
                    drop(place);
                    calls.lock().unwrap().push(Call { start, end, ended });
                }));
                sleep(PACE).await;
            }
            for task in tasks {
                task.await.expect("a call panicked");
            }
        })
    };

    let healthy_for = Duration::from_millis(1000);
    let faulty_for = Duration::from_millis(700);
    sleep(Duration::from_millis(300)).await;
    assert_eq!(breaker.state(), CircuitState::Closed, "healthy at first");

    let mut faults = Vec::new();

    // Slow: every answer takes 600 ms, four times the attempt timeout.
    let began = Instant::now();
    server.set_mode(SLOW);
    sleep(faulty_for).await;
    server.set_mode(HEALTHY);
    faults.push(Fault {
        name: "slow",
        began,
        back: Instant::now(),
        probe_in_flight: ATTEMPT_TIMEOUT,
    });
    sleep(healthy_for).await;

    // Stopped: the port refuses connections, open ones are closed.
    let began = Instant::now();
    server.stop().await;
    sleep(faulty_for).await;
    server.restart(HEALTHY).await;
    faults.push(Fault {
        name: "stopped, restarted on the same port",
        began,
        back: Instant::now(),
        probe_in_flight: Duration::ZERO,
    });
    sleep(healthy_for).await;

    // Resets: every connection is reset as soon as it is accepted (open ones were closed by
    // the restart).
    let began = Instant::now();
    server.restart(RESET).await;
    sleep(faulty_for).await;
    server.restart(HEALTHY).await;
    faults.push(Fault {
        name: "connections reset",
        began,
        back: Instant::now(),
        probe_in_flight: Duration::ZERO,
    });
    sleep(healthy_for).await;

    stop.store(true, Ordering::SeqCst);
    load.await.expect("the load generator panicked");

    let calls = calls.lock().unwrap().clone();
    let events = log.snapshot();
    let count = |f: &dyn Fn(&Ended) -> bool| calls.iter().filter(|c| f(&c.ended)).count();
    let worst = calls
        .iter()
        .map(|c| c.end - c.start)
        .max()
        .unwrap_or_default();
    let mut report = format!(
        "{} calls: {} answered, {} rejected (open), {} attempt timeouts, {} errors; \
         slowest call {worst:?}; server hits {}\n",
        calls.len(),
        count(&|e| matches!(e, Ended::Answered(_))),
        count(&|e| *e == Ended::Open),
        count(&|e| *e == Ended::AttemptTimeout),
        count(&|e| matches!(e, Ended::Error(_))),
        server.hits.load(Ordering::SeqCst),
    );

    // Every call ended, in a response or an error; none hung.
    assert_eq!(
        calls.len() as u64,
        spawned.load(Ordering::SeqCst),
        "{report}"
    );
    assert_eq!(count(&|e| *e == Ended::Hung), 0, "calls hung\n{report}");
    for call in &calls {
        if let Ended::Answered(status) = call.ended {
            assert_eq!(status, 200, "{report}");
        }
    }

    // No call waited past its timeout.
    for call in &calls {
        let took = call.end - call.start;
        assert!(
            took <= ATTEMPT_TIMEOUT + SLACK,
            "a call took {took:?} ({:?}), more than the attempt timeout {ATTEMPT_TIMEOUT:?} + {SLACK:?}\n{report}",
            call.ended
        );
    }

    for fault in &faults {
        // The calls in flight when the fault began may still answer (and reset the count of
        // consecutive failures): count from when the last of them ended.
        let settled = calls
            .iter()
            .filter(|c| c.start < fault.began)
            .map(|c| c.end)
            .max()
            .unwrap_or(fault.began)
            .max(fault.began);
        let opened = events
            .iter()
            .find(|(at, seen)| *at >= fault.began && *seen == Seen::Entered(CircuitState::Open))
            .map(|(at, _)| *at)
            .unwrap_or_else(|| panic!("{}: the breaker never opened\n{report}", fault.name));
        assert!(
            opened < fault.back,
            "{}: opened only after the server was back\n{report}",
            fault.name
        );
        let let_through = events
            .iter()
            .filter(|(at, seen)| *at >= settled && *at <= opened && *seen == Seen::Permitted)
            .count();
        assert!(
            let_through <= THRESHOLD as usize + CONCURRENCY,
            "{}: {let_through} calls let through before the breaker opened (threshold {THRESHOLD}, \
             {CONCURRENCY} at once)\n{report}",
            fault.name
        );

        let closed = events
            .iter()
            .find(|(at, seen)| *at >= fault.back && *seen == Seen::Entered(CircuitState::Closed))
            .map(|(at, _)| *at)
            .unwrap_or_else(|| panic!("{}: the breaker never closed again\n{report}", fault.name));
        let recovered_in = closed - fault.back;
        // The open wait, one probe (at most an attempt), the wait for the load's next call,
        // a probe that was still in flight against the faulty server, and the slack.
        let bound = WAIT_IN_OPEN + ATTEMPT_TIMEOUT + PACE + fault.probe_in_flight + SLACK;
        report.push_str(&format!(
            "{}: opened {:?} after it began ({let_through} calls let through after the calls \
             in flight had ended); closed {recovered_in:?} after the server was back (bound {bound:?})\n",
            fault.name,
            opened - fault.began,
        ));
        assert!(
            recovered_in <= bound,
            "{}: recovered in {recovered_in:?}, more than {bound:?}\n{report}",
            fault.name
        );
    }
    println!("{report}");
    assert_eq!(breaker.state(), CircuitState::Closed, "{report}");
    assert_eq!(breaker.metrics().probes_in_flight, 0, "{report}");
}
