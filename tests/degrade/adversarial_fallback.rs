//! Adversarial tests of `fallback`, from its public docs: the cache's time to live and size at
//! their exact bounds, a cache of one entry, and `service_unavailable` for an open breaker
//! whose wait is below a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
use tower_breaker::fallback::{FallbackLayer, service_unavailable};

/// A service that answers `answer to {q}`, or fails while `down` is set.
fn flaky(
    down: Arc<AtomicBool>,
) -> impl Service<String, Response = String, Error = BoxError, Future: Send> + Clone {
    service_fn(move |q: String| {
        let fail = down.load(Ordering::SeqCst);
        async move {
            if fail {
                Err::<String, BoxError>("down".into())
            } else {
                Ok(format!("answer to {q}"))
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_cached_answer_is_served_until_exactly_its_time_to_live() {
    let down = Arc::new(AtomicBool::new(false));
    let ttl = Duration::from_secs(10);
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::cache(|q: &String| Some(q.clone()), ttl, 10))
        .service(flaky(down.clone()));
    svc.ready().await.unwrap().call("q".into()).await.unwrap();
    down.store(true, Ordering::SeqCst);
    tokio::time::advance(ttl - Duration::from_millis(1)).await;
    let served = svc.ready().await.unwrap().call("q".into()).await.unwrap();
    assert_eq!(served, "answer to q");
    tokio::time::advance(Duration::from_millis(1)).await;
    // "served while it is younger than its time to live": at the bound it is not.
    assert!(svc.ready().await.unwrap().call("q".into()).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_cache_of_n_entries_keeps_exactly_n_and_then_drops_the_oldest() {
    for n in [1usize, 2, 8, 100] {
        let down = Arc::new(AtomicBool::new(false));
        let layer = FallbackLayer::cache(|q: &String| Some(q.clone()), Duration::from_secs(600), n);
        let cache = layer.source().clone();
        let mut svc = ServiceBuilder::new()
            .layer(layer)
            .service(flaky(down.clone()));
        for i in 0..n {
            svc.ready()
                .await
                .unwrap()
                .call(format!("k{i}"))
                .await
                .unwrap();
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        assert_eq!(cache.len(), n, "n {n}");
        // One more: the bound holds, and the oldest is the one gone.
        svc.ready().await.unwrap().call("new".into()).await.unwrap();
        assert!(cache.len() <= n, "n {n}: {}", cache.len());
        down.store(true, Ordering::SeqCst);
        let newest = svc.ready().await.unwrap().call("new".into()).await;
        assert_eq!(newest.unwrap(), "answer to new", "n {n}");
        if n > 1 {
            let second = svc.ready().await.unwrap().call(format!("k{}", n - 1)).await;
            assert!(second.is_ok(), "n {n}: the newest old entry stays");
        }
        assert!(
            svc.ready().await.unwrap().call("k0".into()).await.is_err(),
            "n {n}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn service_unavailable_for_an_open_breaker_never_says_retry_after_zero() {
    let breaker = CircuitBreaker::builder("llm")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(Duration::from_millis(1_500))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::from_fn(service_unavailable))
        .layer(breaker.layer())
        .service(service_fn(|_: ()| async {
            Err::<http::Response<String>, BoxError>("503".into())
        }));
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(res.status(), 503);
    // Open for 1.5 s: rounded up to 2, never down to 1.
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(res.headers()["retry-after"], "2");
    // 1 ms before the probe: still at least 1.
    tokio::time::advance(Duration::from_millis(1_499)).await;
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(res.headers()["retry-after"], "1");
}
