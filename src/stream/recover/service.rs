//! [`RecoverLayer`], [`Recover`] and the recovery loop.

use super::body::RecoveredBody;
use super::error::{AnswerIncomplete, DeadlineExceeded};
use super::report::{Attempt, AttemptOutcome, RecoveryReport, from_failover, scan};
use crate::BoxError;
use crate::config::{Check, ConfigError, MAX_DURATION};
use crate::failover::{FailoverReport, TryLast};
use crate::stream::SseRules;
use bytes::{Bytes, BytesMut};
use http_body::Body;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

/// What [`Recover`] does when a stream fails after its first token (it is cut, it stalls, or
/// an event in it is malformed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryMode {
    /// Stream to the caller as it comes; a failure after the first token is the body's error
    /// (the tokens already sent stay sent). The default.
    #[default]
    Error,
    /// Read the answer whole (up to
    /// [`max_buffered_bytes`](RecoverBuilder::max_buffered_bytes)) before the caller sees it;
    /// when the stream fails, send the request again (a failover tries the provider that
    /// failed last), up to [`max_restarts`](RecoverBuilder::max_restarts) times, within the
    /// deadline. The caller gets one complete answer or [`AnswerIncomplete`]. For callers that
    /// need the answer, not its pace: agents, tools, batch.
    Restart,
}

/// The default of [`RecoverBuilder::max_restarts`].
pub const DEFAULT_MAX_RESTARTS: u32 = 2;
/// The default of [`RecoverBuilder::max_buffered_bytes`]: 4 MiB.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 4 << 20;

#[derive(Debug, Clone)]
struct Config {
    mode: RecoveryMode,
    max_restarts: u32,
    max_buffered_bytes: usize,
    deadline: Option<Duration>,
    rules: SseRules,
}

/// Builds a [`RecoverLayer`].
#[derive(Debug, Clone)]
pub struct RecoverBuilder {
    config: Config,
}

impl RecoverBuilder {
    /// What to do with a stream that fails after its first token. Default:
    /// [`RecoveryMode::Error`].
    pub fn mode(mut self, mode: RecoveryMode) -> Self {
        self.config.mode = mode;
        self
    }

    /// How many times [`RecoveryMode::Restart`] sends the request again; `0 ..= 10`. Default:
    /// [`DEFAULT_MAX_RESTARTS`]. The inner service is called at most `1 + max_restarts` times.
    pub fn max_restarts(mut self, restarts: u32) -> Self {
        self.config.max_restarts = restarts;
        self
    }

    /// How much of an answer [`RecoveryMode::Restart`] reads before the caller sees it; past
    /// this, the caller gets what was read and the rest streamed, and a failure in the rest is
    /// the body's error. `1 KiB ..= 1 GiB`. Default: [`DEFAULT_MAX_BUFFERED_BYTES`].
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.config.max_buffered_bytes = bytes;
        self
    }

    /// The caller's deadline over the whole call: every provider, retry and restart inside,
    /// and (in [`RecoveryMode::Error`]) the streamed body. Past it, the call or the body fails
    /// with [`DeadlineExceeded`]. `1 ms ..= 24 h`. Default: none.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = Some(deadline);
        self
    }

    /// How tokens are told from other events, for the report. Default: [`SseRules::openai`].
    pub fn rules(mut self, rules: SseRules) -> Self {
        self.config.rules = rules;
        self
    }

    /// The layer, or the setting out of range.
    pub fn build(self) -> Result<RecoverLayer, ConfigError> {
        let check = Check {
            component: "recover",
        };
        let config = self.config;
        check.range_u64("max_restarts", u64::from(config.max_restarts), 0, 10)?;
        check.range_u64(
            "max_buffered_bytes",
            config.max_buffered_bytes as u64,
            1 << 10,
            1 << 30,
        )?;
        if let Some(deadline) = config.deadline {
            check.duration("deadline", deadline, Duration::from_millis(1), MAX_DURATION)?;
        }
        Ok(RecoverLayer {
            config: Arc::new(config),
        })
    }
}

/// Recovers answers whose stream fails after the first token; see the
/// [module docs](super). Clones share one configuration; the layer holds no state.
#[derive(Debug, Clone)]
pub struct RecoverLayer {
    config: Arc<Config>,
}

impl RecoverLayer {
    /// A builder: [`RecoveryMode::Error`], no deadline, [`SseRules::openai`].
    pub fn builder() -> RecoverBuilder {
        RecoverBuilder {
            config: Config {
                mode: RecoveryMode::Error,
                max_restarts: DEFAULT_MAX_RESTARTS,
                max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
                deadline: None,
                rules: SseRules::openai(),
            },
        }
    }
}

impl<S> Layer<S> for RecoverLayer {
    type Service = Recover<S>;

    fn layer(&self, inner: S) -> Recover<S> {
        Recover {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service of [`RecoverLayer`].
#[derive(Debug, Clone)]
pub struct Recover<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Recover<S> {
    /// The layer's builder.
    pub fn layer() -> RecoverBuilder {
        RecoverLayer::builder()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The future of a [`Recover`] call.
// Boxed, unlike the per-request futures elsewhere: a recovered call may read a whole answer
// and send the request again, an LLM call of seconds, so one allocation is nothing, and the
// loop reads far more plainly as `async` code.
pub struct ResponseFuture<RB> {
    inner: Pin<Box<dyn Future<Output = Recovered<RB>> + Send>>,
}

type Recovered<RB> = Result<http::Response<RecoveredBody<RB>>, BoxError>;

impl<RB> fmt::Debug for ResponseFuture<RB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<RB> Future for ResponseFuture<RB> {
    type Output = Result<http::Response<RecoveredBody<RB>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, B, RB> Service<http::Request<B>> for Recover<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Clone + Send + 'static,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = http::Response<RecoveredBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> ResponseFuture<RB> {
        // The ready service makes the first call; a fresh clone (polled ready) each restart.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        ResponseFuture {
            inner: Box::pin(recover(ready, self.config.clone(), req)),
        }
    }
}

/// How much of a body was read.
enum Read<RB> {
    /// All of it.
    Whole(Bytes),
    /// What came before its error.
    Broken(Bytes, BoxError),
    /// The bound, and the rest unread.
    Prefix(Bytes, Pin<Box<RB>>),
}

async fn read<RB>(body: RB, max: usize) -> Read<RB>
where
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let mut body = Box::pin(body);
    let mut read = BytesMut::new();
    loop {
        if read.len() >= max {
            return Read::Prefix(read.freeze(), body);
        }
        match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            None => return Read::Whole(read.freeze()),
            Some(Err(e)) => return Read::Broken(read.freeze(), e.into()),
            // Trailers are dropped: the body is replayed as data.
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read.extend_from_slice(&data);
                }
            }
        }
    }
}

/// `future`, or `None` once `deadline` passes.
async fn within<F: Future>(deadline: Option<Instant>, future: F) -> Option<F::Output> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, future).await.ok(),
        None => Some(future.await),
    }
}

fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

async fn recover<S, B, RB>(
    mut service: S,
    config: Arc<Config>,
    req: http::Request<B>,
) -> Result<http::Response<RecoveredBody<RB>>, BoxError>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Clone,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let deadline = config.deadline.map(|after| Instant::now() + after);
    let late = |report: &RecoveryReport| -> BoxError {
        Box::new(DeadlineExceeded {
            deadline: config.deadline.unwrap_or_default(),
            report: report.clone(),
        })
    };
    let mut report = RecoveryReport::default();
    let mut try_last: Vec<Arc<str>> = Vec::new();
    let mut first = true;
    loop {
        let mut attempt = req.clone();
        if !try_last.is_empty() {
            attempt.extensions_mut().insert(TryLast(try_last.clone()));
        }
        if !std::mem::take(&mut first) {
            service = service.clone();
        }
        let head = async {
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            service.call(attempt).await.map_err(Into::into)
        };
        // An error before the first token is the inner failover's or retry's to handle: it
        // reaches the caller as it is.
        let response: http::Response<RB> = match within(deadline, head).await {
            None => return Err(late(&report)),
            Some(result) => result?,
        };
        let (provider, mut before, requests) =
            from_failover(response.extensions().get::<FailoverReport>());
        report.attempts.append(&mut before);
        let (mut parts, body) = response.into_parts();
        let mut answered = Attempt {
            provider: provider.clone(),
            outcome: AttemptOutcome::Answered,
            requests,
            tokens: 0,
            usage: None,
        };
        if config.mode == RecoveryMode::Error {
            report.provider = provider;
            report.attempts.push(answered);
            let deadline =
                deadline.map(|at| (at, config.deadline.unwrap_or_default(), report.clone()));
            parts.extensions.insert(report);
            let body = RecoveredBody::new(Bytes::new(), Some(Box::pin(body)), deadline);
            return Ok(http::Response::from_parts(parts, body));
        }

        let read = match within(deadline, read(body, config.max_buffered_bytes)).await {
            Some(read) => read,
            None => {
                answered.outcome = AttemptOutcome::Broken("the deadline passed".to_string());
                report.attempts.push(answered);
                return Err(late(&report));
            }
        };
        let stream = is_event_stream(&parts.headers);
        let (bytes, failure, rest) = match read {
            Read::Whole(bytes) => (bytes, None, None),
            Read::Broken(bytes, e) => (bytes, Some(e), None),
            Read::Prefix(bytes, rest) => (bytes, None, Some(rest)),
        };
        let mut failure = failure;
        if stream {
            let seen = scan(&bytes, &config.rules);
            answered.tokens = seen.tokens;
            answered.usage = seen.usage;
            if failure.is_none() {
                failure = seen.malformed.map(|m| Box::new(m) as BoxError);
            }
            report.model = seen.model.or(report.model.take());
        }
        let Some(failure) = failure else {
            report.provider = provider;
            report.usage = answered.usage;
            report.attempts.push(answered);
            let deadline =
                deadline.map(|at| (at, config.deadline.unwrap_or_default(), report.clone()));
            parts.extensions.insert(report);
            return Ok(http::Response::from_parts(
                parts,
                RecoveredBody::new(bytes, rest, deadline),
            ));
        };
        answered.outcome = AttemptOutcome::Broken(failure.to_string());
        report.attempts.push(answered);
        if report.restarts >= config.max_restarts {
            return Err(Box::new(AnswerIncomplete {
                report,
                source: failure,
            }));
        }
        report.restarts += 1;
        report.model = None;
        if let Some(provider) = provider {
            try_last.retain(|p| *p != provider);
            try_last.push(provider);
        }
    }
}
