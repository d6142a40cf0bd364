//! Adversarial tests of `provider_error`, from its public docs: real error bodies of
//! OpenAI-compatible servers, the read bound at exactly its size, bodies in one-byte frames
//! with trailers, and the caller always getting the provider's body back intact.

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use std::pin::Pin;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::provider_error::{
    DEFAULT_MAX_ERROR_BODY, MAX_ERROR_BODY_LIMIT, ProviderError, ProviderErrorKind,
    ProviderErrorLayer, fail_over_on_provider_error,
};

type Frames =
    Pin<Box<dyn futures_util::Stream<Item = Result<http_body::Frame<Bytes>, BoxError>> + Send>>;

/// A response of `status` whose body is `bytes` in frames of `frame` bytes, then `trailers`.
fn response(
    status: u16,
    bytes: &[u8],
    frame: usize,
    trailers: bool,
) -> http::Response<StreamBody<Frames>> {
    let mut frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = bytes
        .chunks(frame.max(1))
        .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    if trailers {
        let mut map = http::HeaderMap::new();
        map.insert("x-trailer", "1".parse().unwrap());
        frames.push(Ok(http_body::Frame::trailers(map)));
    }
    let stream = futures_util::stream::iter(frames);
    http::Response::builder()
        .status(status)
        .body(StreamBody::new(Box::pin(stream) as Frames))
        .unwrap()
}

/// Calls a `ProviderErrorLayer` (of `layer`) on the response; the kind found and the body read.
async fn through(
    layer: ProviderErrorLayer,
    status: u16,
    bytes: Vec<u8>,
    frame: usize,
    trailers: bool,
) -> (Option<ProviderErrorKind>, Vec<u8>, bool) {
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(move |()| {
            let bytes = bytes.clone();
            async move { Ok::<_, BoxError>(response(status, &bytes, frame, trailers)) }
        }));
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    let kind = res.extensions().get::<ProviderError>().map(|e| e.kind);
    let collected = res.into_body().collect().await.unwrap();
    let had_trailers = collected.trailers().is_some();
    (kind, collected.to_bytes().to_vec(), had_trailers)
}

#[tokio::test]
async fn the_bound_holds_at_exactly_its_size_and_the_body_always_reaches_the_caller_whole() {
    let body = |len: usize| {
        // A real OpenAI error, padded with spaces (valid JSON) to `len` bytes.
        let json = r#"{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let mut bytes = json.as_bytes().to_vec();
        bytes.resize(len, b' ');
        bytes
    };
    for (max, len, parsed) in [
        (DEFAULT_MAX_ERROR_BODY, DEFAULT_MAX_ERROR_BODY, true),
        (DEFAULT_MAX_ERROR_BODY, DEFAULT_MAX_ERROR_BODY + 1, false),
        (200, 200, true),
        (200, 201, false),
    ] {
        let layer = ProviderErrorLayer::new().max_body(max).unwrap();
        for frame in [1, 7, len] {
            for trailers in [false, true] {
                let bytes = body(len);
                let (kind, read, had_trailers) =
                    through(layer, 429, bytes.clone(), frame, trailers).await;
                let expected = parsed.then_some(ProviderErrorKind::InsufficientQuota);
                assert_eq!(kind, expected, "max {max} len {len} frame {frame}");
                assert_eq!(read, bytes, "max {max} len {len} frame {frame}");
                assert_eq!(had_trailers, trailers, "max {max} len {len} frame {frame}");
            }
        }
    }
    // The range of the bound, at its ends.
    assert!(ProviderErrorLayer::new().max_body(1).is_ok());
    assert!(
        ProviderErrorLayer::new()
            .max_body(MAX_ERROR_BODY_LIMIT)
            .is_ok()
    );
    let err = ProviderErrorLayer::new()
        .max_body(MAX_ERROR_BODY_LIMIT + 1)
        .unwrap_err();
    assert_eq!(err.field(), "max_body");
}

#[tokio::test]
async fn a_success_and_an_empty_or_non_json_error_body_pass_untouched() {
    for (status, bytes) in [
        (
            200,
            &b"{\"error\":{\"code\":\"context_length_exceeded\"}}"[..],
        ),
        (502, b""),
        (503, b"<html><body>upstream connect error</body></html>"),
        (500, b"{\"error\":"),
        (400, b"\xff\xfe{"),
    ] {
        let (kind, read, _) =
            through(ProviderErrorLayer::new(), status, bytes.to_vec(), 3, false).await;
        assert_eq!(kind, None, "{status}");
        assert_eq!(read, bytes, "{status}");
    }
}

#[test]
fn the_failover_rule_on_real_statuses() {
    let with = |status: u16, body: &str| -> Result<http::Response<()>, BoxError> {
        let mut res = http::Response::builder().status(status).body(()).unwrap();
        if let Some(e) = ProviderError::parse(body.as_bytes()) {
            res.extensions_mut().insert(e);
        }
        Ok(res)
    };
    // Anthropic's 529 overloaded: fail over.
    assert!(fail_over_on_provider_error(&with(
        529,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
    )));
    // An Azure content filter at 400: stop with the provider's answer.
    assert!(!fail_over_on_provider_error(&with(
        400,
        r#"{"error":{"message":"filtered","type":null,"param":"prompt","code":"content_filter","status":400}}"#
    )));
    // A content-policy refusal stops the failover whatever its status: the kind wins.
    assert!(!fail_over_on_provider_error(&with(
        500,
        r#"{"error":{"code":"content_policy_violation","message":"rejected"}}"#
    )));
    // A 401 is the caller's, not the provider's: no failover.
    assert!(!fail_over_on_provider_error(&with(
        401,
        r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#
    )));
    assert!(fail_over_on_provider_error::<http::Response<()>>(&Err(
        "connection reset".into()
    )));
}

/// Errors of OpenAI-compatible servers that put the error object at the top level, marked
/// `"object": "error"`: vLLM's OpenAI server (before it wrapped them in `"error"`) and
/// Mistral's API.
const TOP_LEVEL_ERRORS: [(&str, ProviderErrorKind); 2] = [
    (
        r#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}"#,
        ProviderErrorKind::ContextLength,
    ),
    (
        r#"{"object":"error","message":"Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length","type":"invalid_request_message_error","param":null,"code":null}"#,
        ProviderErrorKind::ContextLength,
    ),
];

#[test]
fn an_openai_compatible_top_level_error_object_is_read() {
    for (body, kind) in TOP_LEVEL_ERRORS {
        let parsed = ProviderError::parse(body.as_bytes());
        assert_eq!(parsed.map(|e| e.kind), Some(kind), "{body}");
    }
    // The newer vLLM shape, wrapped, with a numeric code.
    let wrapped = r#"{"error":{"message":"This model's maximum context length is 32768 tokens. However, you requested 33000 tokens.","type":"BadRequestError","param":null,"code":400}}"#;
    assert_eq!(
        ProviderError::parse(wrapped.as_bytes()).map(|e| e.kind),
        Some(ProviderErrorKind::ContextLength)
    );
    // A document that merely has an `object` field is not an error.
    assert!(ProviderError::parse(br#"{"object":"list","data":[]}"#).is_none());
}
