//! Events to listeners.

use crate::{MAX_WAIT, Recorder};
use std::time::Duration;
use tokio::time;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::BoxError;
use tower_breaker::bulkhead::{Bulkhead, BulkheadEvent, RejectionReason};

/// The events in a short form: ("permitted", waited ms) / ("rejected full") / ...
fn short(events: Vec<BulkheadEvent>) -> Vec<String> {
    events
        .into_iter()
        .map(|e| match e {
            BulkheadEvent::CallPermitted { name, waited } => {
                assert_eq!(&*name, "events");
                format!("permitted after {}ms", waited.as_millis())
            }
            BulkheadEvent::CallRejected { name, reason } => {
                assert_eq!(&*name, "events");
                format!("rejected: {reason}")
            }
            BulkheadEvent::CallFinished { name } => {
                assert_eq!(&*name, "events");
                "finished".to_string()
            }
            BulkheadEvent::CallQueued { name } => {
                assert_eq!(&*name, "events");
                "queued".to_string()
            }
            BulkheadEvent::CallLeftQueue { name } => {
                assert_eq!(&*name, "events");
                "left queue".to_string()
            }
            other => panic!("unexpected event {other:?}"),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn every_event_in_order() {
    let recorder = Recorder::default();
    let bulkhead = Bulkhead::builder("events")
        .max_concurrent(1)
        .max_queue(1)
        .max_wait(MAX_WAIT)
        .on_event(recorder.listener())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(bulkhead.layer())
        .service(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));

    // Permitted at once, then finished.
    svc.ready().await.unwrap().call(()).await.unwrap();
    // Waited 2 s for a slot.
    let held = bulkhead.try_acquire().unwrap();
    let mut waiting = task::spawn(svc.clone().oneshot(()));
    assert_pending!(waiting.poll());
    // Full while one waits.
    assert!(bulkhead.try_acquire().is_err());
    time::advance(Duration::from_secs(2)).await;
    drop(held);
    assert_ready_ok!(waiting.poll());
    // Timed out.
    let _held = bulkhead.try_acquire().unwrap();
    assert!(svc.ready().await.unwrap().call(()).await.is_err());

    assert_eq!(
        short(recorder.take()),
        [
            "permitted after 0ms",
            "finished",
            "permitted after 0ms",
            "queued",
            "rejected: full",
            "finished",
            "left queue",
            "permitted after 2000ms",
            "finished",
            "permitted after 0ms",
            "queued",
            "left queue",
            "rejected: timeout",
        ]
    );
}

#[test]
fn rejection_reason_names() {
    assert_eq!(RejectionReason::Full.as_str(), "full");
    assert_eq!(RejectionReason::Timeout.to_string(), "timeout");
}
