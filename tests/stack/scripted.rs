//! An in-process LLM upstream on paused time: answers each model's calls from a script, and
//! notes when each call reached it.

use http::{Request, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;
use tower::{BoxError, Service, service_fn};

/// A chat completion request for `model` (the model also goes in an `x-model` header, the
/// key the per-model tests pick breakers by).
pub fn chat(model: &str) -> Request<String> {
    Request::post("/v1/chat/completions")
        .header("x-model", model)
        .body(format!(r#"{{"model":"{model}","messages":[]}}"#))
        .unwrap()
}

/// The `x-model` header of a request.
pub fn model(req: &Request<String>) -> String {
    req.headers()
        .get("x-model")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// A response with `code` and `headers`.
pub fn status(code: u16, headers: &[(&str, &str)]) -> Response<String> {
    let mut builder = Response::builder().status(code);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(String::new()).unwrap()
}

/// When each model's calls reached the upstream.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<HashMap<String, Vec<Instant>>>>);

impl Calls {
    pub fn of(&self, model: &str) -> Vec<Instant> {
        self.0
            .lock()
            .unwrap()
            .get(model)
            .cloned()
            .unwrap_or_default()
    }
}

/// Answers call `n` for a model with `answer(model, n)`, at once.
pub fn upstream(
    answer: impl Fn(&str, usize) -> Response<String> + Clone + Send + 'static,
) -> (
    impl Service<Request<String>, Response = Response<String>, Error = BoxError, Future: Send>
    + Clone
    + Send
    + 'static,
    Calls,
) {
    let calls = Calls::default();
    let log = calls.clone();
    let svc = service_fn(move |req: Request<String>| {
        let model = model(&req);
        let n = {
            let mut calls = log.0.lock().unwrap();
            let seen = calls.entry(model.clone()).or_default();
            seen.push(Instant::now());
            seen.len() - 1
        };
        let response = answer(&model, n);
        async move { Ok::<_, BoxError>(response) }
    });
    (svc, calls)
}
