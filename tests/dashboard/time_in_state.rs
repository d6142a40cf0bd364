//! Time in state against the true timeline, whatever the order of changes and samples:
//! the state shown is the state at the sample, and when the dashboard does not say "at
//! least", the state began at most two ticks before the time it shows. (It sees only its
//! samples: a change and a change back between two of them is not seen, so the time can
//! be too long then; the module docs say so.)

use crate::stream::TICK;
use proptest::prelude::*;
use std::time::Duration;
use tokio::time::Instant;
use tower_breaker::circuit_breaker::CircuitBreaker;
use tower_breaker::dashboard::Dashboard;

#[derive(Debug, Clone)]
enum Step {
    Wait(u64),
    Open,
    Close,
    Disable,
    Sample,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..3_000).prop_map(Step::Wait),
        Just(Step::Open),
        Just(Step::Close),
        Just(Step::Disable),
        Just(Step::Sample),
        Just(Step::Sample),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn the_state_is_exact_and_an_exact_time_is_never_short_by_more_than_two_ticks(steps in prop::collection::vec(step(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let breaker = CircuitBreaker::builder("b").build().unwrap();
            let dashboard = Dashboard::builder().tick(TICK).history(5).build().unwrap();
            dashboard.register_breaker(&breaker);
            // The model: the true state and when it began (before the dashboard existed
            // for the first one).
            let mut state = "closed";
            let mut began = Instant::now();
            for step in steps {
                let next = match step {
                    Step::Wait(ms) => {
                        tokio::time::advance(Duration::from_millis(ms)).await;
                        None
                    }
                    Step::Open => { breaker.force_open(); Some("forced_open") }
                    Step::Close => { breaker.reset(); Some("closed") }
                    Step::Disable => { breaker.disable(); Some("disabled") }
                    Step::Sample => {
                        let s = dashboard.snapshot();
                        let b = &s.breakers[0];
                        let truth = Instant::now().duration_since(began).as_millis() as u64;
                        prop_assert_eq!(b.state, state);
                        if !b.in_state_at_least {
                            let two_ticks = 2 * TICK.as_millis() as u64;
                            prop_assert!(truth.saturating_sub(b.in_state_ms) <= two_ticks,
                                "said exact: {} but true {}", b.in_state_ms, truth);
                        }
                        prop_assert!(b.history.len() <= 5);
                        None
                    }
                };
                if let Some(next) = next {
                    if next != state {
                        state = next;
                        began = Instant::now();
                    }
                }
            }
            Ok(())
        })?;
    }
}
