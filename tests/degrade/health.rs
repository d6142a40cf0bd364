use std::time::Duration;
use tower_breaker::bulkhead::Bulkhead;
use tower_breaker::circuit_breaker::CircuitBreaker;
use tower_breaker::health::{HealthRegistry, HealthReport, HealthStatus};

#[tokio::test]
async fn the_health_endpoint_answers_200_then_503_as_breakers_open() {
    let a = CircuitBreaker::builder("openai").build().unwrap();
    let b = CircuitBreaker::builder("anthropic").build().unwrap();
    let c = CircuitBreaker::builder("mistral").build().unwrap();
    let bulkhead = Bulkhead::builder("chat")
        .max_concurrent(4)
        .max_queue(0)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let registry = HealthRegistry::new();
    registry
        .register_breaker(&a)
        .register_breaker(&b)
        .register_breaker(&c);
    registry.register_bulkhead(&bulkhead);

    let app: axum::Router = registry.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let res = http.get(url).send().await.unwrap();
            let status = res.status().as_u16();
            let report: HealthReport = serde_json::from_str(&res.text().await.unwrap()).unwrap();
            (status, report)
        }
    };

    let (status, report) = get(url.clone()).await;
    assert_eq!((status, report.status), (200, HealthStatus::Healthy));
    assert_eq!(report.components.len(), 4);

    a.force_open();
    let (status, report) = get(url.clone()).await;
    assert_eq!((status, report.status), (200, HealthStatus::Degraded));
    assert_eq!(report.open_breakers, 1);

    b.force_open();
    let (status, report) = get(url.clone()).await;
    assert_eq!((status, report.status), (503, HealthStatus::Unhealthy));
    assert_eq!((report.open_breakers, report.breakers), (2, 3));
    let openai = report
        .components
        .iter()
        .find(|c| c.name == "openai")
        .unwrap();
    assert_eq!(openai.state, "forced_open");

    a.reset();
    b.reset();
    let (status, _) = get(url).await;
    assert_eq!(status, 200);
}

#[test]
fn the_rule_is_configurable() {
    let a = CircuitBreaker::builder("a").build().unwrap();
    let b = CircuitBreaker::builder("b").build().unwrap();
    let registry = HealthRegistry::new();
    registry
        .register_breaker(&a)
        .register_breaker(&b)
        .unhealthy_ratio(1.0);
    a.force_open();
    assert_eq!(registry.report().status, HealthStatus::Degraded);
    b.force_open();
    assert_eq!(registry.report().status, HealthStatus::Unhealthy);
    registry.rule(|_| HealthStatus::Healthy);
    assert_eq!(registry.report().status, HealthStatus::Healthy);
}
