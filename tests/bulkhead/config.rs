use std::time::Duration;
use tower_breaker::bulkhead::Bulkhead;

#[test]
fn defaults() {
    let bulkhead = Bulkhead::builder("defaults").build().unwrap();
    let metrics = bulkhead.metrics();
    assert_eq!(metrics.max_concurrent, 25);
    assert_eq!(metrics.max_queue, 0);
    assert_eq!(bulkhead.max_queue(), 0);
    assert_eq!(bulkhead.max_wait(), Duration::from_secs(5));
    assert_eq!(bulkhead.name(), "defaults");
}

#[test]
fn zero_max_concurrent_is_rejected() {
    let err = Bulkhead::builder("chat")
        .max_concurrent(0)
        .build()
        .unwrap_err();
    assert_eq!(err.component(), "chat");
    assert_eq!(err.field(), "max_concurrent");
    assert_eq!(err.value(), "0");
    assert_eq!(err.allowed(), "1 ..= 1000000");
}

#[test]
fn absurd_values_are_rejected() {
    let err = Bulkhead::builder("chat")
        .max_concurrent(1_000_001)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_concurrent");

    let err = Bulkhead::builder("chat")
        .max_queue(u32::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_queue");
    assert_eq!(err.allowed(), "0 ..= 1000000");

    let err = Bulkhead::builder("chat")
        .max_wait(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_wait");
    assert_eq!(err.allowed(), "1ms ..= 86400s");

    let err = Bulkhead::builder("chat")
        .max_wait(Duration::from_secs(86_401))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_wait");
}

#[test]
fn bounds_are_accepted() {
    let bulkhead = Bulkhead::builder("edges")
        .max_concurrent(1_000_000)
        .max_queue(1_000_000)
        .max_wait(Duration::from_millis(1))
        .build()
        .unwrap();
    assert_eq!(bulkhead.metrics().max_concurrent, 1_000_000);
    Bulkhead::builder("edges")
        .max_concurrent(1)
        .max_wait(Duration::from_secs(86_400))
        .build()
        .unwrap();
}
