//! Adversarial tests of `Hedge`, from its docs: the budget's bound ("hedges stay at most
//! `ratio × calls + burst`") under many concurrent slow calls, a delay of zero, and the call
//! dropped after every poll (both attempts cancelled). Paused time throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::{BoxError, Service, ServiceExt, service_fn};
use tower_breaker::stream::{Hedge, HedgeDelay};

/// A provider that answers after `ms`, counting the attempts in flight and in all.
fn provider(
    ms: u64,
    live: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send {
    service_fn(move |n: u32| {
        total.fetch_add(1, Ordering::SeqCst);
        let live = live.clone();
        live.fetch_add(1, Ordering::SeqCst);
        struct Leave(Arc<AtomicUsize>);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let leave = Leave(live);
        async move {
            let _leave = leave;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, BoxError>(n)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn hedges_stay_within_ratio_times_calls_plus_burst_under_concurrency() {
    for (ratio, burst, calls) in [(0.1, 10u32, 500u64), (1.0, 1, 50), (0.01, 1, 300)] {
        let live = Arc::new(AtomicUsize::new(0));
        let total = Arc::new(AtomicUsize::new(0));
        let hedge = Hedge::builder()
            .delay(HedgeDelay::fixed(Duration::from_millis(10)))
            .budget(ratio)
            .budget_burst(burst)
            .hedge_non_idempotent(true)
            .build(provider(1_000, live.clone(), total.clone()))
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..calls {
            let mut hedge = hedge.clone();
            tasks.spawn(async move { hedge.ready().await?.call(n as u32).await });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap().unwrap();
        }
        let stats = hedge.stats();
        let bound = (ratio * calls as f64).floor() as u64 + u64::from(burst);
        assert_eq!(stats.calls, calls);
        assert!(
            stats.hedges <= bound,
            "{ratio} {burst}: {} > {bound}",
            stats.hedges
        );
        assert_eq!(total.load(Ordering::SeqCst) as u64, calls + stats.hedges);
        assert_eq!(
            live.load(Ordering::SeqCst),
            0,
            "every losing attempt was cancelled"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_zero_delay_hedges_at_once_and_the_faster_answer_wins() {
    let live = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let mut hedge = Hedge::builder()
        .delay(HedgeDelay::fixed(Duration::ZERO))
        .hedge_non_idempotent(true)
        .build(provider(100, live.clone(), total.clone()))
        .unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(hedge.ready().await.unwrap().call(7).await.unwrap(), 7);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(live.load(Ordering::SeqCst), 0);
    assert!(total.load(Ordering::SeqCst) <= 2);
}

#[tokio::test(start_paused = true)]
async fn a_hedged_call_dropped_after_any_poll_cancels_both_attempts() {
    let live = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let mut hedge = Hedge::builder()
        .delay(HedgeDelay::fixed(Duration::from_millis(50)))
        .hedge_non_idempotent(true)
        .build(provider(200, live.clone(), total.clone()))
        .unwrap();
    for polls in 1..8 {
        let mut future = tokio_test::task::spawn(hedge.ready().await.unwrap().call(1));
        for _ in 0..polls {
            if future.poll().is_ready() {
                break;
            }
            tokio::time::advance(Duration::from_millis(30)).await;
        }
        drop(future);
        assert_eq!(live.load(Ordering::SeqCst), 0, "after {polls} polls");
    }
}
