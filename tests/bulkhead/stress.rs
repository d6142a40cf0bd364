//! 10 tasks x 10,000 calls on a multi-thread runtime, with random cancellation while queued and
//! while running and random drops of the service: afterwards every count is exact.
//!
//! Real time runs here (a paused clock needs a current-thread runtime), so which calls wait,
//! time out or are rejected varies from run to run; what is checked does not: the accounting,
//! and that the inner service never had more calls in flight than there are slots.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::Service;
use tower_breaker::bulkhead::{
    AcquireError, Bulkhead, BulkheadEvent, BulkheadFull, BulkheadService, BulkheadTimeout,
    RejectionReason,
};

const TASKS: u64 = 10;
const CALLS: u64 = 10_000;
const SLOTS: u32 = 3;
const QUEUE: u32 = 4;

/// SplitMix64: a small, seeded generator, so each task's choices are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The inner service: counts calls and calls in flight, and yields a few times per call so
/// that calls overlap.
#[derive(Clone, Default)]
struct Inner {
    calls: Arc<AtomicU64>,
    in_flight: Arc<AtomicU32>,
    most_in_flight: Arc<AtomicU32>,
}

struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Service<u64> for Inner {
    type Response = u64;
    // Not `BoxError`: a boxed error type here trips a known limit of the compiler's `Send`
    // inference for the spawned task ("implementation of `From` is not general enough").
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<u64, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u64) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let guard = InFlight(self.in_flight.clone());
        Box::pin(async move {
            let _guard = guard;
            for _ in 0..n % 4 {
                tokio::task::yield_now().await;
            }
            Ok(n)
        })
    }
}

/// Polls `future` at most `budget` times (at least once); `None` if it was still pending, and
/// it is then dropped: a cancellation.
async fn with_budget<F: Future>(future: F, budget: Option<u64>) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut polls = 0;
    poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => {
            polls += 1;
            match budget {
                Some(budget) if polls >= budget.max(1) => Poll::Ready(None),
                _ => Poll::Pending,
            }
        }
    })
    .await
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Tally {
    ok: u64,
    cancelled_running: u64,
    full: u64,
    timeout: u64,
    abandoned_in_queue: u64,
    handle_ok: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        self.cancelled_running += other.cancelled_running;
        self.full += other.full;
        self.timeout += other.timeout;
        self.abandoned_in_queue += other.abandoned_in_queue;
        self.handle_ok += other.handle_ok;
    }

    fn attempts(&self) -> u64 {
        self.ok
            + self.cancelled_running
            + self.full
            + self.timeout
            + self.abandoned_in_queue
            + self.handle_ok
    }
}

/// Maybe a cancellation: one attempt in five gets a budget of 1 to 3 polls.
fn budget(rng: &mut Rng) -> Option<u64> {
    (rng.below(5) == 0).then(|| 1 + rng.below(3))
}

/// One call through a fresh clone of the service, cancelled at random while queued or running,
/// with the service dropped at random before its future runs.
async fn service_attempt(
    mut svc: BulkheadService<Inner>,
    rng: &mut Rng,
    n: u64,
    tally: &mut Tally,
) {
    match with_budget(poll_fn(|cx| svc.poll_ready(cx)), budget(rng)).await {
        // Only a queued caller is pending in `poll_ready` (the inner service is always ready):
        // it gives up, and the service is dropped with its wait.
        None => {
            tally.abandoned_in_queue += 1;
            return;
        }
        Some(Err(err)) => panic!("poll_ready failed: {err}"),
        Some(Ok(())) => {}
    }
    let future = svc.call(n);
    let _svc = if rng.below(2) == 0 {
        drop(svc);
        None
    } else {
        Some(svc)
    };
    // A rejected call fails on its first poll, so only an admitted call can be cancelled.
    match with_budget(future, budget(rng)).await {
        None => tally.cancelled_running += 1,
        Some(Ok(answer)) => {
            assert_eq!(answer, n);
            tally.ok += 1;
        }
        Some(Err(err)) if err.is::<BulkheadFull>() => tally.full += 1,
        Some(Err(err)) if err.is::<BulkheadTimeout>() => tally.timeout += 1,
        Some(Err(err)) => panic!("unexpected error: {err}"),
    }
}

/// One `Bulkhead::acquire`, cancelled at random while queued; the permit is held across a yield.
async fn handle_attempt(bulkhead: &Bulkhead, rng: &mut Rng, tally: &mut Tally) {
    match with_budget(bulkhead.acquire(), budget(rng)).await {
        None => tally.abandoned_in_queue += 1,
        Some(Ok(permit)) => {
            tokio::task::yield_now().await;
            drop(permit);
            tally.handle_ok += 1;
        }
        Some(Err(AcquireError::Full(_))) => tally.full += 1,
        Some(Err(AcquireError::Timeout(_))) => tally.timeout += 1,
        Some(Err(err)) => panic!("unexpected error: {err}"),
    }
}

#[derive(Default)]
struct EventCounts {
    permitted: AtomicU64,
    finished: AtomicU64,
    full: AtomicU64,
    timeout: AtomicU64,
}

/// Runs the 100,000 attempts and checks the accounting; returns the tally.
async fn stress(max_wait: Duration) -> Tally {
    let events = Arc::new(EventCounts::default());
    let sink = events.clone();
    let bulkhead = Bulkhead::builder("stress")
        .max_concurrent(SLOTS)
        .max_queue(QUEUE)
        .max_wait(max_wait)
        .on_event(move |event: &BulkheadEvent| {
            let counter = match event {
                BulkheadEvent::CallPermitted { .. } => &sink.permitted,
                BulkheadEvent::CallFinished { .. } => &sink.finished,
                BulkheadEvent::CallRejected {
                    reason: RejectionReason::Full,
                    ..
                } => &sink.full,
                BulkheadEvent::CallRejected { .. } => &sink.timeout,
                _ => return,
            };
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let inner = Inner::default();
    let svc = BulkheadService::new(inner.clone(), bulkhead.clone());

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let svc = svc.clone();
        let bulkhead = bulkhead.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0xB01D_FACE ^ task);
            let mut tally = Tally::default();
            for call in 0..CALLS {
                if rng.below(8) == 0 {
                    handle_attempt(&bulkhead, &mut rng, &mut tally).await;
                } else {
                    service_attempt(svc.clone(), &mut rng, task * CALLS + call, &mut tally).await;
                }
            }
            tally
        }));
    }
    let mut tally = Tally::default();
    for task in tasks {
        tally.add(task.await.unwrap());
    }
    drop(svc);
    println!("{tally:?}");

    let metrics = bulkhead.metrics();
    assert_eq!(
        (metrics.active, metrics.queued),
        (0, 0),
        "every slot and place given back"
    );
    assert_eq!(tally.attempts(), TASKS * CALLS);
    // Accepted + rejected + gave up while queued = attempted, and the bulkhead agrees.
    let accepted = tally.ok + tally.cancelled_running + tally.handle_ok;
    assert_eq!(events.permitted.load(Ordering::SeqCst), accepted);
    assert_eq!(events.finished.load(Ordering::SeqCst), accepted);
    assert_eq!(metrics.rejected_full, tally.full);
    assert_eq!(metrics.rejected_timeout, tally.timeout);
    assert_eq!(events.full.load(Ordering::SeqCst), tally.full);
    assert_eq!(events.timeout.load(Ordering::SeqCst), tally.timeout);
    assert_eq!(
        accepted + metrics.rejected_full + metrics.rejected_timeout + tally.abandoned_in_queue,
        TASKS * CALLS
    );
    // The inner service was called exactly once per admitted service call, never more than
    // `SLOTS` at a time.
    assert_eq!(
        inner.calls.load(Ordering::SeqCst),
        tally.ok + tally.cancelled_running
    );
    assert_eq!(inner.in_flight.load(Ordering::SeqCst), 0);
    assert!(inner.most_in_flight.load(Ordering::SeqCst) <= SLOTS);
    // The run exercised the contended paths.
    assert!(tally.ok > 0 && tally.full > 0);
    // And the bulkhead still works: every slot can be taken.
    let permits: Vec<_> = (0..SLOTS)
        .map(|_| bulkhead.try_acquire().unwrap())
        .collect();
    assert_eq!(bulkhead.metrics().active, SLOTS);
    drop(permits);
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tasks_ten_thousand_calls_with_random_cancellation() {
    // A 1 ms wait: some waiters time out, and the timeout path is counted too.
    stress(Duration::from_millis(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_waiter_is_forgotten_while_a_slot_is_free() {
    // A wait that never times out: a waiter left waiting while a slot sits free (a lost
    // hand-over) would hang here instead of timing out. The watchdog only turns such a hang
    // into a failure; a run takes well under a second.
    let tally = tokio::time::timeout(
        Duration::from_secs(120),
        stress(Duration::from_secs(86_400)),
    )
    .await
    .expect("a waiter was never served");
    assert_eq!(tally.timeout, 0);
}
