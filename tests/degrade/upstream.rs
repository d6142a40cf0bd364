//! A real axum server on an ephemeral port whose health the test switches, counting hits.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder, service_fn};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::CircuitBreaker;

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let (h, d) = (hits.clone(), down.clone());
        let app = Router::new().route(
            "/",
            get(move || {
                let (h, d) = (h.clone(), d.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    if d.load(Ordering::SeqCst) {
                        (StatusCode::SERVICE_UNAVAILABLE, String::new())
                    } else {
                        (StatusCode::OK, format!("{name} answered"))
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, hits, down }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
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

/// A real HTTP GET whose answer is the body, where a 5xx is an error.
pub fn raw(upstream: &Upstream) -> BoxCloneService<(), String, BoxError> {
    let http = reqwest::Client::new();
    let url = upstream.url();
    let call = service_fn(move |()| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let res = http.get(url).send().await?;
            let status = res.status();
            let body = res.text().await?;
            if status.is_server_error() {
                return Err::<String, BoxError>(format!("upstream answered {status}").into());
            }
            Ok(body)
        }
    });
    BoxCloneService::new(call)
}
