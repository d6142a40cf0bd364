//! The same classification for `reqwest` (feature `reqwest`).

use super::body::{RecordingBody, SuccessOnEos};
use super::classify::{ClassifyError, HttpClassifier, ResponseClass};
use crate::Outcome;
use crate::circuit_breaker::{Permit, RecordOutcome};
use reqwest::ResponseBuilderExt;

/// How the default error classification counts a `reqwest::Error`.
pub(crate) fn classify_reqwest_error(error: &reqwest::Error) -> Outcome {
    if error.is_builder() {
        // The request was never sent.
        Outcome::Ignored
    } else {
        // Timeouts, connect and DNS errors, a connection reset while sending or reading,
        // redirect loops: the upstream (or the way to it) failed.
        Outcome::Failure
    }
}

impl<F> HttpClassifier<F> {
    /// Records a `reqwest::Response` on `permit`, now or when its body ends, like
    /// [`record_response`](Self::record_response). A success's body is wrapped in a
    /// [`RecordingBody`] inside `reqwest::Body::wrap` (which boxes it); its status, headers,
    /// extensions and URL are kept.
    ///
    /// ```
    /// use tower_breaker::circuit_breaker::CircuitBreaker;
    /// use tower_breaker::http::HttpClassifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// let breaker = CircuitBreaker::builder("api").build()?;
    /// let response = reqwest::Response::from(http::Response::new("hello"));
    /// let response = HttpClassifier::new().record_reqwest_response(response, breaker.try_acquire()?);
    /// assert_eq!(response.text().await?, "hello");
    /// assert_eq!(breaker.metrics().successful_calls, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub fn record_reqwest_response(
        &self,
        response: reqwest::Response,
        permit: Permit,
    ) -> reqwest::Response {
        let class =
            self.classify_head(response.status(), response.headers(), response.extensions());
        if class != ResponseClass::Success || !self.records_at_body_end() {
            class.record(permit, Some(response.headers()));
            return response;
        }
        let idle = self.body_idle_timeout();
        map_reqwest_body(response, |body| {
            reqwest::Body::wrap(RecordingBody::new(body, permit, SuccessOnEos, idle))
        })
    }
}

/// `response` with its body replaced by `f(body)`; status, headers, extensions and URL kept.
pub(crate) fn map_reqwest_body(
    response: reqwest::Response,
    f: impl FnOnce(reqwest::Body) -> reqwest::Body,
) -> reqwest::Response {
    let url = response.url().clone();
    reqwest_response(
        ::http::Response::<reqwest::Body>::from(response).map(f),
        url,
    )
}

/// A `reqwest::Response` made from `response`, with `url` as its URL.
pub(crate) fn reqwest_response(
    mut response: ::http::Response<reqwest::Body>,
    url: reqwest::Url,
) -> reqwest::Response {
    // `reqwest::Response::from` reads the URL from an extension that only
    // `ResponseBuilderExt::url` can set. Building an empty response cannot fail; if it did,
    // the URL would read as reqwest's placeholder, nothing worse.
    if let Ok(carrier) = ::http::Response::builder().url(url).body(()) {
        response
            .extensions_mut()
            .extend(carrier.into_parts().0.extensions);
    }
    reqwest::Response::from(response)
}

/// A response's URL, kept in its extensions while it is an `http::Response`.
#[derive(Clone, Debug)]
struct KeptUrl(reqwest::Url);

/// `response` as an `http::Response`, its URL kept for [`from_http_keeping_url`].
pub(crate) fn into_http_keeping_url(
    response: reqwest::Response,
) -> ::http::Response<reqwest::Body> {
    let url = response.url().clone();
    let mut response = ::http::Response::from(response);
    response.extensions_mut().insert(KeptUrl(url));
    response
}

/// A `reqwest::Response` again, with the URL [`into_http_keeping_url`] kept.
pub(crate) fn from_http_keeping_url(
    mut response: ::http::Response<reqwest::Body>,
) -> reqwest::Response {
    match response.extensions_mut().remove::<KeptUrl>() {
        Some(KeptUrl(url)) => reqwest_response(response, url),
        None => reqwest::Response::from(response),
    }
}

/// `reqwest::Client` is a `Service<reqwest::Request>`: wrapped with an [`HttpClassifier`],
/// its responses are classified and their bodies recorded at their end.
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl<E, F> RecordOutcome<reqwest::Response, E> for HttpClassifier<F>
where
    F: ClassifyError<E>,
{
    type Response = reqwest::Response;

    fn record(
        &self,
        result: Result<reqwest::Response, E>,
        permit: Permit,
    ) -> Result<reqwest::Response, E> {
        match result {
            Ok(response) => Ok(self.record_reqwest_response(response, permit)),
            Err(error) => {
                permit.record(self.errors().classify_error(&error));
                Err(error)
            }
        }
    }
}
