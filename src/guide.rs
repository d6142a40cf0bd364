//! Guides: the depth behind the README, one page per subject. Their Rust blocks are doc tests,
//! so they cannot drift from the API. The sources are `docs/guide/*.md` in the repository.
//!
//! - [`stack`]: a breaker in front of any service, the standard stack in one call, and the
//!   order of the layers, with the reasons for it.
//! - [`llm`]: calling an LLM API: the SDKs' retry rules, 429 cool-downs, streaming,
//!   async-openai, `reqwest-middleware`, clients that are not tower services.
//! - [`breaker`]: what the breaker does (windows, thresholds, half-open probes, defaults,
//!   sharing) and how responses are classified.
//! - [`retry`]: retries that don't make outages worse.
//! - [`observability`]: events, tracing, `metrics` and OpenTelemetry.
//! - [`streaming`]: time-to-first-token and idle deadlines, cut streams, hedging.
//! - [`degrade`]: fallbacks, failover across providers, one breaker per model.
//! - [`chaos`]: fault injection.
//! - [`axum`]: errors as responses in axum, and `/health`.
//! - [`shared_state`]: breakers shared across replicas through Redis.
//! - [`quota`]: request and token budgets, and a concurrency limit that finds the provider's
//!   capacity.
//! - [`settings`]: every builder's settings from TOML / YAML / JSON / env, errors with paths.
//! - [`performance`]: how it compares with its peers, the benchmarks, the reliability tests,
//!   and how it is built.
//! - [`examples`]: the runnable programs in `examples/`.

#[doc = include_str!("../docs/guide/stack.md")]
pub mod stack {}

#[doc = include_str!("../docs/guide/llm.md")]
pub mod llm {}

#[doc = include_str!("../docs/guide/breaker.md")]
pub mod breaker {}

#[doc = include_str!("../docs/guide/retry.md")]
pub mod retry {}

#[doc = include_str!("../docs/guide/observability.md")]
pub mod observability {}

#[doc = include_str!("../docs/guide/streaming.md")]
pub mod streaming {}

#[doc = include_str!("../docs/guide/degrade.md")]
pub mod degrade {}

#[doc = include_str!("../docs/guide/chaos.md")]
pub mod chaos {}

#[doc = include_str!("../docs/guide/axum.md")]
pub mod axum {}

#[doc = include_str!("../docs/guide/shared_state.md")]
pub mod shared_state {}

#[doc = include_str!("../docs/guide/quota.md")]
pub mod quota {}

#[doc = include_str!("../docs/guide/settings.md")]
pub mod settings {}

#[doc = include_str!("../docs/guide/performance.md")]
pub mod performance {}

#[doc = include_str!("../docs/guide/examples.md")]
pub mod examples {}
