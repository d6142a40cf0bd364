//! Breakers shared across replicas, on the in-process `MemoryStore` and paused time: three
//! breakers of one name act as three replicas of a fleet.

use std::time::Duration;
use tokio::time::Instant;
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, Permit, SlidingWindow};
use tower_breaker::shared_state::{FleetMode, MemoryStore, SharedState};

const WAIT: Duration = Duration::from_secs(10);
const INTERVAL: Duration = Duration::from_secs(1);

fn replica(store: &MemoryStore, probes: u32) -> CircuitBreaker {
    replica_with(store, probes, |shared| shared)
}

/// A replica (consecutive(3), 10 s open, `probes` per round) with sharing set by `configure`.
fn replica_with(
    store: &MemoryStore,
    probes: u32,
    configure: impl Fn(SharedState) -> SharedState,
) -> CircuitBreaker {
    CircuitBreaker::builder("openai")
        .sliding_window(SlidingWindow::consecutive(3))
        .wait_in_open(WAIT)
        .permitted_calls_in_half_open(probes)
        .max_wait_in_half_open(Some(Duration::from_secs(30)))
        .shared_state(configure(
            SharedState::new(store.clone()).sync_interval(INTERVAL),
        ))
        .build()
        .expect("valid config")
}

fn fleet_with(
    store: &MemoryStore,
    probes: u32,
    configure: impl Fn(SharedState) -> SharedState,
) -> Vec<CircuitBreaker> {
    (0..3)
        .map(|_| replica_with(store, probes, &configure))
        .collect()
}

fn fleet(store: &MemoryStore, probes: u32) -> [CircuitBreaker; 3] {
    [
        replica(store, probes),
        replica(store, probes),
        replica(store, probes),
    ]
}

/// Lets the sync tasks run (no time passes).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn trip(breaker: &CircuitBreaker) {
    support::record(breaker, Outcome::Failure, 3);
    assert_eq!(breaker.state(), CircuitState::Open);
}

/// Trips `tripper`; every replica then gets a call (rejected: calls are waiting for the
/// round) and the open time runs out.
async fn open_until_the_round(fleet: &[CircuitBreaker], tripper: &CircuitBreaker) {
    trip(tripper);
    settle().await;
    assert!(acquire_all(fleet, 1).is_empty(), "open fleet-wide");
    tokio::time::sleep(WAIT).await;
    settle().await;
}

fn states(fleet: &[CircuitBreaker]) -> Vec<CircuitState> {
    fleet.iter().map(CircuitBreaker::state).collect()
}

/// Every replica tries `tries` calls; returns the permits (probes) it got.
fn acquire_all(fleet: &[CircuitBreaker], tries: usize) -> Vec<Permit> {
    let mut permits = Vec::new();
    for breaker in fleet {
        for _ in 0..tries {
            if let Ok(permit) = breaker.try_acquire() {
                permits.push(permit);
            }
        }
    }
    permits
}

#[tokio::test(start_paused = true)]
async fn one_replica_trips_and_the_others_reject_at_once() {
    let store = MemoryStore::new();
    let [a, b, c] = fleet(&store, 2);
    settle().await;
    trip(&a);
    settle().await;
    // Notified: no time has passed.
    assert_eq!(states(&[a, b.clone(), c.clone()]), [CircuitState::Open; 3]);
    for other in [&b, &c] {
        let err = other.try_acquire().expect_err("open fleet-wide");
        assert_eq!(err.state(), CircuitState::Open);
        // Same open time as the replica that tripped.
        let left = err.retry_after().expect("open wait");
        assert!(
            left > WAIT - Duration::from_millis(2) && left <= WAIT,
            "{left:?}"
        );
    }
    assert_eq!(store.state("openai").mode, FleetMode::Open);
}

#[tokio::test(start_paused = true)]
async fn without_notifications_the_periodic_read_bounds_the_delay() {
    let store = MemoryStore::new();
    let [a, b, c] = fleet(&store, 2);
    settle().await;
    store.set_notifications(false);
    let tripped = Instant::now();
    trip(&a);
    settle().await;
    assert_eq!(b.state(), CircuitState::Closed, "not told yet");
    // Within one sync interval, every replica has read the fleet state.
    while b.state() != CircuitState::Open || c.state() != CircuitState::Open {
        tokio::time::sleep(Duration::from_millis(10)).await;
        settle().await;
    }
    assert!(tripped.elapsed() <= INTERVAL, "{:?}", tripped.elapsed());
}

#[tokio::test(start_paused = true)]
async fn probes_are_bounded_fleet_wide_and_their_success_closes_the_fleet() {
    let store = MemoryStore::new();
    let fleet = fleet(&store, 2);
    settle().await;
    open_until_the_round(&fleet, &fleet[0]).await;
    // Each replica tries 5 probes: 2 in the whole fleet get through.
    let probes = acquire_all(&fleet, 5);
    assert_eq!(probes.len(), 2, "fleet-wide probe limit");
    let round = store.state("openai").generation;
    assert_eq!(store.reserved_probes("openai", round), 2);
    for permit in probes {
        assert!(permit.is_probe());
        permit.record(Outcome::Success);
    }
    settle().await;
    assert_eq!(states(&fleet), [CircuitState::Closed; 3]);
    assert_eq!(store.state("openai").mode, FleetMode::Closed);
}

#[tokio::test(start_paused = true)]
async fn slots_spread_over_replicas_and_a_failed_probe_reopens_the_fleet() {
    let store = MemoryStore::new();
    let fleet = fleet_with(&store, 2, |shared| shared.probes_per_replica(1));
    settle().await;
    open_until_the_round(&fleet, &fleet[1]).await;
    let probes = acquire_all(&fleet, 5);
    assert_eq!(probes.len(), 2, "one slot each for two replicas");
    let mut probes = probes.into_iter();
    probes.next().expect("probe").record(Outcome::Failure);
    settle().await;
    assert_eq!(
        states(&fleet),
        [CircuitState::Open; 3],
        "reopened fleet-wide"
    );
    // The other probe was of the finished round: it changes nothing.
    probes.next().expect("probe").record(Outcome::Success);
    settle().await;
    assert_eq!(states(&fleet), [CircuitState::Open; 3]);
}

#[tokio::test(start_paused = true)]
async fn a_store_outage_leaves_every_replica_working_locally_then_they_converge() {
    let store = MemoryStore::new();
    let [a, b, c] = fleet(&store, 2);
    settle().await;
    store.set_available(false);
    tokio::time::sleep(INTERVAL * 2).await; // the sync tasks notice
    // Local tripping still works; nothing reaches the others and no call fails for it.
    trip(&a);
    settle().await;
    for other in [&b, &c] {
        other
            .try_acquire()
            .expect("still closed")
            .record(Outcome::Success);
    }
    // The local round is not bounded by the (unreachable) fleet: the local limit applies.
    tokio::time::sleep(WAIT).await;
    let probes = acquire_all(std::slice::from_ref(&a), 5);
    assert_eq!(probes.len(), 2);
    for permit in probes {
        permit.record(Outcome::Failure);
    }
    assert_eq!(a.state(), CircuitState::Open);
    // The store is back: a's open state becomes the fleet's.
    store.set_available(true);
    settle().await;
    tokio::time::sleep(INTERVAL).await;
    settle().await;
    assert_eq!(
        states(&[a.clone(), b.clone(), c.clone()]),
        [CircuitState::Open; 3]
    );
    assert_eq!(store.state("openai").mode, FleetMode::Open);
}

#[tokio::test(start_paused = true)]
async fn a_store_that_lost_its_data_is_filled_again_from_the_replicas() {
    let store = MemoryStore::new();
    let [a, b, c] = fleet(&store, 2);
    settle().await;
    trip(&a);
    settle().await;
    store.clear();
    assert_eq!(store.state("openai").generation, 0);
    tokio::time::sleep(INTERVAL).await;
    settle().await;
    assert_eq!(store.state("openai").mode, FleetMode::Open);
    assert_eq!(states(&[a, b, c]), [CircuitState::Open; 3]);
}

#[tokio::test(start_paused = true)]
async fn a_round_whose_slots_sit_idle_is_given_up_and_a_new_one_starts() {
    let store = MemoryStore::new();
    let [a, b, c] = fleet(&store, 2);
    settle().await;
    trip(&a);
    settle().await;
    // Only a has calls waiting, so only a reserves: it takes both slots.
    let _ = a.try_acquire();
    tokio::time::sleep(WAIT).await;
    settle().await;
    let first_round = store.state("openai").generation;
    assert_eq!(store.reserved_probes("openai", first_round), 2);
    // Then a's traffic stops; b and c get calls but hold no slot.
    assert!(b.try_acquire().is_err());
    assert!(c.try_acquire().is_err());
    assert!(
        b.try_acquire()
            .expect_err("no slot")
            .retry_after()
            .is_none()
    );
    // After max_wait_in_half_open, a replica without a slot gives the round up: a new open
    // time for the whole fleet.
    tokio::time::sleep(Duration::from_secs(31)).await;
    settle().await;
    let state = store.state("openai");
    assert_eq!(state.mode, FleetMode::Open);
    assert!(state.generation > first_round);
    assert_eq!(
        states(&[a.clone(), b.clone(), c.clone()]),
        [CircuitState::Open; 3]
    );
    // The new round: b has calls waiting now and gets the slots.
    let _ = b.try_acquire();
    tokio::time::sleep(WAIT).await;
    settle().await;
    let probe = b.try_acquire().expect("b holds a slot of the new round");
    probe.record(Outcome::Success);
    b.try_acquire()
        .expect("second slot")
        .record(Outcome::Success);
    settle().await;
    assert_eq!(states(&[a, b, c]), [CircuitState::Closed; 3]);
}

#[tokio::test(start_paused = true)]
async fn manual_states_are_shared_and_always_win() {
    let store = MemoryStore::new();
    let [a, b, c] = fleet(&store, 2);
    settle().await;
    b.force_open();
    settle().await;
    assert_eq!(
        states(&[a.clone(), b.clone(), c.clone()]),
        [CircuitState::ForcedOpen; 3]
    );
    c.disable();
    settle().await;
    assert_eq!(
        states(&[a.clone(), b.clone(), c.clone()]),
        [CircuitState::Disabled; 3]
    );
    a.reset();
    settle().await;
    assert_eq!(
        states(&[a.clone(), b.clone(), c.clone()]),
        [CircuitState::Closed; 3]
    );
    // A reset anywhere empties every replica's window: c's two failures are forgotten.
    support::record(&c, Outcome::Failure, 2);
    assert_eq!(c.metrics().failed_calls, 2);
    b.reset();
    settle().await;
    assert_eq!(c.metrics().failed_calls, 0);
    support::record(&c, Outcome::Failure, 2);
    assert_eq!(
        c.state(),
        CircuitState::Closed,
        "three failures in a row trip, not 2 + 2"
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_cool_downs_are_shared() {
    let store = MemoryStore::new();
    let [a, b, c] = fleet(&store, 2);
    settle().await;
    a.try_acquire()
        .expect("closed")
        .record_rate_limited(Some(Duration::from_secs(5)));
    settle().await;
    for other in [&b, &c] {
        let err = other.try_acquire().expect_err("cooling down");
        assert_eq!(err.state(), CircuitState::RateLimited);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    settle().await;
    for breaker in [&a, &b, &c] {
        breaker
            .try_acquire()
            .expect("cool-down over")
            .record(Outcome::Success);
    }
}

#[tokio::test(start_paused = true)]
async fn a_reset_during_a_shared_cool_down_empties_every_replicas_window() {
    let store = MemoryStore::new();
    let [a, b, c] = fleet(&store, 2);
    settle().await;
    // Two failures of three on `b`: no trip yet.
    support::record(&b, Outcome::Failure, 2);
    a.try_acquire()
        .expect("closed")
        .record_rate_limited(Some(Duration::from_secs(30)));
    settle().await;
    assert_eq!(
        states(&[a.clone(), b.clone(), c.clone()]),
        [CircuitState::RateLimited; 3]
    );
    // The operator resets during the cool-down: every replica starts from an empty window.
    a.reset();
    settle().await;
    assert_eq!(
        states(&[a.clone(), b.clone(), c.clone()]),
        [CircuitState::Closed; 3]
    );
    assert_eq!(b.metrics().calls, 0, "b's window was emptied by the reset");
    // One failure after the reset is one, not the third of a run: nobody opens.
    support::record(&b, Outcome::Failure, 1);
    settle().await;
    assert_eq!(states(&[a, b, c]), [CircuitState::Closed; 3]);
}

/// A replica that adopts the fleet's cool-down while it is open (a probe elsewhere was
/// answered 429) starts it with an empty window, as the replica whose probe it was does: the
/// cool-down ends closed, and the failures from before the outage count for nothing.
#[tokio::test(start_paused = true)]
async fn a_cool_down_adopted_while_open_starts_with_an_empty_window() {
    let store = MemoryStore::new();
    let [a, b, c] = fleet(&store, 1);
    let all = [a.clone(), b.clone(), c.clone()];
    settle().await;
    // Two failures of three on `a` and `b`, then `c` trips the fleet.
    support::record(&a, Outcome::Failure, 2);
    support::record(&b, Outcome::Failure, 2);
    open_until_the_round(&all, &c).await;
    let mut probes = acquire_all(&all, 1);
    assert_eq!(probes.len(), 1, "one probe fleet-wide");
    probes
        .pop()
        .expect("the probe")
        .record_rate_limited(Some(Duration::from_secs(5)));
    settle().await;
    assert_eq!(states(&all), [CircuitState::RateLimited; 3]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    settle().await;
    // One failure on each replica after the cool-down is one, not the third of a run.
    for breaker in &all {
        support::record(breaker, Outcome::Failure, 1);
    }
    settle().await;
    assert_eq!(states(&all), [CircuitState::Closed; 3]);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_breaker_ends_its_sync_task() {
    let store = MemoryStore::new();
    let a = replica(&store, 2);
    settle().await;
    assert_eq!(store.subscribers(), 1);
    drop(a);
    tokio::time::sleep(INTERVAL * 2).await;
    settle().await;
    assert_eq!(store.subscribers(), 0);
}

#[tokio::test(start_paused = true)]
async fn bad_shared_state_settings_are_config_errors() {
    let store = MemoryStore::new();
    let err = CircuitBreaker::builder("x")
        .shared_state(SharedState::new(store.clone()).sync_interval(Duration::ZERO))
        .build()
        .expect_err("zero interval");
    assert_eq!(err.field(), "shared_state.sync_interval");
    let err = CircuitBreaker::builder("x")
        .permitted_calls_in_half_open(3)
        .shared_state(SharedState::new(store).probes_per_replica(4))
        .build()
        .expect_err("more than the round's slots");
    assert_eq!(err.field(), "shared_state.probes_per_replica");
    assert_eq!(err.allowed(), "1 ..= 3");
}

#[test]
fn a_shared_breaker_needs_a_runtime() {
    let err = CircuitBreaker::builder("x")
        .shared_state(SharedState::new(MemoryStore::new()))
        .build()
        .expect_err("no runtime");
    assert_eq!(err.field(), "shared_state");
}

fn rate_replica(store: &MemoryStore, fleet_rate: bool) -> CircuitBreaker {
    rate_replica_with(store, |shared| {
        if fleet_rate {
            shared.fleet_failure_rate(Duration::from_secs(60))
        } else {
            shared
        }
    })
}

/// A replica with a rate window (50 % of at least 10 calls) and sharing set by `configure`.
fn rate_replica_with(
    store: &MemoryStore,
    configure: impl Fn(SharedState) -> SharedState,
) -> CircuitBreaker {
    CircuitBreaker::builder("openai")
        .sliding_window(SlidingWindow::count_based(100))
        .failure_rate_threshold(0.5)
        .minimum_calls(10)
        .wait_in_open(WAIT)
        .permitted_calls_in_half_open(1)
        .shared_state(configure(
            SharedState::new(store.clone()).sync_interval(INTERVAL),
        ))
        .build()
        .expect("valid config")
}

/// Each replica sees 4 calls, 2 failed: 50 %, but under its own `minimum_calls` of 10.
fn half_failing(fleet: &[CircuitBreaker]) {
    for breaker in fleet {
        support::script(breaker, "FSFS");
    }
}

#[path = "../support/mod.rs"]
mod support;

#[tokio::test(start_paused = true)]
async fn the_fleet_trips_on_the_fleets_failure_rate() {
    let store = MemoryStore::new();
    let fleet: Vec<_> = (0..3).map(|_| rate_replica(&store, true)).collect();
    settle().await;
    half_failing(&fleet);
    assert_eq!(
        states(&fleet),
        [CircuitState::Closed; 3],
        "no replica trips alone"
    );
    // Within one sync interval the counts reach the store: 12 calls, 6 failed.
    tokio::time::sleep(INTERVAL).await;
    settle().await;
    assert_eq!(states(&fleet), [CircuitState::Open; 3]);
    assert_eq!(store.state("openai").mode, FleetMode::Open);
    // The probe succeeds and the fleet closes: the counts start again from nothing.
    assert!(acquire_all(&fleet, 1).is_empty());
    tokio::time::sleep(WAIT).await;
    settle().await;
    let probes = acquire_all(&fleet, 1);
    assert_eq!(probes.len(), 1);
    probes.into_iter().for_each(|p| p.record(Outcome::Success));
    settle().await;
    assert_eq!(states(&fleet), [CircuitState::Closed; 3]);
    half_failing(&fleet[..2]);
    tokio::time::sleep(INTERVAL).await;
    settle().await;
    assert_eq!(
        states(&fleet),
        [CircuitState::Closed; 3],
        "8 calls since the close"
    );
    half_failing(&fleet[2..]);
    tokio::time::sleep(INTERVAL).await;
    settle().await;
    assert_eq!(
        states(&fleet),
        [CircuitState::Open; 3],
        "12 calls since the close"
    );
}

#[tokio::test(start_paused = true)]
async fn without_fleet_counts_each_replica_decides_on_its_own_calls() {
    let store = MemoryStore::new();
    let fleet: Vec<_> = (0..3).map(|_| rate_replica(&store, false)).collect();
    settle().await;
    half_failing(&fleet);
    tokio::time::sleep(INTERVAL * 3).await;
    settle().await;
    assert_eq!(states(&fleet), [CircuitState::Closed; 3]);
}

#[tokio::test(start_paused = true)]
async fn fleet_counts_age_out_of_the_window() {
    let store = MemoryStore::new();
    let fleet: Vec<_> = (0..3).map(|_| rate_replica(&store, true)).collect();
    settle().await;
    // 8 calls, 4 failed: under minimum_calls fleet-wide.
    half_failing(&fleet[..2]);
    tokio::time::sleep(INTERVAL).await;
    settle().await;
    assert_eq!(states(&fleet), [CircuitState::Closed; 3]);
    // A minute later those have left the fleet window: 4 more calls do not trip.
    tokio::time::sleep(Duration::from_secs(61)).await;
    half_failing(&fleet[2..]);
    tokio::time::sleep(INTERVAL).await;
    settle().await;
    assert_eq!(states(&fleet), [CircuitState::Closed; 3]);
}

#[tokio::test(start_paused = true)]
async fn with_local_trips_kept_local_one_bad_replica_opens_alone() {
    let store = MemoryStore::new();
    let fleet = fleet_with(&store, 2, |shared| shared.share_local_trips(false));
    settle().await;
    trip(&fleet[0]);
    settle().await;
    tokio::time::sleep(INTERVAL * 2).await;
    assert_eq!(
        states(&fleet),
        [
            CircuitState::Open,
            CircuitState::Closed,
            CircuitState::Closed
        ]
    );
    assert_eq!(
        store.state("openai"),
        tower_breaker::shared_state::FleetState::UNKNOWN
    );
    // It probes alone, with its own limit, and closes alone.
    tokio::time::sleep(WAIT).await;
    let probes = acquire_all(&fleet[..1], 5);
    assert_eq!(probes.len(), 2);
    probes.into_iter().for_each(|p| p.record(Outcome::Success));
    settle().await;
    assert_eq!(states(&fleet), [CircuitState::Closed; 3]);
    // An operator's action is still shared.
    fleet[2].force_open();
    settle().await;
    assert_eq!(states(&fleet), [CircuitState::ForcedOpen; 3]);
}

#[tokio::test(start_paused = true)]
async fn with_local_trips_kept_local_the_fleet_rate_still_opens_the_fleet() {
    let store = MemoryStore::new();
    let fleet: Vec<_> = (0..3)
        .map(|_| {
            rate_replica_with(&store, |shared| {
                shared
                    .fleet_failure_rate(Duration::from_secs(60))
                    .share_local_trips(false)
            })
        })
        .collect();
    settle().await;
    half_failing(&fleet);
    tokio::time::sleep(INTERVAL).await;
    settle().await;
    assert_eq!(states(&fleet), [CircuitState::Open; 3]);
}

#[tokio::test(start_paused = true)]
async fn every_cool_down_is_shared_not_only_the_first() {
    let store = MemoryStore::new();
    let [a, b, c] = fleet(&store, 2);
    settle().await;
    for round in 0..2 {
        a.try_acquire()
            .expect("closed")
            .record_rate_limited(Some(Duration::from_secs(5)));
        settle().await;
        for other in [&b, &c] {
            let err = other
                .try_acquire()
                .expect_err(&format!("cooling down, round {round}"));
            assert_eq!(err.state(), CircuitState::RateLimited);
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
        settle().await;
        for x in [&a, &b, &c] {
            x.try_acquire().expect("over").record(Outcome::Success);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_probe_bound_holds_after_a_store_blip() {
    let store = MemoryStore::new();
    let fleet = fleet(&store, 2);
    settle().await;
    trip(&fleet[0]);
    settle().await;
    assert!(acquire_all(&fleet, 1).is_empty()); // demand everywhere
    tokio::time::sleep(WAIT - INTERVAL + Duration::from_millis(100)).await;
    settle().await;
    let round = store.state("openai").generation;
    assert_eq!(store.reserved_probes("openai", round), 2, "reserved ahead");
    // A blip of one sync interval, well before the round starts.
    store.set_available(false);
    tokio::time::sleep(INTERVAL).await;
    settle().await;
    store.set_available(true);
    settle().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    settle().await;
    // The store is up again and the fleet state unchanged; the round starts.
    assert_eq!(store.state("openai").generation, round);
    let probes = acquire_all(&fleet, 5);
    assert_eq!(probes.len(), 2, "fleet-wide bound while the store is up");
}

#[tokio::test(start_paused = true)]
async fn a_manual_state_set_during_an_outage_wins_when_the_store_is_back() {
    let store = MemoryStore::new();
    let [a, b, c] = fleet(&store, 2);
    settle().await;
    store.set_available(false);
    tokio::time::sleep(INTERVAL * 2).await;
    settle().await;
    c.force_open(); // operator, during the outage
    trip(&a); // a trips locally during the outage
    settle().await;
    store.set_available(true);
    for _ in 0..5 {
        tokio::time::sleep(INTERVAL).await;
        settle().await;
    }
    assert_eq!(
        states(&[a, b, c]),
        [CircuitState::ForcedOpen; 3],
        "manual states always win: {:?}",
        store.state("openai")
    );
}

#[tokio::test(start_paused = true)]
async fn a_manual_state_set_during_an_outage_wins_in_every_order() {
    for (m, t) in [(0usize, 1usize), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)] {
        let store = MemoryStore::new();
        let fleet = fleet(&store, 2);
        settle().await;
        store.set_available(false);
        tokio::time::sleep(INTERVAL * 2).await;
        settle().await;
        fleet[m].force_open();
        trip(&fleet[t]);
        settle().await;
        store.set_available(true);
        for _ in 0..5 {
            tokio::time::sleep(INTERVAL).await;
            settle().await;
        }
        assert_eq!(
            states(&fleet),
            [CircuitState::ForcedOpen; 3],
            "manual {m}, trip {t}"
        );
    }
}

mod flaky {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tower_breaker::shared_state::*;
    /// One replica's view of a shared MemoryStore whose commands can fail while its
    /// notifications still arrive (a replica whose command connection is down).
    #[derive(Clone)]
    pub struct Flaky(pub MemoryStore, pub Arc<AtomicBool>);
    fn err<T>() -> Result<T, StoreError> {
        Err(StoreError::new("down"))
    }
    impl StateStore for Flaky {
        fn propose<'a>(&'a self, b: &'a str, p: Proposal) -> StoreFuture<'a, Proposed> {
            if self.1.load(Ordering::SeqCst) {
                Box::pin(async { err() })
            } else {
                self.0.propose(b, p)
            }
        }
        fn load<'a>(&'a self, b: &'a str) -> StoreFuture<'a, FleetState> {
            if self.1.load(Ordering::SeqCst) {
                Box::pin(async { err() })
            } else {
                self.0.load(b)
            }
        }
        fn reserve_probes<'a>(
            &'a self,
            b: &'a str,
            r: u64,
            w: u32,
            l: u32,
        ) -> StoreFuture<'a, u32> {
            if self.1.load(Ordering::SeqCst) {
                Box::pin(async { err() })
            } else {
                self.0.reserve_probes(b, r, w, l)
            }
        }
        fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Notice> {
            self.0.subscribe()
        }
        fn add_counts<'a>(
            &'a self,
            b: &'a str,
            g: u64,
            c: WindowCounts,
            w: Duration,
        ) -> StoreFuture<'a, WindowCounts> {
            if self.1.load(Ordering::SeqCst) {
                Box::pin(async { err() })
            } else {
                self.0.add_counts(b, g, c, w)
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_pending_manual_state_is_not_overwritten_by_a_notice() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let store = MemoryStore::new();
    let down = Arc::new(AtomicBool::new(false));
    let a = replica(&store, 2);
    let c = CircuitBreaker::builder("openai")
        .sliding_window(SlidingWindow::consecutive(3))
        .wait_in_open(WAIT)
        .shared_state(
            SharedState::new(flaky::Flaky(store.clone(), down.clone())).sync_interval(INTERVAL),
        )
        .build()
        .unwrap();
    settle().await;
    down.store(true, Ordering::SeqCst);
    c.force_open(); // the operator's choice cannot be published yet
    settle().await;
    trip(&a); // published; c is told by notification
    settle().await;
    down.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        tokio::time::sleep(INTERVAL).await;
        settle().await;
    }
    assert_eq!(
        store.state("openai").mode,
        FleetMode::ForcedOpen,
        "manual states always win"
    );
    assert_eq!(states(&[a, c]), [CircuitState::ForcedOpen; 2]);
}

#[test]
fn a_breaker_outlives_its_sync_task() {
    let store = MemoryStore::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let breaker = runtime.block_on(async {
        let breaker = CircuitBreaker::builder("openai")
            .sliding_window(SlidingWindow::consecutive(3))
            .wait_in_open(Duration::from_millis(1))
            .shared_state(SharedState::new(store.clone()).sync_interval(Duration::from_millis(10)))
            .build()
            .expect("valid config");
        // The first read: the sync task has seen the store answer.
        while store.subscribers() == 0 || breaker.metrics().not_permitted_calls > 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        breaker
    });
    // A runtime used only to build the breaker: its sync task ends with it.
    drop(runtime);
    trip(&breaker);
    // Open for 1 ms; then the breaker probes on its own limit instead of waiting forever for
    // slots that no task will reserve. (Real time: no runtime is left to pause.)
    let start = std::time::Instant::now();
    while breaker.try_acquire().is_err() {
        assert!(start.elapsed() < Duration::from_secs(5), "still rejecting");
        std::thread::yield_now();
    }
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_share_each_key_with_the_fleet() {
    use tower_breaker::keyed::KeyedCircuitBreakers;
    let store = MemoryStore::new();
    let registry = || {
        let template = CircuitBreaker::builder("model")
            .sliding_window(SlidingWindow::consecutive(3))
            .wait_in_open(WAIT)
            .shared_state(SharedState::new(store.clone()).sync_interval(INTERVAL));
        KeyedCircuitBreakers::builder(template)
            .build()
            .expect("valid config")
    };
    let (one, two) = (registry(), registry());
    let key = |k: &str| k.to_owned();
    let _ = two.get(&key("gpt-big"));
    settle().await;
    trip(&one.get(&key("gpt-big")));
    settle().await;
    assert_eq!(two.state(&key("gpt-big")), Some(CircuitState::Open));
    // Another key is another fleet breaker.
    assert!(two.get(&key("gpt-small")).try_acquire().is_ok());
    // A replica that meets the key later reads the fleet's state first.
    let three = registry();
    let late = three.get(&key("gpt-big"));
    assert_eq!(late.state(), CircuitState::Closed);
    settle().await;
    assert_eq!(late.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn slots_of_a_finished_round_do_not_bound_a_local_round_in_an_outage() {
    let store = MemoryStore::new();
    let fleet = fleet_with(&store, 3, |shared| shared.probes_per_replica(1));
    settle().await;
    open_until_the_round(&fleet, &fleet[0]).await;
    // A fleet round of one slot per replica closes the fleet.
    for permit in acquire_all(&fleet, 5) {
        permit.record(Outcome::Success);
    }
    settle().await;
    assert_eq!(states(&fleet), [CircuitState::Closed; 3]);
    // Then the store goes away and a replica trips: its round is local, on its own limit of 3.
    store.set_available(false);
    tokio::time::sleep(INTERVAL * 2).await;
    trip(&fleet[0]);
    settle().await;
    tokio::time::sleep(WAIT).await;
    let probes = acquire_all(&fleet[..1], 5);
    assert_eq!(
        probes.len(),
        3,
        "the local limit, not the old round's one slot"
    );
}

#[tokio::test(start_paused = true)]
async fn after_data_loss_an_old_close_does_not_undo_a_newer_trip() {
    let store = MemoryStore::new();
    let fleet = fleet(&store, 2);
    settle().await;
    // The fleet trips and closes again: its generation is past 1.
    fleet[0].force_open();
    settle().await;
    fleet[0].reset();
    settle().await;
    assert!(store.state("openai").generation >= 2);
    // The store loses its data; a replica that knows nothing older trips first.
    store.clear();
    let newcomer = replica(&store, 2);
    settle().await;
    trip(&newcomer);
    settle().await;
    assert_eq!(store.state("openai").mode, FleetMode::Open);
    // The old replicas find the store behind them: their closed state must not undo the trip.
    tokio::time::sleep(INTERVAL * 2).await;
    settle().await;
    assert_eq!(store.state("openai").mode, FleetMode::Open);
    assert_eq!(states(&fleet), [CircuitState::Open; 3]);
}
