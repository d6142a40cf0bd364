//! The providers' rate-limit headers on arbitrary input: `RateLimits::from_headers_at`, the Go
//! duration and RFC 3339 parsers, and a quota governor learning from whatever they read.
//! Never panics; every reset and wait is at most `MAX_RESET`; a Go duration that parses
//! formats back to the same duration; a later clock never makes an RFC 3339 reset longer.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};
use tower_breaker::quota::{
    MAX_RESET, Quota, RateLimits, format_go_duration, parse_go_duration, parse_rfc3339,
};

const NAMES: [&str; 16] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-reset",
    "retry-after-ms",
    "x-ms-retry-after-ms",
    "retry-after",
];

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    now_secs: u32,
    later_by_ms: u32,
    headers: Vec<(u8, &'a [u8])>,
    text: &'a str,
    nanos: u64,
    rate_limited: bool,
}

fuzz_target!(|input: Input<'_>| {
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        let name = HeaderName::from_static(NAMES[usize::from(*name) % NAMES.len()]);
        headers.append(name, value);
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(input.now_secs));
    let limits = RateLimits::from_headers_at(&headers, now);
    assert_eq!(limits, RateLimits::from_headers_at(&headers, now), "not deterministic");
    for budget in [limits.requests, limits.tokens, limits.input_tokens, limits.output_tokens] {
        assert!(budget.reset.is_none_or(|r| r <= MAX_RESET), "{limits:?}");
    }
    assert!(limits.retry_after.is_none_or(|r| r <= MAX_RESET), "{limits:?}");
    let later = now + Duration::from_millis(u64::from(input.later_by_ms));
    let then = RateLimits::from_headers_at(&headers, later);
    if let (Some(a), Some(b)) = (limits.requests.reset, then.requests.reset) {
        // An RFC 3339 reset only gets nearer; a Go duration stays as it is.
        assert!(b <= a, "{b:?} later, {a:?} before, for {headers:?}");
    }

    // The parsers alone.
    if let Some(d) = parse_go_duration(input.text) {
        assert_eq!(parse_go_duration(&format_go_duration(d)), Some(d), "{:?}", input.text);
    }
    let d = Duration::from_nanos(input.nanos);
    assert_eq!(parse_go_duration(&format_go_duration(d)), Some(d));
    let _ = parse_rfc3339(input.text);

    // A governor learns from whatever was read, and still admits or rejects cleanly.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let quota = Quota::<u8>::builder("fuzz")
            .max_wait(Duration::from_secs(1))
            .build()
            .expect("a valid quota");
        let permit = quota.acquire(&0, 100).await.expect("no limit known yet");
        if input.rate_limited {
            permit.rate_limited(&limits);
        } else {
            permit.observe(&limits);
        }
        if let Err(e) = quota.acquire(&0, 100).await {
            assert!(e.retry_after() > Duration::from_secs(1), "{e}");
        }
    });
});
