//! Bulkhead behaviour, with paused tokio time so every expectation is exact (the stress test,
//! on a multi-thread runtime, checks only exact accounting, never timing).

mod adversarial_adaptive;
mod config;
mod events;
mod handle;
#[cfg(feature = "http")]
mod http;
mod service;
mod stress;

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower_breaker::bulkhead::{Bulkhead, BulkheadEvent, BulkheadMetrics};

/// A bulkhead with `slots` slots, `queue` places and a 5 s maximum wait.
pub(crate) fn bulkhead(slots: u32, queue: u32) -> Bulkhead {
    Bulkhead::builder("test")
        .max_concurrent(slots)
        .max_queue(queue)
        .max_wait(MAX_WAIT)
        .build()
        .expect("valid config")
}

pub(crate) const MAX_WAIT: Duration = Duration::from_secs(5);

/// (active, queued, rejected_full, rejected_timeout)
pub(crate) fn counts(bulkhead: &Bulkhead) -> (u32, u32, u64, u64) {
    let BulkheadMetrics {
        active,
        queued,
        rejected_full,
        rejected_timeout,
        ..
    } = bulkhead.metrics();
    (active, queued, rejected_full, rejected_timeout)
}

/// Records every event of a bulkhead, in order.
#[derive(Clone, Default)]
pub(crate) struct Recorder(Arc<Mutex<Vec<BulkheadEvent>>>);

impl Recorder {
    pub(crate) fn listener(&self) -> impl Fn(&BulkheadEvent) + Send + Sync + 'static {
        let events = self.0.clone();
        move |event: &BulkheadEvent| events.lock().unwrap().push(event.clone())
    }

    pub(crate) fn take(&self) -> Vec<BulkheadEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}
