//! Cost of finding a key's breaker, with two threads at once, in registries of 10, 1,000 and
//! 100,000 keys: the figure should not grow with the number of keys.
//!
//! ```text
//! CARGO_TARGET_DIR=target-bench cargo bench --all-features --bench keyed -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! - Every registry is filled with its keys (`u64`) before the clock starts, with `max_keys`
//!   equal to the number of keys, so nothing is evicted during the run.
//! - Two OS threads start together (a spinning rendezvous), each makes N lookups (at least
//!   2,000) on its own 16 keys spread over the whole registry, one after the other; the
//!   figure is the wall time from the common start to the last finish over the 2N lookups.
//! - `get/*`: `KeyedCircuitBreakers::get` and dropping the handle.
//! - `service/*`: a call through `KeyedCircuitBreakerLayer` around a ready `service_fn`
//!   (`call` and one poll of the future with a no-op waker): the lookup through the service's
//!   cache, plus the breaker's own `try_acquire` and `record`.
//! - `breaker_only/*`: the same call through a plain `CircuitBreaker` layer (each thread its
//!   own breaker, so no lookup): `service/*` minus this is the cost of the lookup.
//! - `reference_rwlock/*`: the lookup this crate used before, rebuilt here for comparison in
//!   the same run: one `RwLock<HashMap>` read lock, a clock read and a shared timestamp store
//!   per lookup.

#[path = "support/two_threads.rs"]
mod two_threads;

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Future, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tower::{Layer, Service, service_fn};
use tower_breaker::circuit_breaker::CircuitBreaker;
use tower_breaker::keyed::{KeyedCircuitBreakerLayer, KeyedCircuitBreakers};
use two_threads::two_threads;

const SIZES: [u64; 3] = [10, 1_000, 100_000];
/// Keys each thread cycles through, spread over the registry: as many as a keyed service
/// remembers, so that `service/*` measures its cache hits.
const KEYS_PER_THREAD: u64 = 8;

fn registry(keys: u64) -> KeyedCircuitBreakers<u64> {
    let registry = KeyedCircuitBreakers::builder(CircuitBreaker::builder("bench"))
        .max_keys(keys as usize)
        .build()
        .expect("valid config");
    for key in 0..keys {
        drop(registry.get(&key));
    }
    assert_eq!(registry.len() as u64, keys);
    registry
}

/// Thread `thread`'s keys: spread over `0..keys` (they repeat when there are fewer keys).
fn keys_of(thread: u64, keys: u64) -> Vec<u64> {
    (0..KEYS_PER_THREAD)
        .map(|i| (i * 2 + thread) * keys / (KEYS_PER_THREAD * 2) % keys)
        .collect()
}

/// The lookup this crate used before: one map behind an `RwLock`, a clock read and a
/// timestamp store per lookup.
struct Reference {
    origin: Instant,
    map: RwLock<HashMap<u64, (CircuitBreaker, AtomicU64)>>,
}

impl Reference {
    fn new(keys: u64) -> Self {
        let map = (0..keys)
            .map(|k| {
                let breaker = CircuitBreaker::builder(format!("bench:{k}"))
                    .build()
                    .expect("valid config");
                (k, (breaker, AtomicU64::new(0)))
            })
            .collect();
        Self {
            origin: Instant::now(),
            map: RwLock::new(map),
        }
    }

    fn get(&self, key: &u64) -> Option<CircuitBreaker> {
        let now = self.origin.elapsed().as_millis() as u64;
        let map = self.map.read().expect("not poisoned");
        map.get(key).map(|(breaker, used)| {
            used.store(now, Ordering::Relaxed);
            breaker.clone()
        })
    }
}

/// `n` calls on a ready service: `poll_ready`, `call(request(i))`, one poll of the future.
fn call_n<S>(svc: &mut S, n: u64, request: impl Fn(u64) -> u64)
where
    S: Service<u64, Response = ()>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..n {
        let Poll::Ready(Ok(())) = svc.poll_ready(&mut cx) else {
            panic!("service_fn is always ready");
        };
        let future = pin!(svc.call(request(i)));
        let Poll::Ready(Ok(())) = future.poll(&mut cx) else {
            panic!("closed breaker, ready inner future");
        };
    }
}

fn keyed(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed");
    group.bench_function("breaker_only/two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|_, n| {
                let breaker = CircuitBreaker::builder("bench")
                    .build()
                    .expect("valid config");
                let mut svc = breaker
                    .layer()
                    .layer(service_fn(|_: u64| ready(Ok::<_, Infallible>(()))));
                call_n(&mut svc, n, |i| i);
            })
        })
    });
    for keys in SIZES {
        let reference = Reference::new(keys);
        group.bench_function(format!("reference_rwlock/two_threads/{keys}"), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, &|thread, n| {
                    let mine = keys_of(thread, keys);
                    for i in 0..n {
                        black_box(reference.get(&mine[(i % KEYS_PER_THREAD) as usize]));
                    }
                })
            })
        });
        drop(reference);

        let registry = registry(keys);
        group.bench_function(format!("get/two_threads/{keys}"), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, &|thread, n| {
                    let mine = keys_of(thread, keys);
                    for i in 0..n {
                        black_box(registry.get(&mine[(i % KEYS_PER_THREAD) as usize]));
                    }
                })
            })
        });

        let layer = KeyedCircuitBreakerLayer::new(registry.clone(), |key: &u64| *key);
        group.bench_function(format!("service/two_threads/{keys}"), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, &|thread, n| {
                    let mine = keys_of(thread, keys);
                    let mut svc = layer.layer(service_fn(|_: u64| ready(Ok::<_, Infallible>(()))));
                    call_n(&mut svc, n, |i| mine[(i % KEYS_PER_THREAD) as usize]);
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = keyed
}
criterion_main!(benches);
