use super::{AllProvidersFailed, ProviderFailure, Shared};
use crate::BoxError;
use crate::rejection::Rejection;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower_service::Service;

pin_project! {
    /// The future of a [`Failover`](super::Failover) call: tries each provider in turn.
    pub struct ResponseFuture<S: Service<Req>, Req, Res> {
        shared: Arc<Shared<S, Req, Res>>,
        req: Req,
        next: usize,
        failures: Vec<ProviderFailure>,
        #[pin]
        state: State<S, S::Future>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F> {
        Choose,
        Ready { service: S },
        Called { #[pin] future: F },
    }
}

impl<S: Service<Req>, Req, Res> ResponseFuture<S, Req, Res> {
    pub(crate) fn new(shared: Arc<Shared<S, Req, Res>>, req: Req) -> Self {
        Self {
            shared,
            req,
            next: 0,
            failures: Vec::new(),
            state: State::Choose,
        }
    }
}

impl<S: Service<Req>, Req, Res> fmt::Debug for ResponseFuture<S, Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("next", &self.next)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl<S, Req, Res> Future for ResponseFuture<S, Req, Res>
where
    S: Service<Req, Response = Res> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Choose => {
                    let Some(provider) = this.shared.providers.get(*this.next) else {
                        let failures = std::mem::take(this.failures);
                        return Poll::Ready(Err(Box::new(AllProvidersFailed { failures })));
                    };
                    if let Some(breaker) = &provider.breaker {
                        if !breaker.is_call_permitted() {
                            this.failures.push(ProviderFailure {
                                provider: provider.name.clone(),
                                skipped: true,
                                reason: format!(
                                    "circuit breaker `{}` is {}",
                                    breaker.name(),
                                    breaker.state()
                                ),
                                retry_after: breaker.retry_after(),
                            });
                            *this.next += 1;
                            continue;
                        }
                    }
                    let service = provider.service.clone();
                    this.state.set(State::Ready { service });
                }
                StateProj::Ready { service } => {
                    let provider = &this.shared.providers[*this.next];
                    match ready!(service.poll_ready(cx)) {
                        Ok(()) => {
                            let req = match &provider.adapter {
                                Some(adapt) => adapt(this.req.clone()),
                                None => this.req.clone(),
                            };
                            let future = service.call(req);
                            this.state.set(State::Called { future });
                        }
                        Err(e) => {
                            let e: BoxError = e.into();
                            this.failures.push(failure(&provider.name, &e));
                            *this.next += 1;
                            this.state.set(State::Choose);
                        }
                    }
                }
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    let fail_over = match &this.shared.fail_over {
                        Some(predicate) => predicate(&result),
                        None => result.is_err(),
                    };
                    if !fail_over {
                        return Poll::Ready(result);
                    }
                    let provider = &this.shared.providers[*this.next];
                    let reason = match &result {
                        Err(e) => failure(&provider.name, e),
                        Ok(_) => ProviderFailure {
                            provider: provider.name.clone(),
                            skipped: false,
                            reason: "rejected response".to_string(),
                            retry_after: None,
                        },
                    };
                    this.failures.push(reason);
                    *this.next += 1;
                    this.state.set(State::Choose);
                }
            }
        }
    }
}

/// Describes a provider's error; a rejection by its own middleware (breaker or bulkhead,
/// anywhere in the error's `source()` chain) counts as skipped.
fn failure(provider: &Arc<str>, e: &BoxError) -> ProviderFailure {
    let (skipped, retry_after) = match Rejection::of(e.as_ref()) {
        Some(rejection) => (true, rejection.retry_after()),
        None => (false, None),
    };
    ProviderFailure {
        provider: provider.clone(),
        skipped,
        reason: e.to_string(),
        retry_after,
    }
}
