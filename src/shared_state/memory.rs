use super::{
    FleetMode, FleetState, Notice, Proposal, Proposed, QuotaGrant, QuotaStore, QuotaTake,
    StateStore, StoreError, StoreFuture, WindowCounts,
};
use crate::token_bucket;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// A [`StateStore`] in this process's memory: breakers built with clones of one `MemoryStore`
/// act as one fleet. Deadlines are in `tokio::time`, so paused time drives it in tests.
///
/// [`set_available(false)`](Self::set_available) makes every operation fail, as a store
/// outage would.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    data: Mutex<Data>,
    notices: broadcast::Sender<Notice>,
    available: AtomicBool,
    notify: AtomicBool,
    origin: Instant,
}

#[derive(Default)]
struct Data {
    states: HashMap<String, Entry>,
    probes: HashMap<(String, u64), u32>,
    /// Per breaker and generation: (bucket number, counts), oldest first.
    counts: HashMap<(String, u64), VecDeque<(u64, WindowCounts)>>,
    /// Per quota: the request and token levels, and when they were last refilled.
    quotas: HashMap<String, ([Option<f64>; 2], Instant)>,
}

#[derive(Clone, Copy)]
struct Entry {
    generation: u64,
    mode: FleetMode,
    until: Option<Instant>,
    manual: bool,
}

impl Entry {
    fn state(&self, now: Instant) -> FleetState {
        FleetState {
            generation: self.generation,
            mode: self.mode,
            remaining: self.until.map(|u| u.saturating_duration_since(now)),
            manual: self.manual,
        }
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("available", &self.inner.available.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let (notices, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                data: Mutex::new(Data::default()),
                notices,
                available: AtomicBool::new(true),
                notify: AtomicBool::new(true),
                origin: Instant::now(),
            }),
        }
    }

    /// Makes every operation fail (`false`) or work again (`true`). Coming back, it tells
    /// subscribers to read again, as a re-established subscription does.
    pub fn set_available(&self, available: bool) {
        let was = self.inner.available.swap(available, Ordering::AcqRel);
        if available && !was {
            let _ = self.inner.notices.send(Notice::Resync);
        }
    }

    /// Sends change notifications (`true`, the default) or drops them (`false`), as a lost
    /// pub/sub connection would: replicas then learn of changes by their periodic read.
    pub fn set_notifications(&self, notify: bool) {
        self.inner.notify.store(notify, Ordering::Release);
    }

    /// How many sync tasks (and other subscribers) listen to this store.
    pub fn subscribers(&self) -> usize {
        self.inner.notices.receiver_count()
    }

    /// Forgets every state and reservation, as a store restarted without persistence.
    pub fn clear(&self) {
        let mut data = self.lock();
        data.states.clear();
        data.probes.clear();
        data.counts.clear();
        data.quotas.clear();
    }

    /// The fleet state of `breaker`, read directly.
    pub fn state(&self, breaker: &str) -> FleetState {
        let now = Instant::now();
        self.lock()
            .states
            .get(breaker)
            .map_or(FleetState::UNKNOWN, |e| e.state(now))
    }

    /// Probe slots handed out for the round after fleet generation `round` of `breaker`.
    pub fn reserved_probes(&self, breaker: &str, round: u64) -> u32 {
        self.lock()
            .probes
            .get(&(breaker.to_owned(), round))
            .copied()
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        // No code panics while holding the lock; a poisoned lock still holds valid data.
        self.inner.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.inner.available.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StoreError::new("memory store unavailable"))
        }
    }

    fn propose_now(&self, breaker: &str, proposal: Proposal) -> Result<Proposed, StoreError> {
        self.check()?;
        let now = Instant::now();
        let mut data = self.lock();
        let current = data
            .states
            .get(breaker)
            .map_or(FleetState::UNKNOWN, |e| e.state(now));
        if !proposal.accepted_over(&current) {
            return Ok(Proposed {
                accepted: false,
                state: current,
            });
        }
        let wait = proposal.wait.unwrap_or(Duration::ZERO);
        let entry = Entry {
            generation: current.generation.max(proposal.base) + 1,
            mode: proposal.mode,
            until: proposal.mode.has_deadline().then(|| now + wait),
            manual: proposal.kind == super::ProposalKind::Manual,
        };
        data.states.insert(breaker.to_owned(), entry);
        drop(data);
        let state = entry.state(now);
        if self.inner.notify.load(Ordering::Acquire) {
            let _ = self.inner.notices.send(Notice::Changed {
                breaker: Arc::from(breaker),
                state,
            });
        }
        Ok(Proposed {
            accepted: true,
            state,
        })
    }
}

impl StateStore for MemoryStore {
    fn propose<'a>(&'a self, breaker: &'a str, proposal: Proposal) -> StoreFuture<'a, Proposed> {
        let result = self.propose_now(breaker, proposal);
        Box::pin(async move { result })
    }

    fn load<'a>(&'a self, breaker: &'a str) -> StoreFuture<'a, FleetState> {
        let result = self.check().map(|()| self.state(breaker));
        Box::pin(async move { result })
    }

    fn reserve_probes<'a>(
        &'a self,
        breaker: &'a str,
        round: u64,
        want: u32,
        limit: u32,
    ) -> StoreFuture<'a, u32> {
        let result = self.check().map(|()| {
            let mut data = self.lock();
            let used = data.probes.entry((breaker.to_owned(), round)).or_insert(0);
            let granted = want.min(limit.saturating_sub(*used));
            *used += granted;
            granted
        });
        Box::pin(async move { result })
    }

    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.inner.notices.subscribe()
    }

    fn add_counts<'a>(
        &'a self,
        breaker: &'a str,
        generation: u64,
        counts: WindowCounts,
        window: Duration,
    ) -> StoreFuture<'a, WindowCounts> {
        let result = self.check().map(|()| {
            let bucket_len = (window / 10).max(Duration::from_millis(1));
            let elapsed = self.inner.origin.elapsed();
            let bucket =
                u64::try_from(elapsed.as_nanos() / bucket_len.as_nanos()).unwrap_or(u64::MAX);
            let mut data = self.lock();
            let buckets = data
                .counts
                .entry((breaker.to_owned(), generation))
                .or_default();
            while buckets.front().is_some_and(|(b, _)| b + 10 <= bucket) {
                buckets.pop_front();
            }
            if !counts.is_empty() {
                match buckets.back_mut() {
                    Some((b, total)) if *b == bucket => {
                        total.calls += counts.calls;
                        total.failures += counts.failures;
                        total.slow += counts.slow;
                    }
                    _ => buckets.push_back((bucket, counts)),
                }
            }
            buckets
                .iter()
                .fold(WindowCounts::default(), |sum, (_, c)| WindowCounts {
                    calls: sum.calls + c.calls,
                    failures: sum.failures + c.failures,
                    slow: sum.slow + c.slow,
                })
        });
        Box::pin(async move { result })
    }
}

impl QuotaStore for MemoryStore {
    fn take_quota<'a>(&'a self, quota: &'a str, take: QuotaTake) -> StoreFuture<'a, QuotaGrant> {
        let result = self.check().map(|()| {
            let now = Instant::now();
            let mut data = self.lock();
            let (levels, at) = data
                .quotas
                .entry(quota.to_owned())
                .or_insert(([None, None], now));
            let elapsed = now.saturating_duration_since(*at).as_secs_f64();
            for (level, budget) in levels.iter_mut().zip([take.requests, take.tokens]) {
                if let (Some(l), Some(b)) = (level.as_mut(), budget) {
                    let limit = b.limit as f64;
                    *l = token_bucket::refill(
                        *l,
                        limit,
                        token_bucket::rate(limit, b.window),
                        elapsed,
                    );
                }
            }
            *at = now;
            let (grant, after) = take.apply(*levels);
            *levels = after;
            grant
        });
        Box::pin(async move { result })
    }
}
