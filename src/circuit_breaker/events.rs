use super::CircuitState;
use crate::Outcome;
use std::sync::Arc;
use std::time::Duration;

/// Something a circuit breaker did. Delivered to every [`Listener`](crate::events::Listener)
/// registered with [`Builder::on_event`](super::Builder::on_event); never built when there is none.
///
/// | what happened | event |
/// |---|---|
/// | a call was let through (for a service: when `call` makes it, not when `poll_ready` reserves it) | [`CallPermitted`](Self::CallPermitted) |
/// | a call was rejected | [`CallRejected`](Self::CallRejected) |
/// | a call succeeded, failed, or was ignored (or its permit dropped) | [`CallRecorded`](Self::CallRecorded), by `outcome` |
/// | a call was slow | [`CallRecorded`](Self::CallRecorded) with `slow: true` |
/// | the state changed | [`StateTransition`](Self::StateTransition) |
/// | [`reset`](super::CircuitBreaker::reset) | [`StateTransition`](Self::StateTransition), then [`Reset`](Self::Reset) |
/// | [`force_open`](super::CircuitBreaker::force_open), [`disable`](super::CircuitBreaker::disable), [`metrics_only`](super::CircuitBreaker::metrics_only) | [`StateTransition`](Self::StateTransition), then [`Forced`](Self::Forced) |
///
/// Listeners run on the thread that caused the event. Each transition is decided by one
/// compare-and-swap, but two transitions close together, won by two threads, can reach the
/// listeners in either order.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tower_breaker::Outcome;
/// use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitBreakerEvent, SlidingWindow};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let breaker = CircuitBreaker::builder("llm")
///     .sliding_window(SlidingWindow::consecutive(1))
///     .on_event(move |event: &CircuitBreakerEvent| {
///         let line = match event {
///             CircuitBreakerEvent::CallPermitted { state, .. } => format!("permitted ({state})"),
///             CircuitBreakerEvent::CallRecorded { outcome, .. } => format!("{outcome:?}"),
///             CircuitBreakerEvent::StateTransition { from, to, .. } => format!("{from} -> {to}"),
///             CircuitBreakerEvent::CallRejected { state, .. } => format!("rejected ({state})"),
///             CircuitBreakerEvent::Reset { .. } => "reset".to_string(),
///             other => format!("{other:?}"),
///         };
///         sink.lock().unwrap().push(line);
///     })
///     .build()?;
///
/// breaker.try_acquire().unwrap().record(Outcome::Failure);
/// assert!(breaker.try_acquire().is_err());
/// breaker.reset();
/// assert_eq!(*seen.lock().unwrap(), [
///     "permitted (closed)",
///     "closed -> open",
///     "Failure",
///     "rejected (open)",
///     "open -> closed",
///     "reset",
/// ]);
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
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
    /// A call was let through (it holds a [`Permit`](super::Permit)); its outcome follows as
    /// [`CallRecorded`](Self::CallRecorded).
    CallPermitted {
        /// The breaker's name.
        name: Arc<str>,
        /// The state that let it through: `Closed`, `MetricsOnly` or `Disabled`, or
        /// `HalfOpen` for a probe.
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
    /// The breaker was reset by hand ([`CircuitBreaker::reset`](super::CircuitBreaker::reset)):
    /// closed, with an empty window and a new generation. Follows its
    /// [`StateTransition`](Self::StateTransition).
    Reset {
        /// The breaker's name.
        name: Arc<str>,
    },
    /// The breaker was put in a manual state by hand:
    /// [`force_open`](super::CircuitBreaker::force_open) (`ForcedOpen`),
    /// [`disable`](super::CircuitBreaker::disable) (`Disabled`) or
    /// [`metrics_only`](super::CircuitBreaker::metrics_only) (`MetricsOnly`). Follows its
    /// [`StateTransition`](Self::StateTransition); not sent when it was already in that state.
    Forced {
        /// The breaker's name.
        name: Arc<str>,
        /// The state it was put in.
        state: CircuitState,
    },
}
