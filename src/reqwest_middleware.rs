//! Breaker, bulkhead and retry for clients built on `reqwest-middleware`'s
//! `ClientWithMiddleware` (feature `reqwest-middleware`).
//!
//! Thin shells over the same handles as the tower layers: a [`CircuitBreaker`], a [`Bulkhead`]
//! and a [`RetryPolicy`] keep their rules, events and metrics. Attach them in the recommended
//! order, outermost first: retry, breaker, bulkhead.
//!
//! ```
//! use std::time::Duration;
//! use reqwest_middleware::ClientBuilder;
//! use tower_breaker::bulkhead::Bulkhead;
//! use tower_breaker::circuit_breaker::CircuitBreaker;
//! use tower_breaker::reqwest_middleware::{
//!     BulkheadMiddleware, CircuitBreakerMiddleware, RetryMiddleware,
//! };
//! use tower_breaker::retry::RetryPolicy;
//!
//! let breaker = CircuitBreaker::builder("openai").build()?;
//! let bulkhead = Bulkhead::builder("openai").max_concurrent(64).build()?;
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(RetryMiddleware::new(RetryPolicy::builder().llm().breaker(&breaker).build()?))
//!     .with(CircuitBreakerMiddleware::new(&breaker))
//!     .with(BulkheadMiddleware::new(&bulkhead))
//!     .build();
//! # let _ = client;
//! # Ok::<_, tower_breaker::ConfigError>(())
//! ```
//!
//! Rejections are `reqwest_middleware::Error::Middleware` errors wrapping this crate's
//! [`CircuitOpen`], [`RateLimited`](crate::circuit_breaker::RateLimited),
//! [`BulkheadFull`](crate::bulkhead::BulkheadFull) or
//! [`BulkheadTimeout`](crate::bulkhead::BulkheadTimeout):
//! [`Rejection::of_any`](crate::rejection::Rejection::of_any) finds them, and so does the retry
//! policy, which never retries a breaker's rejection.

use crate::Outcome;
use crate::bulkhead::{Bulkhead, BulkheadBody};
use crate::circuit_breaker::{CircuitBreaker, CircuitOpen};
use crate::http::HttpClassifier;
use crate::http::reqwest::{classify_reqwest_error, map_reqwest_body};
use crate::rejection::Rejection;
use crate::retry::{Protocol, RetryPolicy};
use ::reqwest_middleware::{Error, Middleware, Next, Result};
use http::Extensions;
use reqwest::{Request, Response};
use std::fmt;

/// A breaker's rejection (or any boxed error of this crate) as a middleware error whose
/// `source()` is the rejection itself, so that chain walkers find it.
#[derive(Debug)]
struct Rejected(crate::BoxError);

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Rejected {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

fn rejected(error: crate::BoxError) -> Error {
    Error::middleware(Rejected(error))
}

/// How a middleware error counts for a breaker: a rejection by our own middleware further in,
/// or a request that could not be built, never reached the upstream.
fn classify_error(error: &Error) -> Outcome {
    match error {
        Error::Reqwest(e) => classify_reqwest_error(e),
        Error::Middleware(_) if Rejection::of_any(error).is_some() => Outcome::Ignored,
        Error::Middleware(_) => Outcome::Failure,
    }
}

/// A circuit breaker as a `reqwest-middleware` middleware: rejects at once while the breaker
/// is open (with [`CircuitOpen`] or `RateLimited`), and records every response with an
/// [`HttpClassifier`] (the default one unless [`record_with`](Self::record_with)): 5xx, 408
/// and 529 are failures, 429 a cool-down, and a success is recorded when its body ends.
#[derive(Debug, Clone)]
pub struct CircuitBreakerMiddleware {
    breaker: CircuitBreaker,
    classifier: HttpClassifier,
}

impl CircuitBreakerMiddleware {
    /// A middleware for `breaker` (shared, not copied), with the default [`HttpClassifier`].
    pub fn new(breaker: &CircuitBreaker) -> Self {
        Self {
            breaker: breaker.clone(),
            classifier: HttpClassifier::new(),
        }
    }

    /// Classifies responses with `classifier` instead.
    pub fn record_with(mut self, classifier: HttpClassifier) -> Self {
        self.classifier = classifier;
        self
    }
}

#[async_trait::async_trait]
impl Middleware for CircuitBreakerMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let permit = self
            .breaker
            .try_acquire()
            .map_err(|open| rejected(CircuitOpen::into_box_error(open)))?;
        match next.run(req, extensions).await {
            Ok(response) => Ok(self.classifier.record_reqwest_response(response, permit)),
            Err(error) => {
                permit.record(classify_error(&error));
                Err(error)
            }
        }
    }
}

/// A bulkhead as a `reqwest-middleware` middleware: waits for a slot (or fails with
/// [`BulkheadFull`](crate::bulkhead::BulkheadFull) / `BulkheadTimeout`, by the bulkhead's
/// settings) and holds it until the response body ends, so that a streamed answer counts as
/// in flight until its last byte.
#[derive(Debug, Clone)]
pub struct BulkheadMiddleware {
    bulkhead: Bulkhead,
}

impl BulkheadMiddleware {
    /// A middleware for `bulkhead` (shared, not copied).
    pub fn new(bulkhead: &Bulkhead) -> Self {
        Self {
            bulkhead: bulkhead.clone(),
        }
    }
}

#[async_trait::async_trait]
impl Middleware for BulkheadMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let permit = self.bulkhead.acquire().await.map_err(|e| {
            rejected(match e {
                crate::bulkhead::AcquireError::Full(full) => Box::new(full),
                crate::bulkhead::AcquireError::Timeout(timeout) => Box::new(timeout),
            })
        })?;
        let response = next.run(req, extensions).await?;
        Ok(map_reqwest_body(response, |body| {
            reqwest::Body::wrap(BulkheadBody::new(body, permit))
        }))
    }
}

/// A [`RetryPolicy`] as a `reqwest-middleware` middleware: the same rules, budget, deadline,
/// events and breaker link as through `tower::retry`. Build the policy with
/// [`reqwest()`](crate::retry::Builder::reqwest) or [`llm()`](crate::retry::Builder::llm);
/// a request whose body cannot be copied (a stream) is sent once.
#[derive(Debug, Clone)]
pub struct RetryMiddleware<C, P> {
    policy: RetryPolicy<C, P>,
}

impl<C, P> RetryMiddleware<C, P> {
    /// A middleware for `policy` (its budget and listeners are shared with its clones).
    pub fn new(policy: RetryPolicy<C, P>) -> Self {
        Self { policy }
    }
}

#[async_trait::async_trait]
impl<C, P> Middleware for RetryMiddleware<C, P>
where
    C: crate::Classify<Response, Error> + Clone + Send + Sync + 'static,
    P: Protocol<Request, Response, Error> + Clone + Send + Sync + 'static,
{
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        use tower::retry::Policy;
        // The same calls, in the same order, as `tower::retry::Retry` makes on a per-request
        // copy of the policy.
        let mut policy = self.policy.clone();
        let mut copy = Policy::<Request, Response, Error>::clone_request(&mut policy, &req);
        loop {
            let mut result = next.clone().run(req, extensions).await;
            let Some(mut next_request) = copy.take() else {
                return result;
            };
            match policy.retry(&mut next_request, &mut result) {
                Some(delay) => {
                    // The failed response (and its body) goes before the wait.
                    drop(result);
                    delay.await;
                    copy = Policy::<Request, Response, Error>::clone_request(
                        &mut policy,
                        &next_request,
                    );
                    req = next_request;
                }
                None => return result,
            }
        }
    }
}
