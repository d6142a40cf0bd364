//! The incremental SSE parser against a whole-input reference: however a byte stream is split
//! into chunks, the same events come out.

use proptest::prelude::*;
use tower_breaker::stream::{MAX_EVENT_BYTES, SseEvent, SseParser};

/// The standard's algorithm, on the whole input at once, written for clarity: one leading byte
/// order mark is skipped; lines end at `\r\n`, `\n` or `\r`; a line with no end (the tail of
/// the input) is never processed. And the parser's bound: an event whose joined data or whose
/// name is larger than `MAX_EVENT_BYTES` is dropped.
fn reference(input: &[u8]) -> Vec<SseEvent> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
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
    let mut long_name = false;
    for line in lines {
        if line.is_empty() {
            if has_data && !long_name && data.len() - 1 <= MAX_EVENT_BYTES {
                data.pop();
                events.push(SseEvent {
                    event: String::from_utf8_lossy(&event).into_owned(),
                    data: String::from_utf8_lossy(&data).into_owned(),
                });
            }
            data.clear();
            event.clear();
            has_data = false;
            long_name = false;
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
            long_name |= value.len() > MAX_EVENT_BYTES;
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
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\xEF\xBB".to_vec()),
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

/// Lines of streams at the 1 MiB bound: values and comments a few bytes either side of it,
/// each ended by one of the three line breaks, and blank lines that end events.
fn large_piece() -> impl Strategy<Value = Vec<u8>> {
    let near = (MAX_EVENT_BYTES - 8)..(MAX_EVENT_BYTES + 9);
    let field = prop_oneof![
        3 => Just(b"data: ".as_slice()),
        1 => Just(b"data:".as_slice()),
        1 => Just(b"event: ".as_slice()),
        1 => Just(b": ".as_slice()),
        1 => Just(b"id: ".as_slice()),
    ];
    let end = prop_oneof![
        Just(b"\n".as_slice()),
        Just(b"\r\n".as_slice()),
        Just(b"\r".as_slice())
    ];
    prop_oneof![
        3 => (field, near, end.clone()).prop_map(|(f, n, e)| [f, &vec![b'x'; n], e].concat()),
        1 => end.clone().prop_map(|e| [b"data: small".as_slice(), e].concat()),
        3 => end.prop_map(<[u8]>::to_vec),
        1 => Just(b"\xEF\xBB\xBF".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn any_split_at_the_event_bound_gives_the_reference_events(
        pieces in prop::collection::vec(large_piece(), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        near_cuts in prop::collection::vec((0usize..8, 0usize..16), 0..6),
    ) {
        let input: Vec<u8> = pieces.concat();
        let expected = reference(&input);
        prop_assert_eq!(parse_in_chunks(&input, &[]), expected.clone());
        prop_assert_eq!(parse_in_chunks(&input, &cuts), expected.clone());
        // Cuts a few bytes into each line, where a long line's first bytes decide its fate.
        let mut starts = vec![0];
        starts.extend(input.iter().enumerate().filter(|(_, b)| matches!(b, b'\n' | b'\r')).map(|(i, _)| i + 1));
        let near: Vec<usize> = near_cuts
            .iter()
            .map(|&(line, into)| starts[line % starts.len()] + into)
            .collect();
        prop_assert_eq!(parse_in_chunks(&input, &near), expected);
    }
}

#[test]
fn a_byte_order_mark_split_across_chunks_is_skipped_and_the_first_event_kept() {
    let input = b"\xEF\xBB\xBFdata: first\n\ndata: second\n\n";
    for a in 0..=input.len() {
        for b in a..=input.len() {
            let events = parse_in_chunks(input, &[a, b]);
            let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
            assert_eq!(data, ["first", "second"], "cuts at {a} and {b}");
        }
    }
    // Only the first: a second mark is data, and a mark later in the stream too.
    let events = parse_in_chunks(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n", &[1, 4]);
    assert!(events.is_empty(), "{events:?}");
    let events = parse_in_chunks(b"\xEF\xBBdata: x\n\n", &[1]);
    assert!(events.is_empty(), "a partial mark is data: {events:?}");
}

#[test]
fn a_value_of_exactly_the_bound_is_kept_split_or_not() {
    for n in [MAX_EVENT_BYTES - 1, MAX_EVENT_BYTES] {
        let input = [b"data: ".as_slice(), &vec![b'x'; n], b"\n\n"].concat();
        for cuts in [vec![], vec![3], vec![100], vec![input.len() - 3]] {
            let events = parse_in_chunks(&input, &cuts);
            assert_eq!(events.len(), 1, "{n} bytes, cuts {cuts:?}");
            assert_eq!(events[0].data.len(), n);
        }
    }
    let over = [
        b"data: ".as_slice(),
        &vec![b'x'; MAX_EVENT_BYTES + 1],
        b"\n\n",
    ]
    .concat();
    assert!(parse_in_chunks(&over, &[]).is_empty());
    assert!(parse_in_chunks(&over, &[100]).is_empty());
}
