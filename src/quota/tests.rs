use super::permit::Pending;
use super::*;
use std::time::Duration;
use tokio::time::Instant;

fn quota(max_wait: Duration) -> Quota<&'static str> {
    Quota::builder("q")
        .max_wait(max_wait)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(start_paused = true)]
async fn unknown_limits_admit_everything() {
    let q = quota(Duration::ZERO);
    for _ in 0..1000 {
        let _p = q.acquire(&"k", 1_000_000).await.expect("no limit known");
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_waits_its_turn_within_max_wait_and_is_rejected_beyond() {
    let q = quota(Duration::from_secs(2));
    q.set_limits(&"k", Some(60), Some(600));
    let start = Instant::now();
    // 600 tokens: the whole token budget.
    let _p = q.acquire(&"k", 600).await.expect("fits");
    assert_eq!(start.elapsed(), Duration::ZERO);
    // 10 more tokens: 1 s of refill.
    let _p = q.acquire(&"k", 10).await.expect("fits in 1 s");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    // 30 more: 3 s, beyond max_wait.
    let err = q.acquire(&"k", 30).await.expect_err("too long a wait");
    assert_eq!(err.budget(), Exhausted::Tokens);
    assert_eq!(err.retry_after(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiting_call_gives_its_share_back() {
    let q = quota(Duration::from_secs(60));
    q.set_limits(&"k", Some(1), None);
    let _first = q.acquire(&"k", 0).await.expect("fits");
    {
        let waiting = q.acquire(&"k", 0);
        let _ = tokio::time::timeout(Duration::from_secs(1), waiting).await;
    }
    let snap = q.snapshot(&"k").expect("known");
    // One second of refill, and nothing owed.
    assert!(
        (snap.requests_available - 1.0 / 60.0).abs() < 1e-9,
        "{snap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn headers_set_limits_and_count_calls_the_provider_had_not_seen() {
    let q = quota(Duration::ZERO);
    let first = q.acquire(&"k", 100).await.expect("fits");
    let _second = q.acquire(&"k", 100).await.expect("fits");
    // The provider saw the first call only: 1,000 - 100 left.
    first.observe(&RateLimits {
        requests: Budget::new(Some(10), Some(9), None),
        tokens: Budget::new(Some(1_000), Some(900), None),
        ..RateLimits::default()
    });
    let snap = q.snapshot(&"k").expect("known");
    assert_eq!(snap.requests_limit, Some(10));
    assert_eq!(snap.requests_available, 8.0);
    assert_eq!(snap.tokens_available, 800.0);
}

#[tokio::test(start_paused = true)]
async fn usage_corrects_the_estimate() {
    let q = quota(Duration::ZERO);
    q.set_limits(&"k", None, Some(1_000));
    let mut permit = q.acquire(&"k", 500).await.expect("fits");
    permit.record_usage(100);
    permit.record_usage(900); // ignored: once only
    assert_eq!(q.snapshot(&"k").expect("known").tokens_available, 900.0);
}

#[tokio::test(start_paused = true)]
async fn a_429_pauses_the_key_for_the_wait_asked() {
    let q = quota(Duration::from_secs(1));
    let permit = q.acquire(&"k", 0).await.expect("fits");
    permit.rate_limited(&RateLimits {
        retry_after: Some(Duration::from_secs(5)),
        ..RateLimits::default()
    });
    let err = q.acquire(&"k", 0).await.expect_err("paused");
    assert_eq!(err.budget(), Exhausted::Paused);
    assert_eq!(err.retry_after(), Duration::from_secs(5));
    // Other keys are not paused.
    let _other = q.acquire(&"other", 0).await.expect("not paused");
}

#[test]
fn bad_config_names_the_field() {
    let err = Quota::<u8>::builder("q")
        .window(Duration::ZERO)
        .build()
        .expect_err("zero window");
    assert_eq!(err.field(), "window");
    let err = Quota::<u8>::builder("q")
        .requests_per_window(0)
        .build()
        .expect_err("zero limit");
    assert_eq!(err.field(), "requests_per_window");
}

fn tokens(remaining: u64) -> RateLimits {
    RateLimits {
        tokens: Budget::new(Some(1_000), Some(remaining), None),
        ..RateLimits::default()
    }
}

/// Issue "Correctness, round two", 2: A (500) and B (500) wait on a spent budget of 1,000
/// tokens; A is cancelled; B's answer reports 500 left, and the governor believes 500.
#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_gives_back_exactly_its_share() {
    use std::future::Future;
    use std::task::{Context, Waker};
    let q = quota(Duration::from_secs(120));
    q.set_limits(&"k", None, Some(1_000));
    let _all = q.acquire(&"k", 1_000).await.expect("fits");
    let mut cx = Context::from_waker(Waker::noop());
    let mut a = Box::pin(q.acquire(&"k", 500));
    let mut b = Box::pin(q.acquire(&"k", 500));
    assert!(a.as_mut().poll(&mut cx).is_pending());
    assert!(b.as_mut().poll(&mut cx).is_pending());
    drop(a);
    let b = b.await.expect("admitted");
    b.observe(&tokens(500));
    let believed = q.snapshot(&"k").expect("known").tokens_available;
    assert!((believed - 500.0).abs() < 1e-6, "believes {believed}");
}

/// Issue "Correctness, round two", 3b: the provider charged nothing for a 429, so its
/// estimate goes back, and a later report of an earlier call does not take it again.
#[tokio::test(start_paused = true)]
async fn what_a_429_did_not_cost_goes_back_to_the_budget() {
    let q = quota(Duration::from_secs(1));
    q.set_limits(&"k", None, Some(1_000));
    let earlier = q.acquire(&"k", 300).await.expect("fits");
    let limited = q.acquire(&"k", 400).await.expect("fits");
    limited.rate_limited(&RateLimits {
        retry_after: Some(Duration::from_millis(1)),
        ..tokens(700)
    });
    limited.rate_limited(&tokens(700)); // once only
    assert_eq!(q.snapshot(&"k").expect("known").tokens_available, 700.0);
    // The provider charged the earlier call alone.
    earlier.observe(&tokens(700));
    assert_eq!(q.snapshot(&"k").expect("known").tokens_available, 700.0);
}

/// The usage an answer reports and its `remaining` count the call once, in either order.
#[tokio::test(start_paused = true)]
async fn usage_and_remaining_count_a_call_once_in_either_order() {
    for usage_first in [true, false] {
        let q = quota(Duration::ZERO);
        q.set_limits(&"k", None, Some(1_000));
        let mut permit = q.acquire(&"k", 500).await.expect("fits");
        // The provider charged what the call used: 100.
        if usage_first {
            permit.record_usage(100);
            permit.observe(&tokens(900));
        } else {
            permit.observe(&tokens(900));
            permit.record_usage(100);
        }
        let snap = q.snapshot(&"k").expect("known");
        assert_eq!(snap.tokens_available, 900.0, "usage first: {usage_first}");
    }
}

/// One step of [`the_governor_follows_a_reference_model`].
#[derive(Debug, Clone)]
enum Step {
    /// A call estimated at `estimate` tokens that uses `used` (at most the estimate, as
    /// the providers' own estimates, prompt plus `max_tokens`, are), and whose answer says
    /// so or not.
    Admit {
        estimate: u64,
        used: u64,
        reports_usage: bool,
    },
    /// The waiting call at this position (modulo their number) is cancelled.
    Cancel(usize),
    /// The oldest waiting call goes out; the provider charges it, or answers 429.
    Send,
    /// The answer of the call in flight at this position arrives.
    Answer(usize),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (1u64..400, 0u64..=100, any::<bool>()).prop_map(|(estimate, pct, reports_usage)| {
            Step::Admit { estimate, used: estimate * pct / 100, reports_usage }
        }),
        // Around the whole token limit (2,000): above it, a call never fits.
        1 => (1_990u64..2_010, any::<bool>()).prop_map(|(estimate, reports_usage)| {
            Step::Admit { estimate, used: estimate, reports_usage }
        }),
        1 => any::<usize>().prop_map(Step::Cancel),
        3 => Just(Step::Send),
        3 => any::<usize>().prop_map(Step::Answer),
    ]
}

struct ModelCall {
    pending: Option<Pending<&'static str>>,
    permit: Option<QuotaPermit<&'static str>>,
    estimate: f64,
    /// What the provider charges it: what it used when the answer says, else the estimate.
    charge: f64,
    reports_usage: bool,
    /// Once sent: the provider's levels after it, and whether it was a 429.
    answer: Option<([f64; 2], bool)>,
}

proptest::proptest! {
    /// Issue "Correctness, round two", 2: any interleaving of admissions, cancellations,
    /// answers with and without usage and 429s keeps the governor's levels equal to a
    /// reference model, and never above what the provider last reported remaining. The
    /// model: the provider's levels, less the shares of the calls still waiting, less what
    /// the calls in flight were estimated above their charge, except for those admitted
    /// before the latest call answered (whose report counted their real charge). A call
    /// estimated above the whole token limit is refused and changes nothing. Time stands
    /// still: no refill.
    #[test]
    fn the_governor_follows_a_reference_model(
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        let _guard = runtime.enter();
        let q = Quota::<&'static str>::builder("model")
            .max_wait(Duration::from_secs(24 * 3600))
            .requests_per_window(10_000)
            .tokens_per_window(2_000)
            .build()
            .expect("valid");
        let shared = q.shared.clone();
        let mut provider = [10_000.0f64, 2_000.0];
        let mut calls: Vec<ModelCall> = Vec::new();
        // The latest call (in admission order) whose answer was read.
        let mut synced = None;
        for step in steps {
            let mut reported = None;
            match step {
                Step::Admit { estimate, used, reports_usage } => {
                    match shared.admit_local(&"k", estimate, shared.max_wait) {
                        // More than the whole limit: refused at once, nothing taken (the
                        // levels are compared with the model below).
                        Err(err) => {
                            proptest::prop_assert!(estimate > 2_000, "{}", err);
                            proptest::prop_assert!(err.never_fits());
                            proptest::prop_assert_eq!(err.budget(), Exhausted::Tokens);
                        }
                        Ok(admitted) => {
                            proptest::prop_assert!(estimate <= 2_000, "{} admitted", estimate);
                            let pending = Pending::new(shared.clone(), "k", estimate, admitted);
                            calls.push(ModelCall {
                                pending: Some(pending),
                                permit: None,
                                estimate: estimate as f64,
                                charge: if reports_usage { used as f64 } else { estimate as f64 },
                                reports_usage,
                                answer: None,
                            });
                        }
                    }
                }
                Step::Cancel(i) => {
                    let waiting: Vec<usize> =
                        (0..calls.len()).filter(|&i| calls[i].pending.is_some()).collect();
                    if !waiting.is_empty() {
                        calls[waiting[i % waiting.len()]].pending = None;
                    }
                }
                Step::Send => {
                    if let Some(call) = calls.iter_mut().find(|c| c.pending.is_some()) {
                        let pending = call.pending.take().expect("waiting");
                        call.permit = Some(pending.into_permit());
                        // Every call counts as a request (providers count 429s too).
                        provider[0] -= 1.0;
                        let fits = provider[1] >= call.charge;
                        if fits {
                            provider[1] -= call.charge;
                        }
                        call.answer = Some((provider, !fits));
                    }
                }
                Step::Answer(i) => {
                    let in_flight: Vec<usize> =
                        (0..calls.len()).filter(|&i| calls[i].permit.is_some()).collect();
                    if !in_flight.is_empty() {
                        let index = in_flight[i % in_flight.len()];
                        synced = synced.max(Some(index));
                        let call = &mut calls[index];
                        let mut permit = call.permit.take().expect("in flight");
                        let (levels, rate_limited) = call.answer.expect("sent");
                        let limits = RateLimits {
                            requests: Budget::new(Some(10_000), Some(levels[0] as u64), None),
                            tokens: Budget::new(Some(2_000), Some(levels[1] as u64), None),
                            retry_after: Some(Duration::from_secs(1)),
                            ..RateLimits::default()
                        };
                        let usage = (call.reports_usage && !rate_limited)
                            .then_some(call.charge as u64);
                        permit.answered(
                            &Observation::limits(limits).rate_limited(rate_limited).usage(usage),
                        );
                        call.answer = None;
                        call.estimate = 0.0;
                        call.charge = 0.0;
                        reported = Some(levels);
                    }
                }
            }
            let mut model = provider;
            for (index, call) in calls.iter().enumerate() {
                if call.pending.is_some() {
                    model[0] -= 1.0;
                    model[1] -= call.estimate;
                } else if synced.is_some_and(|s| index < s) {
                    // Reported on by a later call's answer.
                } else if let Some((_, rate_limited)) = call.answer {
                    let charged = if rate_limited { 0.0 } else { call.charge };
                    model[1] -= call.estimate - charged;
                }
            }
            let governor = q
                .snapshot(&"k")
                .map_or([10_000.0, 2_000.0], |s| [s.requests_available, s.tokens_available]);
            proptest::prop_assert_eq!(governor, model);
            if let Some(reported) = reported {
                proptest::prop_assert!(governor[0] <= reported[0] && governor[1] <= reported[1]);
            }
        }
    }
}
