use super::Permit;

/// How long a call keeps its slot after the inner service has answered.
///
/// The layer's future calls [`hold`](HoldPermit::hold) with the response and the call's
/// [`Permit`]; the slot is given back when the permit is dropped. The default,
/// [`ReleaseOnResponse`], drops it at once. With the `http` feature,
/// [`HoldUntilBodyEnd`](super::HoldUntilBodyEnd) keeps it in the response body until the last
/// byte. On an error the permit is dropped without calling `hold`.
///
/// Your own holder can keep the permit in whatever your response streams through:
///
/// ```
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
/// use tower_breaker::bulkhead::{Bulkhead, HoldPermit, Permit};
///
/// /// A response that is still being read: the slot is busy until it is dropped.
/// struct Reading {
///     text: String,
///     _permit: Permit,
/// }
///
/// #[derive(Clone)]
/// struct UntilRead;
///
/// impl HoldPermit<String> for UntilRead {
///     type Response = Reading;
///
///     fn hold(&self, text: String, permit: Permit) -> Reading {
///         Reading { text, _permit: permit }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let bulkhead = Bulkhead::builder("reports").max_concurrent(1).build()?;
/// let mut svc = ServiceBuilder::new()
///     .layer(bulkhead.layer().hold_permit(UntilRead))
///     .service(service_fn(|_: ()| async { Ok::<_, std::io::Error>("report".to_string()) }));
///
/// let reading = svc.ready().await?.call(()).await?;
/// assert_eq!(reading.text, "report");
/// assert_eq!(bulkhead.metrics().active, 1); // still held
/// drop(reading);
/// assert_eq!(bulkhead.metrics().active, 0);
/// # Ok(())
/// # }
/// ```
pub trait HoldPermit<Res> {
    /// What the caller gets.
    type Response;

    /// Combines the inner service's response with the call's permit.
    fn hold(&self, response: Res, permit: Permit) -> Self::Response;
}

/// Gives the slot back as soon as the inner service's future finishes: the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReleaseOnResponse;

impl<Res> HoldPermit<Res> for ReleaseOnResponse {
    type Response = Res;

    #[inline]
    fn hold(&self, response: Res, permit: Permit) -> Res {
        drop(permit);
        response
    }
}
