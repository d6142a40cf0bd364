//! Counting a provider's attempts (retries included) from inside its stack.

use std::cell::Cell;

thread_local! {
    /// The attempts counted so far in the provider call a failover is polling on this thread;
    /// `None` outside one.
    static ATTEMPTS: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Counts one attempt of the provider a [`Failover`](super::Failover) is calling, for its
/// [`FailoverReport`](super::FailoverReport). Call it from the layer closest to the network,
/// once per request sent: the
/// [`ProviderErrorLayer`](crate::provider_error::ProviderErrorLayer) (innermost in the `.llm()`
/// stack) does. Outside a failover call it does nothing.
///
/// The count is kept for the provider call being polled on this thread, so it sees every
/// attempt a retry makes within the provider's future (the usual stack), but not calls that a
/// provider's stack hands to another task (`tower::buffer`): those count as one.
///
/// ```
/// use tower::{Service, ServiceExt, service_fn};
/// use tower_breaker::BoxError;
/// use tower_breaker::failover::{Failover, FailoverProtocol, FailoverReport, count_attempt};
///
/// /// Answers are (text, attempts of the provider that answered).
/// struct Mark;
/// impl FailoverProtocol<String, (String, u32)> for Mark {
///     fn clone_request(&self, req: &String) -> Option<String> {
///         Some(req.clone())
///     }
///     fn report(&self, res: &mut (String, u32), report: FailoverReport) {
///         res.1 = report.get(&report.provider).map_or(0, |t| t.attempts);
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// // A provider that sends three times inside (a stand-in for a retry).
/// let thrice = service_fn(|q: String| async move {
///     for _ in 0..3 {
///         count_attempt();
///     }
///     Ok::<_, BoxError>((q, 0))
/// });
/// let mut failover = Failover::builder().protocol(Mark).provider("a", None, thrice).build();
/// assert_eq!(failover.ready().await?.call("hi".into()).await?, ("hi".to_string(), 3));
/// # Ok(())
/// # }
/// ```
pub fn count_attempt() {
    ATTEMPTS.with(|attempts| {
        if let Some(n) = attempts.get() {
            attempts.set(Some(n.saturating_add(1)));
        }
    });
}

/// Runs `f` (one poll of a provider's future) with a fresh count, and returns what it counted;
/// the count of an enclosing failover (a failover as a provider of another) is restored after.
pub(crate) fn counting<T>(f: impl FnOnce() -> T) -> (T, u32) {
    /// Restores the enclosing count, also when `f` panics.
    struct Restore(Option<u32>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ATTEMPTS.with(|attempts| attempts.set(self.0));
        }
    }
    let restore = Restore(ATTEMPTS.with(|attempts| attempts.replace(Some(0))));
    let out = f();
    let counted = ATTEMPTS.with(|attempts| attempts.get()).unwrap_or(0);
    drop(restore);
    (out, counted)
}
