//! The body of a recovered answer.

use super::error::DeadlineExceeded;
use super::report::RecoveryReport;
use crate::BoxError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
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
    prefix: Option<Bytes>,
    rest: Option<Pin<Box<B>>>,
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
            .field("prefix", &self.prefix.as_ref().map(Bytes::len))
            .field("streaming", &self.rest.is_some())
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
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            deadline: rest
                .as_ref()
                .and(deadline)
                .map(|(at, after, report)| BodyDeadline {
                    sleep: Box::pin(tokio::time::sleep_until(at)),
                    after,
                    report,
                }),
            rest,
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
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(deadline) = &mut this.deadline {
            if deadline.sleep.as_mut().poll(cx).is_ready() {
                this.rest = None;
                let error = DeadlineExceeded {
                    deadline: deadline.after,
                    report: std::mem::take(&mut deadline.report),
                };
                return Poll::Ready(Some(Err(error.into())));
            }
        }
        let frame = ready!(rest.as_mut().poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            this.rest = None;
        }
        Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.as_ref().is_none_or(|rest| rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        match &self.rest {
            None => SizeHint::with_exact(prefix),
            Some(rest) => {
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + prefix);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + prefix);
                }
                hint
            }
        }
    }
}
