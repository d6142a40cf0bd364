//! End-to-end overhead, decided over real loopback TCP: a hyper server in **another process**
//! (this bench binary re-run as a child with `TOWER_BREAKER_E2E_SERVE` set, on its own
//! single-threaded runtime) and a hyper-util client in this one, so that the round trip crosses
//! two processes and the kernel's loopback, as a call to a neighbour on the same host does.
//!
//! ```text
//! cargo bench --all-features --bench e2e -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! - `tcp/*`: one call at a time (`sequential`) or `CONCURRENCY` in flight (`concurrent`), on
//!   keep-alive connections; every timed call builds its request (a GET with a pre-parsed URI)
//!   and reads the whole body. Three clients over the same server:
//!   - `bare`: the hyper-util client alone;
//!   - `middleware`: our middleware alone, with the standard stack's settings: retry
//!     (`RetryPolicy`, HTTP rules, budget), circuit breaker (30 s time window, body recorded at
//!     its end) and bulkhead;
//!   - `standard_stack`: `StandardResilience::builder(..).http()`: the same plus tower's two
//!     `Timeout` layers (total and attempt).
//!
//!   So `middleware - bare` is what our middleware costs a round trip and
//!   `standard_stack - middleware` what the two tower timeouts cost.
//! - `in_memory/*`: where the time goes without the loopback's noise: an in-memory upstream that
//!   answers after one yield (`Pending` once, like a socket read, so that the timeouts arm their
//!   timers), bare and behind each layer on its own and behind the whole stack.
//! - `rejection/*`: the breaker is forced open, so every call fails with `CircuitOpen` without
//!   reaching the network: `handle` is `try_acquire` alone, `breaker_layer` a
//!   `CircuitBreakerService` over the client, `standard_stack` the whole stack. Each is compared
//!   with `tcp/sequential/bare`.
//!
//! The figures and the targets they are held to are in `benches/README.md`.

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_breaker::bulkhead::Bulkhead;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, SlidingWindow};
use tower_breaker::retry::RetryPolicy;
use tower_breaker::stack::StandardResilience;

/// Calls in flight in the `concurrent` benches.
const CONCURRENCY: u64 = 16;

type HyperClient = Client<HttpConnector, Full<Bytes>>;

/// Set in the child process: serve on 127.0.0.1 and print the address.
const SERVE_ENV: &str = "TOWER_BREAKER_E2E_SERVE";

/// The child: a hyper server on 127.0.0.1 answering every request with a 2-byte body, on a
/// runtime of its own thread. It prints `listening <addr>` and exits when its standard input
/// closes, so it never outlives the bench (even one that panics).
fn serve_in_this_process() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening {}", listener.local_addr().unwrap());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// The server in another process: this bench binary run again with [`SERVE_ENV`] set. Killed
/// on drop (and it exits by itself when our end of its standard input closes).
struct Server {
    child: Child,
    uri: Uri,
}

impl Server {
    fn spawn() -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(SERVE_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server process starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .expect("the server prints its address");
        let uri = format!("http://{addr}/").parse().unwrap();
        Server { child, uri }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> HyperClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

fn get(uri: &Uri) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::default());
    *request.uri_mut() = uri.clone();
    request
}

/// One call: ready, call, read the whole body.
async fn call<S, B>(svc: &mut S, uri: &Uri) -> Result<Bytes, BoxError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let response = svc
        .ready()
        .await
        .map_err(Into::into)?
        .call(get(uri))
        .await
        .map_err(Into::into)?;
    let body = response.into_body().collect().await.map_err(Into::into)?;
    Ok(body.to_bytes())
}

/// `iters` calls, `tasks` at a time (each task makes its share one after the other).
fn run<S, B>(rt: &Runtime, svc: &S, uri: &Uri, iters: u64, tasks: u64) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
    B::Data: Send,
{
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|i| {
                let share = iters / tasks + u64::from(i < iters % tasks);
                let (mut svc, uri) = (svc.clone(), uri.clone());
                tokio::spawn(async move {
                    for _ in 0..share {
                        let body = call(&mut svc, &uri).await.expect("a call failed");
                        black_box(body);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        start.elapsed()
    })
}

/// Opens the client's connections (one per concurrent caller) before anything is timed.
fn warm_up<S, B>(rt: &Runtime, svc: &S, uri: &Uri)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
    B::Data: Send,
{
    for _ in 0..CONCURRENCY {
        run(rt, svc, uri, CONCURRENCY, CONCURRENCY);
    }
}

fn e2e(c: &mut Criterion, uri: &Uri) {
    // The client's runtime: one worker, as the server has one; the machine has two cores.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let bare = client();
    let stack = StandardResilience::builder("e2e").http().build().unwrap();
    let guarded = tower::Layer::layer(&stack, client());
    // Our middleware alone, with the stack's own retry policy, breaker and bulkhead settings,
    // without the two tower timeouts.
    let ours = StandardResilience::builder("e2e-ours")
        .http()
        .build()
        .unwrap();
    let middleware = ServiceBuilder::new()
        .retry(ours.retry().clone())
        .layer(ours.breaker().http_layer())
        .layer(ours.bulkhead().layer())
        .service(client());

    warm_up(&rt, &bare, uri);
    warm_up(&rt, &middleware, uri);
    warm_up(&rt, &guarded, uri);

    let mut group = c.benchmark_group("e2e");
    group.throughput(Throughput::Elements(1));
    for (tasks, mode) in [(1, "sequential"), (CONCURRENCY, "concurrent")] {
        group.bench_function(format!("tcp/{mode}/bare"), |b| {
            b.iter_custom(|iters| run(&rt, &bare, uri, iters, tasks))
        });
        group.bench_function(format!("tcp/{mode}/middleware"), |b| {
            b.iter_custom(|iters| run(&rt, &middleware, uri, iters, tasks))
        });
        group.bench_function(format!("tcp/{mode}/standard_stack"), |b| {
            b.iter_custom(|iters| run(&rt, &guarded, uri, iters, tasks))
        });
    }

    // Where the stack's time goes: the same layers over an in-memory upstream that answers
    // after one yield (as a socket read would: `Pending` once, so that the timeouts arm their
    // timers), one call at a time. No network, so these are the layers' own CPU costs, free of
    // the loopback's noise.
    let breaker = CircuitBreaker::builder("e2e-layers")
        .sliding_window(SlidingWindow::time_based(Duration::from_secs(30)))
        .failure_rate_threshold(0.1)
        .build()
        .unwrap();
    let bulkhead = Bulkhead::builder("e2e-layers")
        .max_concurrent(1_000)
        .build()
        .unwrap();
    let in_memory = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let layers = (
        ServiceBuilder::new()
            .layer(breaker.http_layer())
            .service(in_memory),
        ServiceBuilder::new()
            .layer(breaker.http_layer())
            .layer(bulkhead.layer())
            .service(in_memory),
        ServiceBuilder::new()
            .timeout(stack.attempt_timeout())
            .service(in_memory),
        ServiceBuilder::new()
            .retry(RetryPolicy::builder().http().build().unwrap())
            .service(in_memory),
        tower::Layer::layer(&stack, in_memory),
    );
    group.bench_function("in_memory/bare", |b| {
        b.iter_custom(|iters| run(&rt, &in_memory, uri, iters, 1))
    });
    group.bench_function("in_memory/breaker", |b| {
        b.iter_custom(|iters| run(&rt, &layers.0, uri, iters, 1))
    });
    group.bench_function("in_memory/breaker_bulkhead", |b| {
        b.iter_custom(|iters| run(&rt, &layers.1, uri, iters, 1))
    });
    group.bench_function("in_memory/tower_timeout", |b| {
        b.iter_custom(|iters| run(&rt, &layers.2, uri, iters, 1))
    });
    group.bench_function("in_memory/tower_retry", |b| {
        b.iter_custom(|iters| run(&rt, &layers.3, uri, iters, 1))
    });
    group.bench_function("in_memory/standard_stack", |b| {
        b.iter_custom(|iters| run(&rt, &layers.4, uri, iters, 1))
    });

    // While open: a stack like the one above with its breaker forced open, and a breaker alone.
    let open = StandardResilience::builder("e2e-open")
        .http()
        .build()
        .unwrap();
    open.breaker().force_open();
    let mut open_stack = tower::Layer::layer(&open, client());
    let breaker = CircuitBreaker::builder("e2e-open").build().unwrap();
    breaker.force_open();
    let mut breaker_layer = tower::Layer::layer(&breaker.layer(), client());
    let rejected = |result: Result<Bytes, BoxError>| {
        let err = result.expect_err("the breaker is open");
        assert!(err.is::<CircuitOpen>() || err.source().is_some_and(|s| s.is::<CircuitOpen>()));
        black_box(err);
    };
    group.bench_function("rejection/handle", |b| {
        b.iter(|| black_box(breaker.try_acquire()).expect_err("open"))
    });
    group.bench_function("rejection/breaker_layer", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    rejected(call(&mut breaker_layer, uri).await);
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("rejection/standard_stack", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    rejected(call(&mut open_stack, uri).await);
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    // The decision, robust to a busy machine: the three clients and the open stack measured in
    // interleaved rounds (each round times a batch of each, in turn), so that any slowdown of
    // the machine hits all of them alike; the ratio is taken within each round and the median
    // over rounds reported.
    let batch = |mut calls: Box<dyn FnMut(u64) -> Duration + '_>| {
        calls(PAIRED_BATCH).as_nanos() as f64 / PAIRED_BATCH as f64
    };
    let (mut rtt, mut ours_cost, mut timeouts_cost, mut open_ratio) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..PAIRED_ROUNDS {
        let bare_ns = batch(Box::new(|n| run(&rt, &bare, uri, n, 1)));
        let middleware_ns = batch(Box::new(|n| run(&rt, &middleware, uri, n, 1)));
        let stack_ns = batch(Box::new(|n| run(&rt, &guarded, uri, n, 1)));
        let open_ns = batch(Box::new(|n| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..n {
                    rejected(call(&mut open_stack, uri).await);
                }
                start.elapsed()
            })
        }));
        rtt.push(bare_ns);
        ours_cost.push((middleware_ns - bare_ns) / bare_ns);
        timeouts_cost.push((stack_ns - middleware_ns) / bare_ns);
        open_ratio.push(bare_ns / open_ns);
    }
    println!(
        "\npaired rounds ({PAIRED_ROUNDS} x {PAIRED_BATCH} sequential calls each; median [p10-p90] over rounds):"
    );
    println!(
        "  loopback round trip (bare)          {}",
        spread(&mut rtt, |v| format!("{:.1} us", v / 1e3))
    );
    println!(
        "  our middleware (retry+breaker+bulkhead) {}",
        spread(&mut ours_cost, |v| format!("{:+.2} %", v * 100.0))
    );
    println!(
        "  tower's two timeouts                {}",
        spread(&mut timeouts_cost, |v| format!("{:+.2} %", v * 100.0))
    );
    println!(
        "  open-breaker rejection (stack)      {}",
        spread(&mut open_ratio, |v| format!("{v:.0}x faster"))
    );
}

/// Rounds and calls per batch of the paired measurement.
const PAIRED_ROUNDS: usize = 60;
const PAIRED_BATCH: u64 = 200;

/// `median [p10-p90]` of `values`, each formatted by `show`.
fn spread(values: &mut [f64], show: impl Fn(f64) -> String) -> String {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    format!("{} [{} to {}]", show(at(0.5)), show(at(0.1)), show(at(0.9)))
}

fn main() {
    if std::env::var_os(SERVE_ENV).is_some() {
        serve_in_this_process();
        return;
    }
    let server = Server::spawn();
    let mut criterion = Criterion::default().configure_from_args();
    e2e(&mut criterion, &server.uri);
    criterion.final_summary();
}
