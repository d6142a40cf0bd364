//! Invalid configurations are `ConfigError`s naming the field and the allowed range.

use std::time::Duration;
use tower_breaker::chaos::{ChaosLayer, Fault, FaultPlan};

fn http_field(builder: tower_breaker::chaos::ChaosBuilder<http::request::Parts>) -> &'static str {
    builder.build().unwrap_err().field()
}

#[test]
fn injection_rates_outside_zero_to_one_are_refused() {
    for rate in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
        let err = ChaosLayer::<()>::builder("c")
            .inject(Fault::error("x"), rate)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "injection_rate");
        assert_eq!(err.allowed(), "0.0 <= x <= 1.0");
        assert_eq!(err.component(), "c");
    }
    for rate in [0.0, 1.0] {
        assert!(
            ChaosLayer::<()>::builder("c")
                .inject(Fault::error("x"), rate)
                .build()
                .is_ok()
        );
    }
}

#[test]
fn bad_faults_are_refused_with_their_field() {
    let s = Duration::from_secs;
    assert_eq!(
        http_field(ChaosLayer::http("c").inject(Fault::latency_between(s(2), s(1)), 0.5)),
        "latency"
    );
    assert_eq!(
        http_field(ChaosLayer::http("c").inject(Fault::latency(s(25 * 3600)), 0.5)),
        "latency"
    );
    assert_eq!(
        http_field(ChaosLayer::http("c").inject(Fault::status(1000), 0.5)),
        "status"
    );
    assert_eq!(
        http_field(ChaosLayer::http("c").inject(Fault::status(503).header("bad name", "v"), 0.5)),
        "header"
    );
    assert_eq!(
        http_field(ChaosLayer::http("c").inject(Fault::status(503).header("x", "a\nb"), 0.5)),
        "header"
    );
    assert_eq!(
        http_field(ChaosLayer::http("c").inject(Fault::keepalive_only(Duration::ZERO), 0.5)),
        "keepalive_interval"
    );
    // Plans are checked too.
    assert_eq!(
        http_field(ChaosLayer::http("c").plan(FaultPlan::new().then(Fault::status(42)))),
        "status"
    );
}

#[test]
fn http_faults_need_the_http_layer() {
    let err = ChaosLayer::<String>::builder("plain")
        .plan(FaultPlan::new().then(Fault::service_unavailable()))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "fault");
    assert!(err.allowed().contains("ChaosLayer::http"), "{err}");
    assert!(
        ChaosLayer::<String>::builder("plain")
            .inject(Fault::cut_after(1), 0.1)
            .build()
            .is_err()
    );
}

#[test]
fn a_layer_without_a_seed_reports_the_one_it_drew() {
    let a = ChaosLayer::<()>::builder("a").build().unwrap();
    let b = ChaosLayer::<()>::builder("b").build().unwrap();
    assert_ne!(a.seed(), b.seed());
    assert_eq!(
        ChaosLayer::<()>::builder("c")
            .seed(9)
            .build()
            .unwrap()
            .seed(),
        9
    );
}
