//! The dashboard's routes: the page, the stream of snapshots, the JSON snapshot.

use super::page::PAGE;
use super::registry::Dashboard;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use tokio::time::{Interval, MissedTickBehavior};

impl Dashboard {
    /// The dashboard's routes, `GET` only: `/` (the page), `/events` (the stream of
    /// snapshots) and `/snapshot.json`. Nest it where you like, behind your own auth:
    /// `Router::new().nest("/dashboard", dashboard.router())`.
    pub fn router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        axum::Router::new()
            .route("/", get(page))
            .route("/events", get(events))
            .route("/snapshot.json", get(snapshot))
            .with_state(self.clone())
    }
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

async fn snapshot(State(dashboard): State<Dashboard>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        dashboard.shared_json().to_string(),
    )
        .into_response()
}

/// Counts one running stream; gives its place back when the stream is dropped (the client
/// went away, or the server shut the connection).
struct ClientSlot(Dashboard);

impl ClientSlot {
    fn take(dashboard: &Dashboard) -> Option<Self> {
        let max = dashboard.inner.settings.max_clients;
        dashboard
            .inner
            .clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ClientSlot(dashboard.clone()))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.inner.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn events(State(dashboard): State<Dashboard>) -> Response {
    let Some(slot) = ClientSlot::take(&dashboard) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many dashboard clients; try again later",
        )
            .into_response();
    };
    let mut ticker = tokio::time::interval(dashboard.inner.settings.tick);
    // A client that could not take events for a while gets the state now, then one per tick
    // again: missed ticks are dropped, never caught up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Pulled by the connection: a snapshot becomes an event only when the connection asks for
    // the next one, so a stuck client holds at most one and nothing queues.
    let stream = futures_util::stream::unfold(
        (slot, ticker),
        |(slot, mut ticker): (ClientSlot, Interval)| async move {
            ticker.tick().await;
            let json = slot.0.shared_json();
            let event = Event::default().event("snapshot").data(&*json);
            Some((Ok::<_, Infallible>(event), (slot, ticker)))
        },
    );
    ([(header::CACHE_CONTROL, "no-store")], Sse::new(stream)).into_response()
}
