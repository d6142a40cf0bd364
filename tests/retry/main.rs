//! Retry policy and backoff behaviour, with paused tokio time and seeded random numbers so that
//! every delay is exact; end-to-end tests against a real hyper server on 127.0.0.1.

#[path = "../support/mod.rs"]
mod support;

mod backoff;
mod cascade;
mod e2e;
mod harness;
mod http_rules;
mod llm;
mod policy;
