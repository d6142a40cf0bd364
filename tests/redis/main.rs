//! Breakers shared through a real Redis: three breakers, each with its own `RedisStore` (its own
//! connections), act as three replicas.
//!
//! `.ci/run` installs `redis-server`, starts one on a free 127.0.0.1 port and passes it as
//! `TOWER_BREAKER_REDIS_URL` (each test uses its own key prefix). Without that variable, and for
//! the test that stops and restarts Redis, a test starts its own `redis-server` on a free port
//! (no persistence). Without a `redis-server` these tests say so and pass, unless
//! `TOWER_BREAKER_REQUIRE_REDIS=1` (set by `.ci/run`), where its absence fails.
//! `TOWER_BREAKER_REDIS_SERVER` may name the binary.
//!
//! Redis runs in real time, so these tests wait for conditions with a deadline (never a
//! fixed sleep that hopes); the protocol's timing is tested on paused time in
//! `tests/shared_state`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tower::{Service, ServiceExt, service_fn};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, CircuitState, SlidingWindow};
use tower_breaker::shared_state::{RedisStore, SharedState};

#[path = "../support/mod.rs"]
mod support;

const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(250);
/// The documented bound on how late a replica learns of a change: one periodic read.
const BOUND: Duration = Duration::from_millis(200 + 250);

struct RedisServer {
    binary: String,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// The server `.ci/run` started, or else a new one (see [`start`](Self::start)).
    fn shared() -> Option<Self> {
        let url = std::env::var("TOWER_BREAKER_REDIS_URL").ok();
        let port = url.as_deref().and_then(|url| {
            url.trim_end_matches('/')
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
        });
        match port {
            Some(port) => Some(Self {
                binary: String::new(),
                port,
                child: None,
            }),
            None => Self::start(),
        }
    }

    /// A new server on a free port, or `None` (test skipped) when there is no `redis-server`.
    fn start() -> Option<Self> {
        let binary =
            std::env::var("TOWER_BREAKER_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let found = Command::new(&binary)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            if std::env::var("TOWER_BREAKER_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
                panic!("`{binary}` not found, and TOWER_BREAKER_REQUIRE_REDIS=1");
            }
            // Straight to the process's stderr, not through `eprintln!`: libtest captures the
            // macros' output of a passing test, and a skip must be seen in the normal output.
            let test = std::thread::current()
                .name()
                .unwrap_or("a Redis test")
                .to_owned();
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: `{binary}` not found (install redis-server to run it; \
                 TOWER_BREAKER_REQUIRE_REDIS=1 fails instead)"
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut server = Self {
            binary,
            port,
            child: None,
        };
        server.restart();
        Some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on its port, empty, and waits until it answers.
    fn restart(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command("PING").as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server (as a crash would).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One inline command; the first line of the reply.
    fn command(&self, command: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            if reply.ends_with(b"\r\n") {
                break;
            }
        }
        let text = String::from_utf8(reply).ok()?;
        Some(text.lines().next().unwrap_or_default().to_owned())
    }

    /// The value of a hash field (`HGET`), read whole.
    fn hget(&self, key: &str, field: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .write_all(format!("HGET {key} {field}\r\n").as_bytes())
            .ok()?;
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        text.lines().nth(1).map(str::to_owned)
    }

    fn integer(&self, command: &str) -> i64 {
        let reply = self.command(command).expect("reply");
        reply
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{command}: {reply}"))
    }

    /// Subscribers of `channel`.
    fn subscribers(&self, channel: &str) -> i64 {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .write_all(format!("PUBSUB NUMSUB {channel}\r\n").as_bytes())
            .expect("write");
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).expect("read");
        let text = String::from_utf8_lossy(&buf[..n]);
        text.lines()
            .last()
            .and_then(|l| l.strip_prefix(':'))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn replica(server: &RedisServer, prefix: &str, probes: u32, wait: Duration) -> CircuitBreaker {
    let store = RedisStore::builder(server.url())
        .prefix(prefix)
        .timeout(TIMEOUT)
        .key_ttl(Duration::from_secs(60))
        .build()
        .expect("store");
    CircuitBreaker::builder("openai")
        .sliding_window(SlidingWindow::consecutive(3))
        .wait_in_open(wait)
        .permitted_calls_in_half_open(probes)
        .max_wait_in_half_open(Some(Duration::from_secs(5)))
        .shared_state(SharedState::new(store).sync_interval(INTERVAL))
        .build()
        .expect("breaker")
}

/// Three replicas, once all three listen to the channel.
/// A key prefix no earlier run on the same server used.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

async fn fleet(
    server: &RedisServer,
    prefix: &str,
    probes: u32,
    wait: Duration,
) -> Vec<CircuitBreaker> {
    let fleet: Vec<_> = (0..3)
        .map(|_| replica(server, prefix, probes, wait))
        .collect();
    wait_for("three subscriptions", Duration::from_secs(5), || {
        server.subscribers(&format!("{prefix}:events")) == 3
    })
    .await;
    fleet
}

async fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

fn trip(breaker: &CircuitBreaker) {
    support::record(breaker, Outcome::Failure, 3);
    assert_eq!(breaker.state(), CircuitState::Open);
}

fn rejects(breaker: &CircuitBreaker) -> bool {
    breaker.try_acquire().is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_trips_and_the_others_reject_within_the_bound() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let prefix = unique("t1");
    let fleet = fleet(&server, &prefix, 2, Duration::from_secs(30)).await;
    let start = Instant::now();
    trip(&fleet[0]);
    wait_for("others reject", BOUND, || {
        rejects(&fleet[1]) && rejects(&fleet[2])
    })
    .await;
    let took = start.elapsed();
    assert!(took <= BOUND, "{took:?}");
    eprintln!("the other replicas rejected {took:?} after the trip (bound {BOUND:?})");
    for other in &fleet[1..] {
        let err = other.try_acquire().expect_err("open");
        assert_eq!(err.state(), CircuitState::Open);
        let left = err.retry_after().expect("open time");
        assert!(
            left > Duration::from_secs(28),
            "same open time as the trip: {left:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_wide_probes_never_exceed_the_limit() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    const LIMIT: u32 = 2;
    let prefix = unique("t2");
    let fleet = fleet(&server, &prefix, LIMIT, Duration::from_millis(300)).await;
    trip(&fleet[0]);
    // Until the others hear of the trip (within the bound) they are closed and would pass
    // ordinary calls.
    wait_for("fleet open", BOUND, || fleet.iter().all(rejects)).await;
    let in_flight = Arc::new(AtomicU32::new(0));
    let max_in_flight = Arc::new(AtomicU32::new(0));
    let probes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    // Four callers per replica; the upstream is still down, so every probe fails and the fleet
    // reopens, round after round.
    for breaker in &fleet {
        for _ in 0..4 {
            let breaker = breaker.clone();
            let (in_flight, max_in_flight, probes, stop) = (
                in_flight.clone(),
                max_in_flight.clone(),
                probes.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match breaker.try_acquire() {
                        Ok(permit) => {
                            assert!(permit.is_probe(), "only probes while the upstream is down");
                            probes.fetch_add(1, Ordering::Relaxed);
                            let now = in_flight.fetch_add(1, Ordering::AcqRel) + 1;
                            max_in_flight.fetch_max(now, Ordering::AcqRel);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            in_flight.fetch_sub(1, Ordering::AcqRel);
                            permit.record(Outcome::Failure);
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("caller");
    }
    let (probes, max) = (
        probes.load(Ordering::Relaxed),
        max_in_flight.load(Ordering::Relaxed),
    );
    eprintln!("{probes} probes in 4 s, at most {max} at once across three replicas");
    assert!(probes >= 4, "rounds ran: {probes} probes");
    assert!(
        max <= LIMIT,
        "{max} probes at once, limit {LIMIT} for the fleet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_load_then_restarted() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let prefix = unique("t3");
    let fleet = fleet(&server, &prefix, 2, Duration::from_secs(30)).await;
    // Replica 0's upstream can be made to fail; the others' stay healthy.
    let failing = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let slowest = Arc::new(AtomicU64::new(0));
    let unexpected = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, breaker) in fleet.iter().enumerate() {
        let failing = failing.clone();
        let upstream = service_fn(move |_: ()| {
            let fail = i == 0 && failing.load(Ordering::Relaxed);
            async move { if fail { Err("upstream down") } else { Ok("ok") } }
        });
        let mut svc = tower::ServiceBuilder::new()
            .layer(breaker.layer())
            .service(upstream);
        let (stop, slowest, unexpected, calls) = (
            stop.clone(),
            slowest.clone(),
            unexpected.clone(),
            calls.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let result = svc.ready().await.expect("ready").call(()).await;
                slowest.fetch_max(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                calls.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = result {
                    // The only errors a caller may see: the upstream's and the breaker's.
                    if !(e.is::<CircuitOpen>() || e.to_string() == "upstream down") {
                        unexpected.fetch_add(1, Ordering::Relaxed);
                        eprintln!("unexpected error: {e}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop();
    tokio::time::sleep(Duration::from_millis(600)).await; // the sync tasks find it down
    // Local tripping works without Redis: replica 0's upstream fails and it opens.
    failing.store(true, Ordering::Relaxed);
    wait_for("local trip", Duration::from_secs(2), || {
        fleet[0].state() == CircuitState::Open
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fleet[1].state(),
        CircuitState::Closed,
        "nobody could tell replica 1"
    );
    assert_eq!(fleet[2].state(), CircuitState::Closed);
    // Redis comes back, empty: replica 0's open state becomes the fleet's.
    server.restart();
    let took = wait_for("converged", Duration::from_secs(5), || {
        fleet.iter().all(|b| b.state() == CircuitState::Open)
    })
    .await;
    eprintln!("converged {took:?} after Redis came back");
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("caller");
    }
    assert_eq!(
        unexpected.load(Ordering::Relaxed),
        0,
        "errors caused by Redis"
    );
    let slowest = Duration::from_micros(slowest.load(Ordering::Relaxed));
    eprintln!(
        "{} calls, slowest {slowest:?}",
        calls.load(Ordering::Relaxed)
    );
    // Redis is not on the call path: no call waited for its timeouts.
    assert!(slowest < TIMEOUT, "slowest call {slowest:?}");
    let key = format!("{prefix}:breaker:openai");
    assert_eq!(
        server.hget(&key, "mode").as_deref(),
        Some("open"),
        "the fleet state is back in Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_namespaced_and_expire() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let prefix = unique("myapp");
    let fleet = fleet(&server, &prefix, 2, Duration::from_millis(100)).await;
    trip(&fleet[0]);
    wait_for("probe reservation", Duration::from_secs(3), || {
        // Calls keep coming (demand for the round's probes).
        let _ = fleet[0].try_acquire();
        server.integer(&format!("EXISTS {prefix}:breaker:openai")) == 1
            && server
                .command(&format!("KEYS {prefix}:breaker:openai:probes:*"))
                .is_some_and(|r| r != "*0")
    })
    .await;
    let ttl = server.integer(&format!("PTTL {prefix}:breaker:openai"));
    assert!(ttl > 0 && ttl <= 60_000, "state key expires: {ttl} ms");
    let probes_ttl = server.integer(&format!(
        "PTTL {prefix}:breaker:openai:probes:{}",
        server
            .hget(&format!("{prefix}:breaker:openai"), "gen")
            .expect("generation")
    ));
    assert!(
        probes_ttl > 0 && probes_ttl <= 60_000,
        "round counter expires: {probes_ttl} ms"
    );
    assert_eq!(
        server.command("KEYS tower-breaker:*").as_deref(),
        Some("*0")
    );
    assert_eq!(
        server.command(&format!("KEYS {prefix}:*")).as_deref(),
        Some("*2"),
        "one state hash and one round counter, all under the prefix"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_trips_on_the_fleets_failure_rate() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let prefix = unique("t5");
    let fleet: Vec<CircuitBreaker> = (0..3)
        .map(|_| {
            let store = RedisStore::builder(server.url())
                .prefix(&prefix)
                .timeout(TIMEOUT)
                .build()
                .expect("store");
            CircuitBreaker::builder("openai")
                .sliding_window(SlidingWindow::count_based(100))
                .minimum_calls(10)
                .failure_rate_threshold(0.5)
                .wait_in_open(Duration::from_secs(30))
                .shared_state(
                    SharedState::new(store)
                        .sync_interval(INTERVAL)
                        .fleet_failure_rate(Duration::from_secs(60)),
                )
                .build()
                .expect("breaker")
        })
        .collect();
    wait_for("three subscriptions", Duration::from_secs(5), || {
        server.subscribers(&format!("{prefix}:events")) == 3
    })
    .await;
    // 4 calls each, half failed: under each replica's own minimum_calls of 10.
    for breaker in &fleet {
        for outcome in [Outcome::Failure, Outcome::Success] {
            for _ in 0..2 {
                breaker.try_acquire().expect("closed").record(outcome);
            }
        }
    }
    assert!(fleet.iter().all(|b| b.state() == CircuitState::Closed));
    // The counts reach Redis within one sync interval; the trip reaches everyone right after.
    let took = wait_for("fleet trip", INTERVAL * 2 + BOUND, || {
        fleet.iter().all(|b| b.state() == CircuitState::Open)
    })
    .await;
    eprintln!("the fleet's failure rate opened all three {took:?} after the calls");
}

/// Three replicas' quota governors, each with its own `RedisStore`, draw from one quota: of
/// 30 calls, exactly the 10 of the window go out (10 requests an hour: the refill during the
/// test is far below one request), and the rest are told how long until they fit.
#[cfg(feature = "quota")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_quota_through_redis() {
    use tower_breaker::quota::{Exhausted, Quota};
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let prefix = unique("quota");
    let replicas: Vec<Quota<&str>> = (0..3)
        .map(|_| {
            let store = RedisStore::builder(server.url())
                .prefix(&prefix)
                .timeout(TIMEOUT)
                .build()
                .expect("store");
            Quota::builder("llm")
                .window(Duration::from_secs(3600))
                .requests_per_window(10)
                .max_wait(Duration::ZERO)
                .shared_state(store)
                .build()
                .expect("quota")
        })
        .collect();
    let mut granted = 0;
    for _ in 0..10 {
        for quota in &replicas {
            match quota.acquire(&"gpt", 0).await {
                Ok(_) => granted += 1,
                Err(e) => {
                    assert_eq!(e.budget(), Exhausted::Requests, "{e}");
                    assert!(e.retry_after() > Duration::from_secs(300), "{e}");
                }
            }
        }
    }
    assert_eq!(granted, 10);
    let level: f64 = server
        .hget(&format!("{prefix}:quota:llm:gpt"), "r")
        .expect("the quota's hash")
        .parse()
        .expect("a number");
    assert!((-0.01..0.01).contains(&level), "{level}");
}
