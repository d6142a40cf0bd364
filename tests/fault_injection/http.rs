//! Status faults and plans over real HTTP: the mock upstream and a reqwest client.

use crate::support::secs;
use crate::support::upstream::Upstream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower_breaker::chaos::{ChaosLayer, Fault, FaultPlan, RateLimit};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(url: &str, body: &str) -> reqwest::Response {
    client()
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_plan_answers_503_503_429_then_healthy() {
    let upstream = Upstream::with_plan(
        FaultPlan::new()
            .then_times(2, Fault::service_unavailable())
            .then(Fault::rate_limited(Some(secs(2))))
            .then(Fault::overloaded()),
    )
    .await;
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for _ in 0..6 {
        let response = post(&upstream.chat_url(), r#"{"model":"m"}"#).await;
        statuses.push(response.status().as_u16());
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_string())
        };
        retry_after.push((header("retry-after"), header("retry-after-ms")));
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        if statuses.last() == Some(&200) {
            assert_eq!(body["object"], "chat.completion");
        } else {
            assert!(body["error"].is_object(), "an error body: {body}");
        }
    }
    assert_eq!(statuses, [503, 503, 429, 529, 200, 200]);
    assert_eq!(retry_after[2], (Some("2".into()), Some("2000".into())));
    assert_eq!(retry_after[0], (None, None));
    assert_eq!(upstream.hits(), 6);
    assert_eq!(
        upstream.answered(),
        2,
        "faulted requests never reach the app"
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_carries_the_openai_and_anthropic_rate_limit_headers() {
    let window = |limit, remaining, reset| RateLimit::new(limit, remaining, reset);
    let upstream = Upstream::with_plan(
        FaultPlan::new()
            .then(
                Fault::rate_limited(Some(Duration::from_millis(1500))).openai_limits(
                    window(60, 0, Duration::from_millis(1500)),
                    window(90_000, 120, Duration::from_secs(360)),
                ),
            )
            .then(
                Fault::rate_limited(None)
                    .anthropic_limits(window(50, 0, secs(30)), window(40_000, 10, secs(30))),
            ),
    )
    .await;
    let openai = post(&upstream.chat_url(), "{}").await;
    let h = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(
        h(&openai, "retry-after").as_deref(),
        Some("2"),
        "rounded up"
    );
    assert_eq!(h(&openai, "retry-after-ms").as_deref(), Some("1500"));
    assert_eq!(
        h(&openai, "x-ratelimit-limit-requests").as_deref(),
        Some("60")
    );
    assert_eq!(
        h(&openai, "x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );
    assert_eq!(
        h(&openai, "x-ratelimit-reset-requests").as_deref(),
        Some("1.5s")
    );
    assert_eq!(
        h(&openai, "x-ratelimit-limit-tokens").as_deref(),
        Some("90000")
    );
    assert_eq!(
        h(&openai, "x-ratelimit-remaining-tokens").as_deref(),
        Some("120")
    );
    assert_eq!(
        h(&openai, "x-ratelimit-reset-tokens").as_deref(),
        Some("6m0s")
    );

    let anthropic = post(&upstream.messages_url(), "{}").await;
    assert_eq!(anthropic.status(), 429);
    assert_eq!(h(&anthropic, "retry-after"), None);
    assert_eq!(
        h(&anthropic, "anthropic-ratelimit-requests-limit").as_deref(),
        Some("50")
    );
    assert_eq!(
        h(&anthropic, "anthropic-ratelimit-requests-remaining").as_deref(),
        Some("0")
    );
    assert_eq!(
        h(&anthropic, "anthropic-ratelimit-tokens-limit").as_deref(),
        Some("40000")
    );
    assert_eq!(
        h(&anthropic, "anthropic-ratelimit-tokens-remaining").as_deref(),
        Some("10")
    );
    let reset = h(&anthropic, "anthropic-ratelimit-tokens-reset").unwrap();
    // RFC 3339, UTC, to the second: 2026-12-03T13:45:00Z.
    assert_eq!(reset.len(), 20, "{reset}");
    assert!(
        reset.ends_with('Z') && reset.as_bytes()[10] == b'T',
        "{reset}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_error_fault_closes_the_connection_without_an_answer() {
    let upstream = Upstream::with_plan(FaultPlan::new().then(Fault::error("reset"))).await;
    let err = client()
        .post(upstream.chat_url())
        .body("{}")
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status(), "a transport error, not a status: {err}");
    assert_eq!(post(&upstream.chat_url(), "{}").await.status(), 200);
    assert_eq!(upstream.answered(), 1);
}

#[tokio::test(start_paused = true)]
async fn faults_follow_a_request_header_and_a_switch_flipped_at_run_time() {
    let on = Arc::new(AtomicBool::new(true));
    let switch = on.clone();
    let layer = ChaosLayer::http("switched")
        .seed(1)
        .enabled_when(|req: &http::request::Parts| req.headers.contains_key("x-chaos"))
        .inject_when(Fault::service_unavailable(), 1.0, move |_| {
            switch.load(Ordering::SeqCst)
        })
        .build()
        .unwrap();
    let upstream = Upstream::with_chaos(layer).await;
    let with_header = || async {
        client()
            .post(upstream.chat_url())
            .header("x-chaos", "1")
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(post(&upstream.chat_url(), "{}").await.status(), 200);
    assert_eq!(with_header().await, 503);
    on.store(false, Ordering::SeqCst);
    assert_eq!(with_header().await, 200);
    on.store(true, Ordering::SeqCst);
    assert_eq!(with_header().await, 503);
    assert_eq!(upstream.hits(), 4);
    assert_eq!(upstream.answered(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_healthy_upstream_speaks_openai_json_and_sse() {
    let upstream = Upstream::builder()
        .chunks(3)
        .reply("one two three")
        .start()
        .await;
    let json = post(&upstream.chat_url(), r#"{"model":"gpt-x"}"#).await;
    let json: serde_json::Value = serde_json::from_str(&json.text().await.unwrap()).unwrap();
    assert_eq!(json["model"], "gpt-x");
    assert_eq!(json["choices"][0]["message"]["content"], "one two three");
    let sse = post(&upstream.chat_url(), r#"{"stream":true}"#).await;
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let text = sse.text().await.unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(
        events.len(),
        1 + 3 + 1 + 1,
        "role, 3 tokens, finish, [DONE]: {text}"
    );
    assert_eq!(*events.last().unwrap(), "data: [DONE]");
    let streamed: String = events[1..4]
        .iter()
        .map(|e| {
            let chunk: serde_json::Value = serde_json::from_str(&e["data: ".len()..]).unwrap();
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        streamed, "one two three",
        "the pieces make the whole answer"
    );
    let messages = post(&upstream.messages_url(), r#"{"stream":true}"#)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        messages
            .trim_end()
            .ends_with(r#"data: {"type":"message_stop"}"#),
        "{messages}"
    );
    let first = &upstream.received()[0];
    assert_eq!(first.uri.path(), "/v1/chat/completions");
    assert_eq!(first.body, r#"{"model":"gpt-x"}"#);
}
