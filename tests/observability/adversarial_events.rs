//! The stream guard's and the quota governor's events one step off the happy path: bodies
//! dropped or polled at odd times, chunks that look like tokens and are not, listeners that
//! panic or call back into the component, many tasks and many keys at once, keys that an
//! exporter must escape, and two governors of one name.

#[cfg(feature = "stream")]
mod stream {
    use bytes::Bytes;
    use futures_util::StreamExt;
    use futures_util::stream::{self, BoxStream};
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
    use tower_breaker::stream::{StreamEvent, StreamGuardLayer, StreamTruncated};

    const TOKEN: &str =
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";
    const ROLE: &str = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    type Body = StreamBody<BoxStream<'static, Result<Frame<Bytes>, BoxError>>>;

    /// One step of a scripted upstream body.
    #[derive(Debug, Clone, Copy)]
    enum Chunk {
        Data(&'static str),
        Wait(u64),
        Fail,
        /// Nothing more, ever.
        Stall,
    }
    use Chunk::*;

    fn body(chunks: Vec<Chunk>) -> Body {
        let stall = chunks.iter().any(|c| matches!(c, Stall));
        let frames = stream::iter(chunks)
            .filter_map(|chunk| async move {
                match chunk {
                    Data(d) => Some(Ok(Frame::data(Bytes::from_static(d.as_bytes())))),
                    Wait(ms) => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        None
                    }
                    Fail => Some(Err::<_, BoxError>("connection reset".into())),
                    Stall => None,
                }
            })
            .boxed();
        let frames = match stall {
            true => frames.chain(stream::pending()).boxed(),
            false => frames,
        };
        StreamBody::new(frames)
    }

    fn sse(chunks: Vec<Chunk>) -> http::Response<Body> {
        let mut response = http::Response::new(body(chunks));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        response
    }

    /// Every event a listener saw: the guard's name, the outcome, and the time to first token
    /// of a `FirstToken`.
    type Seen = Arc<Mutex<Vec<(String, &'static str, Option<Duration>)>>>;

    fn recorder() -> (Seen, impl Fn(&StreamEvent) + Send + Sync + 'static) {
        let seen: Seen = Arc::default();
        let sink = seen.clone();
        let listener = move |event: &StreamEvent| {
            let ttft = match event {
                StreamEvent::FirstToken { ttft, .. } => Some(*ttft),
                _ => None,
            };
            sink.lock()
                .unwrap()
                .push((event.name().to_string(), event.outcome(), ttft));
        };
        (seen, listener)
    }

    fn outcomes(seen: &Seen) -> Vec<&'static str> {
        seen.lock().unwrap().iter().map(|e| e.1).collect()
    }

    fn guard(
        name: &str,
        listener: impl Fn(&StreamEvent) + Send + Sync + 'static,
    ) -> StreamGuardLayer {
        StreamGuardLayer::builder()
            .name(name)
            .first_token_timeout(Duration::from_secs(10))
            .idle_timeout(Duration::from_secs(10))
            .on_event(listener)
            .build()
            .unwrap()
    }

    /// A client whose upstream answers each call with the chunks it is given.
    fn client(
        layer: StreamGuardLayer,
    ) -> impl Service<
        Vec<Chunk>,
        Response = http::Response<tower_breaker::stream::GuardedBody<Body>>,
        Error = BoxError,
    > {
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|chunks: Vec<Chunk>| async move {
                Ok::<_, BoxError>(sse(chunks))
            }))
    }

    /// One call through `layer` to an upstream that answers with `chunks`.
    async fn respond(
        layer: &StreamGuardLayer,
        chunks: Vec<Chunk>,
    ) -> http::Response<tower_breaker::stream::GuardedBody<Body>> {
        let mut client = client(layer.clone());
        client.ready().await.unwrap().call(chunks).await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_dropped_before_its_first_poll_reports_one_dropped_end() {
        let (seen, listener) = recorder();
        let layer = StreamGuardLayer::builder()
            .name("head")
            .first_token_timeout(Duration::from_secs(10))
            .respond_at_first_token(false)
            .on_event(listener)
            .build()
            .unwrap();
        let response = respond(&layer, vec![Data(TOKEN), Data(DONE)]).await;
        drop(response);
        assert_eq!(outcomes(&seen), vec!["dropped"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_dropped_after_its_first_token_reports_first_token_then_dropped() {
        let (seen, listener) = recorder();
        let layer = guard("openai", listener);
        let response = respond(&layer, vec![Wait(200), Data(TOKEN), Stall]).await;
        let mut body = response.into_body();
        // The token read while waiting for it is the caller's first frame.
        assert!(body.frame().await.unwrap().unwrap().is_data());
        drop(body);
        assert_eq!(outcomes(&seen), vec!["first_token", "dropped"]);
        assert_eq!(seen.lock().unwrap()[0].2, Some(Duration::from_millis(200)));
    }

    /// The response future, waiting for the first token after the head came, dropped by its
    /// caller (a timeout around it, a client gone): one `dropped` end. Dropped before the head
    /// came, nothing was a stream yet: no event.
    #[tokio::test(start_paused = true)]
    async fn a_call_dropped_while_waiting_for_its_first_token_reports_one_dropped_end() {
        let (seen, listener) = recorder();
        let layer = guard("openai", listener);
        let mut client = client(layer);
        let waiting = client.ready().await.unwrap().call(vec![
            Data(": keepalive\n\n"),
            Wait(5_000),
            Data(TOKEN),
            Data(DONE),
        ]);
        let timed_out = tokio::time::timeout(Duration::from_secs(1), waiting).await;
        assert!(timed_out.is_err());
        assert_eq!(outcomes(&seen), vec!["dropped"]);

        let mut client = ServiceBuilder::new()
            .layer(guard("openai", |_: &StreamEvent| {
                panic!("no stream, no event")
            }))
            .service(service_fn(|()| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, BoxError>(sse(vec![Data(TOKEN), Data(DONE)]))
            }));
        let waiting = client.ready().await.unwrap().call(());
        assert!(
            tokio::time::timeout(Duration::from_secs(1), waiting)
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_polled_after_its_end_reports_no_second_end() {
        let (seen, listener) = recorder();
        let layer = guard("openai", listener);

        // Completed, then polled twice more and dropped.
        let response = respond(&layer, vec![Data(TOKEN), Data(DONE)]).await;
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame.unwrap();
        }
        assert!(body.frame().await.is_none());
        assert!(body.frame().await.is_none());
        drop(body);

        // Truncated, then polled twice more and dropped.
        let response = respond(&layer, vec![Data(TOKEN)]).await;
        let mut body = response.into_body();
        assert!(body.frame().await.unwrap().is_ok());
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.is::<StreamTruncated>());
        assert!(body.frame().await.is_none());
        assert!(body.frame().await.is_none());
        drop(body);

        assert_eq!(
            outcomes(&seen),
            vec!["first_token", "completed", "first_token", "truncated"]
        );
    }

    /// The module docs: OpenAI's role-only chunk is not a token; the first token is the first
    /// content, and its time is the content's.
    #[tokio::test(start_paused = true)]
    async fn a_role_only_first_chunk_is_not_the_first_token() {
        let (seen, listener) = recorder();
        let layer = guard("openai", listener);
        let response = respond(&layer, vec![Data(ROLE), Wait(700), Data(TOKEN), Data(DONE)]).await;
        response.into_body().collect().await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                (
                    "openai".into(),
                    "first_token",
                    Some(Duration::from_millis(700))
                ),
                ("openai".into(), "completed", None),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_keepalive_before_the_first_token_is_not_the_first_token() {
        let (seen, listener) = recorder();
        let layer = guard("openai", listener);
        let chunks = vec![
            Data(": keepalive\n\n"),
            Wait(400),
            Data(": ping\n\ndata: \n\n"),
            Wait(400),
            Data(TOKEN),
            Data(DONE),
        ];
        let response = respond(&layer, chunks).await;
        response.into_body().collect().await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0].2, Some(Duration::from_millis(800)), "{seen:?}");
        assert_eq!(outcomes_of(&seen), vec!["first_token", "completed"]);
    }

    fn outcomes_of(seen: &[(String, &'static str, Option<Duration>)]) -> Vec<&'static str> {
        seen.iter().map(|e| e.1).collect()
    }

    /// CRLF line endings, the `\r\n` of the last event split across two frames: one first
    /// token, one clean end, and the caller gets every byte.
    #[tokio::test(start_paused = true)]
    async fn crlf_line_endings_split_across_frames_complete_once() {
        let (seen, listener) = recorder();
        let layer = guard("openai", listener);
        let token =
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\r\n\r\n";
        let chunks = vec![Data(token), Data("data: [DONE]\r\n\r"), Data("\n")];
        let response = respond(&layer, chunks).await;
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert!(bytes.ends_with(b"data: [DONE]\r\n\r\n"), "{bytes:?}");
        assert_eq!(outcomes(&seen), vec!["first_token", "completed"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_error_mid_stream_is_one_failed_end() {
        let (seen, listener) = recorder();
        let layer = guard("openai", listener);
        let response = respond(
            &layer,
            vec![Data(TOKEN), Wait(100), Fail, Data(TOKEN), Data(DONE)],
        )
        .await;
        let mut body = response.into_body();
        assert!(body.frame().await.unwrap().is_ok());
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "connection reset");
        assert!(body.frame().await.is_none(), "nothing after the failure");
        drop(body);
        assert_eq!(outcomes(&seen), vec!["first_token", "failed"]);
    }

    /// A reader that stops when the body says it is at its end (`is_end_stream`, as hyper
    /// does when it forwards a body) and never polls for the `None`: with rules that need no
    /// complete event, a body read to its end completed; it was not dropped.
    #[tokio::test(start_paused = true)]
    async fn a_body_read_until_is_end_stream_completes_without_a_final_poll() {
        use http_body::Body as _;
        use http_body_util::Full;
        use tower_breaker::stream::SseRules;

        let (seen, listener) = recorder();
        let layer = StreamGuardLayer::builder()
            .name("gateway")
            .first_token_timeout(Duration::from_secs(10))
            .rules(SseRules::any_data())
            .on_event(listener)
            .build()
            .unwrap();
        let mut client = ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|()| async {
                let body = Full::new(Bytes::from_static(b"data: hello\n\ndata: world\n\n"));
                Ok::<_, BoxError>(http::Response::new(body))
            }));
        let response = client.ready().await.unwrap().call(()).await.unwrap();
        let mut body = response.into_body();
        let mut frames = 0;
        while !body.is_end_stream() {
            body.frame().await.unwrap().unwrap();
            frames += 1;
        }
        drop(body);
        assert_eq!(frames, 1);
        assert_eq!(outcomes(&seen), vec!["first_token", "completed"]);
    }

    /// The event docs: responses that are not streams (an `application/json` answer, an error
    /// status) report nothing, read to the end or dropped.
    #[tokio::test(start_paused = true)]
    async fn a_json_answer_and_an_error_status_report_nothing() {
        let (seen, listener) = recorder();
        let layer = guard("openai", listener);
        let mut client =
            ServiceBuilder::new()
                .layer(layer)
                .service(service_fn(|status: u16| async move {
                    let mut response = sse(vec![Data("{\"choices\":[]}")]);
                    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    if status == 200 {
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                    }
                    Ok::<_, BoxError>(response)
                }));
        for status in [200, 500, 429] {
            let response = client.ready().await.unwrap().call(status).await.unwrap();
            assert!(!response.body().is_guarded());
            response.into_body().collect().await.unwrap();
            let dropped = client.ready().await.unwrap().call(status).await.unwrap();
            drop(dropped);
        }
        assert_eq!(outcomes(&seen), Vec::<&str>::new());
    }

    /// A hedge over a guard: the winner reports its first token and its end; the losing
    /// attempt, whose head came but no token, is dropped when the winner answers, and reports
    /// that one end.
    #[tokio::test(start_paused = true)]
    async fn a_hedges_losing_attempt_reports_one_dropped_end() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tower_breaker::stream::{Hedge, HedgeDelay};

        let (seen, listener) = recorder();
        let calls = Arc::new(AtomicUsize::new(0));
        let upstream = service_fn(move |_: ()| {
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                // The first attempt's head comes at once, its token never; the hedge's token
                // comes 100 ms after it starts.
                let chunks = match first {
                    true => vec![Data(": keepalive\n\n"), Stall],
                    false => vec![Wait(100), Data(TOKEN), Data(DONE)],
                };
                Ok::<_, BoxError>(sse(chunks))
            }
        });
        let guarded = ServiceBuilder::new()
            .layer(guard("openai", listener))
            .service(upstream);
        let mut hedge = Hedge::builder()
            .delay(HedgeDelay::fixed(Duration::from_millis(500)))
            .hedge_non_idempotent(true)
            .build(guarded)
            .unwrap();
        let response = hedge.ready().await.unwrap().call(()).await.unwrap();
        response.into_body().collect().await.unwrap();
        let seen = seen.lock().unwrap().clone();
        let mut ends = outcomes_of(&seen);
        ends.sort_unstable();
        assert_eq!(
            ends,
            vec!["completed", "dropped", "first_token"],
            "{seen:?}"
        );
        // The winner's first token, 100 ms after its own call.
        let ttft: Vec<_> = seen.iter().filter_map(|e| e.2).collect();
        assert_eq!(ttft, vec![Duration::from_millis(100)]);
    }

    /// `on_stream_event` on a stack with a `StreamRecorder` of one's own: the events reach both
    /// the guard's own listener and the stack's, under the guard's name.
    #[cfg(feature = "stack")]
    #[tokio::test(start_paused = true)]
    async fn a_stack_with_its_own_stream_recorder_reports_to_both_listeners() {
        use tower::Layer;
        use tower_breaker::http::HttpClassifier;
        use tower_breaker::stack::StandardResilience;
        use tower_breaker::stream::StreamRecorder;

        let (own, own_listener) = recorder();
        let (stack_seen, stack_listener) = recorder();
        let layer = guard("mine", own_listener);
        let stack = StandardResilience::builder("gpt")
            .llm()
            .record_with(StreamRecorder::new(&layer, HttpClassifier::new()))
            .on_stream_event(stack_listener)
            .build()
            .unwrap();
        let mut client = stack.layer(service_fn(|_: http::Request<String>| async {
            Ok::<_, BoxError>(sse(vec![Wait(250), Data(TOKEN), Data(DONE)]))
        }));
        let request = http::Request::post("http://127.0.0.1/v1/chat/completions")
            .body(r#"{"stream":true}"#.to_string())
            .unwrap();
        let response = client.ready().await.unwrap().call(request).await.unwrap();
        response.into_body().collect().await.unwrap();
        for seen in [own, stack_seen] {
            assert_eq!(
                seen.lock().unwrap().clone(),
                vec![
                    (
                        "mine".into(),
                        "first_token",
                        Some(Duration::from_millis(250))
                    ),
                    ("mine".into(), "completed", None),
                ]
            );
        }
    }

    /// One guard (cloned into services) and one listener shared by many concurrent streams:
    /// each event carries its guard's name and the counts add up.
    #[tokio::test(start_paused = true)]
    async fn concurrent_streams_through_shared_guards_carry_their_names_and_add_up() {
        let (seen, listener) = recorder();
        let listener = Arc::new(listener);
        let (a, b) = (listener.clone(), listener);
        let openai = guard("openai", move |e: &StreamEvent| a(e));
        let claude = guard("claude", move |e: &StreamEvent| b(e));
        let mut tasks = Vec::new();
        for i in 0..60u64 {
            let layer = if i % 2 == 0 { &openai } else { &claude };
            let layer = layer.clone();
            // Thirds: complete, truncated, dropped after the first token.
            let chunks = match i % 3 {
                0 => vec![Wait(i * 7), Data(TOKEN), Wait(i), Data(DONE)],
                1 => vec![Wait(i * 7), Data(TOKEN), Wait(i)],
                _ => vec![Wait(i * 7), Data(TOKEN), Stall],
            };
            tasks.push(async move {
                let response = respond(&layer, chunks).await;
                if i % 3 != 2 {
                    let _ = response.into_body().collect().await;
                }
            });
        }
        // Polled together on one task: the streams interleave as the paused clock advances.
        futures_util::future::join_all(tasks).await;
        let seen = seen.lock().unwrap().clone();
        for name in ["openai", "claude"] {
            let count = |outcome: &str| {
                seen.iter()
                    .filter(|e| e.0 == name && e.1 == outcome)
                    .count()
            };
            assert_eq!(count("first_token"), 30, "{name}");
            assert_eq!(
                (count("completed"), count("truncated"), count("dropped")),
                (10, 10, 10),
                "{name}"
            );
        }
        assert_eq!(seen.len(), 120);
    }

    /// A listener that panics (here at every event) fails the reader of the stream, not the
    /// process: the body dropped while that panic unwinds still reports its end, and the
    /// listener's second panic there does not abort.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_listener_fails_its_reader_and_not_the_process() {
        let (seen, record) = recorder();
        let layer = guard("openai", move |event: &StreamEvent| {
            record(event);
            panic!("a listener's bug");
        });
        let read = async move {
            let response = respond(&layer, vec![Data(TOKEN), Data(DONE)]).await;
            let _ = response.into_body().collect().await;
        };
        let read = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(read));
        assert!(
            read.await.is_err(),
            "the listener's panic reaches the reader"
        );
        assert_eq!(outcomes(&seen), vec!["first_token", "dropped"]);
    }
}

#[cfg(feature = "quota")]
mod quota {
    use crate::{Value, key, read_metrics};
    use metrics_util::debugging::DebuggingRecorder;
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;
    use tower_breaker::metrics::MetricsListener;
    use tower_breaker::quota::{Budget, Quota, QuotaEvent, QuotaSnapshot, RateLimits};

    const REQUESTS_LEFT: &str = "tower_breaker_quota_requests_left";
    const TOKENS_LEFT: &str = "tower_breaker_quota_tokens_left";

    /// Every `LevelsChanged` a listener saw: (key, requests left, tokens left, seq).
    type Levels = Arc<Mutex<Vec<(String, Option<f64>, Option<f64>, u64)>>>;

    fn levels() -> (Levels, impl Fn(&QuotaEvent) + Send + Sync + 'static) {
        let levels: Levels = Arc::default();
        let sink = levels.clone();
        let listener = move |event: &QuotaEvent| {
            if let QuotaEvent::LevelsChanged {
                key,
                requests_left,
                tokens_left,
                seq,
                ..
            } = event
            {
                sink.lock()
                    .unwrap()
                    .push((key.to_string(), *requests_left, *tokens_left, *seq));
            }
        };
        (levels, listener)
    }

    /// The levels with the highest `seq` reported for `key`.
    fn latest(levels: &Levels, key: &str) -> Option<(Option<f64>, Option<f64>)> {
        levels
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.0 == key)
            .max_by_key(|l| l.3)
            .map(|l| (l.1, l.2))
    }

    fn known(snapshot: QuotaSnapshot) -> (Option<f64>, Option<f64>) {
        (
            snapshot.requests_limit.map(|_| snapshot.requests_available),
            snapshot.tokens_limit.map(|_| snapshot.tokens_available),
        )
    }

    fn gauge(
        read: &std::collections::BTreeMap<String, Value>,
        metric: &str,
        name: &str,
        k: &str,
    ) -> Option<f64> {
        match read.get(&key(metric, &[("key", k), ("name", name)])) {
            Some(Value::Gauge(v)) => Some(*v),
            None => None,
            other => panic!("{metric} for {k}: {other:?}"),
        }
    }

    fn limits(requests: (u64, u64), tokens: (u64, u64)) -> RateLimits {
        let mut limits = RateLimits::default();
        limits.requests = Budget::new(Some(requests.0), Some(requests.1), None);
        limits.tokens = Budget::new(Some(tokens.0), Some(tokens.1), None);
        limits
    }

    /// 8 threads admit 250 calls each at the same paused instant (no refill between): every
    /// `seq` is distinct, the levels in `seq` order never go up, and both the latest level
    /// reported and the gauge end at the snapshot.
    #[test]
    fn concurrent_admissions_end_at_the_snapshot_in_seq_order() {
        use futures_util::FutureExt;

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let (levels, listener) = levels();
        let quota = Quota::<&'static str>::builder("openai")
            .requests_per_window(10_000)
            .tokens_per_window(1_000_000)
            .on_event(MetricsListener::new())
            .on_event(listener)
            .build()
            .unwrap();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                let (quota, recorder, handle) = (&quota, &recorder, runtime.handle());
                scope.spawn(move || {
                    // The paused clock, frozen: no one drives the runtime.
                    let _entered = handle.enter();
                    metrics::with_local_recorder(recorder, || {
                        for _ in 0..250 {
                            let permit = quota.acquire(&"gpt", 10).now_or_never();
                            drop(permit.expect("fits at once").expect("admitted"));
                        }
                    });
                });
            }
        });
        let _entered = runtime.enter();
        let snapshot = quota.snapshot(&"gpt").unwrap();
        assert_eq!(
            known(snapshot),
            (Some(10_000.0 - 2_000.0), Some(1_000_000.0 - 20_000.0))
        );

        let mut seen = levels.lock().unwrap().clone();
        assert_eq!(seen.len(), 2_000);
        seen.sort_by_key(|l| l.3);
        seen.dedup_by_key(|l| l.3);
        assert_eq!(seen.len(), 2_000, "every seq is distinct");
        for pair in seen.windows(2) {
            assert!(pair[1].1 <= pair[0].1, "{pair:?}");
            assert!(pair[1].2 <= pair[0].2, "{pair:?}");
        }
        assert_eq!(latest(&levels, "gpt"), Some(known(snapshot)));

        let read = read_metrics(&snapshotter);
        assert_eq!(
            gauge(&read, REQUESTS_LEFT, "openai", "gpt"),
            Some(snapshot.requests_available)
        );
        assert_eq!(
            gauge(&read, TOKENS_LEFT, "openai", "gpt"),
            Some(snapshot.tokens_available)
        );
    }

    /// A 429 gives the call's token estimate back (the request still counts): one level event
    /// reports it, equal to the snapshot, and the gauges follow.
    #[tokio::test(start_paused = true)]
    async fn a_429_give_back_is_reported_at_the_snapshot() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let (levels, listener) = levels();
        let quota = Quota::<&'static str>::builder("openai")
            .requests_per_window(10)
            .tokens_per_window(1_000)
            .on_event(MetricsListener::new())
            .on_event(listener)
            .build()
            .unwrap();
        let permit = quota.acquire(&"gpt", 300).await.unwrap();
        assert_eq!(latest(&levels, "gpt"), Some((Some(9.0), Some(700.0))));
        let before = levels.lock().unwrap().len();
        permit.rate_limited(&RateLimits::default());
        let snapshot = quota.snapshot(&"gpt").unwrap();
        assert_eq!(known(snapshot), (Some(9.0), Some(1_000.0)));
        assert!(
            levels.lock().unwrap().len() > before,
            "the give-back is reported"
        );
        assert_eq!(latest(&levels, "gpt"), Some(known(snapshot)));
        let read = read_metrics(&snapshotter);
        assert_eq!(gauge(&read, REQUESTS_LEFT, "openai", "gpt"), Some(9.0));
        assert_eq!(gauge(&read, TOKENS_LEFT, "openai", "gpt"), Some(1_000.0));
    }

    /// Headers lower the limit while calls wait for their turn: after the answer, after one
    /// waiting call is cancelled, and at a usage report once the others went, the latest
    /// level is the snapshot.
    #[tokio::test(start_paused = true)]
    async fn a_limit_lowered_by_headers_while_calls_wait_keeps_the_levels_at_the_snapshot() {
        let (levels, listener) = levels();
        let quota = Quota::<&'static str>::builder("openai")
            .max_wait(Duration::from_secs(120))
            .on_event(listener)
            .build()
            .unwrap();
        quota.observe(&"gpt", &limits((6, 6), (6_000, 6_000)));
        let mut permits = Vec::new();
        for _ in 0..6 {
            permits.push(quota.acquire(&"gpt", 100).await.unwrap());
        }
        let mut waiting: Vec<_> = (0..3)
            .map(|_| tokio_test::task::spawn(quota.acquire(&"gpt", 100)))
            .collect();
        for call in &mut waiting {
            assert!(call.poll().is_pending());
        }
        let check = |when: &str| {
            let snapshot = quota.snapshot(&"gpt").unwrap();
            assert_eq!(latest(&levels, "gpt"), Some(known(snapshot)), "{when}");
        };
        check("waiting");

        // An answer: the limit is now 3 requests a minute, none left.
        permits[0].observe(&limits((3, 0), (6_000, 5_000)));
        check("lowered");
        drop(waiting.remove(1));
        check("one cancelled");
        // Between changes the budgets refill unreported (the event docs): the waiting calls
        // going out change no level, and what they were charged at admission stays reported.
        let mut went = Vec::new();
        for _ in 0..2 {
            tokio::time::advance(Duration::from_secs(61)).await;
            for mut call in std::mem::take(&mut waiting) {
                match call.poll() {
                    std::task::Poll::Pending => waiting.push(call),
                    std::task::Poll::Ready(result) => went.push(result),
                }
            }
        }
        assert_eq!(went.len(), 2);
        // A usage report of an answered call is a change again: reported at the snapshot.
        permits[1].record_usage(50);
        check("a usage report");
    }

    /// A waiting call cancelled gives back both its request and its tokens, and the level
    /// event says so.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_gives_back_requests_and_tokens_and_reports_them() {
        let (levels, listener) = levels();
        let quota = Quota::<&'static str>::builder("openai")
            .requests_per_window(1)
            .tokens_per_window(500)
            .max_wait(Duration::from_secs(120))
            .on_event(listener)
            .build()
            .unwrap();
        let _first = quota.acquire(&"gpt", 400).await.unwrap();
        let mut second = tokio_test::task::spawn(quota.acquire(&"gpt", 400));
        assert!(second.poll().is_pending());
        assert_eq!(latest(&levels, "gpt"), Some((Some(-1.0), Some(-300.0))));
        drop(second);
        assert_eq!(latest(&levels, "gpt"), Some((Some(0.0), Some(100.0))));
        assert_eq!(
            latest(&levels, "gpt"),
            Some(known(quota.snapshot(&"gpt").unwrap()))
        );
    }

    /// A listener runs after the governor's lock is released: one that reads the governor it
    /// listens to (its snapshot, its keys) does not deadlock.
    #[tokio::test(start_paused = true)]
    async fn a_listener_may_read_the_governor_it_listens_to() {
        let handle: Arc<OnceLock<Quota<&'static str>>> = Arc::default();
        let found = handle.clone();
        let reads = Arc::new(Mutex::new(Vec::new()));
        let sink = reads.clone();
        let quota = Quota::<&'static str>::builder("openai")
            .requests_per_window(5)
            .on_event(move |event: &QuotaEvent| {
                if let (QuotaEvent::LevelsChanged { requests_left, .. }, Some(quota)) =
                    (event, found.get())
                {
                    let snapshot = quota.snapshot(&"gpt").unwrap();
                    sink.lock().unwrap().push((
                        *requests_left,
                        snapshot.requests_available,
                        quota.keys().len(),
                    ));
                }
            })
            .build()
            .unwrap();
        handle.set(quota.clone()).unwrap();
        let _permit = quota.acquire(&"gpt", 1).await.unwrap();
        quota.set_limits(&"gpt", Some(10), None);
        assert_eq!(
            *reads.lock().unwrap(),
            vec![(Some(4.0), 4.0, 1), (Some(4.0), 4.0, 1)]
        );
    }

    /// The `key` label reaches a Prometheus exposition escaped as its format asks (`\"`,
    /// `\\`, `\n`), unicode as it is, one series per key.
    #[test]
    fn keys_that_prometheus_escapes_are_escaped_in_the_exposition() {
        use metrics_exporter_prometheus::PrometheusBuilder;

        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let keys = ["say \"hi\"", "C:\\models", "two\nlines", "模型-ü-😀"];
        metrics::with_local_recorder(&recorder, || {
            let _entered = runtime.enter();
            let quota = Quota::<&'static str>::builder("openai")
                .requests_per_window(10)
                .on_event(MetricsListener::new())
                .build()
                .unwrap();
            for key in keys {
                quota.set_limits(&key, Some(7), None);
            }
        });
        let text = handle.render();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("tower_breaker_quota_requests_left{"))
            .collect();
        assert_eq!(lines.len(), keys.len(), "{text}");
        for escaped in [
            r#"key="say \"hi\"""#,
            r#"key="C:\\models""#,
            r#"key="two\nlines""#,
            r#"key="模型-ü-😀""#,
        ] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains(escaped) && l.ends_with(" 7")),
                "{escaped} in {lines:?}"
            );
        }
    }

    /// Thousands of keys through a governor that keeps 100: the governor stays bounded, and
    /// the listener has one series per key ever seen, as the metrics docs say.
    #[tokio::test(start_paused = true)]
    async fn thousands_of_keys_make_one_series_per_key_ever_seen() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let quota = Quota::<String>::builder("openai")
            .max_keys(100)
            .requests_per_window(10)
            .on_event(MetricsListener::new())
            .build()
            .unwrap();
        for i in 0..3_000 {
            let _ = quota.acquire(&format!("user-{i}"), 1).await.unwrap();
        }
        assert_eq!(quota.len(), 100);
        let read = read_metrics(&snapshotter);
        let series = read.keys().filter(|k| k.starts_with(REQUESTS_LEFT)).count();
        assert_eq!(series, 3_000);
        assert_eq!(
            gauge(&read, REQUESTS_LEFT, "openai", "user-2999"),
            Some(9.0)
        );
    }

    /// A governor rebuilt under the same name (a configuration reload) with the same listener:
    /// its levels move the gauge, though the old one reported many levels before it.
    #[tokio::test(start_paused = true)]
    async fn a_governor_rebuilt_under_the_same_name_moves_the_gauge() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let listener = MetricsListener::new();
        let build = |requests: u64| {
            Quota::<&'static str>::builder("openai")
                .requests_per_window(requests)
                .on_event(listener.clone())
                .build()
                .unwrap()
        };
        let old = build(100);
        for _ in 0..20 {
            drop(old.acquire(&"gpt", 1).await.unwrap());
        }
        let read = read_metrics(&snapshotter);
        assert_eq!(gauge(&read, REQUESTS_LEFT, "openai", "gpt"), Some(80.0));
        drop(old);

        let new = build(50);
        let _permit = new.acquire(&"gpt", 1).await.unwrap();
        let read = read_metrics(&snapshotter);
        assert_eq!(
            gauge(&read, REQUESTS_LEFT, "openai", "gpt"),
            Some(new.snapshot(&"gpt").unwrap().requests_available)
        );
    }
}
