//! Loads `examples/settings.toml` (or the file given as the first argument) into a working
//! LLM client stack, a quota, a stream guard, a hedge and a chaos layer, and prints them; a bad
//! file prints the error with its path and exits with status 1.
//!
//! ```text
//! cargo run --example settings --features full
//! cargo run --example settings --features full -- my-settings.toml
//! ```

use serde::Deserialize;
use tower_breaker::chaos::ChaosLayer;
use tower_breaker::quota::Quota;
use tower_breaker::settings::{
    self, ChaosSettings, HedgeSettings, QuotaSettings, StackSettings, StreamGuardSettings,
};
use tower_breaker::stack::StandardResilience;
use tower_breaker::stream::{Hedge, StreamGuardLayer};

/// The whole file: one table per component; an unknown table is an error too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    openai: StackSettings,
    quota: QuotaSettings,
    stream_guard: StreamGuardSettings,
    hedge: HedgeSettings,
    chaos: ChaosSettings,
}

fn load(text: &str) -> Result<(), Box<dyn std::error::Error>> {
    let config: Config = settings::deserialize(toml::de::Deserializer::parse(text)?)?;

    let openai = config
        .openai
        .build("openai", StandardResilience::builder("openai").llm())?;
    println!("openai: {openai:?}");
    println!(
        "  breaker window {:?}, retry up to {} attempts, {} calls at once",
        openai.breaker().time_window(),
        openai.retry().max_attempts(),
        openai.bulkhead().metrics().max_concurrent,
    );
    let client = openai.service(reqwest::Client::new());
    drop(client);

    let quota = config
        .quota
        .build("quota", Quota::<String>::builder("openai"))?;
    println!("quota: {}", quota.name());

    let guard = config
        .stream_guard
        .build("stream_guard", StreamGuardLayer::builder())?;
    println!("stream_guard: {guard:?}");

    let hedge = config.hedge.build(
        "hedge",
        Hedge::<(), reqwest::Request>::builder(),
        reqwest::Client::new(),
    )?;
    println!("hedge: first delay {:?}", hedge.current_delay());

    let chaos = config.chaos.build("chaos", ChaosLayer::http("staging"))?;
    println!("chaos: {chaos:?}");
    Ok(())
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/settings.toml").into());
    let result = std::fs::read_to_string(&path)
        .map_err(|err| format!("{path}: {err}").into())
        .and_then(|text| load(&text));
    if let Err(err) = result {
        // A `SettingsError` says where in the file: `openai.breaker.minimum_calls: ...`.
        eprintln!("{path}: {err}");
        std::process::exit(1);
    }
}
