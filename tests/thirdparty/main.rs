//! The LLM stack against servers nobody here wrote: fakellm and llmock (PyPI), each started
//! on 127.0.0.1 by `.ci/thirdparty` (which `.ci/run` calls), driven over HTTP through the
//! README's recipes (`StandardResilience::builder("openai").llm()` over `reqwest::Client`,
//! behind the README's fallback; `Failover` over two providers).
//!
//! Each test reads its server's URL from the environment. Without it the test prints a
//! SKIPPED line and passes, unless `TOWER_BREAKER_REQUIRE_THIRDPARTY=1` (set by
//! `.ci/thirdparty`): then it fails.
//!
//! The servers are real processes, so time here is real time: the assertions count (attempts
//! that reached the provider, outcomes the breaker recorded, tokens the caller read), and where
//! time matters it is bounded by the deadlines the test configures and the stalls it scripts,
//! never by a wide margin.

mod fakellm;
mod llmock;
mod support;
