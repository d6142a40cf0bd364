//! The incremental SSE parser against a whole-input reference: however a byte stream is split
//! into chunks, the same events come out.

use proptest::prelude::*;
use tower_breaker::stream::{SseEvent, SseParser};

/// The standard's algorithm, on the whole input at once, written for clarity: lines end at
/// `\r\n`, `\n` or `\r`; a line with no end (the tail of the input) is never processed.
fn reference(input: &[u8]) -> Vec<SseEvent> {
    let mut lines = Vec::new();
    let mut line = Vec::new();
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' => {
                lines.push(std::mem::take(&mut line));
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => lines.push(std::mem::take(&mut line)),
            b => line.push(b),
        }
        i += 1;
    }
    let mut events = Vec::new();
    let (mut data, mut event, mut has_data) = (Vec::new(), Vec::new(), false);
    for line in lines {
        if line.is_empty() {
            if has_data {
                data.pop();
                events.push(SseEvent {
                    event: String::from_utf8_lossy(&event).into_owned(),
                    data: String::from_utf8_lossy(&data).into_owned(),
                });
            }
            data.clear();
            event.clear();
            has_data = false;
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let text = line.as_slice();
        let (name, value) = match text.iter().position(|&b| b == b':') {
            Some(c) => {
                let v = &text[c + 1..];
                (
                    &text[..c],
                    if v.first() == Some(&b' ') { &v[1..] } else { v },
                )
            }
            None => (text, &[][..]),
        };
        if name == b"data" {
            data.extend_from_slice(value);
            data.push(b'\n');
            has_data = true;
        } else if name == b"event" {
            event = value.to_vec();
        }
    }
    events
}

fn parse_in_chunks(input: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let mut start = 0;
    for cut in cuts {
        parser.push(&input[start..cut], |e| events.push(e.clone()));
        start = cut;
    }
    parser.push(&input[start..], |e| events.push(e.clone()));
    events
}

/// Pieces SSE streams are made of, so that random inputs are mostly well-formed.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: delta".to_vec()),
        Just(b": keepalive".to_vec()),
        Just(b"id: 7".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just("{\"x\":\"é\"}".as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_split_of_a_stream_gives_the_reference_events(
        pieces in prop::collection::vec(piece(), 0..40),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let input: Vec<u8> = pieces.concat();
        let expected = reference(&input);
        prop_assert_eq!(parse_in_chunks(&input, &[]), expected.clone());
        prop_assert_eq!(parse_in_chunks(&input, &cuts), expected.clone());
        // One byte at a time, the worst split.
        let every: Vec<usize> = (0..=input.len()).collect();
        prop_assert_eq!(parse_in_chunks(&input, &every), expected);
    }
}
