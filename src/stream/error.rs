//! The ways a guarded stream fails.

use std::fmt;
use std::time::Duration;

/// No token arrived within the time-to-first-token deadline, counted from the call (headers,
/// comments, keepalives, empty events and chunks without content, such as OpenAI's role-only
/// chunk, do not count). The call is a failure.
///
/// ```
/// # use tower_breaker::stream::FirstTokenTimeout;
/// fn is_ttft_miss(err: &tower_breaker::BoxError) -> bool {
///     err.is::<FirstTokenTimeout>()
/// }
/// # let _ = is_ttft_miss;
/// ```
#[derive(Debug, Clone)]
pub struct FirstTokenTimeout {
    pub(crate) deadline: Duration,
    pub(crate) headers: bool,
}

impl FirstTokenTimeout {
    /// The deadline that passed.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// True when the response head had arrived (the upstream answered, then sent no token).
    pub fn had_headers(&self) -> bool {
        self.headers
    }
}

impl fmt::Display for FirstTokenTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.headers {
            "after the response head"
        } else {
            "not even a response head"
        };
        write!(
            f,
            "no token within the first-token deadline of {:.3}s ({what})",
            self.deadline.as_secs_f64()
        )
    }
}

impl std::error::Error for FirstTokenTimeout {}

/// A stream that had produced tokens sent no further token for the idle deadline (keepalive
/// comments and empty events do not count). The call is a failure.
#[derive(Debug, Clone)]
pub struct StreamIdle {
    pub(crate) idle: Duration,
    pub(crate) tokens: u64,
}

impl StreamIdle {
    /// The idle deadline that passed.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// How many tokens the stream had sent before it went silent.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }
}

impl fmt::Display for StreamIdle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stream sent no token for {:.3}s after {} tokens",
            self.idle.as_secs_f64(),
            self.tokens
        )
    }
}

impl std::error::Error for StreamIdle {}

/// The stream ended without the event that completes an answer (`data: [DONE]`, a
/// `finish_reason`, `message_stop`, by its [`SseRules`](super::SseRules)): the answer is cut.
/// The call is a failure, never a success.
#[derive(Debug, Clone)]
pub struct StreamTruncated {
    pub(crate) rules: &'static str,
    pub(crate) tokens: u64,
}

impl StreamTruncated {
    /// How many tokens arrived before the end.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The name of the rules that were expected ([`SseRules::name`](super::SseRules::name)).
    pub fn rules(&self) -> &'static str {
        self.rules
    }
}

impl fmt::Display for StreamTruncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stream ended after {} tokens without its final event ({} rules)",
            self.tokens, self.rules
        )
    }
}

impl std::error::Error for StreamTruncated {}
