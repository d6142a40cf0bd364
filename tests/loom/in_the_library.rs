//! The loom models (`main.rs` and its modules, next to this file) are compiled into the
//! library's own tests, the only build where the crate's atomics are loom's (`loom` is a
//! dev-dependency). Run them with
//! `RUSTFLAGS="--cfg tower_breaker_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --lib`;
//! this test target is empty.
