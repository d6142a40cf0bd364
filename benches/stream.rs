//! What the stream guard costs per chunk: one OpenAI-style stream of 1,000 token chunks (about
//! 150 bytes each, then `data: [DONE]`), drained through the bare body, the guarded body
//! (SSE parse, token and completion rules, idle clock), the breaker's `RecordingBody`, and
//! both stacked as in a real client, side by side in one group. `split` is the guarded body
//! on the same bytes cut mid-event (every chunk boundary falls inside a line).
//!
//! ```text
//! CARGO_TARGET_DIR=target-bench cargo bench --all-features --bench stream -- \
//!     --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Bodies are drained without a runtime (one poll per frame with a no-op waker): the inner
//! body is always ready, so no timer is ever armed, as on a fast stream. Figures are in
//! `benches/README.md` under "Streaming".

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http_body::{Body, Frame};
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{Layer, Service, service_fn};
use tower_breaker::circuit_breaker::CircuitBreaker;
use tower_breaker::stream::{SseParser, SseRules, StreamGuardLayer};

const CHUNKS: usize = 1_000;

/// A body that hands out prepared chunks, always ready.
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

    fn is_end_stream(&self) -> bool {
        self.0.len() == 0
    }
}

fn stream_bytes() -> Vec<u8> {
    let mut bytes = Vec::new();
    for seq in 0..CHUNKS {
        let finish = if seq + 1 == CHUNKS {
            "\"stop\""
        } else {
            "null"
        };
        bytes.extend_from_slice(
            format!(
                "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{seq}\"}},\"finish_reason\":{finish}}}]}}\n\n"
            )
            .as_bytes(),
        );
    }
    bytes.extend_from_slice(b"data: [DONE]\n\n");
    bytes
}

/// One chunk per event.
fn by_event(bytes: &[u8]) -> Vec<Bytes> {
    let text = std::str::from_utf8(bytes).expect("utf-8");
    text.split_inclusive("\n\n")
        .map(|e| Bytes::copy_from_slice(e.as_bytes()))
        .collect()
}

/// As many chunks, each boundary moved into the middle of an event.
fn mid_event(bytes: &[u8]) -> Vec<Bytes> {
    let size = bytes.len() / CHUNKS;
    bytes.chunks(size).map(Bytes::copy_from_slice).collect()
}

fn drain<B: Body>(body: B) -> usize {
    let mut body = pin!(body);
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = 0;
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                black_box(frame);
                frames += 1;
            }
            Poll::Ready(Some(Err(_))) => panic!("the stream failed"),
            Poll::Ready(None) => return frames,
            Poll::Pending => panic!("always ready"),
        }
    }
}

/// The response of one call through `svc` (ready at once: the inner service is).
fn respond<S>(svc: &mut S, chunks: Vec<Bytes>) -> S::Response
where
    S: Service<Vec<Bytes>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    match pin!(svc.call(chunks)).poll(&mut cx) {
        Poll::Ready(result) => result.expect("a response"),
        Poll::Pending => panic!("the response future is pending"),
    }
}

fn streams(c: &mut Criterion) {
    let bytes = stream_bytes();
    let events = by_event(&bytes);
    let split = mid_event(&bytes);
    let upstream = service_fn(|chunks: Vec<Bytes>| {
        std::future::ready(Ok::<_, Infallible>(http::Response::new(Chunks(
            chunks.into_iter(),
        ))))
    });
    let guard = StreamGuardLayer::builder()
        .first_token_timeout(Duration::from_secs(30))
        .idle_timeout(Duration::from_secs(30))
        .build()
        .expect("valid settings");
    let breaker = CircuitBreaker::builder("bench")
        .build()
        .expect("valid settings");
    breaker.metrics_only();

    let mut group = c.benchmark_group("stream_body");
    group.throughput(Throughput::Elements(CHUNKS as u64));
    group.bench_function("bare", |b| {
        b.iter_batched(
            || Chunks(events.clone().into_iter()),
            drain,
            BatchSize::SmallInput,
        )
    });
    // Where the guard's time goes: the SSE parse alone, then the parse and the OpenAI rules.
    group.bench_function("parse_only", |b| {
        let mut parser = SseParser::new();
        b.iter(|| {
            let mut n = 0usize;
            for chunk in &events {
                parser.push(chunk, |e| n += e.data.len());
            }
            black_box(n)
        })
    });
    let rules = SseRules::openai();
    group.bench_function("parse_and_rules", |b| {
        let mut parser = SseParser::new();
        b.iter(|| {
            let mut n = 0usize;
            for chunk in &events {
                parser.push(chunk, |e| {
                    n += usize::from(rules.is_token(e))
                        + usize::from(rules.is_complete(e))
                        + usize::from(rules.is_last(e))
                });
            }
            black_box(n)
        })
    });
    let mut guarded = guard.layer(upstream);
    group.bench_function("guarded", |b| {
        b.iter_batched(
            || events.clone(),
            |chunks| drain(respond(&mut guarded, chunks).into_body()),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("guarded_split", |b| {
        b.iter_batched(
            || split.clone(),
            |chunks| drain(respond(&mut guarded, chunks).into_body()),
            BatchSize::SmallInput,
        )
    });
    let mut recorded = breaker.http_layer().layer(upstream);
    group.bench_function("recorded", |b| {
        b.iter_batched(
            || events.clone(),
            |chunks| drain(respond(&mut recorded, chunks).into_body()),
            BatchSize::SmallInput,
        )
    });
    let mut both = breaker.http_layer().layer(guard.layer(upstream));
    group.bench_function("recorded_guarded", |b| {
        b.iter_batched(
            || events.clone(),
            |chunks| drain(respond(&mut both, chunks).into_body()),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, streams);
criterion_main!(benches);
