//! The dashboard's registry of components, its settings, and the shared sampler.

use super::snapshot::{
    self, AdaptiveView, BreakerView, BulkheadView, DashboardSnapshot, HedgeView, HistoryPoint,
    KeyedView, QuotaView,
};
use crate::ConfigError;
use crate::bulkhead::{AdaptiveBulkhead, Bulkhead};
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerMetrics, CircuitState};
use crate::config::Check;
use crate::keyed::KeyedCircuitBreakers;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

type KeyedSource = Box<dyn Fn(usize) -> KeyedView + Send + Sync>;
type QuotaSource = Box<dyn Fn(usize) -> QuotaView + Send + Sync>;
type HedgeSource = Box<dyn Fn() -> HedgeView + Send + Sync>;

#[derive(Default)]
struct Sources {
    breakers: Vec<CircuitBreaker>,
    bulkheads: Vec<Bulkhead>,
    adaptive: Vec<AdaptiveBulkhead>,
    keyed: Vec<KeyedSource>,
    quotas: Vec<QuotaSource>,
    hedges: Vec<HedgeSource>,
}

/// What the dashboard remembers of one breaker between samples.
struct Track {
    state: CircuitState,
    since: Instant,
    /// True when `since` is the time of the change to within a tick; false when it is only
    /// when the dashboard first saw the state (which may have held long before).
    exact: bool,
    /// The last sample that read this breaker.
    seen_at: Instant,
    history: VecDeque<HistoryPoint>,
}

#[derive(Default)]
struct Sampler {
    seq: u64,
    /// One per registered breaker, by registration order.
    tracks: Vec<Track>,
    /// The last sample, its time, and its JSON: clients within half a tick share it.
    last: Option<(Instant, Arc<DashboardSnapshot>, Arc<str>)>,
    /// When a point was last added to the histories: one per tick, however many clients.
    last_history: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    pub(super) tick: Duration,
    pub(super) history: usize,
    pub(super) max_keys_listed: usize,
    pub(super) max_clients: usize,
}

pub(super) struct Inner {
    pub(super) settings: Settings,
    sources: RwLock<Sources>,
    sampler: Mutex<Sampler>,
    /// Streams running now (at most `max_clients`).
    pub(super) clients: AtomicUsize,
}

/// The components a dashboard shows, and its settings; a cheap `Clone` handle (clones share
/// everything). Serve it with [`router`](Self::router); see the [module docs](super).
///
/// ```
/// use tower_breaker::circuit_breaker::CircuitBreaker;
/// use tower_breaker::dashboard::Dashboard;
///
/// let openai = CircuitBreaker::builder("openai").build()?;
/// let dashboard = Dashboard::new();
/// dashboard.register_breaker(&openai);
/// openai.force_open();
/// let snapshot = dashboard.snapshot();
/// assert_eq!(snapshot.breakers[0].state, "forced_open");
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Dashboard {
    pub(super) inner: Arc<Inner>,
}

impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sources = self.sources();
        f.debug_struct("Dashboard")
            .field("settings", &self.inner.settings)
            .field("breakers", &sources.breakers.len())
            .field("bulkheads", &sources.bulkheads.len())
            .field("adaptive", &sources.adaptive.len())
            .field("keyed", &sources.keyed.len())
            .field("quotas", &sources.quotas.len())
            .field("hedges", &sources.hedges.len())
            .field("clients", &self.inner.clients.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for Dashboard {
    fn default() -> Self {
        Self::new()
    }
}

/// Settings of a [`Dashboard`]; see [`Dashboard::builder`].
#[derive(Debug, Clone)]
pub struct DashboardBuilder {
    tick: Duration,
    history: usize,
    max_keys_listed: usize,
    max_clients: usize,
}

impl DashboardBuilder {
    /// The interval between two events of the stream (and two points of a sparkline).
    /// Default 500 ms; 50 ms to 60 s.
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// The points kept in each breaker's sparkline. Default 120 (a minute at 500 ms); 1 to
    /// 3,600.
    pub fn history(mut self, points: usize) -> Self {
        self.history = points;
        self
    }

    /// The keys of a keyed registry or a quota listed one by one (the worst ones); the others
    /// are counted. Default 20; 1 to 1,000.
    pub fn max_keys_listed(mut self, keys: usize) -> Self {
        self.max_keys_listed = keys;
        self
    }

    /// The streams that may run at once; more are answered `503`. Default 32; 1 to 10,000.
    pub fn max_clients(mut self, clients: usize) -> Self {
        self.max_clients = clients;
        self
    }

    /// The dashboard, or the setting that is out of range.
    pub fn build(self) -> Result<Dashboard, ConfigError> {
        let check = Check {
            component: "dashboard",
        };
        // Compared as durations: whole milliseconds would let 60 s and a fraction through.
        let tick = check.duration(
            "tick",
            self.tick,
            Duration::from_millis(50),
            Duration::from_secs(60),
        )?;
        let history = check.range_u64("history", self.history as u64, 1, 3_600)?;
        let listed = check.range_u64("max_keys_listed", self.max_keys_listed as u64, 1, 1_000)?;
        let clients = check.range_u64("max_clients", self.max_clients as u64, 1, 10_000)?;
        Ok(Dashboard::with_settings(Settings {
            tick,
            // In range above, so each fits a usize.
            history: history as usize,
            max_keys_listed: listed as usize,
            max_clients: clients as usize,
        }))
    }
}

impl Dashboard {
    /// A dashboard with the default settings and nothing registered.
    pub fn new() -> Self {
        Self::with_settings(Settings {
            tick: Duration::from_millis(500),
            history: 120,
            max_keys_listed: 20,
            max_clients: 32,
        })
    }

    /// A builder for other settings.
    ///
    /// | setting | default |
    /// |---|---|
    /// | `tick` | 500 ms |
    /// | `history` | 120 points |
    /// | `max_keys_listed` | 20 |
    /// | `max_clients` | 32 |
    pub fn builder() -> DashboardBuilder {
        DashboardBuilder {
            tick: Duration::from_millis(500),
            history: 120,
            max_keys_listed: 20,
            max_clients: 32,
        }
    }

    fn with_settings(settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                sources: RwLock::new(Sources::default()),
                sampler: Mutex::new(Sampler::default()),
                clients: AtomicUsize::new(0),
            }),
        }
    }

    // A poisoned lock means a panic elsewhere during a push or a sample; what it guards is a
    // list of handles and the sampler's memory, still fit to read and to overwrite.
    fn sources(&self) -> std::sync::RwLockReadGuard<'_, Sources> {
        self.inner
            .sources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, f: impl FnOnce(&mut Sources)) -> &Self {
        f(&mut self
            .inner
            .sources
            .write()
            .unwrap_or_else(PoisonError::into_inner));
        self
    }

    /// Shows a breaker (a clone of the handle: the dashboard sees its live state).
    pub fn register_breaker(&self, breaker: &CircuitBreaker) -> &Self {
        self.add(|s| s.breakers.push(breaker.clone()))
    }

    /// Shows a bulkhead: calls running and waiting, rejections.
    pub fn register_bulkhead(&self, bulkhead: &Bulkhead) -> &Self {
        self.add(|s| s.bulkheads.push(bulkhead.clone()))
    }

    /// Shows an adaptive bulkhead: its limit now, calls running and waiting, rejections.
    pub fn register_adaptive(&self, bulkhead: &AdaptiveBulkhead) -> &Self {
        self.add(|s| s.adaptive.push(bulkhead.clone()))
    }

    /// Shows a keyed registry, aggregated: keys per state and the worst keys.
    pub fn register_keyed<K>(&self, keyed: &KeyedCircuitBreakers<K>) -> &Self
    where
        K: Clone + fmt::Display + Send + Sync + 'static,
    {
        let keyed = keyed.clone();
        let source: KeyedSource = Box::new(move |max_listed| {
            let keys = keyed
                .metrics()
                .into_iter()
                .map(|(k, m)| (k.to_string(), m))
                .collect();
            snapshot::keyed_view(keyed.name().to_string(), keyed.evicted(), keys, max_listed)
        });
        self.add(|s| s.keyed.push(source))
    }

    /// Shows a quota governor, aggregated: its key count and the keys with the least left.
    #[cfg(feature = "quota")]
    #[cfg_attr(docsrs, doc(cfg(feature = "quota")))]
    pub fn register_quota<K>(&self, quota: &crate::quota::Quota<K>) -> &Self
    where
        K: std::hash::Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    {
        let quota = quota.clone();
        let source: QuotaSource = Box::new(move |max_listed| {
            // One short lock to copy the keys, then one per key: a call is never kept waiting
            // for the whole list.
            let keys = quota
                .keys()
                .into_iter()
                .filter_map(|key| {
                    let s = quota.snapshot(&key)?;
                    Some(snapshot::QuotaKeyView {
                        key: key.to_string(),
                        requests_limit: s.requests_limit,
                        requests_left: s.requests_available,
                        tokens_limit: s.tokens_limit,
                        tokens_left: s.tokens_available,
                        paused_ms: millis(s.paused_for),
                    })
                })
                .collect();
            snapshot::quota_view(quota.name().to_string(), keys, max_listed)
        });
        self.add(|s| s.quotas.push(source))
    }

    /// Shows a hedge under `name`: calls, hedges and their rate, wins, refusals.
    #[cfg(feature = "stream")]
    #[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
    pub fn register_hedge<S, Req>(
        &self,
        name: impl Into<String>,
        hedge: &crate::stream::Hedge<S, Req>,
    ) -> &Self
    where
        S: Clone,
        crate::stream::Hedge<S, Req>: Send + Sync + 'static,
    {
        let name = name.into();
        let hedge = hedge.clone();
        let source: HedgeSource = Box::new(move || {
            let s = hedge.stats();
            HedgeView {
                name: name.clone(),
                calls: s.calls,
                hedges: s.hedges,
                hedge_rate: if s.calls == 0 {
                    0.0
                } else {
                    s.hedges as f64 / s.calls as f64
                },
                hedge_wins: s.hedge_wins,
                declined: s.declined_budget + s.declined_breaker + s.declined_not_idempotent,
            }
        });
        self.add(|s| s.hedges.push(source))
    }

    /// Every registered component now (a new sample; its breakers' histories gain a point if
    /// a tick has passed since the last one).
    pub fn snapshot(&self) -> DashboardSnapshot {
        let mut sampler = self.sampler();
        self.sample(&mut sampler).1.as_ref().clone()
    }

    fn sampler(&self) -> std::sync::MutexGuard<'_, Sampler> {
        self.inner
            .sampler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The JSON of a sample at most half a tick old: clients of the stream share it.
    pub(super) fn shared_json(&self) -> Arc<str> {
        let mut sampler = self.sampler();
        if let Some((at, _, json)) = &sampler.last {
            if at.elapsed() < self.inner.settings.tick / 2 {
                return json.clone();
            }
        }
        self.sample(&mut sampler).2
    }

    /// Takes a new sample (under the sampler's lock, which only the dashboard takes).
    fn sample(&self, sampler: &mut Sampler) -> (Instant, Arc<DashboardSnapshot>, Arc<str>) {
        let settings = self.inner.settings;
        let now = Instant::now();
        let add_point = sampler
            .last_history
            .is_none_or(|last| now.duration_since(last) >= settings.tick);
        if add_point {
            sampler.last_history = Some(now);
        }
        sampler.seq += 1;
        let sources = self.sources();
        let breakers = sources
            .breakers
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let m = b.metrics();
                if sampler.tracks.len() <= i {
                    sampler.tracks.push(Track {
                        state: m.state,
                        since: now,
                        exact: false,
                        seen_at: now,
                        history: VecDeque::new(),
                    });
                }
                let track = &mut sampler.tracks[i];
                breaker_view(b, m, track, now, add_point, &settings)
            })
            .collect();
        let snapshot = DashboardSnapshot {
            seq: sampler.seq,
            taken_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, millis),
            tick_ms: millis(settings.tick),
            breakers,
            bulkheads: sources.bulkheads.iter().map(bulkhead_view).collect(),
            adaptive: sources.adaptive.iter().map(adaptive_view).collect(),
            keyed: sources
                .keyed
                .iter()
                .map(|k| k(settings.max_keys_listed))
                .collect(),
            quotas: sources
                .quotas
                .iter()
                .map(|q| q(settings.max_keys_listed))
                .collect(),
            hedges: sources.hedges.iter().map(|h| h()).collect(),
        };
        drop(sources);
        // Serialising plain structs of numbers and strings does not fail; were it to, the
        // stream still gets a valid (empty) event rather than an error.
        let json: Arc<str> = serde_json::to_string(&snapshot)
            .unwrap_or_else(|_| "{}".to_string())
            .into();
        let snapshot = Arc::new(snapshot);
        sampler.last = Some((now, snapshot.clone(), json.clone()));
        (now, snapshot, json)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn breaker_view(
    b: &CircuitBreaker,
    m: CircuitBreakerMetrics,
    track: &mut Track,
    now: Instant,
    add_point: bool,
    settings: &Settings,
) -> BreakerView {
    if track.state != m.state {
        // The change happened since the previous sample: its time is known only when that
        // sample is recent (clients connected). After a gap, "at least since now".
        track.state = m.state;
        track.since = now;
        track.exact = now.duration_since(track.seen_at) <= settings.tick * 2;
    }
    track.seen_at = now;
    if add_point {
        if track.history.len() >= settings.history {
            track.history.pop_front();
        }
        track.history.push_back(HistoryPoint {
            state: m.state.as_str(),
            failure_rate: m.failure_rate,
        });
    }
    BreakerView {
        name: b.name().to_string(),
        state: m.state.as_str(),
        colour: snapshot::colour(m.state),
        in_state_ms: millis(now.duration_since(track.since)),
        in_state_at_least: !track.exact,
        failure_rate: m.failure_rate,
        slow_call_rate: m.slow_call_rate,
        calls: m.calls,
        failed_calls: m.failed_calls,
        slow_calls: m.slow_calls,
        rejected: m.not_permitted_calls,
        retry_after_ms: b.retry_after().map(millis),
        history: track.history.iter().copied().collect(),
    }
}

fn bulkhead_view(b: &Bulkhead) -> BulkheadView {
    let m = b.metrics();
    BulkheadView {
        name: b.name().to_string(),
        active: m.active,
        max_concurrent: m.max_concurrent,
        queued: m.queued,
        max_queue: m.max_queue,
        rejected_full: m.rejected_full,
        rejected_timeout: m.rejected_timeout,
    }
}

fn adaptive_view(b: &AdaptiveBulkhead) -> AdaptiveView {
    let m = b.metrics();
    AdaptiveView {
        name: b.name().to_string(),
        limit: m.limit,
        active: m.active,
        queued: m.queued,
        rejected_full: m.rejected_full,
        rejected_timeout: m.rejected_timeout,
    }
}
