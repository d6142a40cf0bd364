//! A quota governor's admissions: no listener, no event built and nothing allocated.

use crate::{CALLS, allocations_per_calls};
use futures_util::FutureExt;
use tower_breaker::quota::Quota;

#[test]
fn quota_admissions_without_a_listener_allocate_nothing() {
    // Outside a runtime the clock is the system's: a budget this large never makes a call
    // wait, so every admission is ready at its first poll.
    let quota = Quota::<&'static str>::builder("alloc")
        .requests_per_window(u64::from(u32::MAX))
        .tokens_per_window(u64::from(u32::MAX))
        .build()
        .expect("valid config");
    let keys = ["gpt", "claude", "gemini", "mistral"];
    let allocations = allocations_per_calls(|i| {
        let key = &keys[(i % 4) as usize];
        let permit = quota.acquire(key, 100).now_or_never().expect("no wait");
        drop(std::hint::black_box(permit.expect("admitted")));
    });
    assert_eq!(allocations, 0, "allocations in {CALLS} admissions");
}
