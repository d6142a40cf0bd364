//! Failover over a real `reqwest::Client` against servers on 127.0.0.1: requests copied with
//! `try_clone`, a streamed body sent once, the report extension, the last provider's own
//! answer, and the provider list chosen per request.

use crate::provider::{ASK, Http, Provider, ask, client, json, post, report};
use std::sync::Arc;
use tower::{BoxError, Service, ServiceExt};
use tower_breaker::failover::{AllProvidersFailed, Failover, HttpRequests, TryOutcome};

/// Points a request at `url` (each provider has its own server).
fn to(url: String) -> impl Fn(reqwest::Request) -> reqwest::Request + Send + Sync + 'static {
    move |mut req| {
        *req.url_mut() = url.parse().unwrap();
        req
    }
}

fn not_ok(r: &Result<reqwest::Response, BoxError>) -> bool {
    r.as_ref().map_or(true, |r| !r.status().is_success())
}

fn two(
    a: &Provider,
    b: &Provider,
) -> Failover<Http, reqwest::Request, reqwest::Response, HttpRequests> {
    Failover::builder()
        .http()
        .provider_with_adapter("a", None, client(), to(a.url()))
        .provider_with_adapter("b", None, client(), to(b.url()))
        .fail_over_when(not_ok)
        .build()
}

#[tokio::test]
async fn a_reqwest_request_is_copied_with_try_clone_for_the_next_provider() {
    let a = Provider::answering(503, r#"{"error":{"message":"down"}}"#).await;
    let b = Provider::answering(200, r#"{"answer":"from b"}"#).await;
    let mut failover = two(&a, &b);

    let res = ask(&mut failover).await;
    assert_eq!(res.status(), 200);
    let report = report(&res);
    assert_eq!(res.text().await.unwrap(), r#"{"answer":"from b"}"#);
    // Both got the whole body.
    assert_eq!(a.bodies(), vec![ASK]);
    assert_eq!(b.bodies(), vec![ASK]);

    assert_eq!(&*report.provider, "b");
    let outcomes: Vec<_> = report
        .tried
        .iter()
        .map(|t| (&*t.provider, t.outcome.clone(), t.attempts))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("a", TryOutcome::Rejected, 1),
            ("b", TryOutcome::Answered, 1)
        ]
    );
}

#[tokio::test]
async fn a_streamed_body_goes_to_one_provider_and_the_error_says_why_not_to_the_next() {
    let streamed = |url: &str| {
        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(ASK)]);
        reqwest::Client::new()
            .post(url)
            .body(reqwest::Body::wrap_stream(chunks))
            .build()
            .unwrap()
    };
    let b = Provider::answering(200, r#"{"answer":"from b"}"#).await;

    // The first provider answers 503: that answer is the caller's, and b was never asked.
    let a = Provider::answering(503, r#"{"error":{"message":"down"}}"#).await;
    let mut failover = two(&a, &b);
    let res = failover
        .ready()
        .await
        .unwrap()
        .call(streamed(&a.url()))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let report = report(&res);
    assert_eq!(&*report.provider, "a");
    match &report.get("b").unwrap().outcome {
        TryOutcome::Skipped(why) => assert!(why.contains("could not be copied"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.hits(), 1);
    assert_eq!(b.hits(), 0);

    // The first provider cannot be reached: the error names both, and why b was not tried.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!(
        "http://{}/v1/chat/completions",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let mut failover: Failover<Http, _, _, _> = Failover::builder()
        .http()
        .provider_with_adapter("a", None, client(), to(dead.clone()))
        .provider_with_adapter("b", None, client(), to(b.url()))
        .build();
    let err = failover
        .ready()
        .await
        .unwrap()
        .call(streamed(&dead))
        .await
        .unwrap_err();
    let all = err
        .downcast_ref::<AllProvidersFailed>()
        .expect("AllProvidersFailed");
    assert_eq!(all.failures().len(), 2);
    assert!(!all.failures()[0].skipped);
    assert!(all.failures()[1].skipped);
    assert!(
        err.to_string()
            .contains("b skipped: not tried: the request could not be copied"),
        "{err}"
    );
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn when_every_provider_rejects_the_caller_gets_the_last_providers_own_answer() {
    const TOO_LONG: &str = r#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    let a = Provider::answering(503, r#"{"error":{"message":"down"}}"#).await;
    let b = Provider::answering(400, TOO_LONG).await;
    let mut failover = two(&a, &b);
    let res = ask(&mut failover).await;
    assert_eq!(res.status(), 400);
    let report = report(&res);
    assert_eq!(&*report.provider, "b");
    assert_eq!(report.get("a").unwrap().outcome, TryOutcome::Rejected);
    assert_eq!(report.get("b").unwrap().outcome, TryOutcome::Answered);
    assert_eq!(res.text().await.unwrap(), TOO_LONG);
}

#[tokio::test]
async fn the_provider_list_is_chosen_per_request() {
    let a = Provider::answering(200, r#"{"answer":"from a"}"#).await;
    let b = Provider::answering(200, r#"{"answer":"from b"}"#).await;
    let c = Provider::answering(200, r#"{"answer":"from c"}"#).await;
    // One failover for every route: a request may name its own fallback order.
    let mut failover: Failover<Http, _, _, _> = Failover::builder()
        .http()
        .provider_with_adapter("a", None, client(), to(a.url()))
        .provider_with_adapter("b", None, client(), to(b.url()))
        .provider_with_adapter("c", None, client(), to(c.url()))
        .fail_over_when(not_ok)
        .providers_for(|req: &reqwest::Request| {
            let names = req.headers().get("x-providers")?.to_str().ok()?;
            Some(names.split(',').map(|n| Arc::from(n.trim())).collect())
        })
        .build();
    let mut routed = |names: Option<&'static str>| {
        let mut req = post(&a.url(), ASK);
        if let Some(names) = names {
            req.headers_mut()
                .insert("x-providers", names.parse().unwrap());
        }
        failover.call(req)
    };
    let answer = |res: reqwest::Response| {
        let report = report(&res);
        let tried: Vec<String> = report
            .tried
            .iter()
            .map(|t| t.provider.to_string())
            .collect();
        (report.provider.to_string(), tried)
    };

    let res = routed(None).await.unwrap();
    assert_eq!(answer(res), ("a".to_string(), vec!["a".to_string()]));
    let res = routed(Some("c, a")).await.unwrap();
    assert_eq!(answer(res), ("c".to_string(), vec!["c".to_string()]));
    // An unknown name is reported and passed over.
    let res = routed(Some("gpt-9, b")).await.unwrap();
    assert_eq!(
        answer(res),
        ("b".to_string(), vec!["gpt-9".to_string(), "b".to_string()])
    );
    assert_eq!((a.hits(), b.hits(), c.hits()), (1, 1, 1));
    // Every named provider unknown: the error lists them.
    let err = routed(Some("x")).await.unwrap_err();
    assert!(err.to_string().contains("no provider named `x`"), "{err}");
}

#[tokio::test]
async fn the_report_counts_each_providers_attempts() {
    let a = Provider::start(|_, _| json(503, "{}")).await;
    let b = Provider::answering(200, r#"{"answer":"from b"}"#).await;
    // A stand-in for a provider stack with retries: three sends, each counted.
    let tries = |url: String| {
        let http = reqwest::Client::new();
        tower::util::BoxCloneService::new(tower::service_fn(move |req: reqwest::Request| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let mut last = None;
                for _ in 0..3 {
                    tower_breaker::failover::count_attempt();
                    let mut copy = req.try_clone().unwrap();
                    *copy.url_mut() = url.parse().unwrap();
                    let res = http.execute(copy).await?;
                    if res.status().is_success() {
                        return Ok::<_, BoxError>(res);
                    }
                    last = Some(res);
                }
                Ok(last.unwrap())
            }
        }))
    };
    let mut failover: Failover<Http, _, _, _> = Failover::builder()
        .http()
        .provider("a", None, tries(a.url()))
        .provider("b", None, tries(b.url()))
        .fail_over_when(not_ok)
        .build();
    let res = ask(&mut failover).await;
    let report = report(&res);
    assert_eq!(report.get("a").unwrap().attempts, 3);
    assert_eq!(report.get("b").unwrap().attempts, 1);
    assert_eq!(a.hits(), 3);
}
