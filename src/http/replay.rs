//! A body that replays what was read ahead of the caller, then goes on with the rest.

use crate::BoxError;
use ::http::HeaderMap;
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The chunks read ahead of the caller (then the trailers or the error met while reading, if
/// any), then the rest of the body, so the caller reads the same frames the upstream sent.
/// The body of both `ProviderErrorBody` (an error body read to parse it) and `RecoveredBody` (an
/// answer read ahead to check it).
pub(crate) struct Replay<B> {
    read: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    error: Option<BoxError>,
    /// `None` once it has ended, or when it was read to its end.
    rest: Option<B>,
}

impl<B> Replay<B> {
    /// `read`, then `trailers` or `error`, then `rest` (unless it was read to its end).
    pub(crate) fn new(
        read: VecDeque<Bytes>,
        trailers: Option<HeaderMap>,
        error: Option<BoxError>,
        rest: Option<B>,
    ) -> Self {
        Self {
            read,
            trailers,
            error,
            rest,
        }
    }

    /// The bytes read and not replayed yet.
    pub(crate) fn buffered(&self) -> u64 {
        self.read.iter().map(|b| b.len() as u64).sum()
    }

    /// True while something read ahead is still to be replayed.
    pub(crate) fn replaying(&self) -> bool {
        !self.read.is_empty() || self.trailers.is_some() || self.error.is_some()
    }

    /// True while the rest of the body is still to be read.
    pub(crate) fn streaming(&self) -> bool {
        self.rest.is_some()
    }

    /// Drops the rest of the body: nothing comes after what is still to be replayed.
    #[cfg(feature = "stream")]
    pub(crate) fn end(&mut self) {
        self.rest = None;
    }
}

impl<B> Body for Replay<B>
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
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(rest).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                this.rest = None;
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
        !self.replaying() && self.rest.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self.buffered();
        match &self.rest {
            None => SizeHint::with_exact(buffered),
            Some(rest) => {
                let rest = rest.size_hint();
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    fn chunks(chunks: &[&'static [u8]]) -> VecDeque<Bytes> {
        chunks.iter().copied().map(Bytes::from_static).collect()
    }

    #[tokio::test]
    async fn the_chunks_read_come_first_then_the_rest_of_the_body() {
        let rest = Full::new(Bytes::from_static(b"cd"));
        let body = Replay::new(chunks(&[b"a", b"b"]), None, None, Some(rest));
        assert_eq!(body.size_hint().exact(), Some(4));
        assert!(!body.is_end_stream());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"abcd");
    }

    #[tokio::test]
    async fn an_error_or_trailers_read_come_after_the_chunks_read_before_them() {
        let mut failed =
            Replay::<Full<Bytes>>::new(chunks(&[b"a"]), None, Some("cut".into()), None);
        assert_eq!(failed.size_hint().exact(), Some(1));
        let data = failed.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&data[..], b"a");
        assert!(failed.replaying());
        let error = failed.frame().await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "cut");
        assert!(failed.is_end_stream());
        assert!(failed.frame().await.is_none());

        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let ended = Replay::<Full<Bytes>>::new(chunks(&[b"a"]), Some(trailers), None, None);
        assert!(!ended.is_end_stream());
        let collected = ended.collect().await.unwrap();
        assert_eq!(
            collected.trailers().map(|t| t["grpc-status"].clone()),
            Some("0".parse().unwrap())
        );
        assert_eq!(&collected.to_bytes()[..], b"a");
    }
}
