//! One `tracing` span per call: what each layer decided, on the call's span.
//!
//! [`CallSpanLayer`] opens a span named `tower_breaker.call` (target `tower_breaker`, level
//! `INFO`) around each call, with these fields declared empty up front; the layers inside it
//! record into it (into [`tracing::Span::current`]) when they know the value:
//!
//! | field | recorded by | value |
//! |---|---|---|
//! | `stack` | [`CallSpanLayer`] | the name given to the layer (the stack's name) |
//! | `attempts` | the retry policy | attempts that reached the breaker, the first included |
//! | `breaker.name` | the circuit breaker (also per key) | the breaker of the last attempt (`<name>:<key>` per key) |
//! | `breaker.state` | the circuit breaker | its state when it admitted or refused the last attempt |
//! | `quota.wait_ms` | the quota governor | how long the call waited for its turn |
//! | `ttft_ms` | the stream guard | time to the first token, from the start of the attempt |
//! | `outcome` | [`CallSpanLayer`] | `ok` or `error` (the whole call, retries included) |
//! | `error.kind` | [`CallSpanLayer`] | a [`RejectionKind`](crate::rejection::RejectionKind) (`circuit_open`, `bulkhead_full`, ...), `timeout`, or `error` |
//!
//! [`StandardResilience`](crate::stack::StandardResilience) and its per-key form put this
//! layer outermost. Used alone, the breaker, retry policy, quota and stream guard record into
//! whatever span is current: a span of your own (`tower_http::trace`, `#[instrument]`) gets
//! the values too, for the fields it declares (tracing drops a field a span did not declare).
//! [`call_span`] makes a span with every field declared.
//!
//! With no subscriber interested, the span is disabled: no field is formatted, and the
//! layers skip their records after one relaxed atomic load (the global max level).
//!
//! ```
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::call_span::CallSpanLayer;
//! use tower_breaker::circuit_breaker::CircuitBreaker;
//! use tower_breaker::ServiceBuilderExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let breaker = CircuitBreaker::builder("search").build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(CallSpanLayer::new("search")) // outermost: every layer inside records into it
//!     .circuit_breaker(&breaker)
//!     .service(service_fn(|q: String| async move { Ok::<_, tower::BoxError>(q) }));
//! assert_eq!(svc.ready().await?.call("rust".into()).await?, "rust");
//! # Ok(())
//! # }
//! ```

pub mod future;
mod record;
mod service;

#[cfg(feature = "retry")]
pub(crate) use self::record::record_attempts;
#[cfg(feature = "quota")]
pub(crate) use self::record::record_quota_wait;
#[cfg(feature = "stream")]
pub(crate) use self::record::{interested, record_ttft};
pub(crate) use self::record::{record_admitted, record_rejected};
pub use self::service::{CallSpan, CallSpanLayer, SPAN_NAME, call_span};
