//! Adversarial tests of `settings`, from its docs ("a bad value is an error that names its
//! path in the file, never a panic or a silent default"): TOML's `nan` and `inf`, durations
//! at and past `u64` seconds, and odd duration spellings, through every settings struct that
//! takes a float.

use super::from_toml;
use std::time::Duration;
use tower::service_fn;
use tower_breaker::BoxError;
use tower_breaker::chaos::ChaosLayer;
use tower_breaker::retry::RetryPolicy;
use tower_breaker::settings::{
    ChaosSettings, HedgeSettings, RetrySettings, SettingsError, parse_duration,
};
use tower_breaker::stream::Hedge;

async fn echo(n: u32) -> Result<u32, BoxError> {
    Ok(n)
}

/// Loads `toml` as `T` and builds it with `build`: the error's text, which must name `key`.
fn refused<T: for<'de> serde::Deserialize<'de>>(
    toml: &str,
    key: &str,
    build: impl FnOnce(T) -> Result<(), SettingsError>,
) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        from_toml::<T>(toml).and_then(build)
    }));
    let err = match result {
        Ok(Ok(())) => panic!("{toml:?} was accepted"),
        Ok(Err(err)) => err,
        Err(_) => panic!("{toml:?} panicked"),
    };
    let text = err.to_string();
    assert!(text.contains(key), "{toml:?}: {text}");
}

const NON_FINITE: [&str; 4] = ["nan", "inf", "-inf", "-nan"];

#[test]
fn non_finite_floats_are_errors_at_their_path_never_panics() {
    for bad in NON_FINITE {
        refused::<ChaosSettings>(
            &format!(
                "faults = [ {{ kind = \"error\", message = \"x\", injection_rate = {bad} }} ]"
            ),
            "injection_rate",
            |s| s.build("chaos", ChaosLayer::<u32>::builder("c")).map(drop),
        );
        refused::<HedgeSettings>(&format!("budget = {bad}"), "budget", |s| {
            s.build("h", Hedge::<(), u32>::builder(), service_fn(echo))
                .map(drop)
        });
        refused::<HedgeSettings>(
            &format!("delay = {{ quantile = {bad} }}"),
            "quantile",
            |s| {
                s.build("h", Hedge::<(), u32>::builder(), service_fn(echo))
                    .map(drop)
            },
        );
        refused::<RetrySettings>(
            &format!("reserve_for_last_attempt = {bad}\ndeadline = \"10s\""),
            "reserve_for_last_attempt",
            |s| s.build("retry", RetryPolicy::builder()).map(drop),
        );
        refused::<RetrySettings>(
            &format!(
                "backoff = {{ kind = \"exponential\", base_delay = \"100ms\", max_delay = \"1s\", factor = {bad} }}"
            ),
            "factor",
            |s| s.build("retry", RetryPolicy::builder()).map(drop),
        );
        refused::<RetrySettings>(
            &format!(
                "backoff = {{ kind = \"exponential\", base_delay = \"100ms\", max_delay = \"1s\", jitter = {bad} }}"
            ),
            "jitter",
            |s| s.build("retry", RetryPolicy::builder()).map(drop),
        );
        refused::<RetrySettings>(
            &format!("budget = {{ retry_ratio = {bad}, min_retries_per_sec = 1 }}"),
            "retry_ratio",
            |s| s.build("retry", RetryPolicy::builder()).map(drop),
        );
    }
}

#[test]
fn durations_at_and_past_the_largest_parse_or_fail_never_panic() {
    let max = u64::MAX;
    assert_eq!(
        parse_duration(&format!("{max}s")),
        Ok(Duration::from_secs(max))
    );
    assert_eq!(
        parse_duration(&format!("{max}.999999999s")),
        Ok(Duration::new(max, 999_999_999))
    );
    // One nanosecond under a second past the largest: still the largest whole second.
    assert_eq!(
        parse_duration(&format!("{max}.9999999999999999999999s")),
        Ok(Duration::new(max, 999_999_999))
    );
    for bad in [
        format!("{}s", u128::from(max) + 1),
        format!("{max}m"),
        "340282366920938463463374607431768211456ns".to_string(),
        format!("{}d", u64::MAX / 86_400 + 1),
    ] {
        assert!(parse_duration(&bad).is_err(), "{bad}");
    }
    for bad in [
        "", " ", ".", ".5s", "s", "1e3s", "+5s", "5 s s", "5sec", "1_000ms", "NaNs", "infs", "１s",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
    }
    // What the docs promise parses.
    for (text, expected) in [
        ("30s", Duration::from_secs(30)),
        ("0s", Duration::ZERO),
        ("1.5s", Duration::from_millis(1_500)),
        ("1µs", Duration::from_micros(1)),
    ] {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
}

#[test]
fn a_huge_duration_in_a_file_is_a_range_error_at_its_path() {
    refused::<RetrySettings>(&format!("deadline = \"{}s\"", u64::MAX), "deadline", |s| {
        s.build("retry", RetryPolicy::builder()).map(drop)
    });
    refused::<ChaosSettings>(
        &format!(
            "faults = [ {{ kind = \"latency\", min = \"{}s\", injection_rate = 0.5 }} ]",
            u64::MAX
        ),
        "latency",
        |s| s.build("chaos", ChaosLayer::<u32>::builder("c")).map(drop),
    );
}
