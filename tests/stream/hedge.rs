//! Hedging the first token: a second attempt after a delay, the first token wins, the loser is
//! dropped, within a budget, never against an open breaker or a non-idempotent request.

use crate::upstream::{Plan, Rng, Upstream, counting_breaker, quantile, read};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_breaker::stream::{Hedge, HedgeDelay, StreamGuardLayer};

const CALLS: usize = 2_000;

fn guarded<Req: Send + 'static>(
    upstream: &Upstream,
) -> impl Service<
    Req,
    Response = http::Response<tower_breaker::stream::GuardedBody<crate::upstream::Body>>,
    Error = BoxError,
    Future: Send,
> + Clone
+ use<Req> {
    let guard = StreamGuardLayer::builder()
        .first_token_timeout(Duration::from_secs(30))
        .idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    ServiceBuilder::new()
        .layer(guard)
        .service(upstream.service::<Req>())
}

/// 95 % of first tokens in 100 to 300 ms, 5 % in 3 to 5 s.
fn slow_tail(seed: u64) -> Upstream {
    let mut rng = Rng::new(seed);
    Upstream::new("llm", move || {
        let ttft = if rng.unit() < 0.05 {
            rng.millis(3_000, 5_000)
        } else {
            rng.millis(100, 300)
        };
        Plan::ok(ttft)
    })
}

async fn p99_ttft<S>(mut service: S) -> Duration
where
    S: Service<
            u64,
            Response = http::Response<tower_breaker::stream::GuardedBody<crate::upstream::Body>>,
        >,
    S::Error: std::fmt::Debug,
{
    let mut ttfts = Vec::new();
    for call in 0..CALLS as u64 {
        let start = Instant::now();
        let response = service.ready().await.unwrap().call(call).await.unwrap();
        ttfts.push(start.elapsed());
        let read = read(response.into_body()).await;
        assert!(read.error.is_none());
        // The winner's stream only, whole: every token once, in order, from one attempt.
        read.one_attempt();
        assert_eq!(read.tokens.len(), 10);
    }
    quantile(&ttfts, 0.99)
}

#[tokio::test(start_paused = true)]
async fn hedging_a_slow_tail_halves_p99_ttft_with_at_most_ten_percent_extra_requests() {
    let plain = slow_tail(7);
    let baseline = p99_ttft(guarded::<u64>(&plain)).await;

    let upstream = slow_tail(7);
    let hedge = Hedge::builder()
        .delay(HedgeDelay::percentile(
            0.95,
            Duration::from_millis(50),
            Duration::from_secs(2),
        ))
        .budget(0.1)
        .hedge_non_idempotent(true)
        .build(guarded::<u64>(&upstream))
        .unwrap();
    let hedged = p99_ttft(hedge.clone()).await;

    let stats = hedge.stats();
    let extra = upstream.calls() - CALLS;
    assert_eq!(extra as u64, stats.hedges);
    assert!(
        hedged * 2 <= baseline,
        "p99 {hedged:?} hedged, {baseline:?} without"
    );
    assert!(
        extra * 10 <= CALLS,
        "{extra} extra requests for {CALLS} calls"
    );
    assert!(stats.hedge_wins > 0 && stats.hedge_wins <= stats.hedges);
    // Every loser was dropped.
    assert_eq!(upstream.live.get(), 0);
    println!(
        "p99 TTFT: {baseline:?} -> {hedged:?}; hedges {}/{CALLS}; {stats:?}",
        stats.hedges
    );
}

#[tokio::test(start_paused = true)]
async fn the_hedge_budget_holds_within_one_percent() {
    for budget in [0.02, 0.05, 0.2] {
        // Every call is slow: each would hedge if the budget let it.
        let upstream = Upstream::new("llm", || Plan::ok(Duration::from_secs(1)));
        let mut hedge = Hedge::builder()
            .delay(HedgeDelay::fixed(Duration::from_millis(100)))
            .budget(budget)
            .hedge_non_idempotent(true)
            .build(guarded::<u64>(&upstream))
            .unwrap();
        let calls = 10_000u64;
        for call in 0..calls {
            let response = hedge.ready().await.unwrap().call(call).await.unwrap();
            drop(response);
        }
        let stats = hedge.stats();
        let share = stats.hedges as f64 / calls as f64;
        assert!((share - budget).abs() <= 0.01, "budget {budget}: {share}");
        assert_eq!(stats.hedges + stats.declined_budget, calls);
    }
}

#[tokio::test(start_paused = true)]
async fn no_hedge_while_the_target_breaker_rejects_calls() {
    let upstream = Upstream::new("llm", || Plan::ok(Duration::from_secs(1)));
    let backup = Upstream::new("backup", || Plan::ok(Duration::from_millis(10)));
    let breaker = counting_breaker("backup");
    let mut hedge = Hedge::builder()
        .delay(HedgeDelay::fixed(Duration::from_millis(100)))
        .target_breaker(breaker.clone())
        .hedge_non_idempotent(true)
        .build_with_backup(
            tower::util::BoxCloneService::new(guarded::<u64>(&upstream)),
            tower::util::BoxCloneService::new(guarded::<u64>(&backup)),
        )
        .unwrap();
    breaker.force_open();
    let start = Instant::now();
    let response = hedge.ready().await.unwrap().call(0).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(read(response.into_body()).await.one_attempt(), "llm");
    assert_eq!((backup.calls(), hedge.stats().declined_breaker), (0, 1));

    // Closed again: the hedge goes to the backup, which wins.
    breaker.reset();
    let start = Instant::now();
    let response = hedge.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(110));
    assert_eq!(read(response.into_body()).await.one_attempt(), "backup");
    assert_eq!(hedge.stats().hedge_wins, 1);
    assert_eq!(upstream.live.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_non_idempotent_request_is_never_hedged_unless_allowed() {
    let upstream = Upstream::new("llm", || Plan::ok(Duration::from_secs(1)));
    let post = || {
        http::Request::post("/v1/chat/completions")
            .body(String::new())
            .unwrap()
    };
    let mut hedge = Hedge::builder()
        .delay(HedgeDelay::fixed(Duration::from_millis(100)))
        .http_idempotency()
        .build(guarded::<http::Request<String>>(&upstream))
        .unwrap();
    hedge.ready().await.unwrap().call(post()).await.unwrap();
    assert_eq!(upstream.calls(), 1);
    assert_eq!(hedge.stats().declined_not_idempotent, 1);

    // With an `Idempotency-Key`, the same POST may be sent twice.
    let mut keyed = post();
    keyed
        .headers_mut()
        .insert("idempotency-key", http::HeaderValue::from_static("k-1"));
    hedge.ready().await.unwrap().call(keyed).await.unwrap();
    assert_eq!(upstream.calls(), 3);

    // Or when told so.
    let mut forced = Hedge::builder()
        .delay(HedgeDelay::fixed(Duration::from_millis(100)))
        .hedge_non_idempotent(true)
        .build(guarded::<http::Request<String>>(&upstream))
        .unwrap();
    forced.ready().await.unwrap().call(post()).await.unwrap();
    assert_eq!(upstream.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_that_fails_before_the_delay_is_not_hedged() {
    let mut hedge = Hedge::builder()
        .delay(HedgeDelay::fixed(Duration::from_millis(100)))
        .hedge_non_idempotent(true)
        .build(tower::service_fn(|_: u64| async {
            Err::<http::Response<String>, BoxError>("503".into())
        }))
        .unwrap();
    let err = hedge.ready().await.unwrap().call(0).await.unwrap_err();
    assert_eq!(err.to_string(), "503");
    assert_eq!(hedge.stats().hedges, 0);
}

#[test]
fn hedge_settings_out_of_range_are_config_errors() {
    let svc = tower::service_fn(|_: u64| async { Ok::<_, BoxError>(()) });
    let err = Hedge::<(), u64>::builder().build(svc).unwrap_err();
    assert_eq!(err.field(), "delay");
    let err = Hedge::<(), u64>::builder()
        .delay(HedgeDelay::fixed(Duration::ZERO))
        .budget(1.5)
        .build(svc)
        .unwrap_err();
    assert_eq!(err.field(), "budget");
    let err = Hedge::<(), u64>::builder()
        .delay(HedgeDelay::percentile(
            0.9,
            Duration::from_secs(3),
            Duration::from_secs(1),
        ))
        .build(svc)
        .unwrap_err();
    assert_eq!(err.field(), "delay.floor");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_attempt_counts_for_nothing_on_its_breaker() {
    // The first attempt is slow, the hedge fast: the first is dropped before its first token.
    let mut slow_first = true;
    let upstream = Upstream::new("llm", move || {
        let ttft = if std::mem::take(&mut slow_first) {
            5_000
        } else {
            100
        };
        Plan::ok(Duration::from_millis(ttft))
    });
    let breaker = counting_breaker("llm");
    let guarded = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .layer(
            StreamGuardLayer::builder()
                .first_token_timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        )
        .service(upstream.service::<u64>());
    let mut hedge = Hedge::builder()
        .delay(HedgeDelay::fixed(Duration::from_millis(200)))
        .target_breaker(breaker.clone())
        .hedge_non_idempotent(true)
        .build(guarded)
        .unwrap();
    let response = hedge.ready().await.unwrap().call(0).await.unwrap();
    let read = read(response.into_body()).await;
    assert!(read.error.is_none());
    assert_eq!(read.tokens[0].1, "llm#2");
    let metrics = breaker.metrics();
    assert_eq!(
        (
            metrics.successful_calls,
            metrics.failed_calls,
            metrics.ignored_calls
        ),
        (1, 0, 1)
    );
    assert_eq!(upstream.live.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_never_hides_a_failure_while_its_backup_is_not_ready() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tower::util::BoxCloneSyncService;
    type Svc = BoxCloneSyncService<u64, &'static str, BoxError>;
    // Request 0 fails after 500 ms; request 1 never answers (it holds the backup's only slot).
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let upstream = tower::service_fn(move |req: u64| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            if req == 1 {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            Err::<&'static str, BoxError>("503".into())
        }
    });
    let primary: Svc = BoxCloneSyncService::new(upstream.clone());
    let backup: Svc = BoxCloneSyncService::new(tower::limit::ConcurrencyLimit::new(upstream, 1));
    let mut filler = backup.clone();
    let busy = filler.ready().await.unwrap().call(1);

    let mut hedge = Hedge::builder()
        .delay(HedgeDelay::fixed(Duration::from_millis(100)))
        .hedge_non_idempotent(true)
        .build_with_backup(primary, backup)
        .unwrap();
    let start = Instant::now();
    let called = hedge.ready().await.unwrap().call(0);
    let result = tokio::time::timeout(Duration::from_secs(60), called).await;
    let err = result
        .expect("the failure must not wait for the backup")
        .unwrap_err();
    assert_eq!(err.to_string(), "503");
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    // The backup's slot frees up later: still no hedge goes out for the finished call.
    drop(busy);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hedge.stats().hedges, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
