//! llmock 0.2.2 (`llmock serve --response-style static`): each stream fault scripted through
//! its control API (`POST /_llmock/scenario`) for one model name, so the tests run in
//! parallel; what reached the server read back from its journal (`GET /_llmock/requests`).
//!
//! An OpenAI stream from llmock is one SSE event per write: the role-only chunk
//! (`"delta":{"role":"assistant","content":""}`), one chunk per word of "Mock response from
//! MODEL.", a chunk with `finish_reason`, then `data: [DONE]`. A stream fault
//! `after_chunks: n` acts before the (n+1)-th event: 1 is right after the role chunk, 3 after
//! "Mock response ".

use crate::support::{
    FIRST_TOKEN, Guard, IDLE, Provider, STALL, call, chat, find, from_fallback, read_stream,
    server_url,
};
use serde_json::{Value, json};
use std::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::CircuitState;
use tower_breaker::failover::Failover;
use tower_breaker::fallback::{FallbackLayer, MarkExtension, service_unavailable};
use tower_breaker::retry::{RetryEvent, RetryReason};
use tower_breaker::stream::{StreamIdle, StreamTruncated};

/// The llmock server the tests script.
const LLMOCK: &str = "TOWER_BREAKER_LLMOCK_URL";
/// A second, healthy llmock: the failover's backup.
const LLMOCK_BACKUP: &str = "TOWER_BREAKER_LLMOCK_BACKUP_URL";

/// The control API of one llmock server.
struct Llmock {
    base: String,
}

impl Llmock {
    fn from_env(var: &str, test: &str) -> Option<Self> {
        server_url(var, test).map(|base| Self { base })
    }

    /// Queues `behaviors` (llmock's scenario JSON).
    async fn script(&self, behaviors: Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/_llmock/scenario", self.base))
            .json(&json!({ "behaviors": behaviors }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }

    /// The requests for `model` that reached the server, oldest first, once the stalls the
    /// test scripted are over: llmock journals a request when it has served it, and it serves
    /// a stall to its end even after the client left. (The control API then waits up to 2 s
    /// for requests still in flight.)
    async fn requests_after(&self, model: &str, stalls_over: Instant) -> Vec<Value> {
        tokio::time::sleep_until(stalls_over.into()).await;
        self.requests(model).await
    }

    /// The requests for `model` that reached the server, oldest first.
    async fn requests(&self, model: &str) -> Vec<Value> {
        let journal: Value = reqwest::Client::new()
            .get(format!("{}/_llmock/requests", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        journal["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["model"] == model)
            .cloned()
            .collect()
    }
}

/// A model name no other test (and no earlier run against the same server) uses: scenarios
/// match it, and the journal is read by it.
fn model(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

/// What llmock's static style answers for `model`.
fn answer(model: &str) -> String {
    format!("Mock response from {model}.")
}

fn stream_fault(kind: &str, after_chunks: u32, model: &str) -> Value {
    json!({
        "type": "stream_fault",
        "kind": kind,
        "after_chunks": after_chunks,
        "stall_seconds": STALL.as_secs_f64(),
        "match": { "model": model },
    })
}

#[tokio::test]
async fn llmock_stall_after_the_role_chunk_is_a_first_token_timeout_then_retried() {
    let test = "llmock_stall_after_the_role_chunk_is_a_first_token_timeout_then_retried";
    let Some(llmock) = Llmock::from_env(LLMOCK, test) else {
        return;
    };
    let m = model("ttft");
    llmock.script(json!([stream_fault("stall", 1, &m)])).await;
    let provider = Provider::llm("llmock-ttft", Guard::Deadlines).unwrap();

    let response = call(&provider.with_fallback(), chat(&llmock.base, &m, true, &[]))
        .await
        .unwrap();
    assert!(!from_fallback(&response));
    let streamed = read_stream(response).await;

    // The role chunk is not a token: the attempt failed at the first-token deadline, before
    // the caller saw anything, and the retry's second attempt answered in full.
    assert!(streamed.error.is_none(), "{streamed:?}");
    assert!(streamed.done);
    assert_eq!(streamed.text, answer(&m));
    let attempts = provider.attempts();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts[0].first_token_timeout, "{attempts:?}");
    let waited = attempts[0].ended - attempts[0].started;
    assert!(FIRST_TOKEN <= waited && waited < STALL, "{waited:?}");
    assert_eq!(
        provider.breaker_events.outcomes(),
        [Outcome::Failure, Outcome::Success]
    );
    let stalls_over = attempts[0].started + STALL;
    assert_eq!(llmock.requests_after(&m, stalls_over).await.len(), 2);
}

#[tokio::test]
async fn llmock_stall_mid_stream_is_stream_idle_after_the_tokens_it_had() {
    let test = "llmock_stall_mid_stream_is_stream_idle_after_the_tokens_it_had";
    let Some(llmock) = Llmock::from_env(LLMOCK, test) else {
        return;
    };
    let m = model("idle");
    llmock.script(json!([stream_fault("stall", 3, &m)])).await;
    let provider = Provider::llm("llmock-idle", Guard::Deadlines).unwrap();

    let response = call(&provider.with_fallback(), chat(&llmock.base, &m, true, &[]))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let streamed = read_stream(response).await;

    // Committed at the first token: the caller keeps what it had, then the body's error.
    assert_eq!(streamed.text, "Mock response ");
    assert!(!streamed.done);
    let error = streamed
        .error
        .as_ref()
        .expect("the stall ends the body with an error");
    assert!(find::<StreamIdle>(error).is_some(), "{error:?}");
    let quiet = streamed.ended_at - streamed.last_token_at.unwrap();
    assert!(IDLE <= quiet && quiet < STALL, "{quiet:?}");
    assert_eq!(provider.breaker_events.outcomes(), [Outcome::Failure]);
    // Never retried mid-stream.
    let stalls_over = provider.attempts()[0].started + STALL;
    assert_eq!(llmock.requests_after(&m, stalls_over).await.len(), 1);
}

#[tokio::test]
async fn llmock_clean_cut_is_stream_truncated_and_a_failure() {
    let test = "llmock_clean_cut_is_stream_truncated_and_a_failure";
    let Some(llmock) = Llmock::from_env(LLMOCK, test) else {
        return;
    };
    let m = model("cut");
    llmock
        .script(json!([stream_fault("truncate", 3, &m)]))
        .await;
    let provider = Provider::llm("llmock-cut", Guard::Deadlines).unwrap();

    let response = call(&provider.with_fallback(), chat(&llmock.base, &m, true, &[]))
        .await
        .unwrap();
    let streamed = read_stream(response).await;

    // The HTTP body ended cleanly, without `finish_reason` or `[DONE]`.
    assert_eq!(streamed.text, "Mock response ");
    assert!(!streamed.done);
    let error = streamed.error.as_ref().expect("a cut stream is an error");
    assert!(find::<StreamTruncated>(error).is_some(), "{error:?}");
    assert_eq!(provider.breaker_events.outcomes(), [Outcome::Failure]);
    assert_eq!(llmock.requests(&m).await.len(), 1);
}

#[tokio::test]
async fn llmock_clean_cut_through_the_llm_preset_alone_is_a_failure() {
    let test = "llmock_clean_cut_through_the_llm_preset_alone_is_a_failure";
    let Some(llmock) = Llmock::from_env(LLMOCK, test) else {
        return;
    };
    let m = model("preset-cut");
    llmock
        .script(json!([stream_fault("truncate", 3, &m)]))
        .await;
    // The README's recipe as it is: no guard added by hand.
    let provider = Provider::llm("llmock-preset-cut", Guard::Preset).unwrap();

    let response = call(&provider.with_fallback(), chat(&llmock.base, &m, true, &[]))
        .await
        .unwrap();
    let streamed = read_stream(response).await;

    assert_eq!(streamed.text, "Mock response ");
    let error = streamed
        .error
        .as_ref()
        .expect("`.llm()` guards streams: a cut is an error, not a clean end");
    assert!(find::<StreamTruncated>(error).is_some(), "{error:?}");
    assert_eq!(provider.breaker_events.outcomes(), [Outcome::Failure]);
}

#[tokio::test]
async fn llmock_dropped_connection_is_an_error_and_a_failure() {
    let test = "llmock_dropped_connection_is_an_error_and_a_failure";
    let Some(llmock) = Llmock::from_env(LLMOCK, test) else {
        return;
    };
    let m = model("drop");
    llmock
        .script(json!([stream_fault("disconnect", 3, &m)]))
        .await;
    let provider = Provider::llm("llmock-drop", Guard::Deadlines).unwrap();

    let response = call(&provider.with_fallback(), chat(&llmock.base, &m, true, &[]))
        .await
        .unwrap();
    let streamed = read_stream(response).await;

    // The connection closed in the middle of the chunked body: a transport error.
    assert_eq!(streamed.text, "Mock response ");
    assert!(!streamed.done);
    assert!(streamed.error.is_some(), "{streamed:?}");
    assert_eq!(provider.breaker_events.outcomes(), [Outcome::Failure]);
    assert_eq!(llmock.requests(&m).await.len(), 1);
}

#[tokio::test]
async fn llmock_503_is_a_failure_and_retried() {
    let test = "llmock_503_is_a_failure_and_retried";
    let Some(llmock) = Llmock::from_env(LLMOCK, test) else {
        return;
    };
    let m = model("503");
    llmock
        .script(json!([{ "type": "fail", "status": 503, "match": { "model": m } }]))
        .await;
    let provider = Provider::llm("llmock-503", Guard::Deadlines).unwrap();

    let response = call(&provider.with_fallback(), chat(&llmock.base, &m, true, &[]))
        .await
        .unwrap();
    assert!(!from_fallback(&response));
    let streamed = read_stream(response).await;

    assert!(streamed.error.is_none() && streamed.done, "{streamed:?}");
    assert_eq!(streamed.text, answer(&m));
    let statuses: Vec<_> = provider.attempts().iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(503), Some(200)]);
    assert_eq!(
        provider.breaker_events.outcomes(),
        [Outcome::Failure, Outcome::Success]
    );
    let retries: Vec<_> = provider
        .retry_events
        .all()
        .into_iter()
        .filter_map(|(_, e)| match e {
            RetryEvent::Retrying { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [RetryReason::Response]);
    assert_eq!(llmock.requests(&m).await.len(), 2);
}

#[tokio::test]
async fn llmock_429_with_retry_after_is_a_cool_down_then_served() {
    let test = "llmock_429_with_retry_after_is_a_cool_down_then_served";
    let Some(llmock) = Llmock::from_env(LLMOCK, test) else {
        return;
    };
    let m = model("429");
    llmock
        .script(json!([{
            "type": "fail", "status": 429, "retry_after": 1, "match": { "model": m },
        }]))
        .await;
    let provider = Provider::llm("llmock-429", Guard::Deadlines).unwrap();

    let response = call(&provider.with_fallback(), chat(&llmock.base, &m, true, &[]))
        .await
        .unwrap();
    assert!(
        !from_fallback(&response),
        "the retry gave up: {:?}; the breaker: {:?}",
        provider.retry_events.all(),
        provider.breaker_events.all()
    );
    let streamed = read_stream(response).await;

    assert!(streamed.error.is_none() && streamed.done, "{streamed:?}");
    assert_eq!(streamed.text, answer(&m));
    let attempts = provider.attempts();
    let statuses: Vec<_> = attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(429), Some(200)]);
    // The server's wait (1 s), honoured, and not a failure.
    let waited = attempts[1].started - attempts[0].ended;
    assert!(waited >= std::time::Duration::from_secs(1), "{waited:?}");
    assert!(
        !provider
            .breaker_events
            .outcomes()
            .contains(&Outcome::Failure),
        "{:?}",
        provider.breaker_events.all()
    );
    assert_eq!(
        provider.breaker_events.entered(CircuitState::RateLimited),
        1
    );
    assert_eq!(provider.breaker_events.entered(CircuitState::Open), 0);
    assert_eq!(llmock.requests(&m).await.len(), 2);
}

#[tokio::test]
async fn llmock_failover_before_the_first_token_splices_nothing() {
    let test = "llmock_failover_before_the_first_token_splices_nothing";
    let (Some(primary_server), Some(backup_server)) = (
        Llmock::from_env(LLMOCK, test),
        Llmock::from_env(LLMOCK_BACKUP, test),
    ) else {
        return;
    };
    let m = model("failover");
    let backup_model = format!("{m}-backup");
    // Every stream of this model stalls right after its role chunk, for every attempt.
    let mut stall = stream_fault("stall", 1, &m);
    stall["times"] = Value::Null;
    primary_server.script(json!([stall])).await;

    let primary = Provider::llm("llmock-primary", Guard::Deadlines).unwrap();
    let backup = Provider::llm("llmock-backup", Guard::Deadlines).unwrap();
    // `Failover` copies its request for each provider; each provider makes its own
    // `reqwest::Request` (the backup asks for its own model, so its words are told apart).
    let to = |provider: &Provider, base: String, rename: bool| {
        let service = provider.service.clone();
        BoxCloneSyncService::new(service_fn(move |model: String| {
            let model = if rename {
                format!("{model}-backup")
            } else {
                model
            };
            service.clone().oneshot(chat(&base, &model, true, &[]))
        }))
    };
    let failover = Failover::builder()
        .provider(
            "primary",
            Some(primary.breaker.clone()),
            to(&primary, primary_server.base.clone(), false),
        )
        .provider(
            "backup",
            Some(backup.breaker.clone()),
            to(&backup, backup_server.base.clone(), true),
        )
        .build();
    let app = ServiceBuilder::new()
        .layer(FallbackLayer::from_fn(service_unavailable).mark(MarkExtension))
        .service(failover);

    let started = Instant::now();
    let response = app.oneshot(m.clone()).await.unwrap();
    assert!(!from_fallback(&response));
    let streamed = read_stream(response).await;

    // Exactly the backup's answer: no word of the primary's, none twice.
    assert!(streamed.error.is_none() && streamed.done, "{streamed:?}");
    assert_eq!(streamed.text, answer(&backup_model));
    let (tried, answered) = (primary.attempts(), backup.attempts());
    assert!(!tried.is_empty(), "{tried:?}");
    assert!(tried.iter().all(|a| a.first_token_timeout), "{tried:?}");
    for attempt in &tried {
        let waited = attempt.ended - attempt.started;
        assert!(FIRST_TOKEN <= waited && waited < STALL, "{waited:?}");
    }
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert!(answered[0].started >= tried.last().unwrap().ended);
    let stalls_over = tried.last().unwrap().started + STALL;
    assert_eq!(
        primary_server.requests_after(&m, stalls_over).await.len(),
        tried.len()
    );
    assert_eq!(backup_server.requests(&backup_model).await.len(), 1);
    // Each abandoned attempt a failure of the primary; the answer a success of the backup.
    assert_eq!(
        primary.breaker_events.outcomes(),
        vec![Outcome::Failure; tried.len()]
    );
    assert_eq!(backup.breaker_events.outcomes(), [Outcome::Success]);
    eprintln!(
        "failover: {} primary attempt(s) abandoned at the first-token deadline, answered by \
         the backup {:?} after the call",
        tried.len(),
        answered[0].ended - started
    );
}
