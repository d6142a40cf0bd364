//! `retry_after_at` on arbitrary headers and clocks, and the HTTP classifier recording the wait
//! on a breaker. Never panics; the wait is at most `MAX_RETRY_AFTER`; plain numbers mean what
//! they say; a later clock never asks for a longer wait.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};
use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
use tower_breaker::http::{HttpClassifier, MAX_RETRY_AFTER, retry_after_at};

#[derive(Arbitrary, Debug)]
enum Name {
    RetryAfter,
    RetryAfterMs,
    Other,
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Seconds from the Unix epoch (negative: before it), and nanoseconds.
    now_secs: i64,
    now_nanos: u32,
    /// How much later the second clock reading is.
    later_by: u32,
    headers: Vec<(Name, &'a [u8])>,
    status: u16,
}

fn clock(secs: i64, nanos: u32) -> Option<SystemTime> {
    let nanos = Duration::from_nanos(u64::from(nanos % 1_000_000_000));
    let base = if secs >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }?;
    base.checked_add(nanos)
}

/// The number a header value states, when it is nothing but ASCII digits (at most 12 of them:
/// far past the cap either way) between optional whitespace. Whitespace around a field value
/// is RFC 9110's OWS: spaces and tabs only. Unicode whitespace (a no-break space, `"6\u{a0}"`)
/// is not OWS, and a value with bytes outside ASCII is not a number: the parser ignores it.
fn plain_number(value: &[u8]) -> Option<u64> {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b))?;
    let end = value.iter().rposition(|b| !is_ows(b))? + 1;
    let digits = &value[start..end];
    if digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fuzz_target!(|input: Input<'_>| {
    let Some(now) = clock(input.now_secs, input.now_nanos) else {
        return;
    };
    let mut headers = HeaderMap::new();
    let mut values = Vec::new();
    for (name, value) in &input.headers {
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        let name = match name {
            Name::RetryAfter => HeaderName::from_static("retry-after"),
            Name::RetryAfterMs => HeaderName::from_static("retry-after-ms"),
            Name::Other => HeaderName::from_static("x-other"),
        };
        values.push((name.clone(), value.clone()));
        headers.append(name, value);
    }

    let wait = retry_after_at(&headers, now);
    if let Some(wait) = wait {
        assert!(wait <= MAX_RETRY_AFTER, "{wait:?} for {headers:?}");
    }
    assert_eq!(wait, retry_after_at(&headers, now), "not deterministic");

    // One header holding a plain number: that many seconds (or milliseconds), capped.
    if let [(name, value)] = values.as_slice()
        && let Some(n) = plain_number(value.as_bytes())
    {
        let expected = match name.as_str() {
            "retry-after" => Some(Duration::from_secs(n)),
            "retry-after-ms" => Some(Duration::from_millis(n)),
            _ => None,
        };
        assert_eq!(wait, expected.map(|d| d.min(MAX_RETRY_AFTER)), "{value:?}");
    }

    // Later, the wait is never longer, and a value that counted still counts.
    if let Some(later) = now.checked_add(Duration::from_millis(u64::from(input.later_by))) {
        let then = retry_after_at(&headers, later);
        assert_eq!(wait.is_some(), then.is_some(), "{headers:?}");
        if let (Some(wait), Some(then)) = (wait, then) {
            assert!(
                then <= wait,
                "{then:?} later, {wait:?} before, for {headers:?}"
            );
        }
    }

    // The classifier records the status and the server's wait on a breaker.
    let Ok(status) = StatusCode::from_u16(input.status) else {
        return;
    };
    let breaker = CircuitBreaker::builder("fuzz")
        .sliding_window(SlidingWindow::consecutive(1))
        .max_retry_after(MAX_RETRY_AFTER)
        .build()
        .expect("a valid breaker");
    let classifier = HttpClassifier::new();
    let _class = classifier.classify_response(status, &headers);
    let mut response = Response::new(String::new());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    let permit = breaker.try_acquire().expect("a closed breaker");
    drop(classifier.record_response(response, permit));
    if let Some(left) = breaker.retry_after() {
        // The breaker's own wait (60 s) or the server's, capped at `max_retry_after`; the
        // breaker ends waits on a whole millisecond, rounding up, so up to 1 ms more.
        assert!(
            left <= MAX_RETRY_AFTER + Duration::from_millis(1),
            "{left:?}"
        );
    }
    assert_eq!(breaker.metrics().probes_in_flight, 0);
});
