//! What a provider's error body says: [`ProviderError`] and its [`ProviderErrorKind`].

use super::json::{self, Value};
use std::fmt;

/// What kind of error a provider reported in its error body. Decides what the stack does
/// with the answer, beyond its status:
///
/// | kind | retry | breaker | failover |
/// |---|---|---|---|
/// | [`ContextLength`](Self::ContextLength) | never on the same model | by status (a 400 counts as an answer) | moves on (to a larger model) |
/// | [`ContentPolicy`](Self::ContentPolicy) | never | by status | stops: the caller gets the provider's answer and its reason |
/// | [`InsufficientQuota`](Self::InsufficientQuota) | never (retrying only burns time) | a failure, not a rate-limit cool-down: the key is out | moves on |
/// | others | by status | by status | by status |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderErrorKind {
    /// The prompt (with `max_tokens`) is longer than the model's context window: OpenAI's
    /// `context_length_exceeded`, Anthropic's "prompt is too long".
    ContextLength,
    /// The request or its answer was refused by a content policy: OpenAI's
    /// `content_policy_violation`, Azure OpenAI's `content_filter`
    /// (`ResponsibleAIPolicyViolation`).
    ContentPolicy,
    /// The account or key has no quota or credit left: OpenAI's 429 `insufficient_quota`,
    /// Anthropic's `billing_error` or "credit balance is too low". An outage of that key
    /// until someone pays, not a cool-down.
    InsufficientQuota,
    /// A rate limit: OpenAI's `rate_limit_exceeded`, Anthropic's `rate_limit_error`.
    RateLimit,
    /// The provider is overloaded: Anthropic's `overloaded_error`.
    Overloaded,
    /// Any other error the body names (bad request, authentication, server error).
    Other,
}

impl ProviderErrorKind {
    /// True when sending the same request again to the same provider cannot help:
    /// [`ContextLength`](Self::ContextLength), [`ContentPolicy`](Self::ContentPolicy) and
    /// [`InsufficientQuota`](Self::InsufficientQuota).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::ContextLength | Self::ContentPolicy | Self::InsufficientQuota
        )
    }

    /// True when another provider (or a larger model) may succeed where this one cannot:
    /// [`ContextLength`](Self::ContextLength) and [`InsufficientQuota`](Self::InsufficientQuota).
    /// A content-policy refusal is not: another model must not be asked to get round it.
    pub fn fails_over(self) -> bool {
        matches!(self, Self::ContextLength | Self::InsufficientQuota)
    }

    /// A short name: "context_length", "content_policy", "insufficient_quota", "rate_limit",
    /// "overloaded", "other".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ContextLength => "context_length",
            Self::ContentPolicy => "content_policy",
            Self::InsufficientQuota => "insufficient_quota",
            Self::RateLimit => "rate_limit",
            Self::Overloaded => "overloaded",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for ProviderErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider's error, read from its error body by the
/// [`ProviderErrorLayer`](super::ProviderErrorLayer) and attached to the response as an
/// extension (`http::Response` and `reqwest::Response`). The body itself is left as it was.
///
/// ```
/// use tower_breaker::provider_error::{ProviderError, ProviderErrorKind};
///
/// let openai = br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
/// let error = ProviderError::parse(openai).expect("an OpenAI error body");
/// assert_eq!(error.kind, ProviderErrorKind::InsufficientQuota);
/// assert_eq!(error.code.as_deref(), Some("insufficient_quota"));
///
/// let anthropic = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208656 tokens > 200000 maximum"}}"#;
/// assert_eq!(ProviderError::parse(anthropic).unwrap().kind, ProviderErrorKind::ContextLength);
///
/// assert_eq!(ProviderError::parse(b"<html>502 Bad Gateway</html>"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderError {
    /// What kind of error it is.
    pub kind: ProviderErrorKind,
    /// The body's `error.type`, if any (`invalid_request_error`, `insufficient_quota`).
    pub error_type: Option<String>,
    /// The body's `error.code`, if any (`context_length_exceeded`, `content_filter`).
    pub code: Option<String>,
    /// The body's `error.message` (or an `error` that is a plain string), if any.
    pub message: Option<String>,
}

impl ProviderError {
    /// Reads an OpenAI-style (`{"error":{"type","code","message"}}`, also Azure OpenAI and
    /// most OpenAI-compatible servers) or Anthropic-style
    /// (`{"type":"error","error":{"type","message"}}`) error body. `None` when `body` is not
    /// JSON or has no `error` member, unless the document is itself the error object, marked
    /// `"object": "error"` (vLLM's OpenAI server before it nested its errors, Mistral's API).
    pub fn parse(body: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(body).ok()?;
        let document = json::parse(text)?;
        let error = match document.get("error") {
            Some(error) => error,
            None if document.get("object").and_then(Value::as_str) == Some("error") => &document,
            None => return None,
        };
        let text_of = |v: Option<&Value<'_>>| v.and_then(Value::as_str).map(str::to_string);
        let (error_type, code, message, inner_code) = match error {
            Value::String(message) => (None, None, Some(message.to_string()), None),
            Value::Object(_) => (
                text_of(error.get("type")),
                // Some servers send the code as a number ("code": 400): not a code we know.
                text_of(error.get("code")),
                text_of(error.get("message")),
                text_of(error.get("innererror").and_then(|inner| inner.get("code"))),
            ),
            _ => return None,
        };
        let kind = kind_of(
            error_type.as_deref(),
            code.as_deref(),
            inner_code.as_deref(),
            message.as_deref(),
        );
        Some(Self {
            kind,
            error_type,
            code,
            message,
        })
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "provider error ({})", self.kind)?;
        if let Some(code) = self.code.as_deref().or(self.error_type.as_deref()) {
            write!(f, " `{code}`")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProviderError {}

fn kind_of(
    error_type: Option<&str>,
    code: Option<&str>,
    inner_code: Option<&str>,
    message: Option<&str>,
) -> ProviderErrorKind {
    use ProviderErrorKind::*;
    let is = |wanted: &[&str]| {
        [code, error_type, inner_code]
            .into_iter()
            .flatten()
            .any(|name| wanted.contains(&name))
    };
    // Codes first: they are the providers' contract. Messages only where a provider has no
    // code for it (Anthropic's context length and credit balance).
    if is(&["context_length_exceeded"]) {
        return ContextLength;
    }
    if is(&[
        "content_policy_violation",
        "content_filter",
        "ResponsibleAIPolicyViolation",
    ]) {
        return ContentPolicy;
    }
    if is(&[
        "insufficient_quota",
        "billing_error",
        "billing_hard_limit_reached",
    ]) {
        return InsufficientQuota;
    }
    if is(&["rate_limit_exceeded", "rate_limit_error"]) {
        return RateLimit;
    }
    if is(&["overloaded_error"]) {
        return Overloaded;
    }
    let message = message.unwrap_or_default().to_ascii_lowercase();
    if message.contains("prompt is too long")
        || message.contains("maximum context length")
        || message.contains("exceed context limit")
    {
        return ContextLength;
    }
    if message.contains("credit balance is too low") {
        return InsufficientQuota;
    }
    Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(body: &str) -> Option<ProviderErrorKind> {
        ProviderError::parse(body.as_bytes()).map(|e| e.kind)
    }

    /// Real bodies, as the providers send them.
    #[test]
    fn the_providers_bodies() {
        use ProviderErrorKind::*;
        let cases = [
            (
                r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
                ContextLength,
            ),
            (
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208656 tokens > 200000 maximum"},"request_id":"req_011"}"#,
                ContextLength,
            ),
            (
                r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#,
                ContentPolicy,
            ),
            (
                r#"{"error":{"code":"content_policy_violation","message":"Your request was rejected as a result of our safety system.","param":null,"type":"invalid_request_error"}}"#,
                ContentPolicy,
            ),
            (
                r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":null}}"#,
                InsufficientQuota,
            ),
            (
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}"#,
                InsufficientQuota,
            ),
            (
                r#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
                RateLimit,
            ),
            (
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                Overloaded,
            ),
            (
                r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
                Other,
            ),
            (r#"{"error":"upstream timed out"}"#, Other),
        ];
        for (body, expected) in cases {
            assert_eq!(kind(body), Some(expected), "{body}");
        }
    }

    #[test]
    fn not_an_error_body() {
        for body in [
            "",
            "<html>502</html>",
            "{",
            r#"{"message":"no error member"}"#,
            r#"{"error":{"message":"x"}} trailing"#,
            r#"{"error":42}"#,
            "[1,2,3]",
        ] {
            assert_eq!(kind(body), None, "{body}");
        }
        // Nesting past the limit is refused, not recursed into.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(json::parse(&deep), None);
    }

    #[test]
    fn escapes_are_decoded() {
        let e = ProviderError::parse(
            br#"{"error":{"message":"a \"quoted\" \u00e9 word\nnext","code":"x\/y"}}"#,
        )
        .unwrap();
        assert_eq!(e.message.as_deref(), Some("a \"quoted\" \u{e9} word\nnext"));
        assert_eq!(e.code.as_deref(), Some("x/y"));
    }
}
