//! Adversarial tests of `stream`, written from the public docs: real provider SSE shapes with
//! every line ending, chunked at every byte, a consumer that reads late, deadlines at their
//! exact bound, and the response future dropped after every poll.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;
use tokio_test::{assert_pending, task};
use tower::{BoxError, Service, ServiceExt, service_fn};
use tower_breaker::stream::{
    FirstTokenTimeout, SseEvent, SseParser, SseRules, StreamGuardLayer, StreamIdle, StreamTruncated,
};

type Frames =
    Pin<Box<dyn futures_util::Stream<Item = Result<http_body::Frame<Bytes>, BoxError>> + Send>>;
type TestBody = StreamBody<Frames>;

/// A body that yields each `(delay, bytes)` after its delay (paused time).
fn timed_body(steps: Vec<(Duration, Vec<u8>)>) -> TestBody {
    let frames = futures_util::stream::iter(steps).then(|(delay, bytes)| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(bytes)))
    });
    StreamBody::new(Box::pin(frames) as Frames)
}

fn sse_response(body: TestBody) -> http::Response<TestBody> {
    http::Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(body)
        .unwrap()
}

fn parse_all(bytes: &[u8], cut: Option<usize>) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    match cut {
        Some(at) => {
            parser.push(&bytes[..at], |e| events.push(e.clone()));
            parser.push(&bytes[at..], |e| events.push(e.clone()));
        }
        None => {
            for b in bytes {
                parser.push(std::slice::from_ref(b), |e| events.push(e.clone()));
            }
        }
    }
    events
}

/// OpenAI chat completions, as the API sends it (role chunk, content, finish, usage, `[DONE]`).
const OPENAI_CHAT: &str = concat!(
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":10}}\n\n",
    "data: [DONE]\n\n",
);

/// Azure OpenAI: a `prompt_filter_results` chunk first, content-filter results after the
/// finish, then `[DONE]`.
const AZURE_CHAT: &str = concat!(
    "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}}}]}\n\n",
    "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"content\":\"\",\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1,\"id\":\"chatcmpl-2\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\"}\n\n",
    "data: {\"choices\":[{\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}},\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1,\"id\":\"chatcmpl-2\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\"}\n\n",
    "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{},\"finish_reason\":\"stop\",\"index\":0,\"logprobs\":null}],\"created\":1,\"id\":\"chatcmpl-2\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\"}\n\n",
    "data: [DONE]\n\n",
);

/// vLLM's OpenAI server with a reasoning parser: reasoning before content.
const VLLM_REASONING: &str = concat!(
    "data: {\"id\":\"chatcmpl-3\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"qwen3\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-3\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"qwen3\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"Okay\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-3\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"qwen3\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"4\"},\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}]}\n\n",
    "data: [DONE]\n\n",
);

/// Anthropic Messages, with `event:` lines and a `ping`.
const ANTHROPIC: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

/// The same stream with every line ending in `ending`.
fn with_endings(sse: &str, ending: &str) -> Vec<u8> {
    sse.replace('\n', ending).into_bytes()
}

struct Seen {
    tokens: usize,
    complete: bool,
    last: bool,
}

fn judge(rules: &SseRules, events: &[SseEvent]) -> Seen {
    Seen {
        tokens: events.iter().filter(|e| rules.is_token(e)).count(),
        complete: events.iter().any(|e| rules.is_complete(e)),
        last: events.iter().any(|e| rules.is_last(e)),
    }
}

#[test]
fn real_provider_streams_parse_alike_with_every_line_ending_and_every_split() {
    let cases: [(&str, SseRules, usize); 4] = [
        (OPENAI_CHAT, SseRules::openai(), 1),
        (AZURE_CHAT, SseRules::openai(), 1),
        (VLLM_REASONING, SseRules::openai(), 2),
        (ANTHROPIC, SseRules::anthropic(), 1),
    ];
    for (sse, rules, tokens) in cases {
        let reference = parse_all(sse.as_bytes(), Some(0));
        let seen = judge(&rules, &reference);
        assert_eq!(seen.tokens, tokens, "{sse}");
        assert!(seen.complete && seen.last, "{sse}");
        for ending in ["\n", "\r\n", "\r"] {
            let bytes = with_endings(sse, ending);
            // Byte by byte, and cut once at every offset.
            assert_eq!(parse_all(&bytes, None), reference, "{ending:?}");
            for cut in 0..=bytes.len() {
                assert_eq!(parse_all(&bytes, Some(cut)), reference, "{ending:?} {cut}");
            }
        }
        // With a leading byte order mark too.
        let bom = [b"\xEF\xBB\xBF".as_slice(), sse.as_bytes()].concat();
        assert_eq!(parse_all(&bom, None), reference);
    }
}

/// A guarded call on `bytes` sent in frames of `frame` bytes (0: all in one frame), and
/// what the caller reads.
async fn guarded_read(rules: SseRules, bytes: Vec<u8>, frame: usize) -> Result<Vec<u8>, BoxError> {
    let guard = StreamGuardLayer::builder()
        .first_token_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
        .rules(rules)
        .build()
        .unwrap();
    let steps: Vec<_> = if frame == 0 {
        vec![bytes]
    } else {
        bytes.chunks(frame).map(|c| c.to_vec()).collect()
    };
    let steps: Vec<_> = steps.into_iter().map(|c| (Duration::ZERO, c)).collect();
    let mut svc = tower::ServiceBuilder::new()
        .layer(guard)
        .service(service_fn(move |()| {
            let steps = steps.clone();
            async move { Ok::<_, BoxError>(sse_response(timed_body(steps))) }
        }));
    let response = svc.ready().await?.call(()).await?;
    Ok(response.into_body().collect().await?.to_bytes().to_vec())
}

#[tokio::test(start_paused = true)]
async fn a_guarded_real_stream_byte_by_byte_with_any_line_ending_ends_cleanly_and_intact() {
    for (sse, rules) in [
        (OPENAI_CHAT, SseRules::openai()),
        (AZURE_CHAT, SseRules::openai()),
        (VLLM_REASONING, SseRules::openai()),
        (ANTHROPIC, SseRules::anthropic()),
    ] {
        // Byte by byte; `\r\n` in whole frames (split between its bytes: see below).
        for (ending, frame) in [("\n", 1), ("\r", 1), ("\r\n", 0)] {
            let bytes = with_endings(sse, ending);
            let read = guarded_read(rules.clone(), bytes.clone(), frame).await;
            let read = read.unwrap_or_else(|e| panic!("{ending:?} {e}: {sse}"));
            assert_eq!(read, bytes, "{ending:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_guarded_crlf_stream_split_between_cr_and_lf_reaches_the_caller_whole() {
    for (sse, rules) in [
        (OPENAI_CHAT, SseRules::openai()),
        (ANTHROPIC, SseRules::anthropic()),
    ] {
        let bytes = with_endings(sse, "\r\n");
        let read = guarded_read(rules, bytes.clone(), 1).await.unwrap();
        assert_eq!(read, bytes);
    }
}

#[tokio::test(start_paused = true)]
async fn a_real_stream_cut_before_its_end_event_is_truncated_at_every_line() {
    for (sse, rules) in [
        (OPENAI_CHAT, SseRules::openai()),
        (ANTHROPIC, SseRules::anthropic()),
    ] {
        // Cut after each event that comes after the first token and before the complete one.
        let events: Vec<&str> = sse.split_inclusive("\n\n").collect();
        let first_token = events.iter().position(|e| e.contains("\"Hello\"")).unwrap();
        let complete = events
            .iter()
            .position(|e| e.contains("finish_reason\":\"stop") || e.contains("message_stop"))
            .unwrap();
        for cut in first_token + 1..complete {
            let bytes = events[..cut].concat().into_bytes();
            let err = guarded_read(rules.clone(), bytes, 0).await.unwrap_err();
            assert!(err.is::<StreamTruncated>(), "cut {cut}: {err}");
        }
    }
}

/// OpenAI's Responses API (`POST /v1/responses`, `stream: true`), OpenAI's recommended API for
/// new projects: typed events, text in `response.output_text.delta`'s `delta`, and the end is
/// `response.completed` (there is no `[DONE]`).
const OPENAI_RESPONSES: &str = concat!(
    "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1,\"status\":\"in_progress\",\"error\":null,\"instructions\":null,\"model\":\"gpt-4.1\",\"output\":[],\"text\":{\"format\":{\"type\":\"text\"}},\"usage\":null}}\n\n",
    "event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[]}}\n\n",
    "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":2,\"output_index\":0,\"item\":{\"id\":\"msg_1\",\"type\":\"message\",\"status\":\"in_progress\",\"content\":[],\"role\":\"assistant\"}}\n\n",
    "event: response.content_part.added\ndata: {\"type\":\"response.content_part.added\",\"sequence_number\":3,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"annotations\":[],\"text\":\"\"}}\n\n",
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n\n",
    "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":5,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"text\":\"Hi\"}\n\n",
    "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":6,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"output\":[{\"id\":\"msg_1\",\"type\":\"message\",\"status\":\"completed\",\"content\":[{\"type\":\"output_text\",\"annotations\":[],\"text\":\"Hi\"}],\"role\":\"assistant\"}]}}\n\n",
);

#[tokio::test(start_paused = true)]
async fn the_openai_rules_take_a_responses_api_delta_as_the_first_token_and_completed_as_the_end() {
    let rules = SseRules::openai();
    let events = parse_all(OPENAI_RESPONSES.as_bytes(), Some(0));
    let first_token = events.iter().position(|e| rules.is_token(e));
    assert_eq!(
        first_token,
        Some(4),
        "the first output_text.delta is the first token"
    );
    let read = guarded_read(rules.clone(), OPENAI_RESPONSES.as_bytes().to_vec(), 0).await;
    assert!(read.is_ok(), "{:?}", read.err());

    // Without `event:` lines the JSON `type` tells the same.
    let untyped: String = OPENAI_RESPONSES
        .lines()
        .filter(|l| !l.starts_with("event:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let read = guarded_read(rules.clone(), untyped.into_bytes(), 0).await;
    assert!(read.is_ok(), "{:?}", read.err());

    // Cut before `response.completed`, or ended by `response.failed`: truncated.
    let events: Vec<&str> = OPENAI_RESPONSES.split_inclusive("\n\n").collect();
    let cut = events[..events.len() - 1].concat();
    let err = guarded_read(rules.clone(), cut.clone().into_bytes(), 0)
        .await
        .unwrap_err();
    assert!(err.is::<StreamTruncated>(), "{err}");
    let failed = format!(
        "{cut}event: response.failed\ndata: {{\"type\":\"response.failed\",\"response\":{{\"status\":\"failed\",\"error\":{{\"code\":\"server_error\",\"message\":\"x\"}}}}}}\n\n"
    );
    let err = guarded_read(rules, failed.into_bytes(), 0)
        .await
        .unwrap_err();
    assert!(err.is::<StreamTruncated>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_reads_late_does_not_turn_a_finished_stream_into_an_idle_failure() {
    // The upstream sends everything at once; the caller reads the first frame, then pauses
    // (say, writing to a slow client) for longer than the idle deadline.
    let guard = StreamGuardLayer::builder()
        .idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let chunks: Vec<&str> = OPENAI_CHAT.split_inclusive("\n\n").collect();
    let steps: Vec<_> = chunks
        .iter()
        .map(|c| (Duration::ZERO, c.as_bytes().to_vec()))
        .collect();
    let mut svc = tower::ServiceBuilder::new()
        .layer(guard)
        .service(service_fn(move |()| {
            let steps = steps.clone();
            async move { Ok::<_, BoxError>(sse_response(timed_body(steps))) }
        }));
    let response = svc.ready().await.unwrap().call(()).await.unwrap();
    let mut body = response.into_body();
    let mut read = Vec::new();
    // The role chunk and the token come with the response (read so far, kept in the body).
    while read.len() < 2 {
        let frame = body.frame().await.unwrap().unwrap();
        read.push(frame.into_data().unwrap());
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    let rest = body.collect().await;
    let rest = rest.unwrap_or_else(|e| panic!("{e}"));
    let mut all: Vec<u8> = read.concat();
    all.extend_from_slice(&rest.to_bytes());
    assert_eq!(all, OPENAI_CHAT.as_bytes());
}

#[tokio::test(start_paused = true)]
async fn deadlines_hold_at_their_exact_bound_and_the_range_is_checked() {
    // 0 and more than a day are refused, naming the field; 1 ms and 1 day are taken.
    for (bad, field) in [
        (
            StreamGuardLayer::builder().first_token_timeout(Duration::ZERO),
            "first_token_timeout",
        ),
        (
            StreamGuardLayer::builder().idle_timeout(Duration::from_secs(86_401)),
            "idle_timeout",
        ),
        (
            StreamGuardLayer::builder().idle_timeout(Duration::MAX),
            "idle_timeout",
        ),
    ] {
        let err = bad.build().unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
    }
    StreamGuardLayer::builder()
        .first_token_timeout(Duration::from_millis(1))
        .idle_timeout(Duration::from_secs(86_400))
        .build()
        .unwrap();

    // A token exactly at the first-token deadline, and one just after it.
    // At the deadline is within it (as `tokio::time::timeout`: the call is polled first).
    for (at_ms, ok) in [(999, true), (1_000, true), (1_001, false)] {
        let guard = StreamGuardLayer::builder()
            .first_token_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let token = OPENAI_CHAT.split_inclusive("\n\n").nth(1).unwrap();
        let steps = vec![(Duration::from_millis(at_ms), token.as_bytes().to_vec())];
        let mut svc = tower::ServiceBuilder::new()
            .layer(guard)
            .service(service_fn(move |()| {
                let steps = steps.clone();
                async move { Ok::<_, BoxError>(sse_response(timed_body(steps))) }
            }));
        let start = Instant::now();
        let result = svc.ready().await.unwrap().call(()).await;
        match result {
            Ok(_) => assert!(ok, "token at {at_ms} ms accepted"),
            Err(e) => {
                assert!(!ok, "token at {at_ms} ms refused: {e}");
                assert!(e.is::<FirstTokenTimeout>(), "{e}");
                assert_eq!(start.elapsed(), Duration::from_secs(1));
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_response_future_dropped_after_any_poll_leaves_no_timer_or_error_behind() {
    // The head at 100 ms, the token at 300 ms; drop the future after n polls, for every n.
    let steps = vec![
        (
            Duration::from_millis(200),
            OPENAI_CHAT
                .split_inclusive("\n\n")
                .next()
                .unwrap()
                .as_bytes()
                .to_vec(),
        ),
        (
            Duration::from_millis(100),
            OPENAI_CHAT
                .split_inclusive("\n\n")
                .nth(1)
                .unwrap()
                .as_bytes()
                .to_vec(),
        ),
    ];
    let guard = StreamGuardLayer::builder()
        .first_token_timeout(Duration::from_secs(1))
        .idle_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let make = move |()| {
        let steps = steps.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, BoxError>(sse_response(timed_body(steps)))
        }
    };
    let mut svc = tower::ServiceBuilder::new()
        .layer(guard)
        .service(service_fn(make));
    for polls in 1..6 {
        let future = svc.ready().await.unwrap().call(());
        let mut future = task::spawn(future);
        let mut done = false;
        for _ in 0..polls {
            if future.poll().is_ready() {
                done = true;
                break;
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        drop(future);
        // Whether or not it finished, a fresh call still works from scratch.
        let response = svc.ready().await.unwrap().call(()).await;
        assert!(response.is_ok(), "after {polls} polls (done {done})");
    }
    // And a pending call is really pending before its head.
    let mut future = task::spawn(svc.ready().await.unwrap().call(()));
    assert_pending!(future.poll());
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_is_not_revived_by_keepalives_every_line_ending() {
    for ending in ["\n", "\r\n", "\r"] {
        let token = with_endings(OPENAI_CHAT.split_inclusive("\n\n").nth(1).unwrap(), ending);
        let keepalive = with_endings(": keepalive\n\n", ending);
        let mut steps = vec![(Duration::ZERO, token)];
        for _ in 0..10 {
            steps.push((Duration::from_millis(400), keepalive.clone()));
        }
        let guard = StreamGuardLayer::builder()
            .idle_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let mut svc = tower::ServiceBuilder::new()
            .layer(guard)
            .service(service_fn(move |()| {
                let steps = steps.clone();
                async move { Ok::<_, BoxError>(sse_response(timed_body(steps))) }
            }));
        let start = Instant::now();
        let response = svc.ready().await.unwrap().call(()).await.unwrap();
        let err = response.into_body().collect().await.unwrap_err();
        let idle = err.downcast_ref::<StreamIdle>().expect("StreamIdle");
        assert_eq!(idle.tokens(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(1), "{ending:?}");
    }
}
