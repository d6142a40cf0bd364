//! Fault injection (`tower_breaker::chaos`): injection rates over many requests, seeded
//! reproduction, scripted plans, HTTP statuses with rate-limit headers, and streamed-body
//! faults against the mock upstream on 127.0.0.1. Paused tokio time throughout.

#[path = "../support/mod.rs"]
mod support;

mod adversarial_chaos;
mod config;
mod http;
mod model;
mod rates;
#[cfg(feature = "reqwest")]
mod reqwest_client;
mod service;
mod stream;
