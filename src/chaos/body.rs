//! The response body of the HTTP layer: the upstream's body, untouched or altered by a
//! [`StreamFault`], or the body of an injected status.

use super::error::ChaosError;
use super::fault::StreamFault;
use crate::BoxError;
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;

/// An SSE comment: clients ignore it, idle timers see bytes.
const KEEPALIVE: &[u8] = b": keepalive\n\n";

pin_project! {
    /// The response body of [`Chaos`](super::Chaos) in front of an HTTP service. Without a
    /// stream fault it passes the upstream's frames through as they come.
    pub struct ChaosBody<B> {
        #[pin]
        inner: Option<B>,
        fixed: Option<Bytes>,
        fault: Option<StreamFault>,
        // The layer's name, for the error of a reset (only with a fault).
        name: Option<Arc<str>>,
        // Event splitting (only with a fault that counts or paces events).
        partial: Vec<u8>,
        splitter: EventSplitter,
        ready: VecDeque<Bytes>,
        events: usize,
        inner_done: bool,
        // The gate of the front event (trickle, stall) has been waited.
        waited: bool,
        stalled: bool,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> fmt::Debug for ChaosBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosBody")
            .field("injected", &self.fixed.is_some())
            .field("fault", &self.fault)
            .field("events", &self.events)
            .finish()
    }
}

impl<B> ChaosBody<B> {
    /// The body of an injected status.
    pub(crate) fn fixed(text: String) -> Self {
        Self::new(None, Some(Bytes::from(text)), None, None)
    }

    /// The upstream's body, altered by `fault` if any.
    pub(crate) fn wrap(body: B, stream: Option<(StreamFault, Arc<str>)>) -> Self {
        let (fault, name) = match stream {
            Some((fault, name)) => (Some(fault), Some(name)),
            None => (None, None),
        };
        Self::new(Some(body), None, fault, name)
    }

    fn new(
        inner: Option<B>,
        fixed: Option<Bytes>,
        fault: Option<StreamFault>,
        name: Option<Arc<str>>,
    ) -> Self {
        Self {
            inner,
            fixed,
            fault,
            name,
            partial: Vec::new(),
            splitter: EventSplitter::default(),
            ready: VecDeque::new(),
            events: 0,
            inner_done: false,
            waited: false,
            stalled: false,
            sleep: None,
        }
    }

    /// True when this body was made by the layer (an injected status), not by the upstream.
    pub fn is_injected(&self) -> bool {
        self.fixed.is_some() || self.inner.is_none()
    }
}

/// Cuts the upstream's bytes into SSE events. An event ends with a blank line, whatever the
/// stream's line breaks (`\n`, `\r\n` or `\r`, as the standard allows): `\n\n`,
/// `\r\n\r\n` and `\r\r` all end one. Blank lines before an event's first line belong to
/// it and end nothing. The scan goes on where the last chunk stopped.
#[derive(Debug, Default)]
struct EventSplitter {
    /// How much of `partial` has been scanned.
    scanned: usize,
    /// The scan is at the start of a line.
    line_start: bool,
    /// The event so far has a line that is not blank.
    content: bool,
}

impl EventSplitter {
    /// Moves complete events from `partial` to `ready`.
    fn split(&mut self, partial: &mut Vec<u8>, ready: &mut VecDeque<Bytes>) {
        let mut at = self.scanned;
        while let Some(&byte) = partial.get(at) {
            let end = match (byte, partial.get(at + 1)) {
                // A `\n` may follow in the next chunk: the same line break.
                (b'\r', None) => break,
                (b'\r', Some(b'\n')) => at + 2,
                (b'\r' | b'\n', _) => at + 1,
                _ => {
                    self.line_start = false;
                    self.content = true;
                    at += 1;
                    continue;
                }
            };
            if self.line_start && self.content {
                let rest = partial.split_off(end);
                ready.push_back(Bytes::from(std::mem::replace(partial, rest)));
                self.content = false;
                at = 0;
            } else {
                at = end;
            }
            self.line_start = true;
        }
        self.scanned = at;
    }
}

/// True for the event that ends an LLM stream: OpenAI's `data: [DONE]`, Anthropic's
/// `message_stop`.
fn is_terminal(event: &[u8]) -> bool {
    let text = String::from_utf8_lossy(event);
    text.contains("data: [DONE]") || text.contains("message_stop")
}

/// Starts (if needed) and polls a timer of `after`.
fn poll_sleep(
    sleep: &mut Option<Pin<Box<Sleep>>>,
    after: Duration,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let timer = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
    ready!(timer.as_mut().poll(cx));
    *sleep = None;
    Poll::Ready(())
}

impl<B> Body for ChaosBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(fixed) = this.fixed.take() {
            return Poll::Ready(Some(Ok(Frame::data(fixed))));
        }
        let fault = match *this.fault {
            None => {
                let Some(inner) = this.inner.as_pin_mut() else {
                    return Poll::Ready(None);
                };
                return inner.poll_frame(cx).map(|frame| {
                    frame.map(|result| {
                        result
                            .map(|frame| {
                                frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
                            })
                            .map_err(Into::into)
                    })
                });
            }
            Some(fault) => fault,
        };
        match fault {
            StreamFault::StallBeforeFirstByte(stall) => {
                ready!(poll_sleep(this.sleep, stall, cx));
                // Stalled once: the rest passes through.
                *this.fault = None;
                // Polling again is the pass-through branch.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            StreamFault::KeepaliveOnly(interval) => {
                ready!(poll_sleep(this.sleep, interval, cx));
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(KEEPALIVE)))));
            }
            StreamFault::StallAfter { .. } | StreamFault::Cut { .. } | StreamFault::Trickle(_) => {}
        }
        loop {
            if let Some(event) = this.ready.front() {
                match fault {
                    StreamFault::Cut { events, reset }
                        if *this.events >= events || is_terminal(event) =>
                    {
                        this.ready.clear();
                        this.inner.set(None);
                        *this.fault = None;
                        if reset {
                            let cut = ChaosError::new(
                                this.name.clone().unwrap_or_else(|| Arc::from("chaos")),
                                Arc::from("stream cut mid-way (connection reset)"),
                            );
                            return Poll::Ready(Some(Err(Box::new(cut))));
                        }
                        return Poll::Ready(None);
                    }
                    StreamFault::StallAfter { events, stall }
                        if *this.events == events && !*this.stalled =>
                    {
                        ready!(poll_sleep(this.sleep, stall, cx));
                        *this.stalled = true;
                    }
                    StreamFault::Trickle(interval) if !*this.waited => {
                        ready!(poll_sleep(this.sleep, interval, cx));
                        *this.waited = true;
                    }
                    _ => {}
                }
                *this.waited = false;
                *this.events += 1;
                let event = this.ready.pop_front().unwrap_or_default();
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            if *this.inner_done {
                if this.partial.is_empty() {
                    return Poll::Ready(None);
                }
                // A last event without its blank line (or with a final `\r` that waited for
                // a `\n`).
                *this.splitter = EventSplitter::default();
                let rest = std::mem::take(this.partial);
                this.ready.push_back(Bytes::from(rest));
                continue;
            }
            let Some(inner) = this.inner.as_mut().as_pin_mut() else {
                return Poll::Ready(None);
            };
            match ready!(inner.poll_frame(cx)) {
                None => *this.inner_done = true,
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            let n = chunk.len();
                            this.partial.extend_from_slice(chunk);
                            data.advance(n);
                        }
                        this.splitter.split(this.partial, this.ready);
                    }
                    Err(frame) => {
                        // Trailers: pass them on (SSE has none in practice).
                        if let Ok(trailers) = frame.into_trailers() {
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match (&self.fixed, &self.inner, &self.fault) {
            (Some(_), _, _) => false,
            (None, None, _) => true,
            (None, Some(inner), None) => inner.is_end_stream(),
            (None, Some(_), Some(_)) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.fixed, &self.inner, &self.fault) {
            (Some(fixed), _, _) => SizeHint::with_exact(fixed.len() as u64),
            (None, None, _) => SizeHint::with_exact(0),
            (None, Some(inner), None) => inner.size_hint(),
            (None, Some(_), Some(_)) => SizeHint::default(),
        }
    }
}
