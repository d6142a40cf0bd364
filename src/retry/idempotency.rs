use super::protocol_http::{IDEMPOTENCY_KEY, is_idempotent};
use crate::random::{AtomicSplitMix64, entropy_seed};
use http::{HeaderName, HeaderValue};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Adds a fresh `Idempotency-Key` header to every request that is not idempotent by its method
/// (POST, PATCH, ...) and has none, so that a retry policy may retry it, and an API that
/// honours the header (Stripe, OpenAI-style APIs, the IETF draft) runs it at most once.
///
/// Put it **outside** the retry layer: every attempt of one request must carry the same key.
///
/// Keys look like random UUIDs (version 4, 122 random bits) from an in-crate generator seeded
/// from the process's hash randomness; they are unique, not secret. Clones of the layer, and the
/// services it makes, share one generator.
///
/// ```
/// use http::{Request, Response};
/// use std::convert::Infallible;
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
/// use tower_breaker::retry::IdempotencyKeyLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mut svc = ServiceBuilder::new()
///     .layer(IdempotencyKeyLayer::new())
///     .service(service_fn(|req: Request<String>| async move {
///         let key = req.headers().get("idempotency-key").cloned();
///         Ok::<_, Infallible>(Response::new(key))
///     }));
///
/// let post = Request::post("/v1/chat/completions").body(String::from("{}"))?;
/// let key = svc.ready().await?.call(post).await?.into_body().expect("a key");
/// assert_eq!(key.len(), 36); // 8-4-4-4-12 hex digits
///
/// let get = Request::get("/v1/models").body(String::new())?;
/// assert!(svc.ready().await?.call(get).await?.into_body().is_none()); // GET needs none
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct IdempotencyKeyLayer {
    keys: Arc<AtomicSplitMix64>,
}

impl IdempotencyKeyLayer {
    /// A layer with a generator seeded from the process's hash randomness.
    pub fn new() -> Self {
        Self::with_seed(entropy_seed())
    }

    /// A layer whose keys follow from `seed` (for tests: keys then repeat across runs).
    pub fn with_seed(seed: u64) -> Self {
        Self {
            keys: Arc::new(AtomicSplitMix64::new(seed)),
        }
    }

    /// A fresh key, as the layer would add it.
    pub fn new_key(&self) -> HeaderValue {
        new_key(&self.keys)
    }
}

impl Default for IdempotencyKeyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for IdempotencyKeyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyKeyLayer")
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for IdempotencyKeyLayer {
    type Service = IdempotencyKey<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdempotencyKey {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// Adds an `Idempotency-Key` to non-idempotent requests that lack one; made by
/// [`IdempotencyKeyLayer`]. Its future is the inner service's.
#[derive(Clone)]
pub struct IdempotencyKey<S> {
    inner: S,
    keys: Arc<AtomicSplitMix64>,
}

impl<S> IdempotencyKey<S> {
    /// Wraps `inner`, with a generator seeded from the process's hash randomness.
    pub fn new(inner: S) -> Self {
        IdempotencyKeyLayer::new().layer(inner)
    }

    /// A layer; the same as [`IdempotencyKeyLayer::new`].
    pub fn layer() -> IdempotencyKeyLayer {
        IdempotencyKeyLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<http::Request<B>> for IdempotencyKey<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if !is_idempotent(req.method(), req.headers()) {
            req.headers_mut().insert(
                HeaderName::from_static(IDEMPOTENCY_KEY),
                new_key(&self.keys),
            );
        }
        self.inner.call(req)
    }
}

/// The same for `reqwest::Request` (feature `reqwest`), so that `reqwest::Client` stacks get
/// keys too.
///
/// ```
/// use tower::{Layer, Service, ServiceExt, service_fn};
/// use tower_breaker::retry::IdempotencyKeyLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let mut svc = IdempotencyKeyLayer::new().layer(service_fn(|req: reqwest::Request| async move {
///     Ok::<_, tower::BoxError>(req.headers().contains_key("idempotency-key"))
/// }));
/// let post = reqwest::Request::new(reqwest::Method::POST, "http://127.0.0.1/v1/chat/completions".parse()?);
/// assert!(svc.ready().await?.call(post).await?);
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl<S> Service<reqwest::Request> for IdempotencyKey<S>
where
    S: Service<reqwest::Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: reqwest::Request) -> Self::Future {
        if !is_idempotent(req.method(), req.headers()) {
            req.headers_mut().insert(
                HeaderName::from_static(IDEMPOTENCY_KEY),
                new_key(&self.keys),
            );
        }
        self.inner.call(req)
    }
}

impl<S: fmt::Debug> fmt::Debug for IdempotencyKey<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyKey")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// 128 random bits formatted as a version-4 UUID.
fn new_key(keys: &AtomicSplitMix64) -> HeaderValue {
    let high = keys.next_u64();
    let low = keys.next_u64();
    // Version 4 in the high nibble of the 7th byte, variant `10` in the top bits of the 9th.
    let high = (high & !0xF000) | 0x4000;
    let low = (low & !(0b11 << 62)) | (0b10 << 62);
    let bytes = format_uuid(high, low);
    HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| {
        // Unreachable: every byte is an ASCII hex digit or '-', all valid in a header value.
        HeaderValue::from_static("00000000-0000-4000-8000-000000000000")
    })
}

fn format_uuid(high: u64, low: u64) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let value = (u128::from(high) << 64) | u128::from(low);
    let mut nibble = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        let shift = 124 - 4 * nibble;
        *slot = HEX[((value >> shift) & 0xF) as usize];
        nibble += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_uuid_v4_shaped_and_distinct() {
        let layer = IdempotencyKeyLayer::with_seed(1);
        let a = layer.new_key();
        let b = layer.new_key();
        assert_ne!(a, b);
        let s = a.to_str().unwrap_or_default();
        assert_eq!(s.len(), 36);
        let parts: Vec<_> = s.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert_eq!(&s[14..15], "4", "version 4: {s}");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "variant: {s}");
        assert_eq!(
            format_uuid(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
            *b"01234567-89ab-cdef-fedc-ba9876543210"
        );
    }
}
