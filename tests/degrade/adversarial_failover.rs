//! Adversarial tests of `failover`, from its public docs: no provider at all, per-request
//! lists with names no provider has, the report's order, the future dropped after every poll
//! while a provider holds a concurrency permit, and many concurrent calls on paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_test::task;
use tower::util::{BoxCloneService, BoxCloneSyncService};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
use tower_breaker::failover::{AllProvidersFailed, Failover};

type Svc = BoxCloneService<String, String, BoxError>;

fn down(name: &'static str) -> Svc {
    BoxCloneService::new(service_fn(move |_: String| async move {
        Err::<String, BoxError>(format!("{name} is down").into())
    }))
}

fn up(name: &'static str) -> Svc {
    BoxCloneService::new(service_fn(move |q: String| async move {
        Ok::<_, BoxError>(format!("{name}: {q}"))
    }))
}

#[tokio::test]
async fn no_provider_or_an_empty_list_is_an_error_never_a_panic_or_a_hang() {
    let mut none: Failover<Svc, String, String> = Failover::builder().build();
    assert!(none.names().is_empty() && none.available().is_empty());
    let err = none
        .ready()
        .await
        .unwrap()
        .call("hi".into())
        .await
        .unwrap_err();
    let all = err
        .downcast_ref::<AllProvidersFailed>()
        .expect("AllProvidersFailed");
    assert!(all.failures().is_empty());
    assert_eq!(all.retry_after(), None);

    let mut empty_list = Failover::builder()
        .provider("a", None, up("a"))
        .providers_for(|_: &String| Some(Vec::new()))
        .build();
    let err = empty_list
        .ready()
        .await
        .unwrap()
        .call("hi".into())
        .await
        .unwrap_err();
    assert!(err.is::<AllProvidersFailed>(), "{err}");
}

#[tokio::test]
async fn every_provider_in_a_requests_list_is_reported_in_the_lists_order() {
    // A name no provider has sits between two that fail.
    let mut failover = Failover::builder()
        .provider("a", None, down("a"))
        .provider("b", None, down("b"))
        .providers_for(|_: &String| Some(vec![Arc::from("a"), Arc::from("nope"), Arc::from("b")]))
        .build();
    let err = failover
        .ready()
        .await
        .unwrap()
        .call("hi".into())
        .await
        .unwrap_err();
    let all = err.downcast_ref::<AllProvidersFailed>().unwrap();
    let order: Vec<&str> = all.failures().iter().map(|f| &*f.provider).collect();
    assert_eq!(order, ["a", "nope", "b"], "{err}");
    assert!(all.failures()[1].skipped);
}

#[tokio::test(start_paused = true)]
async fn a_failover_dropped_after_any_poll_returns_the_providers_permits() {
    // The primary holds one concurrency permit for 100 ms, then fails; the backup answers.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let slow_down = ServiceBuilder::new()
        .concurrency_limit(1)
        .service(service_fn(move |_: String| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err::<String, BoxError>("503".into())
            }
        }));
    let mut failover = Failover::builder()
        .provider("primary", None, BoxCloneService::new(slow_down))
        .provider("backup", None, up("backup"))
        .build();
    for polls in 1..5 {
        let mut future = task::spawn(failover.ready().await.unwrap().call("hi".into()));
        for _ in 0..polls {
            if future.poll().is_ready() {
                break;
            }
            tokio::time::advance(Duration::from_millis(40)).await;
        }
        drop(future);
        // The permit came back: the next call reaches the primary and then the backup.
        let before = calls.load(Ordering::SeqCst);
        let answer = tokio::time::timeout(
            Duration::from_secs(1),
            failover.ready().await.unwrap().call("again".into()),
        )
        .await
        .expect("the primary's permit was returned")
        .unwrap();
        assert_eq!(answer, "backup: again");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before + 1,
            "after {polls} polls"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn many_concurrent_calls_open_the_primary_once_and_all_get_an_answer() {
    let breaker = CircuitBreaker::builder("primary")
        .sliding_window(SlidingWindow::consecutive(5))
        .wait_in_open(Duration::from_secs(60))
        .build()
        .unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let counted = reached.clone();
    let primary = ServiceBuilder::new()
        .layer(breaker.layer())
        .service(service_fn(move |_: String| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Err::<String, BoxError>("503".into())
            }
        }));
    // `BoxCloneSyncService`, as the module docs say: the failover is then `Send`, for spawn.
    let backup = BoxCloneSyncService::new(service_fn(|q: String| async move {
        Ok::<_, BoxError>(format!("backup: {q}"))
    }));
    let failover = Failover::builder()
        .provider(
            "primary",
            Some(breaker.clone()),
            BoxCloneSyncService::new(primary),
        )
        .provider("backup", None, backup)
        .build();
    // Five waves of 50 calls, 20 ms apart: once five failures are in, later waves skip it.
    let mut tasks = tokio::task::JoinSet::new();
    for wave in 0..5 {
        for i in 0..50 {
            let mut f = failover.clone();
            tasks.spawn(async move {
                let q = format!("{wave}.{i}");
                f.ready().await?.call(q).await
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut answers = 0;
    while let Some(result) = tasks.join_next().await {
        assert!(result.unwrap().unwrap().starts_with("backup: "));
        answers += 1;
    }
    assert_eq!(answers, 250);
    // Only the first wave reached the primary: the breaker opened within it.
    assert_eq!(reached.load(Ordering::SeqCst), 50);
    assert_eq!(failover.available(), vec!["backup"]);
}
