//! `hold_until_body_end`: the slot stays taken until the response body ends or is dropped.

use crate::{bulkhead, counts};
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::BoxError;
use tower_breaker::bulkhead::{Bulkhead, BulkheadBody};

/// A body that yields its chunks one by one, then optionally an error.
struct Chunks {
    chunks: VecDeque<&'static [u8]>,
    error: Option<&'static str>,
}

impl Chunks {
    fn new(chunks: &[&'static [u8]]) -> Self {
        Self {
            chunks: chunks.iter().copied().collect(),
            error: None,
        }
    }
}

impl Body for Chunks {
    type Data = &'static [u8];
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(match self.chunks.pop_front() {
            Some(chunk) => Some(Ok(Frame::data(chunk))),
            None => self.error.take().map(|e| Err(e.into())),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.error.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
    }
}

type Response = http::Response<BulkheadBody<Chunks>>;

/// A streaming service behind a bulkhead that holds each slot until the body ends.
async fn respond(bulkhead: &Bulkhead, body: fn() -> Chunks) -> Response {
    let mut svc = ServiceBuilder::new()
        .layer(bulkhead.layer().hold_until_body_end())
        .service(service_fn(move |_: ()| async move {
            Ok::<_, BoxError>(http::Response::new(body()))
        }));
    svc.ready().await.unwrap().call(()).await.unwrap()
}

async fn next_frame(
    body: &mut BulkheadBody<Chunks>,
) -> Option<Result<Frame<&'static [u8]>, BoxError>> {
    poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
}

#[tokio::test(start_paused = true)]
async fn the_slot_is_held_until_the_last_frame() {
    let bulkhead = bulkhead(1, 0);
    let response = respond(&bulkhead, || Chunks::new(&[b"hel", b"lo"])).await;
    let mut body = response.into_body();
    assert!(body.holds_permit());
    assert_eq!(body.size_hint().exact(), Some(5));
    assert_eq!(
        counts(&bulkhead).0,
        1,
        "a streaming answer is still in flight"
    );
    assert!(bulkhead.try_acquire().is_err());

    let frame = next_frame(&mut body).await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), b"hel");
    assert_eq!(counts(&bulkhead).0, 1);
    // The last frame gives the slot back as it is delivered.
    let frame = next_frame(&mut body).await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), b"lo");
    assert!(!body.holds_permit());
    assert!(body.is_end_stream());
    assert_eq!(counts(&bulkhead).0, 0);
    assert!(next_frame(&mut body).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn the_slot_is_given_back_when_the_body_is_dropped() {
    let bulkhead = bulkhead(1, 0);
    let mut body = respond(&bulkhead, || Chunks::new(&[b"a", b"b", b"c"]))
        .await
        .into_body();
    next_frame(&mut body).await.unwrap().unwrap();
    assert_eq!(counts(&bulkhead).0, 1);
    drop(body);
    assert_eq!(counts(&bulkhead).0, 0);
}

#[tokio::test(start_paused = true)]
async fn the_slot_is_given_back_on_a_body_error() {
    let bulkhead = bulkhead(1, 0);
    let mut body = respond(&bulkhead, || Chunks {
        chunks: [b"partial" as &[u8]].into(),
        error: Some("stream cut"),
    })
    .await
    .into_body();
    next_frame(&mut body).await.unwrap().unwrap();
    assert_eq!(counts(&bulkhead).0, 1);
    let err = next_frame(&mut body).await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "stream cut");
    assert!(!body.holds_permit());
    assert_eq!(counts(&bulkhead).0, 0);
}

#[tokio::test(start_paused = true)]
async fn an_empty_body_gives_the_slot_back_at_once() {
    let bulkhead = bulkhead(1, 0);
    let body = respond(&bulkhead, || Chunks::new(&[])).await.into_body();
    assert!(!body.holds_permit());
    assert_eq!(counts(&bulkhead).0, 0);
}

#[tokio::test(start_paused = true)]
async fn an_error_response_holds_nothing() {
    let bulkhead = bulkhead(1, 0);
    let mut svc = ServiceBuilder::new()
        .layer(bulkhead.layer().hold_until_body_end())
        .service(service_fn(|_: ()| async {
            Err::<http::Response<Chunks>, BoxError>("connect failed".into())
        }));
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(err.to_string(), "connect failed");
    assert_eq!(counts(&bulkhead).0, 0);
}

#[tokio::test(start_paused = true)]
async fn by_default_the_slot_is_given_back_at_the_response_head() {
    let bulkhead = bulkhead(1, 0);
    let mut svc = ServiceBuilder::new()
        .layer(bulkhead.layer())
        .service(service_fn(|_: ()| async {
            Ok::<_, BoxError>(http::Response::new(Chunks::new(&[b"x"])))
        }));
    let response = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(counts(&bulkhead).0, 0);
    drop(response);
}

#[tokio::test(start_paused = true)]
async fn a_held_body_makes_the_next_call_wait_for_it() {
    let bulkhead = bulkhead(1, 1);
    let mut body = respond(&bulkhead, || Chunks::new(&[b"1", b"2"]))
        .await
        .into_body();
    let next = tokio::spawn({
        let bulkhead = bulkhead.clone();
        async move { bulkhead.acquire().await.map(drop) }
    });
    tokio::task::yield_now().await;
    assert_eq!(counts(&bulkhead), (1, 1, 0, 0));
    while next_frame(&mut body).await.is_some() {}
    next.await.unwrap().unwrap();
    assert_eq!(counts(&bulkhead), (0, 0, 0, 0));
}
