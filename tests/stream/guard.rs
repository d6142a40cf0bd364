//! The guard on one provider: deadlines, keepalives, completion rules, and what the breaker
//! records for each.

use crate::upstream::{self, Body, Fault, Plan, Rng, Step, Upstream, counting_breaker, read};
use bytes::Bytes;
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::stream::{
    FirstTokenTimeout, SseRules, StreamGuardLayer, StreamIdle, StreamTruncated,
};

fn guard(first_token: Option<u64>, idle: Option<u64>) -> StreamGuardLayer {
    let mut builder = StreamGuardLayer::builder();
    if let Some(ms) = first_token {
        builder = builder.first_token_timeout(Duration::from_millis(ms));
    }
    if let Some(ms) = idle {
        builder = builder.idle_timeout(Duration::from_millis(ms));
    }
    builder.build().unwrap()
}

fn steps_service(
    make: impl Fn() -> Vec<Step> + Clone + Send + 'static,
) -> impl Service<(), Response = http::Response<Body>, Error = BoxError, Future: Send> + Clone {
    service_fn(move |()| {
        let steps = make();
        async move { Ok::<_, BoxError>(http::Response::new(upstream::body(steps, None))) }
    })
}

#[tokio::test(start_paused = true)]
async fn a_keepalive_only_stream_is_a_failure_within_idle_plus_one_second() {
    let breaker = counting_breaker("llm");
    let idle = Duration::from_secs(5);
    let stalled = Upstream::new("p", || Plan {
        fault: Fault::StallBeforeFirstToken,
        ..Plan::ok(Duration::ZERO)
    });
    // Only an idle deadline: it also bounds the wait for the first token.
    let mut client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .layer(guard(None, Some(5_000)))
        .service(stalled.service::<()>());
    let start = Instant::now();
    let err = client.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<FirstTokenTimeout>(), "{err}");
    assert!(start.elapsed() <= idle + Duration::from_secs(1));

    // Tokens, then keepalives only: the idle deadline counts from the last token.
    let idles = Upstream::new("p", || Plan {
        fault: Fault::IdleAfter(3),
        ..Plan::ok(Duration::from_millis(100))
    });
    let mut client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .layer(guard(Some(2_000), Some(5_000)))
        .service(idles.service::<()>());
    let response = client.ready().await.unwrap().call(()).await.unwrap();
    let read = read(response.into_body()).await;
    assert_eq!(read.tokens.len(), 3);
    let err = read.error.expect("an idle error");
    let idle_err = err.downcast_ref::<StreamIdle>().expect("StreamIdle");
    assert_eq!((idle_err.idle(), idle_err.tokens()), (idle, 3));
    let silent_for = read.ended_at - read.last_token_at.unwrap();
    assert!(silent_for >= idle && silent_for <= idle + Duration::from_secs(1));

    assert_eq!(breaker.metrics().failed_calls, 2);
}

#[tokio::test(start_paused = true)]
async fn a_stream_cut_without_done_is_a_failure_in_every_one_of_1000_runs() {
    let breaker = counting_breaker("llm");
    let mut rng = Rng::new(17);
    let mut truncated = 0;
    for run in 0..1_000u64 {
        // A full answer up to its `[DONE]`, cut at a random byte before the end of `[DONE]`'s
        // line, and re-chunked at random points.
        let mut bytes = Vec::new();
        for seq in 0..5 {
            bytes.extend_from_slice(&upstream::token("p", seq, false));
        }
        let finish = bytes.len();
        let finished = run % 2 == 0;
        if finished {
            bytes.extend_from_slice(&upstream::token("p", 5, true));
        }
        bytes.extend_from_slice(b"data: [DONE]\n");
        // Cut before the finish chunk (or, without one, anywhere before `[DONE]`'s blank line).
        let limit = if finished { finish } else { bytes.len() };
        let cut = (rng.next_u64() % limit as u64) as usize;
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < cut {
            let len = 1 + (rng.next_u64() % 40) as usize;
            let end = (at + len).min(cut);
            pieces.push(Bytes::copy_from_slice(&bytes[at..end]));
            at = end;
        }
        let mut client = ServiceBuilder::new()
            .layer(breaker.http_layer())
            .layer(guard(Some(1_000), Some(1_000)))
            .service(steps_service(move || {
                pieces.iter().cloned().map(Step::Send).collect()
            }));
        let err = match client.ready().await.unwrap().call(()).await {
            Err(err) => err,
            Ok(response) => read(response.into_body()).await.error.expect("a failure"),
        };
        assert!(
            err.is::<StreamTruncated>(),
            "run {run}, cut at {cut}: {err}"
        );
        truncated += 1;
    }
    assert_eq!(truncated, 1_000);
    let metrics = breaker.metrics();
    assert_eq!((metrics.failed_calls, metrics.successful_calls), (1_000, 0));
}

#[tokio::test(start_paused = true)]
async fn a_complete_answer_is_a_success_even_when_the_caller_stops_at_done() {
    let breaker = counting_breaker("llm");
    let ok = Upstream::new("p", || Plan::ok(Duration::from_millis(300)));
    let mut client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .layer(guard(Some(1_000), Some(1_000)))
        .service(ok.service::<()>());
    // Read to the end.
    let response = client.ready().await.unwrap().call(()).await.unwrap();
    let read = read(response.into_body()).await;
    assert!(read.error.is_none());
    assert_eq!(read.tokens.len(), 10);
    // Read up to the `[DONE]` frame, then drop the body: `[DONE]` is the last event, so the
    // body reported its end and the call was recorded before the drop.
    let mut body = client
        .ready()
        .await
        .unwrap()
        .call(())
        .await
        .unwrap()
        .into_body();
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        if frame.data_ref().is_some_and(|d| d.ends_with(b"[DONE]\n\n")) {
            break;
        }
    }
    drop(body);
    assert_eq!(breaker.metrics().successful_calls, 2);
}

#[tokio::test(start_paused = true)]
async fn the_first_token_deadline_counts_from_the_call_and_ignores_empty_events() {
    let deadline = Duration::from_secs(2);
    // A head that never comes.
    let mut no_head = ServiceBuilder::new()
        .layer(guard(Some(2_000), None))
        .service(service_fn(|()| {
            std::future::pending::<Result<http::Response<Body>, BoxError>>()
        }));
    let start = Instant::now();
    let err = no_head.ready().await.unwrap().call(()).await.unwrap_err();
    let err = err.downcast_ref::<FirstTokenTimeout>().unwrap();
    assert!(!err.had_headers());
    assert_eq!(start.elapsed(), deadline);

    // A head after 1.5 s, then empty events and comments: the deadline still counts from the
    // call.
    let mut empty = ServiceBuilder::new()
        .layer(guard(Some(2_000), None))
        .service(steps_service(|| {
            vec![
                Step::Wait(Duration::from_millis(100)),
                Step::Send(Bytes::from_static(b"data:\n\n: ping\n\ndata:  \n\n")),
                Step::Stall,
            ]
        }));
    let start = Instant::now();
    let err = empty.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(
        err.downcast_ref::<FirstTokenTimeout>()
            .unwrap()
            .had_headers()
    );
    assert_eq!(start.elapsed(), deadline);
}

#[tokio::test(start_paused = true)]
async fn at_headers_mode_fails_in_the_body_and_error_statuses_pass_through() {
    let layer = StreamGuardLayer::builder()
        .first_token_timeout(Duration::from_secs(1))
        .respond_at_first_token(false)
        .build()
        .unwrap();
    let mut stalled = ServiceBuilder::new()
        .layer(layer.clone())
        .service(steps_service(|| vec![Step::Stall]));
    let response = stalled.ready().await.unwrap().call(()).await.unwrap();
    let stalled_read = read(response.into_body()).await;
    assert!(stalled_read.error.unwrap().is::<FirstTokenTimeout>());

    // A 503's body is not an event stream: untouched, no deadline.
    let mut unavailable = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|()| async {
            let body = upstream::body(
                vec![
                    Step::Wait(Duration::from_secs(5)),
                    Step::Send(Bytes::from_static(b"{\"error\":\"overloaded\"}")),
                ],
                None,
            );
            let mut response = http::Response::new(body);
            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, BoxError>(response)
        }));
    let response = unavailable.ready().await.unwrap().call(()).await.unwrap();
    assert!(!response.body().is_guarded());
    let unavailable_read = read(response.into_body()).await;
    assert!(unavailable_read.error.is_none());
}

#[tokio::test(start_paused = true)]
async fn anthropic_start_and_ping_are_not_tokens_and_message_stop_completes() {
    let frames = |stop: bool| {
        let mut steps = vec![
            Step::Send(Bytes::from_static(
                b"event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\n",
            )),
            Step::Wait(Duration::from_millis(500)),
            Step::Send(Bytes::from_static(
                b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"Hi\"}}\n\n",
            )),
        ];
        if stop {
            steps.push(Step::Send(Bytes::from_static(
                b"event: message_delta\ndata: {\"type\":\"message_delta\"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            )));
        }
        steps
    };
    let layer = StreamGuardLayer::builder()
        .first_token_timeout(Duration::from_secs(1))
        .rules(SseRules::anthropic())
        .build()
        .unwrap();
    let start = Instant::now();
    let mut complete = ServiceBuilder::new()
        .layer(layer.clone())
        .service(steps_service(move || frames(true)));
    let response = complete.ready().await.unwrap().call(()).await.unwrap();
    // The response came at the first content token, not at `message_start`.
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    assert!(read(response.into_body()).await.error.is_none());

    let mut cut = ServiceBuilder::new()
        .layer(layer)
        .service(steps_service(move || frames(false)));
    let response = cut.ready().await.unwrap().call(()).await.unwrap();
    let err = read(response.into_body()).await.error.unwrap();
    assert_eq!(
        err.downcast_ref::<StreamTruncated>().unwrap().rules(),
        "anthropic"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_gone_quiet_after_its_finish_reason_ends_cleanly() {
    let mut client = ServiceBuilder::new()
        .layer(guard(Some(1_000), Some(1_000)))
        .service(steps_service(|| {
            vec![
                Step::Send(upstream::token("p", 0, true)),
                Step::Stall, // no `[DONE]`, no end: the answer is whole all the same
            ]
        }));
    let response = client.ready().await.unwrap().call(()).await.unwrap();
    let read = read(response.into_body()).await;
    assert!(read.error.is_none());
    assert_eq!(read.tokens.len(), 1);
}

#[test]
fn deadlines_out_of_range_are_config_errors() {
    let err = StreamGuardLayer::builder()
        .first_token_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "first_token_timeout");
    let err = StreamGuardLayer::builder()
        .idle_timeout(Duration::from_secs(100_000))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "idle_timeout");
}

#[tokio::test(start_paused = true)]
async fn reqwest_responses_are_guarded_and_keep_their_url() {
    use reqwest::ResponseBuilderExt;
    let layer = guard(Some(1_000), Some(1_000));
    let mut client = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|()| async {
            let body = http_body_util::Full::new(upstream::token("p", 0, false));
            let url = reqwest::Url::parse("http://127.0.0.1:9/v1/chat/completions").unwrap();
            let response = http::Response::builder()
                .url(url)
                .body(reqwest::Body::wrap(body))
                .unwrap();
            Ok::<_, BoxError>(reqwest::Response::from(response))
        }));
    let response: reqwest::Response = client.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(
        response.url().as_str(),
        "http://127.0.0.1:9/v1/chat/completions"
    );
    let err = response.bytes().await.unwrap_err();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut found = false;
    while let Some(e) = source {
        found |= e.is::<StreamTruncated>();
        source = e.source();
    }
    assert!(found, "{err:?}");
}

/// A 200 with `content_type` (none when `None`), whose body comes 3 s after the head.
fn answer(
    content_type: Option<&'static str>,
    body: &'static str,
) -> impl Service<(), Response = http::Response<Body>, Error = BoxError, Future: Send> + Clone {
    service_fn(move |()| async move {
        let steps = vec![
            Step::Wait(Duration::from_secs(3)),
            Step::Send(Bytes::from_static(body.as_bytes())),
        ];
        let mut response = http::Response::new(upstream::body(steps, None));
        if let Some(value) = content_type {
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(value),
            );
        }
        Ok::<_, BoxError>(response)
    })
}

#[tokio::test(start_paused = true)]
async fn the_guard_guards_streams_and_a_json_answer_passes_untouched_as_a_success() {
    let breaker = counting_breaker("llm");
    let layer = || {
        ServiceBuilder::new()
            .layer(breaker.http_layer())
            .layer(guard(Some(1_000), Some(1_000)))
    };
    // A non-streamed completion through the same client: slower than the first-token deadline,
    // and no `[DONE]` or `finish_reason` (an embeddings answer).
    let json = r#"{"object":"list","data":[{"embedding":[0.1,0.2]}]}"#;
    let mut client = layer().service(answer(Some("application/json; charset=utf-8"), json));
    let response = client.ready().await.unwrap().call(()).await.unwrap();
    assert!(!response.body().get_ref().is_guarded());
    let body = read(response.into_body()).await;
    assert!(body.error.is_none(), "{:?}", body.error);
    assert_eq!(
        (
            breaker.metrics().successful_calls,
            breaker.metrics().failed_calls
        ),
        (1, 0)
    );

    // The same late body as an event stream, in any spelling, or with no content type: guarded.
    let late = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n";
    for content_type in [
        Some("text/event-stream"),
        Some("Text/Event-Stream ; charset=utf-8"),
        None,
    ] {
        let mut client = layer().service(answer(content_type, late));
        let err = client.ready().await.unwrap().call(()).await.unwrap_err();
        assert!(err.is::<FirstTokenTimeout>(), "{content_type:?}: {err}");
    }
    assert_eq!(breaker.metrics().failed_calls, 3);

    // A 204 has no body: nothing to guard, content type or not.
    let mut client = layer().service(service_fn(|()| async {
        let mut response = http::Response::new(upstream::body(vec![], None));
        *response.status_mut() = http::StatusCode::NO_CONTENT;
        Ok::<_, BoxError>(response)
    }));
    let response = client.ready().await.unwrap().call(()).await.unwrap();
    assert!(!response.body().get_ref().is_guarded());
    assert!(read(response.into_body()).await.error.is_none());

    // A rule of one's own: this gateway marks its streams with a header.
    let marked = StreamGuardLayer::builder()
        .first_token_timeout(Duration::from_secs(1))
        .stream_when(|head: &http::response::Parts| head.headers.contains_key("x-stream"))
        .build()
        .unwrap();
    let mut client = ServiceBuilder::new()
        .layer(marked)
        .service(answer(Some("text/event-stream"), late));
    let response = client.ready().await.unwrap().call(()).await.unwrap();
    assert!(!response.body().is_guarded());
}
