use super::body::{GuardConfig, GuardedBody};
use super::error::FirstTokenTimeout;
use super::events::StreamEvent;
use super::rules::SseRules;
use crate::BoxError;
use crate::config::{Check, ConfigError};
use crate::events::{Listener, Listeners};
use http_body::Body;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

/// The longest deadline a builder takes (a day): longer is a mistake, not a deadline.
const MAX_DEADLINE: Duration = Duration::from_secs(86_400);
/// The shortest deadline a builder takes.
const MIN_DEADLINE: Duration = Duration::from_millis(1);

/// Holds streamed responses to a time-to-first-token deadline, an idle deadline and completion
/// rules; see the [module docs](super). Clones share one configuration (there is no state).
#[derive(Clone, Debug)]
pub struct StreamGuardLayer {
    config: Arc<GuardConfig>,
}

impl StreamGuardLayer {
    pub(crate) fn config(&self) -> &Arc<GuardConfig> {
        &self.config
    }

    /// This layer's configuration, to change (copied first if a clone shares it).
    pub(crate) fn config_mut(&mut self) -> &mut GuardConfig {
        Arc::make_mut(&mut self.config)
    }

    /// A layer with both deadlines and `rules`, the rest as the builder's defaults. The
    /// deadlines are clamped into the builder's range, so no check is left to fail.
    pub(crate) fn preset(first_token: Duration, idle: Duration, rules: SseRules) -> Self {
        let mut config = Self::builder().rules(rules).config;
        config.first_token = Some(first_token.clamp(MIN_DEADLINE, MAX_DEADLINE));
        config.idle = Some(idle.clamp(MIN_DEADLINE, MAX_DEADLINE));
        Self {
            config: Arc::new(config),
        }
    }

    /// A builder: named `stream`, no deadlines, [`SseRules::openai`], the response at the
    /// first token, no listener.
    pub fn builder() -> StreamGuardBuilder {
        StreamGuardBuilder {
            config: GuardConfig {
                name: Arc::from("stream"),
                listeners: Listeners::new(),
                first_token: None,
                idle: None,
                rules: SseRules::openai(),
                respond_at_first_token: true,
                is_stream: None,
            },
        }
    }
}

impl<S> Layer<S> for StreamGuardLayer {
    type Service = StreamGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StreamGuard {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Builds a [`StreamGuardLayer`].
#[derive(Debug, Clone)]
pub struct StreamGuardBuilder {
    config: GuardConfig,
}

impl StreamGuardBuilder {
    /// The name in events and metrics (the `name` label). Default: `stream`.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Adds a listener for [`StreamEvent`]s: the first token of each guarded stream, and how
    /// it ended (a `MetricsListener` or an `OpenTelemetryListener` records the time to first
    /// token and the outcomes). With none, no event is built.
    pub fn on_event(mut self, listener: impl Listener<StreamEvent>) -> Self {
        self.config.listeners.push(Arc::new(listener));
        self
    }

    /// The time-to-first-token deadline, counted from the call: the head and the first token
    /// must both arrive within it. Default: none. Allowed: 1 ms to 1 day.
    pub fn first_token_timeout(mut self, deadline: Duration) -> Self {
        self.config.first_token = Some(deadline);
        self
    }

    /// The longest silence between two tokens. Default: none. Allowed: 1 ms to 1 day. Without
    /// a first-token deadline, it also bounds the wait from the head to the first token.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.config.idle = Some(idle);
        self
    }

    /// Which events are tokens and which complete the answer. Default: [`SseRules::openai`].
    pub fn rules(mut self, rules: SseRules) -> Self {
        self.config.rules = rules;
        self
    }

    /// When the response future resolves: at the first token (`true`, the default), with the
    /// frames read so far kept in the body for the caller; or at the response head (`false`),
    /// the body then failing with [`FirstTokenTimeout`] if no token comes.
    ///
    /// Resolving at the first token is what makes failover and hedging stream-aware: a
    /// [`Failover`](crate::failover::Failover) or [`Hedge`](super::Hedge) around the guard
    /// sees a missed first token as an error of that provider, before the caller has seen a
    /// byte.
    pub fn respond_at_first_token(mut self, yes: bool) -> Self {
        self.config.respond_at_first_token = yes;
        self
    }

    /// Which 2xx responses are streams, held to the rules; the others pass untouched and
    /// resolve at their head, like an error status.
    ///
    /// Default: a `content-type` of `text/event-stream` (any case, any parameters), or no
    /// `content-type` at all: a guard sits on a streaming call, so a 2xx that does not say what
    /// it is counts as the stream that was asked for (and is held to the deadlines and the
    /// completion rule), unless it is a 204 or 205 (no body). A non-streamed completion
    /// through the same client (`application/json`) passes untouched and is a success.
    ///
    /// ```
    /// use tower_breaker::stream::StreamGuardLayer;
    ///
    /// // A gateway that streams as `application/x-ndjson` too, and marks its streams.
    /// let guard = StreamGuardLayer::builder()
    ///     .stream_when(|head: &http::response::Parts| {
    ///         head.headers.contains_key("x-stream")
    ///             || head.headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    ///     })
    ///     .build()?;
    /// # let _ = guard;
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    pub fn stream_when(
        mut self,
        is_stream: impl Fn(&http::response::Parts) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.config.is_stream = Some(Arc::new(is_stream));
        self
    }

    /// The layer.
    pub fn build(mut self) -> Result<StreamGuardLayer, ConfigError> {
        let check = Check {
            component: "stream_guard",
        };
        let config = &mut self.config;
        config.first_token = config
            .first_token
            .map(|d| check.duration("first_token_timeout", d, MIN_DEADLINE, MAX_DEADLINE))
            .transpose()?;
        config.idle = config
            .idle
            .map(|d| check.duration("idle_timeout", d, MIN_DEADLINE, MAX_DEADLINE))
            .transpose()?;
        Ok(StreamGuardLayer {
            config: Arc::new(self.config),
        })
    }
}

/// Holds an inner service's streamed responses to deadlines and completion rules; made by
/// [`StreamGuardLayer`].
#[derive(Clone, Debug)]
pub struct StreamGuard<S> {
    inner: S,
    config: Arc<GuardConfig>,
}

impl<S> StreamGuard<S> {
    /// Wraps `inner` with `layer`'s rules.
    pub fn new(inner: S, layer: &StreamGuardLayer) -> Self {
        layer.layer(inner)
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

impl<S, Req> Service<Req> for StreamGuard<S>
where
    S: Service<Req>,
    S::Response: GuardResponse,
    S::Error: Into<BoxError>,
{
    type Response = <S::Response as GuardResponse>::Guarded;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            state: State::Head {
                future: self.inner.call(req),
            },
            config: self.config.clone(),
            started: Instant::now(),
            timer: None,
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A response type whose body a [`StreamGuard`] can hold to its rules: `http::Response<B>`
/// (any body with byte chunks, `Unpin`: hyper's, axum's, `reqwest::Body`, boxed bodies) and,
/// with the `reqwest` feature, `reqwest::Response`. Sealed.
pub trait GuardResponse: sealed::Sealed + Sized {
    /// The body that is guarded.
    type Body: Body<Data: AsRef<[u8]>, Error: Into<BoxError>> + Unpin;
    /// The response the guard gives back.
    type Guarded;
    /// The response as `http::Response`.
    #[doc(hidden)]
    fn into_http(self) -> http::Response<Self::Body>;
    /// The guarded `http::Response`, back in the caller's type.
    #[doc(hidden)]
    fn from_http(response: http::Response<GuardedBody<Self::Body>>) -> Self::Guarded;
}

impl<B> sealed::Sealed for http::Response<B> {}

impl<B> GuardResponse for http::Response<B>
where
    B: Body<Data: AsRef<[u8]>, Error: Into<BoxError>> + Unpin,
{
    type Body = B;
    type Guarded = http::Response<GuardedBody<B>>;

    fn into_http(self) -> http::Response<B> {
        self
    }

    fn from_http(response: http::Response<GuardedBody<B>>) -> Self::Guarded {
        response
    }
}

#[cfg(feature = "reqwest")]
impl sealed::Sealed for reqwest::Response {}

/// `reqwest::Client` is a `Service<reqwest::Request>`: its responses' bodies are guarded inside
/// `reqwest::Body::wrap` (which boxes them); status, headers, extensions and URL are kept.
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl GuardResponse for reqwest::Response {
    type Body = reqwest::Body;
    type Guarded = reqwest::Response;

    fn into_http(self) -> http::Response<reqwest::Body> {
        crate::http::into_http_keeping_url(self)
    }

    fn from_http(response: http::Response<GuardedBody<reqwest::Body>>) -> reqwest::Response {
        crate::http::from_http_keeping_url(response.map(reqwest::Body::wrap))
    }
}

pin_project! {
    /// The future of a [`StreamGuard`] call: the response head within the first-token
    /// deadline, then (by default) the first token.
    pub struct ResponseFuture<F, R: GuardResponse> {
        #[pin]
        state: State<F, R::Body>,
        config: Arc<GuardConfig>,
        started: Instant,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B: Body> {
        Head { #[pin] future: F },
        FirstToken { response: Option<http::Response<GuardedBody<B>>> },
    }
}

impl<F, R: GuardResponse> fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Head { .. } => "head",
            State::FirstToken { .. } => "first_token",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<F, R, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
    R: GuardResponse,
{
    type Output = Result<R::Guarded, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Head { future } => {
                    let response = match future.poll(cx) {
                        Poll::Ready(result) => result.map_err(Into::into)?.into_http(),
                        Poll::Pending => {
                            let Some(deadline) = this.config.first_token_deadline(*this.started)
                            else {
                                return Poll::Pending;
                            };
                            let timer = this.timer.get_or_insert_with(|| {
                                Box::pin(tokio::time::sleep_until(deadline))
                            });
                            if timer.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                            this.config.report_head_timeout();
                            return Poll::Ready(Err(Box::new(FirstTokenTimeout {
                                deadline: this.config.first_token.unwrap_or_default(),
                                headers: false,
                            })));
                        }
                    };
                    let (parts, body) = response.into_parts();
                    let body = GuardedBody::for_response(
                        &parts,
                        body,
                        this.config,
                        *this.started,
                        this.timer.take(),
                    );
                    let response = http::Response::from_parts(parts, body);
                    if !this.config.respond_at_first_token || !response.body().is_guarded() {
                        return Poll::Ready(Ok(R::from_http(response)));
                    }
                    this.state.set(State::FirstToken {
                        response: Some(response),
                    });
                }
                StateProj::FirstToken { response } => {
                    // `response` is only taken here, as the future completes.
                    let Some(pending) = response.as_mut() else {
                        return Poll::Pending;
                    };
                    match Pin::new(pending.body_mut()).poll_first_token(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(error)) => {
                            *response = None;
                            return Poll::Ready(Err(error));
                        }
                        Poll::Ready(Ok(())) => {
                            let Some(ready) = response.take() else {
                                return Poll::Pending;
                            };
                            return Poll::Ready(Ok(R::from_http(ready)));
                        }
                    }
                }
            }
        }
    }
}
