use super::CircuitState;
use crate::Outcome;
use std::sync::Arc;
use std::time::Duration;

/// Something a circuit breaker did. Delivered to every [`Listener`](crate::events::Listener)
/// registered with [`Builder::on_event`](super::Builder::on_event); never built when there is none.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CircuitBreakerEvent {
    /// The breaker moved from one state to another (automatically or by a manual control).
    StateTransition {
        /// The breaker's name.
        name: Arc<str>,
        /// The state it left.
        from: CircuitState,
        /// The state it entered.
        to: CircuitState,
    },
    /// A call was rejected without reaching the upstream.
    CallRejected {
        /// The breaker's name.
        name: Arc<str>,
        /// The state that rejected it.
        state: CircuitState,
    },
    /// A permitted call finished and was recorded (or dropped as stale).
    CallRecorded {
        /// The breaker's name.
        name: Arc<str>,
        /// How it counted.
        outcome: Outcome,
        /// Whether it was slower than `slow_call_duration`.
        slow: bool,
        /// How long it took, when the breaker measures it (slow-call rule set).
        elapsed: Option<Duration>,
    },
}
