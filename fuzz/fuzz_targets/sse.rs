//! The SSE parser and the stream guard on arbitrary bytes cut at arbitrary points: never
//! panics; the events are the same however the bytes are split; and the guarded body ends
//! cleanly exactly when the stream held the event that completes the answer (otherwise it
//! fails with `StreamTruncated`), handing the caller a prefix of the bytes (all of them unless
//! it stopped at the last event).
#![no_main]

use bytes::Bytes;
use http_body::{Body, Frame};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use tower::{Layer, Service, service_fn};
use tower_breaker::stream::{SseEvent, SseParser, SseRules, StreamGuardLayer, StreamTruncated};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    bytes: &'a [u8],
    cuts: Vec<u16>,
    anthropic: bool,
    respond_at_first_token: bool,
}

struct Chunks(std::vec::IntoIter<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.next().map(|b| Ok(Frame::data(b))))
    }
}

fn parse(chunks: &[Bytes]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    for chunk in chunks {
        parser.push(chunk, |e| events.push(e.clone()));
    }
    events
}

fuzz_target!(|input: Input<'_>| {
    let len = input.bytes.len();
    let mut cuts: Vec<usize> = input.cuts.iter().map(|&c| usize::from(c) % (len + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(Bytes::copy_from_slice(&input.bytes[start..cut]));
        start = cut;
    }
    chunks.push(Bytes::copy_from_slice(&input.bytes[start..]));

    let whole = parse(&[Bytes::copy_from_slice(input.bytes)]);
    assert_eq!(parse(&chunks), whole, "the split changed the events");
    for event in &whole {
        assert!(!event.event.contains(['\r', '\n']));
        assert!(!event.data.contains('\r'));
    }

    // The rules' bounded scans (token: content keys; complete: `finish_reason`, `type`) on any
    // text as one event's data, and on the data of every event: they never panic.
    let raw = SseEvent { event: String::new(), data: String::from_utf8_lossy(input.bytes).into_owned() };
    for rules in [SseRules::openai(), SseRules::anthropic()] {
        let _ = (rules.is_token(&raw), rules.is_complete(&raw), rules.is_last(&raw));
    }

    let rules = if input.anthropic { SseRules::anthropic() } else { SseRules::openai() };
    // For both presets, the last event also completes the answer.
    let complete = whole.iter().any(|e| rules.is_complete(e));
    // After the last event the guard reports its end: the caller may get fewer bytes.
    let stops_early = whole.iter().any(|e| rules.is_last(e));
    let layer = StreamGuardLayer::builder()
        .rules(rules)
        .respond_at_first_token(input.respond_at_first_token)
        .build()
        .expect("valid settings");
    let mut guarded = layer.layer(service_fn(|chunks: Vec<Bytes>| {
        std::future::ready(Ok::<_, Infallible>(http::Response::new(Chunks(chunks.into_iter()))))
    }));
    // No deadline, an always-ready body: everything completes on its first poll.
    let mut cx = Context::from_waker(Waker::noop());
    assert!(guarded.poll_ready(&mut cx).is_ready());
    let Poll::Ready(result) = pin!(guarded.call(chunks)).poll(&mut cx) else {
        panic!("pending without a timer");
    };
    let mut received = Vec::new();
    let (responded, outcome) = match result {
        Err(error) => (false, Err(error)),
        Ok(response) => {
            let mut body = pin!(response.into_body());
            let outcome = loop {
                match body.as_mut().poll_frame(&mut cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        received.extend_from_slice(frame.data_ref().expect("data frames only"))
                    }
                    Poll::Ready(Some(Err(error))) => break Err(error),
                    Poll::Ready(None) => break Ok(()),
                    Poll::Pending => panic!("pending without a timer"),
                }
            };
            (true, outcome)
        }
    };
    assert!(input.bytes.starts_with(&received), "the caller got bytes not sent");
    match outcome {
        Ok(()) => {
            assert!(complete, "a clean end without the complete event");
            if !stops_early {
                assert_eq!(received.len(), len, "a clean end before the body's end");
            }
        }
        Err(error) => {
            assert!(error.is::<StreamTruncated>(), "{error}");
            assert!(!complete, "truncated, yet the complete event was there");
            if responded {
                assert_eq!(received.len(), len, "truncated before the body's end");
            }
        }
    }
});
