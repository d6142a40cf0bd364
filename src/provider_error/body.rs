use crate::BoxError;
use bytes::{Buf, Bytes};
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
    read: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    error: Option<BoxError>,
    /// `None` once it has ended.
    inner: Option<B>,
}

impl<B> ProviderErrorBody<B> {
    /// A body passed on as it is.
    pub(crate) fn untouched(inner: B) -> Self {
        Self {
            read: VecDeque::new(),
            trailers: None,
            error: None,
            inner: Some(inner),
        }
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
            read,
            trailers,
            error,
            inner,
        }
    }

    fn buffered(&self) -> u64 {
        self.read.iter().map(|b| b.len() as u64).sum()
    }
}

impl<B> fmt::Debug for ProviderErrorBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderErrorBody")
            .field("buffered", &self.buffered())
            .field("ended", &self.inner.is_none())
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
        let this = self.get_mut();
        if let Some(data) = this.read.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(error) = this.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                this.inner = None;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        Poll::Ready(Some(Ok(frame.map_data(|mut data| {
            // Free for `Bytes` (hyper's, reqwest's): the same buffer, no copy.
            data.copy_to_bytes(data.remaining())
        }))))
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty()
            && self.error.is_none()
            && self.trailers.is_none()
            && self.inner.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self.buffered();
        match &self.inner {
            None => SizeHint::with_exact(buffered),
            Some(inner) => {
                let rest = inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(buffered));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(buffered));
                }
                hint
            }
        }
    }
}
