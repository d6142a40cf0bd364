//! What a provider's error body says, for the decisions its status alone cannot make
//! (feature `http`).
//!
//! An LLM API answers a prompt longer than the model's context with a 400
//! `context_length_exceeded`, a refused prompt with a 400 `content_policy_violation` (Azure:
//! `content_filter`), and an account out of credit with a 429 `insufficient_quota`, the same
//! status as a rate limit. [`ProviderErrorLayer`] reads at most a small, bounded part of each
//! error body ([`DEFAULT_MAX_ERROR_BODY`], 16 KiB), and attaches a [`ProviderError`] extension
//! that the rest of the stack reads:
//!
//! - the retry classifier ([`RetryOnStatus`](crate::retry::RetryOnStatus)) never retries a
//!   [`final`](ProviderErrorKind::is_final) kind: the same request to the same model cannot
//!   succeed, and retrying `insufficient_quota` only burns time;
//! - the breaker's [`HttpClassifier`](crate::http::HttpClassifier) counts
//!   `InsufficientQuota` as a failure, not a rate-limit cool-down: the key is out;
//! - a failover with [`fail_over_on_provider_error`] moves on for `ContextLength` (to the next,
//!   larger, model) and `InsufficientQuota` (to another key), and stops with the provider's
//!   answer for `ContentPolicy`, whose reason reaches the caller in the body and the extension.
//!
//! The `.llm()` stack ([`StandardResilience`](crate::stack::StandardResilience)) puts the
//! layer innermost. Alone:
//!
//! ```
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::provider_error::{ProviderError, ProviderErrorKind, ProviderErrorLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! const TOO_LONG: &str = r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
//! let mut client = ServiceBuilder::new()
//!     .layer(ProviderErrorLayer::new())
//!     .service(service_fn(|_: ()| async {
//!         let body = http_body_util::Full::new(bytes::Bytes::from_static(TOO_LONG.as_bytes()));
//!         Ok::<_, http::Error>(http::Response::builder().status(400).body(body)?)
//!     }));
//! let res = client.ready().await?.call(()).await?;
//! let error = res.extensions().get::<ProviderError>().expect("read from the body");
//! assert_eq!(error.kind, ProviderErrorKind::ContextLength);
//! // The caller still reads the provider's own body.
//! use http_body_util::BodyExt;
//! assert_eq!(res.into_body().collect().await?.to_bytes(), TOO_LONG);
//! # Ok(())
//! # }
//! ```

mod body;
mod error;
pub(crate) mod json;
mod layer;

pub use self::body::ProviderErrorBody;
pub use self::error::{ProviderError, ProviderErrorKind};
pub use self::layer::{
    DEFAULT_MAX_ERROR_BODY, MAX_ERROR_BODY_LIMIT, ProviderErrorLayer, ProviderErrorService,
    ProviderResponse, ResponseFuture,
};

use crate::BoxError;
use http::StatusCode;

/// The provider error a response carries, if a [`ProviderErrorLayer`] found one: for
/// `http::Response<B>` and, with the `reqwest` feature, `reqwest::Response`.
pub trait CarriesProviderError {
    /// The [`ProviderError`] extension, if any.
    fn provider_error(&self) -> Option<&ProviderError>;
    /// The response's status.
    fn response_status(&self) -> StatusCode;
}

impl<B> CarriesProviderError for http::Response<B> {
    fn provider_error(&self) -> Option<&ProviderError> {
        self.extensions().get()
    }

    fn response_status(&self) -> StatusCode {
        self.status()
    }
}

#[cfg(feature = "reqwest")]
impl CarriesProviderError for reqwest::Response {
    fn provider_error(&self) -> Option<&ProviderError> {
        self.extensions().get()
    }

    fn response_status(&self) -> StatusCode {
        self.status()
    }
}

/// True when `extensions` hold a [`ProviderError`] of a [final](ProviderErrorKind::is_final)
/// kind: no retry on the same provider can help.
#[cfg(feature = "retry")]
pub(crate) fn is_final(extensions: &http::Extensions) -> bool {
    extensions
        .get::<ProviderError>()
        .is_some_and(|e| e.kind.is_final())
}

/// A failover rule for LLM providers, for
/// [`fail_over_when`](crate::failover::Builder::fail_over_when): move on after an error; after
/// an answer with a [`ProviderError`], when its kind [fails over](ProviderErrorKind::fails_over)
/// (context length, insufficient quota) and never for a content-policy refusal; after any
/// other answer, on 408, 429 and 5xx (529 included).
///
/// ```
/// use tower::util::BoxCloneService;
/// use tower_breaker::BoxError;
/// use tower_breaker::failover::Failover;
/// use tower_breaker::provider_error::fail_over_on_provider_error;
///
/// type Client = BoxCloneService<reqwest::Request, reqwest::Response, BoxError>;
/// let client: Client = BoxCloneService::new(tower::ServiceExt::map_err(reqwest::Client::new(), BoxError::from));
/// let failover = Failover::builder()
///     .http()
///     .provider("gpt-4o-mini", None, client.clone())
///     .provider("gpt-4o", None, client)
///     .fail_over_when(fail_over_on_provider_error::<reqwest::Response>)
///     .build();
/// # fn takes<S: tower::Service<reqwest::Request>>(_: S) {}
/// takes(failover);
/// ```
pub fn fail_over_on_provider_error<R: CarriesProviderError>(result: &Result<R, BoxError>) -> bool {
    match result {
        Err(_) => true,
        Ok(response) => match response.provider_error() {
            Some(error) if error.kind.fails_over() => true,
            Some(error) if error.kind == ProviderErrorKind::ContentPolicy => false,
            _ => {
                let status = response.response_status();
                status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT
            }
        },
    }
}
