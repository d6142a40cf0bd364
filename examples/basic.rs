//! A flaky upstream behind a circuit breaker: watch it trip, fail fast, probe and recover.
//!
//! ```text
//! cargo run --example basic
//! ```
//!
//! The upstream (an in-process service) is healthy for 1 s, down for 2 s (every call fails
//! after 50 ms), then healthy again. A caller sends a request every 20 ms through the breaker
//! and a timeout. The output is the breaker's state timeline and how many calls reached the
//! upstream while it was down, against how many the caller sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerEvent, CircuitOpen, SlidingWindow,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let breaker = CircuitBreaker::builder("upstream")
        .sliding_window(SlidingWindow::count_based(10))
        .minimum_calls(5)
        .failure_rate_threshold(0.5)
        .wait_in_open(Duration::from_millis(400))
        .permitted_calls_in_half_open(2)
        .on_event(move |event: &CircuitBreakerEvent| {
            if let CircuitBreakerEvent::StateTransition { from, to, .. } = event {
                println!("{:>6} ms  {from} -> {to}", start.elapsed().as_millis());
            }
        })
        .build()?;

    let reached_while_down = Arc::new(AtomicUsize::new(0));
    let reached = reached_while_down.clone();
    let upstream = service_fn(move |_prompt: &'static str| {
        let reached = reached.clone();
        async move {
            let t = start.elapsed();
            let down = t >= Duration::from_secs(1) && t < Duration::from_secs(3);
            if down {
                reached.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err::<&'static str, BoxError>("503 service unavailable".into());
            }
            Ok("answer")
        }
    });
    let mut client = ServiceBuilder::new()
        .layer(breaker.layer())
        .timeout(Duration::from_secs(1))
        .service(upstream);

    let (mut ok, mut failed, mut rejected, mut sent_while_down) = (0, 0, 0, 0);
    let mut rejection_time = Duration::ZERO;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while start.elapsed() < Duration::from_secs(4) {
        tick.tick().await;
        let t = start.elapsed();
        if t >= Duration::from_secs(1) && t < Duration::from_secs(3) {
            sent_while_down += 1;
        }
        let began = Instant::now();
        match client.ready().await?.call("hello").await {
            Ok(_) => ok += 1,
            Err(e) if e.is::<CircuitOpen>() => {
                rejected += 1;
                rejection_time += began.elapsed();
            }
            Err(_) => failed += 1,
        }
    }

    println!();
    println!("answered        {ok}");
    println!("failed          {failed}");
    println!("rejected fast   {rejected}");
    if rejected > 0 {
        println!("mean rejection  {:?}", rejection_time / rejected);
    }
    println!(
        "while the upstream was down, {} of {} calls reached it",
        reached_while_down.load(Ordering::Relaxed),
        sent_while_down
    );
    let m = breaker.metrics();
    println!(
        "final state     {} ({} calls in the window)",
        m.state, m.calls
    );
    Ok(())
}
