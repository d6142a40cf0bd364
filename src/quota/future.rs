//! The future of a call governed by a [`QuotaLayer`](super::QuotaLayer).

use super::layer::ObserveResponse;
use super::permit::Pending;
use super::{QuotaExceeded, QuotaPermit};
use crate::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::time::Sleep;
use tower_service::Service;

/// An admission through a shared store.
pub(crate) type AdmitFuture<K> =
    Pin<Box<dyn Future<Output = Result<Pending<K>, QuotaExceeded>> + Send>>;

pin_project! {
    /// The future of a [`QuotaService`](super::QuotaService) call: waits for the call's turn
    /// (when it has to), calls the inner service, and tells the governor what the answer
    /// reports. Dropped while waiting, it gives the call's share of the budget back. A call
    /// the governor rejected fails on its first poll with [`QuotaExceeded`].
    pub struct ResponseFuture<S, Req, K, O>
    where
        S: Service<Req>,
        K: Hash, K: Eq, K: Clone, K: fmt::Display, K: Send, K: 'static,
    {
        #[pin]
        kind: Kind<S, Req, K>,
        observer: O,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req, K>
    where
        S: Service<Req>,
        K: Hash, K: Eq, K: Clone, K: fmt::Display, K: Send, K: 'static,
    {
        Admit { admit: AdmitFuture<K>, service: Option<S>, req: Option<Req> },
        Waiting {
            #[pin]
            sleep: Sleep,
            service: Option<S>,
            req: Option<Req>,
            pending: Option<Pending<K>>,
        },
        Calling { #[pin] future: S::Future, permit: Option<QuotaPermit<K>> },
        Rejected { error: Option<QuotaExceeded> },
    }
}

impl<S, Req, K, O> ResponseFuture<S, Req, K, O>
where
    S: Service<Req>,
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
{
    pub(crate) fn admitted(pending: Pending<K>, mut service: S, req: Req, observer: O) -> Self {
        let wait = pending.wait();
        crate::call_span::record_quota_wait(wait);
        let kind = if wait.is_zero() {
            Kind::Calling {
                future: service.call(req),
                permit: Some(pending.into_permit()),
            }
        } else {
            Kind::Waiting {
                sleep: tokio::time::sleep(wait),
                service: Some(service),
                req: Some(req),
                pending: Some(pending),
            }
        };
        Self { kind, observer }
    }

    #[cfg_attr(not(feature = "shared-state"), allow(dead_code))]
    pub(crate) fn store(admit: AdmitFuture<K>, service: S, req: Req, observer: O) -> Self {
        Self {
            kind: Kind::Admit {
                admit,
                service: Some(service),
                req: Some(req),
            },
            observer,
        }
    }

    pub(crate) fn rejected_with(error: QuotaExceeded, observer: O) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
            observer,
        }
    }
}

fn polled_after_completion() -> BoxError {
    "quota::ResponseFuture polled after completion".into()
}

impl<S, Req, K, O> Future for ResponseFuture<S, Req, K, O>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    O: ObserveResponse<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.kind.as_mut().project() {
                KindProj::Admit {
                    admit,
                    service,
                    req,
                } => {
                    let admitted = ready!(admit.as_mut().poll(cx));
                    let (Some(mut service), Some(req)) = (service.take(), req.take()) else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    if let Ok(pending) = &admitted {
                        crate::call_span::record_quota_wait(pending.wait());
                    }
                    let next = match admitted {
                        Err(error) => Kind::Rejected { error: Some(error) },
                        Ok(pending) if pending.wait().is_zero() => Kind::Calling {
                            future: service.call(req),
                            permit: Some(pending.into_permit()),
                        },
                        Ok(pending) => Kind::Waiting {
                            sleep: tokio::time::sleep(pending.wait()),
                            service: Some(service),
                            req: Some(req),
                            pending: Some(pending),
                        },
                    };
                    this.kind.set(next);
                }
                KindProj::Waiting {
                    mut sleep,
                    service,
                    req,
                    pending,
                } => {
                    ready!(sleep.as_mut().poll(cx));
                    // Its turn was set at admission; a 429, a lower limit or a lower level since
                    // then moves it (or, past `max_wait`, refuses the call: its share goes back).
                    let recheck = match pending.as_ref() {
                        Some(pending) => pending.recheck(),
                        None => return Poll::Ready(Err(polled_after_completion())),
                    };
                    match recheck {
                        Ok(wait) if !wait.is_zero() => {
                            sleep.reset(tokio::time::Instant::now() + wait);
                            continue;
                        }
                        Ok(_) => {}
                        Err(error) => {
                            this.kind.set(Kind::Rejected { error: Some(error) });
                            continue;
                        }
                    }
                    let (Some(mut service), Some(req), Some(pending)) =
                        (service.take(), req.take(), pending.take())
                    else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let future = service.call(req);
                    this.kind.set(Kind::Calling {
                        future,
                        permit: Some(pending.into_permit()),
                    });
                }
                KindProj::Calling { future, permit } => {
                    let result = ready!(future.poll(cx));
                    if let (Ok(response), Some(mut permit)) = (&result, permit.take()) {
                        permit.answered(&this.observer.observe(response));
                    }
                    return Poll::Ready(result.map_err(Into::into));
                }
                KindProj::Rejected { error } => {
                    return Poll::Ready(Err(match error.take() {
                        Some(error) => error.into(),
                        None => polled_after_completion(),
                    }));
                }
            }
        }
    }
}

impl<S, Req, K, O> fmt::Debug for ResponseFuture<S, Req, K, O>
where
    S: Service<Req>,
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Admit { .. } => "admitting",
            Kind::Waiting { .. } => "waiting",
            Kind::Calling { .. } => "calling",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
