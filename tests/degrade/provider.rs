//! A provider for the failover and provider-error tests: a real HTTP server on 127.0.0.1 whose
//! answers the test scripts (status, headers, body, even an endless body), recording the
//! bodies it receives.

use axum::body::{Body, Bytes};
use axum::response::Response;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tower::BoxError;
use tower::util::BoxCloneService;

pub struct Provider {
    addr: std::net::SocketAddr,
    hits: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

impl Provider {
    /// A server answering `answer(hit, request body)`, hits counted from 0.
    pub async fn start(answer: impl Fn(usize, &Bytes) -> Response + Send + Sync + 'static) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (h, b, answer) = (hits.clone(), bodies.clone(), Arc::new(answer));
        let app = axum::Router::new().fallback(move |body: Bytes| {
            let (h, b, answer) = (h.clone(), b.clone(), answer.clone());
            async move {
                let hit = h.fetch_add(1, Ordering::SeqCst);
                b.lock().unwrap().push(body.clone());
                answer(hit, &body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, hits, bodies }
    }

    /// A server that always answers `status` with the JSON `body`.
    pub async fn answering(status: u16, body: &'static str) -> Self {
        Self::start(move |_, _| json(status, body)).await
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1/chat/completions", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn bodies(&self) -> Vec<Bytes> {
        self.bodies.lock().unwrap().clone()
    }
}

pub fn json(status: u16, body: &'static str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// `reqwest::Client` as a boxed provider service.
pub type Http = BoxCloneService<reqwest::Request, reqwest::Response, BoxError>;

pub fn client() -> Http {
    BoxCloneService::new(tower::ServiceExt::map_err(
        reqwest::Client::new(),
        BoxError::from,
    ))
}

/// A POST of `body` to `url`.
pub fn post(url: &str, body: &'static str) -> reqwest::Request {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .build()
        .unwrap()
}

/// A chat completion request body.
pub const ASK: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}"#;

/// Where test requests point before a provider's adapter sends them to its own server.
pub const ANYWHERE: &str = "http://127.0.0.1:9/v1/chat/completions";

/// Sends a chat completion through `svc` and returns its answer.
pub async fn ask<S>(svc: &mut S) -> S::Response
where
    S: tower::Service<reqwest::Request>,
    S::Error: std::fmt::Debug,
{
    ask_at(svc, ANYWHERE).await
}

/// Sends a chat completion to `url` through `svc` and returns its answer.
pub async fn ask_at<S>(svc: &mut S, url: &str) -> S::Response
where
    S: tower::Service<reqwest::Request>,
    S::Error: std::fmt::Debug,
{
    use tower::ServiceExt;
    svc.ready()
        .await
        .unwrap()
        .call(post(url, ASK))
        .await
        .unwrap()
}

/// The failover's report on an answer.
pub fn report(res: &reqwest::Response) -> tower_breaker::failover::FailoverReport {
    res.extensions()
        .get::<tower_breaker::failover::FailoverReport>()
        .cloned()
        .expect("a failover report")
}
