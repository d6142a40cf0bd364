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
/// | [`openai`](Self::openai) (and every OpenAI-compatible API) | a chunk with content: a non-empty `content`, `refusal`, `text`, tool-call `arguments`, `reasoning_content` or `reasoning`; in the Responses API, a `response.*.delta` event with a non-empty `delta` | `data: [DONE]`, or a chunk with a non-null `finish_reason`; in the Responses API, `response.completed` or `response.incomplete` | `data: [DONE]`, `response.completed`, `response.incomplete` |
/// | [`anthropic`](Self::anthropic) | a `content_block_delta` with a non-empty `text` (`text_delta`), `partial_json` (`input_json_delta`) or `thinking` (`thinking_delta`) | `message_stop` | `message_stop` |
/// | [`any_data`](Self::any_data) | any non-empty `data:` | a clean end of the body | none |
///
/// A stream that ends before its complete event is truncated: a failure
/// ([`StreamTruncated`](super::StreamTruncated)), never a success. After its last event the
/// body reports its end at once, so a client that stops reading at `[DONE]` still records a
/// success.
///
/// A token is content: what comes before the model's first output is not one. OpenAI's
/// role-only chunk (`"delta":{"role":"assistant","content":""}`), Azure's
/// `prompt_filter_results` chunk, a usage-only chunk, a tool call's name before its
/// arguments, Anthropic's `message_start`, `content_block_start`, `ping` and
/// `message_delta`, empty events and comments (`: keepalive`) are never tokens. So a provider
/// that sends its role chunk at once and then stalls misses its first-token deadline.
///
/// The JSON checks are a bounded scan of the data line for the keys, not a JSON parse: a key
/// anywhere in the chunk counts (a `"finish_reason"`, a `"content"` whose value is a string
/// with at least one character), which is where these APIs put them; a key inside a string
/// value is escaped (`\"content\"`) and never matches.
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
    /// LiteLLM, OpenRouter, Together, Groq, ...); and OpenAI's Responses API
    /// (`POST /v1/responses`), whose typed events carry text in `response.*.delta` events and
    /// end with `response.completed` (or `response.incomplete`, cut by `max_output_tokens`),
    /// never with `[DONE]`. A `response.failed` or `error` event completes nothing: the stream
    /// that ends after it is truncated, a failure.
    pub fn openai() -> Self {
        Self {
            name: "openai",
            token: Arc::new(|e| {
                has_text(&e.data, OPENAI_CONTENT)
                    || (response_event(e).is_some_and(|kind| kind.ends_with(".delta"))
                        && has_text(&e.data, &[b"delta"]))
            }),
            complete: Some(Arc::new(|e| {
                e.data.trim() == "[DONE]"
                    || json_value(&e.data, "finish_reason").is_some_and(|v| v != "null")
                    || response_ended(e)
            })),
            last: Some(Arc::new(|e| e.data.trim() == "[DONE]" || response_ended(e))),
        }
    }

    /// Anthropic's Messages stream. Only content deltas are tokens: `message_start`,
    /// `content_block_start` and `ping` come before the model has produced anything, and
    /// `message_delta` carries the stop reason and usage.
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
                kind(e) == Some("content_block_delta") && has_text(&e.data, ANTHROPIC_CONTENT)
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

/// The type of a Responses API event (`response.output_text.delta`, ...): its `event:` name,
/// or else its JSON `type`; `None` for any other event (a chat completion chunk has no
/// top-level `type`, and a tool call's `"type":"function"` is no `response.` type).
fn response_event(e: &SseEvent) -> Option<&str> {
    let kind = if e.event.is_empty() {
        json_value(&e.data, "type")?.trim_matches('"')
    } else {
        e.event.as_str()
    };
    kind.starts_with("response.").then_some(kind)
}

/// A Responses API event after which the answer is complete and nothing follows.
fn response_ended(e: &SseEvent) -> bool {
    matches!(
        response_event(e),
        Some("response.completed" | "response.incomplete")
    )
}

/// The keys whose string values are an OpenAI-compatible chunk's content: text (chat
/// `delta.content`, legacy completions `text`, `refusal`), tool-call arguments, and reasoning
/// (`reasoning_content` from DeepSeek and vLLM, `reasoning` from OpenRouter and Ollama).
const OPENAI_CONTENT: &[&[u8]] = &[
    b"content",
    b"arguments",
    b"text",
    b"refusal",
    b"reasoning_content",
    b"reasoning",
];

/// The keys of an Anthropic `content_block_delta`'s content: `text_delta`,
/// `input_json_delta`, `thinking_delta` (a `signature_delta` is not content).
const ANTHROPIC_CONTENT: &[&[u8]] = &[b"text", b"partial_json", b"thinking"];

/// True when `json` holds `"key": "..."` for one of `keys`, with at least one character in the
/// string. One pass over the chunk's colons (a key is the string just before one), no
/// allocation; a malformed chunk is simply not content. A colon inside a string value is not
/// after a key: an escaped quote (`\"`) never closes one.
fn has_text(json: &str, keys: &[&[u8]]) -> bool {
    let bytes = json.as_bytes();
    let mut from = 0;
    while let Some(at) = super::sse::find_either(&bytes[from..], b':', b':') {
        let colon = from + at;
        from = colon + 1;
        // The key's closing quote: the last byte before the colon but spaces. Indexing, not
        // slice comparisons: this runs for every key of every chunk.
        let mut quote = colon;
        while quote > 0 && bytes[quote - 1].is_ascii_whitespace() {
            quote -= 1;
        }
        let (Some(quote), Some(&last)) = (
            quote.checked_sub(1),
            quote.checked_sub(2).map(|i| &bytes[i]),
        ) else {
            continue;
        };
        if bytes[quote] != b'"' {
            continue;
        }
        for key in keys {
            // Most keys are none of ours: one byte tells, before a slice comparison.
            if key.last() != Some(&last) {
                continue;
            }
            let Some(open) = quote.checked_sub(key.len() + 1) else {
                continue;
            };
            if bytes[open] != b'"' || &bytes[open + 1..quote] != *key {
                continue;
            }
            let value = bytes[from..].trim_ascii_start();
            if value.first() == Some(&b'"') && value.get(1).is_some_and(|&b| b != b'"') {
                return true;
            }
            break; // `null`, `""`, an array: look on
        }
    }
    false
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
    use proptest::prelude::*;

    /// Bits of chunks: keys, values, quotes, escapes, spaces, and any text.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("\"content\"".to_string()),
            Just("\"arguments\"".to_string()),
            Just("\"text\"".to_string()),
            Just("\"reasoning".to_string()),
            Just(":".to_string()),
            Just(" ".to_string()),
            Just("\"".to_string()),
            Just("\\\"".to_string()),
            Just("{\"delta\":{".to_string()),
            Just("é".to_string()),
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn the_content_scan_never_panics_and_only_finds_a_key_that_is_there(
            pieces in prop::collection::vec(piece(), 0..24),
        ) {
            let json = pieces.concat();
            let openai = has_text(&json, OPENAI_CONTENT);
            let anthropic = has_text(&json, ANTHROPIC_CONTENT);
            let quoted = |keys: &[&[u8]]| keys.iter().any(|k| {
                let key = format!("\"{}\"", String::from_utf8_lossy(k));
                json.contains(&key)
            });
            prop_assert!(!openai || quoted(OPENAI_CONTENT));
            prop_assert!(!anthropic || quoted(ANTHROPIC_CONTENT));
            // A chunk cut anywhere is scanned too (a line is never cut, but be safe).
            for end in (0..=json.len()).filter(|&i| json.is_char_boundary(i)) {
                let _ = has_text(&json[..end], OPENAI_CONTENT);
            }
        }
    }

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
        let delta = |json: &str| data("content_block_delta", json);
        for content in [
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"loc"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let"}}"#,
        ] {
            assert!(rules.is_token(&delta(content)), "{content}");
        }
        for nothing in [
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}"#,
        ] {
            assert!(!rules.is_token(&delta(nothing)), "{nothing}");
        }
        assert!(!rules.is_token(&data(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#
        )));
        assert!(!rules.is_token(&data(
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#
        )));
        // Without `event:` lines, the JSON `type` decides.
        assert!(rules.is_token(&data(
            "",
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"x"}}"#
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

    #[test]
    fn an_openai_token_is_content_not_a_role_filter_or_usage_chunk() {
        let rules = SseRules::openai();
        for content in [
            r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":" "},"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\""}}]}}]}"#,
            r#"{"choices":[{"delta":{"role":"assistant","content":null,"reasoning_content":"Hm"}}]}"#,
            r#"{"choices":[{"delta":{"content":"","reasoning":"Hm"}}]}"#,
            r#"{"choices":[{"delta":{"refusal":"No"}}]}"#,
            r#"{"choices":[{"text":"Once","index":0,"finish_reason":null}]}"#,
            r#"{ "choices" : [ { "delta" : { "content" : "spaced" } } ] }"#,
        ] {
            assert!(rules.is_token(&data("", content)), "{content}");
        }
        for nothing in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"choices":[],"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false}}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12}}"#,
            r#"{"choices":[{"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"role":"text"}}]}"#,
            r#"{"choices":[{"delta":{"content":""}}],"note":"\"text\": \"y\""}"#,
            r#"{"choices":[{"delta":{"content":"#,
            "",
        ] {
            assert!(!rules.is_token(&data("", nothing)), "{nothing}");
        }
    }
}
