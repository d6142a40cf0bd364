//! End-to-end overhead: a hyper server and a hyper-util client on loopback, the bare client
//! against the same client behind the full standard stack (`StandardResilience::builder(..)
//! .http()`: total timeout, retry, circuit breaker, bulkhead, attempt timeout), in one
//! criterion run and one group; and the cost of a rejection while the breaker is open against
//! a loopback round trip.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --features stack,http --bench e2e -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! - One tokio runtime (2 workers) runs the server and the client, as a service calling a
//!   neighbour on the same host would. Server, client, connection pool and stack are built
//!   outside the timed loop; every timed call builds its request (a GET with a pre-parsed URI)
//!   and reads the whole response body.
//! - `sequential/*`: one call at a time on one keep-alive connection, so time per call is the
//!   loopback round trip (plus the stack's overhead); `concurrent/*`: `CONCURRENCY` calls in
//!   flight from as many tasks, so time per call is the inverse of throughput with both cores
//!   busy. Throughput kept = bare time per call / stack time per call.
//! - `in_memory/*`: where the stack's time goes, without the loopback's noise: an in-memory
//!   upstream that answers after one yield (`Pending` once, like a socket read, so that the
//!   timeouts arm their timers), bare and behind each layer of the stack on its own (our
//!   breaker with the stack's time-based window, breaker and bulkhead, tower's `Timeout`,
//!   tower's `Retry` with our policy) and behind the whole stack, one call at a time.
//! - `rejection/*`: the breaker is forced open, so every call fails with `CircuitOpen` without
//!   reaching the network: `handle` is `try_acquire` alone, `breaker_layer` a
//!   `CircuitBreakerService` over the same client (`poll_ready`, `call`, poll), and
//!   `standard_stack` the whole stack. Each is compared with `sequential/bare`.
//!
//! The figures and the targets they are held to are in `benches/README.md`.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::hint::black_box;
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

/// A hyper server on 127.0.0.1 answering every request with a 2-byte body.
async fn serve() -> Uri {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
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
    format!("http://{addr}/").parse().unwrap()
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

fn e2e(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let uri = rt.block_on(serve());
    let bare = client();
    let stack = StandardResilience::builder("e2e").http().build().unwrap();
    let guarded = tower::Layer::layer(&stack, client());

    warm_up(&rt, &bare, &uri);
    warm_up(&rt, &guarded, &uri);

    let mut group = c.benchmark_group("e2e");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sequential/bare", |b| {
        b.iter_custom(|iters| run(&rt, &bare, &uri, iters, 1))
    });
    group.bench_function("sequential/standard_stack", |b| {
        b.iter_custom(|iters| run(&rt, &guarded, &uri, iters, 1))
    });
    group.bench_function("concurrent/bare", |b| {
        b.iter_custom(|iters| run(&rt, &bare, &uri, iters, CONCURRENCY))
    });
    group.bench_function("concurrent/standard_stack", |b| {
        b.iter_custom(|iters| run(&rt, &guarded, &uri, iters, CONCURRENCY))
    });

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
        b.iter_custom(|iters| run(&rt, &in_memory, &uri, iters, 1))
    });
    group.bench_function("in_memory/breaker", |b| {
        b.iter_custom(|iters| run(&rt, &layers.0, &uri, iters, 1))
    });
    group.bench_function("in_memory/breaker_bulkhead", |b| {
        b.iter_custom(|iters| run(&rt, &layers.1, &uri, iters, 1))
    });
    group.bench_function("in_memory/tower_timeout", |b| {
        b.iter_custom(|iters| run(&rt, &layers.2, &uri, iters, 1))
    });
    group.bench_function("in_memory/tower_retry", |b| {
        b.iter_custom(|iters| run(&rt, &layers.3, &uri, iters, 1))
    });
    group.bench_function("in_memory/standard_stack", |b| {
        b.iter_custom(|iters| run(&rt, &layers.4, &uri, iters, 1))
    });

    // While open: the same stack with its breaker forced open, and a breaker alone.
    stack.breaker().force_open();
    let breaker = CircuitBreaker::builder("e2e-open").build().unwrap();
    breaker.force_open();
    let mut breaker_layer = tower::Layer::layer(&breaker.layer(), client());
    let mut open_stack = guarded.clone();
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
                    rejected(call(&mut breaker_layer, &uri).await);
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
                    rejected(call(&mut open_stack, &uri).await);
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, e2e);
criterion_main!(benches);
