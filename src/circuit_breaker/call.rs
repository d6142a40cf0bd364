//! The breaker without tower: guard one future, and wait for the breaker to reject.

use super::{CircuitBreaker, RecordOutcome};
use crate::BoxError;
use crate::outcome::Classify;
use std::future::IntoFuture;
#[cfg(feature = "retry")]
use {std::future::Future, std::pin::pin, tokio::time::Instant};

impl CircuitBreaker {
    /// Runs `call` through the breaker, for clients that are not tower services (a client
    /// library that only takes a plain `reqwest::Client`, such as genai or ollama-rs, or any
    /// `async` function).
    ///
    /// When the breaker permits the call, `call` is awaited and `classify` turns its result
    /// into an [`Outcome`](crate::Outcome) that is recorded; its error is returned boxed. When
    /// the breaker rejects, `call` is dropped unpolled (a future does nothing until polled, so
    /// the upstream is not asked) and the error is the rejection:
    /// [`CircuitOpen`](super::CircuitOpen) or [`RateLimited`](super::RateLimited). If the
    /// returned future is dropped before `call` finishes, the call counts as ignored.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_breaker::{BoxError, Outcome};
    /// use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, SlidingWindow};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let breaker = CircuitBreaker::builder("ollama")
    ///     .sliding_window(SlidingWindow::consecutive(2))
    ///     .wait_in_open(Duration::from_secs(30))
    ///     .build()?;
    /// // Any async client call; here, one that reports an overloaded server.
    /// async fn generate(prompt: &str) -> Result<String, std::io::Error> {
    ///     Err(std::io::Error::other(format!("503 while generating {prompt:?}")))
    /// }
    /// let failure = |r: &Result<String, std::io::Error>| match r {
    ///     Ok(_) => Outcome::Success,
    ///     Err(_) => Outcome::Failure,
    /// };
    ///
    /// for _ in 0..2 {
    ///     assert!(breaker.call(generate("hi"), failure).await.is_err());
    /// }
    /// let err = breaker.call(generate("hi"), failure).await.unwrap_err();
    /// assert!(err.is::<CircuitOpen>()); // generate() was not run
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call<F, T, E, C>(&self, call: F, classify: C) -> Result<T, BoxError>
    where
        F: IntoFuture<Output = Result<T, E>>,
        E: Into<BoxError>,
        C: Classify<T, E>,
    {
        self.call_with(call, super::ClassifyNow(classify)).await
    }

    /// Like [`call`](Self::call), with a [`RecordOutcome`] instead of a classifier: for
    /// `reqwest` responses, an [`HttpClassifier`](crate::http::HttpClassifier) records a 429
    /// as a rate-limit cool-down and a streamed body when it ends (the response it returns
    /// carries the permit in its body).
    ///
    /// ```
    /// use tower_breaker::BoxError;
    /// use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState};
    /// use tower_breaker::http::HttpClassifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let breaker = CircuitBreaker::builder("genai").build()?;
    /// // Stands in for `client.post(url).json(&body).send()`:
    /// let send = async {
    ///     let limited = http::Response::builder().status(429).header("retry-after", "3").body("")?;
    ///     Ok::<_, BoxError>(reqwest::Response::from(limited))
    /// };
    /// let response = breaker.call_with(send, HttpClassifier::new()).await?;
    /// assert_eq!(response.status(), 429);
    /// assert_eq!(breaker.state(), CircuitState::RateLimited); // a cool-down, not a failure
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call_with<F, T, E, R>(&self, call: F, recorder: R) -> Result<R::Response, BoxError>
    where
        F: IntoFuture<Output = Result<T, E>>,
        E: Into<BoxError>,
        R: RecordOutcome<T, E>,
    {
        let permit = self
            .try_acquire()
            .map_err(super::CircuitOpen::into_box_error)?;
        let result = call.await;
        recorder.record(result, permit).map_err(Into::into)
    }

    /// Resolves once a call made at `at` would be rejected: the breaker rejects now and the
    /// instant it admits calls again (if known) is after `at`. Registers for state changes
    /// before each check, so a transition in between is not missed; never polls on a timer.
    #[cfg(feature = "retry")]
    pub(crate) fn rejecting_at(
        &self,
        at: Instant,
    ) -> impl Future<Output = ()> + Send + Sync + 'static {
        let shared = self.shared.clone();
        async move {
            loop {
                let mut changed = pin!(shared.changed.notified());
                changed.as_mut().enable();
                if rejects_at(shared.admission(), at) {
                    return;
                }
                changed.await;
            }
        }
    }

    /// When a call would be admitted: now, from an instant on (the exact instant the breaker
    /// compares with, so that a caller sleeping until it is admitted), or not known.
    #[cfg(feature = "retry")]
    pub(crate) fn admission(&self) -> super::state::Admission {
        self.shared.admission()
    }
}

/// True when a call made at `at` would be rejected, by `admission` judged now.
#[cfg(feature = "retry")]
pub(crate) fn rejects_at(admission: super::state::Admission, at: Instant) -> bool {
    use super::state::Admission;
    match admission {
        Admission::Now => false,
        // The breaker admits calls from `until` on (`Instant::now() < until` rejects).
        Admission::At(_, until) => until > at,
        // Forced open, or half-open with every probe slot taken: no telling when.
        Admission::Unknown => true,
    }
}
