//! How long a server asked us to wait: `retry-after-ms` and `Retry-After`.

use ::http::HeaderMap;
use ::http::header::{HeaderValue, RETRY_AFTER};
use std::time::{Duration, SystemTime};

/// The longest wait [`retry_after`] returns: 24 hours. A longer (or overflowing) value is
/// clamped to it. Breakers and retry policies apply their own, much smaller, caps on top.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// An HTTP-date is at most 29 characters; anything much longer is not one.
const MAX_DATE_LEN: usize = 64;

/// The wait a response asks for, measured from the system clock now; see [`retry_after_at`].
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
/// use tower_breaker::http::{retry_after, retry_after_at};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "2".parse()?);
/// assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
///
/// // `retry-after-ms` (sent by some AI APIs next to `Retry-After`) is more precise and wins.
/// headers.insert("retry-after-ms", "1500".parse()?);
/// assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
///
/// // An HTTP-date is measured from `now`; a date in the past means "now".
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT".parse()?);
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_767); // 10 s earlier
/// assert_eq!(retry_after_at(&headers, now), Some(Duration::from_secs(10)));
/// assert_eq!(retry_after(&headers), Some(Duration::ZERO));
///
/// // Anything malformed is ignored.
/// headers.insert("retry-after", "soon".parse()?);
/// assert_eq!(retry_after(&headers), None);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// The wait a response asks for, with HTTP-dates measured from `now`.
///
/// - `retry-after-ms`, then `x-ms-retry-after-ms` (Azure): milliseconds, a non-negative
///   number (`1500`, `1500.5`). Checked first: more precise than `Retry-After` when a server
///   sends both.
/// - `Retry-After`: delta-seconds (`120`, and leniently `1.5`) or an HTTP-date (IMF-fixdate,
///   RFC 850 or asctime). A date in the past means no wait: `Some(Duration::ZERO)`.
///
/// Malformed, negative or non-ASCII values are ignored (the next header is tried, then
/// `None`). Huge values, and values that would overflow, are clamped to [`MAX_RETRY_AFTER`].
/// Never panics. When a header appears several times, its first valid value counts.
pub fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    MILLISECOND_WAIT_HEADERS
        .iter()
        .find_map(|name| {
            headers
                .get_all(*name)
                .iter()
                .find_map(|value| parse_decimal(value_str(value)?, NANOS_PER_MILLI))
        })
        .or_else(|| {
            headers
                .get_all(RETRY_AFTER)
                .iter()
                .find_map(|value| parse_retry_after(value_str(value)?, now))
        })
}

/// The headers that give the wait in milliseconds, in the order they are read: the one list
/// for the retry policy and the quota governor.
const MILLISECOND_WAIT_HEADERS: [&str; 2] = ["retry-after-ms", "x-ms-retry-after-ms"];

/// The value without the whitespace around it: RFC 9110's OWS, spaces and tabs only (a
/// no-break space is not whitespace here, and `to_str` already refuses non-ASCII).
fn value_str(value: &HeaderValue) -> Option<&str> {
    value.to_str().ok().map(|v| v.trim_matches([' ', '\t']))
}

fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if value.starts_with(|c: char| c.is_ascii_digit()) {
        return parse_decimal(value, NANOS_PER_SEC);
    }
    if value.len() > MAX_DATE_LEN {
        return None;
    }
    let date = httpdate::parse_http_date(value).ok()?;
    // A date in the past is an error from `duration_since`: no wait.
    let wait = date.duration_since(now).unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

pub(crate) const NANOS_PER_SEC: u128 = 1_000_000_000;
pub(crate) const NANOS_PER_MILLI: u128 = 1_000_000;

/// `digits ["." digits]` counted in units of `unit_nanos`, clamped to [`MAX_RETRY_AFTER`].
pub(crate) fn parse_decimal(value: &str, unit_nanos: u128) -> Option<Duration> {
    let (whole, fraction) = match value.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (value, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !fraction.is_none_or(all_digits) {
        return None;
    }
    let cap = MAX_RETRY_AFTER.as_nanos();
    // Leading zeros aside, more than 20 digits overflows u64 and is far beyond the cap.
    let whole = whole.trim_start_matches('0');
    if whole.len() > 20 {
        return Some(MAX_RETRY_AFTER);
    }
    let whole: u128 = whole.bytes().fold(0, |n, b| n * 10 + u128::from(b - b'0'));
    // At most 18 fraction digits matter (finer than a nanosecond for either unit).
    let (mut numerator, mut denominator) = (0u128, 1u128);
    for b in fraction.unwrap_or("").bytes().take(18) {
        numerator = numerator * 10 + u128::from(b - b'0');
        denominator *= 10;
    }
    // whole < 10^20 and unit_nanos <= 10^9: the product fits in u128 (< 2^100).
    let nanos = whole * unit_nanos + numerator * unit_nanos / denominator;
    if nanos >= cap {
        return Some(MAX_RETRY_AFTER);
    }
    // nanos < cap < u64::MAX.
    Some(Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn delta_seconds_and_fractions() {
        let now = at(0);
        let cases = [
            ("0", Some(Duration::ZERO)),
            ("2", Some(Duration::from_secs(2))),
            ("002", Some(Duration::from_secs(2))),
            ("1.5", Some(Duration::from_millis(1500))),
            ("0.000000001", Some(Duration::from_nanos(1))),
            (" 7 ", Some(Duration::from_secs(7))),
            ("86400", Some(MAX_RETRY_AFTER)),
            ("86401", Some(MAX_RETRY_AFTER)),
            ("99999999999999999999999999999", Some(MAX_RETRY_AFTER)),
            ("-1", None),
            ("+1", None),
            ("1.", None),
            (".5", None),
            ("1e3", None),
            ("1.2.3", None),
            ("", None),
            ("soon", None),
        ];
        for (value, expected) in cases {
            let map = headers(&[("retry-after", value)]);
            assert_eq!(
                retry_after_at(&map, now),
                expected,
                "Retry-After: {value:?}"
            );
        }
    }

    #[test]
    fn only_spaces_and_tabs_surround_a_value() {
        let now = at(0);
        for value in [&b"\t7\t"[..], b" \t7", b"7 "] {
            let mut map = HeaderMap::new();
            let value = HeaderValue::from_bytes(value).unwrap_or_else(|e| panic!("{e}"));
            map.insert(RETRY_AFTER, value);
            assert_eq!(retry_after_at(&map, now), Some(Duration::from_secs(7)));
        }
        // RFC 9110 allows SP and HTAB around a value, nothing else: a no-break space (as
        // UTF-8) makes the value malformed, ignored (the fuzz oracle once expected 6 s).
        for value in ["6\u{a0}", "\u{a0}6", "6\u{2003}"] {
            let mut map = HeaderMap::new();
            let header =
                HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            map.insert(RETRY_AFTER, header.clone());
            map.insert("retry-after-ms", header);
            assert_eq!(retry_after_at(&map, now), None, "{value:?}");
        }
    }

    #[test]
    fn azure_milliseconds_header_is_honoured_after_retry_after_ms() {
        // Azure OpenAI sends `x-ms-retry-after-ms`; the quota governor always read it, the
        // retry policy (through this function) did not: one list of wait headers for both.
        let now = at(0);
        let azure = headers(&[("retry-after", "2"), ("x-ms-retry-after-ms", "1500")]);
        assert_eq!(
            retry_after_at(&azure, now),
            Some(Duration::from_millis(1500))
        );
        let both = headers(&[("x-ms-retry-after-ms", "1500"), ("retry-after-ms", "250")]);
        assert_eq!(retry_after_at(&both, now), Some(Duration::from_millis(250)));
    }

    #[test]
    fn milliseconds_win_and_fall_back() {
        let now = at(0);
        let both = headers(&[("retry-after", "2"), ("retry-after-ms", "250")]);
        assert_eq!(retry_after_at(&both, now), Some(Duration::from_millis(250)));
        let bad_ms = headers(&[("retry-after", "2"), ("retry-after-ms", "-250")]);
        assert_eq!(retry_after_at(&bad_ms, now), Some(Duration::from_secs(2)));
        let fraction = headers(&[("retry-after-ms", "0.5")]);
        assert_eq!(
            retry_after_at(&fraction, now),
            Some(Duration::from_micros(500))
        );
        let first_valid = headers(&[("retry-after", "x"), ("retry-after", "3")]);
        assert_eq!(
            retry_after_at(&first_valid, now),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn http_dates() {
        // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT
        let date = 784_111_777;
        for value in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            let map = headers(&[("retry-after", value)]);
            assert_eq!(
                retry_after_at(&map, at(date - 30)),
                Some(Duration::from_secs(30)),
                "{value}"
            );
            assert_eq!(retry_after_at(&map, at(date + 30)), Some(Duration::ZERO));
        }
        let far = headers(&[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")]);
        assert_eq!(retry_after_at(&far, at(0)), Some(MAX_RETRY_AFTER));
        let invalid = headers(&[("retry-after", "Sun, 31 Feb 1994 08:49:37 GMT")]);
        assert_eq!(retry_after_at(&invalid, at(0)), None);
    }

    #[test]
    fn non_ascii_values_are_ignored() {
        let mut map = HeaderMap::new();
        map.insert(
            "retry-after",
            HeaderValue::from_bytes(b"2\xff").expect("obs-text is a valid header value"),
        );
        assert_eq!(retry_after_at(&map, at(0)), None);
    }
}
