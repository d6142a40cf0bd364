//! What a stream guard reports: [`StreamEvent`].

use std::sync::Arc;
use std::time::Duration;

/// Something a stream guard saw in a guarded stream. Delivered to every
/// [`Listener`](crate::events::Listener) registered with
/// [`StreamGuardBuilder::on_event`](super::StreamGuardBuilder::on_event); never built when
/// there is none.
///
/// A guarded stream reports [`FirstToken`](Self::FirstToken) when its first token comes, and
/// exactly one end: [`Completed`](Self::Completed), or the way it failed. Responses that are
/// not streams (an error status, an `application/json` answer) report nothing.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
/// use tower_breaker::stream::{StreamEvent, StreamGuardLayer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let guard = StreamGuardLayer::builder()
///     .name("openai")
///     .first_token_timeout(Duration::from_secs(10))
///     .on_event(move |event: &StreamEvent| sink.lock().unwrap().push(event.outcome()))
///     .build()?;
/// let mut client = ServiceBuilder::new().layer(guard).service(service_fn(|_: ()| async {
///     let sse = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
///     Ok::<_, tower::BoxError>(http::Response::new(Full::new(Bytes::from_static(sse.as_bytes()))))
/// }));
/// let response = client.ready().await?.call(()).await?;
/// response.into_body().collect().await?;
/// assert_eq!(*seen.lock().unwrap(), vec!["first_token", "completed"]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StreamEvent {
    /// The first token arrived.
    FirstToken {
        /// The guard's name.
        name: Arc<str>,
        /// Time to first token: from the call (a [`StreamGuardLayer`](super::StreamGuardLayer))
        /// or from the response head (a [`StreamRecorder`](super::StreamRecorder), as in the
        /// LLM stack presets).
        ttft: Duration,
    },
    /// The stream ended cleanly: its complete event came (or, with rules that require none,
    /// its body ended).
    Completed {
        /// The guard's name.
        name: Arc<str>,
        /// Tokens it sent.
        tokens: u64,
    },
    /// No token came within the first-token deadline
    /// ([`FirstTokenTimeout`](super::FirstTokenTimeout)).
    FirstTokenTimeout {
        /// The guard's name.
        name: Arc<str>,
        /// The deadline that passed.
        deadline: Duration,
        /// True when the response head had arrived.
        had_headers: bool,
    },
    /// The stream went silent for the idle deadline after a token
    /// ([`StreamIdle`](super::StreamIdle)).
    Idle {
        /// The guard's name.
        name: Arc<str>,
        /// The idle deadline that passed.
        idle: Duration,
        /// Tokens it sent before.
        tokens: u64,
    },
    /// The stream ended before its complete event
    /// ([`StreamTruncated`](super::StreamTruncated)).
    Truncated {
        /// The guard's name.
        name: Arc<str>,
        /// Tokens it sent before.
        tokens: u64,
    },
    /// The upstream's body failed (a reset connection, a protocol error).
    Failed {
        /// The guard's name.
        name: Arc<str>,
        /// Tokens it sent before.
        tokens: u64,
    },
    /// The caller dropped the stream before its end (it stopped reading).
    Dropped {
        /// The guard's name.
        name: Arc<str>,
        /// Tokens it sent before.
        tokens: u64,
    },
}

impl StreamEvent {
    /// The guard's name.
    pub fn name(&self) -> &Arc<str> {
        match self {
            StreamEvent::FirstToken { name, .. }
            | StreamEvent::Completed { name, .. }
            | StreamEvent::FirstTokenTimeout { name, .. }
            | StreamEvent::Idle { name, .. }
            | StreamEvent::Truncated { name, .. }
            | StreamEvent::Failed { name, .. }
            | StreamEvent::Dropped { name, .. } => name,
        }
    }

    /// A short name for the event, as the metrics' `outcome` label writes the ends:
    /// `first_token`, `completed`, `first_token_timeout`, `idle`, `truncated`, `failed`,
    /// `dropped`.
    pub fn outcome(&self) -> &'static str {
        match self {
            StreamEvent::FirstToken { .. } => "first_token",
            StreamEvent::Completed { .. } => "completed",
            StreamEvent::FirstTokenTimeout { .. } => "first_token_timeout",
            StreamEvent::Idle { .. } => "idle",
            StreamEvent::Truncated { .. } => "truncated",
            StreamEvent::Failed { .. } => "failed",
            StreamEvent::Dropped { .. } => "dropped",
        }
    }
}
