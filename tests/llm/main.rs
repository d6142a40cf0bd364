//! The LLM caller's golden path, end to end: reqwest against the OpenAI-compatible mock
//! upstream on 127.0.0.1 (`tests/support/upstream.rs`, scripted by fault plans), through the
//! README's "Calling an LLM API" program.

#[path = "../support/mod.rs"]
mod support;

mod golden;
#[cfg(feature = "reqwest-middleware")]
mod middleware;
mod reqwest_helpers;
