//! The background task that keeps one breaker in step with its fleet.
//!
//! It holds only a weak reference to the breaker, so a breaker that is dropped (or evicted
//! from a keyed registry) ends its task within one `sync_interval`. Every store operation is
//! awaited here, never on a call's path.

use super::{
    FleetMode, FleetState, Notice, Proposal, ProposalKind, SharedState, StateStore, StoreError,
    WindowCounts,
};
use crate::Outcome;
use crate::circuit_breaker::CircuitBreakerEvent;
use crate::circuit_breaker::{
    CircuitBreaker, CircuitState, FleetLink, LocalState, Remote, Shared, UNBOUNDED,
};
use crate::config::{Check, ConfigError, MAX_DURATION, MIN_DURATION};
use crate::events::Listener;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

/// The calls a replica recorded since its last report to the fleet's counts (a listener, so
/// it exists only when `fleet_failure_rate` is set).
#[derive(Debug, Default)]
pub(crate) struct WindowTally {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

impl WindowTally {
    /// The counts so far, and zero again.
    fn take(&self) -> WindowCounts {
        WindowCounts {
            calls: self.calls.swap(0, Ordering::AcqRel),
            failures: self.failures.swap(0, Ordering::AcqRel),
            slow: self.slow.swap(0, Ordering::AcqRel),
        }
    }
}

impl Listener<CircuitBreakerEvent> for WindowTally {
    fn on_event(&self, event: &CircuitBreakerEvent) {
        if let CircuitBreakerEvent::CallRecorded { outcome, slow, .. } = event {
            if *outcome == Outcome::Ignored {
                return;
            }
            self.calls.fetch_add(1, Ordering::Relaxed);
            if *outcome == Outcome::Failure {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
            if *slow {
                self.slow.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The tally a breaker built with `config` needs, if any (registered as a listener before the
/// breaker is built).
pub(crate) fn tally(config: &SharedState) -> Option<Arc<WindowTally>> {
    config
        .fleet_window
        .map(|_| Arc::new(WindowTally::default()))
}

/// Checks the settings, links `breaker` to the store and starts its sync task.
pub(crate) fn spawn(
    breaker: &CircuitBreaker,
    config: SharedState,
    tally: Option<Arc<WindowTally>>,
) -> Result<(), ConfigError> {
    let shared = &breaker.shared;
    let check = Check {
        component: breaker.name(),
    };
    let interval = check.duration(
        "shared_state.sync_interval",
        config.sync_interval,
        MIN_DURATION,
        MAX_DURATION,
    )?;
    let limit = shared.settings.permitted_in_half_open;
    let want = match config.probes_per_replica {
        Some(n) => {
            check.range_u64("shared_state.probes_per_replica", n as u64, 1, limit as u64)? as u32
        }
        None => limit,
    };
    let fleet_window = match config.fleet_window {
        Some(window) => Some(check.duration(
            "shared_state.fleet_failure_rate",
            window,
            Duration::from_secs(1),
            MAX_DURATION,
        )?),
        None => None,
    };
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        ConfigError::new(
            breaker.name(),
            "shared_state",
            "no Tokio runtime",
            "a breaker with a state store is built inside a Tokio runtime (it starts a sync task)",
        )
    })?;
    let link = Arc::new(FleetLink::new());
    if shared.fleet.set(link.clone()).is_err() {
        // Only `build` links a breaker, once, right after creating it.
        return Ok(());
    }
    let settings = &shared.settings;
    let driver = Driver {
        breaker: Arc::downgrade(shared),
        link,
        store: config.store,
        name: Arc::from(breaker.name()),
        interval,
        want,
        limit,
        stuck_after: settings
            .max_wait_in_half_open
            .unwrap_or(settings.wait_in_open),
        reopen_after: settings.wait_in_open,
        fleet_gen: 0,
        known: None,
        last_state: CircuitState::Closed,
        pending: false,
        connected: false,
        next_read: Instant::now(),
        round: None,
        counts: tally.zip(fleet_window),
        share_local_trips: config.share_local_trips,
        local_only: false,
        fleet_trip: false,
        republish: false,
    };
    runtime.spawn(driver.run());
    Ok(())
}

struct Driver {
    breaker: Weak<Shared>,
    link: Arc<FleetLink>,
    store: Arc<dyn StateStore>,
    name: Arc<str>,
    interval: Duration,
    want: u32,
    limit: u32,
    stuck_after: Duration,
    reopen_after: Duration,
    /// The fleet generation the local state is in step with.
    fleet_gen: u64,
    /// The local state that matches `fleet_gen` (`None`: not known yet). Not the generation
    /// alone: a rate-limit cool-down keeps the generation of the closed state.
    known: Option<Known>,
    /// The local state last seen, to tell a trip from a half-open decision.
    last_state: CircuitState,
    /// A local change could not be published yet (the store is down).
    pending: bool,
    connected: bool,
    next_read: Instant,
    round: Option<Round>,
    /// With `fleet_failure_rate`: this replica's tally and the fleet window.
    counts: Option<(Arc<WindowTally>, Duration)>,
    /// False: this replica's own trips stay local (`share_local_trips`).
    share_local_trips: bool,
    /// This replica is open on its own (a local trip that was not shared) until it closes.
    local_only: bool,
    /// The next trip is the fleet's failure rate's, to be shared whatever `share_local_trips`.
    fleet_trip: bool,
    /// The next publish fills a store that lost its data.
    republish: bool,
}

/// A local state as far as sharing goes: its generation, its state, and its deadline (two
/// cool-downs of one closed generation differ only in it).
type Known = (u32, CircuitState, u64);

fn known(local: &LocalState) -> Option<Known> {
    Some((local.generation, local.state, local.until))
}

/// The fleet's half-open round after an open state.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// The fleet generation of the open state.
    generation: u64,
    /// Slots were asked for, or will not be (one attempt per round while the store answers).
    reserved: bool,
    /// Slots the store gave this replica for the round.
    granted: Option<u32>,
    /// This replica had calls when the round began (it tripped or decided the last round):
    /// it reserves without waiting for rejections.
    demand: bool,
    /// Rejections counted when the open state began: more since means calls are waiting.
    rejections: u64,
    /// When the open time is over.
    deadline: Instant,
}

impl Driver {
    async fn run(mut self) {
        // However the task ends (the breaker dropped, its runtime shut down, a panic), the
        // breaker must not wait for slots that nobody will reserve.
        let _unlink = Unlink(self.link.clone());
        let mut notices = Some(self.store.subscribe());
        loop {
            let wake_at = self.wake_at();
            tokio::select! {
                biased;
                () = self.link.wake.notified() => {
                    let Some(shared) = self.breaker.upgrade() else { return };
                    self.on_local(&shared).await;
                }
                notice = recv(&mut notices) => {
                    let Some(shared) = self.breaker.upgrade() else { return };
                    match notice {
                        Ok(Notice::Changed { breaker, state }) if *breaker == *self.name => {
                            if self.pending {
                                // Our unpublished change first (an operator's state must not
                                // be overwritten unseen): the store's compare-and-set decides,
                                // and a refusal brings the fleet's state with it.
                                self.on_local(&shared).await;
                            } else if state.generation > self.fleet_gen {
                                self.adopt(&shared, state, Instant::now());
                            }
                        }
                        Ok(Notice::Changed { .. }) => {}
                        Ok(_) | Err(RecvError::Lagged(_)) => self.next_read = Instant::now(),
                        Err(RecvError::Closed) => notices = None,
                    }
                }
                () = tokio::time::sleep_until(wake_at) => {
                    let Some(shared) = self.breaker.upgrade() else { return };
                    self.tick(&shared).await;
                }
            }
        }
    }

    /// The next time there is work without a wake-up: the periodic read, the reservation
    /// of probe slots, or the check for a stuck round.
    fn wake_at(&self) -> Instant {
        let now = Instant::now();
        let mut at = self.next_read;
        if let Some(round) = self.round {
            let reserve_at = round.deadline.checked_sub(self.interval).unwrap_or(now);
            if !round.reserved && (round.demand || reserve_at > now) {
                at = at.min(reserve_at.max(now));
            }
            let stuck_at = round.deadline + self.stuck_after;
            if stuck_at > now {
                at = at.min(stuck_at);
            }
        }
        at
    }

    /// The breaker changed state (or a publish is pending): publish what is new.
    async fn on_local(&mut self, shared: &Shared) {
        let local = shared.local_state();
        let now_known = known(&local);
        if self.known == now_known {
            self.last_state = local.state;
            return;
        }
        if self.known.is_some_and(|(generation, state, _)| {
            generation == local.generation && state == CircuitState::RateLimited
        }) && local.state == CircuitState::Closed
        {
            // A cool-down that ran out: time did it, on every replica alike.
            self.known = now_known;
            self.last_state = local.state;
            return;
        }
        if self.known.map(|(generation, ..)| generation) != Some(local.generation) {
            // A new generation: calls counted so far were of the old one.
            self.forget_counts();
        }
        let manual = self.link.is_manual(local.generation);
        let republish = std::mem::take(&mut self.republish);
        let (mode, kind) = match local.state {
            // The fleet's round running here: nothing to tell until it decides.
            CircuitState::HalfOpen => {
                self.known = now_known;
                self.last_state = local.state;
                return;
            }
            // A reset told again to a store that lost its data is no longer an operator's act
            // of now: it must not undo a trip made since.
            CircuitState::Closed if manual && !republish => {
                (FleetMode::Closed, ProposalKind::Manual)
            }
            CircuitState::Closed => (FleetMode::Closed, ProposalKind::Decision),
            CircuitState::Open
                if matches!(self.last_state, CircuitState::Open | CircuitState::HalfOpen) =>
            {
                (FleetMode::Open, ProposalKind::Decision)
            }
            CircuitState::Open => (FleetMode::Open, ProposalKind::Trip),
            CircuitState::RateLimited => (FleetMode::RateLimited, ProposalKind::Trip),
            CircuitState::ForcedOpen => (FleetMode::ForcedOpen, ProposalKind::Manual),
            CircuitState::Disabled => (FleetMode::Disabled, ProposalKind::Manual),
            CircuitState::MetricsOnly => (FleetMode::MetricsOnly, ProposalKind::Manual),
        };
        let fleet_trip = std::mem::take(&mut self.fleet_trip);
        let own_trip = mode == FleetMode::Open && kind == ProposalKind::Trip && !fleet_trip;
        if !self.share_local_trips
            && kind != ProposalKind::Manual
            && mode != FleetMode::RateLimited
            && (own_trip || self.local_only)
        {
            // This replica's own trip, and the rounds after it, stay local: it probes with its
            // own limit and tells nobody until it is closed again.
            self.local_only = mode != FleetMode::Closed;
            self.known = now_known;
            self.last_state = local.state;
            self.pending = false;
            self.round = None;
            if self.local_only {
                self.link.set_quota(UNBOUNDED);
            }
            return;
        }
        if mode == FleetMode::RateLimited {
            // A cool-down is shared whatever `share_local_trips` says, and it ends a local-only
            // round (a probe was rate-limited): the replica closes in it, and a later trip of
            // its own is judged afresh.
            self.local_only = false;
        }
        self.publish(shared, local, mode, kind).await;
    }

    async fn publish(
        &mut self,
        shared: &Shared,
        local: LocalState,
        mode: FleetMode,
        kind: ProposalKind,
    ) {
        let proposal = Proposal {
            base: self.fleet_gen,
            mode,
            wait: local.remaining,
            kind,
        };
        let result = self.store.propose(&self.name, proposal).await;
        match result {
            Ok(proposed) if proposed.accepted => {
                self.up(shared);
                tracing::debug!(
                    breaker = %self.name,
                    state = %mode,
                    generation = proposed.state.generation,
                    "circuit breaker state published to the fleet"
                );
                self.pending = false;
                self.fleet_gen = proposed.state.generation;
                self.known = known(&local);
                self.last_state = local.state;
                self.round = (mode == FleetMode::Open).then(|| {
                    let mut round =
                        self.new_round(shared, proposed.state.generation, local.remaining);
                    round.demand = true;
                    round
                });
            }
            Ok(proposed) => {
                self.up(shared);
                // The fleet has moved on: take its state.
                self.adopt(shared, proposed.state, Instant::now());
            }
            Err(e) => {
                self.down(&e);
                self.pending = true;
            }
        }
    }

    /// Applies the fleet's state `state`, read at `received`.
    fn adopt(&mut self, shared: &Shared, state: FleetState, received: Instant) {
        // A store's answer is bounded like any configured wait (and `Instant` arithmetic
        // with it cannot overflow).
        let left = state
            .remaining
            .unwrap_or_default()
            .saturating_sub(received.elapsed())
            .min(MAX_DURATION);
        let (remote, local_state) = match state.mode {
            FleetMode::Closed => (
                Remote::Closed {
                    reset: state.manual,
                },
                CircuitState::Closed,
            ),
            FleetMode::Open => (Remote::Open { wait: left }, CircuitState::Open),
            FleetMode::RateLimited => (
                Remote::RateLimited { wait: left },
                CircuitState::RateLimited,
            ),
            FleetMode::ForcedOpen => (Remote::ForcedOpen, CircuitState::ForcedOpen),
            FleetMode::Disabled => (Remote::Disabled, CircuitState::Disabled),
            FleetMode::MetricsOnly => (Remote::MetricsOnly, CircuitState::MetricsOnly),
        };
        if state.mode == FleetMode::Open && self.connected {
            // No probe may start on an old quota between the transition and the reservation.
            self.link.set_quota(0);
        }
        let applied = shared.apply_remote(remote);
        tracing::debug!(
            breaker = %self.name,
            state = %state.mode,
            generation = state.generation,
            "circuit breaker took the fleet's state"
        );
        self.pending = false;
        self.local_only = false;
        self.forget_counts();
        self.fleet_gen = state.generation;
        self.known = known(&applied);
        self.last_state = local_state;
        self.round = (state.mode == FleetMode::Open)
            .then(|| self.new_round(shared, state.generation, Some(left)));
    }

    fn new_round(&self, shared: &Shared, generation: u64, left: Option<Duration>) -> Round {
        // The store answered: bound this round's probes by the fleet's slots.
        shared.await_fleet_slots();
        Round {
            generation,
            reserved: false,
            granted: None,
            demand: false,
            rejections: shared.metrics().not_permitted_calls,
            deadline: Instant::now() + left.unwrap_or_default().min(MAX_DURATION),
        }
    }

    /// Periodic work: retry a pending publish, read the fleet state, reserve probe slots and
    /// give up a round nobody runs.
    async fn tick(&mut self, shared: &Shared) {
        if self.pending {
            self.on_local(shared).await;
        }
        let now = Instant::now();
        if now >= self.next_read {
            self.next_read = now + self.interval;
            // While a local change waits to be published, the fleet's state must not replace
            // it unseen: the publish (retried above) comes first.
            if !self.pending {
                match self.store.load(&self.name).await {
                    Ok(state) => {
                        self.up(shared);
                        if state.generation > self.fleet_gen {
                            self.adopt(shared, state, now);
                        } else if state.generation < self.fleet_gen {
                            // The store lost the fleet's state (restarted without
                            // persistence): fill it again from ours. The generation goes on
                            // from ours (a proposal based on a later generation than the
                            // store's is accepted), so it never goes back.
                            tracing::info!(breaker = %self.name, "fleet state missing from the store; publishing ours");
                            self.known = None;
                            self.republish = true;
                            self.on_local(shared).await;
                        }
                    }
                    Err(e) => self.down(&e),
                }
            }
            self.report_counts(shared).await;
        }
        self.round_work(shared).await;
    }

    /// Drops the calls counted toward the fleet's counts so far (they were of an older
    /// generation, whose counts are no longer read).
    fn forget_counts(&self) {
        if let Some((tally, _)) = &self.counts {
            tally.take();
        }
    }

    /// With `fleet_failure_rate`: adds this replica's calls to the fleet's counts, and trips
    /// when the fleet's counts cross a threshold.
    async fn report_counts(&mut self, shared: &Shared) {
        let Some((tally, window)) = &self.counts else {
            return;
        };
        let (tally, window) = (tally.clone(), *window);
        let counts = tally.take();
        if shared.local_state().state != CircuitState::Closed || !self.connected {
            // Only a closed breaker's calls count; while the store is down they are dropped
            // (the local window still trips on them).
            return;
        }
        match self
            .store
            .add_counts(&self.name, self.fleet_gen, counts, window)
            .await
        {
            Ok(fleet) => {
                if shared.fleet_should_trip(fleet.calls, fleet.failures, fleet.slow) {
                    tracing::debug!(breaker = %self.name, ?fleet, "fleet counts cross a threshold");
                    // Published by `on_local` as a trip, like a local one.
                    self.fleet_trip = shared.trip_for_fleet();
                }
            }
            Err(e) => self.down(&e),
        }
    }

    async fn round_work(&mut self, shared: &Shared) {
        let Some(mut round) = self.round else { return };
        let local = shared.local_state();
        if round.generation != self.fleet_gen
            || !matches!(local.state, CircuitState::Open | CircuitState::HalfOpen)
        {
            self.round = None;
            return;
        }
        let now = Instant::now();
        if !round.reserved
            && now + self.interval >= round.deadline
            && (round.demand || shared.metrics().not_permitted_calls > round.rejections)
        {
            // Calls are waiting and the round is near: ask for slots now, so that the first
            // call after the open time finds them here. One attempt per round: if the store
            // fails, the round is bounded locally.
            round.reserved = true;
            let quota = self.link.quota();
            if self.connected
                && local.state == CircuitState::Open
                && (quota == 0 || now < round.deadline)
            {
                match self
                    .store
                    .reserve_probes(&self.name, round.generation, self.want, self.limit)
                    .await
                {
                    Ok(slots) => {
                        self.up(shared);
                        round.granted = Some(slots);
                        self.link.set_quota(slots);
                        if slots > 0 {
                            // Calls held while open may take them now.
                            shared.changed.notify_waiters();
                        }
                        tracing::debug!(breaker = %self.name, slots, round = round.generation, "probe slots reserved");
                    }
                    Err(e) => self.down(&e),
                }
            }
        }
        self.round = Some(round);
        if now >= round.deadline + self.stuck_after && shared.waiting_for_fleet() {
            // The round has not decided long after it could start, and this replica has no
            // slot: whoever holds them has no calls. Open again, for a new round.
            let proposal = Proposal {
                base: round.generation,
                mode: FleetMode::Open,
                wait: Some(self.reopen_after),
                kind: ProposalKind::Decision,
            };
            match self.store.propose(&self.name, proposal).await {
                Ok(proposed) => {
                    self.up(shared);
                    self.adopt(shared, proposed.state, now);
                }
                Err(e) => self.down(&e),
            }
        }
    }

    fn up(&mut self, shared: &Shared) {
        if self.connected {
            return;
        }
        self.connected = true;
        self.link.set_connected(true);
        tracing::debug!(breaker = %self.name, "state store reachable");
        // A round under way while the store was away: its probes are bounded by the fleet
        // again (the slots this replica holds, or a new reservation).
        if let Some(round) = &mut self.round {
            if round.generation == self.fleet_gen
                && shared.local_state().state == CircuitState::Open
            {
                match round.granted {
                    Some(slots) => self.link.set_quota(slots),
                    None => {
                        round.reserved = false;
                        self.link.set_quota(0);
                    }
                }
            }
        }
    }

    fn down(&mut self, error: &StoreError) {
        // Logged once per outage by the store itself (`RedisStore`); here only in detail.
        tracing::debug!(breaker = %self.name, %error, "state store unreachable");
        self.connected = false;
        // A replica waiting for slots falls back to its own limit; slots it holds stay its.
        self.link.set_connected(false);
    }
}

/// Unlinks the breaker from its sync task when the task ends.
struct Unlink(Arc<FleetLink>);

impl Drop for Unlink {
    fn drop(&mut self) {
        self.0.set_connected(false);
    }
}

async fn recv(notices: &mut Option<broadcast::Receiver<Notice>>) -> Result<Notice, RecvError> {
    match notices {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
