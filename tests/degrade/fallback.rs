//! The fallback's ready-made 503 (`service_unavailable`): it always says when to come back.

use std::time::Duration;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
use tower_breaker::fallback::{
    DEFAULT_RETRY_AFTER, FallbackLayer, service_unavailable, service_unavailable_after,
};

type Res = http::Response<String>;

fn retry_after(res: &Res) -> Option<u64> {
    res.headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

/// A server error, or any error, gets the fallback (as a retry that gave up would pass on).
fn failed(r: &Result<Res, BoxError>) -> bool {
    r.as_ref().map_or(true, |r| r.status().is_server_error())
}

fn answering(
    status: u16,
    wait: Option<&'static str>,
) -> impl Fn(()) -> std::future::Ready<Result<Res, BoxError>> + Clone {
    move |()| {
        let mut res = http::Response::builder().status(status);
        if let Some(wait) = wait {
            res = res.header("retry-after", wait);
        }
        std::future::ready(Ok(res.body(String::new()).unwrap()))
    }
}

/// The regression: a 503 that a retry gave up on (an `Ok` response, the breaker still closed)
/// and an upstream error that carries no wait used to get a 503 with no `Retry-After`.
#[tokio::test]
async fn a_fallback_503_always_carries_retry_after() {
    let default = DEFAULT_RETRY_AFTER.as_secs();

    // A 503 with no wait of its own: the documented default.
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::from_fn(service_unavailable::<Res>).on(failed))
        .service(service_fn(answering(503, None)));
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(retry_after(&res), Some(default));

    // A 503 with its own wait: the upstream's.
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::from_fn(service_unavailable::<Res>).on(failed))
        .service(service_fn(answering(503, Some("7"))));
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(retry_after(&res), Some(7));

    // An error with no wait (a timeout, a reset connection): the default.
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::from_fn(service_unavailable::<Res>))
        .service(service_fn(|()| async {
            Err::<Res, BoxError>("connection reset".into())
        }));
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(retry_after(&res), Some(default));

    // A configured default, rounded up to whole seconds.
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::from_fn(service_unavailable_after::<Res>(
            Duration::from_millis(1_500),
        )))
        .service(service_fn(|()| async {
            Err::<Res, BoxError>("timed out".into())
        }));
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(retry_after(&res), Some(2));
}

/// A rejection's own wait wins over the default: the breaker's time until its probe.
#[tokio::test(start_paused = true)]
async fn an_open_breaker_gives_its_own_wait() {
    let breaker = CircuitBreaker::builder("a")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(Duration::from_secs(42))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::from_fn(service_unavailable::<Res>))
        .layer(breaker.layer())
        .service(service_fn(|()| async {
            Err::<Res, BoxError>("down".into())
        }));
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(retry_after(&res), Some(DEFAULT_RETRY_AFTER.as_secs()));
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(retry_after(&res), Some(42));
}
