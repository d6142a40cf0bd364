//! fakellm 0.3.5: an outage and a 429 storm, switched on at the server by rewriting its rules
//! file and asking it to reload (`POST /_fakellm/reload`), while load runs. What reached the
//! server is read from its per-rule counters (`GET /_fakellm/stats`); the rules tell the
//! stack's requests (`x-client: stack`) from the naive client's (`x-client: naive`).
//!
//! fakellm answers a rule's error status only to non-streamed requests (a stream is always a
//! 200) and sets no `Retry-After`, so these are JSON completions, and its 429s carry no wait.
//! Its state is the whole server's: the tests take turns ([`TURN`]).

use crate::support::{Guard, Provider, call, chat, from_fallback, server_url};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::CircuitState;

const FAKELLM: &str = "TOWER_BREAKER_FAKELLM_URL";
/// The rules file the server was started with (`fakellm serve --config`).
const FAKELLM_CONFIG: &str = "TOWER_BREAKER_FAKELLM_CONFIG";

/// One test at a time drives the server's rules.
static TURN: Mutex<()> = Mutex::const_new(());

/// The load: 20 calls a second, from each client.
const EVERY: Duration = Duration::from_millis(50);

struct Fakellm {
    base: String,
    config: PathBuf,
}

impl Fakellm {
    fn from_env(test: &str) -> Option<Self> {
        let base = server_url(FAKELLM, test)?;
        let config = server_url(FAKELLM_CONFIG, test)?;
        Some(Self {
            base,
            config: config.into(),
        })
    }

    /// Serves `rules` from now on: for each client, the name of its rule and the status it
    /// answers (200 with a completion, or that error).
    async fn serve(&self, rules: &[(&str, &str, u16)]) {
        let mut yaml = String::from("version: 1\nrules:\n");
        for (name, client, status) in rules {
            yaml.push_str(&format!(
                "  - name: {name}\n    when:\n      header.x-client: {client}\n    respond:\n"
            ));
            if *status == 200 {
                yaml.push_str("      content: \"ok\"\n");
            } else {
                yaml.push_str(&format!(
                    "      status: {status}\n      error: \"scripted {status}\"\n"
                ));
            }
        }
        std::fs::write(&self.config, yaml).unwrap();
        let reloaded: Value = reqwest::Client::new()
            .post(format!("{}/_fakellm/reload", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(reloaded["rules"], rules.len(), "{reloaded}");
    }

    /// Requests served so far, by rule.
    async fn hits(&self) -> HashMap<String, u64> {
        let stats: Value = reqwest::Client::new()
            .get(format!("{}/_fakellm/stats", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["by_rule"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(rule, n)| (rule.clone(), n.as_u64().unwrap()))
            .collect()
    }
}

/// How one call through the stack ended, as its caller saw it.
#[derive(Debug)]
struct Answer {
    started: Instant,
    /// Whether the breaker was closed when the call started.
    closed_at_start: bool,
    /// The status and whether the fallback gave it, or the caller's error.
    result: Result<(u16, bool), String>,
}

/// One call through the stack, its body read to the end (the breaker records a body's
/// outcome when it ends).
async fn ask(provider: &Provider, base: &str) -> Answer {
    let started = Instant::now();
    let closed_at_start = provider.breaker.state() == CircuitState::Closed;
    let request = chat(base, "gpt-4o-mini", false, &[("x-client", "stack")]);
    let result = match call(&provider.with_fallback(), request).await {
        Ok(response) => {
            let answer = (response.status().as_u16(), from_fallback(&response));
            match response.bytes().await {
                Ok(_) => Ok(answer),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    Answer {
        started,
        closed_at_start,
        result,
    }
}

/// The naive client: what openai-python does by default (2 retries after a connection error,
/// 408, 409, 429 or 5xx, 0.5 s then 1 s apart; its jitter left out), no breaker.
async fn naive(base: String) {
    let client = reqwest::Client::new();
    for attempt in 0..3 {
        let request = chat(&base, "gpt-4o-mini", false, &[("x-client", "naive")]);
        let retry = match client.execute(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                matches!(status, 408 | 409 | 429) || status >= 500
            }
            Err(_) => true,
        };
        if !retry || attempt == 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
    }
}

#[tokio::test]
async fn fakellm_outage_opens_within_20_failed_attempts_and_spares_the_provider() {
    let test = "fakellm_outage_opens_within_20_failed_attempts_and_spares_the_provider";
    let Some(fakellm) = Fakellm::from_env(test) else {
        return;
    };
    let _turn = TURN.lock().await;
    let healthy = [
        ("healthy_stack", "stack", 200),
        ("healthy_naive", "naive", 200),
    ];
    fakellm.serve(&healthy).await;
    let provider = Provider::llm("fakellm-outage", Guard::Preset).unwrap();
    let provider = std::sync::Arc::new(provider);

    // 5 s healthy, then 10 s of outage (every answer a 503), at 20 calls a second from the
    // stack and from the naive client alike.
    let (mut stack_calls, mut naive_calls) = (JoinSet::new(), JoinSet::new());
    let (mut before, mut outage_at) = (HashMap::new(), None);
    let mut ticks = tokio::time::interval(EVERY);
    for tick in 0..300 {
        ticks.tick().await;
        if tick == 100 {
            before = fakellm.hits().await;
            fakellm
                .serve(&[
                    ("outage_stack", "stack", 503),
                    ("outage_naive", "naive", 503),
                ])
                .await;
            outage_at = Some(Instant::now());
        }
        let (p, base) = (provider.clone(), fakellm.base.clone());
        stack_calls.spawn(async move { ask(&p, &base).await });
        naive_calls.spawn(naive(fakellm.base.clone()));
    }
    let answers = stack_calls.join_all().await;
    naive_calls.join_all().await;
    let after = fakellm.hits().await;
    fakellm.serve(&healthy).await;
    let outage_at = outage_at.unwrap();

    let delta =
        |rule: &str| after.get(rule).copied().unwrap_or(0) - before.get(rule).copied().unwrap_or(0);
    let (stack_hits, naive_hits) = (delta("outage_stack"), delta("outage_naive"));
    let attempts = provider.attempts();
    let open_at = provider
        .breaker_events
        .first_entered(CircuitState::Open)
        .expect("the breaker opened during the outage");
    let failed: Vec<_> = attempts.iter().filter(|a| a.failed()).collect();
    let failed_before_open = failed.iter().filter(|a| a.ended <= open_at).count();
    let first_failure = failed.iter().map(|a| a.ended).min().unwrap();
    let time_to_open = open_at.saturating_duration_since(first_failure);
    let errors: Vec<_> = answers.iter().filter(|a| a.result.is_err()).collect();
    let served_before = answers
        .iter()
        .filter(|a| a.started < outage_at && a.result == Ok((200, false)))
        .count();
    eprintln!(
        "fakellm outage: {served_before} calls served in 5 s; opened {time_to_open:?} after \
         the first failed attempt, after {failed_before_open} failed attempts; requests to the \
         dead provider: stack {stack_hits}, naive {naive_hits} ({:.1} %); caller errors {}",
        100.0 * stack_hits as f64 / naive_hits.max(1) as f64,
        errors.len()
    );

    // Healthy: every call served by the provider.
    assert!(
        answers
            .iter()
            .filter(|a| a.started + Duration::from_millis(100) < outage_at)
            .all(|a| a.result == Ok((200, false))),
        "{answers:?}"
    );
    // The outage seen in bounded time, whatever the history.
    assert!(
        failed_before_open <= 20 || time_to_open <= Duration::from_secs(1),
        "opened after {failed_before_open} failed attempts, {time_to_open:?} after the first"
    );
    // Once open, nothing reaches the dead provider (the preset waits 15 s in open).
    assert_eq!(attempts.iter().filter(|a| a.started > open_at).count(), 0);
    assert!(
        stack_hits as f64 <= 0.05 * naive_hits as f64,
        "stack {stack_hits} vs naive {naive_hits}"
    );
    // The fallback answered every failure: no caller saw an error.
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn fakellm_429s_cool_down_without_opening_and_are_served_after() {
    let test = "fakellm_429s_cool_down_without_opening_and_are_served_after";
    let Some(fakellm) = Fakellm::from_env(test) else {
        return;
    };
    let _turn = TURN.lock().await;
    let healthy = [("rl_healthy_stack", "stack", 200)];
    fakellm.serve(&healthy).await;
    let provider = std::sync::Arc::new(Provider::llm("fakellm-429", Guard::Preset).unwrap());

    // 1 s healthy, 2 s of 429s (no Retry-After), 3 s healthy.
    let mut calls = JoinSet::new();
    let mut ticks = tokio::time::interval(EVERY);
    for tick in 0..120 {
        ticks.tick().await;
        if tick == 20 {
            fakellm.serve(&[("rl_429_stack", "stack", 429)]).await;
        }
        if tick == 60 {
            fakellm.serve(&healthy).await;
        }
        let (p, base) = (provider.clone(), fakellm.base.clone());
        calls.spawn(async move { ask(&p, &base).await });
    }
    let answers = calls.join_all().await;

    let attempts = provider.attempts();
    let last_429 = attempts
        .iter()
        .filter(|a| a.status == Some(429))
        .map(|a| a.ended)
        .max()
        .expect("the server answered 429s");
    let events = &provider.breaker_events;
    // A call that starts once the last 429 is in and the breaker is closed again (its cool-down,
    // 1 s without a Retry-After, is over) is served by the provider.
    let after: Vec<_> = answers
        .iter()
        .filter(|a| a.started > last_429 && a.closed_at_start)
        .collect();
    let errors: Vec<_> = answers.iter().filter(|a| a.result.is_err()).collect();
    eprintln!(
        "fakellm 429s: {} attempts answered 429, {} cool-down(s), 0 opens expected ({}); {} \
         calls after the cool-down, {} served",
        attempts.iter().filter(|a| a.status == Some(429)).count(),
        events.entered(CircuitState::RateLimited),
        events.entered(CircuitState::Open),
        after.len(),
        after
            .iter()
            .filter(|a| a.result == Ok((200, false)))
            .count(),
    );

    assert!(events.entered(CircuitState::RateLimited) >= 1);
    assert_eq!(events.entered(CircuitState::Open), 0, "{:?}", events.all());
    assert!(!events.outcomes().contains(&Outcome::Failure));
    assert!(errors.is_empty(), "{errors:?}");
    // The healthy tail lasts 3 s and the cool-down at most 1 s from the last 429.
    assert!(after.len() >= 20, "{after:?}");
    assert!(
        after.iter().all(|a| a.result == Ok((200, false))),
        "{after:?}"
    );
}
