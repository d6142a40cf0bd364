//! Two threads started together, for the benches that measure what two threads cost each
//! other (`keyed`, `observability`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Calls each thread makes at least per sample, so that the threads run side by side for most
/// of a sample even when criterion asks for a few iterations.
const MIN_CALLS_PER_THREAD: u64 = 2_000;

/// Runs `work(thread, n)` on two threads that start together; the wall time per lookup over
/// both threads' `2n` lookups, times `iters`.
pub(crate) fn two_threads(iters: u64, work: &(impl Fn(u64, u64) + Sync)) -> Duration {
    let n = iters.max(MIN_CALLS_PER_THREAD);
    let arrived = AtomicUsize::new(0);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|thread| {
                let arrived = &arrived;
                s.spawn(move || {
                    arrived.fetch_add(1, Ordering::AcqRel);
                    while arrived.load(Ordering::Acquire) < 2 {
                        std::hint::spin_loop();
                    }
                    let start = Instant::now();
                    work(thread, n);
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("spans");
    let end = spans.iter().map(|s| s.1).max().expect("spans");
    (end - start).mul_f64(iters as f64 / (2.0 * n as f64))
}
