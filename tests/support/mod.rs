//! Helpers shared by the test binaries.
#![allow(dead_code)]

use std::time::Duration;
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::CircuitBreaker;

/// Makes `n` calls through `breaker`, each recorded with `outcome`. Panics if one is rejected.
pub fn record(breaker: &CircuitBreaker, outcome: Outcome, n: usize) {
    for i in 0..n {
        breaker
            .try_acquire()
            .unwrap_or_else(|e| panic!("call {i} of {n} rejected: {e}"))
            .record(outcome);
    }
}

/// Records a sequence written as a string: `F` failure, `S` success, `I` ignored.
pub fn script(breaker: &CircuitBreaker, calls: &str) {
    for (i, c) in calls.chars().enumerate() {
        let outcome = match c {
            'F' => Outcome::Failure,
            'S' => Outcome::Success,
            'I' => Outcome::Ignored,
            other => panic!("unknown call {other:?}"),
        };
        breaker
            .try_acquire()
            .unwrap_or_else(|e| panic!("call {i} ({c}) of {calls:?} rejected: {e}"))
            .record(outcome);
    }
}

/// Moves paused tokio time forward.
pub async fn advance(d: Duration) {
    tokio::time::advance(d).await;
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// The mock LLM upstream (OpenAI-compatible and Anthropic-style, SSE), driven by fault plans.
#[cfg(all(feature = "chaos", feature = "http"))]
pub mod upstream;
