use super::{Bulkhead, BulkheadService, ReleaseOnResponse};
use tower_layer::Layer;

/// Wraps services with a [`Bulkhead`].
///
/// Every service this layer makes, and every clone of the layer, shares the one bulkhead it was
/// built with: together they run at most `max_concurrent` calls (see
/// [Sharing](super#sharing)).
///
/// ```
/// use tower::{ServiceBuilder, service_fn};
/// use tower_breaker::bulkhead::{Bulkhead, BulkheadLayer};
///
/// let bulkhead = Bulkhead::builder("embeddings").max_concurrent(4).build()?;
/// let svc = ServiceBuilder::new()
///     .layer(BulkheadLayer::new(bulkhead)) // or `bulkhead.layer()`
///     .service(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
/// # let _ = svc;
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadLayer<H = ReleaseOnResponse> {
    bulkhead: Bulkhead,
    hold: H,
}

impl BulkheadLayer {
    /// A layer for `bulkhead` that gives each slot back when the call's response arrives.
    pub fn new(bulkhead: Bulkhead) -> Self {
        Self {
            bulkhead,
            hold: ReleaseOnResponse,
        }
    }
}

impl<H> BulkheadLayer<H> {
    /// Decides how long each call keeps its slot after the response arrives; see
    /// [`HoldPermit`](super::HoldPermit).
    pub fn hold_permit<H2>(self, hold: H2) -> BulkheadLayer<H2> {
        BulkheadLayer {
            bulkhead: self.bulkhead,
            hold,
        }
    }

    /// Keeps each call's slot until its `http::Response` body has ended or is dropped, so
    /// that a streaming answer counts as in flight until its last byte. The response body
    /// becomes a [`BulkheadBody`](super::BulkheadBody).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn hold_until_body_end(self) -> BulkheadLayer<super::HoldUntilBodyEnd> {
        self.hold_permit(super::HoldUntilBodyEnd)
    }

    /// The bulkhead this layer uses.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }
}

impl<S, H: Clone> Layer<S> for BulkheadLayer<H> {
    type Service = BulkheadService<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService::with_hold(inner, self.bulkhead.clone(), self.hold.clone())
    }
}
