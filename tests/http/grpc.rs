//! A tonic client stack behind `CircuitBreaker::grpc_layer`, against a real tonic server.
//! No protoc: messages are strings with a hand-written codec, and the server is a
//! hand-written `Service` over `tonic::server::Grpc`.

use crate::server::Log;
use bytes::{Buf, BufMut};
use futures_util::{Stream, StreamExt};
use http::uri::PathAndQuery;
use std::convert::Infallible;
use std::error::Error as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Request, Response, Status};
use tower::ServiceBuilder;
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitOpen, CircuitState, RateLimited, SlidingWindow,
};

/// UTF-8 strings as gRPC messages.
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
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// `test.Echo`: `Unary` answers by its message ("unavailable", "exhausted", else an echo);
/// `Stream` sends two messages, then ends cleanly or, for "fail", with `UNAVAILABLE` in the
/// trailers.
#[derive(Clone, Default)]
struct Echo {
    hits: Arc<AtomicUsize>,
}

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

type Messages = Pin<Box<dyn Stream<Item = Result<String, Status>> + Send>>;

async fn unary(request: Request<String>) -> Result<Response<String>, Status> {
    match request.into_inner().as_str() {
        "unavailable" => Err(Status::unavailable("upstream down")),
        "exhausted" => Err(Status::resource_exhausted("quota")),
        other => Ok(Response::new(format!("echo: {other}"))),
    }
}

async fn stream(request: Request<String>) -> Result<Response<Messages>, Status> {
    let messages = futures_util::stream::iter(["one", "two"].map(|m| Ok(m.to_string())));
    let messages: Messages = if request.into_inner() == "fail" {
        let error = Err(Status::unavailable("the stream died"));
        Box::pin(messages.chain(futures_util::stream::iter([error])))
    } else {
        Box::pin(messages)
    };
    Ok(Response::new(messages))
}

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.hits.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(StringCodec);
            Ok(match request.uri().path() {
                "/test.Echo/Unary" => grpc.unary(tower::service_fn(unary), request).await,
                "/test.Echo/Stream" => {
                    grpc.server_streaming(tower::service_fn(stream), request)
                        .await
                }
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

async fn start(echo: Echo) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(echo)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

const UNARY: &str = "/test.Echo/Unary";
const STREAM: &str = "/test.Echo/Stream";

/// The breaker's rejection, as tonic reports it.
fn circuit_open(status: &Status) -> &CircuitOpen {
    status
        .source()
        .and_then(|source| source.downcast_ref::<CircuitOpen>())
        .unwrap_or_else(|| panic!("not a CircuitOpen: {status:?}"))
}

#[tokio::test]
async fn a_tonic_stack_trips_when_the_server_answers_unavailable() {
    let echo = Echo::default();
    let addr = start(echo.clone()).await;
    let log = Log::default();
    let breaker = CircuitBreaker::builder("grpc")
        .sliding_window(SlidingWindow::consecutive(3))
        .on_event(log.listener())
        .build()
        .unwrap();
    let channel = ServiceBuilder::new()
        .layer(breaker.grpc_layer())
        .service(channel(addr).await);
    let mut client = tonic::client::Grpc::new(channel);

    client.ready().await.unwrap();
    let answer = client
        .unary(
            Request::new("hi".to_string()),
            PathAndQuery::from_static(UNARY),
            StringCodec,
        )
        .await
        .unwrap();
    assert_eq!(answer.into_inner(), "echo: hi");

    for _ in 0..3 {
        client.ready().await.unwrap();
        let status = client
            .unary::<_, String, _>(
                Request::new("unavailable".to_string()),
                PathAndQuery::from_static(UNARY),
                StringCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    for _ in 0..3 {
        client.ready().await.unwrap();
        let status = client
            .unary::<_, String, _>(
                Request::new("hi".to_string()),
                PathAndQuery::from_static(UNARY),
                StringCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(circuit_open(&status).name(), "grpc");
    }
    assert_eq!(
        echo.hits.load(Ordering::SeqCst),
        4,
        "rejected calls never reach the server"
    );
    assert_eq!(
        log.outcomes(),
        vec![
            Outcome::Success,
            Outcome::Failure,
            Outcome::Failure,
            Outcome::Failure
        ]
    );
}

#[tokio::test]
async fn a_streaming_call_whose_trailers_carry_an_error_trips_the_breaker() {
    let echo = Echo::default();
    let addr = start(echo.clone()).await;
    let log = Log::default();
    let breaker = CircuitBreaker::builder("grpc-stream")
        .sliding_window(SlidingWindow::consecutive(2))
        .on_event(log.listener())
        .build()
        .unwrap();
    let channel = ServiceBuilder::new()
        .layer(breaker.grpc_layer())
        .service(channel(addr).await);
    let mut client = tonic::client::Grpc::new(channel);

    for (request, ends_with) in [
        ("ok", None),
        ("fail", Some(Code::Unavailable)),
        ("fail", Some(Code::Unavailable)),
    ] {
        client.ready().await.unwrap();
        let mut messages = client
            .server_streaming::<_, String, _>(
                Request::new(request.to_string()),
                PathAndQuery::from_static(STREAM),
                StringCodec,
            )
            .await
            .unwrap()
            .into_inner();
        // The head was a 200 without `grpc-status`: nothing is recorded before the trailers.
        let mut received = Vec::new();
        let end = loop {
            match messages.message().await {
                Ok(Some(message)) => received.push(message),
                Ok(None) => break None,
                Err(status) => break Some(status.code()),
            }
        };
        assert_eq!(received, ["one", "two"]);
        assert_eq!(end, ends_with);
    }
    assert_eq!(
        log.outcomes(),
        vec![Outcome::Success, Outcome::Failure, Outcome::Failure]
    );
    assert_eq!(breaker.state(), CircuitState::Open);

    client.ready().await.unwrap();
    let status = client
        .server_streaming::<_, String, _>(
            Request::new("ok".to_string()),
            PathAndQuery::from_static(STREAM),
            StringCodec,
        )
        .await
        .unwrap_err();
    circuit_open(&status);
    assert_eq!(echo.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn resource_exhausted_cools_the_breaker_down_without_tripping() {
    let echo = Echo::default();
    let addr = start(echo.clone()).await;
    let breaker = CircuitBreaker::builder("grpc-quota")
        .sliding_window(SlidingWindow::consecutive(1))
        .build()
        .unwrap();
    let channel = ServiceBuilder::new()
        .layer(breaker.grpc_layer())
        .service(channel(addr).await);
    let mut client = tonic::client::Grpc::new(channel);

    client.ready().await.unwrap();
    let status = client
        .unary::<_, String, _>(
            Request::new("exhausted".to_string()),
            PathAndQuery::from_static(UNARY),
            StringCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(breaker.state(), CircuitState::RateLimited);
    assert_eq!(breaker.metrics().failed_calls, 0);

    client.ready().await.unwrap();
    let status = client
        .unary::<_, String, _>(
            Request::new("hi".to_string()),
            PathAndQuery::from_static(UNARY),
            StringCodec,
        )
        .await
        .unwrap_err();
    let source = status.source().unwrap();
    assert!(source.downcast_ref::<RateLimited>().is_some(), "{status:?}");
    assert_eq!(echo.hits.load(Ordering::SeqCst), 1);
}
