//! Durations in settings files: `"30s"`, `"250ms"`, `"1m"`, `"1.5s"`.

use serde::Deserializer;
use serde::de::{self, Visitor};
use std::fmt;
use std::time::Duration;

/// What a duration looks like, in every error about one.
const EXPECTED: &str = "a duration such as \"30s\", \"250ms\", \"1m\" or \"1.5s\"";

/// Parses a duration written as a decimal number and a unit: `ns`, `us`, `ms`, `s`, `m`, `h`
/// or `d` (`"30s"`, `"250ms"`, `"1.5s"`, `"2 m"`). Negative, unitless and unknown values are
/// errors that say what was expected; so is a value over `u64::MAX` seconds.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::settings::parse_duration;
///
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(parse_duration("-5s").unwrap_err().contains("negative"));
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!(
            "{text:?} is a negative duration; expected {EXPECTED}"
        ));
    }
    let number_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let unit_nanos: u128 = match unit.trim() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "" => return Err(format!("{text:?} has no unit; expected {EXPECTED}")),
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?}; expected {EXPECTED}"
            ));
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) {
        return Err(format!(
            "{text:?} is not a number with a unit; expected {EXPECTED}"
        ));
    }
    let too_long = || format!("{text:?} is too long a duration");
    let whole: u128 = whole.parse().map_err(|_| too_long())?;
    // Nine fractional digits are a nanosecond of a second; beyond 18 nothing is left of them.
    let fraction = &fraction[..fraction.len().min(18)];
    let fraction_nanos = match fraction {
        "" => 0,
        digits => {
            // At most 18 digits: fits in a u128, and `10^18 * 86_400e9` does too.
            let value: u128 = digits.parse().map_err(|_| too_long())?;
            value * unit_nanos / 10u128.pow(digits.len() as u32)
        }
    };
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(fraction_nanos))
        .ok_or_else(too_long)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    // The remainder of a division by 10^9 fits in a u32.
    let subsec = (nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, subsec))
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Duration, E> {
        parse_duration(value).map_err(E::custom)
    }
}

/// `deserialize_with` for a required duration field.
pub(crate) fn required<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_str(DurationVisitor)
}

/// `deserialize_with` for an optional duration field (with `#[serde(default)]`).
pub(crate) fn optional<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    required(deserializer).map(Some)
}

/// `deserialize_with` for a setter that takes an `Option<Duration>` (with `#[serde(default)]`):
/// `"none"` is `Some(None)`, a duration `Some(Some(_))`, a missing key `None`.
pub(crate) fn optional_or_none<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<Duration>>, D::Error> {
    struct OrNone;

    impl Visitor<'_> for OrNone {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{EXPECTED}, or \"none\"")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Option<Duration>, E> {
            match value.trim() {
                "none" => Ok(None),
                _ => parse_duration(value).map(Some).map_err(E::custom),
            }
        }
    }

    deserializer.deserialize_str(OrNone).map(Some)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn units_and_fractions_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 2 h "), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0.001ms"), Ok(Duration::from_nanos(1000)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_are_errors_that_say_why() {
        for (text, why) in [
            ("-5s", "negative"),
            ("30", "no unit"),
            ("5 parsecs", "unknown unit"),
            ("s", "not a number"),
            (".5s", "not a number"),
            ("1.2.3s", "not a number"),
            ("", "no unit"),
            ("99999999999999999999999999999999999999999d", "too long"),
            ("999999999999999999999d", "too long"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn whole_milliseconds_round_trip(ms in 0u64..=u64::MAX / 1_000_000) {
            proptest::prop_assert_eq!(parse_duration(&format!("{ms}ms")), Ok(Duration::from_millis(ms)));
        }

        #[test]
        fn no_string_panics(text in ".{0,40}") {
            let _ = parse_duration(&text);
        }
    }
}
