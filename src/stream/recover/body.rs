//! The body of a recovered answer.

use super::error::DeadlineExceeded;
use super::report::RecoveryReport;
use crate::BoxError;
use crate::http::Replay;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;

/// The body of a [`Recover`](super::Recover) answer: the bytes read ahead (an answer read
/// whole in [`RecoveryMode::Restart`](super::RecoveryMode::Restart)), then the rest of the
/// stream, if any, held to the caller's deadline.
pub struct RecoveredBody<B> {
    replay: Replay<Pin<Box<B>>>,
    deadline: Option<BodyDeadline>,
}

struct BodyDeadline {
    sleep: Pin<Box<Sleep>>,
    after: Duration,
    report: RecoveryReport,
}

impl<B> fmt::Debug for RecoveredBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveredBody")
            .field(
                "prefix",
                &self.replay.replaying().then(|| self.replay.buffered()),
            )
            .field("streaming", &self.replay.streaming())
            .finish()
    }
}

impl<B> RecoveredBody<B> {
    /// `prefix`, then `rest` (if any), which fails with [`DeadlineExceeded`] at `deadline`.
    pub(crate) fn new(
        prefix: Bytes,
        rest: Option<Pin<Box<B>>>,
        deadline: Option<(tokio::time::Instant, Duration, RecoveryReport)>,
    ) -> Self {
        let prefix = if prefix.is_empty() {
            VecDeque::new()
        } else {
            VecDeque::from([prefix])
        };
        Self {
            deadline: rest
                .as_ref()
                .and(deadline)
                .map(|(at, after, report)| BodyDeadline {
                    sleep: Box::pin(tokio::time::sleep_until(at)),
                    after,
                    report,
                }),
            replay: Replay::new(prefix, None, None, rest),
        }
    }
}

impl<B> Body for RecoveredBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Every field is `Unpin` (the stream is boxed).
        let this = self.get_mut();
        // The deadline holds the rest of the stream, not the prefix already read.
        if !this.replay.replaying() && this.replay.streaming() {
            if let Some(deadline) = &mut this.deadline {
                if deadline.sleep.as_mut().poll(cx).is_ready() {
                    this.replay.end();
                    let error = DeadlineExceeded {
                        deadline: deadline.after,
                        report: std::mem::take(&mut deadline.report),
                    };
                    return Poll::Ready(Some(Err(error.into())));
                }
            }
        }
        let frame = ready!(Pin::new(&mut this.replay).poll_frame(cx));
        // An error ends the answer.
        if matches!(frame, Some(Err(_))) {
            this.replay.end();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.replay.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.replay.size_hint()
    }
}
