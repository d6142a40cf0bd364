use super::error::ChaosError;
use super::fault::Fault;
use super::future::ResponseFuture;
use super::inject::{Decision, Injector};
use crate::BoxError;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// The service made by a [`ChaosLayer`](super::ChaosLayer): decides each request's faults,
/// then answers with an error or a status, delays, or alters the response body. Clones share
/// the layer's injector.
///
/// The inner service must be `Clone`: an injected latency comes *before* the inner call (a
/// caller that gives up during it sends nothing upstream), and tower lets `call` follow only
/// the `poll_ready` that reported ready. So a delayed call takes the ready inner service with
/// it (a clone stays behind, polled ready before its own call, as tower's `Buffer` and
/// `Steer` document); the inner service is then called when the delay is over. Only a call a
/// latency fault delays uses the clone, but types cannot say which layers have one, so the
/// bound is always there. Clients are cheap to clone (hyper-util's, `reqwest::Client`, an
/// axum `Router`); wrap a service that is not `Clone` in `tower::buffer::Buffer`.
pub struct Chaos<S, V> {
    inner: S,
    injector: Arc<Injector<V>>,
}

impl<S: Clone, V> Clone for Chaos<S, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            injector: self.injector.clone(),
        }
    }
}

impl<S: fmt::Debug, V> fmt::Debug for Chaos<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("inner", &self.inner)
            .field("injector", &self.injector)
            .finish()
    }
}

impl<S, V> Chaos<S, V> {
    pub(crate) fn from_injector(inner: S, injector: Arc<Injector<V>>) -> Self {
        Self { inner, injector }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The error an answer fault becomes on a service without HTTP responses. Only errors reach
/// here: `ChaosBuilder::build` refuses HTTP faults for such a layer.
fn answer_error(name: &Arc<str>, fault: Fault) -> ChaosError {
    match fault {
        Fault::Error(message) => ChaosError::new(name.clone(), message),
        other => ChaosError::new(name.clone(), Arc::from(format!("{other:?}"))),
    }
}

/// The ready inner service, taken out for a call made later; a clone stays behind (polled
/// ready before its own call). Model: tower's `Buffer` and `Steer` docs, `retry::future`.
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// The injected delay's timer, boxed once, only when a latency fires.
fn timer(delay: std::time::Duration) -> Option<std::pin::Pin<Box<tokio::time::Sleep>>> {
    (!delay.is_zero()).then(|| Box::pin(tokio::time::sleep(delay)))
}

impl<S, Req> Service<Req> for Chaos<S, Req>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let decision = self.injector.decide(&req);
        let Decision { delay, answer, .. } = decision;
        match (timer(delay), answer) {
            (delay, Some(fault)) => {
                ResponseFuture::failed(delay, answer_error(&self.injector.name, fault))
            }
            (None, None) => ResponseFuture::called(self.inner.call(req)),
            (Some(delay), None) => ResponseFuture::delayed(delay, take_ready(&mut self.inner), req),
        }
    }
}

#[cfg(feature = "http")]
pub(crate) use self::http_service::check_status;

#[cfg(feature = "http")]
mod http_service {
    use super::super::body::ChaosBody;
    use super::super::fault::{Fault, StatusFault, http_value};
    use super::super::future::HttpResponseFuture;
    use super::super::inject::{Decision, Injector};
    use super::{Chaos, answer_error, take_ready};
    use crate::BoxError;
    use crate::config::ConfigError;
    use http::{HeaderName, HeaderValue, Request, Response, StatusCode, request::Parts};
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use tower_service::Service;

    /// Checks a status fault's code and headers when the layer is built.
    pub(crate) fn check_status(name: &str, fault: &StatusFault) -> Result<(), ConfigError> {
        if StatusCode::from_u16(fault.status).is_err() {
            return Err(ConfigError::new(
                name,
                "status",
                fault.status,
                "a status code, 100 ..= 999",
            ));
        }
        for (header, value) in &fault.headers {
            let value = http_value(value);
            if HeaderName::try_from(header.as_str()).is_err()
                || HeaderValue::try_from(value.as_str()).is_err()
            {
                return Err(ConfigError::new(
                    name,
                    "header",
                    (header, value),
                    "a valid HTTP header name and value",
                ));
            }
        }
        Ok(())
    }

    /// The response a status fault answers with.
    fn status_response<B>(fault: &StatusFault) -> Response<ChaosBody<B>> {
        let mut response = Response::new(ChaosBody::fixed(fault.body.clone()));
        // Checked by `check_status` when the layer was built.
        *response.status_mut() =
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in &fault.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(http_value(value)),
            ) {
                headers.append(name, value);
            }
        }
        response
    }

    impl<S, ReqB, ResB> Service<Request<ReqB>> for Chaos<S, http::request::Parts>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
        S::Error: Into<BoxError>,
    {
        type Response = Response<ChaosBody<ResB>>;
        type Error = BoxError;
        type Future = HttpResponseFuture<S, Request<ReqB>, ResB>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx).map_err(Into::into)
        }

        fn call(&mut self, req: Request<ReqB>) -> Self::Future {
            let (parts, body) = req.into_parts();
            let decided = Decided::new(&self.injector, &parts);
            let req = Request::from_parts(parts, body);
            decided.future(
                &mut self.inner,
                req,
                <S as Service<Request<ReqB>>>::call,
                take_ready,
            )
        }
    }

    /// The faults decided for one request, before its response future exists.
    pub(super) struct Decided {
        decision: Decision,
        name: Arc<str>,
    }

    impl Decided {
        /// Decides the faults of a request with head `parts`.
        pub(super) fn new(injector: &Injector<Parts>, parts: &Parts) -> Self {
            Self {
                decision: injector.decide(parts),
                name: injector.name.clone(),
            }
        }

        /// The response future: the injected answer after the delay (the inner service is
        /// not called), or else the inner service's response with the stream fault on its
        /// body, called at once (`call`) or, after a delay, by the ready service `take_ready`
        /// takes out of `inner` (`S` is the service that answers `http::Response`s: the inner
        /// one, or the reqwest client seen through [`AsHttp`](super::super::future::AsHttp)).
        pub(super) fn future<T, S, Req, B>(
            self,
            inner: &mut T,
            req: Req,
            call: impl FnOnce(&mut T, Req) -> S::Future,
            take_ready: impl FnOnce(&mut T) -> S,
        ) -> HttpResponseFuture<S, Req, B>
        where
            S: Service<Req>,
        {
            let Self { decision, name } = self;
            let delay = super::timer(decision.delay);
            let answer = match decision.answer {
                Some(Fault::Status(status)) => Ok(status_response(&status)),
                Some(other) => Err(BoxError::from(answer_error(&name, other))),
                None => {
                    let stream = decision.stream.map(|fault| (fault, name));
                    return match delay {
                        None => HttpResponseFuture::called(call(inner, req), stream),
                        Some(delay) => {
                            HttpResponseFuture::delayed(delay, take_ready(inner), req, stream)
                        }
                    };
                }
            };
            HttpResponseFuture::answered(delay, answer)
        }
    }
}

#[cfg(feature = "reqwest")]
mod reqwest_service {
    use super::super::future::{AsHttp, IntoHttp, ReqwestResponseFuture};
    use super::http_service::Decided;
    use super::{Chaos, take_ready};
    use crate::BoxError;
    use std::task::{Context, Poll};
    use tower_service::Service;

    /// The head the `enabled` closures see: method, URI, version and headers of the request.
    /// (A URL that is not a valid `http::Uri` reads as `/`; reqwest only sends valid ones.)
    fn head_of(req: &reqwest::Request) -> http::request::Parts {
        let mut head = http::Request::new(());
        *head.method_mut() = req.method().clone();
        *head.uri_mut() = req.url().as_str().parse().unwrap_or_default();
        *head.version_mut() = req.version();
        *head.headers_mut() = req.headers().clone();
        head.into_parts().0
    }

    /// The HTTP layer in front of a `reqwest::Client` (or any service of `reqwest::Request`
    /// to `reqwest::Response`): statuses and stream faults too, on the `http::Response` a
    /// `reqwest::Response` converts to and from. An injected status carries the request's URL;
    /// an upstream's response keeps its own.
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    impl<S> Service<reqwest::Request> for Chaos<S, http::request::Parts>
    where
        S: Service<reqwest::Request, Response = reqwest::Response> + Clone,
        S::Error: Into<BoxError>,
    {
        type Response = reqwest::Response;
        type Error = BoxError;
        type Future = ReqwestResponseFuture<S>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx).map_err(Into::into)
        }

        fn call(&mut self, req: reqwest::Request) -> Self::Future {
            let url = req.url().clone();
            let decided = Decided::new(&self.injector, &head_of(&req));
            let future = decided.future(
                &mut self.inner,
                req,
                |inner, req| IntoHttp::new(inner.call(req)),
                |inner| AsHttp(take_ready(inner)),
            );
            ReqwestResponseFuture::new(future, url)
        }
    }
}
