use crate::upstream::{Upstream, client};
use std::time::Duration;
use tower::util::BoxCloneService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
use tower_breaker::failover::{AllProvidersFailed, Failover};
use tower_breaker::fallback::{FallbackLayer, FallbackServed, MarkExtension, service_unavailable};

fn breaker(name: &str, wait: Duration) -> CircuitBreaker {
    CircuitBreaker::builder(name)
        .sliding_window(SlidingWindow::consecutive(3))
        .wait_in_open(wait)
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_open_provider_is_skipped_until_its_probe() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    a.set_down(true);
    let (ba, bb) = (
        breaker("a", Duration::from_millis(300)),
        breaker("b", Duration::from_secs(60)),
    );
    let mut failover = Failover::builder()
        .provider("a", Some(ba.clone()), client(&a, &ba))
        .provider("b", Some(bb.clone()), client(&b, &bb))
        .build();
    for _ in 0..20 {
        let answer = failover.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(answer, "b answered");
    }
    // A saw the three calls that tripped its breaker, and nothing after.
    assert_eq!(a.hits(), 3);
    assert_eq!(b.hits(), 20);
    assert_eq!(ba.state(), CircuitState::Open);
    assert_eq!(failover.available(), vec!["b"]);

    // After its wait, A gets exactly one probe; it fails, so B answers and A reopens.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(failover.available(), vec!["a", "b"]);
    assert_eq!(
        failover.ready().await.unwrap().call(()).await.unwrap(),
        "b answered"
    );
    assert_eq!(a.hits(), 4);
    assert_eq!(ba.state(), CircuitState::Open);

    // A recovers: its next probe closes its breaker and it takes the traffic again.
    a.set_down(false);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        failover.ready().await.unwrap().call(()).await.unwrap(),
        "a answered"
    );
    assert_eq!(ba.state(), CircuitState::Closed);
    assert_eq!(b.hits(), 21);
}

#[tokio::test]
async fn when_every_provider_is_down_the_error_lists_each_and_the_fallback_answers_503() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    a.set_down(true);
    b.set_down(true);
    let (ba, bb) = (
        breaker("a", Duration::from_secs(30)),
        breaker("b", Duration::from_secs(45)),
    );
    let failover = Failover::builder()
        .provider("a", Some(ba.clone()), client(&a, &ba))
        .provider("b", Some(bb.clone()), client(&b, &bb))
        .build();

    let mut raw = failover.clone();
    let err = raw.ready().await.unwrap().call(()).await.unwrap_err();
    let all = err
        .downcast_ref::<AllProvidersFailed>()
        .expect("AllProvidersFailed");
    assert_eq!(all.failures().len(), 2);
    assert!(all.failures().iter().all(|f| !f.skipped));
    assert!(
        err.to_string().contains("a failed: upstream answered 503"),
        "{err}"
    );

    // An HTTP front: the failover's answer as a response, and a 503 fallback on failure.
    let http_front = ServiceBuilder::new()
        .map_response(|body: String| http::Response::new(body))
        .service(failover);
    let mut svc = ServiceBuilder::new()
        .layer(
            FallbackLayer::from_fn(service_unavailable::<http::Response<String>>)
                .mark(MarkExtension),
        )
        .service(http_front);
    for _ in 0..2 {
        let res = svc.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(res.status(), 503);
    }
    // Both breakers are open now: no network call, and Retry-After is the sooner probe.
    let hits = (a.hits(), b.hits());
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!((a.hits(), b.hits()), hits);
    assert_eq!(res.status(), 503);
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((29..=31).contains(&retry_after), "{retry_after}");
    let served = res
        .extensions()
        .get::<FallbackServed>()
        .expect("marked as a fallback");
    assert!(served.reason.contains("a skipped"), "{}", served.reason);
}

#[tokio::test]
async fn a_cached_answer_is_served_while_open_and_not_after_its_ttl() {
    let a = Upstream::start("a").await;
    let ba = breaker("a", Duration::from_secs(60));
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::cache(
            |_: &()| Some("greeting"),
            Duration::from_secs(1),
            100,
        ))
        .service(client(&a, &ba));
    assert_eq!(
        svc.ready().await.unwrap().call(()).await.unwrap(),
        "a answered"
    );
    a.set_down(true);
    for _ in 0..5 {
        assert_eq!(
            svc.ready().await.unwrap().call(()).await.unwrap(),
            "a answered"
        );
    }
    assert_eq!(ba.state(), CircuitState::Open);
    assert_eq!(a.hits(), 4, "one good call, three that tripped the breaker");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.to_string().contains("is open"), "{err}");
}

#[tokio::test]
async fn a_backup_service_answers_with_a_clone_of_the_request() {
    let primary =
        service_fn(|q: String| async move { Err::<String, BoxError>(format!("no {q}").into()) });
    let backup = service_fn(|q: String| async move { Ok::<_, BoxError>(format!("backup {q}")) });
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::backup(BoxCloneService::new(backup)))
        .service(primary);
    assert_eq!(
        svc.ready().await.unwrap().call("tea".into()).await.unwrap(),
        "backup tea"
    );
}

#[tokio::test(start_paused = true)]
async fn the_cache_stays_within_its_bound_and_keeps_the_newest() {
    let layer = FallbackLayer::cache(|k: &u32| Some(*k), Duration::from_secs(600), 8);
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(
            |k: u32| async move { Ok::<_, BoxError>(k * 10) },
        ));
    for k in 0..100u32 {
        tokio::time::advance(Duration::from_millis(1)).await;
        svc.ready().await.unwrap().call(k).await.unwrap();
        assert!(
            layer.source().len() <= 8,
            "{} entries",
            layer.source().len()
        );
    }
    // The newest answer is still there to serve.
    let mut failing = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|_: u32| async {
            Err::<u32, BoxError>("down".into())
        }));
    assert_eq!(failing.ready().await.unwrap().call(99).await.unwrap(), 990);
}
