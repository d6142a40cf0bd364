//! Regressions found in review of the lock-free core; each test failed before its fix.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tower::{Service, ServiceExt, service_fn};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerLayer, CircuitOpen, CircuitState, SlidingWindow,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Regression (review): the open wait can be cut short by up to 1 ms (floor(now) + ceil(wait)).
#[tokio::test(start_paused = true)]
async fn open_wait_cut_short_by_rounding() {
    let b = CircuitBreaker::builder("r")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(ms(1))
        .build()
        .unwrap();
    tokio::time::advance(Duration::from_micros(900)).await;
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(b.state(), CircuitState::Open);
    tokio::time::advance(Duration::from_micros(100)).await; // only 0.1 ms of a 1 ms wait
    let p = b.try_acquire();
    assert!(p.is_err(), "probe admitted after 100us of a 1ms open wait");
}

/// Regression (review): hold_while_open(_, Duration::MAX) panics in poll_ready (Instant + Duration).
#[tokio::test(start_paused = true)]
async fn hold_max_wait_overflow_panics() {
    let b = CircuitBreaker::builder("h")
        .sliding_window(SlidingWindow::consecutive(1))
        .build()
        .unwrap();
    b.try_acquire().unwrap().record(Outcome::Failure);
    let layer = CircuitBreakerLayer::new(b.clone()).hold_while_open(10, Duration::MAX);
    let svc = tower::Layer::layer(
        &layer,
        service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }),
    );
    let r = tokio::spawn(async move {
        let mut svc = svc;
        let _ = tokio::time::timeout(ms(10), svc.ready()).await;
    })
    .await;
    assert!(r.is_ok(), "poll_ready panicked: {:?}", r.err());
}

/// Regression (review): a hold slot leaks when a held call is finally rejected as ForcedOpen.
#[tokio::test(start_paused = true)]
async fn held_slot_leaks_on_forced_open() {
    let b = CircuitBreaker::builder("h")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(Duration::from_secs(60))
        .build()
        .unwrap();
    b.try_acquire().unwrap().record(Outcome::Failure);
    let layer = CircuitBreakerLayer::new(b.clone()).hold_while_open(1, Duration::from_secs(30));
    let inner = service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) });
    let mut a = tower::Layer::layer(&layer, inner);
    let mut c = tower::Layer::layer(&layer, inner);
    // a is held
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(a.poll_ready(&mut cx).is_pending());
    b.force_open();
    // a wakes, is rejected (ForcedOpen), reports ready with a rejection
    assert!(a.poll_ready(&mut cx).is_ready());
    let err = a.call(()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    // back to open (not forced) ; `a` is idle but still holds its hold slot
    b.reset();
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(b.state(), CircuitState::Open);
    assert!(
        c.poll_ready(&mut cx).is_pending(),
        "c should be held, but the hold is 'full' with a's stale Held"
    );
}

/// Regression (review): a probe slot freed by a dropped probe does not wake held calls.
#[tokio::test(start_paused = true)]
async fn dropped_probe_does_not_wake_held_calls() {
    let b = CircuitBreaker::builder("h")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(ms(100))
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    b.try_acquire().unwrap().record(Outcome::Failure);
    tokio::time::advance(ms(100)).await;
    let probe = b.try_acquire().unwrap();
    assert!(probe.is_probe());
    let layer = CircuitBreakerLayer::new(b.clone()).hold_while_open(10, Duration::from_secs(30));
    let svc = tower::Layer::layer(
        &layer,
        service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }),
    );
    let start = tokio::time::Instant::now();
    let h = tokio::spawn(async move { svc.oneshot(()).await.map(|_| start.elapsed()) });
    tokio::time::sleep(ms(10)).await;
    drop(probe); // slot is free now
    let waited = h.await.unwrap().unwrap();
    assert!(waited < ms(100), "held call admitted only after {waited:?}");
}

/// Regression (review): a Normal permit reserved in poll_ready while closed is carried across a trip:
/// the inner service is called while the breaker is open.
#[tokio::test(start_paused = true)]
async fn reserved_permit_bypasses_open_breaker() {
    let b = CircuitBreaker::builder("h")
        .sliding_window(SlidingWindow::consecutive(1))
        .build()
        .unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    let mut svc = tower::Layer::layer(
        &b.layer(),
        service_fn(move |_: ()| {
            h2.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::io::Error>(()) }
        }),
    );
    svc.ready().await.unwrap();
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(b.state(), CircuitState::Open);
    let _ = svc.call(()).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "upstream called while open");
}

/// Regression (review): the window is cleared after CLOSED is published; a record in between sees the
/// old (tripping) window and reopens the breaker, even on a success.
#[test]
fn close_then_stale_window_retrips() {
    let n = 1_000_000u32;
    let mut retrips = 0;
    for _round in 0..3 {
        let b = CircuitBreaker::builder("w")
            .sliding_window(SlidingWindow::count_based(n))
            .minimum_calls(n)
            .failure_rate_threshold(0.5)
            .wait_in_open(ms(1))
            .permitted_calls_in_half_open(1)
            .build()
            .unwrap();
        // Fill: 60% failures spread over the ring, trips on the last record.
        for i in 0..n {
            let o = if i % 5 < 3 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            if let Ok(p) = b.try_acquire() {
                p.record(o);
            }
        }
        assert_eq!(b.state(), CircuitState::Open);
        std::thread::sleep(ms(3));
        let probe = b.try_acquire().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let b2 = b.clone();
        let hammer = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                if let Ok(p) = b2.try_acquire() {
                    if !p.is_probe() {
                        p.record(Outcome::Success);
                    }
                }
            }
        });
        std::thread::sleep(ms(5));
        probe.record(Outcome::Success); // closes, then clears 1M slots
        std::thread::sleep(ms(50));
        stop.store(true, Ordering::Relaxed);
        hammer.join().unwrap();
        if b.state() != CircuitState::Closed {
            retrips += 1;
        }
    }
    assert_eq!(
        retrips, 0,
        "closed by a successful probe, then re-tripped by successes"
    );
}

/// Regression (review): 21-bit generation wraps; a stale probe from 2^21 transitions ago settles into a
/// new round: here it frees a slot it never held, so N=1 admits two probes at once.
#[tokio::test(start_paused = true)]
async fn generation_wrap_lets_stale_probe_in() {
    let b = CircuitBreaker::builder("g")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(ms(1))
        .permitted_calls_in_half_open(1)
        .max_wait_in_half_open(None)
        .build()
        .unwrap();
    b.try_acquire().unwrap().record(Outcome::Failure); // g=1 open
    tokio::time::advance(ms(1)).await;
    let stale = b.try_acquire().unwrap(); // g=2 half-open
    assert!(stale.is_probe());
    for _ in 0..((1u32 << 21) - 2) {
        b.reset();
    }
    b.try_acquire().unwrap().record(Outcome::Failure); // open
    tokio::time::advance(ms(1)).await;
    let q = b.try_acquire().unwrap(); // half-open again, generation wrapped to 2
    assert!(q.is_probe());
    drop(stale); // stale Ignored gives back q's slot
    let r = b.try_acquire();
    assert!(r.is_err(), "second probe admitted with N = 1");
}

/// A closed-state permit held across 2^21 transitions (the state word's generation has come
/// round to its own) is still stale: its outcome changes nothing.
#[tokio::test(start_paused = true)]
async fn a_permit_from_a_generation_ago_records_nothing_even_after_the_generation_wraps() {
    let b = CircuitBreaker::builder("g")
        .sliding_window(SlidingWindow::consecutive(1))
        .build()
        .unwrap();
    let old = b.try_acquire().unwrap();
    for _ in 0..(1u32 << 21) {
        b.reset();
    }
    old.record(Outcome::Failure);
    assert_eq!(
        b.state(),
        CircuitState::Closed,
        "a stale failure tripped the breaker"
    );
    assert_eq!(b.metrics().calls, 0);
    // A permit of the current generation still counts.
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(b.state(), CircuitState::Open);
}
