//! What a recovered call did: [`RecoveryReport`], an extension of the answer.

use super::error::MalformedEvent;
use crate::failover::{FailoverReport, TryOutcome};
use crate::provider_error::json;
use crate::stream::{SseParser, SseRules};
use std::sync::Arc;

/// What [`Recover`](super::Recover) did for one call: an extension of the answer (and of its
/// errors, [`AnswerIncomplete::report`](super::AnswerIncomplete::report)). Bill `usage`, the
/// answer's own; the failed attempts are listed apart, with what each reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The provider that produced the answer (from the inner [`FailoverReport`], if any).
    pub provider: Option<Arc<str>>,
    /// The model named in the answer's events (`"model"`), if any.
    pub model: Option<String>,
    /// The usage the answer reported (its final chunk, when the request asked for it), if
    /// read: in [`RecoveryMode::Restart`](super::RecoveryMode::Restart) only, since a
    /// streamed answer goes to the caller unread.
    pub usage: Option<Usage>,
    /// Every attempt, in order, the answer's last: each provider a failover tried or skipped,
    /// and each stream that failed after its first token.
    pub attempts: Vec<Attempt>,
    /// How many times the request was sent again after a stream failed after its first token.
    pub restarts: u32,
}

impl RecoveryReport {
    /// The attempts of the provider named `name`.
    pub fn attempts_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Attempt> + 'a {
        self.attempts
            .iter()
            .filter(move |a| a.provider.as_deref() == Some(name))
    }
}

/// One attempt in a [`RecoveryReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// The provider, when a failover named it.
    pub provider: Option<Arc<str>>,
    /// What became of it.
    pub outcome: AttemptOutcome,
    /// Requests the provider received for it (retries included, as the failover counted them;
    /// 1 without a failover; 0 when skipped).
    pub requests: u32,
    /// Tokens the attempt's stream carried, where it was read.
    pub tokens: u64,
    /// The usage the provider reported for it, if it did.
    pub usage: Option<Usage>,
}

/// What became of one [`Attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// Its answer is the one returned.
    Answered,
    /// It failed before its first token (a failover moved on), with this error.
    Failed(String),
    /// It was not called (its breaker was open, say).
    Skipped(String),
    /// Its stream failed after its first token, with this error.
    Broken(String),
}

/// Token usage a provider reported (OpenAI's `prompt_tokens` / `completion_tokens`,
/// Anthropic's `input_tokens` / `output_tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens of the answer.
    pub completion_tokens: u64,
}

/// What a read stream holds: its tokens, model, usage, and its first malformed event.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) tokens: u64,
    pub(crate) model: Option<String>,
    pub(crate) usage: Option<Usage>,
    pub(crate) malformed: Option<MalformedEvent>,
}

/// Reads `bytes`, a whole (or cut) stream of server-sent events.
pub(crate) fn scan(bytes: &[u8], rules: &SseRules) -> Scan {
    let mut scan = Scan::default();
    let mut parser = SseParser::new();
    parser.push(bytes, |event| {
        if rules.is_token(event) {
            scan.tokens += 1;
        }
        let data = event.data.trim();
        if data == "[DONE]" || data.is_empty() {
            return;
        }
        let Some(value) = json::parse(data) else {
            if scan.malformed.is_none() {
                let mut end = data.len().min(200);
                while !data.is_char_boundary(end) {
                    end -= 1;
                }
                scan.malformed = Some(MalformedEvent {
                    data: data[..end].to_string(),
                });
            }
            return;
        };
        // Anthropic nests the model and the input usage in `message_start`'s `message`.
        let message = value.get("message");
        let model = value
            .get("model")
            .or_else(|| message.and_then(|m| m.get("model")))
            .and_then(|m| m.as_str());
        if let Some(model) = model.filter(|m| !m.is_empty()) {
            scan.model = Some(model.to_string());
        }
        for usage in [value.get("usage"), message.and_then(|m| m.get("usage"))]
            .into_iter()
            .flatten()
        {
            let count = |a: &str, b: &str| {
                usage
                    .get(a)
                    .or_else(|| usage.get(b))
                    .and_then(|n| n.as_u64())
            };
            let (prompt, completion) = (
                count("prompt_tokens", "input_tokens"),
                count("completion_tokens", "output_tokens"),
            );
            if prompt.is_some() || completion.is_some() {
                let seen = scan.usage.get_or_insert_with(Usage::default);
                // Anthropic reports the input at the start and the output at the end.
                seen.prompt_tokens = prompt.unwrap_or(seen.prompt_tokens);
                seen.completion_tokens = completion.unwrap_or(seen.completion_tokens);
            }
        }
    });
    scan
}

/// The attempts of one inner call: the providers a failover tried before the one that
/// answered (`None` without a failover), the answering one last.
pub(crate) fn from_failover(
    failover: Option<&FailoverReport>,
) -> (Option<Arc<str>>, Vec<Attempt>, u32) {
    let Some(failover) = failover else {
        return (None, Vec::new(), 1);
    };
    let mut before = Vec::new();
    let mut answered = 1;
    for tried in &failover.tried {
        let outcome = match &tried.outcome {
            TryOutcome::Answered => {
                answered = tried.attempts.max(1);
                continue;
            }
            TryOutcome::Rejected => AttemptOutcome::Failed("rejected response".to_string()),
            TryOutcome::Failed(e) => AttemptOutcome::Failed(e.clone()),
            TryOutcome::Skipped(e) => AttemptOutcome::Skipped(e.clone()),
        };
        before.push(Attempt {
            provider: Some(tried.provider.clone()),
            outcome,
            requests: tried.attempts,
            tokens: 0,
            usage: None,
        });
    }
    (Some(failover.provider.clone()), before, answered)
}
