//! Two threads started together, for the benches that measure what two threads cost each
//! other (`circuit_breaker`, `keyed`, `observability`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Calls each thread makes at least per sample, so that the threads run side by side for most
/// of a sample even when criterion asks for a few iterations (a few calls would take
/// microseconds).
const MIN_CALLS_PER_THREAD: u64 = 2_000;

/// How many times a sample is run again when its threads did not run side by side.
const ATTEMPTS: usize = 5;

/// Samples taken since the last [`apart_since_reset`], and those in which the two threads ran
/// side by side for less than 90% of the sample even after `ATTEMPTS` tries (the machine was
/// busy: such a sample is closer to one thread's figure than to two threads contending).
static SAMPLES: AtomicU64 = AtomicU64::new(0);
static APART: AtomicU64 = AtomicU64::new(0);

/// Runs `work(n)` on two threads at once (each with its own state from `make(thread)`), with
/// `n = max(iters, MIN_CALLS_PER_THREAD)`, and returns the wall time from the common start to
/// the last finish, per call over all `2n` calls, times `iters` (criterion divides by `iters`).
/// The threads meet at a spinning rendezvous, so both are running when the clock starts. A run
/// in which they were side by side for less than 90% of the time (another process had a core)
/// is run again, up to `ATTEMPTS` times, and counted as apart if it never was.
pub(crate) fn two_threads_each<W, M>(iters: u64, make: M) -> Duration
where
    M: Fn(u64) -> W,
    W: FnMut(u64) + Send,
{
    let n = iters.max(MIN_CALLS_PER_THREAD);
    SAMPLES.fetch_add(1, Ordering::Relaxed);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let arrived = AtomicUsize::new(0);
        let mut workers = [make(0), make(1)];
        let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
            let handles: Vec<_> = workers
                .iter_mut()
                .map(|work| {
                    let arrived = &arrived;
                    s.spawn(move || {
                        arrived.fetch_add(1, Ordering::AcqRel);
                        while arrived.load(Ordering::Acquire) < 2 {
                            std::hint::spin_loop();
                        }
                        let start = Instant::now();
                        work(n);
                        (start, Instant::now())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("bench thread panicked"))
                .collect()
        });
        let start = spans.iter().map(|s| s.0).min().expect("two spans");
        let end = spans.iter().map(|s| s.1).max().expect("two spans");
        let together_from = spans.iter().map(|s| s.0).max().expect("two spans");
        let together_to = spans.iter().map(|s| s.1).min().expect("two spans");
        let total = end - start;
        let together = together_to.saturating_duration_since(together_from);
        let side_by_side = together.as_secs_f64() >= 0.9 * total.as_secs_f64();
        if side_by_side || attempt == ATTEMPTS {
            if !side_by_side {
                APART.fetch_add(1, Ordering::Relaxed);
            }
            return total.mul_f64(iters as f64 / (2.0 * n as f64));
        }
    }
}

/// [`two_threads_each`] with one shared `work(thread, n)`.
// Not every bench that includes this file uses every item.
#[allow(dead_code)]
pub(crate) fn two_threads(iters: u64, work: &(impl Fn(u64, u64) + Sync)) -> Duration {
    two_threads_each(iters, |thread| move |n| work(thread, n))
}

/// `(apart, samples)` since the last call, then both counts start again from zero.
#[allow(dead_code)]
pub(crate) fn apart_since_reset() -> (u64, u64) {
    (
        APART.swap(0, Ordering::Relaxed),
        SAMPLES.swap(0, Ordering::Relaxed),
    )
}
