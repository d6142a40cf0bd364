use super::Permit;
use crate::outcome::{Classify, DefaultClassifier};

/// Records a finished call on its [`Permit`]: now, or later.
///
/// The [`CircuitBreakerService`](super::CircuitBreakerService) hands every result to its
/// recorder together with the call's permit. [`ClassifyNow`] records the outcome of a
/// [`Classify`] at once. A recorder for streamed responses can instead move the permit into the
/// response body and record when the body ends, so that a stream that dies halfway counts as a
/// failure and the half-open slot is held until the last byte.
///
/// ```
/// use tower_breaker::Outcome;
/// use tower_breaker::circuit_breaker::{Permit, RecordOutcome};
///
/// /// Keeps the permit with the response; the caller records when it has read it all.
/// #[derive(Clone)]
/// struct Deferred;
///
/// impl<E> RecordOutcome<String, E> for Deferred {
///     type Response = (String, Permit);
///     fn record(&self, result: Result<String, E>, permit: Permit) -> Result<(String, Permit), E> {
///         match result {
///             Ok(body) => Ok((body, permit)),
///             Err(e) => {
///                 permit.record(Outcome::Failure);
///                 Err(e)
///             }
///         }
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot record a `Result<{Res}, {E}>` on a breaker",
    label = "no `RecordOutcome<{Res}, {E}>`",
    note = "`HttpClassifier` records `http::Response<B>` (feature `http`) and `reqwest::Response` (feature `reqwest`); `GrpcClassifier` records tonic responses",
    note = "for any other result, wrap a classifier: `ClassifyNow(|r: &Result<_, _>| Outcome::Success)`"
)]
pub trait RecordOutcome<Res, E> {
    /// The response the service returns (the inner response, or one that carries the permit).
    type Response;

    /// Records `result` on `permit` (or arranges for it to be recorded later) and returns the
    /// response. A permit dropped unrecorded counts as `Ignored`.
    fn record(&self, result: Result<Res, E>, permit: Permit) -> Result<Self::Response, E>;
}

/// Records the outcome of a [`Classify`] as soon as the result is there. The default recorder,
/// with [`DefaultClassifier`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassifyNow<C = DefaultClassifier>(pub C);

impl<C, Res, E> RecordOutcome<Res, E> for ClassifyNow<C>
where
    C: Classify<Res, E>,
{
    type Response = Res;

    #[inline]
    fn record(&self, result: Result<Res, E>, permit: Permit) -> Result<Res, E> {
        permit.record(self.0.classify(&result));
        result
    }
}
