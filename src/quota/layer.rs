use super::future::ResponseFuture;
use super::permit::Pending;
use super::{Quota, RateLimits};
use crate::BoxError;
use std::fmt;
use std::hash::Hash;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// The estimate of a request's tokens (prompt plus the most the answer may take). Closures
/// `Fn(&Req) -> u64` are estimators.
///
/// ```
/// use tower_breaker::quota::EstimateCost;
///
/// struct Chars;
/// impl EstimateCost<String> for Chars {
///     fn estimate(&self, prompt: &String) -> u64 {
///         prompt.len() as u64 / 4 + 256
///     }
/// }
/// assert_eq!(Chars.estimate(&"x".repeat(400)), 356);
/// ```
pub trait EstimateCost<Req> {
    /// The tokens `req` is expected to use.
    fn estimate(&self, req: &Req) -> u64;
}

impl<Req, F: Fn(&Req) -> u64> EstimateCost<Req> for F {
    fn estimate(&self, req: &Req) -> u64 {
        self(req)
    }
}

/// Every request costs no tokens (only the request budget applies): the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCost;

impl<Req> EstimateCost<Req> for NoCost {
    fn estimate(&self, _: &Req) -> u64 {
        0
    }
}

/// What an answer says: its limits, whether it is a rate limit, what the call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Observation {
    /// The limits it reports.
    pub limits: RateLimits,
    /// True for a 429: the key pauses.
    pub rate_limited: bool,
    /// The tokens the call really used, when the answer says.
    pub usage: Option<u64>,
}

impl Observation {
    /// An observation of `limits`.
    pub fn limits(limits: RateLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The same, marked as a rate limit (or not).
    pub fn rate_limited(mut self, rate_limited: bool) -> Self {
        self.rate_limited = rate_limited;
        self
    }

    /// The same, with the tokens the call used.
    pub fn usage(mut self, tokens: Option<u64>) -> Self {
        self.usage = tokens;
        self
    }
}

/// Reads an [`Observation`] from a response. Closures `Fn(&Res) -> Observation` are
/// observers; [`HttpHeaders`] reads `http::Response` headers (feature `http`).
///
/// ```
/// use tower_breaker::quota::{Budget, Observation, ObserveResponse, RateLimits};
///
/// struct Answer { remaining_requests: u64, used_tokens: u64 }
///
/// let observer = |answer: &Answer| {
///     let mut limits = RateLimits::default();
///     limits.requests = Budget::new(None, Some(answer.remaining_requests), None);
///     Observation::limits(limits).usage(Some(answer.used_tokens))
/// };
/// let seen = observer.observe(&Answer { remaining_requests: 3, used_tokens: 42 });
/// assert_eq!(seen.usage, Some(42));
/// ```
pub trait ObserveResponse<Res> {
    /// What `response` says.
    fn observe(&self, response: &Res) -> Observation;
}

impl<Res, F: Fn(&Res) -> Observation> ObserveResponse<Res> for F {
    fn observe(&self, response: &Res) -> Observation {
        self(response)
    }
}

/// Learns nothing from responses (limits set by hand only): the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObservation;

impl<Res> ObserveResponse<Res> for NoObservation {
    fn observe(&self, _: &Res) -> Observation {
        Observation::default()
    }
}

/// Reads an `http::Response` (or, feature `reqwest`, a `reqwest::Response`, so it observes
/// the answers of a `reqwest::Client` used as a service): every rate-limit header
/// ([`RateLimits::from_headers`]), 429 as a rate limit, and the usage from an optional
/// function of the response (feature `http`).
///
/// ```
/// # #[cfg(feature = "reqwest")]
/// # fn demo() {
/// use tower::ServiceBuilder;
/// use tower_breaker::quota::{HttpHeaders, Quota};
///
/// let quota = Quota::<String>::builder("openai").build().expect("valid");
/// let client = ServiceBuilder::new()
///     .layer(quota.layer(|_: &reqwest::Request| "gpt".to_string()).observe(HttpHeaders::new()))
///     .service(reqwest::Client::new());
/// # let _ = client;
/// # }
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Clone, Copy, Default)]
pub struct HttpHeaders<U = NoUsage> {
    usage: U,
}

/// No usage is read from responses: the default of [`HttpHeaders`].
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUsage;

#[cfg(feature = "http")]
impl<U> fmt::Debug for HttpHeaders<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpHeaders").finish_non_exhaustive()
    }
}

#[cfg(feature = "http")]
impl HttpHeaders {
    /// Headers and status only.
    pub fn new() -> Self {
        Self { usage: NoUsage }
    }

    /// Also reads the tokens a call used from the response (for example from a typed body
    /// or a header your gateway adds).
    ///
    /// `usage` is a `Fn(&http::Response<B>) -> Option<u64>` (or, feature `reqwest`, a
    /// `Fn(&reqwest::Response) -> Option<u64>`).
    pub fn usage<U>(self, usage: U) -> HttpHeaders<U> {
        HttpHeaders { usage }
    }
}

#[cfg(feature = "http")]
impl<B> ObserveResponse<::http::Response<B>> for HttpHeaders<NoUsage> {
    fn observe(&self, response: &::http::Response<B>) -> Observation {
        Observation::limits(RateLimits::from_headers(response.headers()))
            .rate_limited(response.status() == ::http::StatusCode::TOO_MANY_REQUESTS)
    }
}

#[cfg(feature = "http")]
impl<B, U> ObserveResponse<::http::Response<B>> for HttpHeaders<U>
where
    U: Fn(&::http::Response<B>) -> Option<u64>,
{
    fn observe(&self, response: &::http::Response<B>) -> Observation {
        HttpHeaders::new()
            .observe(response)
            .usage((self.usage)(response))
    }
}

#[cfg(feature = "reqwest")]
impl ObserveResponse<reqwest::Response> for HttpHeaders<NoUsage> {
    fn observe(&self, response: &reqwest::Response) -> Observation {
        Observation::limits(RateLimits::from_headers(response.headers()))
            .rate_limited(response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS)
    }
}

#[cfg(feature = "reqwest")]
impl<U> ObserveResponse<reqwest::Response> for HttpHeaders<U>
where
    U: Fn(&reqwest::Response) -> Option<u64>,
{
    fn observe(&self, response: &reqwest::Response) -> Observation {
        HttpHeaders::new()
            .observe(response)
            .usage((self.usage)(response))
    }
}

/// Governs the calls of the wrapped service by a [`Quota`]: the key and the token estimate
/// come from each request, and what the answers report teaches the governor.
///
/// Clones share the governor. The admission happens in the response future (the key comes
/// from the request): `poll_ready` is the inner service's, and the ready inner service moves
/// into the future, which calls it once the call's turn has come (so the inner service must
/// be `Clone`, as for tower's `Buffer`-less retry).
pub struct QuotaLayer<K, KF, CF = NoCost, O = NoObservation> {
    quota: Quota<K>,
    key: KF,
    cost: CF,
    observer: O,
}

impl<K, KF: Clone, CF: Clone, O: Clone> Clone for QuotaLayer<K, KF, CF, O> {
    fn clone(&self) -> Self {
        Self {
            quota: self.quota.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
            observer: self.observer.clone(),
        }
    }
}

impl<K, KF, CF, O> fmt::Debug for QuotaLayer<K, KF, CF, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaLayer")
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl<K, KF> QuotaLayer<K, KF> {
    /// Governs by `quota`, with the key `key` computes from each request, no token estimate
    /// and nothing learned from answers (add them with [`cost`](Self::cost) and
    /// [`observe`](Self::observe) or [`http_headers`](Self::http_headers)).
    pub fn new(quota: Quota<K>, key: KF) -> Self {
        Self {
            quota,
            key,
            cost: NoCost,
            observer: NoObservation,
        }
    }
}

impl<K, KF, CF, O> QuotaLayer<K, KF, CF, O> {
    /// Estimates each request's tokens with `cost`.
    pub fn cost<CF2>(self, cost: CF2) -> QuotaLayer<K, KF, CF2, O> {
        QuotaLayer {
            quota: self.quota,
            key: self.key,
            cost,
            observer: self.observer,
        }
    }

    /// Learns from each answer with `observer`.
    pub fn observe<O2>(self, observer: O2) -> QuotaLayer<K, KF, CF, O2> {
        QuotaLayer {
            quota: self.quota,
            key: self.key,
            cost: self.cost,
            observer,
        }
    }

    /// Learns from each `http::Response`'s rate-limit headers and 429 status.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http_headers(self) -> QuotaLayer<K, KF, CF, HttpHeaders> {
        self.observe(HttpHeaders::new())
    }
}

impl<S, K, KF: Clone, CF: Clone, O: Clone> Layer<S> for QuotaLayer<K, KF, CF, O> {
    type Service = QuotaService<S, K, KF, CF, O>;

    fn layer(&self, inner: S) -> Self::Service {
        QuotaService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of a [`QuotaLayer`].
pub struct QuotaService<S, K, KF, CF = NoCost, O = NoObservation> {
    inner: S,
    layer: QuotaLayer<K, KF, CF, O>,
}

impl<S: Clone, K, KF: Clone, CF: Clone, O: Clone> Clone for QuotaService<S, K, KF, CF, O> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, K, KF, CF, O> fmt::Debug for QuotaService<S, K, KF, CF, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaService")
            .field("inner", &self.inner)
            .field("quota", &self.layer.quota)
            .finish()
    }
}

impl<S, K, KF, CF, O> QuotaService<S, K, KF, CF, O> {
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

impl<S, Req, K, KF, CF, O> Service<Req> for QuotaService<S, K, KF, CF, O>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    Req: Send + 'static,
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    KF: Fn(&Req) -> K,
    CF: EstimateCost<Req>,
    O: ObserveResponse<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, K, O>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.layer.key)(&req);
        let tokens = self.layer.cost.estimate(&req);
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let shared = self.layer.quota.shared.clone();
        let observer = self.layer.observer.clone();
        #[cfg(feature = "shared-state")]
        if shared.store.is_some() {
            let admit = shared.clone().admit_async(key, tokens);
            return ResponseFuture::store(Box::pin(admit), ready, req, observer);
        }
        match shared.admit_local(&key, tokens, shared.max_wait) {
            Err(rejected) => ResponseFuture::rejected_with(rejected, observer),
            Ok(admitted) => {
                let pending = Pending::new(shared, key, tokens, admitted);
                ResponseFuture::admitted(pending, ready, req, observer)
            }
        }
    }
}
