//! Recovery after the first token (`stream::recover`) on paused time, against the shared chaos
//! upstream's app (`tests/support/upstream.rs`) in process, its `ChaosLayer` injecting the
//! stream faults: a cut after k tokens, a stall after k tokens, a malformed event, a silent
//! provider, a 503 then healthy. For each, the caller gets the complete answer (every token
//! once, in order) or the documented clean error, and each provider sees no more requests
//! than the rule allows.

use crate::chaos_upstream::is;
use crate::support::upstream::{Options, app};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::chaos::{ChaosLayer, Fault, FaultPlan};
use tower_breaker::circuit_breaker::CircuitBreaker;
use tower_breaker::failover::{AllProvidersFailed, Failover};
use tower_breaker::stream::recover::{
    AnswerIncomplete, AttemptOutcome, DeadlineExceeded, MalformedEvent, RecoverLayer, RecoveryMode,
    RecoveryReport, Usage,
};
use tower_breaker::stream::{StreamGuardLayer, StreamIdle, StreamTruncated};

/// Content chunks in a healthy answer, and the pause before each event.
const TOKENS: usize = 60;
const INTERVAL: Duration = Duration::from_millis(100);
const FIRST_TOKEN: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(1);
/// A healthy streamed answer: the role chunk, 60 tokens, the finish chunk, the usage chunk and
/// `[DONE]`, each after `INTERVAL`.
const HEALTHY: Duration = Duration::from_millis(100 * (TOKENS as u64 + 4));

type Answer = http::Response<UnsyncBoxBody<Bytes, BoxError>>;
type Provider = BoxCloneSyncService<http::Request<String>, Answer, BoxError>;

/// 60 distinct words: the mock splits the reply into one word per token, so a repeated or
/// lost token at a seam changes the text.
fn reply() -> String {
    (0..TOKENS).map(|i| format!("w{i:02} ")).collect()
}

struct Upstream {
    name: &'static str,
    hits: Arc<AtomicUsize>,
    breaker: CircuitBreaker,
    service: Provider,
}

/// `inner` behind its own breaker and stream guard, its requests counted.
fn guarded<S>(name: &'static str, inner: S) -> Upstream
where
    S: Service<http::Request<String>, Error = BoxError> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Response: IntoAnswer,
{
    let hits = Arc::new(AtomicUsize::new(0));
    let breaker = crate::upstream::counting_breaker(name);
    let guard = StreamGuardLayer::builder()
        .first_token_timeout(FIRST_TOKEN)
        .idle_timeout(IDLE)
        .build()
        .unwrap();
    let counter = hits.clone();
    let service = ServiceBuilder::new()
        .map_response(|r: http::Response<_>| r.map(BodyExt::boxed_unsync))
        .layer(breaker.http_layer())
        .layer(guard)
        .map_request(move |req: http::Request<String>| {
            counter.fetch_add(1, Ordering::SeqCst);
            req
        })
        .map_response(IntoAnswer::into_answer)
        .service(inner);
    Upstream {
        name,
        hits,
        breaker,
        service: BoxCloneSyncService::new(service),
    }
}

/// The mock's responses (whatever their body) as one body type.
trait IntoAnswer {
    fn into_answer(self) -> Answer;
}

impl<B> IntoAnswer for http::Response<B>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn into_answer(self) -> Answer {
        self.map(|b| b.map_err(Into::into).boxed_unsync())
    }
}

/// The chaos upstream: its healthy app behind a `ChaosLayer` playing `plan`.
fn upstream(name: &'static str, plan: FaultPlan) -> Upstream {
    let options = Options {
        chunks: TOKENS,
        chunk_interval: INTERVAL,
        reply: reply(),
        ..Options::default()
    };
    let chaos = ChaosLayer::http(name).seed(0).plan(plan).build().unwrap();
    let app = ServiceBuilder::new()
        .map_request(|req: http::Request<String>| req.map(axum::body::Body::from))
        .layer(chaos)
        .service(app(options, Arc::new(AtomicUsize::new(0))));
    guarded(name, app)
}

fn failover(
    upstreams: &[&Upstream],
) -> Failover<Provider, http::Request<String>, Answer, tower_breaker::failover::HttpRequests> {
    let mut builder = Failover::builder().http();
    for u in upstreams {
        builder = builder.provider(u.name, Some(u.breaker.clone()), u.service.clone());
    }
    builder
        // A 5xx answer moves on, as an error would.
        .fail_over_when(|r: &Result<Answer, BoxError>| {
            r.as_ref().map_or(true, |r| r.status().is_server_error())
        })
        .build()
}

fn request() -> http::Request<String> {
    http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#
                .to_string(),
        )
        .unwrap()
}

fn recover(mode: RecoveryMode, deadline: Duration) -> RecoverLayer {
    RecoverLayer::builder()
        .mode(mode)
        .deadline(deadline)
        .build()
        .unwrap()
}

/// The text of the `delta.content` of every event, in order.
fn content(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for event in text.split("\n\n") {
        let Some(data) = event.strip_prefix("data: ") else {
            continue;
        };
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(data) {
            if let Some(piece) = json["choices"][0]["delta"]["content"].as_str() {
                out.push_str(piece);
            }
        }
    }
    out
}

/// The error of one call that must fail.
async fn failure<S>(client: &mut S) -> BoxError
where
    S: Service<http::Request<String>, Error = BoxError>,
    S::Response: std::fmt::Debug,
{
    client
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap_err()
}

/// One call in restart mode through primary then backup: the answer read whole, its report,
/// and the time it took.
async fn restart_call(primary: &Upstream, backup: &Upstream) -> (Bytes, RecoveryReport, Duration) {
    let mut client =
        recover(RecoveryMode::Restart, Duration::from_secs(60)).layer(failover(&[primary, backup]));
    let started = Instant::now();
    let answer = client.ready().await.unwrap().call(request()).await.unwrap();
    let report = answer
        .extensions()
        .get::<RecoveryReport>()
        .cloned()
        .unwrap();
    let bytes = answer.into_body().collect().await.unwrap().to_bytes();
    (bytes, report, started.elapsed())
}

fn outcomes(report: &RecoveryReport) -> Vec<(&str, &AttemptOutcome, u64)> {
    report
        .attempts
        .iter()
        .map(|a| (a.provider.as_deref().unwrap_or("?"), &a.outcome, a.tokens))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn restart_after_a_cut_after_40_of_60_tokens_answers_whole_from_the_next_provider() {
    // 40 events: the role chunk and 39 tokens, then a clean end without `[DONE]`.
    let primary = upstream("primary", FaultPlan::new().then(Fault::cut_after(40)));
    let backup = upstream("backup", FaultPlan::new());
    let (bytes, report, took) = restart_call(&primary, &backup).await;

    assert_eq!(content(&bytes), reply(), "every token once, in order");
    assert!(bytes.ends_with(b"data: [DONE]\n\n"));
    // The chaos layer cuts when the 41st event is due (it drops it): 4.1 s.
    assert_eq!(took, INTERVAL * 41 + HEALTHY);
    assert_eq!((primary.hits(), backup.hits()), (1, 1));
    assert_eq!(report.provider.as_deref(), Some("backup"));
    assert_eq!(report.model.as_deref(), Some("m"));
    assert_eq!(report.restarts, 1);
    let attempts = outcomes(&report);
    assert_eq!(attempts.len(), 2);
    assert!(
        matches!(attempts[0], ("primary", AttemptOutcome::Broken(e), 39) if e.contains("without its final event")),
        "{attempts:?}"
    );
    assert!(
        matches!(attempts[1], ("backup", AttemptOutcome::Answered, 60)),
        "{attempts:?}"
    );
    // The answer's usage is the backup's; the cut stream reported none.
    let usage = report.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (1, 60));
    assert_eq!(report.attempts[0].usage, None::<Usage>);
    assert_eq!(primary.breaker.metrics().failed_calls, 1);
    assert_eq!(backup.breaker.metrics().successful_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn restart_after_a_30s_stall_after_20_tokens_answers_whole_within_the_idle_deadline() {
    // The role chunk and 20 tokens, then 30 s of silence: the guard ends it after `IDLE`.
    let stall = Fault::stall_after(21, Duration::from_secs(30));
    let primary = upstream("primary", FaultPlan::new().then(stall));
    let backup = upstream("backup", FaultPlan::new());
    let (bytes, report, took) = restart_call(&primary, &backup).await;

    assert_eq!(content(&bytes), reply());
    assert_eq!(took, INTERVAL * 21 + IDLE + HEALTHY);
    assert_eq!((primary.hits(), backup.hits()), (1, 1));
    let attempts = outcomes(&report);
    assert!(
        matches!(attempts[0], ("primary", AttemptOutcome::Broken(_), 20)),
        "{attempts:?}"
    );
    assert!(
        matches!(attempts[1], ("backup", AttemptOutcome::Answered, 60)),
        "{attempts:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_malformed_event_mid_stream_is_never_an_answer_in_restart_mode() {
    // Ten good tokens, a chunk cut inside its JSON, the rest and `[DONE]`: complete by the
    // guard's rules, corrupt for any client.
    let event = |i: usize| {
        format!(
            "data: {{\"model\":\"bad\",\"choices\":[{{\"delta\":{{\"content\":\"w{i:02} \"}}}}]}}\n\n"
        )
    };
    let mut text: String = (0..10).map(event).collect();
    text.push_str("data: {\"choices\":[{\"delta\":{\"content\":\"w1\n\n");
    text.extend((11..TOKENS).map(event));
    text.push_str("data: [DONE]\n\n");
    let corrupt = service_fn(move |_: http::Request<String>| {
        let text = text.clone();
        async move {
            let response = http::Response::builder()
                .header("content-type", "text/event-stream")
                .body(Full::new(Bytes::from(text)))
                .unwrap();
            Ok::<_, BoxError>(response)
        }
    });
    let primary = guarded("primary", corrupt);
    let backup = upstream("backup", FaultPlan::new());
    let (bytes, report, _) = restart_call(&primary, &backup).await;
    assert_eq!(content(&bytes), reply());
    assert_eq!((primary.hits(), backup.hits()), (1, 1));
    let attempts = outcomes(&report);
    assert!(
        matches!(attempts[0], ("primary", AttemptOutcome::Broken(e), _) if e.contains("malformed")),
        "{attempts:?}"
    );
    assert_eq!(
        report.model.as_deref(),
        Some("m"),
        "the model of the answer, not the corrupt one"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_provider_is_failed_over_once_at_its_first_token_deadline() {
    let silent = Fault::stall_before_first_byte(Duration::from_secs(600));
    let primary = upstream("primary", FaultPlan::new().then(silent));
    let backup = upstream("backup", FaultPlan::new());
    let (bytes, report, took) = restart_call(&primary, &backup).await;

    assert_eq!(content(&bytes), reply());
    // The first-token deadline plus the backup's own time: nothing retried, nothing waited.
    assert_eq!(took, FIRST_TOKEN + HEALTHY);
    assert_eq!((primary.hits(), backup.hits()), (1, 1));
    assert_eq!(report.restarts, 0);
    let attempts = outcomes(&report);
    assert!(
        matches!(attempts[0], ("primary", AttemptOutcome::Failed(_), 0)),
        "{attempts:?}"
    );
    assert_eq!(report.attempts[0].requests, 1);
    assert!(
        matches!(attempts[1], ("backup", AttemptOutcome::Answered, 60)),
        "{attempts:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_503_then_healthy_fails_over_once_then_the_primary_answers() {
    let plan = FaultPlan::new().then(Fault::service_unavailable());
    let primary = upstream("primary", plan);
    let backup = upstream("backup", FaultPlan::new());
    let (bytes, report, took) = restart_call(&primary, &backup).await;
    assert_eq!(content(&bytes), reply());
    assert_eq!(took, HEALTHY);
    assert_eq!(report.provider.as_deref(), Some("backup"));
    let (bytes, report, _) = restart_call(&primary, &backup).await;
    assert_eq!(content(&bytes), reply());
    assert_eq!(report.provider.as_deref(), Some("primary"));
    assert_eq!(report.attempts.len(), 1);
    assert_eq!((primary.hits(), backup.hits()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn error_mode_sends_the_tokens_then_a_clean_error_and_calls_once() {
    let primary = upstream("primary", FaultPlan::new().then(Fault::cut_after(40)));
    let backup = upstream("backup", FaultPlan::new());
    let mut client =
        recover(RecoveryMode::Error, Duration::from_secs(60)).layer(failover(&[&primary, &backup]));
    let answer = client.ready().await.unwrap().call(request()).await.unwrap();
    let report = answer
        .extensions()
        .get::<RecoveryReport>()
        .cloned()
        .unwrap();
    assert_eq!(report.provider.as_deref(), Some("primary"));
    let mut body = answer.into_body();
    let mut got = Vec::new();
    let error = loop {
        match body.frame().await {
            Some(Ok(frame)) => got.extend_from_slice(&frame.into_data().unwrap()),
            Some(Err(e)) => break e,
            None => panic!("a cut stream ended as a success"),
        }
    };
    assert!(is::<StreamTruncated>(error.as_ref()), "{error}");
    let words: String = reply().split_inclusive(' ').take(39).collect();
    assert_eq!(content(&got), words, "the 39 tokens sent, then the error");
    assert_eq!((primary.hits(), backup.hits()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn restart_gives_up_after_max_restarts_with_the_streams_error() {
    let cut = || FaultPlan::new().then(Fault::cut_after(10)).cycle();
    let primary = upstream("primary", cut());
    let backup = upstream("backup", cut());
    let mut client = RecoverLayer::builder()
        .mode(RecoveryMode::Restart)
        .max_restarts(2)
        .build()
        .unwrap()
        .layer(failover(&[&primary, &backup]));
    let error = failure(&mut client).await;
    let incomplete = error
        .downcast_ref::<AnswerIncomplete>()
        .expect("incomplete");
    assert!(is::<StreamTruncated>(incomplete), "{incomplete}");
    // 1 + 2 calls: the provider that failed last is tried last.
    let attempts = outcomes(incomplete.report());
    let order: Vec<&str> = attempts.iter().map(|a| a.0).collect();
    assert_eq!(order, ["primary", "backup", "primary"]);
    assert!(
        attempts
            .iter()
            .all(|a| matches!(a.1, AttemptOutcome::Broken(_)))
    );
    assert_eq!((primary.hits(), backup.hits()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn one_deadline_covers_every_provider_and_restart() {
    // The primary is cut at 4.1 s; the backup needs 6.4 s more: past the 5 s deadline.
    let primary = upstream("primary", FaultPlan::new().then(Fault::cut_after(40)));
    let backup = upstream("backup", FaultPlan::new());
    let deadline = Duration::from_secs(5);
    let mut client = recover(RecoveryMode::Restart, deadline).layer(failover(&[&primary, &backup]));
    let started = Instant::now();
    let error = failure(&mut client).await;
    assert_eq!(started.elapsed(), deadline);
    let late = error.downcast_ref::<DeadlineExceeded>().expect("deadline");
    assert_eq!(late.deadline(), deadline);
    assert_eq!(late.report().attempts.len(), 2);
    assert_eq!((primary.hits(), backup.hits()), (1, 1));

    // In error mode the streamed body is held to the same deadline.
    let slow = upstream("slow", FaultPlan::new());
    let mut client = recover(RecoveryMode::Error, deadline).layer(failover(&[&slow]));
    let started = Instant::now();
    let answer = client.ready().await.unwrap().call(request()).await.unwrap();
    let error = answer.into_body().collect().await.unwrap_err();
    assert!(error.is::<DeadlineExceeded>(), "{error}");
    assert_eq!(started.elapsed(), deadline);
}

#[tokio::test(start_paused = true)]
async fn a_head_error_reaches_the_caller_as_it_is() {
    let down = Fault::error("connection refused");
    let primary = upstream("primary", FaultPlan::new().then(down.clone()));
    let backup = upstream("backup", FaultPlan::new().then(down));
    let mut client = recover(RecoveryMode::Restart, Duration::from_secs(60))
        .layer(failover(&[&primary, &backup]));
    let error = failure(&mut client).await;
    assert!(error.is::<AllProvidersFailed>(), "{error}");
    assert_eq!((primary.hits(), backup.hits()), (1, 1));
}

#[test]
fn settings_out_of_range_are_config_errors_naming_the_field() {
    let error = RecoverLayer::builder()
        .max_restarts(11)
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "max_restarts");
    let error = RecoverLayer::builder()
        .max_buffered_bytes(10)
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "max_buffered_bytes");
    let error = RecoverLayer::builder()
        .deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "deadline");
    let _ = (MalformedEvent::data, StreamIdle::tokens);
}

impl Upstream {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
