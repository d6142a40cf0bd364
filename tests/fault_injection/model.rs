//! The plan cursor against a reference model: for any plan (errors and healthy steps), cycle
//! flag and pattern of requests with the layer switched off, the `n`th request the layer lets
//! in takes step `n` (modulo the length when cycling), and the rest are healthy.

use proptest::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tower::{Service, ServiceExt, service_fn};
use tower_breaker::chaos::{ChaosLayer, Fault, FaultPlan};
use tower_layer::Layer;

/// What the model expects: whether each request fails, from the plan and the switch.
fn model(steps: &[bool], cycle: bool, switched_on: &[bool]) -> Vec<bool> {
    let mut taken = 0;
    switched_on
        .iter()
        .map(|&on| {
            if !on {
                return false;
            }
            let fails = if steps.is_empty() {
                false
            } else if cycle {
                steps[taken % steps.len()]
            } else {
                steps.get(taken).copied().unwrap_or(false)
            };
            taken += 1;
            fails
        })
        .collect()
}

proptest! {
    #[test]
    fn the_plan_cursor_matches_the_model(
        steps in proptest::collection::vec(any::<bool>(), 0..8),
        cycle in any::<bool>(),
        switched_on in proptest::collection::vec(any::<bool>(), 0..40),
    ) {
        let mut plan = FaultPlan::new();
        for &fails in &steps {
            plan = if fails { plan.then(Fault::error("step")) } else { plan.then_healthy(1) };
        }
        if cycle {
            plan = plan.cycle();
        }
        let on = Arc::new(AtomicBool::new(true));
        let switch = on.clone();
        let layer = ChaosLayer::builder("model")
            .plan(plan)
            .enabled_when(move |_: &()| switch.load(Ordering::SeqCst))
            .build()
            .unwrap();
        let mut svc = layer.layer(service_fn(|_: ()| async {
            Ok::<_, std::convert::Infallible>(())
        }));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let failed: Vec<bool> = runtime.block_on(async {
            let mut failed = Vec::new();
            for &enabled in &switched_on {
                on.store(enabled, Ordering::SeqCst);
                failed.push(svc.ready().await.unwrap().call(()).await.is_err());
            }
            failed
        });
        prop_assert_eq!(failed, model(&steps, cycle, &switched_on));
    }
}
