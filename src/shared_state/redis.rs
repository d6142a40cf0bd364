use super::{
    FleetMode, FleetState, Notice, Proposal, ProposalKind, Proposed, QuotaGrant, QuotaStore,
    QuotaTake, StateStore, StoreError, StoreFuture, WindowCounts,
};
use crate::config::{Check, MAX_DURATION, MIN_DURATION};
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// A [`StateStore`] in Redis: the fleet state of each breaker in one hash, probe reservations
/// in counters, changes announced on one pub/sub channel.
///
/// Keys, under the prefix (default `tower-breaker`):
///
/// | key | what |
/// |---|---|
/// | `{prefix}:breaker:{name}` | hash: `gen`, `mode`, `until` (ms, Redis clock), `kind` |
/// | `{prefix}:breaker:{name}:probes:{gen}` | probe slots handed out for a round |
/// | `{prefix}:breaker:{name}:counts:{gen}` | hash of per-bucket counts, for [`fleet_failure_rate`](super::SharedState::fleet_failure_rate) |
/// | `{prefix}:quota:{name}` | hash: `r`, `t` (request and token levels), `at` (ms, Redis clock), for [`Quota`](crate::quota::Quota) governors |
/// | `{prefix}:events` (channel) | `"{gen} {mode} {ms left} {kind} {name}"` per change |
///
/// Every key expires: a state `key_ttl` (default 24 h) after it was last written or read (each
/// replica reads it every `sync_interval`, so only abandoned breakers expire), and a round's
/// reservations `key_ttl` after the round. Every change is one Lua script (`TIME`, compare,
/// write, `PUBLISH`), so it is atomic; deadlines are in Redis's clock. Needs Redis 5 or later,
/// and a writable primary (every read also refreshes the key's expiry).
///
/// Commands go through a [`ConnectionManager`] that reconnects on its own; each is bounded by
/// `timeout` (default 250 ms). A second connection subscribes to the channel and is set up
/// again, with backoff, whenever it drops; each new subscription tells the breakers to read
/// the state again.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_breaker::circuit_breaker::CircuitBreaker;
/// use tower_breaker::keyed::KeyedCircuitBreakers;
/// use tower_breaker::shared_state::{RedisStore, SharedState};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// // `rediss://` (TLS) needs the `redis-tls` feature.
/// let store = RedisStore::builder("redis://cache.internal:6379/0")
///     .prefix("checkout")                 // one prefix per fleet sharing this Redis
///     .timeout(Duration::from_millis(100))
///     .build()?;
/// // One fleet-wide breaker per model, every replica sharing each model's state.
/// let template = CircuitBreaker::builder("model").shared_state(SharedState::new(store));
/// let models = KeyedCircuitBreakers::<String>::builder(template).build()?;
/// let _ = models.get(&"gpt-4o".to_string()).try_acquire();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: ConnectionManager,
    prefix: String,
    channel: String,
    key_ttl: Duration,
    timeout: Duration,
    notices: broadcast::Sender<Notice>,
    listener: JoinHandle<()>,
    propose: Script,
    load: Script,
    reserve: Script,
    counts: Script,
    quota: Script,
    /// True during an outage (logged once).
    down: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("key_ttl", &self.inner.key_ttl)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisStore`]; see [`RedisStore::builder`].
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    key_ttl: Duration,
    timeout: Duration,
}

impl RedisStore {
    /// A builder for the Redis at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: "tower-breaker".to_owned(),
            key_ttl: Duration::from_secs(24 * 60 * 60),
            timeout: Duration::from_millis(250),
        }
    }

    /// The key of `breaker`'s state hash.
    pub fn state_key(&self, breaker: &str) -> String {
        format!("{}:breaker:{breaker}", self.inner.prefix)
    }

    fn probes_key(&self, breaker: &str, round: u64) -> String {
        format!("{}:breaker:{breaker}:probes:{round}", self.inner.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.inner.key_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `op` within the timeout; logs an outage once when it begins (and once when it
    /// ends), for every breaker on this store.
    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.inner.timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError::new(e)),
            Err(_) => Err(StoreError::new(format!(
                "no answer from Redis within {:?}",
                self.inner.timeout
            ))),
        };
        match &result {
            Ok(_) if self.inner.down.swap(false, Ordering::AcqRel) => {
                tracing::info!(prefix = %self.inner.prefix, "Redis reachable again; breakers resync");
            }
            Err(error) if !self.inner.down.swap(true, Ordering::AcqRel) => {
                tracing::warn!(
                    prefix = %self.inner.prefix,
                    %error,
                    "Redis unreachable; breakers decide on local state until it is back"
                );
            }
            _ => {}
        }
        result
    }
}

impl RedisStoreBuilder {
    /// The prefix of every key and of the channel (default `tower-breaker`). Give each
    /// application (or environment) sharing one Redis its own.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a state that nobody reads or writes is kept (default 24 h; 1 s ..= 30 days).
    pub fn key_ttl(mut self, ttl: Duration) -> Self {
        self.key_ttl = ttl;
        self
    }

    /// The longest wait for one Redis operation (default 250 ms; 1 ms ..= 24 h). A store that
    /// does not answer in time counts as down: the breakers go on locally.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings and starts the store. Connects lazily: a Redis that is down now is
    /// not an error (the breakers work locally until it is up). Must run inside a Tokio
    /// runtime (it starts the subscriber task).
    pub fn build(self) -> Result<RedisStore, StoreError> {
        let check = Check {
            component: "redis store",
        };
        check
            .duration(
                "key_ttl",
                self.key_ttl,
                Duration::from_secs(1),
                Duration::from_secs(30 * 24 * 60 * 60),
            )
            .map_err(StoreError::new)?;
        check
            .duration("timeout", self.timeout, MIN_DURATION, MAX_DURATION)
            .map_err(StoreError::new)?;
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return Err(StoreError::new(crate::ConfigError::new(
                "redis store",
                "prefix",
                &self.prefix,
                "a non-empty string without whitespace",
            )));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::new("a RedisStore is built inside a Tokio runtime"))?;
        let client = Client::open(self.url.as_str()).map_err(StoreError::new)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_secs(1));
        let connection = {
            let _enter = runtime.enter();
            ConnectionManager::new_lazy_with_config(client.clone(), config)
                .map_err(StoreError::new)?
        };
        let channel = format!("{}:events", self.prefix);
        let (notices, _) = broadcast::channel(1024);
        let listener = runtime.spawn(listen(
            client,
            channel.clone(),
            notices.clone(),
            self.timeout,
        ));
        Ok(RedisStore {
            inner: Arc::new(Inner {
                connection,
                prefix: self.prefix,
                channel,
                key_ttl: self.key_ttl,
                timeout: self.timeout,
                notices,
                listener,
                propose: Script::new(PROPOSE),
                load: Script::new(LOAD),
                reserve: Script::new(RESERVE),
                counts: Script::new(COUNTS),
                quota: Script::new(QUOTA),
                down: AtomicBool::new(false),
            }),
        })
    }
}

/// Time left in ms (or -1) to a `FleetState` field.
fn remaining(mode: FleetMode, ms: i64) -> Option<Duration> {
    mode.has_deadline()
        .then(|| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn state(generation: i64, mode: &str, left: i64, kind: &str) -> Result<FleetState, StoreError> {
    let mode = FleetMode::parse(mode)
        .ok_or_else(|| StoreError::new(format!("unknown fleet mode {mode:?} in Redis")))?;
    Ok(FleetState {
        generation: u64::try_from(generation).unwrap_or(0),
        mode,
        remaining: remaining(mode, left),
        manual: kind == ProposalKind::Manual.as_str(),
    })
}

impl StateStore for RedisStore {
    fn propose<'a>(&'a self, breaker: &'a str, proposal: Proposal) -> StoreFuture<'a, Proposed> {
        Box::pin(async move {
            let mut conn = self.inner.connection.clone();
            let wait: i64 = match (proposal.mode.has_deadline(), proposal.wait) {
                // Bounded like any configured wait, so the script's numbers stay exact.
                (true, wait) => ms(wait.unwrap_or_default().min(MAX_DURATION)) as i64,
                (false, _) => -1,
            };
            let mut invocation = self.inner.propose.key(self.state_key(breaker));
            invocation
                .arg(proposal.base)
                .arg(proposal.mode.as_str())
                .arg(wait)
                .arg(proposal.kind.as_str())
                .arg(self.ttl_ms())
                .arg(&self.inner.channel)
                .arg(breaker);
            let (accepted, generation, mode, left, kind): (i64, i64, String, i64, String) =
                self.bounded(invocation.invoke_async(&mut conn)).await?;
            Ok(Proposed {
                accepted: accepted == 1,
                state: state(generation, &mode, left, &kind)?,
            })
        })
    }

    fn load<'a>(&'a self, breaker: &'a str) -> StoreFuture<'a, FleetState> {
        Box::pin(async move {
            let mut conn = self.inner.connection.clone();
            let mut invocation = self.inner.load.key(self.state_key(breaker));
            invocation.arg(self.ttl_ms());
            let (generation, mode, left, kind): (i64, String, i64, String) =
                self.bounded(invocation.invoke_async(&mut conn)).await?;
            state(generation, &mode, left, &kind)
        })
    }

    fn reserve_probes<'a>(
        &'a self,
        breaker: &'a str,
        round: u64,
        want: u32,
        limit: u32,
    ) -> StoreFuture<'a, u32> {
        Box::pin(async move {
            let mut conn = self.inner.connection.clone();
            let mut invocation = self.inner.reserve.key(self.probes_key(breaker, round));
            invocation.arg(want).arg(limit).arg(self.ttl_ms());
            let granted: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
            Ok(u32::try_from(granted).unwrap_or(0))
        })
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
        Box::pin(async move {
            let mut conn = self.inner.connection.clone();
            let key = format!(
                "{}:breaker:{breaker}:counts:{generation}",
                self.inner.prefix
            );
            let mut invocation = self.inner.counts.key(key);
            invocation
                .arg(counts.calls)
                .arg(counts.failures)
                .arg(counts.slow)
                .arg(ms(window / 10).max(1));
            let (calls, failures, slow): (u64, u64, u64) =
                self.bounded(invocation.invoke_async(&mut conn)).await?;
            Ok(WindowCounts {
                calls,
                failures,
                slow,
            })
        })
    }
}

impl QuotaStore for RedisStore {
    fn take_quota<'a>(&'a self, quota: &'a str, take: QuotaTake) -> StoreFuture<'a, QuotaGrant> {
        Box::pin(async move {
            let mut conn = self.inner.connection.clone();
            let mut invocation = self
                .inner
                .quota
                .key(format!("{}:quota:{quota}", self.inner.prefix));
            for budget in [take.requests, take.tokens] {
                match budget {
                    Some(b) => {
                        let ceiling = b.ceiling.map_or("none".to_owned(), |c| format!("{c:.17e}"));
                        invocation
                            .arg(b.limit)
                            .arg(ms(b.window).max(1))
                            .arg(b.cost)
                            .arg(ceiling)
                    }
                    None => invocation.arg(0).arg(1).arg(0).arg("none"),
                };
            }
            let max_wait_us = take.max_wait.map_or(-1, |w| {
                i64::try_from(w.min(MAX_DURATION).as_micros()).unwrap_or(i64::MAX)
            });
            invocation.arg(max_wait_us).arg(self.ttl_ms());
            let (granted, wait_us, which): (i64, i64, i64) =
                self.bounded(invocation.invoke_async(&mut conn)).await?;
            // -1: the call never fits (`QuotaTake::apply`'s `Duration::MAX`).
            let wait = u64::try_from(wait_us).map_or(Duration::MAX, Duration::from_micros);
            Ok(if granted == 1 {
                QuotaGrant::Granted { wait }
            } else {
                QuotaGrant::Refused {
                    retry_after: wait,
                    tokens: which == 2,
                }
            })
        })
    }
}

/// Keeps a subscription to `channel`, forwarding each change; set up again with backoff
/// whenever the connection drops.
async fn listen(
    client: Client,
    channel: String,
    notices: broadcast::Sender<Notice>,
    timeout: Duration,
) {
    const MIN_DELAY: Duration = Duration::from_millis(20);
    const MAX_DELAY: Duration = Duration::from_secs(2);
    let mut delay = MIN_DELAY;
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        };
        match tokio::time::timeout(timeout, subscribed).await {
            Ok(Ok(pubsub)) => {
                delay = MIN_DELAY;
                // Changes made while unsubscribed were missed: have every breaker read again.
                let _ = notices.send(Notice::Resync);
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    if let Some(notice) = parse_notice(message.get_payload_bytes()) {
                        let _ = notices.send(notice);
                    }
                }
                tracing::debug!(%channel, "Redis subscription lost; subscribing again");
            }
            Ok(Err(e)) => tracing::debug!(%channel, error = %e, "Redis subscription failed"),
            Err(_) => tracing::debug!(%channel, "Redis subscription timed out"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}

/// `"{gen} {mode} {ms left or -1} {kind} {name}"` (the name may contain spaces).
fn parse_notice(payload: &[u8]) -> Option<Notice> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(5, ' ');
    let generation: i64 = parts.next()?.parse().ok()?;
    let mode = parts.next()?;
    let left: i64 = parts.next()?.parse().ok()?;
    let kind = parts.next()?;
    let name = parts.next()?;
    let state = state(generation, mode, left, kind).ok()?;
    Some(Notice::Changed {
        breaker: Arc::from(name),
        state,
    })
}

/// Shared by the scripts: `now` in ms (Redis clock) and the time left to a deadline.
macro_rules! lua_prelude {
    () => {
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function left(u)
  if u < 0 then return -1 end
  if u <= now then return 0 end
  return u - now
end
"#
    };
}

/// KEYS[1]: state hash. ARGV: base, mode, wait ms (-1: none), kind, ttl ms, channel, name.
/// Returns {accepted, gen, mode, ms left, kind}.
const PROPOSE: &str = concat!(
    lua_prelude!(),
    r#"
local cur = redis.call('HMGET', KEYS[1], 'gen', 'mode', 'until', 'kind')
local gen = tonumber(cur[1]) or 0
local mode = cur[2] or 'closed'
local untl = tonumber(cur[3]) or -1
local curkind = cur[4] or 'decision'
local base = tonumber(ARGV[1])
local kind = ARGV[4]
local open = not (mode == 'closed' or mode == 'rate_limited')
local ok = kind == 'manual' or base == gen
  or (base > gen and not (ARGV[2] == 'closed' and open))
  or (kind == 'trip' and not open)
if not ok then
  return {0, gen, mode, left(untl), curkind}
end
local wait = tonumber(ARGV[3])
local newgen = math.max(gen, base) + 1
local newuntil = -1
if wait >= 0 then newuntil = now + wait end
redis.call('HSET', KEYS[1], 'gen', newgen, 'mode', ARGV[2], 'until', newuntil, 'kind', kind)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local l = left(newuntil)
redis.call('PUBLISH', ARGV[6], string.format('%d %s %d %s %s', newgen, ARGV[2], l, kind, ARGV[7]))
return {1, newgen, ARGV[2], l, kind}
"#
);

/// KEYS[1]: state hash. ARGV: ttl ms. Returns {gen, mode, ms left, kind}; refreshes the
/// expiry.
const LOAD: &str = concat!(
    lua_prelude!(),
    r#"
local cur = redis.call('HMGET', KEYS[1], 'gen', 'mode', 'until', 'kind')
if not cur[1] then
  return {0, 'closed', -1, 'decision'}
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {tonumber(cur[1]), cur[2], left(tonumber(cur[3]) or -1), cur[4] or 'decision'}
"#
);

/// KEYS[1]: the generation's counts hash (fields `{bucket}:c`, `{bucket}:f`, `{bucket}:s`).
/// ARGV: calls, failures, slow, bucket ms. Adds to the current bucket, drops buckets older than
/// ten, returns {calls, failures, slow} over the last ten; expires after two windows.
const COUNTS: &str = concat!(
    lua_prelude!(),
    r#"
local len = tonumber(ARGV[4])
local bucket = math.floor(now / len)
local names = {'c', 'f', 's'}
for i = 1, 3 do
  local n = tonumber(ARGV[i])
  if n > 0 then redis.call('HINCRBY', KEYS[1], bucket .. ':' .. names[i], n) end
end
local sum = {0, 0, 0}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local b, kind = string.match(all[i], '^(%d+):(%a)$')
  b = tonumber(b)
  if b == nil or b + 10 <= bucket then
    redis.call('HDEL', KEYS[1], all[i])
  elseif kind == 'c' then sum[1] = sum[1] + tonumber(all[i + 1])
  elseif kind == 'f' then sum[2] = sum[2] + tonumber(all[i + 1])
  elseif kind == 's' then sum[3] = sum[3] + tonumber(all[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], len * 20)
return sum
"#
);

/// KEYS[1]: the quota's hash (`r`, `t`: levels; `at`: ms of the last refill). ARGV: for
/// requests then tokens, limit (0: none), window ms, cost, ceiling (`none`: no bound); then
/// the longest wait in µs (-1: take in any case) and the ttl in ms. Returns {granted 0/1,
/// wait µs, which budget waits longest (1 requests, 2 tokens)}; a wait of -1 when the call
/// never fits (which: the budget it costs more than the whole limit of).
///
/// The bucket formula is `crate::token_bucket`'s, line for line (`rate`, `refill`, `wait`,
/// `take`; the time here is in ms), and the decision is `QuotaTake::apply`'s: change one,
/// change the other (`tests/quota` runs the same takes against both when Redis is there).
const QUOTA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cur = redis.call('HMGET', KEYS[1], 'r', 't', 'at')
local at = tonumber(cur[3]) or now
local elapsed = math.max(0, now - at)
local levels = {tonumber(cur[1]), tonumber(cur[2])}
local wait = 0
local which = 0
local max_wait = tonumber(ARGV[9])
-- token_bucket::never_fits: an admission costing more than a whole limit (QuotaTake::never_fits)
local never = 0
for i = 1, 2 do
  local limit = tonumber(ARGV[4 * i - 3])
  if never == 0 and max_wait >= 0 and limit > 0 and tonumber(ARGV[4 * i - 1]) > limit then
    never = i
  end
  if limit > 0 then
    -- token_bucket::rate
    local rate = limit / tonumber(ARGV[4 * i - 2])
    local cost = tonumber(ARGV[4 * i - 1])
    local ceiling = tonumber(ARGV[4 * i])
    local level = levels[i]
    -- token_bucket::refill; a budget never seen starts full
    if level == nil then level = limit else level = math.min(limit, level + rate * elapsed) end
    if ceiling ~= nil and ceiling < level then level = ceiling end
    levels[i] = level
    -- token_bucket::wait
    if cost > 0 and level < cost then
      local w = (cost - level) / rate
      if w > wait then
        wait = w
        which = i
      end
    end
  end
end
local wait_us = math.ceil(wait * 1000)
local granted = never == 0 and not (max_wait >= 0 and wait_us > max_wait)
if never > 0 then
  wait_us = -1
  which = never
end
local fields = {'r', 't'}
for i = 1, 2 do
  local limit = tonumber(ARGV[4 * i - 3])
  if limit > 0 then
    local level = levels[i]
    -- token_bucket::take
    if granted then level = math.min(limit, level - tonumber(ARGV[4 * i - 1])) end
    redis.call('HSET', KEYS[1], fields[i], string.format('%.17g', level))
  end
end
redis.call('HSET', KEYS[1], 'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], ARGV[10])
if not granted then
  return {0, wait_us, which}
end
return {1, wait_us, which}
"#;

/// KEYS[1]: the round's counter. ARGV: want, limit, ttl ms. Returns the slots granted.
const RESERVE: &str = r#"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - used)
if grant < 0 then grant = 0 end
if grant > 0 then redis.call('INCRBY', KEYS[1], grant) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return grant
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse() {
        assert_eq!(
            parse_notice(b"7 open 1500 trip my breaker"),
            Some(Notice::Changed {
                breaker: Arc::from("my breaker"),
                state: FleetState {
                    generation: 7,
                    mode: FleetMode::Open,
                    remaining: Some(Duration::from_millis(1500)),
                    manual: false,
                },
            })
        );
        assert_eq!(
            parse_notice(b"8 closed -1 manual a"),
            Some(Notice::Changed {
                breaker: Arc::from("a"),
                state: FleetState {
                    generation: 8,
                    mode: FleetMode::Closed,
                    remaining: None,
                    manual: true,
                },
            })
        );
        assert_eq!(parse_notice(b"x open 1 trip a"), None);
        assert_eq!(parse_notice(b"1 sideways 1 trip a"), None);
        assert_eq!(parse_notice(b"1 open 1 trip"), None);
    }
}
