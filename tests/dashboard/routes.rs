//! The routes, the JSON snapshot of every kind of component, the settings.

use super::{call, one_failure_in_four};
use axum::Router;
use axum::http::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;
use tower::{BoxError, Service, ServiceExt, service_fn};
use tower_breaker::bulkhead::{AdaptiveBulkhead, Bulkhead};
use tower_breaker::circuit_breaker::CircuitBreaker;
use tower_breaker::dashboard::Dashboard;
use tower_breaker::keyed::KeyedCircuitBreakers;
use tower_breaker::quota::Quota;
use tower_breaker::stream::{Hedge, HedgeDelay};

#[tokio::test]
async fn every_route_answers_only_get() {
    let app: Router = Router::new().nest("/dashboard", Dashboard::new().router());
    for path in [
        "/dashboard",
        "/dashboard/events",
        "/dashboard/snapshot.json",
    ] {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let (status, _) = call(&app, method.clone(), path).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    let (status, _) = call(&app, Method::GET, "/dashboard/snapshot.json").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_page_is_self_contained() {
    let app: Router = Dashboard::new().router();
    let (status, page) = call(&app, Method::GET, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.starts_with("<!doctype html>"));
    // Nothing fetched from elsewhere: no external script, stylesheet, image or font.
    for needle in [" src=", "<link", "@import", "url(", "https://"] {
        assert!(!page.contains(needle), "the page contains {needle:?}");
    }
    // Names reach the page as text only.
    assert!(!page.contains("innerHTML"));
}

#[tokio::test]
async fn the_snapshot_shows_every_kind_of_component() {
    let openai = one_failure_in_four("openai");
    let slots = Bulkhead::builder("openai")
        .max_concurrent(2)
        .build()
        .unwrap();
    let _held = slots.try_acquire().unwrap();
    let adaptive = AdaptiveBulkhead::builder("chat")
        .initial_limit(7)
        .build()
        .unwrap();
    let models = KeyedCircuitBreakers::<String>::builder(CircuitBreaker::builder("model"))
        .build()
        .unwrap();
    models.get(&"gpt".to_string());
    models.get(&"claude".to_string()).force_open();
    let quota = Quota::<String>::builder("tpm").build().unwrap();
    quota.set_limits(&"gpt".to_string(), Some(60), Some(10_000));
    let mut hedge = Hedge::builder()
        .delay(HedgeDelay::fixed(Duration::from_secs(10)))
        .build(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }))
        .unwrap();
    hedge.ready().await.unwrap().call(1).await.unwrap();

    let dashboard = Dashboard::new();
    dashboard
        .register_breaker(&openai)
        .register_bulkhead(&slots)
        .register_adaptive(&adaptive)
        .register_keyed(&models)
        .register_quota(&quota)
        .register_hedge("chat", &hedge);
    let (status, body) = call(&dashboard.router(), Method::GET, "/snapshot.json").await;
    assert_eq!(status, StatusCode::OK);
    let s: Value = serde_json::from_str(&body).unwrap();

    let b = &s["breakers"][0];
    assert_eq!(b["name"], "openai");
    assert_eq!(b["state"], "closed");
    assert_eq!(b["colour"], "#2e7d32");
    assert_eq!(b["failure_rate"], 0.25);
    assert_eq!(b["calls"], 4);
    assert_eq!(b["failed_calls"], 1);
    assert_eq!(b["rejected"], 0);
    assert_eq!(b["in_state_at_least"], true);
    assert_eq!(b["history"].as_array().unwrap().len(), 1);

    let bh = &s["bulkheads"][0];
    assert_eq!(
        (bh["active"].as_u64(), bh["max_concurrent"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(s["adaptive"][0]["limit"], 7);

    let k = &s["keyed"][0];
    assert_eq!(k["name"], "model");
    assert_eq!(k["keys"], 2);
    assert_eq!(k["states"]["closed"], 1);
    assert_eq!(k["states"]["forced_open"], 1);
    assert_eq!(k["listed"][0]["key"], "claude", "the open key first");

    let q = &s["quotas"][0]["listed"][0];
    assert_eq!(q["key"], "gpt");
    assert_eq!(q["requests_limit"], 60);
    assert_eq!(q["tokens_limit"], 10_000);

    let h = &s["hedges"][0];
    assert_eq!(
        (h["name"].as_str(), h["calls"].as_u64()),
        (Some("chat"), Some(1))
    );
    assert_eq!(h["hedge_rate"], 0.0);
}

#[tokio::test]
async fn a_thousand_keyed_breakers_are_aggregated() {
    let keyed = KeyedCircuitBreakers::<u32>::builder(CircuitBreaker::builder("tenant"))
        .max_keys(2_000)
        .build()
        .unwrap();
    for key in 0..1_000 {
        let breaker = keyed.get(&key);
        if key % 100 == 7 {
            breaker.force_open();
        }
    }
    let dashboard = Dashboard::new();
    dashboard.register_keyed(&keyed);
    let (_, body) = call(&dashboard.router(), Method::GET, "/snapshot.json").await;
    let s: Value = serde_json::from_str(&body).unwrap();
    let k = &s["keyed"][0];
    assert_eq!(k["keys"], 1_000);
    assert_eq!(k["states"]["closed"], 990);
    assert_eq!(k["states"]["forced_open"], 10);
    let listed = k["listed"].as_array().unwrap();
    assert_eq!(listed.len(), 20);
    assert_eq!(k["more"], 980);
    let open: Vec<&str> = listed[..10]
        .iter()
        .map(|b| b["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        open,
        [
            "107", "207", "307", "407", "507", "607", "7", "707", "807", "907"
        ]
    );
    assert!(listed[10..].iter().all(|b| b["state"] == "closed"));
    // What every tick sends stays small whatever the number of keys.
    assert!(body.len() < 8 * 1024, "{} bytes", body.len());
}

#[test]
fn settings_out_of_range_are_config_errors() {
    let field = |r: Result<Dashboard, tower_breaker::ConfigError>| r.unwrap_err().field();
    assert_eq!(
        field(Dashboard::builder().tick(Duration::from_millis(10)).build()),
        "tick"
    );
    assert_eq!(
        field(Dashboard::builder().tick(Duration::from_secs(61)).build()),
        "tick"
    );
    assert_eq!(field(Dashboard::builder().history(0).build()), "history");
    assert_eq!(
        field(Dashboard::builder().max_keys_listed(0).build()),
        "max_keys_listed"
    );
    assert_eq!(
        field(Dashboard::builder().max_clients(0).build()),
        "max_clients"
    );
    assert!(
        Dashboard::builder()
            .tick(Duration::from_millis(50))
            .build()
            .is_ok()
    );
}
