//! Streamed-body faults on the upstream's SSE answers, read by a reqwest client with paused
//! time: the injected pauses are exact.

use crate::support::ms;
use crate::support::upstream::Upstream;
use std::time::Duration;
use tokio::time::Instant;
use tower_breaker::chaos::{Fault, FaultPlan};

const STREAM: &str = r#"{"model":"m","stream":true}"#;

/// The events of a streamed answer, each with the time it arrived (since the request).
async fn read_events(url: &str) -> Result<Vec<(String, Duration)>, reqwest::Error> {
    let start = Instant::now();
    let mut response = reqwest::Client::new().post(url).body(STREAM).send().await?;
    let mut events = Vec::new();
    let mut partial = String::new();
    while let Some(chunk) = response.chunk().await? {
        partial.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = partial.find("\n\n") {
            let event: String = partial.drain(..end + 2).collect();
            events.push((event.trim_end().to_string(), start.elapsed()));
        }
    }
    Ok(events)
}

/// Asks `url` for a streamed answer.
async fn stream(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .body(STREAM)
        .send()
        .await
        .unwrap()
}

fn texts(events: &[(String, Duration)]) -> Vec<&str> {
    events.iter().map(|(e, _)| e.as_str()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_cut_stream_ends_without_its_terminal_event() {
    let upstream = Upstream::with_plan(FaultPlan::new().then(Fault::cut_after(3))).await;
    let events = read_events(&upstream.chat_url()).await.unwrap();
    assert_eq!(events.len(), 3, "{:?}", texts(&events));
    assert!(texts(&events).iter().all(|e| !e.contains("[DONE]")));
    // The next request is healthy and ends with [DONE].
    let events = read_events(&upstream.chat_url()).await.unwrap();
    assert_eq!(texts(&events).last(), Some(&"data: [DONE]"));
}

#[tokio::test(start_paused = true)]
async fn a_cut_drops_the_terminal_event_even_when_it_comes_sooner() {
    let upstream = Upstream::builder()
        .chunks(1)
        .plan(FaultPlan::new().then(Fault::cut_after(100)))
        .start()
        .await;
    let events = read_events(&upstream.chat_url()).await.unwrap();
    assert_eq!(
        events.len(),
        3,
        "role, one token, finish: {:?}",
        texts(&events)
    );
    assert!(!texts(&events).contains(&"data: [DONE]"));
    // Anthropic's stream loses its message_stop.
    let upstream = Upstream::with_plan(FaultPlan::new().then(Fault::cut_after(100))).await;
    let text = reqwest::Client::new()
        .post(upstream.messages_url())
        .body(STREAM)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("message_delta") && !text.contains("message_stop"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reset_stream_fails_the_body_read_after_its_events() {
    // Events 10 ms apart, so that the head is on the wire before the reset (without a pause
    // hyper may abort the connection before it flushed anything: a send error).
    let upstream = Upstream::builder()
        .chunk_interval(ms(10))
        .plan(FaultPlan::new().then(Fault::reset_after(2)))
        .start()
        .await;
    let mut response = stream(&upstream.chat_url()).await;
    assert_eq!(response.status(), 200);
    let mut read = String::new();
    let err = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => read.push_str(std::str::from_utf8(&chunk).unwrap()),
            Ok(None) => panic!("the stream ended cleanly: {read}"),
            Err(e) => break e,
        }
    };
    assert_eq!(read.matches("\n\n").count(), 2, "{read}");
    assert!(
        err.is_body() || err.is_decode() || err.is_request(),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stall_before_the_first_byte_delays_only_the_first_event() {
    let upstream =
        Upstream::with_plan(FaultPlan::new().then(Fault::stall_before_first_byte(ms(5_000)))).await;
    let events = read_events(&upstream.chat_url()).await.unwrap();
    assert_eq!(texts(&events).last(), Some(&"data: [DONE]"));
    assert_eq!(events[0].1, ms(5_000));
    assert_eq!(events.last().unwrap().1, ms(5_000));
}

#[tokio::test(start_paused = true)]
async fn a_mid_stream_stall_pauses_after_its_events() {
    let upstream =
        Upstream::with_plan(FaultPlan::new().then(Fault::stall_after(2, ms(30_000)))).await;
    let events = read_events(&upstream.chat_url()).await.unwrap();
    let times: Vec<Duration> = events.iter().map(|(_, t)| *t).collect();
    assert_eq!(times[..2], [Duration::ZERO; 2]);
    assert!(times[2..].iter().all(|t| *t == ms(30_000)), "{times:?}");
    assert_eq!(texts(&events).last(), Some(&"data: [DONE]"));
}

#[tokio::test(start_paused = true)]
async fn a_trickle_sends_one_event_per_interval() {
    let upstream = Upstream::with_plan(FaultPlan::new().then(Fault::trickle(ms(250)))).await;
    let events = read_events(&upstream.chat_url()).await.unwrap();
    let times: Vec<Duration> = events.iter().map(|(_, t)| *t).collect();
    let expected: Vec<Duration> = (1..=events.len() as u64).map(|i| ms(250 * i)).collect();
    assert_eq!(times, expected);
    assert_eq!(events.len(), 8, "role, 5 tokens, finish, [DONE]");
}

#[tokio::test(start_paused = true)]
async fn keepalive_only_sends_comments_and_never_the_answer() {
    let upstream =
        Upstream::with_plan(FaultPlan::new().then(Fault::keepalive_only(ms(15_000)))).await;
    let start = Instant::now();
    let mut response = stream(&upstream.chat_url()).await;
    for i in 1..=4u64 {
        let chunk = response.chunk().await.unwrap().unwrap();
        assert_eq!(&chunk[..], b": keepalive\n\n");
        assert_eq!(start.elapsed(), ms(15_000 * i));
    }
    assert_eq!(
        upstream.answered(),
        1,
        "the app answered; its events are held back"
    );
}

/// Four events (the last `[DONE]`) whose lines end in `eol`, in 7-byte chunks (so that line
/// breaks, even `\r\n`, fall across chunks), answered at once by an in-process service.
fn events_with_line_ends(
    eol: &'static str,
) -> impl tower::Service<
    http::Request<String>,
    Response = http::Response<http_body_util::StreamBody<BodyStream>>,
    Error = tower::BoxError,
    Future: Send,
> + Clone {
    tower::service_fn(move |_: http::Request<String>| async move {
        let text = [
            "data: {\"n\":1}",
            "data: {\"n\":2}",
            ": ping",
            "data: {\"n\":3}",
            "data: [DONE]",
        ]
        .iter()
        .enumerate()
        .map(|(i, line)| {
            // The comment shares the third event's block: `: ping` then `data: {"n":3}`.
            if i == 2 {
                format!("{line}{eol}")
            } else {
                format!("{line}{eol}{eol}")
            }
        })
        .collect::<String>();
        let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, tower::BoxError>> = text
            .as_bytes()
            .chunks(7)
            .map(|c| Ok(http_body::Frame::data(bytes::Bytes::copy_from_slice(c))))
            .collect();
        let stream: BodyStream = Box::pin(futures_util::stream::iter(chunks));
        Ok::<_, tower::BoxError>(http::Response::new(http_body_util::StreamBody::new(stream)))
    })
}

type BodyStream = std::pin::Pin<
    Box<
        dyn futures_util::Stream<Item = Result<http_body::Frame<bytes::Bytes>, tower::BoxError>>
            + Send,
    >,
>;

/// The body's bytes, each data frame with the time it came (since the call).
async fn frames_of(fault: Fault, eol: &'static str) -> Vec<(String, Duration)> {
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};
    let chaos = tower_breaker::chaos::ChaosLayer::http("crlf")
        .plan(FaultPlan::new().then(fault))
        .build()
        .unwrap();
    let start = Instant::now();
    let response = chaos
        .layer(events_with_line_ends(eol))
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        frames.push((String::from_utf8(data.to_vec()).unwrap(), start.elapsed()));
    }
    frames
}

#[tokio::test(start_paused = true)]
async fn chaos_stream_faults_count_events_on_every_sse_line_ending() {
    for eol in ["\n", "\r\n", "\r"] {
        let event = |n: u32| format!("data: {{\"n\":{n}}}{eol}{eol}");
        let third = format!(": ping{eol}data: {{\"n\":3}}{eol}{eol}");

        let cut = frames_of(Fault::cut_after(2), eol).await;
        let texts: Vec<&str> = cut.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(texts, [event(1), event(2)], "cut_after(2), {eol:?}");

        let stalled = frames_of(Fault::stall_after(2, ms(30_000)), eol).await;
        let times: Vec<Duration> = stalled.iter().map(|(_, t)| *t).collect();
        assert_eq!(
            times,
            [Duration::ZERO, Duration::ZERO, ms(30_000), ms(30_000)],
            "stall_after(2), {eol:?}"
        );
        assert_eq!(stalled[2].0, third);

        let trickled = frames_of(Fault::trickle(ms(250)), eol).await;
        let times: Vec<Duration> = trickled.iter().map(|(_, t)| *t).collect();
        assert_eq!(
            times,
            [ms(250), ms(500), ms(750), ms(1_000)],
            "trickle, {eol:?}"
        );
        let whole: String = trickled.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            whole,
            format!("{}{}{third}data: [DONE]{eol}{eol}", event(1), event(2))
        );
    }
}
