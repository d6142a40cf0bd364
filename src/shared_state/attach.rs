//! How a breaker is shared: the builder's `shared_state` door, and `SharedState` plugged into
//! the breaker's fleet port (`circuit_breaker` names none of this module).

use super::SharedState;
use super::sync::{spawn, tally};
use crate::circuit_breaker::{Builder, CircuitBreakerEvent, Fleet, FleetAttachment};
use crate::events::Listener;
use std::sync::Arc;

impl Builder {
    /// Shares this breaker's state with every breaker of the same name on the same store
    /// (its replicas in other processes): see [`crate::shared_state`]. `build` must then run
    /// inside a Tokio runtime, where it starts the breaker's sync task.
    #[cfg_attr(docsrs, doc(cfg(feature = "shared-state")))]
    pub fn shared_state(self, shared: SharedState) -> Self {
        self.fleet(Arc::new(shared))
    }
}

impl Fleet for SharedState {
    fn prepare(&self) -> FleetAttachment {
        // The tally counts the breaker's calls from its first one: a listener registered
        // before the breaker is built, then handed to its sync task.
        let tally = tally(self);
        let config = self.clone();
        FleetAttachment {
            listener: tally
                .clone()
                .map(|tally| tally as Arc<dyn Listener<CircuitBreakerEvent>>),
            attach: Box::new(move |breaker| spawn(breaker, config, tally)),
        }
    }
}
