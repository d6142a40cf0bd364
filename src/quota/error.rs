use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A call would not fit in its key's quota within `max_wait`: it was rejected, and the inner
/// service was not called. [`retry_after`](Self::retry_after) says when it would fit.
///
/// A call that costs more than the whole limit of a budget (an estimate of 1,001 tokens
/// against 1,000 a minute) never fits: no wait helps, as the bucket never holds more than
/// its limit, and the provider would refuse it too (OpenAI answers 429 "Request too large").
/// It is rejected at once, whatever `max_wait`, with [`never_fits`](Self::never_fits) true
/// and a [`retry_after`](Self::retry_after) of [`Duration::MAX`]; as a
/// [`Rejection`](crate::rejection::Rejection) it carries no `retry_after`, so no
/// `Retry-After` is made from it.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::quota::{Quota, QuotaExceeded};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let quota = Quota::<&str>::builder("openai").max_wait(Duration::ZERO).build()?;
/// quota.set_limits(&"gpt", Some(1), None); // one request per minute
/// let _first = quota.acquire(&"gpt", 0).await?;
/// let err: QuotaExceeded = quota.acquire(&"gpt", 0).await.unwrap_err();
/// assert_eq!(err.retry_after(), Duration::from_secs(60));
/// assert_eq!(err.to_string(), "quota `openai` for `gpt` exceeded (requests): fits in 60s");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct QuotaExceeded {
    name: Arc<str>,
    key: String,
    retry_after: Duration,
    budget: Exhausted,
}

/// The `retry_after` of a call that never fits.
pub(crate) const NEVER: Duration = Duration::MAX;

/// Which budget a call did not fit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Exhausted {
    /// Requests per window.
    Requests,
    /// Tokens per window.
    Tokens,
    /// The provider answered 429 and asked for a pause that is not over.
    Paused,
}

impl Exhausted {
    /// `requests`, `tokens` or `paused`.
    pub fn as_str(self) -> &'static str {
        match self {
            Exhausted::Requests => "requests",
            Exhausted::Tokens => "tokens",
            Exhausted::Paused => "paused",
        }
    }
}

impl QuotaExceeded {
    pub(crate) fn new(
        name: Arc<str>,
        key: String,
        retry_after: Duration,
        budget: Exhausted,
    ) -> Self {
        Self {
            name,
            key,
            retry_after,
            budget,
        }
    }

    /// The governor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key whose quota is exhausted, as `Display` writes it.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How long from the rejection until the call would fit (if nothing else is admitted
    /// meanwhile); [`Duration::MAX`] for a call that never fits (see
    /// [`never_fits`](Self::never_fits)).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// True when the call costs more than the whole limit of its [`budget`](Self::budget):
    /// it never fits, and retrying it as it is cannot succeed (make it smaller: a shorter
    /// prompt, a lower `max_tokens`).
    ///
    /// ```
    /// use tower_breaker::quota::{Exhausted, Quota};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let quota = Quota::<&str>::builder("openai").tokens_per_window(1_000).build()?;
    /// let err = quota.acquire(&"gpt", 1_001).await.unwrap_err();
    /// assert!(err.never_fits());
    /// assert_eq!(err.budget(), Exhausted::Tokens);
    /// assert_eq!(err.retry_after(), std::time::Duration::MAX);
    /// # Ok(())
    /// # }
    /// ```
    pub fn never_fits(&self) -> bool {
        self.retry_after == NEVER
    }

    /// The budget that did not have room.
    pub fn budget(&self) -> Exhausted {
        self.budget
    }
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.never_fits() {
            return write!(
                f,
                "quota `{}` for `{}` exceeded ({}): the call is larger than the whole limit and never fits",
                self.name,
                self.key,
                self.budget.as_str(),
            );
        }
        write!(
            f,
            "quota `{}` for `{}` exceeded ({}): fits in {:?}",
            self.name,
            self.key,
            self.budget.as_str(),
            self.retry_after
        )
    }
}

impl std::error::Error for QuotaExceeded {}

impl crate::rejection::OwnRejection for QuotaExceeded {
    fn rejection(&self) -> crate::rejection::Rejection<'_> {
        let kind = crate::rejection::RejectionKind::QuotaExceeded;
        // A call that never fits has no time to come back at.
        let retry_after = (!self.never_fits()).then_some(self.retry_after);
        crate::rejection::Rejection::new(kind, self.name(), retry_after)
    }
}
