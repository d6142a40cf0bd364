//! Where a fallback answer comes from: a function, a cache of good answers, a backup service.

use crate::BoxError;
use std::collections::HashMap;
use std::fmt;
use std::future::{Future, Ready, ready};
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Instant;
use tower_service::Service;

/// A source of fallback answers for [`Fallback`](super::Fallback).
///
/// `prepare` runs before the call, with the request (to take a cache key or a clone of the
/// request); `succeeded` runs after every answer that needs no fallback (to fill a cache);
/// `answer` makes the fallback answer from what `prepare` kept and the failed result.
///
/// ```
/// use std::future::{Ready, ready};
/// use tower_breaker::BoxError;
/// use tower_breaker::fallback::FallbackSource;
///
/// /// Answers with the request's own text, upper-cased: "degraded mode".
/// #[derive(Clone)]
/// struct Shout;
///
/// impl FallbackSource<String, String> for Shout {
///     type State = String;
///     type Future = Ready<Result<String, BoxError>>;
///     fn prepare(&self, req: &String) -> String {
///         req.clone()
///     }
///     fn answer(&self, req: String, _failed: Result<String, BoxError>) -> Self::Future {
///         ready(Ok(req.to_uppercase()))
///     }
/// }
/// # let _ = Shout;
/// ```
pub trait FallbackSource<Req, Res> {
    /// What `prepare` keeps from the request until the call has finished.
    type State;
    /// The future of the fallback answer.
    type Future: Future<Output = Result<Res, BoxError>>;

    /// Runs before the call.
    fn prepare(&self, req: &Req) -> Self::State;

    /// Runs after a call that needed no fallback. Default: nothing.
    fn succeeded(&self, state: &Self::State, res: &Res) {
        let _ = (state, res);
    }

    /// The fallback answer for a failed call: `failed` is the error, or the response the
    /// predicate rejected.
    fn answer(&self, state: Self::State, failed: Result<Res, BoxError>) -> Self::Future;

    /// A short name for events and logs ("fn", "cache", "backup").
    fn kind(&self) -> &'static str {
        "custom"
    }
}

/// Answers from a function of the failed result; see [`FallbackLayer::from_fn`](super::FallbackLayer::from_fn).
#[derive(Clone)]
pub struct FromFn<F> {
    f: F,
}

impl<F> FromFn<F> {
    pub(crate) fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFn").finish_non_exhaustive()
    }
}

impl<F, Req, Res> FallbackSource<Req, Res> for FromFn<F>
where
    F: Fn(Result<Res, BoxError>) -> Result<Res, BoxError>,
{
    type State = ();
    type Future = Ready<Result<Res, BoxError>>;

    fn prepare(&self, _req: &Req) {}

    fn answer(&self, _state: (), failed: Result<Res, BoxError>) -> Self::Future {
        ready((self.f)(failed))
    }

    fn kind(&self) -> &'static str {
        "fn"
    }
}

/// The last good answer per request key, served while it is younger than its time to live;
/// see [`FallbackLayer::cache`](super::FallbackLayer::cache). Bounded: when full, entries
/// past their time to live go first, then the oldest.
pub struct Cache<K, Res, KF> {
    key: KF,
    shared: Arc<CacheShared<K, Res>>,
}

struct CacheShared<K, Res> {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<K, (Res, Instant)>>,
}

impl<K, Res, KF: Clone> Clone for Cache<K, Res, KF> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<K, Res, KF> fmt::Debug for Cache<K, Res, KF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("ttl", &self.shared.ttl)
            .field("max_entries", &self.shared.max_entries)
            .finish_non_exhaustive()
    }
}

impl<K, Res, KF> Cache<K, Res, KF> {
    pub(crate) fn new(key: KF, ttl: Duration, max_entries: usize) -> Self {
        Self {
            key,
            shared: Arc::new(CacheShared {
                ttl,
                max_entries,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// How many answers the cache holds (fresh or not yet evicted).
    pub fn len(&self) -> usize {
        self.shared.entries.lock().map_or(0, |e| e.len())
    }

    /// True when the cache holds no answer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, Req, Res, KF> FallbackSource<Req, Res> for Cache<K, Res, KF>
where
    K: Hash + Eq + Clone,
    Res: Clone,
    KF: Fn(&Req) -> Option<K>,
{
    type State = Option<K>;
    type Future = Ready<Result<Res, BoxError>>;

    fn prepare(&self, req: &Req) -> Option<K> {
        (self.key)(req)
    }

    fn succeeded(&self, key: &Option<K>, res: &Res) {
        let Some(key) = key else { return };
        // A poisoned lock only means another thread panicked mid-insert; the map is still a
        // map, so keep using it.
        let mut entries = self
            .shared
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if entries.len() >= self.shared.max_entries && !entries.contains_key(key) {
            // Full: drop what has expired, then, if still full, the oldest eighth, so that the
            // scan is paid once per many inserts rather than on each.
            let ttl = self.shared.ttl;
            entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            if entries.len() >= self.shared.max_entries {
                let mut ages: Vec<(Instant, K)> = entries
                    .iter()
                    .map(|(k, (_, at))| (*at, k.clone()))
                    .collect();
                let batch = (self.shared.max_entries / 8).max(1).min(ages.len());
                if batch > 0 {
                    ages.select_nth_unstable_by_key(batch - 1, |(at, _)| *at);
                    for (_, k) in ages.into_iter().take(batch) {
                        entries.remove(&k);
                    }
                }
            }
        }
        entries.insert(key.clone(), (res.clone(), now));
    }

    fn answer(&self, key: Option<K>, failed: Result<Res, BoxError>) -> Self::Future {
        let cached = key.and_then(|key| {
            let entries = self
                .shared
                .entries
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            entries
                .get(&key)
                .and_then(|(res, at)| (at.elapsed() < self.shared.ttl).then(|| res.clone()))
        });
        ready(match cached {
            Some(res) => Ok(res),
            None => failed,
        })
    }

    fn kind(&self) -> &'static str {
        "cache"
    }
}

/// Calls a backup service with a clone of the request; see
/// [`FallbackLayer::backup`](super::FallbackLayer::backup).
#[derive(Debug, Clone)]
pub struct Backup<S> {
    service: S,
}

impl<S> Backup<S> {
    pub(crate) fn new(service: S) -> Self {
        Self { service }
    }
}

impl<S, Req, Res> FallbackSource<Req, Res> for Backup<S>
where
    S: Service<Req, Response = Res> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
{
    type State = Req;
    type Future = Oneshot<S, Req>;

    fn prepare(&self, req: &Req) -> Req {
        req.clone()
    }

    fn answer(&self, req: Req, _failed: Result<Res, BoxError>) -> Self::Future {
        Oneshot::new(self.service.clone(), req)
    }

    fn kind(&self) -> &'static str {
        "backup"
    }
}

pin_project_lite::pin_project! {
    /// Polls a service ready, then calls it once.
    pub struct Oneshot<S: Service<Req>, Req> {
        #[pin]
        state: OneshotState<S, Req>,
    }
}

pin_project_lite::pin_project! {
    #[project = OneshotProj]
    enum OneshotState<S: Service<Req>, Req> {
        Ready { service: S, req: Option<Req> },
        Called { #[pin] future: S::Future },
    }
}

impl<S: Service<Req>, Req> Oneshot<S, Req> {
    pub(crate) fn new(service: S, req: Req) -> Self {
        Self {
            state: OneshotState::Ready {
                service,
                req: Some(req),
            },
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for Oneshot<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Oneshot").finish_non_exhaustive()
    }
}

impl<S, Req> Future for Oneshot<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                OneshotProj::Ready { service, req } => {
                    if let Err(e) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Err(e.into()));
                    }
                    let Some(req) = req.take() else {
                        return Poll::Ready(Err("oneshot polled after completion".into()));
                    };
                    let future = service.call(req);
                    this.state.set(OneshotState::Called { future });
                }
                OneshotProj::Called { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
            }
        }
    }
}
