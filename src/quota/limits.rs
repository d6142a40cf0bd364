//! What a provider reports about its limits: one [`Budget`] per kind, in [`RateLimits`].

use std::time::Duration;

/// One budget as a provider reports it. Every field is `None` when its header is missing or
/// unreadable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Budget {
    /// The most the window allows.
    pub limit: Option<u64>,
    /// What is left of it.
    pub remaining: Option<u64>,
    /// How long until it is full again.
    pub reset: Option<Duration>,
}

impl Budget {
    /// A budget of `limit` with `remaining` left, full again in `reset`.
    pub fn new(limit: Option<u64>, remaining: Option<u64>, reset: Option<Duration>) -> Self {
        Self {
            limit,
            remaining,
            reset,
        }
    }

    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.limit.is_none() && self.remaining.is_none() && self.reset.is_none()
    }

    /// `self`, or `other` when `self` knows nothing.
    pub fn or(self, other: Budget) -> Budget {
        if self.is_empty() { other } else { self }
    }
}

/// What a provider's answer says about its limits: read from headers with
/// [`RateLimits::from_headers`] (feature `http`), or filled in by hand for other transports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimits {
    /// Requests per window.
    pub requests: Budget,
    /// Tokens per window (Anthropic: the most restrictive of its token limits).
    pub tokens: Budget,
    /// Anthropic's input-token budget.
    pub input_tokens: Budget,
    /// Anthropic's output-token budget.
    pub output_tokens: Budget,
    /// How long the provider asked to wait (`retry-after-ms`, `x-ms-retry-after-ms`,
    /// `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl RateLimits {
    /// True when no header was found.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.tokens.is_empty()
            && self.input_tokens.is_empty()
            && self.output_tokens.is_empty()
            && self.retry_after.is_none()
    }

    /// The token budget the governor follows: `tokens`, or else `input_tokens`.
    pub(super) fn token_budget(&self) -> Budget {
        self.tokens.or(self.input_tokens)
    }

    /// How long a 429 with these limits asks to pause: the wait asked for, or the reset of an
    /// exhausted budget; at most a day ([`MAX_DURATION`](crate::config::MAX_DURATION)): a longer
    /// wait is a unit mistake or a hostile header, and would overflow the clock at `u64::MAX`
    /// seconds.
    pub(super) fn pause(&self) -> Option<Duration> {
        self.pause_asked()
            .map(|pause| pause.min(crate::config::MAX_DURATION))
    }

    fn pause_asked(&self) -> Option<Duration> {
        self.retry_after.or_else(|| {
            [
                self.requests,
                self.tokens,
                self.input_tokens,
                self.output_tokens,
            ]
            .iter()
            .filter(|b| b.remaining == Some(0))
            .filter_map(|b| b.reset)
            .max()
        })
    }
}
