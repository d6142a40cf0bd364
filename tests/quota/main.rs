//! The quota governor and the adaptive limit against a simulated provider, on paused time:
//! the properties issue 18 asks for, checked in CI (`benches/quota_sim.rs` prints the same
//! runs as figures).

#[path = "../support/mod.rs"]
mod support;

mod e2e;
mod sim;

use sim::{CapacitySim, QuotaSim, run_capacity, run_quota};
use std::time::Duration;
use tower_breaker::bulkhead::{Aimd, LimitAlgorithm};
use tower_breaker::quota::{Exhausted, Quota};
use tower_breaker::shared_state::MemoryStore;

#[tokio::test(start_paused = true)]
async fn governed_calls_use_ninety_percent_of_the_quota_with_under_one_percent_429s() {
    let report = run_quota(QuotaSim::default()).await;
    assert!(report.quota_used() >= 0.90, "{report:?}");
    assert!(report.rate_limited_share() < 0.01, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn limits_set_by_hand_keep_the_same_bounds() {
    let report = run_quota(QuotaSim {
        learn: false,
        ..QuotaSim::default()
    })
    .await;
    assert!(report.quota_used() >= 0.90, "{report:?}");
    assert!(report.rate_limited_share() < 0.01, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn three_replicas_sharing_a_store_stay_within_one_quota() {
    let report = run_quota(QuotaSim {
        replicas: 3,
        workers: 7,
        shared: true,
        learn: false,
        ..QuotaSim::default()
    })
    .await;
    assert!(report.sent_over_quota <= 1.05, "{report:?}");
    assert!(report.quota_used() >= 0.90, "{report:?}");
    assert!(report.rate_limited_share() < 0.01, "{report:?}");
}

/// Exactly one quota's requests go out, whichever replica asks (no refill to speak of: 10
/// requests an hour).
#[tokio::test(start_paused = true)]
async fn a_shared_store_grants_one_quota_to_all_replicas_together() {
    let store = MemoryStore::new();
    let replicas: Vec<Quota<&str>> = (0..3)
        .map(|_| {
            Quota::builder("shared")
                .window(Duration::from_secs(3600))
                .requests_per_window(10)
                .max_wait(Duration::ZERO)
                .shared_state(store.clone())
                .build()
                .expect("a valid quota")
        })
        .collect();
    let mut granted = 0;
    for round in 0..10 {
        for quota in &replicas {
            match quota.acquire(&"gpt", 0).await {
                Ok(_) => granted += 1,
                Err(e) => {
                    assert_eq!(e.budget(), Exhausted::Requests, "round {round}");
                    assert!(e.retry_after() > Duration::from_secs(300), "{e}");
                }
            }
        }
    }
    assert_eq!(granted, 10);
}

fn phase_bounds(sim: &CapacitySim, i: usize) -> (f64, f64, usize) {
    let (from, capacity) = sim.phases[i];
    let to = sim.phases.get(i + 1).map_or(sim.seconds, |p| p.0);
    (from as f64, to as f64, capacity)
}

/// The best throughput of a fixed limit in each phase, over limits around each capacity.
async fn best_fixed(sim: &CapacitySim) -> Vec<f64> {
    let mut best = vec![0.0f64; sim.phases.len()];
    for limit in [20, 22, 40, 44, 80, 88] {
        let report = run_capacity(CapacitySim {
            algorithm: None,
            fixed: limit,
            ..sim.clone()
        })
        .await;
        for (b, t) in best.iter_mut().zip(report.throughput) {
            *b = b.max(t);
        }
    }
    best
}

async fn adaptive_limit_settles_and_keeps_throughput(sim: CapacitySim) {
    let report = run_capacity(sim.clone()).await;
    let best = best_fixed(&sim).await;
    for (i, best) in best.iter().enumerate() {
        let (from, to, capacity) = phase_bounds(&sim, i);
        let (lo, hi) = (
            (capacity as f64 * 0.8) as u32,
            (capacity as f64 * 1.2) as u32,
        );
        let settled = report.settled_at(from, to, lo, hi);
        assert!(
            settled.is_some_and(|t| t <= from + 10.0),
            "phase {i} (capacity {capacity}): settled at {settled:?}, limit range after 10 s {:?}",
            report.range(from + 10.0, to)
        );
        assert!(
            report.throughput[i] >= 0.9 * best,
            "phase {i}: {} calls/s, best fixed {best}",
            report.throughput[i]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn gradient_limit_follows_capacity_steps_within_ten_seconds() {
    adaptive_limit_settles_and_keeps_throughput(CapacitySim::default()).await;
}

#[tokio::test(start_paused = true)]
async fn aimd_limit_follows_capacity_steps_within_ten_seconds() {
    adaptive_limit_settles_and_keeps_throughput(CapacitySim::aimd()).await;
}

/// Answers from 100 to 1,000 tokens (0.5 s to 5 s) at a constant time to first token: the
/// upstream is not loaded, and the limit must not shrink.
#[tokio::test(start_paused = true)]
async fn limit_does_not_shrink_when_answer_lengths_vary_tenfold() {
    for algorithm in [
        LimitAlgorithm::default(),
        LimitAlgorithm::Aimd(Aimd::default()),
    ] {
        let sim = CapacitySim {
            phases: vec![(0, 10_000)],
            seconds: 120,
            workers: 30,
            algorithm: Some(algorithm),
            initial_limit: 40,
            answer_tokens: (100, 1_000),
            ..CapacitySim::default()
        };
        let report = run_capacity(sim).await;
        let (min, _) = report.range(0.0, 120.0);
        assert!(min >= 40, "{algorithm:?}: the limit fell to {min}");
    }
}

/// Through the layer: calls that do not fit now wait their turn in arrival order, and one
/// dropped while waiting gives its share back to the next.
#[tokio::test(start_paused = true)]
async fn layer_calls_wait_in_order_and_a_dropped_wait_gives_back() {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};
    use tokio::time::Instant;
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

    let quota = Quota::<&str>::builder("layer")
        .requests_per_window(60) // one a second after the first 60
        .max_wait(Duration::from_secs(10))
        .build()
        .expect("a valid quota");
    let start = Instant::now();
    let mut svc = ServiceBuilder::new()
        .layer(quota.layer(|_: &u32| "k"))
        .service(service_fn(move |n: u32| async move {
            Ok::<_, std::io::Error>((n, start.elapsed()))
        }));
    for n in 0..60 {
        svc.ready()
            .await
            .expect("ready")
            .call(n)
            .await
            .expect("fits");
    }
    let first = svc.ready().await.expect("ready").call(60);
    let second = svc.ready().await.expect("ready").call(61);
    {
        // Polled once (it waits 3 s), then dropped: its request goes back.
        let mut third = pin!(svc.ready().await.expect("ready").call(62));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(third.as_mut().poll(&mut cx).is_pending());
    }
    let fourth = svc.ready().await.expect("ready").call(63);
    let (a, b, d) = tokio::join!(first, second, fourth);
    assert_eq!(a.expect("fits").1, Duration::from_secs(1));
    assert_eq!(b.expect("fits").1, Duration::from_secs(2));
    // The dropped call's turn (3 s) went to the next one.
    assert_eq!(d.expect("fits").1, Duration::from_secs(3));
}

/// A store that fails does not fail calls: the replica decides on its local budgets.
#[tokio::test(start_paused = true)]
async fn a_failing_store_falls_back_to_local_budgets() {
    let store = MemoryStore::new();
    let quota = Quota::<&str>::builder("fallback")
        .requests_per_window(2)
        .max_wait(Duration::ZERO)
        .shared_state(store.clone())
        .build()
        .expect("a valid quota");
    store.set_available(false);
    let _a = quota.acquire(&"k", 0).await.expect("local budget");
    let _b = quota.acquire(&"k", 0).await.expect("local budget");
    let err = quota
        .acquire(&"k", 0)
        .await
        .expect_err("local budget spent");
    assert_eq!(err.budget(), Exhausted::Requests);
}
