//! A tonic `Channel` behind a circuit breaker with the gRPC classification, against a local
//! tonic server that starts answering `UNAVAILABLE`.
//!
//! ```text
//! cargo run --example tonic_client --features grpc
//! ```
//!
//! The server on 127.0.0.1 has one unary method, `demo.Inference/Complete`. No protoc: messages
//! are strings with a hand-written codec, the server a hand-written `Service` over
//! `tonic::server::Grpc`. `breaker.grpc_layer()` reads each answer's `grpc-status`: three
//! `UNAVAILABLE`s in a row open the breaker, the next calls fail at once without reaching the
//! server, and after the wait in open a probe finds the server healthy and closes it.

use bytes::{Buf, BufMut};
use futures_util::future::BoxFuture;
use http::uri::PathAndQuery;
use std::convert::Infallible;
use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::Grpc;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};
use tower::{BoxError, Layer};
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerEvent, CircuitBreakerService, CircuitOpen, SlidingWindow,
};
use tower_breaker::grpc::GrpcClassifier;

const COMPLETE: &str = "/demo.Inference/Complete";

/// UTF-8 strings as gRPC messages, so that no generated code is needed.
#[derive(Debug, Clone, Copy, Default)]
struct StringCodec;

impl Codec for StringCodec {
    type Encode = String;
    type Decode = String;
    type Encoder = StringCodec;
    type Decoder = StringCodec;
    fn encoder(&mut self) -> StringCodec {
        StringCodec
    }
    fn decoder(&mut self) -> StringCodec {
        StringCodec
    }
}

impl Encoder for StringCodec {
    type Item = String;
    type Error = Status;
    fn encode(&mut self, item: String, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(item.as_bytes());
        Ok(())
    }
}

impl Decoder for StringCodec {
    type Item = String;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<String>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        let text = String::from_utf8(bytes.to_vec()).map_err(|e| Status::internal(e.to_string()));
        text.map(Some)
    }
}

/// `demo.Inference`: `Complete` answers `UNAVAILABLE` while `down` is set.
#[derive(Clone, Default)]
struct Inference {
    down: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
}

impl tonic::server::NamedService for Inference {
    const NAME: &'static str = "demo.Inference";
}

impl tower::Service<http::Request<tonic::body::Body>> for Inference {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    /// Every method is `Complete` (tonic has routed the call here by its service name).
    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.hits.fetch_add(1, Ordering::Relaxed);
        let down = self.down.load(Ordering::Relaxed);
        let complete = tower::service_fn(move |req: Request<String>| async move {
            let answer = format!("a completion of `{}`", req.into_inner());
            match down {
                true => Err(Status::unavailable("the model is overloaded")),
                false => Ok(Response::new(answer)),
            }
        });
        Box::pin(async move { Ok(Grpc::new(StringCodec).unary(complete, request).await) })
    }
}

type Client = tonic::client::Grpc<CircuitBreakerService<Channel, GrpcClassifier>>;

/// One `Complete` call; prints what came back, how long it took, and whether it reached the server.
async fn complete(client: &mut Client, prompt: &str, server: &Inference, start: Instant) {
    let (hits, began) = (server.hits.load(Ordering::Relaxed), Instant::now());
    client.ready().await.unwrap();
    let path = PathAndQuery::from_static(COMPLETE);
    let result = client
        .unary(Request::new(prompt.into()), path, StringCodec)
        .await;
    let took = began.elapsed();
    let sent = server.hits.load(Ordering::Relaxed) - hits;
    // The breaker's rejection reaches the caller as a `Status` whose source is `CircuitOpen`.
    let outcome = match result {
        Ok(answer) => format!("OK: {}", answer.into_inner()),
        Err(status) => match status
            .source()
            .and_then(|e| e.downcast_ref::<CircuitOpen>())
        {
            Some(open) => format!("rejected by the breaker: {open}"),
            None => format!("{:?}: {}", status.code(), status.message()),
        },
    };
    let t = start.elapsed().as_millis();
    println!("{t:>5} ms  {took:>8.1?}  {sent} sent  {outcome}");
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let server = Inference::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let router = Server::builder().add_service(server.clone());
    tokio::spawn(router.serve_with_incoming(incoming));

    let breaker = CircuitBreaker::builder("inference")
        .sliding_window(SlidingWindow::consecutive(3))
        .wait_in_open(Duration::from_millis(300))
        .permitted_calls_in_half_open(1)
        .on_event(move |event: &CircuitBreakerEvent| {
            if let CircuitBreakerEvent::StateTransition { from, to, .. } = event {
                let t = start.elapsed().as_millis();
                println!("{t:>5} ms  breaker: {from} -> {to}");
            }
        })
        .build()?;
    let channel = Endpoint::from_shared(format!("http://{addr}"))?;
    let channel = breaker.grpc_layer().layer(channel.connect().await?);
    let mut client = tonic::client::Grpc::new(channel);

    println!("Columns: time, call duration, requests sent to the server, result.\n");
    complete(&mut client, "hello", &server, start).await;
    println!("-- the server starts answering UNAVAILABLE");
    server.down.store(true, Ordering::Relaxed);
    for _ in 0..5 {
        complete(&mut client, "hello", &server, start).await;
    }
    println!("-- the server recovers; after 300 ms the breaker lets a probe through");
    server.down.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    complete(&mut client, "hello again", &server, start).await;

    let (m, hits) = (breaker.metrics(), server.hits.load(Ordering::Relaxed));
    let (rejected, state) = (m.not_permitted_calls, m.state);
    println!("\nsent to the server: {hits}; rejected by the breaker: {rejected}; now {state}");
    Ok(())
}
