//! The axum `/health` handler (feature `axum`).

use super::{HealthRegistry, HealthReport, HealthStatus};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

impl IntoResponse for HealthReport {
    /// 200 with the report as JSON, or 503 when the status is unhealthy.
    fn into_response(self) -> Response {
        let code = if self.status == HealthStatus::Unhealthy {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        (code, axum::Json(self)).into_response()
    }
}

/// The `/health` handler: `Router::new().route("/health", get(health)).with_state(registry)`.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_breaker::health::{HealthRegistry, health};
///
/// let registry = HealthRegistry::new();
/// let app: Router = Router::new().route("/health", get(health)).with_state(registry);
/// # let _ = app;
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub async fn health(State(registry): State<HealthRegistry>) -> HealthReport {
    registry.report()
}

impl HealthRegistry {
    /// A router that answers `GET /health` from this registry; merge it into your app.
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn router<S>(&self) -> axum::Router<S> {
        axum::Router::new()
            .route("/health", axum::routing::get(health))
            .with_state(self.clone())
    }
}
