//! Property tests of the `Retry-After` parser: arbitrary input never panics and never gives a
//! wait beyond the cap, and neither does the breaker that uses it.

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use std::time::{Duration, SystemTime};
use tower_breaker::circuit_breaker::CircuitBreaker;
use tower_breaker::http::{MAX_RETRY_AFTER, retry_after, retry_after_at};

/// Up to the end of year 9999, the last instant an HTTP-date can name.
const MAX_NOW_SECS: u64 = 253_402_300_799;

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Anything at all.
        prop::collection::vec(any::<u8>(), 0..48),
        any::<String>().prop_map(String::into_bytes),
        // Things that look like numbers.
        "[-+ ]?[0-9]{0,30}(\\.[0-9]{0,30})?[ a-z]?".prop_map(String::into_bytes),
        // Things that look like dates.
        "(Mon|Tue|Sun|Fri), [0-9]{2} (Jan|Feb|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
            .prop_map(String::into_bytes),
        "(Sunday|Monday), [0-9]{2}-(Jan|Nov)-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
            .prop_map(String::into_bytes),
        "(Sun|Mon) (Jan|Nov) [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4}"
            .prop_map(String::into_bytes),
    ]
}

fn headers(seconds: Option<Vec<u8>>, millis: Option<Vec<u8>>) -> HeaderMap {
    let mut map = HeaderMap::new();
    // Bytes a header value cannot hold are rejected by `http`; those cases test nothing.
    if let Some(value) = seconds.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
        map.insert("retry-after", value);
    }
    if let Some(value) = millis.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
        map.insert("retry-after-ms", value);
    }
    map
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn never_panics_and_stays_within_the_cap(
        seconds in proptest::option::of(value()),
        millis in proptest::option::of(value()),
        now in 0..=MAX_NOW_SECS,
    ) {
        let map = headers(seconds, millis);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
        if let Some(wait) = retry_after_at(&map, now) {
            prop_assert!(wait <= MAX_RETRY_AFTER, "{wait:?} from {map:?}");
        }
        if let Some(wait) = retry_after(&map) {
            prop_assert!(wait <= MAX_RETRY_AFTER);
        }
    }

    #[test]
    fn whole_seconds_are_exact_up_to_the_cap(seconds in any::<u64>(), zeros in 0usize..3) {
        let value = format!("{}{seconds}", "0".repeat(zeros));
        let map = headers(Some(value.into_bytes()), None);
        let expected = Duration::from_secs(seconds).min(MAX_RETRY_AFTER);
        prop_assert_eq!(retry_after_at(&map, SystemTime::UNIX_EPOCH), Some(expected));
    }

    #[test]
    fn a_date_is_measured_from_now(date in 0..=MAX_NOW_SECS, now in 0..=MAX_NOW_SECS) {
        let date_time = SystemTime::UNIX_EPOCH + Duration::from_secs(date);
        let value = httpdate_fmt(date_time);
        let map = headers(Some(value.into_bytes()), None);
        let expected = Duration::from_secs(date.saturating_sub(now)).min(MAX_RETRY_AFTER);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
        prop_assert_eq!(retry_after_at(&map, now), Some(expected));
    }

    #[test]
    fn the_breakers_cool_down_stays_within_its_cap(
        seconds in proptest::option::of(value()),
        millis in proptest::option::of(value()),
        cap_secs in 1u64..=600,
    ) {
        let map = headers(seconds, millis);
        let cap = Duration::from_secs(cap_secs);
        let breaker = CircuitBreaker::builder("prop").max_retry_after(cap).build().unwrap();
        breaker.try_acquire().unwrap().record_rate_limited(retry_after(&map));
        let wait = breaker.try_acquire().unwrap_err().retry_after().unwrap();
        // The breaker keeps its deadlines in whole milliseconds, rounded up so that it never
        // lets a call through early: on a real clock the wait left can exceed the cap by less
        // than that millisecond.
        let bound = cap + Duration::from_millis(1);
        prop_assert!(wait <= bound, "{wait:?} > {bound:?}");
    }
}

/// IMF-fixdate, written here so the test does not trust the parser's own formatter.
fn httpdate_fmt(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (hour, min, sec) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year:04} {hour:02}:{min:02}:{sec:02} GMT",
        months[(month - 1) as usize]
    )
}
