//! One span per call: the values each layer records into it, captured by a subscriber, on
//! paused time.

use crate::{counting, quick_retry};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_breaker::ServiceBuilderExt;
use tower_breaker::call_span::CallSpanLayer;
use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
use tower_breaker::stack::StandardResilience;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// The fields of one span, as text.
#[derive(Debug, Default, Clone)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

/// Every closed span: its name and fields.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(String, Fields)>>>);

impl Capture {
    /// The fields of every closed span named `name`, in the order they closed.
    fn all(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        let spans = self.0.lock().unwrap();
        spans
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, fields)| fields.0.clone())
            .collect()
    }

    /// The fields of the one closed span named `name`.
    fn only(&self, name: &str) -> BTreeMap<String, String> {
        let mut found = self.all(name);
        assert_eq!(found.len(), 1, "{found:?}");
        found.remove(0)
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut extensions = span.extensions_mut();
        values.record(extensions.get_mut::<Fields>().unwrap());
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let fields = span.extensions_mut().remove::<Fields>().unwrap();
        self.0
            .lock()
            .unwrap()
            .push((span.name().to_string(), fields));
    }
}

/// A capturing subscriber for this thread (the tests run on a current-thread runtime).
fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    (capture, tracing::subscriber::set_default(subscriber))
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_successful_call_records_one_attempt_a_closed_breaker_and_ok() {
    let (capture, _guard) = capture();
    let stack = StandardResilience::builder("search")
        .retry(quick_retry())
        .build()
        .unwrap();
    let (_, inner) = counting(0, Duration::from_millis(10));
    assert_eq!(stack.layer(inner).oneshot(7).await.unwrap(), 7);
    assert_eq!(
        capture.only("tower_breaker.call"),
        fields(&[
            ("stack", "search"),
            ("attempts", "1"),
            ("breaker.name", "search"),
            ("breaker.state", "closed"),
            ("outcome", "ok"),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn a_retried_call_records_two_attempts() {
    let (capture, _guard) = capture();
    let stack = StandardResilience::builder("blip")
        .retry(quick_retry())
        .build()
        .unwrap();
    let (calls, inner) = counting(1, Duration::from_millis(10));
    assert_eq!(stack.layer(inner).oneshot(7).await.unwrap(), 7);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    let span = capture.only("tower_breaker.call");
    assert_eq!(span["attempts"], "2");
    assert_eq!(span["outcome"], "ok");
    assert_eq!(span.get("error.kind"), None);
}

#[tokio::test(start_paused = true)]
async fn a_call_the_breaker_rejects_records_the_open_state_and_the_error_kind() {
    let stack = StandardResilience::builder("dead")
        .retry(quick_retry())
        .build()
        .unwrap();
    stack.breaker().force_open();
    let (calls, inner) = counting(0, Duration::from_millis(1));
    let (capture, _guard) = capture();
    let err = stack.layer(inner).oneshot(1).await.unwrap_err();
    assert!(
        err.is::<tower_breaker::circuit_breaker::CircuitOpen>(),
        "{err}"
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(
        capture.only("tower_breaker.call"),
        fields(&[
            ("stack", "dead"),
            ("attempts", "1"),
            ("breaker.name", "dead"),
            ("breaker.state", "forced_open"),
            ("outcome", "error"),
            ("error.kind", "circuit_open"),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_call_records_the_timeout_kind_and_every_attempt() {
    let (capture, _guard) = capture();
    let stack = StandardResilience::builder("hang")
        .retry(quick_retry())
        .attempt_timeout(Duration::from_secs(1))
        .total_timeout(Duration::from_millis(2500))
        .build()
        .unwrap();
    let (_, inner) = counting(0, Duration::from_secs(3600));
    assert!(stack.layer(inner).oneshot(1).await.is_err());
    let span = capture.only("tower_breaker.call");
    assert_eq!(span["attempts"], "3");
    assert_eq!(span["error.kind"], "timeout");
    assert_eq!(span["outcome"], "error");
}

#[tokio::test(start_paused = true)]
async fn the_per_key_stack_records_the_keys_breaker() {
    let (capture, _guard) = capture();
    let stack = StandardResilience::builder("gateway")
        .retry(quick_retry())
        .per_key(|n: &u32| n % 2)
        .build()
        .unwrap();
    let (_, inner) = counting(0, Duration::from_millis(1));
    assert_eq!(stack.layer(inner).oneshot(3).await.unwrap(), 3);
    let span = capture.only("tower_breaker.call");
    assert_eq!(span["stack"], "gateway");
    assert_eq!(span["breaker.name"], "gateway:1");
    assert_eq!(span["breaker.state"], "closed");
}

/// A layer used alone records into the caller's own span, for the fields it declares.
#[tokio::test(start_paused = true)]
async fn a_breaker_alone_records_into_the_callers_span() {
    use tracing::Instrument;
    let (capture, _guard) = capture();
    let breaker = CircuitBreaker::builder("alone")
        .sliding_window(SlidingWindow::consecutive(1))
        .build()
        .unwrap();
    let (_, inner) = counting(1, Duration::from_millis(1));
    let svc = ServiceBuilder::new()
        .circuit_breaker(&breaker)
        .service(inner);
    let span = tracing::info_span!(
        "mine",
        breaker.name = tracing::field::Empty,
        breaker.state = tracing::field::Empty,
    );
    // The first call fails and opens the breaker; the second is rejected.
    let calls = async {
        let _ = svc.clone().oneshot(1).await;
        let _ = svc.clone().oneshot(1).await;
    };
    calls.instrument(span).await;
    assert_eq!(
        capture.only("mine"),
        fields(&[("breaker.name", "alone"), ("breaker.state", "open")])
    );
}

#[tokio::test(start_paused = true)]
async fn with_no_subscriber_the_stack_answers_as_before() {
    let stack = StandardResilience::builder("quiet")
        .retry(quick_retry())
        .build()
        .unwrap();
    let (calls, inner) = counting(1, Duration::from_millis(1));
    let svc = CallSpanLayer::new("outer").layer(stack.layer(inner));
    assert_eq!(svc.oneshot(5).await.unwrap(), 5);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[cfg(feature = "stream")]
mod stream {
    use super::capture;
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use std::time::Duration;
    use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
    use tower_breaker::call_span::CallSpanLayer;
    use tower_breaker::stream::{SseRules, StreamGuardLayer};

    /// An SSE answer whose first token comes 250 ms after the headers, which come at 50 ms.
    fn slow_first_token() -> impl tower::Service<
        (),
        Response = http::Response<impl http_body::Body<Data = Bytes, Error = BoxError>>,
        Error = BoxError,
        Future: Send,
    > + Clone {
        service_fn(|()| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let frames = futures_util::stream::unfold(0, |n| async move {
                let frame = match n {
                    0 => {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"
                    }
                    1 => "data: [DONE]\n\n",
                    _ => return None,
                };
                let frame = http_body::Frame::data(Bytes::from_static(frame.as_bytes()));
                Some((Ok::<_, BoxError>(frame), n + 1))
            });
            Ok::<_, BoxError>(http::Response::new(StreamBody::new(Box::pin(frames))))
        })
    }

    async fn ttft(respond_at_first_token: bool) -> String {
        let (capture, _guard) = capture();
        let guard = StreamGuardLayer::builder()
            .rules(SseRules::openai())
            .respond_at_first_token(respond_at_first_token)
            .build()
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(CallSpanLayer::new("chat"))
            .layer(guard)
            .service(slow_first_token());
        let response = svc.oneshot(()).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.ends_with(b"data: [DONE]\n\n"));
        capture.only("tower_breaker.call")["ttft_ms"].clone()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_records_its_time_to_first_token() {
        assert_eq!(ttft(true).await, "300");
    }

    /// The body is read after the call returned, outside its span: the guard kept the span.
    #[tokio::test(start_paused = true)]
    async fn a_stream_read_after_the_call_records_its_time_to_first_token() {
        assert_eq!(ttft(false).await, "300");
    }
}

#[cfg(feature = "quota")]
#[tokio::test(start_paused = true)]
async fn a_call_the_quota_paces_records_its_wait() {
    use tower_breaker::quota::{Quota, QuotaLayer};
    let (capture, _guard) = capture();
    // Two requests a minute: the third waits 30 s for its share of the refill.
    let quota = Quota::<u32>::builder("paced")
        .requests_per_window(2)
        .max_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let (_, inner) = counting(0, Duration::ZERO);
    let svc = ServiceBuilder::new()
        .layer(CallSpanLayer::new("paced"))
        .layer(QuotaLayer::new(quota, |_: &u32| 0))
        .service(inner);
    let started = tokio::time::Instant::now();
    for i in 0..3 {
        assert_eq!(svc.clone().oneshot(i).await.unwrap(), i);
    }
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    let waits: Vec<_> = capture
        .all("tower_breaker.call")
        .into_iter()
        .map(|span| span["quota.wait_ms"].clone())
        .collect();
    assert_eq!(waits, ["0", "0", "30000"]);
}
