//! Property test: random sequences of acquire / record / drop / advance / reset agree with a
//! small reference model of the state machine, written for clarity rather than speed.

use proptest::prelude::*;
use std::collections::VecDeque;
use std::time::Duration;
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, Permit, SlidingWindow};

#[derive(Debug, Clone)]
struct Config {
    consecutive: bool,
    size: u32,
    minimum: u32,
    threshold: f64,
    probes: u32,
    wait_ms: u64,
    max_wait_ms: u64,
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Record(usize, Outcome),
    Drop(usize),
    Advance(u64),
    Reset,
}

fn config() -> impl Strategy<Value = Config> {
    (
        any::<bool>(),
        1u32..6,
        1u32..7,
        prop::sample::select(vec![0.2, 0.25, 0.5, 0.75, 1.0]),
        1u32..4,
        1u64..5_000,
        1u64..8_000,
    )
        .prop_map(
            |(consecutive, size, minimum, threshold, probes, wait_ms, max_wait_ms)| Config {
                consecutive,
                size,
                minimum,
                threshold,
                probes,
                wait_ms,
                max_wait_ms,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop::sample::select(vec![Outcome::Success, Outcome::Failure, Outcome::Ignored]);
    prop_oneof![
        4 => Just(Op::Acquire),
        4 => (any::<usize>(), outcome).prop_map(|(i, o)| Op::Record(i, o)),
        1 => any::<usize>().prop_map(Op::Drop),
        2 => (0u64..6_000).prop_map(Op::Advance),
        1 => Just(Op::Reset),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed,
    Open {
        until: u64,
    },
    HalfOpen {
        admitted: u32,
        settled: u32,
        failures: u32,
        deadline: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Ticket {
    generation: u64,
    probe: bool,
}

/// The reference: a queue for the window, plain integers for everything else.
struct Model {
    cfg: Config,
    now: u64,
    generation: u64,
    state: State,
    window: VecDeque<bool>,
    run: u32,
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
        }
    }

    fn rate_reached(&self, failures: u32, calls: u32) -> bool {
        calls > 0 && failures as f64 / calls as f64 >= self.cfg.threshold - 1e-9
    }

    fn open(&mut self) {
        self.generation += 1;
        self.state = State::Open {
            until: self.now + self.cfg.wait_ms,
        };
    }

    fn close(&mut self) {
        self.generation += 1;
        self.state = State::Closed;
        self.window.clear();
        self.run = 0;
    }

    fn acquire(&mut self) -> Option<Ticket> {
        loop {
            match self.state {
                State::Closed => {
                    return Some(Ticket {
                        generation: self.generation,
                        probe: false,
                    });
                }
                State::Open { until } if self.now < until => return None,
                State::Open { .. } => {
                    self.generation += 1;
                    self.state = State::HalfOpen {
                        admitted: 1,
                        settled: 0,
                        failures: 0,
                        deadline: self.now + self.cfg.max_wait_ms,
                    };
                    return Some(Ticket {
                        generation: self.generation,
                        probe: true,
                    });
                }
                State::HalfOpen {
                    admitted,
                    settled,
                    failures,
                    deadline,
                } => {
                    if admitted < self.cfg.probes {
                        self.state = State::HalfOpen {
                            admitted: admitted + 1,
                            settled,
                            failures,
                            deadline,
                        };
                        return Some(Ticket {
                            generation: self.generation,
                            probe: true,
                        });
                    }
                    if self.now >= deadline {
                        self.open();
                        continue;
                    }
                    return None;
                }
            }
        }
    }

    fn record(&mut self, t: Ticket, outcome: Outcome) {
        if t.generation != self.generation {
            return;
        }
        if !t.probe {
            if outcome == Outcome::Ignored || self.state != State::Closed {
                return;
            }
            let failed = outcome == Outcome::Failure;
            if self.cfg.consecutive {
                self.run = if failed { self.run + 1 } else { 0 };
                if self.run >= self.cfg.size {
                    self.open();
                }
            } else {
                self.window.push_back(failed);
                if self.window.len() > self.cfg.size as usize {
                    self.window.pop_front();
                }
                let calls = self.window.len() as u32;
                let failures = self.window.iter().filter(|f| **f).count() as u32;
                if calls >= self.cfg.minimum.min(self.cfg.size)
                    && self.rate_reached(failures, calls)
                {
                    self.open();
                }
            }
            return;
        }
        let State::HalfOpen {
            admitted,
            settled,
            failures,
            deadline,
        } = self.state
        else {
            return;
        };
        if outcome == Outcome::Ignored {
            self.state = State::HalfOpen {
                admitted: admitted - 1,
                settled,
                failures,
                deadline,
            };
            return;
        }
        let failed = outcome == Outcome::Failure;
        let (settled, failures) = (settled + 1, failures + failed as u32);
        let n = self.cfg.probes;
        if self.cfg.consecutive {
            if failed {
                self.open();
            } else if settled - failures >= n {
                self.close();
            } else {
                self.state = State::HalfOpen {
                    admitted,
                    settled,
                    failures,
                    deadline,
                };
            }
            return;
        }
        let remaining = n - settled;
        if self.rate_reached(failures, n) {
            self.open();
        } else if !self.rate_reached(failures + remaining, n) {
            self.close();
        } else {
            self.state = State::HalfOpen {
                admitted,
                settled,
                failures,
                deadline,
            };
        }
    }

    fn state(&self) -> CircuitState {
        match self.state {
            State::Closed => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

fn run(cfg: Config, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let window = if cfg.consecutive {
            SlidingWindow::consecutive(cfg.size)
        } else {
            SlidingWindow::count_based(cfg.size)
        };
        let breaker = CircuitBreaker::builder("model")
            .sliding_window(window)
            .minimum_calls(cfg.minimum)
            .failure_rate_threshold(cfg.threshold)
            .permitted_calls_in_half_open(cfg.probes)
            .wait_in_open(Duration::from_millis(cfg.wait_ms))
            .max_wait_in_half_open(Some(Duration::from_millis(cfg.max_wait_ms)))
            .build()
            .unwrap();
        let mut model = Model::new(cfg.clone());
        let mut held: Vec<(Permit, Ticket)> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Acquire => {
                    let real = breaker.try_acquire();
                    let expected = model.acquire();
                    prop_assert_eq!(real.is_ok(), expected.is_some(), "step {} acquire", step);
                    if let (Ok(permit), Some(ticket)) = (real, expected) {
                        prop_assert_eq!(permit.is_probe(), ticket.probe, "step {} probe", step);
                        held.push((permit, ticket));
                    }
                }
                Op::Record(i, outcome) if !held.is_empty() => {
                    let (permit, ticket) = held.swap_remove(i % held.len());
                    permit.record(outcome);
                    model.record(ticket, outcome);
                }
                Op::Drop(i) if !held.is_empty() => {
                    let (permit, ticket) = held.swap_remove(i % held.len());
                    drop(permit);
                    model.record(ticket, Outcome::Ignored);
                }
                Op::Record(..) | Op::Drop(_) => {}
                Op::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    model.now += ms;
                }
                Op::Reset => {
                    breaker.reset();
                    model.close();
                }
            }
            prop_assert_eq!(breaker.state(), model.state(), "step {} state", step);
            if model.state == State::Closed && !cfg.consecutive {
                let m = breaker.metrics();
                let failures = model.window.iter().filter(|f| **f).count() as u32;
                prop_assert_eq!(m.calls, model.window.len() as u32, "step {} calls", step);
                prop_assert_eq!(m.failed_calls, failures, "step {} failures", step);
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
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(cfg, ops)?;
    }
}
