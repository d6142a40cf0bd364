//! A live dashboard of every registered breaker, bulkhead, keyed registry, quota, adaptive
//! limit and hedge (feature `dashboard`): one axum router with a self-contained HTML page, a
//! stream of snapshots (server-sent events) and a JSON snapshot.
//!
//! During an outage it shows, at a glance, which breaker is open (with a colour), since when,
//! its failure and slow-call rates, calls and rejections, with a sparkline of its recent
//! history; the calls running and waiting in each bulkhead; the limit of each adaptive
//! bulkhead; the quota left per key; and how often each hedge fires.
//!
//! ```
//! use axum::Router;
//! use tower_breaker::bulkhead::Bulkhead;
//! use tower_breaker::circuit_breaker::CircuitBreaker;
//! use tower_breaker::dashboard::Dashboard;
//!
//! let openai = CircuitBreaker::builder("openai").build()?;
//! let slots = Bulkhead::builder("openai").max_concurrent(8).build()?;
//! let dashboard = Dashboard::new();
//! dashboard.register_breaker(&openai).register_bulkhead(&slots);
//!
//! // One line in your app: the page at /dashboard, its stream at /dashboard/events, the JSON
//! // snapshot at /dashboard/snapshot.json.
//! let app: Router = Router::new().nest("/dashboard", dashboard.router());
//! # let _ = app;
//! # Ok::<_, tower_breaker::ConfigError>(())
//! ```
//!
//! # Routes
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the page: HTML with its CSS and script inline; no CDN, no build step, works offline |
//! | `GET /events` | `text/event-stream`: a `snapshot` event with the JSON snapshot at once, then one per tick (default 500 ms) |
//! | `GET /snapshot.json` | the same snapshot, once (what Spring Boot's actuator gives for circuit breakers) |
//!
//! Every route answers only `GET` (and `HEAD`); other methods get `405 Method Not Allowed`.
//! The page finds its stream relative to its own address, so it works wherever it is nested.
//!
//! # Behind your auth
//!
//! The dashboard shows component names, states, rates and counts, never a request or a
//! response. Still, names can tell an outsider which providers and keys you use: mount it
//! behind the same authentication as the rest of your admin routes. It is an ordinary
//! `Router`, so any layer applies:
//!
//! ```
//! use axum::{Router, extract::Request, http::StatusCode, middleware::{self, Next}, response::Response};
//! use tower_breaker::dashboard::Dashboard;
//!
//! async fn admins_only(request: Request, next: Next) -> Result<Response, StatusCode> {
//!     let authorised = request
//!         .headers()
//!         .get("authorization")
//!         .is_some_and(|v| v == "Bearer s3cret"); // your real check here
//!     if authorised { Ok(next.run(request).await) } else { Err(StatusCode::UNAUTHORIZED) }
//! }
//!
//! let dashboard = Dashboard::new();
//! let app: Router = Router::new()
//!     .nest("/ops/dashboard", dashboard.router().layer(middleware::from_fn(admins_only)));
//! # let _ = app;
//! ```
//!
//! (The browser's `EventSource` sends the page's cookies but no custom header: a cookie
//! session or a proxy in front works for the stream; a bearer token typed by hand does not.)
//!
//! # Cost, and slow browsers
//!
//! Nothing on the call path: the dashboard reads the components' snapshots (a few atomic
//! loads per breaker and bulkhead, a short read lock per shard of a keyed registry, one short
//! lock per quota key) only while a client is connected, once per tick however many clients
//! are connected (they share one sample), or when `snapshot.json` is asked for.
//!
//! Each stream is pulled by its connection: a snapshot is made into an event only when the
//! connection can take it. A slow or stuck browser holds at most one event; the ticks it
//! missed are dropped, never queued, and the next event it gets is the state now. At most
//! `max_clients` streams run at once (default 32); more are answered `503`.
//!
//! # Many keys
//!
//! A keyed registry or a quota with thousands of keys is aggregated: the count of keys in each
//! state (or the key count of a quota), and the `max_keys_listed` worst keys (default 20: open
//! breakers first, then by failure rate; quota keys with the least left first). The page stays
//! small and fast whatever the number of keys.
//!
//! # Time in state
//!
//! The dashboard learns when a breaker changed state from its own samples, so it adds nothing
//! to the breaker. While a client is connected (samples a tick apart) the time is exact to a
//! tick. A state that held before the dashboard first looked, or a change that happened while
//! no one was looking, reads "at least" (`in_state_at_least` in the JSON, `≥` on the page).
//! Samples see states, not transitions: a change and a change back between two samples (a
//! half-open probe that failed and reopened the breaker within one tick) is not seen, and the
//! time then counts from the earlier change.

mod page;
mod registry;
mod routes;
mod snapshot;

pub use self::registry::{Dashboard, DashboardBuilder};
pub use self::snapshot::{
    AdaptiveView, BreakerView, BulkheadView, DashboardSnapshot, HedgeView, HistoryPoint,
    KeyedBreakerView, KeyedView, QuotaKeyView, QuotaView,
};
