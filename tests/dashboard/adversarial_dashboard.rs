//! Adversarial tests of `dashboard`, from its docs: hostile component names through the JSON
//! and the event stream (read with our own SSE parser), the settings at their exact bounds,
//! the sparkline at one point, and many clients racing for the stream's places.

use super::call;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::time::Duration;
use tower::ServiceExt;
use tower_breaker::circuit_breaker::CircuitBreaker;
use tower_breaker::dashboard::Dashboard;
use tower_breaker::stream::SseParser;

const HOSTILE: [&str; 6] = [
    "</script><script>alert(1)</script>",
    "line\nbreak\r\nand\rreturn",
    "data: [DONE]\n\nevent: snapshot",
    "quote\"back\\slash",
    "\u{2028}\u{2029}\u{0}\u{7f}",
    "",
];

#[tokio::test(start_paused = true)]
async fn hostile_names_come_back_intact_from_the_json_and_the_stream() {
    let dashboard = Dashboard::new();
    for name in HOSTILE {
        dashboard.register_breaker(&CircuitBreaker::builder(name).build().unwrap());
    }
    let names = |json: &Value| -> Vec<String> {
        json["breakers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    };
    let app: Router = dashboard.router();
    let (status, body) = call(&app, Method::GET, "/snapshot.json").await;
    assert_eq!(status, StatusCode::OK);
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(names(&json), HOSTILE);

    // The stream's first event, parsed as a browser would: one `snapshot` event whose data
    // is the same JSON, whatever the names hold.
    let request = Request::get("/events").body(Body::empty()).unwrap();
    let mut body = app.clone().oneshot(request).await.unwrap().into_body();
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    while events.is_empty() {
        let frame = body.frame().await.unwrap().unwrap();
        parser.push(frame.data_ref().unwrap(), |e| events.push(e.clone()));
    }
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "snapshot");
    let json: Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(names(&json), HOSTILE);
}

#[test]
fn the_settings_hold_at_their_exact_bounds() {
    let ms = Duration::from_millis;
    let ok = |b: tower_breaker::dashboard::DashboardBuilder| b.build().is_ok();
    let field = |b: tower_breaker::dashboard::DashboardBuilder| {
        b.build().err().map(|e| e.field().to_string())
    };
    assert!(ok(Dashboard::builder().tick(ms(50))));
    assert!(ok(Dashboard::builder().tick(ms(60_000))));
    assert_eq!(
        field(Dashboard::builder().tick(ms(49))).as_deref(),
        Some("tick")
    );
    assert_eq!(
        field(Dashboard::builder().tick(Duration::MAX)).as_deref(),
        Some("tick")
    );
    assert!(ok(Dashboard::builder().history(1)));
    assert!(ok(Dashboard::builder().history(3_600)));
    assert_eq!(
        field(Dashboard::builder().history(3_601)).as_deref(),
        Some("history")
    );
    assert!(ok(Dashboard::builder().max_clients(10_000)));
    assert_eq!(
        field(Dashboard::builder().max_keys_listed(0)).as_deref(),
        Some("max_keys_listed")
    );
}

#[test]
fn a_tick_past_60_s_by_less_than_a_millisecond_is_refused() {
    // Over the bound, not rounded down into it.
    for over in [Duration::from_nanos(1), Duration::from_micros(999)] {
        let err = Dashboard::builder()
            .tick(Duration::from_secs(60) + over)
            .build()
            .err()
            .map(|e| e.field().to_string());
        assert_eq!(err.as_deref(), Some("tick"), "60 s + {over:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_history_of_one_point_keeps_exactly_one() {
    let dashboard = Dashboard::builder()
        .tick(Duration::from_millis(50))
        .history(1)
        .build()
        .unwrap();
    dashboard.register_breaker(&CircuitBreaker::builder("b").build().unwrap());
    for _ in 0..10 {
        let snapshot = dashboard.snapshot();
        assert_eq!(snapshot.breakers[0].history.len(), 1);
        tokio::time::advance(Duration::from_millis(60)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn many_clients_racing_for_the_stream_get_exactly_max_clients_places() {
    let dashboard = Dashboard::builder().max_clients(5).build().unwrap();
    let app: Router = dashboard.router();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let app = app.clone();
        tasks.spawn(async move {
            let request = Request::get("/events").body(Body::empty()).unwrap();
            app.oneshot(request).await.unwrap()
        });
    }
    let mut open = Vec::new();
    let mut refused = 0;
    while let Some(response) = tasks.join_next().await {
        let response = response.unwrap();
        match response.status() {
            StatusCode::OK => open.push(response),
            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!((open.len(), refused), (5, 35));
    // Every place comes back when its client leaves.
    open.clear();
    let (status, _) = {
        let request = Request::get("/events").body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        (response.status(), ())
    };
    assert_eq!(status, StatusCode::OK);
}
