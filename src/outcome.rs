//! What a call's result means to a breaker: [`Outcome`] and the [`Classify`] trait.
//!
//! ```
//! use tower_breaker::{Classify, Outcome};
//!
//! // A classifier that treats "not found" as a success of the upstream: it answered.
//! let classify = |result: &Result<u16, std::io::Error>| match result {
//!     Ok(status) if *status >= 500 => Outcome::Failure,
//!     Ok(429) => Outcome::Ignored,
//!     Ok(_) => Outcome::Success,
//!     Err(_) => Outcome::Failure,
//! };
//! assert_eq!(classify.classify(&Ok(404)), Outcome::Success);
//! assert_eq!(classify.classify(&Ok(503)), Outcome::Failure);
//! assert_eq!(classify.classify(&Ok(429)), Outcome::Ignored);
//! ```

/// How a finished call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The upstream did its job. Counts toward the call total, not the failure total.
    Success,
    /// The upstream failed (error, 5xx, timeout). Counts toward the failure rate.
    Failure,
    /// Neither: a rate limit, a cancellation by our own caller, a client error. Counts toward
    /// nothing in any state, and gives a half-open probe slot back.
    Ignored,
}

/// Turns the result of a call into an [`Outcome`].
///
/// Closures `Fn(&Result<Res, E>) -> Outcome` implement it. The default, [`DefaultClassifier`],
/// counts every `Ok` as a success and every `Err` as a failure.
///
/// ```
/// use tower_breaker::{Classify, Outcome};
///
/// /// Counts only errors whose message says "unavailable" as failures.
/// #[derive(Clone)]
/// struct Unavailable;
///
/// impl<Res> Classify<Res, String> for Unavailable {
///     fn classify(&self, result: &Result<Res, String>) -> Outcome {
///         match result {
///             Err(e) if e.contains("unavailable") => Outcome::Failure,
///             Err(_) => Outcome::Ignored,
///             Ok(_) => Outcome::Success,
///         }
///     }
/// }
///
/// assert_eq!(Unavailable.classify(&Err::<(), _>("service unavailable".to_string())), Outcome::Failure);
/// assert_eq!(Unavailable.classify(&Ok::<_, String>(())), Outcome::Success);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot classify a `Result<{Res}, {E}>`",
    label = "no `Classify<{Res}, {E}>`",
    note = "closures `Fn(&Result<{Res}, {E}>) -> Outcome` implement `Classify`",
    note = "`RetryOnStatus` classifies `http::Response<B>` and `reqwest::Response`; for a breaker over HTTP, use `breaker.http_layer()` (an `HttpClassifier`, a `RecordOutcome`)"
)]
pub trait Classify<Res, E> {
    /// The outcome of one call.
    fn classify(&self, result: &Result<Res, E>) -> Outcome;
}

impl<Res, E, F> Classify<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Outcome,
{
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        self(result)
    }
}

/// `Ok` is a [`Outcome::Success`], `Err` a [`Outcome::Failure`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl<Res, E> Classify<Res, E> for DefaultClassifier {
    #[inline]
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}
