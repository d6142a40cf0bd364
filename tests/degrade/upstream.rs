//! A provider for the degrade tests: the shared mock upstream (`support::upstream`), answering
//! 503 while the test has it down, counting hits.

use crate::support::upstream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder, service_fn};
use tower_breaker::Outcome;
use tower_breaker::chaos::{ChaosLayer, Fault};
use tower_breaker::circuit_breaker::CircuitBreaker;

pub struct Upstream {
    server: upstream::Upstream,
    down: Arc<AtomicBool>,
}

impl Upstream {
    /// A provider answering "`name` answered", or 503 while down.
    pub async fn start(name: &'static str) -> Self {
        let down = Arc::new(AtomicBool::new(false));
        let flag = down.clone();
        let outage = ChaosLayer::http(name)
            .inject_when(Fault::service_unavailable(), 1.0, move |_| {
                flag.load(Ordering::SeqCst)
            })
            .build()
            .unwrap();
        let server = upstream::Upstream::builder()
            .reply(format!("{name} answered"))
            .chaos(outage)
            .start()
            .await;
        Self { server, down }
    }

    pub fn hits(&self) -> usize {
        self.server.hits()
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        self.server.chat_url()
    }
}

/// A client for one upstream, guarded by `breaker`.
pub fn client(
    upstream: &Upstream,
    breaker: &CircuitBreaker,
) -> BoxCloneService<(), String, BoxError> {
    BoxCloneService::new(
        ServiceBuilder::new()
            .layer(breaker.layer().classify(|r: &Result<String, BoxError>| {
                if r.is_ok() {
                    Outcome::Success
                } else {
                    Outcome::Failure
                }
            }))
            .service(raw(upstream)),
    )
}

/// A real chat completion whose answer is the assistant's text, where a 5xx is an error.
pub fn raw(upstream: &Upstream) -> BoxCloneService<(), String, BoxError> {
    let http = reqwest::Client::new();
    let url = upstream.url();
    let call = service_fn(move |()| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let res = http.post(url).body(r#"{"model":"m"}"#).send().await?;
            let status = res.status();
            let body = res.text().await?;
            if status.is_server_error() {
                return Err::<String, BoxError>(format!("upstream answered {status}").into());
            }
            let answer: serde_json::Value = serde_json::from_str(&body)?;
            Ok(answer["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string())
        }
    });
    BoxCloneService::new(call)
}
