use super::fault::FaultKind;
use std::sync::Arc;
use std::time::Duration;

/// Something a [`ChaosLayer`](super::ChaosLayer) did. Delivered to every
/// [`Listener`](crate::events::Listener) registered with
/// [`ChaosBuilder::on_event`](super::ChaosBuilder::on_event); never built when there is none.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tower::{Service, ServiceExt, service_fn};
/// use tower_breaker::chaos::{ChaosEvent, ChaosLayer, Fault, FaultKind};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let chaos = ChaosLayer::builder("staging")
///     .inject(Fault::error("boom"), 1.0)
///     .on_event(move |event: &ChaosEvent| {
///         if let ChaosEvent::FaultInjected { fault, .. } = event {
///             sink.lock().unwrap().push(*fault);
///         }
///     })
///     .build()?;
/// let mut svc = tower::ServiceBuilder::new()
///     .layer(chaos)
///     .service(service_fn(|_: ()| async { Ok::<_, tower::BoxError>("ok") }));
/// assert!(svc.ready().await?.call(()).await.is_err());
/// assert_eq!(*seen.lock().unwrap(), vec![FaultKind::Error]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ChaosEvent {
    /// A fault was injected into a request (once per fault: a slow 503 is two events).
    FaultInjected {
        /// The layer's name.
        name: Arc<str>,
        /// What kind of fault.
        fault: FaultKind,
        /// The delay, for a latency fault.
        delay: Option<Duration>,
        /// The status code, for a status fault (feature `http`).
        #[cfg(feature = "http")]
        #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
        status: Option<u16>,
    },
}
