//! The stream of snapshots, under paused time: one event at once, then one per tick; a stuck
//! client holds at most one; clients share one sample; a bounded number of clients.

use super::{call, event_json};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_breaker::circuit_breaker::CircuitBreaker;
use tower_breaker::dashboard::Dashboard;

pub(crate) const TICK: Duration = Duration::from_millis(500);

async fn open_stream(app: &Router) -> Body {
    let request = Request::get("/events").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    response.into_body()
}

async fn next_event(body: &mut Body) -> Value {
    let frame = body.frame().await.unwrap().unwrap();
    event_json(frame.data_ref().unwrap())
}

fn setup() -> (CircuitBreaker, Dashboard, Router) {
    let breaker = CircuitBreaker::builder("openai").build().unwrap();
    let dashboard = Dashboard::builder().tick(TICK).build().unwrap();
    dashboard.register_breaker(&breaker);
    let app = dashboard.router();
    (breaker, dashboard, app)
}

#[tokio::test(start_paused = true)]
async fn the_stream_sends_a_snapshot_at_once_then_one_per_tick() {
    let (_breaker, _dashboard, app) = setup();
    let mut body = open_stream(&app).await;
    let start = Instant::now();
    let first = next_event(&mut body).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(first["breakers"][0]["state"], "closed");
    assert_eq!(first["tick_ms"], 500);
    for n in 1..=3 {
        let event = next_event(&mut body).await;
        assert_eq!(start.elapsed(), TICK * n);
        assert_eq!(event["seq"], first["seq"].as_u64().unwrap() + u64::from(n));
    }
}

#[tokio::test(start_paused = true)]
async fn a_stuck_client_holds_at_most_one_event_and_then_sees_the_state_now() {
    let (breaker, _dashboard, app) = setup();
    let mut body = open_stream(&app).await;
    let first = next_event(&mut body).await;
    // The client takes nothing for 100 ticks; meanwhile the breaker opens.
    breaker.force_open();
    tokio::time::advance(TICK * 100).await;
    let event = next_event(&mut body).await;
    assert_eq!(event["breakers"][0]["state"], "forced_open");
    assert_eq!(
        event["seq"],
        first["seq"].as_u64().unwrap() + 1,
        "no sample per missed tick"
    );
    // Nothing was queued behind it: the next event is a tick away.
    assert!(body.frame().now_or_never().is_none());
    let start = Instant::now();
    next_event(&mut body).await;
    assert_eq!(start.elapsed(), TICK);
}

#[tokio::test(start_paused = true)]
async fn clients_share_one_sample_per_tick() {
    let (_breaker, dashboard, app) = setup();
    let mut one = open_stream(&app).await;
    let mut two = open_stream(&app).await;
    for _ in 0..5 {
        let a = next_event(&mut one).await;
        let b = next_event(&mut two).await;
        assert_eq!(a["seq"], b["seq"]);
    }
    // One history point per tick, not one per client.
    assert_eq!(dashboard.snapshot().breakers[0].history.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn more_clients_than_max_clients_are_refused_until_one_leaves() {
    let dashboard = Dashboard::builder().max_clients(2).build().unwrap();
    let app = dashboard.router();
    let one = open_stream(&app).await;
    let _two = open_stream(&app).await;
    let (status, _) = call(&app, Method::GET, "/events").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    drop(one);
    let _three = open_stream(&app).await;
}

#[tokio::test(start_paused = true)]
async fn time_in_state_counts_from_the_change_the_dashboard_saw() {
    let (breaker, dashboard, _app) = setup();
    let first = dashboard.snapshot();
    assert_eq!(first.breakers[0].in_state_ms, 0);
    assert!(first.breakers[0].in_state_at_least);
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(dashboard.snapshot().breakers[0].in_state_ms, 3_000);
    assert!(dashboard.snapshot().breakers[0].in_state_at_least);

    breaker.force_open();
    let opened = dashboard.snapshot();
    assert_eq!(opened.breakers[0].state, "forced_open");
    assert_eq!(opened.breakers[0].in_state_ms, 0);
    assert!(!opened.breakers[0].in_state_at_least);
    tokio::time::advance(Duration::from_millis(2_500)).await;
    assert_eq!(dashboard.snapshot().breakers[0].in_state_ms, 2_500);
}

#[tokio::test(start_paused = true)]
async fn a_sparkline_keeps_the_last_history_points() {
    let breaker = CircuitBreaker::builder("openai").build().unwrap();
    let dashboard = Dashboard::builder().history(3).build().unwrap();
    dashboard.register_breaker(&breaker);
    for n in 0..5 {
        if n == 4 {
            breaker.force_open();
        }
        dashboard.snapshot();
        tokio::time::advance(Duration::from_millis(500)).await;
    }
    let history = dashboard.snapshot().breakers[0].history.clone();
    let states: Vec<&str> = history.iter().map(|p| p.state).collect();
    assert_eq!(states, ["closed", "forced_open", "forced_open"]);
}

#[tokio::test(start_paused = true)]
async fn a_change_seen_long_after_the_last_sample_reads_at_least() {
    let (breaker, dashboard, _app) = setup();
    dashboard.snapshot();
    // No client for a minute; the breaker opened at some point in it.
    tokio::time::advance(Duration::from_secs(60)).await;
    breaker.force_open();
    let seen = dashboard.snapshot();
    assert_eq!(seen.breakers[0].state, "forced_open");
    assert!(
        seen.breakers[0].in_state_at_least,
        "the change happened somewhere in the last minute: its time is not known"
    );
    // Once seen, later samples a tick apart keep counting from that first sight.
    tokio::time::advance(TICK).await;
    let later = dashboard.snapshot();
    assert!(later.breakers[0].in_state_at_least);
    assert_eq!(later.breakers[0].in_state_ms, 500);
}
