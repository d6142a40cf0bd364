//! An incremental parser of `text/event-stream` (server-sent events), as the WHATWG HTML
//! standard defines it, fed one chunk at a time.

use std::fmt;

/// One dispatched server-sent event: its `event:` name (empty when none was given) and its
/// `data:` lines joined by `\n`.
///
/// Comments (`: keepalive`) and blocks without a `data:` line are not events: the parser never
/// yields them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or `""` (the standard's default type, `message`).
    pub event: String,
    /// The `data:` fields, joined by `\n`.
    pub data: String,
}

impl SseEvent {
    /// True when the data is empty or only whitespace: such an event carries no token.
    pub fn is_empty(&self) -> bool {
        self.data.trim().is_empty()
    }
}

/// Parses a byte stream of server-sent events chunk by chunk.
///
/// Lines may end in `\n`, `\r\n` or `\r`, and a chunk may end anywhere, even between the `\r`
/// and the `\n` of one line break: the events are the same however the stream is split. A line
/// that is not yet complete is kept until its end arrives; at the end of the stream, an event
/// without its closing blank line is dropped, as the standard says. One UTF-8 byte order mark
/// (`EF BB BF`) at the very start of the stream is skipped, as the standard says, also when
/// it is split across chunks.
///
/// An event whose data (its `data:` values joined by `\n`) or whose `event:` name is larger
/// than [`MAX_EVENT_BYTES`] is dropped (never dispatched), so memory stays bounded; one of
/// exactly that size is kept. A comment or another field of any length is ignored without
/// harm to its event. All of this holds however the stream is split.
///
/// ```
/// use tower_breaker::stream::{SseEvent, SseParser};
///
/// let mut parser = SseParser::new();
/// let mut events = Vec::new();
/// parser.push(b": keepalive\r\nevent: delta\r\nda", |e| events.push(e.clone()));
/// assert!(events.is_empty());
/// parser.push(b"ta: {\"x\":1}\r\n\r\ndata: [DONE]\n\n", |e| events.push(e.clone()));
/// assert_eq!(events, vec![
///     SseEvent { event: "delta".into(), data: "{\"x\":1}".into() },
///     SseEvent { event: String::new(), data: "[DONE]".into() },
/// ]);
/// ```
#[derive(Default, Clone)]
pub struct SseParser {
    /// The start of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// The last chunk ended in `\r`: a `\n` opening the next one belongs to that line break.
    after_cr: bool,
    /// The event being built: `data:` lines (each followed by `\n`) and its `event:` name.
    data: Vec<u8>,
    has_data: bool,
    event: Vec<u8>,
    /// The event handed to the callback; its strings' buffers go back to `data` and `event`
    /// after each event, so that a stream is parsed without an allocation per event.
    dispatched: SseEvent,
    /// The current line is longer than any line the parser acts on: its bytes are dropped up
    /// to its end, and then its event too when it was a `data:` or `event:` line.
    skipping_line: Option<Skip>,
    /// How many bytes of a leading byte order mark have been seen, until the first byte that is
    /// not one (then [`BOM_DONE`]).
    bom: u8,
    /// The current event is past [`MAX_EVENT_BYTES`]: it is dropped at its blank line.
    oversized: bool,
}

/// The most an event (or one line) may buffer: 1 MiB, far above any LLM chunk. A larger one is
/// dropped, never dispatched, so that an upstream that never ends a line cannot grow the
/// parser's memory without bound.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// The UTF-8 byte order mark a stream may start with.
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";
/// `bom` once the start of the stream is behind.
const BOM_DONE: u8 = u8::MAX;
/// The longest line kept whole: `event: ` and a value of [`MAX_EVENT_BYTES`]. A longer line
/// carries a `data:` or `event:` value over the bound (its event is dropped) or is a comment or
/// another field (ignored), which its first bytes tell.
const MAX_LINE_BYTES: usize = MAX_EVENT_BYTES + b"event: ".len();

/// What an over-long line does to its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// A `data:` or `event:` line: its value is over the bound, the event is dropped.
    DropEvent,
    /// A comment or another field: ignored, as it would be at any length.
    Ignore,
}

impl Skip {
    /// The effect of a line that starts with `start` (at least its first 6 bytes, or all of it)
    /// and is longer than [`MAX_LINE_BYTES`].
    fn of(start: &[u8]) -> Self {
        if start.starts_with(b"data:") || start.starts_with(b"event:") {
            Skip::DropEvent
        } else {
            Skip::Ignore
        }
    }
}

impl fmt::Debug for SseParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseParser")
            .field("buffered_line", &self.line.len())
            .field("buffered_data", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `chunk`, calling `on_event` for each event it completes (clone the event to keep
    /// it: the parser reuses its buffers).
    pub fn push(&mut self, mut chunk: &[u8], mut on_event: impl FnMut(&SseEvent)) {
        while self.bom != BOM_DONE {
            let Some((&byte, rest)) = chunk.split_first() else {
                return; // wait for the next byte
            };
            let seen = usize::from(self.bom);
            if byte == BOM[seen] {
                chunk = rest;
                self.bom = if seen + 1 == BOM.len() {
                    BOM_DONE
                } else {
                    self.bom + 1
                };
            } else {
                // Not a byte order mark after all: its first bytes were data.
                self.bom = BOM_DONE;
                self.push_lines(&BOM[..seen], &mut on_event);
            }
        }
        self.push_lines(chunk, &mut on_event);
    }

    fn push_lines(&mut self, mut chunk: &[u8], on_event: &mut impl FnMut(&SseEvent)) {
        if chunk.is_empty() {
            // An empty chunk must not forget a `\r` that ended the last one.
            return;
        }
        if self.after_cr {
            self.after_cr = false;
            if let [b'\n', rest @ ..] = chunk {
                chunk = rest;
            }
        }
        while let Some(at) = find_line_end(chunk) {
            let (line, rest) = chunk.split_at(at);
            let cr = rest[0] == b'\r';
            chunk = &rest[1..];
            if cr {
                match chunk {
                    [b'\n', after @ ..] => chunk = after,
                    [] => self.after_cr = true,
                    _ => {}
                }
            }
            if let Some(skip) = self.skipping_line.take() {
                // The end of an over-long line.
                self.oversized |= skip == Skip::DropEvent;
            } else if self.line.is_empty() {
                self.line_complete(line, on_event);
            } else {
                let mut whole = std::mem::take(&mut self.line);
                whole.extend_from_slice(line);
                self.line_complete(&whole, on_event);
                // Keep the allocation for the next split line, unless it grew past the bound.
                whole.clear();
                if whole.capacity() <= MAX_LINE_BYTES {
                    self.line = whole;
                }
            }
        }
        if self.skipping_line.is_some() {
            return;
        }
        if self.line.len() + chunk.len() > MAX_LINE_BYTES {
            let mut start = [0; 6];
            let have = self.line.len().min(start.len());
            start[..have].copy_from_slice(&self.line[..have]);
            let more = chunk.len().min(start.len() - have);
            start[have..have + more].copy_from_slice(&chunk[..more]);
            self.skipping_line = Some(Skip::of(&start[..have + more]));
            self.line = Vec::new();
            return;
        }
        self.line.extend_from_slice(chunk);
    }

    fn line_complete(&mut self, line: &[u8], on_event: &mut impl FnMut(&SseEvent)) {
        if line.is_empty() {
            if std::mem::take(&mut self.oversized) {
                self.data = Vec::new();
                self.event.clear();
                self.has_data = false;
                return;
            }
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            // A comment: keepalives look like this.
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                // `data` holds each earlier value and its `\n`: its length plus this value's is
                // the length of the event's joined data.
                if self.data.len() + value.len() > MAX_EVENT_BYTES {
                    self.oversized = true;
                } else if !self.oversized {
                    self.data.extend_from_slice(value);
                    self.data.push(b'\n');
                }
                self.has_data = true;
            }
            b"event" if value.len() > MAX_EVENT_BYTES => self.oversized = true,
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            // `id` and `retry` matter to a reconnecting browser, not here; other fields are
            // ignored by the standard.
            _ => {}
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(&SseEvent)) {
        if !self.has_data {
            self.event.clear();
            return;
        }
        self.data.pop(); // the `\n` after the last data line
        self.has_data = false;
        let event = &mut self.dispatched;
        event.data = into_string(std::mem::take(&mut self.data));
        event.event = into_string(std::mem::take(&mut self.event));
        on_event(event);
        self.data = std::mem::take(&mut event.data).into_bytes();
        self.data.clear();
        self.event = std::mem::take(&mut event.event).into_bytes();
        self.event.clear();
    }
}

/// The position of the first `\n` or `\r` in `bytes`. Eight bytes at a time: an event is mostly
/// a long `data:` line, and this scan is most of the parser's work.
fn find_line_end(bytes: &[u8]) -> Option<usize> {
    find_either(bytes, b'\n', b'\r')
}

/// The position of the first `a` or `b` in `bytes`, eight bytes at a time.
pub(crate) fn find_either(bytes: &[u8], a: u8, b: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    /// A high bit in each byte of `word` that is zero (and maybe above one that is: the
    /// lowest flagged byte is always a true zero).
    fn zero_bytes(word: u64) -> u64 {
        word.wrapping_sub(ONES) & !word & HIGHS
    }
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    for (n, word) in words.enumerate() {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break; // `chunks_exact(8)`: never
        };
        let word = u64::from_le_bytes(word);
        let found =
            zero_bytes(word ^ (ONES * u64::from(a))) | zero_bytes(word ^ (ONES * u64::from(b)));
        if found != 0 {
            return Some(n * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    let start = bytes.len() - tail.len();
    tail.iter()
        .position(|&x| x == a || x == b)
        .map(|at| start + at)
}

/// The bytes as text, without a copy when they are valid UTF-8 (invalid sequences become
/// U+FFFD, as the standard's decoder does).
fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_split(input: &[u8], at: &[usize]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let mut start = 0;
        for &cut in at {
            parser.push(&input[start..cut], |e| events.push(e.clone()));
            start = cut;
        }
        parser.push(&input[start..], |e| events.push(e.clone()));
        events
    }

    #[test]
    fn find_line_end_finds_the_first_break_at_every_offset() {
        for len in 0..40 {
            for at in 0..len {
                for byte in [b'\n', b'\r'] {
                    let mut bytes = vec![b'x'; len];
                    bytes[at] = byte;
                    if at + 1 < len {
                        bytes[at + 1] = b'\n';
                    }
                    assert_eq!(find_line_end(&bytes), Some(at), "{len} {at}");
                }
            }
            assert_eq!(find_line_end(&vec![0x8a; len]), None);
        }
    }

    #[test]
    fn a_crlf_split_between_cr_and_lf_is_one_line_break() {
        let input = b"data: a\r\n\r\ndata: b\r\n\r\n";
        for cut in 0..=input.len() {
            let events = parse_split(input, &[cut]);
            assert_eq!(events.len(), 2, "cut at {cut}");
            assert_eq!(events[1].data, "b");
        }
    }

    #[test]
    fn an_empty_chunk_between_cr_and_lf_keeps_them_one_line_break() {
        let input = b"data: a\r\n";
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        parser.push(&input[..8], |e| events.push(e.clone()));
        parser.push(b"", |e| events.push(e.clone()));
        parser.push(&input[8..], |e| events.push(e.clone()));
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn an_oversized_line_or_event_is_dropped_and_parsing_goes_on() {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let big = vec![b'x'; MAX_EVENT_BYTES / 3];
        // A line that never ends in time: dropped, and the event with it.
        parser.push(b"data: ", |e| events.push(e.clone()));
        for _ in 0..4 {
            parser.push(&big, |e| events.push(e.clone()));
        }
        assert!(parser.line.is_empty());
        parser.push(b"\n\ndata: ok\n\n", |e| events.push(e.clone()));
        // Many data lines, each small, the event too large: dropped.
        let line = [b"data: ".as_slice(), &big, b"\n"].concat();
        for _ in 0..4 {
            parser.push(&line, |e| events.push(e.clone()));
        }
        assert!(parser.data.len() < MAX_EVENT_BYTES);
        parser.push(b"\ndata: next\n\n", |e| events.push(e.clone()));
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["ok", "next"]);
    }

    #[test]
    fn comments_and_blocks_without_data_are_not_events() {
        let events = parse_split(b": ping\n\nevent: x\n\nid: 3\n\ndata\n\n", &[]);
        // `data` with no colon is a data field with an empty value: one empty event.
        assert_eq!(
            events,
            vec![SseEvent {
                event: String::new(),
                data: String::new()
            }]
        );
        assert!(events[0].is_empty());
    }

    #[test]
    fn multi_line_data_is_joined_and_an_unfinished_event_is_kept() {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        parser.push(b"data: one\ndata:two\r", |e| events.push(e.clone()));
        parser.push(b"\r", |e| events.push(e.clone()));
        assert_eq!(events[0].data, "one\ntwo");
        parser.push(b"data: never finished\n", |e| events.push(e.clone()));
        assert_eq!(events.len(), 1);
    }
}
