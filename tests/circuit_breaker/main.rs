//! Circuit breaker behaviour, with paused tokio time so every expectation is exact.

#[path = "../support/mod.rs"]
mod support;

mod config;
mod expiry;
mod half_open;
mod manual;
mod model;
mod outage;
mod rate_limit;
mod regressions;
mod reservations;
mod rules;
mod service;
