//! The settings through figment, as a service would load them: a YAML file, then environment
//! variables over it (`APP_OPENAI__BREAKER__WAIT_IN_OPEN=...`), into the same settings types
//! and the same validation as TOML. figment's `Jail` sets the variables and files inside a
//! lock, so no test here races another over the process environment.

// figment's `Jail` closures and `extract` return its `Error` (208 bytes): its API, not ours.
#![allow(clippy::result_large_err)]

use figment::Figment;
use figment::providers::{Env, Format, Yaml};
use serde::Deserialize;
use std::time::Duration;
use tower_breaker::quota::Quota;
use tower_breaker::settings::{QuotaSettings, StackSettings};
use tower_breaker::stack::StandardResilience;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    openai: StackSettings,
    quota: QuotaSettings,
}

const YAML: &str = r#"
openai:
  total_timeout: 120s
  attempt_timeout: 30s
  retry:
    max_attempts: 3
    backoff: { kind: exponential, base_delay: 500ms, max_delay: 8s, jitter: full }
  breaker:
    sliding_window: { kind: time, length: 120s, buckets: 12 }
    failure_rate_threshold: 0.5
    minimum_calls: 10
    wait_in_open: 15s
  bulkhead:
    max_concurrent: 64
quota:
  window: 60s
  requests_per_window: 500
  tokens_per_window: 200000
"#;

fn load() -> Result<Config, figment::Error> {
    Figment::new()
        .merge(Yaml::file("settings.yaml"))
        .merge(Env::prefixed("APP_").split("__"))
        .extract()
}

#[test]
fn a_yaml_file_with_environment_overrides_becomes_a_working_stack() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("settings.yaml", YAML)?;
        // The environment wins over the file, as a deployment overrides a default.
        jail.set_env("APP_OPENAI__TOTAL_TIMEOUT", "90s");
        jail.set_env("APP_OPENAI__BULKHEAD__MAX_CONCURRENT", "8");
        jail.set_env("APP_QUOTA__TOKENS_PER_WINDOW", "90000");
        let config = load()?;

        let openai = config
            .openai
            .build("openai", StandardResilience::builder("openai").llm())
            .map_err(|e| e.to_string())?;
        assert_eq!(openai.total_timeout(), Duration::from_secs(90));
        assert_eq!(openai.attempt_timeout(), Duration::from_secs(30));
        assert_eq!(openai.retry().max_attempts(), 3);
        assert_eq!(
            openai.breaker().time_window(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(openai.bulkhead().metrics().max_concurrent, 8);

        let quota = config
            .quota
            .build("quota", Quota::<String>::builder("openai"))
            .map_err(|e| e.to_string())?;
        let key = "gpt-4o".to_string();
        let _permit = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| e.to_string())?
            .block_on(quota.acquire(&key, 1_000))
            .map_err(|e| e.to_string())?;
        let snapshot = quota.snapshot(&key).ok_or("the key was seen")?;
        assert_eq!(snapshot.requests_limit, Some(500));
        assert_eq!(snapshot.tokens_limit, Some(90_000));
        Ok(())
    });
}

#[test]
fn a_bad_value_from_the_environment_fails_with_its_path() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("settings.yaml", YAML)?;
        // In range for its type, out of range for a breaker: the builder's check names it.
        jail.set_env("APP_OPENAI__BREAKER__FAILURE_RATE_THRESHOLD", "1.5");
        let config = load()?;
        let err = config
            .openai
            .build("openai", StandardResilience::builder("openai").llm())
            .expect_err("a failure rate of 1.5");
        let text = err.to_string();
        assert!(
            text.starts_with("openai.breaker.failure_rate_threshold: 1.5"),
            "{text}"
        );
        Ok(())
    });
}

#[test]
fn a_wrong_type_an_unknown_key_or_a_negative_duration_fails_at_load() {
    for (variable, value, names) in [
        (
            "APP_OPENAI__BULKHEAD__MAX_CONCURRENT",
            "many",
            "max_concurrent",
        ),
        ("APP_OPENAI__BREAKER__FAILURE_RATIO", "0.5", "failure_ratio"),
        ("APP_OPENAI__BREAKER__WAIT_IN_OPEN", "-5s", "wait_in_open"),
    ] {
        figment::Jail::expect_with(|jail| {
            jail.create_file("settings.yaml", YAML)?;
            jail.set_env(variable, value);
            let err = load().expect_err(variable).to_string();
            // figment names an environment key as written (upper case) in its errors.
            assert!(
                err.to_lowercase().contains(names),
                "{variable}={value}: {err}"
            );
            Ok(())
        });
    }
}
