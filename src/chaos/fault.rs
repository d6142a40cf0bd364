//! The faults a [`ChaosLayer`](super::ChaosLayer) can inject, and the scripted [`FaultPlan`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// One fault. Build it with the constructors ([`Fault::error`], [`Fault::latency`], and with
/// feature `http` [`Fault::status`], [`Fault::rate_limited`], [`Fault::cut_after`], ...), then
/// give it to [`ChaosBuilder::inject`](super::ChaosBuilder::inject) with an injection rate, or
/// to a [`FaultPlan`] step.
///
/// Values are checked when the layer is built: a bad latency range, status code or header
/// is a [`ConfigError`](crate::ConfigError) naming it.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum Fault {
    /// The call fails with a [`ChaosError`](super::ChaosError) carrying this message; the
    /// inner service is not called.
    Error(Arc<str>),
    /// The call waits this long (a random value in `min ..= max`) before it goes on. Latency
    /// adds up with the other faults: a slow 503 is a latency and a status fault together.
    Latency {
        /// The shortest delay.
        min: Duration,
        /// The longest delay (equal to `min` for a fixed delay).
        max: Duration,
    },
    /// An HTTP answer with this status, headers and body; the inner service is not called.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    Status(StatusFault),
    /// The inner service answers, and its (SSE) response body is altered on its way back.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    Stream(StreamFault),
}

impl Fault {
    /// The call fails with a [`ChaosError`](super::ChaosError) saying `message`.
    pub fn error(message: impl Into<String>) -> Fault {
        Fault::Error(Arc::from(message.into()))
    }

    /// A fixed delay before the call goes on.
    pub fn latency(delay: Duration) -> Fault {
        Fault::Latency {
            min: delay,
            max: delay,
        }
    }

    /// A delay drawn uniformly from `min ..= max` in whole milliseconds past `min` (tokio's
    /// timer resolution), with the layer's seeded generator.
    pub fn latency_between(min: Duration, max: Duration) -> Fault {
        Fault::Latency { min, max }
    }

    /// What kind of fault this is, as reported in events and metrics.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Error(_) => FaultKind::Error,
            Fault::Latency { .. } => FaultKind::Latency,
            #[cfg(feature = "http")]
            Fault::Status(_) => FaultKind::Status,
            #[cfg(feature = "http")]
            Fault::Stream(stream) => stream.kind(),
        }
    }

    /// True for the faults only the HTTP layer can apply.
    pub(crate) fn needs_http(&self) -> bool {
        !matches!(self, Fault::Error(_) | Fault::Latency { .. })
    }
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Error(message) => f.debug_tuple("Error").field(message).finish(),
            Fault::Latency { min, max } if min == max => {
                f.debug_tuple("Latency").field(min).finish()
            }
            Fault::Latency { min, max } => f
                .debug_struct("Latency")
                .field("min", min)
                .field("max", max)
                .finish(),
            #[cfg(feature = "http")]
            Fault::Status(status) => status.fmt(f),
            #[cfg(feature = "http")]
            Fault::Stream(stream) => stream.fmt(f),
        }
    }
}

/// The kind of an injected fault, for events and the `fault` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// [`Fault::Error`].
    Error,
    /// [`Fault::Latency`].
    Latency,
    /// [`Fault::Status`] (feature `http`).
    Status,
    /// [`StreamFault::StallBeforeFirstByte`].
    StallBeforeFirstByte,
    /// [`StreamFault::StallAfter`].
    StallMidStream,
    /// [`StreamFault::Cut`].
    Cut,
    /// [`StreamFault::Trickle`].
    Trickle,
    /// [`StreamFault::KeepaliveOnly`].
    KeepaliveOnly,
}

impl FaultKind {
    /// The kind in `snake_case`, as used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Error => "error",
            FaultKind::Latency => "latency",
            FaultKind::Status => "status",
            FaultKind::StallBeforeFirstByte => "stall_before_first_byte",
            FaultKind::StallMidStream => "stall_mid_stream",
            FaultKind::Cut => "cut",
            FaultKind::Trickle => "trickle",
            FaultKind::KeepaliveOnly => "keepalive_only",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "http")]
pub(crate) use self::http_faults::http_value;
#[cfg(feature = "http")]
pub use self::http_faults::{RateLimit, StatusFault, StreamFault};

#[cfg(feature = "http")]
mod http_faults {
    use super::{Fault, FaultKind};
    use std::time::Duration;

    /// An HTTP answer the upstream never gave: a status, headers and a short body. Made by
    /// [`Fault::status`] and the presets [`Fault::rate_limited`],
    /// [`Fault::service_unavailable`] and [`Fault::overloaded`]; add headers with
    /// [`header`](Self::header) and the provider rate-limit families with
    /// [`openai_limits`](Self::openai_limits) / [`anthropic_limits`](Self::anthropic_limits).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_breaker::chaos::{Fault, RateLimit};
    ///
    /// // OpenAI's 429: Retry-After, retry-after-ms and the x-ratelimit-* family.
    /// let fault = Fault::rate_limited(Some(Duration::from_secs(2)))
    ///     .openai_limits(RateLimit::new(60, 0, Duration::from_secs(2)), RateLimit::new(90_000, 12, Duration::from_millis(800)));
    /// # let _ = fault;
    /// ```
    #[derive(Debug, Clone, PartialEq)]
    pub struct StatusFault {
        pub(crate) status: u16,
        pub(crate) headers: Vec<(String, HeaderText)>,
        pub(crate) body: String,
    }

    /// A header value: fixed, or computed when the fault fires (a reset time).
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) enum HeaderText {
        Fixed(String),
        /// RFC 3339 time this long after the answer (Anthropic's `*-reset` headers).
        ResetAt(Duration),
    }

    /// The text of a header when its fault fires.
    pub(crate) fn http_value(value: &HeaderText) -> String {
        match value {
            HeaderText::Fixed(text) => text.clone(),
            HeaderText::ResetAt(after) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                rfc3339(now + *after)
            }
        }
    }

    /// One rate-limit window as providers report it: the limit, what remains, and when it
    /// resets. Used by [`StatusFault::openai_limits`] and [`StatusFault::anthropic_limits`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct RateLimit {
        /// The limit in the window (requests or tokens).
        pub limit: u64,
        /// What is left of it.
        pub remaining: u64,
        /// How long until it is full again.
        pub reset: Duration,
    }

    impl RateLimit {
        /// A window with `limit`, `remaining` and `reset`.
        pub fn new(limit: u64, remaining: u64, reset: Duration) -> Self {
            Self {
                limit,
                remaining,
                reset,
            }
        }
    }

    impl StatusFault {
        /// Adds a header (checked when the layer is built).
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.headers
                .push((name.into(), HeaderText::Fixed(value.into())));
            self
        }

        /// Replaces the body (sent as `application/json`).
        pub fn body(mut self, json: impl Into<String>) -> Self {
            self.body = json.into();
            self
        }

        /// OpenAI's rate-limit headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`,
        /// resets written as OpenAI does (`1s`, `6m0s`, `20ms`).
        pub fn openai_limits(self, requests: RateLimit, tokens: RateLimit) -> Self {
            let mut fault = self;
            for (suffix, window) in [("requests", requests), ("tokens", tokens)] {
                fault = fault
                    .header(
                        format!("x-ratelimit-limit-{suffix}"),
                        window.limit.to_string(),
                    )
                    .header(
                        format!("x-ratelimit-remaining-{suffix}"),
                        window.remaining.to_string(),
                    )
                    .header(
                        format!("x-ratelimit-reset-{suffix}"),
                        go_duration(window.reset),
                    );
            }
            fault
        }

        /// Anthropic's rate-limit headers: `anthropic-ratelimit-{requests,tokens}-{limit,
        /// remaining,reset}`, resets as RFC 3339 times computed when the fault fires.
        pub fn anthropic_limits(mut self, requests: RateLimit, tokens: RateLimit) -> Self {
            for (prefix, window) in [("requests", requests), ("tokens", tokens)] {
                self = self
                    .header(
                        format!("anthropic-ratelimit-{prefix}-limit"),
                        window.limit.to_string(),
                    )
                    .header(
                        format!("anthropic-ratelimit-{prefix}-remaining"),
                        window.remaining.to_string(),
                    );
                self.headers.push((
                    format!("anthropic-ratelimit-{prefix}-reset"),
                    HeaderText::ResetAt(window.reset),
                ));
            }
            self
        }

        /// The status code.
        pub fn status(&self) -> u16 {
            self.status
        }
    }

    impl From<StatusFault> for Fault {
        fn from(fault: StatusFault) -> Fault {
            Fault::Status(fault)
        }
    }

    /// What happens to a streamed (SSE) response body. The body is read as SSE events (each
    /// ends with a blank line, whatever the line breaks: `\n\n`, `\r\n\r\n` or `\r\r`);
    /// counts are in events.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum StreamFault {
        /// The response head arrives, then nothing for this long before the first byte.
        StallBeforeFirstByte(Duration),
        /// After `events` events, nothing for `stall`, then the rest.
        StallAfter {
            /// Events passed before the stall.
            events: usize,
            /// How long the stream stalls.
            stall: Duration,
        },
        /// After `events` events the stream ends without its terminal event (`data: [DONE]`,
        /// `event: message_stop`): cleanly, or with a body error when `reset` (a connection
        /// reset as a client sees it). A terminal event is dropped even when it comes sooner.
        Cut {
            /// Events passed before the cut.
            events: usize,
            /// End with an error rather than a clean end of stream.
            reset: bool,
        },
        /// One event per `interval` (a slow token rate).
        Trickle(Duration),
        /// The response head, then only `: keepalive` comments every `interval`, forever: the
        /// upstream's own events never arrive.
        KeepaliveOnly(Duration),
    }

    impl StreamFault {
        pub(crate) fn kind(&self) -> FaultKind {
            match self {
                StreamFault::StallBeforeFirstByte(_) => FaultKind::StallBeforeFirstByte,
                StreamFault::StallAfter { .. } => FaultKind::StallMidStream,
                StreamFault::Cut { .. } => FaultKind::Cut,
                StreamFault::Trickle(_) => FaultKind::Trickle,
                StreamFault::KeepaliveOnly(_) => FaultKind::KeepaliveOnly,
            }
        }
    }

    impl From<StreamFault> for Fault {
        fn from(fault: StreamFault) -> Fault {
            Fault::Stream(fault)
        }
    }

    /// OpenAI's JSON error body.
    fn openai_error(message: &str, kind: &str, code: &str) -> String {
        format!(
            r#"{{"error":{{"message":"{message}","type":"{kind}","param":null,"code":"{code}"}}}}"#
        )
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    impl Fault {
        /// An HTTP answer with `status` and an OpenAI-style JSON error body. Add headers with
        /// [`StatusFault::header`]; an invalid status or header is a
        /// [`ConfigError`](crate::ConfigError) when the layer is built.
        pub fn status(status: u16) -> StatusFault {
            StatusFault {
                status,
                headers: Vec::new(),
                body: openai_error("injected by tower-breaker chaos", "server_error", "chaos"),
            }
        }

        /// `429 Too Many Requests`, with `Retry-After` (whole seconds, rounded up) and
        /// `retry-after-ms` when `retry_after` is given, and OpenAI's rate-limit error body.
        pub fn rate_limited(retry_after: Option<Duration>) -> StatusFault {
            let fault = Fault::status(429).body(openai_error(
                "Rate limit reached for requests",
                "requests",
                "rate_limit_exceeded",
            ));
            match retry_after {
                Some(wait) => {
                    let ms = wait.as_millis();
                    fault
                        .header("retry-after", ms.div_ceil(1000).to_string())
                        .header("retry-after-ms", ms.to_string())
                }
                None => fault,
            }
        }

        /// `503 Service Unavailable` with OpenAI's "overloaded" error body.
        pub fn service_unavailable() -> StatusFault {
            Fault::status(503).body(openai_error(
                "The server is overloaded or not ready yet.",
                "server_error",
                "service_unavailable",
            ))
        }

        /// Anthropic's `529` with its `overloaded_error` body.
        pub fn overloaded() -> StatusFault {
            Fault::status(529).body(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            )
        }

        /// [`StreamFault::StallBeforeFirstByte`].
        pub fn stall_before_first_byte(stall: Duration) -> Fault {
            Fault::Stream(StreamFault::StallBeforeFirstByte(stall))
        }

        /// [`StreamFault::StallAfter`].
        pub fn stall_after(events: usize, stall: Duration) -> Fault {
            Fault::Stream(StreamFault::StallAfter { events, stall })
        }

        /// [`StreamFault::Cut`] with a clean end of stream.
        pub fn cut_after(events: usize) -> Fault {
            Fault::Stream(StreamFault::Cut {
                events,
                reset: false,
            })
        }

        /// [`StreamFault::Cut`] ending with a body error (a reset connection).
        pub fn reset_after(events: usize) -> Fault {
            Fault::Stream(StreamFault::Cut {
                events,
                reset: true,
            })
        }

        /// [`StreamFault::Trickle`].
        pub fn trickle(interval: Duration) -> Fault {
            Fault::Stream(StreamFault::Trickle(interval))
        }

        /// [`StreamFault::KeepaliveOnly`].
        pub fn keepalive_only(interval: Duration) -> Fault {
            Fault::Stream(StreamFault::KeepaliveOnly(interval))
        }
    }

    /// A duration as OpenAI writes its resets (Go's `time.Duration` format): `20ms`, `1s`,
    /// `1.5s`, `6m0s`, `1h2m3s`.
    pub(crate) fn go_duration(d: Duration) -> String {
        let ms = d.as_millis();
        if ms < 1000 {
            return format!("{ms}ms");
        }
        let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
        let (m, rest) = (rest / 60_000, rest % 60_000);
        let (s, frac) = (rest / 1000, rest % 1000);
        let seconds = if frac == 0 {
            format!("{s}s")
        } else {
            let frac = format!("{frac:03}");
            format!("{s}.{}s", frac.trim_end_matches('0'))
        };
        match (h, m) {
            (0, 0) => seconds,
            (0, m) => format!("{m}m{seconds}"),
            (h, m) => format!("{h}h{m}m{seconds}"),
        }
    }

    /// `at` (seconds and nanoseconds since the Unix epoch) as RFC 3339 in UTC, to the second.
    pub(crate) fn rfc3339(since_epoch: Duration) -> String {
        let secs = since_epoch.as_secs();
        let (days, rest) = (secs / 86_400, secs % 86_400);
        let (hh, mm, ss) = (rest / 3600, rest % 3600 / 60, rest % 60);
        // Howard Hinnant's civil_from_days.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn resets_are_written_as_openai_writes_them() {
            assert_eq!(go_duration(Duration::from_millis(20)), "20ms");
            assert_eq!(go_duration(Duration::from_secs(1)), "1s");
            assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
            assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
            assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        }

        #[test]
        fn reset_times_are_rfc3339() {
            assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00Z");
            assert_eq!(
                rfc3339(Duration::from_secs(1_704_067_199)),
                "2023-12-31T23:59:59Z"
            );
            assert_eq!(
                rfc3339(Duration::from_secs(951_782_400)),
                "2000-02-29T00:00:00Z"
            );
        }
    }
}

/// A fixed sequence of faults, one step per request, for tests that need an exact story:
/// "503, 503, 429 with `Retry-After: 2`, then healthy".
///
/// Requests take the steps in order (the `n`th request the layer lets through gets step
/// `n`); after the last step the layer's random faults apply (none: healthy), or the plan
/// starts over with [`cycle`](Self::cycle).
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::chaos::{Fault, FaultPlan};
///
/// let plan = FaultPlan::new()
///     .then_times(2, Fault::service_unavailable())
///     .then(Fault::rate_limited(Some(Duration::from_secs(2))))
///     .then_healthy(1)
///     .then_all([Fault::latency(Duration::from_millis(300)), Fault::cut_after(3)]);
/// assert_eq!(plan.len(), 5);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    pub(crate) steps: Vec<Vec<Fault>>,
    pub(crate) cycle: bool,
}

impl FaultPlan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next request gets `fault`.
    pub fn then(self, fault: impl Into<Fault>) -> Self {
        self.then_all([fault.into()])
    }

    /// The next `n` requests each get `fault`.
    pub fn then_times(mut self, n: usize, fault: impl Into<Fault>) -> Self {
        let fault = fault.into();
        self.steps.extend(std::iter::repeat_n(vec![fault], n));
        self
    }

    /// The next request gets every fault of `faults` (latency and a status, say).
    pub fn then_all(mut self, faults: impl IntoIterator<Item = Fault>) -> Self {
        self.steps.push(faults.into_iter().collect());
        self
    }

    /// The next `n` requests go through untouched.
    pub fn then_healthy(mut self, n: usize) -> Self {
        self.steps.extend(std::iter::repeat_n(Vec::new(), n));
        self
    }

    /// After the last step, start over from the first.
    pub fn cycle(mut self) -> Self {
        self.cycle = true;
        self
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True when the plan has no step.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}
