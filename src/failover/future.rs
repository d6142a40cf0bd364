use super::attempts::counting;
use super::{
    AllProvidersFailed, FailoverProtocol, FailoverReport, ProviderFailure, ProviderTry, Shared,
    TryOutcome,
};
use crate::BoxError;
use crate::rejection::Rejection;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower_service::Service;

/// Why a provider after the first one called got no call, when the request cannot be copied.
const NOT_COPIED: &str = "not tried: the request could not be copied for another provider (a \
                          streamed body can be sent once); give it a buffered body to fail over";

pin_project! {
    /// The future of a [`Failover`](super::Failover) call: tries each provider in turn.
    pub struct ResponseFuture<S: Service<Req>, Req, Res, P> {
        shared: Arc<Shared<S, Req, Res, P>>,
        // `None` once sent without a copy (it could not be copied).
        req: Option<Req>,
        // The providers for this request, by index (`Err`: a name no provider has, reported
        // as skipped in its place); `None`: all, in order.
        order: Option<Vec<Result<usize, Arc<str>>>>,
        position: usize,
        failures: Vec<ProviderFailure>,
        tried: Vec<ProviderTry>,
        // The last answer that was rejected, with its provider's entry in `tried`.
        kept: Option<(usize, Res)>,
        // The attempts of the provider being called, counted by `count_attempt`.
        attempts: u32,
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

impl<S: Service<Req>, Req, Res, P: FailoverProtocol<Req, Res>> ResponseFuture<S, Req, Res, P> {
    pub(crate) fn new(shared: Arc<Shared<S, Req, Res, P>>, req: Req) -> Self {
        let order: Option<Vec<Result<usize, Arc<str>>>> = shared
            .select
            .as_ref()
            .and_then(|select| select(&req))
            .map(|names| {
                names
                    .into_iter()
                    .map(|name| {
                        shared
                            .providers
                            .iter()
                            .position(|p| p.name == name)
                            .ok_or(name)
                    })
                    .collect()
            });
        // Providers this request tries last keep their order among themselves.
        let last = shared.protocol.try_last(&req);
        let order = if last.is_empty() {
            order
        } else {
            let all: Vec<Result<usize, Arc<str>>> =
                order.unwrap_or_else(|| (0..shared.providers.len()).map(Ok).collect());
            // A name no provider has stays where the request put it.
            let (later, first): (Vec<_>, Vec<_>) = all.into_iter().partition(
                |entry| matches!(entry, Ok(i) if last.contains(&shared.providers[*i].name)),
            );
            Some(first.into_iter().chain(later).collect())
        };
        Self {
            shared,
            req: Some(req),
            order,
            position: 0,
            failures: Vec::new(),
            tried: Vec::new(),
            kept: None,
            attempts: 0,
            state: State::Choose,
        }
    }
}

impl<S: Service<Req>, Req, Res, P> fmt::Debug for ResponseFuture<S, Req, Res, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("position", &self.position)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// The provider at `position` of this request's list (`Err`: a name no provider has), or
/// `None` past its end.
fn entry(
    order: &Option<Vec<Result<usize, Arc<str>>>>,
    position: usize,
) -> Option<Result<usize, &Arc<str>>> {
    match order {
        Some(order) => order.get(position).map(|e| e.as_ref().copied()),
        None => Some(Ok(position)),
    }
}

/// The provider at `position` of this request's list, if it names one.
fn index(order: &Option<Vec<Result<usize, Arc<str>>>>, position: usize) -> Option<usize> {
    entry(order, position).and_then(Result::ok)
}

impl<S, Req, Res, P> Future for ResponseFuture<S, Req, Res, P>
where
    S: Service<Req, Response = Res> + Clone,
    S::Error: Into<BoxError>,
    P: FailoverProtocol<Req, Res>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared = &**this.shared;
        loop {
            match this.state.as_mut().project() {
                StateProj::Choose => {
                    if let Some(Err(name)) = entry(this.order, *this.position) {
                        let reason = format!("no provider named `{name}`");
                        this.tried.push(ProviderTry {
                            provider: name.clone(),
                            outcome: TryOutcome::Skipped(reason.clone()),
                            attempts: 0,
                        });
                        this.failures.push(ProviderFailure {
                            provider: name.clone(),
                            skipped: true,
                            reason,
                            retry_after: None,
                        });
                        *this.position += 1;
                        continue;
                    }
                    let provider =
                        index(this.order, *this.position).and_then(|i| shared.providers.get(i));
                    let Some(provider) = provider else {
                        // Every provider has had its turn: the last rejected answer, if any,
                        // else the list of failures.
                        if let Some((entry, mut res)) = this.kept.take() {
                            let mut tried = std::mem::take(this.tried);
                            let provider = tried[entry].provider.clone();
                            tried[entry].outcome = TryOutcome::Answered;
                            shared
                                .protocol
                                .report(&mut res, FailoverReport { provider, tried });
                            return Poll::Ready(Ok(res));
                        }
                        let failures = std::mem::take(this.failures);
                        return Poll::Ready(Err(Box::new(AllProvidersFailed { failures })));
                    };
                    let skip = if this.req.is_none() {
                        Some((NOT_COPIED.to_string(), None))
                    } else {
                        provider
                            .breaker
                            .as_ref()
                            .filter(|breaker| !breaker.is_call_permitted())
                            .map(|breaker| {
                                let reason = format!(
                                    "circuit breaker `{}` is {}",
                                    breaker.name(),
                                    breaker.state()
                                );
                                (reason, breaker.retry_after())
                            })
                    };
                    if let Some((reason, retry_after)) = skip {
                        this.tried.push(ProviderTry {
                            provider: provider.name.clone(),
                            outcome: TryOutcome::Skipped(reason.clone()),
                            attempts: 0,
                        });
                        this.failures.push(ProviderFailure {
                            provider: provider.name.clone(),
                            skipped: true,
                            reason,
                            retry_after,
                        });
                        *this.position += 1;
                        continue;
                    }
                    let service = provider.service.clone();
                    this.state.set(State::Ready { service });
                }
                StateProj::Ready { service } => {
                    let i = index(this.order, *this.position).unwrap_or(usize::MAX);
                    let Some(provider) = shared.providers.get(i) else {
                        return Poll::Ready(Err("failover future polled after completion".into()));
                    };
                    if let Err(e) = ready!(service.poll_ready(cx)) {
                        let e: BoxError = e.into();
                        let (failure, outcome) = failure(&provider.name, &e);
                        this.failures.push(failure);
                        this.tried.push(ProviderTry {
                            provider: provider.name.clone(),
                            outcome,
                            attempts: 0,
                        });
                        *this.position += 1;
                        this.state.set(State::Choose);
                        continue;
                    }
                    // A copy for this provider while another may follow; the last one (or a
                    // request that cannot be copied) gets the original.
                    let more = match this.order {
                        Some(order) => order.iter().skip(*this.position + 1).any(Result::is_ok),
                        None => *this.position + 1 < shared.providers.len(),
                    };
                    let copy = if more {
                        this.req
                            .as_ref()
                            .and_then(|req| shared.protocol.clone_request(req))
                    } else {
                        None
                    };
                    let Some(req) = copy.or_else(|| this.req.take()) else {
                        return Poll::Ready(Err("failover future polled after completion".into()));
                    };
                    let req = match &provider.adapter {
                        Some(adapt) => adapt(req),
                        None => req,
                    };
                    // The call itself may send (a service that sends in `call`).
                    let (future, counted) = counting(|| service.call(req));
                    *this.attempts = counted;
                    this.state.set(State::Called { future });
                }
                StateProj::Called { future } => {
                    let (poll, counted) = counting(|| future.poll(cx));
                    *this.attempts = this.attempts.saturating_add(counted);
                    let result = ready!(poll).map_err(Into::into);
                    let i = index(this.order, *this.position).unwrap_or(usize::MAX);
                    let Some(provider) = shared.providers.get(i) else {
                        return Poll::Ready(Err("failover future polled after completion".into()));
                    };
                    let attempts = std::mem::take(this.attempts).max(1);
                    let fail_over = match &shared.fail_over {
                        Some(predicate) => predicate(&result),
                        None => result.is_err(),
                    };
                    *this.position += 1;
                    match result {
                        Ok(mut res) if !fail_over => {
                            this.tried.push(ProviderTry {
                                provider: provider.name.clone(),
                                outcome: TryOutcome::Answered,
                                attempts,
                            });
                            let tried = std::mem::take(this.tried);
                            let provider = provider.name.clone();
                            shared
                                .protocol
                                .report(&mut res, FailoverReport { provider, tried });
                            return Poll::Ready(Ok(res));
                        }
                        Err(e) if !fail_over => return Poll::Ready(Err(e)),
                        Ok(res) => {
                            this.failures.push(ProviderFailure {
                                provider: provider.name.clone(),
                                skipped: false,
                                reason: "rejected response".to_string(),
                                retry_after: None,
                            });
                            *this.kept = Some((this.tried.len(), res));
                            this.tried.push(ProviderTry {
                                provider: provider.name.clone(),
                                outcome: TryOutcome::Rejected,
                                attempts,
                            });
                        }
                        Err(e) => {
                            let (failure, outcome) = failure(&provider.name, &e);
                            let attempts = if failure.skipped { 0 } else { attempts };
                            this.failures.push(failure);
                            this.tried.push(ProviderTry {
                                provider: provider.name.clone(),
                                outcome,
                                attempts,
                            });
                        }
                    }
                    this.state.set(State::Choose);
                }
            }
        }
    }
}

/// Describes a provider's error; a rejection by its own middleware (breaker or bulkhead,
/// anywhere in the error's `source()` chain) counts as skipped.
fn failure(provider: &Arc<str>, e: &BoxError) -> (ProviderFailure, TryOutcome) {
    let (skipped, retry_after) = match Rejection::of(e.as_ref()) {
        Some(rejection) => (true, rejection.retry_after()),
        None => (false, None),
    };
    let reason = e.to_string();
    let outcome = if skipped {
        TryOutcome::Skipped(reason.clone())
    } else {
        TryOutcome::Failed(reason.clone())
    };
    let failure = ProviderFailure {
        provider: provider.clone(),
        skipped,
        reason,
        retry_after,
    };
    (failure, outcome)
}
