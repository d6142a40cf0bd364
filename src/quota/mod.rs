//! Staying under a provider's quota: request and token budgets per key (provider, model, API
//! key), learned from the provider's rate-limit headers or set by hand; a call that would not
//! fit waits (at most `max_wait`) or is rejected with the time until it would fit.
//!
//! LLM providers limit requests **and tokens** per minute, and tell you where you stand on
//! every answer (OpenAI's `x-ratelimit-*`, Anthropic's `anthropic-ratelimit-*`). A
//! [`Quota`] reads those headers (feature `http`, see [`RateLimits`]), keeps one pair of
//! budgets per key, and paces calls so that they arrive when the provider has room: a 429 is
//! prevented instead of handled.
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::quota::{Quota, QuotaExceeded, QuotaLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! // Requests are (model, prompt). At most 2 requests and 1,000 tokens a minute per model.
//! let quota = Quota::<String>::builder("openai")
//!     .requests_per_window(2)
//!     .tokens_per_window(1_000)
//!     .max_wait(Duration::from_secs(10))
//!     .build()?;
//! let layer = QuotaLayer::new(quota.clone(), |req: &(String, String)| req.0.clone())
//!     // The estimate of a call's tokens: prompt plus the most the answer may take.
//!     .cost(|req: &(String, String)| req.1.len() as u64 / 4 + 200);
//! let mut client = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|(_, prompt): (String, String)| async move {
//!         Ok::<_, std::io::Error>(format!("echo: {prompt}"))
//!     }));
//!
//! let call = |prompt: &str| ("gpt".to_string(), prompt.to_string());
//! client.ready().await?.call(call("hi")).await?;
//! client.ready().await?.call(call("hi")).await?;
//! // The third request of the minute would wait 30 s, longer than `max_wait`:
//! let err = client.ready().await?.call(call("hi")).await.unwrap_err();
//! let exceeded = err.downcast_ref::<QuotaExceeded>().expect("a quota rejection");
//! assert_eq!(exceeded.retry_after(), Duration::from_secs(30));
//! # Ok(())
//! # }
//! ```
//!
//! # How it decides
//!
//! - **Budgets** are token buckets that refill continuously, `limit` units per `window`
//!   (default one minute: the providers' RPM and TPM), as the providers' own limits do. A key
//!   has a request budget and a token budget; an unknown limit admits everything.
//! - **A call** costs one request and its estimated tokens (from the [cost
//!   function](QuotaLayer::cost); 0 by default). When both fit it goes at once. When they fit
//!   within `max_wait`, the call takes its share now and waits until the refill has paid it
//!   back: waiting calls go in arrival order, and none is overtaken. Otherwise it fails at once
//!   with [`QuotaExceeded`], which says when the call would fit. A call that costs more than
//!   a whole limit never fits: it fails at once whatever `max_wait`, takes nothing, and its
//!   error says so ([`QuotaExceeded::never_fits`]).
//! - **Before a waiting call goes** it checks the key again: a pause after a 429, a lower
//!   limit or a lower level learned since it was admitted move its turn (a call that would
//!   then go after its `max_wait`, or that costs more than a lower limit, fails with
//!   [`QuotaExceeded`] and gives its share back). So
//!   a 10 s `retry-after` costs one 429, not one per call already waiting.
//! - **Headers** (with [`HttpHeaders`], or [`QuotaPermit::observe`]) set the limits (unless set
//!   by hand) and the remaining budget: the provider's `remaining`, less what this governor
//!   admitted since the call that reported it (which the provider had not seen yet). A report
//!   older than the one the level was last set from (a long answer that started earlier) does
//!   not set it.
//! - **Usage**: the estimate is corrected when the answer says what the call really used
//!   ([`Observation::usage`], [`QuotaPermit::record_usage`], [`Quota::reconcile`]).
//! - **A 429** (or 529) cost no tokens at the provider: the call's estimate goes back to the
//!   budget (its request still counts, as providers count rejected requests). It pauses the
//!   key for the provider's `retry-after-ms`, `x-ms-retry-after-ms` or `Retry-After`, or else
//!   until the exhausted budget resets.
//! - **Every change counts once**: a refund (a call cancelled while it waits), a 429 or a usage
//!   report changes what its own call is charged, and so only the reports of calls admitted
//!   before it; a report of a later call has counted the real charge already.
//!
//! # The estimate
//!
//! The token estimate must count what the provider counts, or the governor admits a little
//! more than there is and the difference comes back as 429s near the limit. OpenAI-style
//! limits count the prompt as the model sees it (the chat format adds a few tokens to every
//! message and to the reply: about 3 each in OpenAI's own token-counting guide) plus
//! `max_tokens`, the most the answer may take, when the call is admitted. So estimate
//! `prompt_tokens + messages × 3 + 3 + max_tokens`, not `prompt_tokens + max_tokens` alone
//! (with the latter, one governor measured against llmock got 5.8 % 429s at 99.9 % of a token
//! limit, against 0.3 % with an exact estimate). The usage an answer reports corrects the charge afterwards
//! ([`Observation::usage`]); it cannot correct an estimate below what the provider charged at
//! admission.
//!
//! # Where it goes in a stack
//!
//! Inside the retries: with the standard stack (`StandardResilience::builder(..).llm()`,
//! feature `stack`), the quota layer wraps the client and the stack wraps the quota layer.
//! Then every attempt, retries too, is paced and observed, and a retry after a 429 waits out
//! the key's pause (measured against llmock, a mock of OpenAI's and Anthropic's limits: 6.2 %
//! 429s, against 11.6 % with the quota outside the stack, where the retries of one governed
//! call go out unpaced). Keep `max_wait` under the
//! stack's attempt timeout, which the wait counts against.
//!
//! # Many replicas, one quota
//!
//! A quota belongs to an API key, not to a process. With
//! [`Builder::shared_state`] (feature `shared-state`), the budgets live in a
//! [`QuotaStore`](crate::shared_state::QuotaStore) ([`MemoryStore`](crate::shared_state::MemoryStore)
//! in tests, [`RedisStore`](crate::shared_state::RedisStore) in production, one atomic Lua
//! script per call), so all replicas together stay within one quota. The store is then on
//! the call's path (one round trip per admission); if it fails, a replica falls back to its
//! local budgets, with a warning. The store's levels follow the provider: every replica's
//! reports lower them to the `remaining` reported (less what that replica admitted since),
//! never raise them, so a fleet that starts on a busy key (or after the store forgot it: a
//! flush, an expiry, where the store starts full) is held back from the first answer. A
//! 429's pause is kept per replica.
//!
//! # Cost
//!
//! One mutex over the keys' budgets, taken to admit a call, once more when a waiting call's
//! turn comes, to learn from its answer and to let the call go; no allocation for a key
//! already seen (a change to a call's charge is logged only while a call admitted before it
//! is alive). Calls to LLM APIs take hundreds of milliseconds; this takes a few hundred
//! nanoseconds. With a store, each answer that reports a `remaining` adds one store
//! operation, in the background.

mod bucket;
mod builder;
mod error;
mod events;
pub mod future;
mod governor;
#[cfg(feature = "http")]
mod headers;
mod keys;
mod layer;
mod ledger;
mod limits;
mod permit;
mod shared;
#[cfg(feature = "shared-state")]
mod store;
#[cfg(test)]
mod tests;

pub use self::builder::Builder;
pub use self::error::{Exhausted, QuotaExceeded};
pub use self::events::QuotaEvent;
pub use self::governor::{Quota, QuotaSnapshot};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::headers::{MAX_RESET, format_go_duration, parse_go_duration, parse_rfc3339};
pub use self::layer::{
    EstimateCost, NoCost, NoObservation, Observation, ObserveResponse, QuotaLayer, QuotaService,
};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::layer::{HttpHeaders, NoUsage};
pub use self::limits::{Budget, RateLimits};
pub use self::permit::QuotaPermit;
