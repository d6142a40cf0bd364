//! Which server-sent events are tokens, and which one says that the answer is complete.

use super::sse::SseEvent;
use std::fmt;
use std::sync::Arc;

type EventPredicate = Arc<dyn Fn(&SseEvent) -> bool + Send + Sync>;

/// What a stream's events mean: which ones are tokens (the first one stops the time-to-first-
/// token clock, each one resets the idle clock), which one says the answer is complete, and
/// which one is the last the upstream will send.
///
/// | preset | token | complete | last |
/// |---|---|---|---|
/// | [`openai`](Self::openai) (and every OpenAI-compatible API) | any non-empty `data:` but `[DONE]` | `data: [DONE]`, or a chunk with a non-null `finish_reason` | `data: [DONE]` |
/// | [`anthropic`](Self::anthropic) | `content_block_start`, `content_block_delta`, `message_delta` | `message_stop` | `message_stop` |
/// | [`any_data`](Self::any_data) | any non-empty `data:` | a clean end of the body | none |
///
/// A stream that ends before its complete event is truncated: a failure
/// ([`StreamTruncated`](super::StreamTruncated)), never a success. After its last event the
/// body reports its end at once, so a client that stops reading at `[DONE]` still records a
/// success.
///
/// Empty events (blank `data:`) and comments (`: keepalive`) are never tokens. The JSON checks
/// are a scan for the key, not a JSON parse: a `"finish_reason"` key anywhere in the chunk
/// counts, which is where OpenAI-compatible APIs put it.
///
/// ```
/// use tower_breaker::stream::{SseEvent, SseRules};
///
/// let rules = SseRules::openai();
/// let chunk = |data: &str| SseEvent { event: String::new(), data: data.into() };
/// assert!(rules.is_token(&chunk(r#"{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}"#)));
/// assert!(!rules.is_complete(&chunk(r#"{"choices":[{"delta":{},"finish_reason":null}]}"#)));
/// assert!(rules.is_complete(&chunk(r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#)));
/// assert!(rules.is_last(&chunk("[DONE]")));
///
/// // Your own API: tokens are `event: token`, the end is `event: end`.
/// let custom = SseRules::any_data()
///     .token_when(|e| e.event == "token")
///     .complete_when(|e| e.event == "end")
///     .last_when(|e| e.event == "end");
/// assert!(custom.requires_completion());
/// ```
#[derive(Clone)]
pub struct SseRules {
    name: &'static str,
    token: EventPredicate,
    complete: Option<EventPredicate>,
    last: Option<EventPredicate>,
}

impl SseRules {
    /// OpenAI's chat and completions streams, and the many APIs that copy them (vLLM, Ollama,
    /// LiteLLM, OpenRouter, Together, Groq, ...).
    pub fn openai() -> Self {
        Self {
            name: "openai",
            token: Arc::new(|e| !e.is_empty() && e.data.trim() != "[DONE]"),
            complete: Some(Arc::new(|e| {
                e.data.trim() == "[DONE]"
                    || json_value(&e.data, "finish_reason").is_some_and(|v| v != "null")
            })),
            last: Some(Arc::new(|e| e.data.trim() == "[DONE]")),
        }
    }

    /// Anthropic's Messages stream. `message_start` and `ping` come before the model has
    /// produced anything, so they are not tokens.
    pub fn anthropic() -> Self {
        fn kind(e: &SseEvent) -> Option<&str> {
            if e.event.is_empty() {
                json_value(&e.data, "type").map(|v| v.trim_matches('"'))
            } else {
                Some(e.event.as_str())
            }
        }
        Self {
            name: "anthropic",
            token: Arc::new(|e| {
                !e.is_empty()
                    && matches!(
                        kind(e),
                        Some("content_block_start" | "content_block_delta" | "message_delta")
                    )
            }),
            complete: Some(Arc::new(|e| kind(e) == Some("message_stop"))),
            last: Some(Arc::new(|e| kind(e) == Some("message_stop"))),
        }
    }

    /// Any non-empty `data:` event is a token; a clean end of the body is a complete answer.
    /// Add rules with [`complete_when`](Self::complete_when) and friends.
    pub fn any_data() -> Self {
        Self {
            name: "any_data",
            token: Arc::new(|e| !e.is_empty()),
            complete: None,
            last: None,
        }
    }

    /// Which events are tokens (replaces the preset's rule).
    pub fn token_when(mut self, f: impl Fn(&SseEvent) -> bool + Send + Sync + 'static) -> Self {
        self.token = Arc::new(f);
        self.name = "custom";
        self
    }

    /// Which event completes the answer (replaces the preset's rule). From then on, the stream
    /// must end with one.
    pub fn complete_when(mut self, f: impl Fn(&SseEvent) -> bool + Send + Sync + 'static) -> Self {
        self.complete = Some(Arc::new(f));
        self.name = "custom";
        self
    }

    /// Which event is the last the upstream sends (replaces the preset's rule): after it the
    /// body reports its end at once. It should also complete the answer.
    pub fn last_when(mut self, f: impl Fn(&SseEvent) -> bool + Send + Sync + 'static) -> Self {
        self.last = Some(Arc::new(f));
        self.name = "custom";
        self
    }

    /// The preset's name (`openai`, `anthropic`, `any_data`), or `custom`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// True when `event` is a token.
    pub fn is_token(&self, event: &SseEvent) -> bool {
        (self.token)(event)
    }

    /// True when `event` completes the answer.
    pub fn is_complete(&self, event: &SseEvent) -> bool {
        self.complete.as_ref().is_some_and(|f| f(event))
    }

    /// True when `event` is the last one the upstream sends.
    pub fn is_last(&self, event: &SseEvent) -> bool {
        self.last.as_ref().is_some_and(|f| f(event))
    }

    /// True when a stream must send a complete event before it ends.
    pub fn requires_completion(&self) -> bool {
        self.complete.is_some()
    }
}

impl Default for SseRules {
    /// [`SseRules::openai`], the most common wire format.
    fn default() -> Self {
        Self::openai()
    }
}

impl fmt::Debug for SseRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseRules")
            .field("name", &self.name)
            .field("requires_completion", &self.requires_completion())
            .finish_non_exhaustive()
    }
}

/// The raw value of the first `"key": value` in `json` (a string keeps its quotes), without
/// parsing the document: enough to read a flag from a known wire format.
fn json_value<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = json;
    while let Some(at) = find(rest, key) {
        let before = &rest[..at];
        let after = &rest[at + key.len()..];
        rest = after;
        if !before.ends_with('"') || !after.starts_with('"') {
            continue;
        }
        let Some(value) = after[1..].trim_start().strip_prefix(':') else {
            continue;
        };
        let value = value.trim_start();
        if let Some(string) = value.strip_prefix('"') {
            let mut escaped = false;
            for (i, c) in string.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => return Some(&value[..i + 2]),
                    _ => escaped = false,
                }
            }
            return None;
        }
        let end = value
            .find(|c: char| c == ',' || c == '}' || c == ']' || c.is_whitespace())
            .unwrap_or(value.len());
        return Some(&value[..end]);
    }
    None
}

/// The first `needle` in `haystack`: candidates found eight bytes at a time by the needle's
/// first byte (`str::find` costs more on these short chunks).
fn find(haystack: &str, needle: &str) -> Option<usize> {
    let (hay, key) = (haystack.as_bytes(), needle.as_bytes());
    let first = *key.first()?;
    let mut from = 0;
    while let Some(at) = super::sse::find_either(&hay[from..], first, first) {
        let at = from + at;
        if hay[at..].starts_with(key) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn find_agrees_with_str_find() {
        let hay = "aaa\"finish_reason\":null,\"f\":\"finish\",\"finish_reason\":\"stop\"";
        for key in ["finish_reason", "f", "\"", "stop", "nope", "a"] {
            for start in 0..hay.len() {
                assert_eq!(
                    find(&hay[start..], key),
                    hay[start..].find(key),
                    "{key} {start}"
                );
            }
        }
    }

    #[test]
    fn json_value_reads_strings_literals_and_skips_lookalikes() {
        let json = r#"{"x_finish_reason":"no","finish_reason" : "st\"op","n":null}"#;
        assert_eq!(json_value(json, "finish_reason"), Some(r#""st\"op""#));
        assert_eq!(json_value(json, "n"), Some("null"));
        assert_eq!(json_value(json, "missing"), None);
        assert_eq!(
            json_value(r#"{"finish_reason":"#, "finish_reason"),
            Some("")
        );
    }

    #[test]
    fn anthropic_tokens_exclude_start_and_ping_and_stop_completes() {
        let rules = SseRules::anthropic();
        assert!(!rules.is_token(&data("message_start", r#"{"type":"message_start"}"#)));
        assert!(!rules.is_token(&data("ping", r#"{"type": "ping"}"#)));
        assert!(rules.is_token(&data(
            "content_block_delta",
            r#"{"type":"content_block_delta"}"#
        )));
        assert!(rules.is_complete(&data("message_stop", r#"{"type":"message_stop"}"#)));
        // Without `event:` lines, the JSON `type` decides.
        assert!(rules.is_last(&data("", r#"{"type": "message_stop"}"#)));
    }

    #[test]
    fn openai_done_and_finish_reason_complete_but_only_done_is_last() {
        let rules = SseRules::openai();
        let finished = data("", r#"{"choices":[{"finish_reason":"length"}]}"#);
        assert!(rules.is_complete(&finished) && !rules.is_last(&finished));
        assert!(rules.is_last(&data("", "[DONE]")));
        assert!(!rules.is_token(&data("", "[DONE]")));
        assert!(!rules.is_token(&data("", "  ")));
    }
}
