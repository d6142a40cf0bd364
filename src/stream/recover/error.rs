//! The errors of [`Recover`](super::Recover).

use super::report::RecoveryReport;
use std::fmt;
use std::time::Duration;

/// The caller's deadline over the whole call (every provider, retry and restart) passed before
/// a complete answer.
#[derive(Debug, Clone)]
pub struct DeadlineExceeded {
    pub(crate) deadline: Duration,
    pub(crate) report: RecoveryReport,
}

impl DeadlineExceeded {
    /// The deadline that passed.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// What was tried before it passed.
    pub fn report(&self) -> &RecoveryReport {
        &self.report
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no complete answer within the deadline of {:?} ({} attempts)",
            self.deadline,
            self.report.attempts.len()
        )
    }
}

impl std::error::Error for DeadlineExceeded {}

/// A stream failed after its first token and was not recovered: the mode is
/// [`RecoveryMode::Error`](super::RecoveryMode::Error), or every restart allowed failed too.
/// Its `source()` is the last stream's error (a
/// [`StreamIdle`](crate::stream::StreamIdle), a [`StreamTruncated`](crate::stream::StreamTruncated),
/// a [`MalformedEvent`], a transport error).
#[derive(Debug)]
pub struct AnswerIncomplete {
    pub(crate) report: RecoveryReport,
    pub(crate) source: crate::BoxError,
}

impl AnswerIncomplete {
    /// What was tried, each failed stream included.
    pub fn report(&self) -> &RecoveryReport {
        &self.report
    }
}

impl fmt::Display for AnswerIncomplete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the answer is incomplete after {} attempts: {}",
            self.report.attempts.len(),
            self.source
        )
    }
}

impl std::error::Error for AnswerIncomplete {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// A server-sent event whose data is neither JSON nor `[DONE]`: the stream is corrupt, and
/// an answer read whole ([`RecoveryMode::Restart`](super::RecoveryMode::Restart)) is read again.
#[derive(Debug, Clone)]
pub struct MalformedEvent {
    pub(crate) data: String,
}

impl MalformedEvent {
    /// The event's data (at most 200 bytes of it).
    pub fn data(&self) -> &str {
        &self.data
    }
}

impl fmt::Display for MalformedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed event in the stream: {:?}", self.data)
    }
}

impl std::error::Error for MalformedEvent {}
