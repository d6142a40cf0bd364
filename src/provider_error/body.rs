use crate::BoxError;
use crate::http::Replay;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The body of a response that passed a
/// [`ProviderErrorLayer`](super::ProviderErrorLayer): the bytes it read from an error body (at
/// most its bound, and the frame that crossed it), then the rest of the original body, so the
/// caller reads the same bytes the provider sent. A body error met while reading comes after
/// the bytes read before it.
pub struct ProviderErrorBody<B> {
    replay: Replay<B>,
}

impl<B> ProviderErrorBody<B> {
    /// A body passed on as it is.
    pub(crate) fn untouched(inner: B) -> Self {
        Self::read(VecDeque::new(), None, None, Some(inner))
    }

    /// The bytes read, then what was left: the rest of `inner` (unless it ended), its
    /// trailers or its error.
    pub(crate) fn read(
        read: VecDeque<Bytes>,
        trailers: Option<HeaderMap>,
        error: Option<BoxError>,
        inner: Option<B>,
    ) -> Self {
        Self {
            replay: Replay::new(read, trailers, error, inner),
        }
    }
}

impl<B> fmt::Debug for ProviderErrorBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderErrorBody")
            .field("buffered", &self.replay.buffered())
            .field("ended", &!self.replay.streaming())
            .finish_non_exhaustive()
    }
}

impl<B> Body for ProviderErrorBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().replay).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.replay.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.replay.size_hint()
    }
}
