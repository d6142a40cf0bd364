//! Where a fallback answer comes from: a function, a cache of good answers, a backup service.

use crate::BoxError;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::{Future, Ready, ready};
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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

/// A recent good answer per request key, served while it is younger than its time to live;
/// see [`FallbackLayer::cache`](super::FallbackLayer::cache). Bounded: when full, entries
/// past their time to live go first, then the oldest.
///
/// A key's stored answer is replaced by a newer good one at most once per eighth of the time
/// to live: in between, a good answer costs a hash of the key, a clock read and one atomic
/// load (no lock, no clone of the response). The answer served is so at most an eighth of the
/// time to live older than the last good one. Large caches (1,024 entries or more) are split
/// in 16 shards, each with its own lock and an equal share of the bound.
pub struct Cache<K, Res, KF> {
    key: KF,
    shared: Arc<CacheShared<K, Res>>,
}

/// Answers kept in one shard, with when each was stored.
type Answers<K, Res> = HashMap<K, (Res, Instant)>;

struct CacheShared<K, Res> {
    ttl: Duration,
    /// A stored answer younger than this is not replaced (an eighth of `ttl`).
    refresh: Duration,
    max_entries: usize,
    /// Each shard holds at most this many answers (`max_entries` over the shard count).
    per_shard: usize,
    hasher: RandomState,
    shards: Box<[Mutex<Answers<K, Res>>]>,
    /// When each key's answer was last stored, found by the key's hash: lets a good answer
    /// skip the lock while the stored one is fresh. See [`Stored`].
    stored: Box<[Stored]>,
    origin: Instant,
}

/// One slot of the "stored recently" table: the full hash of the key last stored here, and
/// when (milliseconds since the cache was made, plus one; 0: nothing). Two keys may share a
/// slot: the other key then takes the lock, which is only slower. The two words are written
/// (time, then hash) after the answer is in its shard, so a reader that sees its hash knows
/// the answer was stored; a time torn with another key's costs at most one skipped refresh.
struct Stored {
    hash: AtomicU64,
    at_ms: AtomicU64,
}

/// At least this many entries: 16 shards. Below, one shard, so that a small cache evicts
/// exactly its oldest answers.
const SHARDED_FROM: usize = 1_024;
const SHARDS: usize = 16;

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
        let shards = if max_entries >= SHARDED_FROM {
            SHARDS
        } else {
            1
        };
        let slots = max_entries.saturating_mul(2).clamp(16, 1 << 16);
        Self {
            key,
            shared: Arc::new(CacheShared {
                ttl,
                refresh: ttl / 8,
                max_entries,
                per_shard: (max_entries / shards).max(1),
                hasher: RandomState::new(),
                shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
                stored: (0..slots)
                    .map(|_| Stored {
                        hash: AtomicU64::new(0),
                        at_ms: AtomicU64::new(0),
                    })
                    .collect(),
                origin: Instant::now(),
            }),
        }
    }

    /// How many answers the cache holds (fresh or not yet evicted).
    pub fn len(&self) -> usize {
        self.shared.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// True when the cache holds no answer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A poisoned lock only means another thread panicked mid-insert; the map is still a map, so
/// keep using it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K: Hash + Eq, Res> CacheShared<K, Res> {
    fn shard(&self, hash: u64) -> &Mutex<Answers<K, Res>> {
        &self.shards[hash as usize % self.shards.len()]
    }

    fn slot(&self, hash: u64) -> &Stored {
        // The shard takes the low bits; the slot the high ones, so that a shard's keys spread.
        &self.stored[(hash >> 32) as usize % self.stored.len()]
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX - 1)
            + 1
    }

    /// True when `hash`'s answer was stored less than `refresh` ago.
    #[inline]
    fn fresh(&self, hash: u64, now: Instant) -> bool {
        let slot = self.slot(hash);
        // Acquire: pairs with the Release stores in `store`, after the answer's insertion.
        if slot.hash.load(Ordering::Acquire) != hash {
            return false;
        }
        let at = slot.at_ms.load(Ordering::Acquire);
        at != 0 && self.millis(now).saturating_sub(at) < self.refresh.as_millis() as u64
    }

    fn store(&self, hash: u64, key: &K, res: &Res, now: Instant)
    where
        K: Clone,
        Res: Clone,
    {
        let mut entries = lock(self.shard(hash));
        // The slot table is only a fast path: two keys may share a slot (the hasher is seeded
        // at random, so which keys do changes from run to run). The shard has the last word, so
        // a fresh answer is never replaced, and so never cloned, whatever the slot said.
        if let Some((_, at)) = entries.get(key) {
            if now.saturating_duration_since(*at) < self.refresh {
                let stored_at = self.millis(*at);
                let slot = self.slot(hash);
                slot.at_ms.store(stored_at, Ordering::Release);
                slot.hash.store(hash, Ordering::Release);
                return;
            }
        }
        if entries.len() >= self.per_shard && !entries.contains_key(key) {
            // Full: drop what has expired, then, if still full, the oldest eighth, so that the
            // scan is paid once per many inserts rather than on each.
            let ttl = self.ttl;
            let mut gone = Vec::new();
            entries.retain(|k, (_, at)| {
                let keep = now.saturating_duration_since(*at) < ttl;
                if !keep {
                    gone.push(self.hasher.hash_one(k));
                }
                keep
            });
            if entries.len() >= self.per_shard {
                let mut ages: Vec<(Instant, K)> = entries
                    .iter()
                    .map(|(k, (_, at))| (*at, k.clone()))
                    .collect();
                let batch = (self.per_shard / 8).max(1).min(ages.len());
                if batch > 0 {
                    ages.select_nth_unstable_by_key(batch - 1, |(at, _)| *at);
                    for (_, k) in ages.into_iter().take(batch) {
                        gone.push(self.hasher.hash_one(&k));
                        entries.remove(&k);
                    }
                }
            }
            for hash in gone {
                let slot = self.slot(hash);
                if slot.hash.load(Ordering::Relaxed) == hash {
                    slot.at_ms.store(0, Ordering::Release);
                }
            }
        }
        entries.insert(key.clone(), (res.clone(), now));
        let slot = self.slot(hash);
        slot.at_ms.store(self.millis(now), Ordering::Release);
        slot.hash.store(hash, Ordering::Release);
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
        let shared = &*self.shared;
        let hash = shared.hasher.hash_one(key);
        let now = Instant::now();
        if !shared.fresh(hash, now) {
            shared.store(hash, key, res, now);
        }
    }

    fn answer(&self, key: Option<K>, failed: Result<Res, BoxError>) -> Self::Future {
        let shared = &*self.shared;
        let cached = key.and_then(|key| {
            let entries = lock(shared.shard(shared.hasher.hash_one(&key)));
            entries
                .get(&key)
                .and_then(|(res, at)| (at.elapsed() < shared.ttl).then(|| res.clone()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// An answer that counts its clones.
    struct Answer(u32, Arc<AtomicUsize>);

    impl Clone for Answer {
        fn clone(&self) -> Self {
            self.1.fetch_add(1, Ordering::Relaxed);
            Answer(self.0, self.1.clone())
        }
    }

    type KeyFn = fn(&u32) -> Option<u32>;

    fn cache(ttl: Duration, max_entries: usize) -> Cache<u32, Answer, KeyFn> {
        Cache::new(|k: &u32| Some(*k), ttl, max_entries)
    }

    fn served(cache: &Cache<u32, Answer, KeyFn>, key: u32) -> Option<u32> {
        let state = FallbackSource::<u32, Answer>::prepare(cache, &key);
        let answer = cache.answer(state, Err("down".into()));
        match std::pin::pin!(answer).poll(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(result) => result.ok().map(|a| a.0),
            Poll::Pending => panic!("a cache answers at once"),
        }
    }

    /// A good answer is copied into the cache when the stored one is at least an eighth of
    /// the time to live old, not on every call; what is served is never older than that
    /// relative to the last good answer.
    #[tokio::test(start_paused = true)]
    async fn good_answers_are_copied_at_most_once_per_eighth_of_the_ttl() {
        let clones = Arc::new(AtomicUsize::new(0));
        let cache = cache(Duration::from_secs(80), 100);
        let good = |n| Answer(n, clones.clone());
        for n in 0..100 {
            cache.succeeded(&Some(7), &good(n));
        }
        assert_eq!(clones.load(Ordering::Relaxed), 1);
        assert_eq!(served(&cache, 7), Some(0));
        tokio::time::advance(Duration::from_secs(9)).await;
        cache.succeeded(&Some(7), &good(100));
        assert_eq!(
            served(&cache, 7),
            Some(0),
            "replaced before an eighth of the ttl"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        cache.succeeded(&Some(7), &good(101));
        assert_eq!(served(&cache, 7), Some(101));
        tokio::time::advance(Duration::from_secs(80)).await;
        assert_eq!(served(&cache, 7), None, "served past its ttl");
    }

    /// A large cache is split in shards, each with its share of the bound: the whole stays
    /// within `max_entries`, and an answer evicted from a shard is stored again at its next
    /// good call (its "stored recently" mark goes with it).
    #[tokio::test(start_paused = true)]
    async fn a_sharded_cache_stays_within_its_bound_and_stores_evicted_keys_again() {
        let clones = Arc::new(AtomicUsize::new(0));
        let cache = cache(Duration::from_secs(600), 2_048);
        for k in 0..20_000 {
            tokio::time::advance(Duration::from_millis(1)).await;
            cache.succeeded(&Some(k), &Answer(k, clones.clone()));
            assert!(cache.len() <= 2_048, "{} entries", cache.len());
        }
        assert!(
            cache.len() >= 2_048 * 7 / 8 - SHARDS,
            "{} entries",
            cache.len()
        );
        assert_eq!(served(&cache, 19_999), Some(19_999));
        assert_eq!(served(&cache, 0), None);
        cache.succeeded(&Some(0), &Answer(0, clones.clone()));
        assert_eq!(served(&cache, 0), Some(0));
    }
}
