//! The layer's service: admission in `poll_ready`, the queue, `max_wait`, FIFO order, and every
//! path that gives a slot (or a place in the queue) back.

use crate::{MAX_WAIT, bulkhead, counts};
use std::time::Duration;
use tokio::time::{self, Instant};
use tokio_test::{assert_pending, assert_ready, assert_ready_err, assert_ready_ok, task};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::BoxError;
use tower_breaker::bulkhead::{
    Bulkhead, BulkheadFull, BulkheadLayer, BulkheadService, BulkheadTimeout,
};
use tower_test::mock::{self, Mock, Spawn};

type Svc = BulkheadService<Mock<&'static str, &'static str>>;

/// A new caller: a clone of the layered mock (clones share the bulkhead, not reservations).
fn caller(svc: &Spawn<Svc>) -> Spawn<Svc> {
    Spawn::new(svc.get_ref().clone())
}

/// Takes `n` slots with calls whose responses are left pending; returns the response
/// channels and the futures.
async fn occupy(
    svc: &Spawn<Svc>,
    handle: &mut mock::Handle<&'static str, &'static str>,
    n: usize,
) -> Vec<(
    tokio_test::task::Spawn<<Svc as Service<&'static str>>::Future>,
    mock::SendResponse<&'static str>,
)> {
    let mut calls = Vec::new();
    for _ in 0..n {
        let mut c = caller(svc);
        assert_ready_ok!(c.poll_ready());
        let mut fut = task::spawn(c.call("busy"));
        assert_pending!(fut.poll());
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req, "busy");
        calls.push((fut, send));
    }
    calls
}

fn is<E: std::error::Error + 'static>(err: &BoxError) -> bool {
    err.is::<E>()
}

#[tokio::test(start_paused = true)]
async fn fail_fast_rejects_call_n_plus_one_at_once() {
    let bulkhead = bulkhead(3, 0);
    let (svc, mut handle) = mock::spawn_layer::<&'static str, &'static str, _>(bulkhead.layer());
    let _running = occupy(&svc, &mut handle, 3).await;
    assert_eq!(counts(&bulkhead), (3, 0, 0, 0));

    let start = Instant::now();
    let mut fourth = caller(&svc);
    // Ready, not `Err` (which would tell the caller to drop the service) and not `Pending`.
    assert_ready_ok!(fourth.poll_ready());
    let err = assert_ready_err!(task::spawn(fourth.call("rejected")).poll());
    let full = err.downcast_ref::<BulkheadFull>().expect("BulkheadFull");
    assert_eq!(full.name(), "test");
    assert_eq!((full.max_concurrent(), full.max_queue()), (3, 0));
    assert_eq!(Instant::now(), start, "rejected without waiting");
    assert_eq!(counts(&bulkhead), (3, 0, 1, 0));
    // The inner service saw the three admitted calls only.
    assert_pending!(handle.poll_request());
}

#[tokio::test(start_paused = true)]
async fn fail_fast_admits_again_once_a_slot_is_free() {
    let bulkhead = bulkhead(1, 0);
    let (svc, mut handle) = mock::spawn_layer::<&'static str, &'static str, _>(bulkhead.layer());
    let mut running = occupy(&svc, &mut handle, 1).await;
    let mut late = caller(&svc);
    assert_ready_ok!(late.poll_ready());
    assert!(is::<BulkheadFull>(&assert_ready_err!(
        task::spawn(late.call("x")).poll()
    )));

    let (mut fut, send) = running.pop().unwrap();
    send.send_response("done");
    assert_eq!(assert_ready_ok!(fut.poll()), "done");
    assert_eq!(counts(&bulkhead), (0, 0, 1, 0));
    assert_ready_ok!(late.poll_ready());
    let mut fut = task::spawn(late.call("again"));
    assert_pending!(fut.poll());
    assert_eq!(handle.next_request().await.unwrap().0, "again");
}

#[tokio::test(start_paused = true)]
async fn queue_admits_max_queue_waiters_then_rejects_with_full() {
    let bulkhead = bulkhead(1, 2);
    let (svc, mut handle) = mock::spawn_layer::<&'static str, &'static str, _>(bulkhead.layer());
    let _running = occupy(&svc, &mut handle, 1).await;

    let mut waiters: Vec<_> = (0..2).map(|_| caller(&svc)).collect();
    for w in &mut waiters {
        assert_pending!(w.poll_ready());
    }
    assert_eq!(counts(&bulkhead), (1, 2, 0, 0));

    let start = Instant::now();
    let mut third = caller(&svc);
    assert_ready_ok!(third.poll_ready());
    let err = assert_ready_err!(task::spawn(third.call("x")).poll());
    let full = err.downcast_ref::<BulkheadFull>().expect("BulkheadFull");
    assert_eq!((full.max_concurrent(), full.max_queue()), (1, 2));
    assert_eq!(
        full.to_string(),
        "bulkhead `test` is full (1 running, 2 waiting)"
    );
    assert_eq!(Instant::now(), start);
    assert_eq!(counts(&bulkhead), (1, 2, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn waiter_times_out_after_exactly_max_wait() {
    let bulkhead = bulkhead(1, 1);
    let (svc, mut handle) = mock::spawn_layer::<&'static str, &'static str, _>(bulkhead.layer());
    let _running = occupy(&svc, &mut handle, 1).await;

    let start = Instant::now();
    let mut waiter = caller(&svc);
    assert_pending!(waiter.poll_ready());
    time::advance(MAX_WAIT - Duration::from_millis(1)).await;
    assert_pending!(waiter.poll_ready());
    assert_eq!(counts(&bulkhead), (1, 1, 0, 0));

    time::advance(Duration::from_millis(1)).await;
    assert!(waiter.is_woken());
    assert_ready_ok!(waiter.poll_ready());
    assert_eq!(start.elapsed(), MAX_WAIT);
    // Gone from the queue as soon as it timed out, before `call`.
    assert_eq!(counts(&bulkhead), (1, 0, 0, 1));

    let err = assert_ready_err!(task::spawn(waiter.call("late")).poll());
    let timeout = err
        .downcast_ref::<BulkheadTimeout>()
        .expect("BulkheadTimeout");
    assert_eq!(timeout.name(), "test");
    assert_eq!(timeout.waited(), MAX_WAIT);
    assert_eq!(
        timeout.to_string(),
        "bulkhead `test`: no slot came free within 5.000s"
    );
    assert_pending!(handle.poll_request());
}

#[tokio::test(start_paused = true)]
async fn timeout_measured_by_the_clock_with_ready() {
    // The same through `ServiceExt::ready`, with the paused clock jumping to the deadline.
    let bulkhead = bulkhead(1, 1);
    let _held = bulkhead.try_acquire().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(bulkhead.layer())
        .service(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(is::<BulkheadTimeout>(&err));
    assert_eq!(start.elapsed(), MAX_WAIT);
}

#[tokio::test(start_paused = true)]
async fn a_slot_that_frees_before_the_deadline_admits_the_waiter() {
    let bulkhead = bulkhead(1, 1);
    let (svc, mut handle) = mock::spawn_layer::<&'static str, &'static str, _>(bulkhead.layer());
    let mut running = occupy(&svc, &mut handle, 1).await;
    let mut waiter = caller(&svc);
    assert_pending!(waiter.poll_ready());

    time::advance(Duration::from_secs(2)).await;
    let (mut fut, send) = running.pop().unwrap();
    send.send_response("done");
    assert_ready_ok!(fut.poll());
    assert!(waiter.is_woken());
    assert_ready_ok!(waiter.poll_ready());
    assert_eq!(counts(&bulkhead), (1, 0, 0, 0));

    // The old deadline passes: nothing changes, the slot stays admitted.
    time::advance(MAX_WAIT).await;
    assert_ready_ok!(waiter.poll_ready());
    let mut fut = task::spawn(waiter.call("admitted"));
    assert_pending!(fut.poll());
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, "admitted");
    send.send_response("ok");
    assert_eq!(assert_ready_ok!(fut.poll()), "ok");
    assert_eq!(counts(&bulkhead), (0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let bulkhead = bulkhead(1, 3);
    let (svc, mut handle) = mock::spawn_layer::<&'static str, &'static str, _>(bulkhead.layer());
    let mut running = occupy(&svc, &mut handle, 1).await;

    let mut b = caller(&svc);
    let mut c = caller(&svc);
    let mut d = caller(&svc);
    assert_pending!(b.poll_ready());
    assert_pending!(c.poll_ready());
    assert_pending!(d.poll_ready());

    // A slot comes free: it goes to B, the first in line, and to no one else.
    let (mut fut, send) = running.pop().unwrap();
    send.send_response("done");
    assert_ready_ok!(fut.poll());
    assert!(b.is_woken());
    assert!(!c.is_woken() && !d.is_woken());
    assert_pending!(d.poll_ready());
    assert_pending!(c.poll_ready());
    assert_ready_ok!(b.poll_ready());

    // A newcomer queues behind C and D instead of overtaking them.
    let mut e = caller(&svc);
    assert_pending!(e.poll_ready());
    assert!(
        bulkhead.try_acquire().is_err(),
        "try_acquire does not overtake"
    );
    assert_eq!(counts(&bulkhead), (1, 3, 1, 0));

    // Each finished call admits the next in line.
    let mut order = Vec::new();
    let mut pending = vec![("c", c), ("d", d), ("e", e)];
    let mut current = b;
    let mut name = "b";
    loop {
        let mut fut = task::spawn(current.call(name));
        assert_pending!(fut.poll());
        let (req, send) = handle.next_request().await.unwrap();
        order.push(req);
        send.send_response("ok");
        assert_ready_ok!(fut.poll());
        if pending.is_empty() {
            break;
        }
        // Only the head of the queue was handed the slot.
        for (_, w) in pending.iter_mut().skip(1) {
            assert_pending!(w.poll_ready());
        }
        let (next_name, mut next) = pending.remove(0);
        assert_ready_ok!(next.poll_ready());
        current = next;
        name = next_name;
    }
    assert_eq!(order, ["b", "c", "d", "e"]);
    assert_eq!(counts(&bulkhead), (0, 0, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn release_on_response() {
    let bulkhead = bulkhead(1, 0);
    let (mut svc, mut handle) =
        mock::spawn_layer::<&'static str, &'static str, _>(bulkhead.layer());
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(counts(&bulkhead).0, 1, "the slot is taken in poll_ready");
    let mut fut = task::spawn(svc.call("hello"));
    let (_, send) = handle.next_request().await.unwrap();
    assert_pending!(fut.poll());
    assert_eq!(counts(&bulkhead).0, 1);
    send.send_response("world");
    assert_eq!(assert_ready_ok!(fut.poll()), "world");
    assert_eq!(counts(&bulkhead), (0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn release_on_error() {
    let bulkhead = bulkhead(1, 0);
    let (mut svc, mut handle) =
        mock::spawn_layer::<&'static str, &'static str, _>(bulkhead.layer());
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call("hello"));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error("upstream failed");
    let err = assert_ready_err!(fut.poll());
    assert_eq!(err.to_string(), "upstream failed");
    assert!(!is::<BulkheadFull>(&err));
    assert_eq!(counts(&bulkhead), (0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn release_on_future_dropped_while_running() {
    let bulkhead = bulkhead(1, 0);
    let (mut svc, mut handle) =
        mock::spawn_layer::<&'static str, &'static str, _>(bulkhead.layer());
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call("hello"));
    assert_pending!(fut.poll());
    let _request = handle.next_request().await.unwrap();
    assert_eq!(counts(&bulkhead).0, 1);
    drop(fut);
    assert_eq!(counts(&bulkhead), (0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn release_on_future_dropped_while_queued() {
    let bulkhead = bulkhead(1, 2);
    let held = bulkhead.try_acquire().unwrap();
    let svc = ServiceBuilder::new()
        .layer(bulkhead.layer())
        .service(service_fn(|_: ()| async { Ok::<_, BoxError>("ok") }));
    // `oneshot` owns the service: dropping it while queued drops the wait.
    let mut first = task::spawn(svc.clone().oneshot(()));
    let mut second = task::spawn(svc.clone().oneshot(()));
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    assert_eq!(counts(&bulkhead), (1, 2, 0, 0));

    drop(first);
    assert_eq!(counts(&bulkhead), (1, 1, 0, 0), "left the queue at once");
    drop(held);
    // The slot went to the remaining waiter, not to the one that left.
    assert!(second.is_woken());
    assert_eq!(assert_ready_ok!(second.poll()), "ok");
    assert_eq!(counts(&bulkhead), (0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_leaves_after_being_handed_a_slot_gives_it_back() {
    let bulkhead = bulkhead(1, 1);
    let (svc, mut handle) = mock::spawn_layer::<&'static str, &'static str, _>(bulkhead.layer());
    let mut running = occupy(&svc, &mut handle, 1).await;
    let mut waiter = caller(&svc);
    assert_pending!(waiter.poll_ready());

    // The slot is handed to the waiter, which is dropped before it sees it.
    let (mut fut, send) = running.pop().unwrap();
    send.send_response("done");
    assert_ready_ok!(fut.poll());
    assert!(waiter.is_woken());
    drop(waiter);
    assert_eq!(counts(&bulkhead), (0, 0, 0, 0));

    // Nobody waits now: the slot is free for the next caller, without a wait.
    let permit = bulkhead.try_acquire().expect("the slot came back");
    drop(permit);
    let mut next = caller(&svc);
    assert_ready_ok!(next.poll_ready());
    assert_eq!(counts(&bulkhead), (1, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn release_on_service_dropped_holding_a_slot() {
    let bulkhead = bulkhead(1, 0);
    let (mut svc, _handle) = mock::spawn_layer::<&str, &str, _>(bulkhead.layer());
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(counts(&bulkhead).0, 1);
    drop(svc);
    assert_eq!(counts(&bulkhead), (0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn release_on_into_inner() {
    let bulkhead = bulkhead(1, 0);
    let (mut svc, _handle) = mock::spawn_layer::<&str, &str, _>(bulkhead.layer());
    assert_ready_ok!(svc.poll_ready());
    let _mock = svc.into_inner().into_inner();
    assert_eq!(counts(&bulkhead), (0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn release_on_service_dropped_while_queued() {
    let bulkhead = bulkhead(1, 1);
    let (svc, mut handle) = mock::spawn_layer::<&'static str, &'static str, _>(bulkhead.layer());
    let _running = occupy(&svc, &mut handle, 1).await;
    let mut waiter = caller(&svc);
    assert_pending!(waiter.poll_ready());
    assert_eq!(counts(&bulkhead), (1, 1, 0, 0));
    drop(waiter);
    assert_eq!(counts(&bulkhead), (1, 0, 0, 0));
    // Its place is free again.
    let mut next = caller(&svc);
    assert_pending!(next.poll_ready());
    assert_eq!(counts(&bulkhead), (1, 1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_bulkhead_but_not_the_slot() {
    let bulkhead = bulkhead(1, 1);
    let (mut svc, mut handle) =
        mock::spawn_layer::<&'static str, &'static str, _>(bulkhead.layer());
    assert_ready_ok!(svc.poll_ready());
    let mut clone = caller(&svc);
    assert_eq!(counts(&bulkhead).0, 1, "the clone holds no slot");
    assert_pending!(clone.poll_ready());
    assert_eq!(counts(&bulkhead), (1, 1, 0, 0));

    // The original uses its slot; when the call ends the clone gets it.
    let mut fut = task::spawn(svc.call("first"));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response("ok");
    assert_ready_ok!(fut.poll());
    assert_ready_ok!(clone.poll_ready());
    assert_eq!(counts(&bulkhead), (1, 0, 0, 0));

    // Two layers made from one bulkhead, and clones of the layer, share it too.
    let layer: BulkheadLayer = bulkhead.layer();
    let (mut other, _h) = mock::spawn_layer::<&str, &str, _>(layer.clone());
    assert_pending!(other.poll_ready());
    assert_eq!(counts(&bulkhead), (1, 1, 0, 0));
    let (mut third, _h) = mock::spawn_layer::<&str, &str, _>(layer);
    assert_ready_ok!(third.poll_ready());
    assert_ready_err!(task::spawn(third.call("x")).poll());
    assert_eq!(counts(&bulkhead), (1, 1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn inner_not_ready_keeps_the_slot_and_inner_error_releases_it() {
    let bulkhead = bulkhead(1, 0);
    let (mut svc, mut handle) = mock::spawn_layer::<&str, &str, _>(bulkhead.layer());
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    assert_eq!(
        counts(&bulkhead).0,
        1,
        "the slot is held while the inner service gets ready"
    );

    handle.send_error("inner broke");
    let err = assert_ready_err!(svc.poll_ready());
    assert_eq!(err.to_string(), "inner broke");
    assert_eq!(counts(&bulkhead), (0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn rejection_does_not_poll_the_inner_service() {
    let bulkhead = bulkhead(1, 0);
    let _held = bulkhead.try_acquire().unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<&str, &str, _>(bulkhead.layer());
    handle.send_error("would have been seen");
    assert_ready_ok!(svc.poll_ready());
    assert!(is::<BulkheadFull>(&assert_ready_err!(
        task::spawn(svc.call("x")).poll()
    )));
}

#[tokio::test(start_paused = true)]
async fn call_without_poll_ready_is_rejected_not_sent() {
    let bulkhead = bulkhead(1, 0);
    let (mut svc, mut handle) = mock::spawn_layer::<&str, &str, _>(bulkhead.layer());
    // The mock panics if called without `poll_ready`: the bulkhead must not call it.
    let err = assert_ready_err!(task::spawn(svc.call("x")).poll());
    assert!(is::<BulkheadFull>(&err));
    assert_pending!(handle.poll_request());
    assert_eq!(counts(&bulkhead), (0, 0, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_rejected_service_is_admitted_again_after_call() {
    let bulkhead = bulkhead(1, 0);
    let held = bulkhead.try_acquire().unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<&str, &str, _>(bulkhead.layer());
    assert_ready_ok!(svc.poll_ready());
    // Polling again does not count a second rejection.
    assert_ready_ok!(svc.poll_ready());
    assert_ready_err!(task::spawn(svc.call("x")).poll());
    assert_eq!(counts(&bulkhead), (1, 0, 1, 0));

    drop(held);
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call("y"));
    assert_pending!(fut.poll());
    assert_eq!(handle.next_request().await.unwrap().0, "y");
}

#[tokio::test(start_paused = true)]
async fn a_service_waits_again_after_a_timeout_reusing_its_wait() {
    let bulkhead = bulkhead(1, 1);
    let held = bulkhead.try_acquire().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(bulkhead.layer())
        .service(service_fn(|_: ()| async { Ok::<_, BoxError>("ok") }));
    for _ in 0..3 {
        let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
        assert!(is::<BulkheadTimeout>(&err));
    }
    assert_eq!(counts(&bulkhead), (1, 0, 0, 3));
    let mut waiting = task::spawn(async {
        let start = Instant::now();
        let answer = svc.ready().await.unwrap().call(()).await.unwrap();
        (answer, start.elapsed())
    });
    assert_pending!(waiting.poll());
    time::advance(Duration::from_secs(1)).await;
    drop(held);
    let (answer, waited) = assert_ready!(waiting.poll());
    assert_eq!(answer, "ok");
    assert_eq!(waited, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn the_service_and_its_future_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let bulkhead = bulkhead(1, 1);
    let mut svc = ServiceBuilder::new()
        .layer(bulkhead.layer())
        .service(service_fn(|_: ()| async { Ok::<_, BoxError>("ok") }));
    send_sync(&svc);
    let _held = bulkhead.try_acquire().unwrap();
    // Also while it waits (the boxed wait is Send + Sync).
    let mut ready = task::spawn(ServiceExt::<()>::ready(&mut svc));
    assert_pending!(ready.poll());
    drop(ready);
    send_sync(&svc);
    let fut = svc.call(());
    send_sync(&fut);
}

#[tokio::test(start_paused = true)]
async fn works_with_any_service_through_service_builder() {
    let bulkhead = Bulkhead::builder("echo").max_concurrent(2).build().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(bulkhead.layer())
        .service(service_fn(|s: String| async move {
            Ok::<_, std::io::Error>(s + "!")
        }));
    for i in 0..5 {
        let out = svc
            .ready()
            .await
            .unwrap()
            .call(i.to_string())
            .await
            .unwrap();
        assert_eq!(out, format!("{i}!"));
    }
    assert_eq!(counts(&bulkhead), (0, 0, 0, 0));
    assert_eq!(svc.bulkhead().name(), "echo");
}
