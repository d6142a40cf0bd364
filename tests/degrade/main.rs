//! Degrading gracefully, against real HTTP servers on 127.0.0.1: failover, fallback, cache,
//! hold-and-replay, keyed breakers, and the health endpoint.

#[path = "../support/mod.rs"]
mod support;

mod adversarial_failover;
mod adversarial_fallback;
mod adversarial_provider_error;
mod failover;
mod failover_http;
mod fallback;
mod health;
mod hold;
mod keyed;
mod provider;
mod provider_error;
mod upstream;
