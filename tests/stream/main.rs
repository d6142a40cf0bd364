//! Streamed LLM calls on paused time: first-token and idle deadlines, completion rules, failover
//! before the first token, hedging, and the SSE parser against a reference.

mod adaptive;
mod adversarial_hedge;
mod adversarial_stream;
mod chaos_upstream;
mod failover;
mod guard;
mod hedge;
#[cfg(feature = "stack")]
mod llm_stack;
mod recover;
mod sse;
// The shared chaos upstream (an axum app with a `ChaosLayer` in front).
#[path = "../support/mod.rs"]
mod support;
mod upstream;
