//! Failover before the first token: a provider that misses its first-token deadline is
//! abandoned for the next; once the caller has the first token, the answer stays with that
//! provider, and no token is ever spliced or repeated.

use crate::upstream::{Fault, Plan, Rng, Upstream, counting_breaker, quantile, read};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_breaker::circuit_breaker::CircuitBreaker;
use tower_breaker::failover::Failover;
use tower_breaker::stream::{StreamGuardLayer, StreamIdle};

const CALLS: usize = 2_000;
const FIRST_TOKEN: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(1);
const SLACK: Duration = Duration::from_millis(100);

fn provider(
    upstream: &Upstream,
    breaker: &CircuitBreaker,
) -> BoxCloneService<
    u64,
    http::Response<
        tower_breaker::http::RecordingBody<
            tower_breaker::stream::GuardedBody<crate::upstream::Body>,
        >,
    >,
    BoxError,
> {
    let guard = StreamGuardLayer::builder()
        .first_token_timeout(FIRST_TOKEN)
        .idle_timeout(IDLE)
        .build()
        .unwrap();
    BoxCloneService::new(
        ServiceBuilder::new()
            .layer(breaker.http_layer())
            .layer(guard)
            .service(upstream.service::<u64>()),
    )
}

#[tokio::test(start_paused = true)]
async fn stalls_fail_over_within_the_deadline_and_no_token_is_spliced_or_repeated() {
    // The primary: 5 % of streams stall before their first token, 2 % go idle mid-stream.
    let mut rng = Rng::new(0x5EED);
    let primary = Upstream::new("primary", move || {
        let roll = rng.unit();
        let fault = if roll < 0.05 {
            Fault::StallBeforeFirstToken
        } else if roll < 0.07 {
            Fault::IdleAfter(1 + rng.next_u64() % 8)
        } else {
            Fault::None
        };
        Plan {
            fault,
            ..Plan::ok(rng.millis(100, 800))
        }
    });
    let mut rng = Rng::new(0xBAC0);
    let backup = Upstream::new("backup", move || Plan::ok(rng.millis(200, 600)));
    let primary_breaker = counting_breaker("primary");
    let backup_breaker = counting_breaker("backup");
    let mut failover = Failover::builder()
        .provider(
            "primary",
            Some(primary_breaker.clone()),
            provider(&primary, &primary_breaker),
        )
        .provider(
            "backup",
            Some(backup_breaker.clone()),
            provider(&backup, &backup_breaker),
        )
        .build();

    let mut ttfts = Vec::new();
    let mut stall_starts = Vec::new();
    let mut idles = 0;
    for call in 0..CALLS as u64 {
        let start = Instant::now();
        let response = failover.ready().await.unwrap().call(call).await.unwrap();
        ttfts.push(start.elapsed());
        let plan = primary.received.lock().unwrap()[call as usize].plan;
        if plan.fault == Fault::StallBeforeFirstToken {
            stall_starts.push(start);
        }
        let read = read(response.into_body()).await;

        // One attempt of one provider, every token once, in order, from the first.
        let from = read.one_attempt();
        match plan.fault {
            Fault::IdleAfter(n) => {
                idles += 1;
                assert_eq!(from, "primary");
                assert_eq!(read.tokens.len() as u64, n);
                assert!(read.error.as_ref().unwrap().is::<StreamIdle>());
                let detected = read.ended_at - read.last_token_at.unwrap();
                assert!(detected <= IDLE + SLACK, "call {call}: {detected:?}");
            }
            Fault::StallBeforeFirstToken => {
                assert_eq!(from, "backup");
                assert!(read.error.is_none());
                assert_eq!(read.tokens.len(), 10);
            }
            _ => {
                assert_eq!(from, "primary");
                assert!(read.error.is_none(), "call {call}: {:?}", read.error);
                assert_eq!(read.tokens.len(), 10);
            }
        }
    }

    // Each stall was abandoned for the backup within its deadline + 100 ms.
    let backup_calls = backup.received.lock().unwrap().clone();
    assert_eq!(backup_calls.len(), stall_starts.len());
    for (started, backup_call) in stall_starts.iter().zip(&backup_calls) {
        let detected = backup_call.at - *started;
        assert!(
            detected >= FIRST_TOKEN && detected <= FIRST_TOKEN + SLACK,
            "{detected:?}"
        );
    }
    // About 5 % and 2 % of the calls, as drawn.
    assert!(
        (80..=120).contains(&stall_starts.len()),
        "{}",
        stall_starts.len()
    );
    assert!((25..=55).contains(&idles), "{idles}");

    // The caller's p99 time to first token is at most the deadline plus the backup's p99.
    let backup_ttfts: Vec<Duration> = backup_calls.iter().map(|r| r.plan.ttft).collect();
    let caller_p99 = quantile(&ttfts, 0.99);
    let backup_p99 = quantile(&backup_ttfts, 0.99);
    assert!(
        caller_p99 <= FIRST_TOKEN + backup_p99,
        "caller p99 {caller_p99:?}, backup p99 {backup_p99:?}"
    );

    // The primary's breaker counted every stall and every idle stream as a failure.
    let metrics = primary_breaker.metrics();
    assert_eq!(metrics.failed_calls as usize, stall_starts.len() + idles);
    assert_eq!(backup_breaker.metrics().failed_calls, 0);
    // Every abandoned stream was dropped.
    assert_eq!(primary.live.get(), 0);
    println!(
        "failover: {} stalls, {idles} idle streams in {CALLS} calls; caller p99 TTFT {caller_p99:?}, \
         bound {:?}",
        stall_starts.len(),
        FIRST_TOKEN + backup_p99
    );
}

/// What OpenAI, Azure and vLLM send before the model's first token: a role-only chunk (Azure
/// first sends its prompt filter results; usage-only chunks and comments carry nothing either).
const BEFORE_CONTENT: [(&str, &[&str]); 3] = [
    (
        "openai",
        &[
            r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}"#,
        ],
    ),
    (
        "azure",
        &[
            r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"}}}]}"#,
            r#"{"choices":[{"content_filter_results":{},"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":1,"id":"c1","model":"gpt-4o","object":"chat.completion.chunk"}"#,
        ],
    ),
    (
        "vllm",
        &[
            r#"{"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","model":"m","choices":[],"usage":{"prompt_tokens":9,"total_tokens":9,"completion_tokens":0}}"#,
        ],
    ),
];

#[tokio::test(start_paused = true)]
async fn a_stall_right_after_the_role_only_chunk_fails_over_on_openai_azure_and_vllm() {
    use crate::upstream::{Step, body};
    use bytes::Bytes;
    for (provider_name, chunks) in BEFORE_CONTENT {
        // The primary answers at once with the chunks that carry no content, then keepalives.
        let mut steps: Vec<Step> = chunks
            .iter()
            .map(|c| Step::Send(Bytes::from(format!("data: {c}\n\n"))))
            .collect();
        steps.push(Step::Send(Bytes::from_static(b": keepalive\n\n")));
        steps.push(Step::Stall);
        let stalled = tower::service_fn(move |_: u64| {
            let steps = steps.clone();
            async move { Ok::<_, BoxError>(http::Response::new(body(steps, None))) }
        });
        let primary_breaker = counting_breaker("primary");
        let guard = StreamGuardLayer::builder()
            .first_token_timeout(FIRST_TOKEN)
            .idle_timeout(IDLE)
            .build()
            .unwrap();
        let primary = BoxCloneService::new(
            ServiceBuilder::new()
                .layer(primary_breaker.http_layer())
                .layer(guard)
                .service(stalled),
        );
        let backup = Upstream::new("backup", || Plan::ok(Duration::from_millis(300)));
        let backup_breaker = counting_breaker("backup");
        let mut failover = Failover::builder()
            .provider("primary", Some(primary_breaker.clone()), primary)
            .provider(
                "backup",
                Some(backup_breaker.clone()),
                provider(&backup, &backup_breaker),
            )
            .build();

        let start = Instant::now();
        let response = failover.ready().await.unwrap().call(0).await.unwrap();
        let ttft = start.elapsed();
        let read = read(response.into_body()).await;
        assert_eq!(read.one_attempt(), "backup", "{provider_name}");
        assert!(read.error.is_none(), "{provider_name}: {:?}", read.error);
        assert_eq!(
            ttft,
            FIRST_TOKEN + Duration::from_millis(300),
            "{provider_name}"
        );
        assert_eq!(primary_breaker.metrics().failed_calls, 1, "{provider_name}");
    }
}
