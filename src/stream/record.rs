//! The stream guard as a breaker's recorder: how the LLM stack guards its streams.

use super::body::GuardedBody;
use super::rules::SseRules;
use super::service::{GuardResponse, StreamGuardLayer};
use crate::circuit_breaker::{Permit, RecordOutcome};
use crate::http::HttpClassifier;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Guards a streamed answer's body (first-token and idle deadlines, completion rule) as it
/// arrives, then hands the response to `inner`, the breaker's recorder (an
/// [`HttpClassifier`] by default), which records the call when the guarded body ends: a stream
/// that misses a deadline or ends before its complete event is a failure. Responses that are
/// not streams (an `application/json` answer, an error status) go to `inner` untouched.
///
/// This is how [`StandardResilience`](crate::stack::StandardResilience)'s LLM presets guard
/// streams, inside the breaker and the attempt timeout, through
/// [`record_with`](crate::stack::Builder::record_with). As a recorder it sees the response
/// head, not the call: the first-token deadline counts from the head (the attempt timeout
/// bounds the wait for the head), and the guard's errors come from the body, so the caller and
/// the breaker see them but a retry does not (no retry ever happens mid-stream). For failover
/// or hedging before the first token, put a [`StreamGuardLayer`] under each provider instead.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::http::HttpClassifier;
/// use tower_breaker::stack::StandardResilience;
/// use tower_breaker::stream::{SseRules, StreamGuardLayer, StreamRecorder};
///
/// // The LLM preset, with a longer wait for a reasoning model's first token.
/// let guard = StreamGuardLayer::builder()
///     .first_token_timeout(Duration::from_secs(300))
///     .idle_timeout(Duration::from_secs(30))
///     .rules(SseRules::openai())
///     .build()?;
/// let stack = StandardResilience::builder("openai")
///     .llm()
///     .record_with(StreamRecorder::new(&guard, HttpClassifier::new()))
///     .build()?;
/// # let _ = stack;
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct StreamRecorder<R = HttpClassifier> {
    guard: StreamGuardLayer,
    inner: R,
}

impl<R> StreamRecorder<R> {
    /// Guards with `guard`'s deadlines, rules and stream test, then records with `inner`.
    pub fn new(guard: &StreamGuardLayer, inner: R) -> Self {
        Self {
            guard: guard.clone(),
            inner,
        }
    }

    /// The recorder the guarded response goes to.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The guard's events go to `listener` too (the stack's
    /// [`on_stream_event`](crate::stack::Builder::on_stream_event)).
    #[cfg(feature = "stack")]
    pub(crate) fn add_listener(
        &mut self,
        listener: Arc<dyn crate::events::Listener<super::StreamEvent>>,
    ) {
        self.guard.config_mut().listeners.push(listener);
    }
}

impl StreamRecorder {
    /// The LLM presets' recorder: `rules`, a first token within 60 s of the response head and
    /// at most 30 s between tokens, then an [`HttpClassifier`] with its defaults.
    pub fn llm(rules: SseRules) -> Self {
        Self::llm_named(Arc::from("stream"), rules)
    }

    /// [`llm`](Self::llm), its guard named `name` in events (the stack's name).
    pub(crate) fn llm_named(name: Arc<str>, rules: SseRules) -> Self {
        let mut guard =
            StreamGuardLayer::preset(Duration::from_secs(60), Duration::from_secs(30), rules);
        guard.config_mut().name = name;
        Self::new(&guard, HttpClassifier::new())
    }
}

impl<Res, E, R> RecordOutcome<Res, E> for StreamRecorder<R>
where
    Res: GuardResponse,
    R: RecordOutcome<Res::Guarded, E>,
{
    type Response = R::Response;

    fn record(&self, result: Result<Res, E>, permit: Permit) -> Result<Self::Response, E> {
        let guarded = result.map(|response| {
            let (parts, body) = response.into_http().into_parts();
            let config = self.guard.config();
            let body = GuardedBody::for_response(&parts, body, config, Instant::now(), None);
            Res::from_http(http::Response::from_parts(parts, body))
        });
        self.inner.record(guarded, permit)
    }
}
