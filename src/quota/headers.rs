//! The providers' rate-limit headers, parsed exactly (feature `http`).
//!
//! | provider | headers | reset format |
//! |---|---|---|
//! | OpenAI (and Groq, Together, ... ) | `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` | a Go duration: `12ms`, `1s`, `6m0s`, `1h2m3.5s` (a plain number is seconds) |
//! | Anthropic | `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` | an RFC 3339 time: `2026-12-03T14:00:00Z`, `2026-12-03T15:00:00.5+01:00` |
//! | Azure OpenAI | `retry-after-ms`, `x-ms-retry-after-ms` (and the OpenAI headers) | milliseconds |
//! | any | `Retry-After` | seconds or an HTTP-date |
//!
//! Malformed values, negative numbers (Azure sends `-1` for "unknown") and non-ASCII bytes are
//! ignored, never an error: a header that cannot be read teaches nothing.

use super::{Budget, RateLimits};
use crate::http::retry_after::{NANOS_PER_SEC, parse_decimal};
use ::http::HeaderMap;
use std::time::{Duration, SystemTime};

/// The longest reset or wait this module returns: a day (longer is clamped to it), as
/// [`MAX_RETRY_AFTER`](crate::http::MAX_RETRY_AFTER).
pub const MAX_RESET: Duration = crate::http::MAX_RETRY_AFTER;

impl RateLimits {
    /// Reads every rate-limit header of `headers`, measuring RFC 3339 and HTTP-date times from
    /// the system clock; see [`from_headers_at`](Self::from_headers_at).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::from_headers_at(headers, SystemTime::now())
    }

    /// Reads every rate-limit header of `headers`, measuring absolute times from `now`.
    ///
    /// Anthropic's headers win over OpenAI's for the same budget when a response has both.
    /// The wait after a 429 is `retry-after-ms`, then `x-ms-retry-after-ms`, then
    /// `Retry-After`.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use http::HeaderMap;
    /// use tower_breaker::quota::RateLimits;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-ratelimit-limit-requests", "60".parse()?);
    /// headers.insert("x-ratelimit-remaining-requests", "59".parse()?);
    /// headers.insert("x-ratelimit-reset-requests", "1s".parse()?);
    /// headers.insert("x-ratelimit-limit-tokens", "150000".parse()?);
    /// headers.insert("x-ratelimit-remaining-tokens", "149984".parse()?);
    /// headers.insert("x-ratelimit-reset-tokens", "6m0s".parse()?);
    /// let limits = RateLimits::from_headers_at(&headers, SystemTime::now());
    /// assert_eq!(limits.requests.limit, Some(60));
    /// assert_eq!(limits.requests.reset, Some(Duration::from_secs(1)));
    /// assert_eq!(limits.tokens.remaining, Some(149_984));
    /// assert_eq!(limits.tokens.reset, Some(Duration::from_secs(360)));
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_headers_at(headers: &HeaderMap, now: SystemTime) -> Self {
        let openai = |kind: &str| Budget {
            limit: number(headers, &format!("x-ratelimit-limit-{kind}")),
            remaining: number(headers, &format!("x-ratelimit-remaining-{kind}")),
            reset: text(headers, &format!("x-ratelimit-reset-{kind}"))
                .and_then(|v| parse_go_duration(v).or_else(|| parse_seconds(v)).map(clamp)),
        };
        let anthropic = |kind: &str| Budget {
            limit: number(headers, &format!("anthropic-ratelimit-{kind}-limit")),
            remaining: number(headers, &format!("anthropic-ratelimit-{kind}-remaining")),
            reset: text(headers, &format!("anthropic-ratelimit-{kind}-reset"))
                .and_then(parse_rfc3339)
                .map(|at| clamp(at.duration_since(now).unwrap_or(Duration::ZERO))),
        };
        let retry_after = crate::http::retry_after_at(headers, now);
        RateLimits {
            requests: anthropic("requests").or(openai("requests")),
            tokens: anthropic("tokens").or(openai("tokens")),
            input_tokens: anthropic("input-tokens"),
            output_tokens: anthropic("output-tokens"),
            retry_after: retry_after.map(clamp),
        }
    }
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    let value = text(headers, name)?;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn clamp(d: Duration) -> Duration {
    d.min(MAX_RESET)
}

fn parse_seconds(value: &str) -> Option<Duration> {
    parse_decimal(value, NANOS_PER_SEC)
}

/// A Go duration (`time.Duration.String()` and `time.ParseDuration`), as OpenAI sends its
/// resets: one or more `number unit` pairs, units `h`, `m`, `s`, `ms`, `us` (or `µs`), `ns`,
/// numbers with an optional fraction; `0` alone is zero. Signs are refused (a negative reset
/// means nothing), and so is a value over `u64::MAX` nanoseconds. Exact to the nanosecond
/// (fractions below are truncated, as Go does).
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::quota::parse_go_duration;
///
/// assert_eq!(parse_go_duration("12ms"), Some(Duration::from_millis(12)));
/// assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
/// assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
/// assert_eq!(parse_go_duration("1h2m3.5s"), Some(Duration::from_millis(3_723_500)));
/// assert_eq!(parse_go_duration("soon"), None);
/// ```
pub fn parse_go_duration(value: &str) -> Option<Duration> {
    if value == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = value;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return None;
        }
        let whole = whole.trim_start_matches('0');
        if whole.len() > 20 {
            return None;
        }
        let whole: u128 = whole.bytes().fold(0, |n, b| n * 10 + u128::from(b - b'0'));
        let (mut num, mut den) = (0u128, 1u128);
        for b in fraction.bytes().take(20) {
            num = num * 10 + u128::from(b - b'0');
            den *= 10;
        }
        // whole < 10^20 and unit <= 3.6 * 10^12: below 2^114; num < 10^20 likewise.
        total = total.checked_add(whole * unit_nanos + num * unit_nanos / den)?;
        if total > u128::from(u64::MAX) {
            return None;
        }
        rest = next;
    }
    // Checked above.
    Some(Duration::from_nanos(u64::try_from(total).ok()?))
}

/// Formats `d` as Go's `time.Duration.String()` does (`1h2m3.5s`, `12ms`, `1.5µs`, `0s`);
/// [`parse_go_duration`] reads it back exactly. Durations over `u64::MAX` nanoseconds are
/// formatted as that.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return "0s".to_owned();
    }
    let fraction = |value: u64, unit: u64| -> String {
        let (whole, rest) = (value / unit, value % unit);
        if rest == 0 {
            return whole.to_string();
        }
        let width = unit.ilog10() as usize;
        let digits = format!("{rest:0width$}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", fraction(nanos, 1_000_000));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = nanos / 60_000_000_000 % 60;
    let seconds = fraction(nanos % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// An RFC 3339 date-time (`2026-12-03T14:00:00Z`, `2026-12-03T15:00:00.123456789+01:00`), as
/// Anthropic sends its resets: `T`, `t` or a space between date and time, `Z`, `z` or a
/// `±hh:mm` offset, up to nanosecond fractions (finer digits truncated), a leap second read
/// as the second after `:59`. Refuses anything else, and impossible dates (February 30th).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_breaker::quota::parse_rfc3339;
///
/// let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_770_400);
/// assert_eq!(parse_rfc3339("2025-12-03T14:00:00Z"), Some(at));
/// assert_eq!(parse_rfc3339("2025-12-03T15:00:00+01:00"), Some(at));
/// assert_eq!(
///     parse_rfc3339("2025-12-03T14:00:00.25Z"),
///     Some(at + Duration::from_millis(250))
/// );
/// assert_eq!(parse_rfc3339("2025-02-30T14:00:00Z"), None);
/// ```
pub fn parse_rfc3339(value: &str) -> Option<SystemTime> {
    let b = value.as_bytes();
    if b.len() < 20 || b.len() > 64 || !value.is_ascii() {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = b.get(range)?;
        if s.iter().all(u8::is_ascii_digit) {
            Some(s.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
        } else {
            None
        }
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset_secs = match b.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = h * 3600 + m * 60;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let whole = Duration::from_secs(secs.unsigned_abs());
    let at = if secs >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(whole)?
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(whole)?
    };
    // 0 <= nanos < 10^9.
    at.checked_add(Duration::from_nanos(nanos.unsigned_abs()))
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar (Howard
/// Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01 (the inverse of [`days_from_civil`]).
#[cfg(test)]
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Formats `at` (seconds since the epoch, nanoseconds) in RFC 3339 at the offset `offset_min`
/// minutes east of UTC, with `fraction_digits` (0 to 9) digits of the second.
#[cfg(test)]
fn format_rfc3339(secs: i64, nanos: u32, offset_min: i64, fraction_digits: usize) -> String {
    let local = secs + offset_min * 60;
    let (days, tod) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    );
    if fraction_digits > 0 {
        let digits = format!("{nanos:09}");
        out.push('.');
        out.push_str(&digits[..fraction_digits]);
    }
    if offset_min == 0 {
        out.push('Z');
    } else {
        let sign = if offset_min > 0 { '+' } else { '-' };
        let off = offset_min.abs();
        out.push_str(&format!("{sign}{:02}:{:02}", off / 60, off % 60));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::HeaderValue;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn epoch(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn go_durations_parse_exactly() {
        let ms = Duration::from_millis;
        let cases = [
            ("12ms", Some(ms(12))),
            ("1s", Some(ms(1000))),
            ("6m0s", Some(ms(360_000))),
            ("1h2m3.5s", Some(ms(3_723_500))),
            ("0s", Some(Duration::ZERO)),
            ("0", Some(Duration::ZERO)),
            ("9ms", Some(ms(9))),
            ("2m59.56s", Some(ms(179_560))),
            ("1.5µs", Some(Duration::from_nanos(1500))),
            ("1.5us", Some(Duration::from_nanos(1500))),
            ("7ns", Some(Duration::from_nanos(7))),
            (".5s", Some(ms(500))),
            ("1.s", Some(ms(1000))),
            ("0.0000000019s", Some(Duration::from_nanos(1))),
            ("1h1h", Some(Duration::from_secs(7200))),
            ("", None),
            ("s", None),
            (".s", None),
            ("1", None),
            ("-1s", None),
            ("+1s", None),
            ("1d", None),
            ("1 s", None),
            ("1.2.3s", None),
            ("18446744073709551616ns", None),
            ("99999999999999999999999h", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_go_duration(value), expected, "{value:?}");
        }
    }

    #[test]
    fn go_durations_format_as_go_does() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::from_nanos(1500), "1.5µs"),
            (Duration::from_millis(12), "12ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_millis(3_723_500), "1h2m3.5s"),
            (Duration::from_secs(7200), "2h0m0s"),
        ];
        for (d, text) in cases {
            assert_eq!(format_go_duration(d), text);
        }
    }

    #[test]
    fn rfc3339_times_parse_exactly() {
        // 2025-12-03T14:00:00Z
        let at = epoch(1_764_770_400);
        let ns = Duration::from_nanos;
        let cases = [
            ("2025-12-03T14:00:00Z", Some(at)),
            ("2025-12-03t14:00:00z", Some(at)),
            ("2025-12-03 14:00:00Z", Some(at)),
            ("2025-12-03T15:30:00+01:30", Some(at)),
            ("2025-12-03T09:00:00-05:00", Some(at)),
            ("2025-12-03T14:00:00+00:00", Some(at)),
            ("2025-12-03T14:00:00-00:00", Some(at)),
            ("2025-12-03T14:00:00.5Z", Some(at + ns(500_000_000))),
            ("2025-12-03T14:00:00.123456789Z", Some(at + ns(123_456_789))),
            (
                "2025-12-03T14:00:00.1234567891Z",
                Some(at + ns(123_456_789)),
            ),
            ("2025-12-03T15:00:00.000001+01:00", Some(at + ns(1_000))),
            ("2025-12-03T13:59:60Z", Some(at)),
            ("1970-01-01T00:00:00Z", Some(SystemTime::UNIX_EPOCH)),
            ("2024-02-29T00:00:00Z", Some(epoch(1_709_164_800))),
            ("2025-02-29T00:00:00Z", None),
            ("2025-12-03T24:00:00Z", None),
            ("2025-12-03T14:00:00", None),
            ("2025-12-03T14:00:00.Z", None),
            ("2025-12-03T14:00:00+0100", None),
            ("2025-12-03T14:00:00+24:00", None),
            ("2025-13-03T14:00:00Z", None),
            ("2025-12-03T14:00Z", None),
            ("2025-12-03", None),
            ("２025-12-03T14:00:00Z", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_rfc3339(value), expected, "{value:?}");
        }
    }

    #[test]
    fn openai_headers() {
        let map = headers(&[
            ("x-ratelimit-limit-requests", "5000"),
            ("x-ratelimit-remaining-requests", "4999"),
            ("x-ratelimit-reset-requests", "12ms"),
            ("x-ratelimit-limit-tokens", "160000"),
            ("x-ratelimit-remaining-tokens", "159976"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        let limits = RateLimits::from_headers_at(&map, epoch(0));
        assert_eq!(
            limits.requests,
            Budget {
                limit: Some(5000),
                remaining: Some(4999),
                reset: Some(Duration::from_millis(12)),
            }
        );
        assert_eq!(
            limits.tokens,
            Budget {
                limit: Some(160_000),
                remaining: Some(159_976),
                reset: Some(Duration::from_secs(360)),
            }
        );
        assert_eq!(limits.retry_after, None);
        assert!(!limits.is_empty());
    }

    #[test]
    fn anthropic_headers_measure_resets_from_now() {
        let map = headers(&[
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-requests-reset", "2025-12-03T14:00:01Z"),
            ("anthropic-ratelimit-tokens-limit", "80000"),
            ("anthropic-ratelimit-tokens-remaining", "79000"),
            (
                "anthropic-ratelimit-tokens-reset",
                "2025-12-03T15:00:00.5+01:00",
            ),
            ("anthropic-ratelimit-input-tokens-limit", "40000"),
            ("anthropic-ratelimit-output-tokens-remaining", "7000"),
            ("retry-after", "3"),
        ]);
        let limits = RateLimits::from_headers_at(&map, epoch(1_764_770_400));
        assert_eq!(limits.requests.reset, Some(Duration::from_secs(1)));
        assert_eq!(limits.requests.remaining, Some(49));
        assert_eq!(limits.tokens.reset, Some(Duration::from_millis(500)));
        assert_eq!(limits.input_tokens.limit, Some(40_000));
        assert_eq!(limits.output_tokens.remaining, Some(7_000));
        assert_eq!(limits.retry_after, Some(Duration::from_secs(3)));
        // A reset in the past is "now".
        let later = RateLimits::from_headers_at(&map, epoch(1_764_780_000));
        assert_eq!(later.requests.reset, Some(Duration::ZERO));
    }

    #[test]
    fn azure_waits_and_unknown_values() {
        let map = headers(&[
            ("x-ms-retry-after-ms", "1500"),
            ("retry-after", "2"),
            ("x-ratelimit-limit-tokens", "-1"),
            ("x-ratelimit-remaining-tokens", "-1"),
            ("x-ratelimit-reset-tokens", "0"),
        ]);
        let limits = RateLimits::from_headers_at(&map, epoch(0));
        assert_eq!(limits.retry_after, Some(Duration::from_millis(1500)));
        assert_eq!(limits.tokens.limit, None);
        assert_eq!(limits.tokens.remaining, None);
        assert_eq!(limits.tokens.reset, Some(Duration::ZERO));
        let both = headers(&[("retry-after-ms", "250"), ("x-ms-retry-after-ms", "1500")]);
        assert_eq!(
            RateLimits::from_headers_at(&both, epoch(0)).retry_after,
            Some(Duration::from_millis(250))
        );
        let seconds = headers(&[("x-ratelimit-reset-tokens", "7")]);
        assert_eq!(
            RateLimits::from_headers_at(&seconds, epoch(0)).tokens.reset,
            Some(Duration::from_secs(7))
        );
        assert!(RateLimits::from_headers_at(&HeaderMap::new(), epoch(0)).is_empty());
    }

    proptest! {
        #[test]
        fn go_durations_round_trip(nanos in any::<u64>()) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_go_duration(&format_go_duration(d)), Some(d));
        }

        #[test]
        fn go_durations_of_whole_units_round_trip(h in 0u64..1000, m in 0u64..60, ms in 0u64..60_000) {
            let text = format!("{h}h{m}m{}.{:03}s", ms / 1000, ms % 1000);
            let expected = Duration::from_millis(((h * 60 + m) * 60) * 1000 + ms);
            prop_assert_eq!(parse_go_duration(&text), Some(expected));
        }

        #[test]
        fn rfc3339_round_trips_at_any_offset(
            secs in -62_135_596_800i64..253_402_300_799,
            nanos in 0u32..1_000_000_000,
            offset in -(23 * 60 + 59)..=(23 * 60 + 59i64),
            digits in 0usize..=9,
        ) {
            let text = format_rfc3339(secs, nanos, offset, digits);
            // Only the digits written count.
            let kept = u64::from(nanos) / 10u64.pow(9 - digits as u32) * 10u64.pow(9 - digits as u32);
            let whole = Duration::from_secs(secs.unsigned_abs());
            let base = if secs >= 0 {
                SystemTime::UNIX_EPOCH + whole
            } else {
                SystemTime::UNIX_EPOCH - whole
            };
            // The formatted local time may fall outside years 0..=9999 at an extreme offset.
            prop_assume!(text.len() >= 20 && text.as_bytes()[4] == b'-');
            prop_assert_eq!(parse_rfc3339(&text), Some(base + Duration::from_nanos(kept)), "{}", text);
        }

        #[test]
        fn civil_days_round_trip(days in -1_000_000i64..1_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        #[test]
        fn header_parsing_never_panics(value in "\\PC{0,40}") {
            let _ = parse_go_duration(&value);
            let _ = parse_rfc3339(&value);
            let _ = parse_decimal(&value, crate::http::retry_after::NANOS_PER_MILLI);
        }
    }
}
