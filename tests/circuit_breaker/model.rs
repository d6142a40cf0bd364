//! Property test: random sequences of calls, outcomes (slow or not, rate-limited or not),
//! dropped permits, time, and manual control agree with a small reference model of the state
//! machine, written for clarity rather than speed. The model covers every window (consecutive,
//! count, time in buckets), slow calls, rate-limit cool-downs, open-time growth, the half-open
//! expiry rule, and the manual states.

use proptest::prelude::*;
use std::collections::VecDeque;
use std::time::Duration;
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, Permit, SlidingWindow};

#[derive(Debug, Clone, Copy)]
enum WindowCfg {
    Consecutive(u32),
    Count(u32),
    /// Length and buckets, in ms; the length is a multiple of the buckets.
    Time {
        length_ms: u64,
        buckets: u32,
    },
}

#[derive(Debug, Clone)]
struct Config {
    window: WindowCfg,
    minimum: u32,
    threshold: f64,
    /// The slow-call rule: duration (ms) and rate threshold.
    slow: Option<(u64, f64)>,
    probes: u32,
    wait_ms: u64,
    max_wait_ms: u64,
    /// Open-time growth: multiplier and cap (ms).
    growth: Option<(f64, u64)>,
    max_retry_after_ms: u64,
    cooldown_ms: u64,
    /// The outage rule: this many failures in a row trip the breaker whatever the window.
    consecutive_failures: Option<u32>,
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Record(usize, Outcome),
    /// A 429 with this `Retry-After` (ms), or none.
    RateLimited(usize, Option<u64>),
    Drop(usize),
    Advance(u64),
    Reset,
    ForceOpen,
    Disable,
    MetricsOnly,
}

fn window() -> impl Strategy<Value = WindowCfg> {
    prop_oneof![
        (1u32..6).prop_map(WindowCfg::Consecutive),
        (1u32..6).prop_map(WindowCfg::Count),
        (prop::sample::select(vec![1u32, 2, 5]), 1u64..5).prop_map(|(buckets, per)| {
            WindowCfg::Time {
                length_ms: buckets as u64 * per * 1_000,
                buckets,
            }
        }),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (
        (
            window(),
            1u32..7,
            prop::sample::select(vec![0.2, 0.25, 0.5, 0.75, 1.0]),
            prop::option::of((1u64..3_000, prop::sample::select(vec![0.5, 1.0]))),
        ),
        (
            1u32..4,
            1u64..5_000,
            1u64..8_000,
            prop::option::of((prop::sample::select(vec![1.5, 2.0]), 1u64..20_000)),
            1u64..10_000,
            1u64..3_000,
        ),
        prop::option::of(1u32..5),
    )
        .prop_map(
            |(
                (window, minimum, threshold, slow),
                (probes, wait_ms, max_wait_ms, growth, max_retry_after_ms, cooldown_ms),
                consecutive_failures,
            )| Config {
                window,
                minimum,
                threshold,
                slow,
                probes,
                wait_ms,
                max_wait_ms,
                // The cap is at least the base wait (the builder's rule).
                growth: growth.map(|(m, cap)| (m, cap.max(wait_ms))),
                max_retry_after_ms,
                cooldown_ms,
                consecutive_failures,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop::sample::select(vec![Outcome::Success, Outcome::Failure, Outcome::Ignored]);
    prop_oneof![
        6 => Just(Op::Acquire),
        6 => (any::<usize>(), outcome).prop_map(|(i, o)| Op::Record(i, o)),
        1 => (any::<usize>(), prop::option::of(0u64..12_000))
            .prop_map(|(i, w)| Op::RateLimited(i, w)),
        1 => any::<usize>().prop_map(Op::Drop),
        3 => (0u64..6_000).prop_map(Op::Advance),
        1 => Just(Op::Reset),
        1 => prop_oneof![Just(Op::ForceOpen), Just(Op::Disable), Just(Op::MetricsOnly)],
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed,
    /// A cool-down: the closed generation goes on, calls are rejected until `until`.
    RateLimited {
        until: u64,
    },
    Open {
        until: u64,
    },
    HalfOpen {
        admitted: u32,
        settled: u32,
        failures: u32,
        slow: u32,
        deadline: u64,
    },
    ForcedOpen,
    Disabled,
    MetricsOnly,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Normal,
    Probe,
    Passthrough,
}

#[derive(Debug, Clone, Copy)]
struct Ticket {
    generation: u64,
    kind: Kind,
    admitted_at: u64,
}

/// One recorded call: the time bucket (time windows), failed, slow.
type Call = (u64, bool, bool);

/// The reference: a queue for the window, plain integers for everything else.
struct Model {
    cfg: Config,
    now: u64,
    generation: u64,
    state: State,
    window: VecDeque<Call>,
    run: u32,
    /// Failures in a row of the current closed generation, for the outage rule.
    streak: u32,
    reopens: u64,
    ignored: u64,
    rejected: u64,
}

impl Model {
    fn new(cfg: Config) -> Self {
        Self {
            cfg,
            now: 0,
            generation: 0,
            state: State::Closed,
            window: VecDeque::new(),
            run: 0,
            streak: 0,
            reopens: 0,
            ignored: 0,
            rejected: 0,
        }
    }

    fn at_least(part: u32, whole: u32, rate: f64) -> bool {
        whole > 0 && part as f64 / whole as f64 >= rate - 1e-9
    }

    fn bucket(&self) -> u64 {
        match self.cfg.window {
            WindowCfg::Time { length_ms, buckets } => self.now / (length_ms / buckets as u64),
            _ => 0,
        }
    }

    /// The calls the window holds now: (calls, failures, slow).
    fn counts(&self) -> (u32, u32, u32) {
        let current = self.bucket();
        let live = |call: &&Call| match self.cfg.window {
            WindowCfg::Time { buckets, .. } => call.0 + buckets as u64 > current,
            _ => true,
        };
        let calls: Vec<&Call> = self.window.iter().filter(live).collect();
        (
            calls.len() as u32,
            calls.iter().filter(|c| c.1).count() as u32,
            calls.iter().filter(|c| c.2).count() as u32,
        )
    }

    /// `base` grown for the `reopens`-th reopen, as the breaker computes it (no jitter).
    fn open_time(&self, reopens: u64) -> Duration {
        let base = Duration::from_millis(self.cfg.wait_ms);
        let mut open = base;
        if let Some((multiplier, max_ms)) = self.cfg.growth {
            let max = Duration::from_millis(max_ms);
            let secs = base.as_secs_f64() * multiplier.powi(reopens as i32);
            open = Duration::try_from_secs_f64(secs).map_or(max, |d| d.min(max));
        }
        open.max(Duration::from_millis(1))
    }

    fn ceil_ms(d: Duration) -> u64 {
        d.as_nanos().div_ceil(1_000_000) as u64
    }

    /// A new generation in `state`; a new closed one starts with an empty window.
    fn transition(&mut self, state: State) {
        self.generation += 1;
        self.state = state;
        if state == State::Closed {
            self.window.clear();
            self.run = 0;
            self.streak = 0;
            self.reopens = 0;
        }
    }

    fn trip(&mut self) {
        let until = self.now + Self::ceil_ms(self.open_time(0));
        self.transition(State::Open { until });
    }

    /// A failed round, as of `since` (now, or the round's deadline).
    fn reopen(&mut self, since: u64) {
        let until = since + Self::ceil_ms(self.open_time(self.reopens + 1));
        self.transition(State::Open { until });
        self.reopens += 1;
    }

    fn server_wait(&self, wait: Option<u64>) -> u64 {
        wait.unwrap_or(self.cfg.cooldown_ms)
            .min(self.cfg.max_retry_after_ms)
            .max(1)
    }

    /// The expiry rule, applied by every reader of the state.
    fn observe(&mut self) {
        if let State::HalfOpen {
            admitted, deadline, ..
        } = self.state
        {
            if admitted >= self.cfg.probes && self.now >= deadline {
                self.reopen(deadline);
            }
        }
    }

    fn ticket(&self, kind: Kind) -> Ticket {
        Ticket {
            generation: self.generation,
            kind,
            admitted_at: self.now,
        }
    }

    fn acquire(&mut self) -> Option<Ticket> {
        loop {
            self.observe();
            match self.state {
                State::Closed | State::MetricsOnly => return Some(self.ticket(Kind::Normal)),
                State::Disabled => return Some(self.ticket(Kind::Passthrough)),
                State::RateLimited { until } if self.now >= until => {
                    // The cool-down is over: closed again, same generation, same window.
                    self.state = State::Closed;
                }
                State::Open { until } if self.now >= until => {
                    self.generation += 1;
                    self.state = State::HalfOpen {
                        admitted: 1,
                        settled: 0,
                        failures: 0,
                        slow: 0,
                        deadline: self.now + self.cfg.max_wait_ms,
                    };
                    return Some(self.ticket(Kind::Probe));
                }
                State::HalfOpen {
                    admitted,
                    settled,
                    failures,
                    slow,
                    deadline,
                } if admitted < self.cfg.probes => {
                    self.state = State::HalfOpen {
                        admitted: admitted + 1,
                        settled,
                        failures,
                        slow,
                        deadline,
                    };
                    return Some(self.ticket(Kind::Probe));
                }
                _ => {
                    self.rejected += 1;
                    return None;
                }
            }
        }
    }

    fn should_trip(&self) -> bool {
        if self
            .cfg
            .consecutive_failures
            .is_some_and(|n| self.streak >= n)
        {
            return true;
        }
        let (calls, failures, slow) = self.counts();
        match self.cfg.window {
            WindowCfg::Consecutive(n) => self.run >= n,
            window => {
                let minimum = match window {
                    WindowCfg::Count(n) => self.cfg.minimum.min(n),
                    _ => self.cfg.minimum,
                };
                calls >= minimum
                    && (Self::at_least(failures, calls, self.cfg.threshold)
                        || self
                            .cfg
                            .slow
                            .is_some_and(|(_, rate)| Self::at_least(slow, calls, rate)))
            }
        }
    }

    fn record(&mut self, t: Ticket, outcome: Outcome, rate_limited: Option<Option<u64>>) {
        let slow = outcome != Outcome::Ignored
            && self
                .cfg
                .slow
                .is_some_and(|(ms, _)| self.now - t.admitted_at >= ms);
        match t.kind {
            Kind::Passthrough => {}
            Kind::Normal => self.record_normal(t, outcome, slow, rate_limited),
            Kind::Probe => self.record_probe(t, outcome, slow, rate_limited),
        }
    }

    fn record_normal(
        &mut self,
        t: Ticket,
        outcome: Outcome,
        slow: bool,
        rate_limited: Option<Option<u64>>,
    ) {
        if let Some(wait) = rate_limited {
            self.ignored += 1;
            if t.generation != self.generation {
                return;
            }
            let until = self.now + self.server_wait(wait);
            match self.state {
                State::Closed => self.state = State::RateLimited { until },
                State::RateLimited { until: old } if until > old => {
                    self.state = State::RateLimited { until }
                }
                _ => {}
            }
            return;
        }
        if outcome == Outcome::Ignored {
            self.ignored += 1;
            return;
        }
        if t.generation != self.generation {
            return;
        }
        let failed = outcome == Outcome::Failure;
        self.streak = if failed { self.streak + 1 } else { 0 };
        match self.cfg.window {
            WindowCfg::Consecutive(_) => self.run = if failed { self.run + 1 } else { 0 },
            WindowCfg::Count(n) => {
                self.window.push_back((0, failed, slow));
                if self.window.len() > n as usize {
                    self.window.pop_front();
                }
            }
            WindowCfg::Time { .. } => self.window.push_back((self.bucket(), failed, slow)),
        }
        if matches!(self.state, State::Closed | State::RateLimited { .. }) && self.should_trip() {
            self.trip();
        }
    }

    fn record_probe(
        &mut self,
        t: Ticket,
        outcome: Outcome,
        slow: bool,
        rate_limited: Option<Option<u64>>,
    ) {
        let State::HalfOpen {
            admitted,
            settled,
            failures,
            slow: slow_calls,
            deadline,
        } = self.state
        else {
            if outcome == Outcome::Ignored || rate_limited.is_some() {
                self.ignored += 1;
            }
            return;
        };
        if outcome == Outcome::Ignored || rate_limited.is_some() {
            self.ignored += 1;
        }
        if t.generation != self.generation {
            return;
        }
        if let Some(wait) = rate_limited {
            // Up, but asking us to wait: a cool-down for its wait, not a failed round. It
            // starts a new generation with an empty window, as a probe's success would have,
            // and ends closed in that generation.
            let until = self.now + self.server_wait(wait);
            self.transition(State::RateLimited { until });
            self.window.clear();
            self.run = 0;
            self.streak = 0;
            self.reopens = 0;
            return;
        }
        if outcome == Outcome::Ignored {
            self.state = State::HalfOpen {
                admitted: admitted - 1,
                settled,
                failures,
                slow: slow_calls,
                deadline,
            };
            return;
        }
        let failed = outcome == Outcome::Failure;
        let (settled, failures, slow_calls) = (
            settled + 1,
            failures + failed as u32,
            slow_calls + slow as u32,
        );
        let n = self.cfg.probes;
        let undecided = State::HalfOpen {
            admitted,
            settled,
            failures,
            slow: slow_calls,
            deadline,
        };
        if let WindowCfg::Consecutive(_) = self.cfg.window {
            if failed {
                self.reopen(self.now);
            } else if settled - failures >= n {
                self.transition(State::Closed);
            } else {
                self.state = undecided;
            }
            return;
        }
        let remaining = n - settled;
        let slow_rate = self.cfg.slow.map(|(_, rate)| rate);
        let reopen = Self::at_least(failures, n, self.cfg.threshold)
            || slow_rate.is_some_and(|rate| Self::at_least(slow_calls, n, rate));
        let could_fail = Self::at_least(failures + remaining, n, self.cfg.threshold)
            || slow_rate.is_some_and(|rate| Self::at_least(slow_calls + remaining, n, rate));
        if reopen {
            self.reopen(self.now);
        } else if !could_fail {
            self.transition(State::Closed);
        } else {
            self.state = undecided;
        }
    }

    /// `reset`, `force_open`, `disable`, `metrics_only`.
    fn manual(&mut self, to: State) {
        if self.state == to && to != State::Closed {
            return;
        }
        self.transition(to);
    }

    fn state(&self) -> CircuitState {
        match self.state {
            State::Closed => CircuitState::Closed,
            State::RateLimited { .. } => CircuitState::RateLimited,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
            State::ForcedOpen => CircuitState::ForcedOpen,
            State::Disabled => CircuitState::Disabled,
            State::MetricsOnly => CircuitState::MetricsOnly,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self.state {
            State::Open { until } | State::RateLimited { until } if until > self.now => {
                Some(Duration::from_millis(until - self.now))
            }
            _ => None,
        }
    }
}

fn breaker_for(cfg: &Config) -> CircuitBreaker {
    let window = match cfg.window {
        WindowCfg::Consecutive(n) => SlidingWindow::consecutive(n),
        WindowCfg::Count(n) => SlidingWindow::count_based(n),
        WindowCfg::Time { length_ms, buckets } => {
            SlidingWindow::time_based(Duration::from_millis(length_ms)).buckets(buckets)
        }
    };
    let mut builder = CircuitBreaker::builder("model")
        .sliding_window(window)
        .minimum_calls(cfg.minimum)
        .failure_rate_threshold(cfg.threshold)
        .permitted_calls_in_half_open(cfg.probes)
        .wait_in_open(Duration::from_millis(cfg.wait_ms))
        .max_wait_in_half_open(Some(Duration::from_millis(cfg.max_wait_ms)))
        .max_retry_after(Duration::from_millis(cfg.max_retry_after_ms))
        .rate_limit_cooldown(Duration::from_millis(cfg.cooldown_ms))
        .consecutive_failure_threshold(cfg.consecutive_failures);
    if let Some((ms, rate)) = cfg.slow {
        builder = builder
            .slow_call_duration(Duration::from_millis(ms))
            .slow_call_rate_threshold(rate);
    }
    if let Some((multiplier, max_ms)) = cfg.growth {
        builder = builder.open_time_growth(multiplier, Duration::from_millis(max_ms));
    }
    builder.build().unwrap()
}

fn run(cfg: Config, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let breaker = breaker_for(&cfg);
        let mut model = Model::new(cfg.clone());
        let mut held: Vec<(Permit, Ticket)> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Acquire => {
                    let real = breaker.try_acquire();
                    let expected = model.acquire();
                    prop_assert_eq!(real.is_ok(), expected.is_some(), "step {} acquire", step);
                    if let (Ok(permit), Some(ticket)) = (real, expected) {
                        let probe = ticket.kind == Kind::Probe;
                        prop_assert_eq!(permit.is_probe(), probe, "step {} probe", step);
                        held.push((permit, ticket));
                    }
                }
                Op::Record(i, outcome) if !held.is_empty() => {
                    let (permit, ticket) = held.swap_remove(i % held.len());
                    permit.record(outcome);
                    model.record(ticket, outcome, None);
                }
                Op::RateLimited(i, wait) if !held.is_empty() => {
                    let (permit, ticket) = held.swap_remove(i % held.len());
                    permit.record_rate_limited(wait.map(Duration::from_millis));
                    model.record(ticket, Outcome::Ignored, Some(wait));
                }
                Op::Drop(i) if !held.is_empty() => {
                    let (permit, ticket) = held.swap_remove(i % held.len());
                    drop(permit);
                    model.record(ticket, Outcome::Ignored, None);
                }
                Op::Record(..) | Op::RateLimited(..) | Op::Drop(_) => {}
                Op::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    model.now += ms;
                }
                Op::Reset => {
                    breaker.reset();
                    model.manual(State::Closed);
                }
                Op::ForceOpen => {
                    breaker.force_open();
                    model.manual(State::ForcedOpen);
                }
                Op::Disable => {
                    breaker.disable();
                    model.manual(State::Disabled);
                }
                Op::MetricsOnly => {
                    breaker.metrics_only();
                    model.manual(State::MetricsOnly);
                }
            }
            // Every reader applies the expiry rule; so does the model before comparing.
            model.observe();
            prop_assert_eq!(breaker.state(), model.state(), "step {} state", step);
            prop_assert_eq!(
                breaker.retry_after(),
                model.retry_after(),
                "step {} retry",
                step
            );
            let m = breaker.metrics();
            prop_assert_eq!(
                m.consecutive_reopens,
                model.reopens,
                "step {} reopens",
                step
            );
            prop_assert_eq!(m.ignored_calls, model.ignored, "step {} ignored", step);
            prop_assert_eq!(
                m.not_permitted_calls,
                model.rejected,
                "step {} rejected",
                step
            );
            let windowed = matches!(
                model.state,
                State::Closed | State::RateLimited { .. } | State::MetricsOnly
            );
            if windowed && !matches!(cfg.window, WindowCfg::Consecutive(_)) {
                let (calls, failures, slow) = model.counts();
                prop_assert_eq!(m.calls, calls, "step {} calls", step);
                prop_assert_eq!(m.failed_calls, failures, "step {} failures", step);
                prop_assert_eq!(m.slow_calls, slow, "step {} slow", step);
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn the_breaker_agrees_with_the_reference_model(
        cfg in config(),
        ops in prop::collection::vec(op(), 1..100),
    ) {
        run(cfg, ops)?;
    }
}
