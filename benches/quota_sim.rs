//! The quota governor and the adaptive limit against a simulated LLM provider, on tokio's
//! paused clock (minutes of traffic in seconds). Prints the figures of `benches/README.md`:
//!
//!     cargo bench --all-features --bench quota_sim
//!
//! The provider and the scenarios are `tests/quota/sim.rs`, which `tests/quota` checks in CI.

#[path = "../tests/quota/sim.rs"]
mod sim;

use sim::{CapacitySim, QuotaSim, run_capacity, run_quota};
use tower_breaker::bulkhead::{Aimd, Gradient, LimitAlgorithm};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would too: run either way, it is
    // quick.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        quota().await;
        capacity().await;
        answer_lengths().await;
    });
}

async fn quota() {
    println!("## Quota: 600 RPM, 100,000 TPM, 10 minutes, calls of 150-750 tokens (mean 450)\n");
    println!(
        "| client | calls sent | 429s | 429 share | quota used | sent / one quota | rejected locally |"
    );
    println!("|---|---|---|---|---|---|---|");
    let runs = [
        (
            "1 replica, 20 workers, no governor (backs off on 429)",
            QuotaSim {
                ungoverned: true,
                ..QuotaSim::default()
            },
        ),
        (
            "1 replica, 20 workers, limits from headers",
            QuotaSim::default(),
        ),
        (
            "1 replica, 20 workers, limits by hand",
            QuotaSim {
                learn: false,
                ..QuotaSim::default()
            },
        ),
        (
            "3 replicas x 7 workers, limits by hand, no store",
            QuotaSim {
                replicas: 3,
                workers: 7,
                learn: false,
                ..QuotaSim::default()
            },
        ),
        (
            "3 replicas x 7 workers, limits from headers, no store",
            QuotaSim {
                replicas: 3,
                workers: 7,
                ..QuotaSim::default()
            },
        ),
        (
            "3 replicas x 7 workers, limits by hand, shared store",
            QuotaSim {
                replicas: 3,
                workers: 7,
                learn: false,
                shared: true,
                ..QuotaSim::default()
            },
        ),
        (
            "3 replicas x 7 workers, limits from headers, shared store",
            QuotaSim {
                replicas: 3,
                workers: 7,
                shared: true,
                ..QuotaSim::default()
            },
        ),
    ];
    for (name, run) in runs {
        let r = run_quota(run).await;
        println!(
            "| {name} | {} | {} | {:.2} % | {:.1} % | {:.1} % | {} |",
            r.sent,
            r.rate_limited,
            100.0 * r.rate_limited_share(),
            100.0 * r.quota_used(),
            100.0 * r.sent_over_quota,
            r.rejected_locally
        );
    }
    println!();
    println!("## The same provider in harder cases\n");
    println!(
        "| client | calls sent | 429s | 429 share | last 429 (s) | longest time with no call (s) | rejected locally |"
    );
    println!("|---|---|---|---|---|---|---|");
    let harder = [
        (
            "1 replica, 20 workers, limits from headers; both limits halve at 5 min",
            QuotaSim::halving(),
        ),
        (
            "3 replicas x 7 workers, limits by hand, no store, busy key at start, 1 min",
            QuotaSim::busy_fleet(false),
        ),
        (
            "3 replicas x 7 workers, limits by hand, shared store, busy key at start, 1 min",
            QuotaSim::busy_fleet(true),
        ),
    ];
    for (name, run) in harder {
        let r = run_quota(run).await;
        println!(
            "| {name} | {} | {} | {:.2} % | {} | {:.1} | {} |",
            r.sent,
            r.rate_limited,
            100.0 * r.rate_limited_share(),
            r.last_rate_limited
                .map_or("none".to_owned(), |t| format!("{t:.1}")),
            r.longest_idle,
            r.rejected_locally
        );
    }
    println!();
}

async fn capacity() {
    let base = CapacitySim::default();
    println!(
        "## Capacity steps {:?} (second, capacity), 240 workers, TTFT 300 ms, answers 0.25-1.25 s\n",
        base.phases
    );
    // The best fixed limit of each phase, over a grid.
    let mut best = vec![(0.0f64, 0u32); base.phases.len()];
    for limit in [
        10, 15, 20, 22, 25, 30, 35, 40, 44, 50, 60, 70, 80, 88, 100, 120,
    ] {
        let r = run_capacity(CapacitySim::fixed(limit)).await;
        for (b, t) in best.iter_mut().zip(r.throughput) {
            if t > b.0 {
                *b = (t, limit);
            }
        }
    }
    println!(
        "| limit | phase | capacity | settled (s after step, ±20 %) | limit range after +10 s | calls/s | best fixed (limit) | ratio | 529s (share of calls) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, sim) in [
        ("gradient", CapacitySim::default()),
        (
            "gradient, tolerance 1.2",
            CapacitySim {
                algorithm: Some(LimitAlgorithm::Gradient(Gradient::default().tolerance(1.2))),
                ..CapacitySim::default()
            },
        ),
        ("aimd", CapacitySim::aimd()),
    ] {
        let r = run_capacity(sim.clone()).await;
        for (i, (from, capacity)) in sim.phases.iter().enumerate() {
            let to = sim.phases.get(i + 1).map_or(sim.seconds, |p| p.0) as f64;
            let from = *from as f64;
            let (lo, hi) = (
                (*capacity as f64 * 0.8) as u32,
                (*capacity as f64 * 1.2) as u32,
            );
            let settled = r
                .settled_at(from, to, lo, hi)
                .map_or("never".to_owned(), |t| format!("{:.1}", t - from));
            let (min, max) = r.range(from + 10.0, to);
            let calls = r.throughput[i] * (to - from) + r.overloaded[i] as f64;
            println!(
                "| {name} | {i} | {capacity} | {settled} | {min}-{max} | {:.1} | {:.1} ({}) | {:.2} | {} ({:.0} %) |",
                r.throughput[i],
                best[i].0,
                best[i].1,
                r.throughput[i] / best[i].0,
                r.overloaded[i],
                100.0 * r.overloaded[i] as f64 / calls
            );
        }
    }
    println!();
}

async fn answer_lengths() {
    println!(
        "## Answers of 100-1,000 tokens (0.5-5 s) at a constant 300 ms TTFT, 30 workers, no capacity limit, initial limit 40\n"
    );
    println!("| limit | latency sample | least limit | last limit |");
    println!("|---|---|---|---|");
    for (name, algorithm) in [
        ("gradient", LimitAlgorithm::default()),
        ("aimd", LimitAlgorithm::Aimd(Aimd::default())),
    ] {
        for total in [false, true] {
            let r = run_capacity(CapacitySim {
                phases: vec![(0, 10_000)],
                seconds: 120,
                workers: 30,
                algorithm: Some(algorithm),
                initial_limit: 40,
                answer_tokens: (100, 1_000),
                sample_total_duration: total,
                ..CapacitySim::default()
            })
            .await;
            let (min, _) = r.range(0.0, 120.0);
            let last = r.limits.last().map_or(0, |(_, l)| *l);
            let sample = if total {
                "total duration"
            } else {
                "time to first token"
            };
            println!("| {name} | {sample} | {min} | {last} |");
        }
    }
    println!();
}
