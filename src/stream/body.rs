use super::error::{FirstTokenTimeout, StreamIdle, StreamTruncated};
use super::events::StreamEvent;
use super::rules::SseRules;
use super::sse::SseParser;
use crate::BoxError;
use crate::events::Listeners;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Which responses are streams: given their head, a 2xx.
pub(crate) type IsStream = Arc<dyn Fn(&http::response::Parts) -> bool + Send + Sync>;

/// The settings one [`StreamGuardLayer`](super::StreamGuardLayer) shares with its bodies (and
/// its builder fills in).
#[derive(Clone)]
pub(crate) struct GuardConfig {
    /// The name in events.
    pub(crate) name: Arc<str>,
    pub(crate) listeners: Listeners<StreamEvent>,
    pub(crate) first_token: Option<Duration>,
    pub(crate) idle: Option<Duration>,
    pub(crate) rules: SseRules,
    pub(crate) respond_at_first_token: bool,
    /// Replaces [`is_event_stream`] when set.
    pub(crate) is_stream: Option<IsStream>,
}

impl fmt::Debug for GuardConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardConfig")
            .field("name", &self.name)
            .field("listeners", &self.listeners)
            .field("first_token", &self.first_token)
            .field("idle", &self.idle)
            .field("rules", &self.rules)
            .field("respond_at_first_token", &self.respond_at_first_token)
            .field("custom_is_stream", &self.is_stream.is_some())
            .finish()
    }
}

/// The default rule: a response is a stream when its `content-type` is `text/event-stream`
/// (any case, any parameters), or when it has none (a guard sits on a streaming call, and an
/// upstream that leaves the header out is taken at its word that it streams), unless its
/// status says it has no body (204, 205).
pub(crate) fn is_event_stream(parts: &http::response::Parts) -> bool {
    let Some(value) = parts.headers.get(http::header::CONTENT_TYPE) else {
        return !matches!(
            parts.status,
            http::StatusCode::NO_CONTENT | http::StatusCode::RESET_CONTENT
        );
    };
    let value = value.as_bytes();
    let essence = value
        .iter()
        .position(|&b| b == b';')
        .map_or(value, |end| &value[..end]);
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"text/event-stream")
}

impl GuardConfig {
    /// True when a response with this head is held to the stream rules: a 2xx that is a
    /// stream (by the builder's rule, or [`is_event_stream`]).
    pub(crate) fn guards(&self, parts: &http::response::Parts) -> bool {
        parts.status.is_success()
            && match &self.is_stream {
                Some(is_stream) => is_stream(parts),
                None => is_event_stream(parts),
            }
    }

    /// Reports the head deadline passing before the response head came.
    pub(crate) fn report_head_timeout(&self) {
        self.listeners.emit(|| StreamEvent::FirstTokenTimeout {
            name: self.name.clone(),
            deadline: self.first_token.unwrap_or_default(),
            had_headers: false,
        });
    }

    /// When the first token is due, for a call that started at `started`.
    pub(crate) fn first_token_deadline(&self, started: Instant) -> Option<Instant> {
        started.checked_add(self.first_token?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    BeforeToken,
    Streaming,
    /// The answer is complete; the body may still send a few events (usage) before its end.
    Complete,
    /// The last event came, with its final line break a `\r` that ended a frame: the `\n`
    /// of a `\r\n` may come in the next frame, which is read if it is already there.
    LastBeforeLf,
    /// The body has ended, or sent its last event: nothing more is read.
    Ended,
    Failed,
}

struct Guarding {
    config: Arc<GuardConfig>,
    parser: SseParser,
    phase: Phase,
    tokens: u64,
    deadline: Option<Instant>,
    // Boxed so that the body stays `Unpin` when the inner body is; reset in place.
    timer: Option<Pin<Box<Sleep>>>,
    /// The call's span, kept while a subscriber wants its time to first token (the body is
    /// read after the call returned, outside it), with the attempt's start.
    span: Option<(tracing::Span, Instant)>,
    /// When the call started (or, behind a recorder, the head came): time to first token
    /// counts from here.
    started: Instant,
    /// The stream's end has been reported to the listeners (once).
    reported: bool,
}

#[derive(Default)]
struct Scan {
    token: bool,
    complete: bool,
    last: bool,
}

impl Guarding {
    fn scan(&mut self, bytes: &[u8]) -> Scan {
        let mut scan = Scan::default();
        let rules = &self.config.rules;
        let tokens = &mut self.tokens;
        self.parser.push(bytes, |event| {
            if scan.last {
                return;
            }
            if rules.is_token(event) {
                scan.token = true;
                *tokens += 1;
            }
            scan.complete |= rules.is_complete(event);
            scan.last |= rules.is_last(event);
        });
        scan
    }

    /// Reports the stream's end to the listeners, once (the first end reported is the one).
    fn report_end(&mut self, make: impl FnOnce(Arc<str>, u64) -> StreamEvent) {
        if !self.reported {
            self.reported = true;
            let (config, tokens) = (&self.config, self.tokens);
            config.listeners.emit(|| make(config.name.clone(), tokens));
        }
    }

    fn report_completed(&mut self) {
        self.report_end(|name, tokens| StreamEvent::Completed { name, tokens });
    }

    /// The deadline passed: fail, or (once the answer is complete) end cleanly.
    fn expire(&mut self) -> Option<BoxError> {
        let error: BoxError = match self.phase {
            Phase::BeforeToken => {
                let deadline = self.config.first_token.or(self.config.idle)?;
                self.report_end(|name, _| StreamEvent::FirstTokenTimeout {
                    name,
                    deadline,
                    had_headers: true,
                });
                Box::new(FirstTokenTimeout {
                    deadline,
                    headers: true,
                })
            }
            Phase::Streaming => {
                let idle = self.config.idle?;
                self.report_end(|name, tokens| StreamEvent::Idle { name, idle, tokens });
                Box::new(StreamIdle {
                    idle,
                    tokens: self.tokens,
                })
            }
            Phase::Complete | Phase::LastBeforeLf | Phase::Ended | Phase::Failed => {
                self.phase = Phase::Ended;
                self.report_completed();
                return None;
            }
        };
        self.phase = Phase::Failed;
        Some(error)
    }

    fn poll_guarded<B>(
        &mut self,
        inner: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>>
    where
        B: Body,
        B::Data: AsRef<[u8]>,
        B::Error: Into<BoxError>,
    {
        if self.phase == Phase::LastBeforeLf {
            // The `\n` of the last event's `\r\n`, if it is already there, is the caller's;
            // the body ends now either way.
            self.phase = Phase::Ended;
            if let Poll::Ready(Some(Ok(frame))) = inner.poll_frame(cx) {
                if frame
                    .data_ref()
                    .is_some_and(|data| data.as_ref().first() == Some(&b'\n'))
                {
                    return Poll::Ready(Some(Ok(frame)));
                }
            }
            return Poll::Ready(None);
        }
        if matches!(self.phase, Phase::Ended | Phase::Failed) {
            return Poll::Ready(None);
        }
        match inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let scan = self.scan(data.as_ref());
                    let waiting = matches!(self.phase, Phase::BeforeToken | Phase::Streaming);
                    if scan.token {
                        if self.phase == Phase::BeforeToken {
                            self.phase = Phase::Streaming;
                            if let Some((span, started)) = self.span.take() {
                                crate::call_span::record_ttft(&span, started.elapsed());
                            }
                            let (config, started) = (&self.config, self.started);
                            config.listeners.emit(|| StreamEvent::FirstToken {
                                name: config.name.clone(),
                                ttft: started.elapsed(),
                            });
                        }
                        self.deadline = self
                            .config
                            .idle
                            .and_then(|idle| Instant::now().checked_add(idle));
                    } else if waiting
                        && !scan.complete
                        && !scan.last
                        && self.deadline.is_some_and(|d| d <= Instant::now())
                    {
                        // Keepalives kept coming, but the deadline has passed. A frame that
                        // ends the answer is exempt: found past the deadline, it may have
                        // waited in a buffer for a caller that read late, which is no sign
                        // of an idle upstream.
                        return Poll::Ready(self.expire().map(Err));
                    }
                    if scan.complete && self.phase != Phase::Ended {
                        self.phase = Phase::Complete;
                    }
                    if scan.last {
                        self.phase = match data.as_ref().last() {
                            Some(b'\r') => Phase::LastBeforeLf,
                            _ => Phase::Ended,
                        };
                        self.report_completed();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.phase = Phase::Failed;
                self.report_end(|name, tokens| StreamEvent::Failed { name, tokens });
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                if matches!(self.phase, Phase::BeforeToken | Phase::Streaming)
                    && self.config.rules.requires_completion()
                {
                    self.phase = Phase::Failed;
                    self.report_end(|name, tokens| StreamEvent::Truncated { name, tokens });
                    return Poll::Ready(Some(Err(Box::new(StreamTruncated {
                        rules: self.config.rules.name(),
                        tokens: self.tokens,
                    }))));
                }
                self.phase = Phase::Ended;
                self.report_completed();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(deadline) = self.deadline else {
                    return Poll::Pending;
                };
                let timer = match &mut self.timer {
                    Some(timer) => {
                        if timer.deadline() != deadline {
                            timer.as_mut().reset(deadline);
                        }
                        timer
                    }
                    None => self
                        .timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(self.expire().map(Err))
            }
        }
    }
}

impl Drop for Guarding {
    /// A stream dropped before its end was reported: the caller stopped reading, or read up
    /// to the complete event and no further (a clean end).
    fn drop(&mut self) {
        if self.reported || !self.config.listeners.is_active() {
            return;
        }
        match self.phase {
            Phase::BeforeToken | Phase::Streaming => {
                self.report_end(|name, tokens| StreamEvent::Dropped { name, tokens });
            }
            Phase::Complete | Phase::LastBeforeLf | Phase::Ended | Phase::Failed => {
                self.report_completed();
            }
        }
    }
}

pin_project! {
    /// A response body held to a stream's deadlines and completion rules; made by
    /// [`StreamGuard`](super::StreamGuard) for streamed responses: a 2xx status and a
    /// `text/event-stream` content type, or none (see
    /// [`stream_when`](super::StreamGuardBuilder::stream_when)). Other bodies (error
    /// statuses, `application/json` answers) pass through unchanged.
    ///
    /// | the stream | the body yields |
    /// |---|---|
    /// | sends no token by the first-token deadline (counted from the call) | [`FirstTokenTimeout`] |
    /// | sends no token for the idle deadline after a token | [`StreamIdle`] |
    /// | ends before the event that completes the answer | [`StreamTruncated`] |
    /// | goes silent after the answer is complete | its end (a clean end) |
    /// | sends the last event (`[DONE]`) | that frame, then reports its end at once |
    ///
    /// Comments (keepalives) and empty events never count as tokens. Behind a circuit breaker
    /// (the guard inside the breaker's layer), each of these errors is a failure of the call.
    ///
    /// Errors are boxed ([`BoxError`]), as in `tower_http::timeout::TimeoutBody`. The body is
    /// `Unpin` when the inner body is.
    pub struct GuardedBody<B: Body> {
        #[pin]
        inner: B,
        guarding: Option<Guarding>,
        // Frames read while waiting for the first token, given to the caller first.
        prefix: VecDeque<Frame<B::Data>>,
    }

    impl<B: Body> PinnedDrop for GuardedBody<B> {
        /// A caller that stops when [`is_end_stream`](Body::is_end_stream) says the body is
        /// over (hyper does, forwarding a body) never polls for its `None`: when every frame
        /// was read and the inner body is at its end, with rules that need no complete event,
        /// the stream completed. Anything else dropped early is for [`Guarding`]'s drop.
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(guarding) = this.guarding {
                let read_to_the_end = matches!(guarding.phase, Phase::BeforeToken | Phase::Streaming)
                    && !guarding.config.rules.requires_completion()
                    && this.prefix.is_empty()
                    && this.inner.is_end_stream();
                if read_to_the_end {
                    guarding.phase = Phase::Ended;
                    guarding.report_completed();
                }
            }
        }
    }
}

impl<B: Body> GuardedBody<B> {
    /// A body held to `config`'s rules, for a call that started at `started`. `timer` is the
    /// call's head timer, if it made one, reused.
    fn guarded(
        inner: B,
        config: Arc<GuardConfig>,
        started: Instant,
        timer: Option<Pin<Box<Sleep>>>,
    ) -> Self {
        let deadline = config
            .first_token_deadline(started)
            .or_else(|| Instant::now().checked_add(config.idle?));
        Self {
            inner,
            guarding: Some(Guarding {
                config,
                parser: SseParser::new(),
                phase: Phase::BeforeToken,
                tokens: 0,
                deadline,
                timer,
                span: crate::call_span::interested().map(|span| (span, started)),
                started,
                reported: false,
            }),
            prefix: VecDeque::new(),
        }
    }

    /// The body of a response whose head is `parts`: guarded when `config` says the response
    /// is a stream, passed through otherwise.
    pub(crate) fn for_response(
        parts: &http::response::Parts,
        inner: B,
        config: &Arc<GuardConfig>,
        started: Instant,
        timer: Option<Pin<Box<Sleep>>>,
    ) -> Self {
        if config.guards(parts) {
            Self::guarded(inner, config.clone(), started, timer)
        } else {
            Self::passthrough(inner)
        }
    }

    /// A body that is not guarded (an error response, a JSON answer): frames pass through.
    pub(crate) fn passthrough(inner: B) -> Self {
        Self {
            inner,
            guarding: None,
            prefix: VecDeque::new(),
        }
    }

    /// True when the body is held to the stream rules (its response was a 2xx stream).
    pub fn is_guarded(&self) -> bool {
        self.guarding.is_some()
    }

    /// How many tokens the stream has sent so far.
    pub fn tokens(&self) -> u64 {
        self.guarding.as_ref().map_or(0, |g| g.tokens)
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body, mutably. Reading frames from it directly bypasses the guard.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }
}

impl<B> GuardedBody<B>
where
    B: Body,
    B::Data: AsRef<[u8]>,
    B::Error: Into<BoxError>,
{
    /// Reads (and keeps, for the caller) frames until the first token, the end of the stream
    /// or an error.
    pub(crate) fn poll_first_token(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), BoxError>> {
        let mut this = self.project();
        let Some(guarding) = this.guarding.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while guarding.phase == Phase::BeforeToken {
            match ready!(guarding.poll_guarded(this.inner.as_mut(), cx)) {
                Some(Ok(frame)) => this.prefix.push_back(frame),
                Some(Err(error)) => return Poll::Ready(Err(error)),
                None => break,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body,
    B::Data: AsRef<[u8]>,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Some(frame) = this.prefix.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match this.guarding {
            Some(guarding) => guarding.poll_guarded(this.inner, cx),
            None => this.inner.poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        if !self.prefix.is_empty() {
            return false;
        }
        let Some(guarding) = &self.guarding else {
            return self.inner.is_end_stream();
        };
        match guarding.phase {
            Phase::Ended | Phase::Failed => true,
            Phase::Complete => self.inner.is_end_stream(),
            // One more poll may give the last line break's `\n`.
            Phase::LastBeforeLf => false,
            // Not yet: the next poll reports the truncation.
            Phase::BeforeToken | Phase::Streaming => {
                !guarding.config.rules.requires_completion() && self.inner.is_end_stream()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.guarding {
            Some(g) if matches!(g.phase, Phase::Ended | Phase::Failed) => SizeHint::with_exact(0),
            _ if !self.prefix.is_empty() => SizeHint::default(),
            _ => self.inner.size_hint(),
        }
    }
}

impl<B: Body> fmt::Debug for GuardedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("GuardedBody");
        if let Some(g) = &self.guarding {
            s.field("phase", &g.phase).field("tokens", &g.tokens);
        }
        s.field("buffered_frames", &self.prefix.len())
            .finish_non_exhaustive()
    }
}
