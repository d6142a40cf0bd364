use super::{HoldPermit, Permit};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// Keeps an HTTP call's slot until its response body has ended (last frame, error) or is
/// dropped, so that a streaming answer counts as in flight until its last byte. Set it with
/// [`BulkheadLayer::hold_until_body_end`](super::BulkheadLayer::hold_until_body_end); the
/// response body becomes a [`BulkheadBody`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HoldUntilBodyEnd;

impl<B: Body> HoldPermit<http::Response<B>> for HoldUntilBodyEnd {
    type Response = http::Response<BulkheadBody<B>>;

    fn hold(&self, response: http::Response<B>, permit: Permit) -> Self::Response {
        response.map(|body| BulkheadBody::new(body, permit))
    }
}

pin_project! {
    /// A response body that holds its call's bulkhead slot until the body ends, fails, or is
    /// dropped. Made by [`HoldUntilBodyEnd`].
    pub struct BulkheadBody<B> {
        #[pin]
        inner: B,
        permit: Option<Permit>,
    }
}

impl<B: Body> BulkheadBody<B> {
    pub(crate) fn new(inner: B, permit: Permit) -> Self {
        // An empty body may never be polled: give the slot back now.
        let permit = (!inner.is_end_stream()).then_some(permit);
        Self { inner, permit }
    }
}

impl<B> BulkheadBody<B> {
    /// True while the body still holds its slot.
    pub fn holds_permit(&self) -> bool {
        self.permit.is_some()
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body; the slot is given back.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for BulkheadBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            Some(Ok(_)) => this.inner.is_end_stream(),
            Some(Err(_)) | None => true,
        };
        if ended {
            this.permit.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for BulkheadBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadBody")
            .field("holds_permit", &self.holds_permit())
            .finish_non_exhaustive()
    }
}
