use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A call would not fit in its key's quota within `max_wait`: it was rejected, and the inner
/// service was not called. [`retry_after`](Self::retry_after) says when it would fit.
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
    /// meanwhile).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The budget that did not have room.
    pub fn budget(&self) -> Exhausted {
        self.budget
    }
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        crate::rejection::Rejection::new(kind, self.name(), Some(self.retry_after()))
    }
}
