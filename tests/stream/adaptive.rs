//! The adaptive bulkhead reads the guard's deadlines as congestion, as it reads a timeout.

use crate::upstream::{Fault, Plan, Upstream};
use std::time::Duration;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_breaker::bulkhead::{
    AdaptiveBulkhead, Aimd, ClassifySignal, DefaultSignals, LimitAlgorithm, Signal,
};
use tower_breaker::stream::{StreamGuardLayer, StreamIdle};

#[tokio::test(start_paused = true)]
async fn a_provider_that_stalls_before_its_first_token_lowers_the_adaptive_limit() {
    let bulkhead = AdaptiveBulkhead::builder("llm")
        .algorithm(LimitAlgorithm::Aimd(Aimd::default()))
        .initial_limit(10)
        .limits(1, 100)
        .build()
        .unwrap();
    let stalled = Upstream::new("p", || Plan {
        fault: Fault::StallBeforeFirstToken,
        ..Plan::ok(Duration::ZERO)
    });
    let mut client = ServiceBuilder::new()
        .layer(bulkhead.layer())
        .layer(
            StreamGuardLayer::builder()
                .first_token_timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
        )
        .service(stalled.service::<()>());
    let err = client.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(
        err.is::<tower_breaker::stream::FirstTokenTimeout>(),
        "{err}"
    );
    assert_eq!(bulkhead.limit(), 9);
    assert_eq!(bulkhead.metrics().active, 0);
}

#[tokio::test(start_paused = true)]
async fn a_stream_gone_idle_is_congestion_for_the_default_signals() {
    let idles = Upstream::new("p", || Plan {
        fault: Fault::IdleAfter(2),
        ..Plan::ok(Duration::from_millis(100))
    });
    let mut client = ServiceBuilder::new()
        .layer(
            StreamGuardLayer::builder()
                .idle_timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .service(idles.service::<()>());
    let response = client.ready().await.unwrap().call(()).await.unwrap();
    let idle: BoxError = crate::upstream::read(response.into_body())
        .await
        .error
        .expect("the stream goes idle");
    assert!(idle.is::<StreamIdle>(), "{idle}");
    assert_eq!(
        ClassifySignal::<()>::classify(&DefaultSignals, Err(&idle)),
        Signal::Congestion
    );
}
