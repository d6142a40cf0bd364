//! Scripted upstreams and event recorders for the retry tests.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceExt};
use tower_breaker::retry::{GiveUpReason, RetryEvent};

/// When each call reached an upstream.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<Vec<Instant>>>);

impl Calls {
    /// Records a call; returns its index (0 for the first).
    pub fn push(&self) -> usize {
        let mut calls = self.0.lock().unwrap();
        calls.push(Instant::now());
        calls.len() - 1
    }

    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// When call `n` (0 for the first) reached the upstream.
    pub fn at(&self, n: usize) -> Instant {
        self.0.lock().unwrap()[n]
    }

    /// The time between consecutive calls.
    pub fn gaps(&self) -> Vec<Duration> {
        let calls = self.0.lock().unwrap();
        calls.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// An upstream that answers call `n` with `answer(n, &request)` after `latency`.
pub fn upstream<Req, Res, F>(
    latency: Duration,
    answer: F,
) -> (
    impl Service<Req, Response = Res, Error = BoxError, Future = impl Future + Send> + Clone + Send,
    Calls,
)
where
    Req: Send + 'static,
    Res: Send + 'static,
    F: Fn(usize, &Req) -> Result<Res, BoxError> + Clone + Send + 'static,
{
    let calls = Calls::default();
    let log = calls.clone();
    let svc = tower::service_fn(move |req: Req| {
        let n = log.push();
        let result = answer(n, &req);
        async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            result
        }
    });
    (svc, calls)
}

/// An upstream that always fails at once.
pub fn down<Req: Send + 'static>() -> (
    impl Service<Req, Response = (), Error = BoxError, Future = impl Future + Send> + Clone + Send,
    Calls,
) {
    upstream(Duration::ZERO, |_, _: &Req| Err("upstream is down".into()))
}

/// One call through `svc`.
pub async fn call<S, Req>(svc: &mut S, req: Req) -> Result<S::Response, S::Error>
where
    S: Service<Req>,
{
    svc.ready().await?.call(req).await
}

/// Every retry event, in order.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<RetryEvent>>>);

impl Events {
    pub fn listener(&self) -> impl Fn(&RetryEvent) + Send + Sync + 'static {
        let sink = self.0.clone();
        move |event: &RetryEvent| sink.lock().unwrap().push(event.clone())
    }

    pub fn all(&self) -> Vec<RetryEvent> {
        self.0.lock().unwrap().clone()
    }

    /// The delays of the `Retrying` events.
    pub fn delays(&self) -> Vec<Duration> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                RetryEvent::Retrying { delay, .. } => Some(delay),
                _ => None,
            })
            .collect()
    }

    /// The reasons of the `GaveUp` events.
    pub fn gave_up(&self) -> Vec<GiveUpReason> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                RetryEvent::GaveUp { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }
}

/// A generator that returns `values` in a cycle.
pub fn cycle(values: &'static [f64]) -> impl FnMut() -> f64 + Send + 'static {
    let mut i = 0;
    move || {
        let v = values[i % values.len()];
        i += 1;
        v
    }
}
