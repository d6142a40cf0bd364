//! Just enough JSON to read a provider's error body: a value tree with a depth limit, over
//! input that is already bounded (see [`super::DEFAULT_MAX_ERROR_BODY`]).

use std::borrow::Cow;

/// Nesting deeper than this is not an error body: give up rather than recurse.
const MAX_DEPTH: usize = 32;

#[derive(Debug, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Bool(bool),
    /// The number's text, as written.
    Number(&'a str),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The member `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A non-negative integer (a token count). Read by the stream recovery's usage report.
    #[cfg_attr(not(feature = "stream"), allow(dead_code))]
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(text) => text.parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The JSON document in `text`, or `None` when it is not one (trailing bytes included).
pub(crate) fn parse(text: &str) -> Option<Value<'_>> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = parser.value(0)?;
    parser.space();
    (parser.at == parser.bytes.len()).then_some(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.space();
        let found = self.bytes.get(self.at) == Some(&byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn literal(&mut self, word: &str, value: Value<'a>) -> Option<Value<'a>> {
        let end = self.at.checked_add(word.len())?;
        (self.bytes.get(self.at..end)? == word.as_bytes()).then(|| {
            self.at = end;
            value
        })
    }

    fn value(&mut self, depth: usize) -> Option<Value<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.space();
        match *self.bytes.get(self.at)? {
            b'{' => {
                self.at += 1;
                let mut members = Vec::new();
                if self.eat(b'}') {
                    return Some(Value::Object(members));
                }
                loop {
                    self.space();
                    let key = self.string()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    members.push((key, self.value(depth + 1)?));
                    if self.eat(b'}') {
                        return Some(Value::Object(members));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Some(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    if self.eat(b']') {
                        return Some(Value::Array(items));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'"' => self.string().map(Value::String),
            b't' => self.literal("true", Value::Bool(true)),
            b'f' => self.literal("false", Value::Bool(false)),
            b'n' => self.literal("null", Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// The character of a `\uXXXX` escape whose `\u` is behind the cursor; a surrogate pair
    /// takes a second escape. A lone surrogate is not JSON text (RFC 8259 section 8.2).
    fn unicode_escape(&mut self) -> Option<char> {
        let unit = self.hex4()?;
        if (0xd800..0xdc00).contains(&unit) {
            if self.bytes.get(self.at..self.at + 2)? != b"\\u" {
                return None;
            }
            self.at += 2;
            let low = self.hex4()?;
            if !(0xdc00..0xe000).contains(&low) {
                return None;
            }
            return char::from_u32(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00));
        }
        char::from_u32(unit)
    }

    fn hex4(&mut self) -> Option<u32> {
        let hex = self.text.get(self.at..self.at.checked_add(4)?)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at += 4;
        u32::from_str_radix(hex, 16).ok()
    }

    /// A number at the cursor, by the JSON grammar:
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<Value<'a>> {
        let start = self.at;
        self.skip(b"-");
        match self.bytes.get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.skip(b".") {
            self.require_digits()?;
        }
        if self.skip(b"eE") {
            self.skip(b"+-");
            self.require_digits()?;
        }
        Some(Value::Number(self.text.get(start..self.at)?))
    }

    /// Steps over one byte if it is one of `any`.
    fn skip(&mut self, any: &[u8]) -> bool {
        let found = self.bytes.get(self.at).is_some_and(|b| any.contains(b));
        if found {
            self.at += 1;
        }
        found
    }

    fn digits(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
    }

    fn require_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// A string at the cursor; borrowed when it has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let mut end = start;
        loop {
            match *self.bytes.get(end)? {
                b'"' => {
                    self.at = end + 1;
                    return Some(Cow::Borrowed(self.text.get(start..end)?));
                }
                b'\\' => break,
                0x00..=0x1f => return None,
                _ => end += 1,
            }
        }
        self.at = start;
        self.decoded().map(Cow::Owned)
    }

    /// Decodes the string from the cursor (just past its opening quote) to its end.
    fn decoded(&mut self) -> Option<String> {
        let mut s = String::new();
        loop {
            let byte = *self.bytes.get(self.at)?;
            match byte {
                b'"' => {
                    self.at += 1;
                    return Some(s);
                }
                b'\\' => {
                    let escape = *self.bytes.get(self.at + 1)?;
                    self.at += 2;
                    match escape {
                        b'"' => s.push('"'),
                        b'\\' => s.push('\\'),
                        b'/' => s.push('/'),
                        b'b' => s.push('\u{8}'),
                        b'f' => s.push('\u{c}'),
                        b'n' => s.push('\n'),
                        b'r' => s.push('\r'),
                        b't' => s.push('\t'),
                        b'u' => s.push(self.unicode_escape()?),
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => {
                    // A whole UTF-8 character.
                    let ch = self.text.get(self.at..)?.chars().next()?;
                    s.push(ch);
                    self.at += ch.len_utf8();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: serde_json's tree, numbers compared only as numbers.
    fn same(ours: &Value<'_>, reference: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        match (ours, reference) {
            (Value::Null, J::Null) | (Value::Number(_), J::Number(_)) => true,
            (Value::Bool(a), J::Bool(b)) => a == b,
            (Value::String(a), J::String(b)) => a == b,
            (Value::Array(a), J::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
            }
            // serde_json keeps the last of duplicate keys; generated objects have none.
            (Value::Object(a), J::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.get(&**k).is_some_and(|w| same(v, w)))
            }
            _ => false,
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e12f64..1e12).prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn surrogate_pairs_and_lone_surrogates() {
        let pair = parse(r#""\ud83d\ude00""#);
        assert_eq!(pair, Some(Value::String("\u{1f600}".into())));
        assert_eq!(parse(r#""\ud83d""#), None);
        assert_eq!(parse(r#""\ude00""#), None);
        assert_eq!(parse(r#""\ud83d\u0041""#), None);
    }

    proptest! {
        /// Every document serde_json writes (compact or pretty) reads back as the same tree.
        #[test]
        fn reads_what_serde_json_writes(value in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            let ours = parse(&text);
            prop_assert!(ours.as_ref().is_some_and(|v| same(v, &value)), "{text}");
        }

        /// On any text: never a panic, and never a document serde_json refuses.
        #[test]
        fn accepts_only_json(text in "[\\[\\]{}\",:0-9a-fnrtu\\\\ .eE+-]{0,40}|\"(\\\\u[dD][89a-fA-F][0-9a-f]{2}){1,2}\"") {
            if parse(&text).is_some() {
                prop_assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), "{text}");
            }
        }
    }
}
