//! Settings from files: every builder's settings round trip into a working component, a bad
//! file fails at load with the path of the bad value, and a TOML file becomes a working stack.

mod adversarial_settings;
mod formats;

use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};
use tower_breaker::Outcome;
use tower_breaker::bulkhead::Bulkhead;
use tower_breaker::chaos::{ChaosError, ChaosLayer};
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, CircuitState};
use tower_breaker::quota::Quota;
use tower_breaker::retry::RetryPolicy;
use tower_breaker::settings::{
    self, BreakerSettings, BulkheadSettings, ChaosSettings, HedgeSettings, QuotaSettings,
    RetrySettings, SettingsError, StackSettings, StreamGuardSettings,
};
use tower_breaker::stack::StandardResilience;
use tower_breaker::stream::{Hedge, StreamGuardLayer};

/// The example file's shape (as in `examples/settings.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    openai: StackSettings,
    quota: QuotaSettings,
    stream_guard: StreamGuardSettings,
    hedge: HedgeSettings,
    chaos: ChaosSettings,
}

const EXAMPLE: &str = include_str!("../../examples/settings.toml");

fn from_toml<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, SettingsError> {
    let deserializer = toml::de::Deserializer::parse(text).expect("the test's TOML parses");
    settings::deserialize(deserializer)
}

fn from_json<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, SettingsError> {
    settings::deserialize(&mut serde_json::Deserializer::from_str(text))
}

#[test]
fn the_example_file_loads_into_every_component() {
    let config: Config = from_toml(EXAMPLE).unwrap();

    let openai = config
        .openai
        .build("openai", StandardResilience::builder("openai").llm())
        .unwrap();
    assert_eq!(openai.total_timeout(), Duration::from_secs(120));
    assert_eq!(openai.attempt_timeout(), Duration::from_secs(30));
    assert_eq!(
        openai.breaker().time_window(),
        Some(Duration::from_secs(120))
    );
    assert_eq!(openai.retry().max_attempts(), 3);
    assert_eq!(openai.bulkhead().metrics().max_concurrent, 64);

    let quota = config
        .quota
        .build("quota", Quota::<String>::builder("openai"))
        .unwrap();
    assert_eq!(quota.name(), "openai");
    config
        .stream_guard
        .build("stream_guard", StreamGuardLayer::builder())
        .unwrap();
    let hedge = config
        .hedge
        .build("hedge", Hedge::<(), u32>::builder(), service_fn(echo))
        .unwrap();
    // A percentile delay starts at its cap.
    assert_eq!(hedge.current_delay(), Duration::from_secs(3));
    let chaos = config
        .chaos
        .build("chaos", ChaosLayer::http("staging"))
        .unwrap();
    assert_eq!(chaos.seed(), 42);
}

async fn echo(x: u32) -> Result<u32, BoxError> {
    Ok(x)
}

/// A service that fails while `failing` is set, counting its calls.
fn switchable() -> (
    Arc<AtomicBool>,
    Arc<AtomicUsize>,
    impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static,
) {
    let failing = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let (f, c) = (failing.clone(), calls.clone());
    let svc = service_fn(move |x: u32| {
        c.fetch_add(1, Ordering::SeqCst);
        let fail = f.load(Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if fail {
                Err::<u32, BoxError>("503".into())
            } else {
                Ok(x)
            }
        }
    });
    (failing, calls, svc)
}

#[tokio::test(start_paused = true)]
async fn a_toml_file_becomes_a_stack_that_serves_and_opens_on_failures() {
    let file = r#"
        [search]
        total_timeout = "5s"
        attempt_timeout = "1s"

        [search.retry]
        max_attempts = 1

        [search.breaker]
        sliding_window = { kind = "count", calls = 4 }
        failure_rate_threshold = 0.5
        minimum_calls = 4
        wait_in_open = "30s"

        [search.bulkhead]
        max_concurrent = 2
    "#;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        search: StackSettings,
    }
    let file: File = from_toml(file).unwrap();
    let stack = file
        .search
        .build("search", StandardResilience::builder("search"))
        .unwrap();
    let (failing, calls, upstream) = switchable();
    let mut svc = stack.layer(upstream);

    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
    failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        svc.ready().await.unwrap().call(7).await.unwrap_err();
    }
    // Three failures in the last four calls: over the 50 % of the file.
    assert_eq!(stack.breaker().state(), CircuitState::Open);
    let before = calls.load(Ordering::SeqCst);
    let err = svc.ready().await.unwrap().call(7).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "an open circuit calls no one"
    );
    assert_eq!(stack.bulkhead().metrics().max_concurrent, 2);

    // After the file's 30 s, a probe goes through and closes it again.
    failing.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(30)).await;
    for _ in 0..10 {
        svc.ready().await.unwrap().call(7).await.unwrap();
    }
    assert_eq!(stack.breaker().state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn breaker_settings_round_trip() {
    let settings: BreakerSettings = from_toml(
        r#"
        sliding_window = { kind = "consecutive", failures = 2 }
        wait_in_open = "1.5s"
        permitted_calls_in_half_open = 1
        max_wait_in_half_open = "none"
        "#,
    )
    .unwrap();
    let breaker = settings.build("b", CircuitBreaker::builder("b")).unwrap();
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(breaker.state(), CircuitState::Closed);
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.retry_after(), Some(Duration::from_millis(1500)));
    // No limit on a probe: one admitted after the open time stays in flight however long.
    tokio::time::advance(Duration::from_millis(1500)).await;
    let probe = breaker.try_acquire().unwrap();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(
        breaker.try_acquire().is_err(),
        "the one probe slot is still taken"
    );
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    probe.record(Outcome::Success);
    assert_eq!(breaker.state(), CircuitState::Closed);

    let time: BreakerSettings = from_toml(
        r#"
        sliding_window = { kind = "time", length = "10s", buckets = 5 }
        load_aware = { tiers = [ { max_calls_per_minute = inf, failures = 2, wait_in_open = "3s" } ] }
        "#,
    )
    .unwrap();
    let breaker = time.build("t", CircuitBreaker::builder("t")).unwrap();
    assert_eq!(breaker.time_window(), Some(Duration::from_secs(10)));
}

#[test]
fn bulkhead_settings_round_trip() {
    let settings: BulkheadSettings =
        from_json(r#"{ "max_concurrent": 1, "max_queue": 0, "max_wait": "250ms" }"#).unwrap();
    let bulkhead = settings.build("b", Bulkhead::builder("b")).unwrap();
    assert_eq!(bulkhead.metrics().max_concurrent, 1);
    let held = bulkhead.try_acquire().unwrap();
    assert!(
        bulkhead.try_acquire().is_err(),
        "the file's one call at a time"
    );
    drop(held);
}

#[test]
fn retry_settings_round_trip() {
    let settings: RetrySettings = from_toml(
        r#"
        max_attempts = 5
        backoff = { kind = "linear", base_delay = "100ms", max_delay = "1s", step = "200ms", jitter = 0.1 }
        no_budget = true
        deadline = "10s"
        reserve_for_last_attempt = 0.2
        "#,
    )
    .unwrap();
    let policy = settings.build("retry", RetryPolicy::builder()).unwrap();
    assert_eq!(policy.max_attempts(), 5);
}

#[tokio::test(start_paused = true)]
async fn quota_settings_round_trip() {
    let settings: QuotaSettings =
        from_toml("requests_per_window = 1\nwindow = \"1m\"\nmax_wait = \"0s\"").unwrap();
    let quota = settings
        .build("quota", Quota::<&'static str>::builder("q"))
        .unwrap();
    let mut svc = quota.layer(|_: &u32| "k").layer(service_fn(echo));
    svc.ready().await.unwrap().call(1).await.unwrap();
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(err.to_string().contains('q'), "{err}");
}

#[test]
fn stream_settings_round_trip() {
    let guard: StreamGuardSettings =
        from_toml("name = \"gateway\"\nfirst_token_timeout = \"2s\"\nrules = \"anthropic\"")
            .unwrap();
    let layer = guard.build("g", StreamGuardLayer::builder()).unwrap();
    // The layer shows its settings only in its `Debug`: no getters (the stream module's).
    let shown = format!("{layer:?}");
    assert!(shown.contains("first_token: Some(2s)"), "{shown}");
    assert!(shown.contains("name: \"anthropic\""), "{shown}");
    assert!(shown.contains("name: \"gateway\""), "{shown}");
    let hedge: HedgeSettings = from_toml("delay = { fixed = \"250ms\" }\nbudget = 0.5").unwrap();
    let hedge = hedge
        .build("h", Hedge::<(), u32>::builder(), service_fn(echo))
        .unwrap();
    assert_eq!(hedge.current_delay(), Duration::from_millis(250));
}

#[tokio::test]
async fn chaos_settings_round_trip() {
    let settings: ChaosSettings = from_toml(
        r#"
        seed = 7
        faults = [ { kind = "error", message = "from the file", injection_rate = 1.0 } ]
        "#,
    )
    .unwrap();
    let layer = settings
        .build("chaos", ChaosLayer::<u32>::builder("c"))
        .unwrap();
    let err = layer.layer(service_fn(echo)).oneshot(1).await.unwrap_err();
    assert!(err.is::<ChaosError>(), "{err}");
    assert!(err.to_string().contains("from the file"), "{err}");
}

/// Loads the example file with `edit` applied to it, expecting an error.
fn example_with(edit: impl FnOnce(&str) -> String) -> String {
    let text = edit(EXAMPLE);
    let config = match from_toml::<Config>(&text) {
        Ok(config) => config,
        Err(err) => return err.to_string(),
    };
    let built = config
        .openai
        .build("openai", StandardResilience::builder("openai").llm())
        .map(drop)
        .and_then(|()| {
            config
                .chaos
                .build("chaos", ChaosLayer::http("staging"))
                .map(drop)
        })
        .and_then(|()| {
            config
                .hedge
                .build("hedge", Hedge::<(), u32>::builder(), service_fn(echo))
                .map(drop)
        });
    built.expect_err("the edited file is rejected").to_string()
}

#[test]
fn a_wrong_type_fails_with_its_path() {
    let err = example_with(|t| t.replace("minimum_calls = 10", "minimum_calls = \"ten\""));
    assert!(err.starts_with("openai.breaker.minimum_calls: "), "{err}");
    // toml adds the line, column and a snippet.
    assert!(err.contains("line 21"), "{err}");
    assert!(
        err.contains("invalid type: string \"ten\", expected u32"),
        "{err}"
    );
}

#[test]
fn a_negative_duration_fails_with_its_path() {
    let err = example_with(|t| t.replace("wait_in_open = \"15s\"", "wait_in_open = \"-15s\""));
    assert!(err.starts_with("openai.breaker.wait_in_open: "), "{err}");
    assert!(err.contains("negative"), "{err}");
    let err = example_with(|t| t.replace("max_wait = \"2s\"", "max_wait = 2"));
    assert!(err.starts_with("openai.bulkhead.max_wait: "), "{err}");
    assert!(
        err.contains("invalid type: integer `2`, expected a duration"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_fails_with_its_path() {
    let err = example_with(|t| t.replace("minimum_calls = 10", "minimum_cals = 10"));
    assert!(err.starts_with("openai.breaker.minimum_cals: "), "{err}");
    assert!(err.contains("unknown field `minimum_cals`"), "{err}");
    let err = example_with(|t| t.replace("[quota]", "[quotas]"));
    assert!(err.contains("quotas"), "{err}");
    let err = example_with(|t| t.replace("kind = \"time\"", "kind = \"hourly\""));
    assert!(err.starts_with("openai.breaker.sliding_window"), "{err}");
    // Inside a tagged table too: `calls` is a count window's, not a time window's.
    let err = example_with(|t| t.replace("buckets = 12", "calls = 12"));
    assert!(err.starts_with("openai.breaker.sliding_window"), "{err}");
    assert!(err.contains("unknown field `calls`"), "{err}");
    let err = example_with(|t| t.replace("status = 503,", "status = 503, retry_after = \"1s\","));
    assert!(err.starts_with("chaos.faults[2]"), "{err}");
    assert!(err.contains("unknown field `retry_after`"), "{err}");
}

#[test]
fn an_out_of_range_value_fails_with_its_path_through_the_builder() {
    let err = example_with(|t| {
        t.replace(
            "failure_rate_threshold = 0.5",
            "failure_rate_threshold = 1.5",
        )
    });
    assert_eq!(
        err,
        "openai.breaker.failure_rate_threshold: 1.5 (allowed: 0.0 < x <= 1.0)"
    );
}

#[test]
fn stack_errors_name_the_part() {
    for (from, to, path) in [
        (
            "max_concurrent = 64",
            "max_concurrent = 0",
            "openai.bulkhead.max_concurrent",
        ),
        (
            "max_attempts = 3",
            "max_attempts = 0",
            "openai.retry.max_attempts",
        ),
        (
            "max_delay = \"8s\"",
            "max_delay = \"100ms\"",
            "openai.retry.backoff.max_delay",
        ),
        (
            "retry_ratio = 0.2",
            "retry_ratio = 20.0",
            "openai.retry.budget.retry_ratio",
        ),
        (
            "max_server_delay = \"60s\"",
            "max_server_delay = \"2d\"",
            "openai.retry.max_server_delay",
        ),
        (
            "attempt_timeout = \"30s\"",
            "attempt_timeout = \"200s\"",
            "openai.attempt_timeout",
        ),
        (
            "length = \"120s\"",
            "length = \"40s\"",
            "openai.breaker.sliding_window",
        ),
        (
            "buckets = 12",
            "buckets = 0",
            "openai.breaker.sliding_window.buckets",
        ),
        (
            "multiplier = 2.0",
            "multiplier = 0.5",
            "openai.breaker.open_time_growth.multiplier",
        ),
        (
            "permitted_calls_in_half_open = 3",
            "permitted_calls_in_half_open = 0",
            "openai.breaker.permitted_calls_in_half_open",
        ),
        (
            "injection_rate = 0.05 },\n    { kind = \"status\"",
            "injection_rate = 0.05 },\n    { kind = \"status\", status = 99, injection_rate = 0.1 },\n    { kind = \"status\"",
            "chaos.faults[2].status",
        ),
        (
            "injection_rate = 0.2",
            "injection_rate = 1.2",
            "chaos.faults[0].injection_rate",
        ),
        (
            "max_server_delay = \"60s\"",
            "max_server_delay = \"60s\"\nreserve_for_last_attempt = 1.5",
            "openai.retry.reserve_for_last_attempt",
        ),
        (
            "max_server_delay = \"60s\"",
            "max_server_delay = \"60s\"\nwait_out_cool_downs = 100000000",
            "openai.retry.wait_out_cool_downs",
        ),
        (
            "max_wait = \"2s\"",
            "max_wait = \"2d\"",
            "openai.bulkhead.max_wait",
        ),
        (
            "max = \"5m\"",
            "max = \"2d\"",
            "openai.breaker.open_time_growth.max",
        ),
        ("quantile = 0.95", "quantile = 0.0", "hedge.delay.quantile"),
        (
            "budget_burst = 10",
            "budget_burst = 0",
            "hedge.budget_burst",
        ),
    ] {
        assert!(EXAMPLE.contains(from), "{from}");
        let err = example_with(|t| t.replacen(from, to, 1));
        assert!(err.starts_with(&format!("{path}: ")), "{path}: {err}");
    }
}

#[test]
fn settings_that_exclude_each_other_are_errors() {
    let err = example_with(|t| {
        t.replace(
            "budget = { retry_ratio = 0.2, min_retries_per_sec = 10 }",
            "budget = { retry_ratio = 0.2, min_retries_per_sec = 10 }\nno_budget = true",
        )
    });
    assert!(err.starts_with("openai.retry.no_budget: "), "{err}");
    let err = example_with(|t| t.replace("jitter = \"full\"", "jitter = \"fuul\""));
    assert!(err.starts_with("openai.retry.backoff.jitter: "), "{err}");
    assert!(err.contains("unknown variant `fuul`"), "{err}");
    let err = example_with(|t| {
        t.replace(
            "kind = \"exponential\", base_delay = \"500ms\", max_delay = \"8s\"",
            "kind = \"constant\", base_delay = \"500ms\", max_delay = \"8s\"",
        )
    });
    assert!(
        err.starts_with("openai.retry.backoff.max_delay: not used"),
        "{err}"
    );
    let err = example_with(|t| {
        t.replace(
            "delay = { quantile = 0.95, floor = \"200ms\", cap = \"3s\" }",
            "delay = { fixed = \"1s\", cap = \"3s\" }",
        )
    });
    assert!(err.starts_with("hedge.delay.fixed: "), "{err}");
    let err = example_with(|t| t.replace("floor = \"200ms\", ", ""));
    assert!(err.starts_with("hedge.delay: give"), "{err}");
}

#[test]
fn an_http_fault_needs_an_http_layer() {
    let settings: ChaosSettings =
        from_toml("faults = [ { kind = \"status\", status = 503, injection_rate = 1.0 } ]")
            .unwrap();
    let err = settings
        .build("chaos", ChaosLayer::<u32>::builder("c"))
        .unwrap_err();
    assert!(err.path().starts_with("chaos."), "{err}");
}
