//! serde_json's borrowed parse of structured bodies: the path that
//! `scan.rs` replaced, kept (for tests and the `reference-parser` feature
//! only) as the reference that the differential property test and the
//! `parse_differential` fuzz target hold the scanner to: the same events, or
//! the same error kind, pointers and lines.
//!
//! It reads each event object with serde_json's visitors (`Members`, `Attr`,
//! `RawAttr`), `data` as a `RawValue`; a batch first as `Vec<&RawValue>`,
//! then each item again.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use bytes::Bytes;

use super::error::Found;
use super::structured::{not_utf8, too_large};
use super::validate::{build_event, Origin, Value};
use super::{BodyKind, Event, Events, ParseError, ParseLimits, Text};
use crate::problem::FieldError;

/// A JSON object as its members in order, parsed in one pass: string values
/// borrowed from the body, `data` kept as its raw JSON text, duplicate
/// names kept so that validation can report them. `A` reads the other
/// values: [`Attr`] (the fast path) or [`RawAttr`].
struct Members<'a, A>(Vec<(Cow<'a, str>, Value<'a>)>, PhantomData<A>);

/// How [`Members`] reads an attribute value other than `data`.
trait AttrValue<'de>: Deserialize<'de> {
    fn into_value(self) -> Value<'de>;
}

/// A member name, borrowed from the body unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an attribute name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// An attribute value other than `data`: its JSON type, and the string
/// itself (borrowed unless it had escapes). Objects and arrays are skipped.
struct Attr<'a>(Value<'a>);

impl<'de> Deserialize<'de> for Attr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AttrVisitor;
        impl<'de> Visitor<'de> for AttrVisitor {
            type Value = Attr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an attribute value")
            }
            fn visit_unit<E>(self) -> Result<Attr<'de>, E> {
                Ok(Attr(Value::Null))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Attr<'de>, E> {
                Ok(Attr(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Attr<'de>, E> {
                Ok(Attr(Value::Int(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Attr<'de>, E> {
                Ok(Attr(i64::try_from(v).map_or(Value::Number, Value::Int)))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Attr<'de>, E> {
                Ok(Attr(Value::Number))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Attr<'de>, E> {
                Ok(Attr(Value::Str(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Attr<'de>, E> {
                Ok(Attr(Value::Str(Cow::Owned(v.to_owned()))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Attr<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Attr(Value::Compound))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attr<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Attr(Value::Compound))
            }
        }
        d.deserialize_any(AttrVisitor)
    }
}

impl<'de> AttrValue<'de> for Attr<'de> {
    fn into_value(self) -> Value<'de> {
        self.0
    }
}

/// An attribute value taken as raw JSON and classified by its first byte:
/// the slow path, for an object that [`Attr`] could not read. serde_json
/// refuses a lone surrogate escape (`"\ud800"`) in a string as a syntax
/// error of the whole body, while the CloudEvents type system makes it an
/// invalid attribute (`422` at its pointer). Raw JSON skips escapes without
/// judging them, so the one string that fails to unescape here is one with
/// an unpaired surrogate.
struct RawAttr<'a>(Value<'a>);

impl<'de> Deserialize<'de> for RawAttr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        Ok(RawAttr(attribute_value(raw.get())))
    }
}

impl<'de> AttrValue<'de> for RawAttr<'de> {
    fn into_value(self) -> Value<'de> {
        self.0
    }
}

/// Classifies one JSON value's text (no surrounding whitespace) as the JSON
/// types a visitor would see.
fn attribute_value(json: &str) -> Value<'_> {
    match json.as_bytes().first() {
        Some(b'"') => {
            let inner = json.get(1..json.len() - 1).unwrap_or_default();
            if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
                Value::Str(Cow::Borrowed(inner))
            } else {
                serde_json::from_str::<String>(json).map_or(Value::UnpairedSurrogate, |s| Value::Str(Cow::Owned(s)))
            }
        }
        Some(b'n') => Value::Null,
        Some(b't') => Value::Bool(true),
        Some(b'f') => Value::Bool(false),
        Some(b'{' | b'[') => Value::Compound,
        _ => number(json),
    }
}

/// A JSON number as serde_json types it: an integer without fraction or
/// exponent within `i64` (`-0` is a float), anything else a float.
fn number(json: &str) -> Value<'_> {
    if json.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return Value::Number;
    }
    match json.parse::<i64>() {
        Ok(n) if n < 0 || !json.starts_with('-') => Value::Int(n),
        _ => Value::Number,
    }
}

impl<'de, A: AttrValue<'de>> Deserialize<'de> for Members<'de, A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<A>(PhantomData<A>);
        impl<'de, A: AttrValue<'de>> Visitor<'de> for ObjectVisitor<A> {
            type Value = Members<'de, A>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'de, A>, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(10));
                while let Some(Key(name)) = map.next_key()? {
                    let value = if name == "data" {
                        Value::Raw(map.next_value::<&'de RawValue>()?.get())
                    } else {
                        map.next_value::<A>()?.into_value()
                    };
                    members.push((name, value));
                }
                Ok(Members(members, PhantomData))
            }
        }
        d.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// Syntax errors are `400`; valid JSON of the wrong shape is reported at
/// `pointer` as a validation error (`422`).
enum Shape {
    Syntax(String),
    Wrong,
}

fn classify(e: serde_json::Error) -> Shape {
    match e.classify() {
        serde_json::error::Category::Data => Shape::Wrong,
        _ => Shape::Syntax(e.to_string()),
    }
}

/// Validates one event object found at `prefix`; errors go to `errors`.
/// With `owner` (the body that `json` lies in), the event keeps its own
/// bytes as `raw` when they fit on one line.
fn event_at(
    json: &str,
    owner: Option<&Text>,
    prefix: &str,
    line: Option<u64>,
    found: &mut Found,
) -> Result<Option<Event>, Shape> {
    // The fast path; an object it cannot read is read again with raw values,
    // which locates an unpaired surrogate escape (a syntax error to serde_json)
    // at its attribute. Anything else keeps the first error.
    let members = serde_json::from_str::<Members<Attr>>(json).map(|m| m.0).or_else(|e| match classify(e) {
        Shape::Syntax(detail) => {
            serde_json::from_str::<Members<RawAttr>>(json).map(|m| m.0).map_err(|_| Shape::Syntax(detail))
        }
        Shape::Wrong => Err(Shape::Wrong),
    });
    match members {
        Ok(members) => {
            found.start_event();
            let mut event = build_event(&members, owner, Origin::Json { prefix, line }, found);
            if let (Some(event), Some(_)) = (event.as_mut(), owner) {
                let json = json.trim();
                // Multi-line JSON is serialised again, so that `GET /events`
                // and `inlet-client events` keep one event per line.
                if memchr::memchr2(b'\n', b'\r', json.as_bytes()).is_none() {
                    event.raw = Some(super::Raw::of(&event.body, json));
                }
            }
            Ok(event)
        }
        Err(Shape::Wrong) => {
            found.start_event();
            found.offer(|| FieldError::pointer(prefix.to_string(), line, "must be a JSON object (a CloudEvent)"));
            Ok(None)
        }
        Err(syntax) => Err(syntax),
    }
}

fn single(json: &str, owner: Option<&Text>, limits: &ParseLimits) -> Result<Events, ParseError> {
    if json.len() > limits.max_event_bytes {
        return Err(too_large("#".into(), None, json.len(), limits));
    }
    let mut found = Found::new();
    match event_at(json, owner, "#", None, &mut found) {
        Ok(Some(event)) => Ok(Events::from_buf([event])),
        Ok(None) | Err(Shape::Wrong) => Err(found.into_error()),
        Err(Shape::Syntax(detail)) => Err(ParseError::Json { detail, errors: Vec::new() }),
    }
}

fn array(json: &str, owner: Option<&Text>, limits: &ParseLimits) -> Result<Events, ParseError> {
    let items: Vec<&RawValue> = match serde_json::from_str(json) {
        Ok(items) => items,
        Err(e) => {
            return Err(match classify(e) {
                Shape::Syntax(detail) => ParseError::Json { detail, errors: Vec::new() },
                Shape::Wrong => ParseError::Invalid {
                    errors: vec![FieldError::pointer("#".into(), None, "must be a JSON array of CloudEvents")],
                    cut: 0,
                },
            })
        }
    };
    if items.len() > limits.max_batch {
        return Err(ParseError::BatchTooLarge { count: items.len(), max: limits.max_batch });
    }
    let mut events = Events::with_capacity(items.len());
    let mut found = Found::new();
    let mut prefix = String::with_capacity(8);
    for (i, item) in items.iter().enumerate() {
        prefix.clear();
        prefix.push_str("#/");
        prefix.push_str(itoa::Buffer::new().format(i));
        if item.get().len() > limits.max_event_bytes {
            return Err(too_large(prefix, None, item.get().len(), limits));
        }
        match event_at(item.get(), owner, &prefix, None, &mut found) {
            Ok(Some(event)) => events.push(event),
            Ok(None) | Err(Shape::Wrong) => {}
            // The array as a whole parsed, so its items are valid JSON.
            Err(Shape::Syntax(detail)) => return Err(ParseError::Json { detail, errors: Vec::new() }),
        }
    }
    if found.is_empty() {
        Ok(events)
    } else {
        Err(found.into_error())
    }
}

fn object_or_array(body: &str, owner: Option<&Text>, limits: &ParseLimits) -> Result<Events, ParseError> {
    match body.bytes().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => array(body, owner, limits),
        _ => single(body, owner, limits),
    }
}

fn ndjson(text: &str, owner: Option<&Text>, limits: &ParseLimits) -> Result<Events, ParseError> {
    let mut events = Events::new();
    let mut invalid = Found::new();
    let mut malformed = Vec::new();
    let mut count = 0usize;
    for (index, line) in text.split('\n').enumerate() {
        let number = index as u64 + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        // Blank: JSON whitespace only (the serde_json path used Unicode
        // `trim`, which the scanner's path no longer follows).
        let blank = |l: &str| l.trim_matches([' ', '\t', '\r', '\n']).is_empty();
        if blank(line) {
            continue;
        }
        count += 1;
        if count > limits.max_batch {
            let total = text.split('\n').filter(|l| !blank(l)).count();
            return Err(ParseError::BatchTooLarge { count: total, max: limits.max_batch });
        }
        if line.len() > limits.max_event_bytes {
            return Err(too_large("#".into(), Some(number), line.len(), limits));
        }
        match event_at(line, owner, "#", Some(number), &mut invalid) {
            Ok(Some(event)) => events.push(event),
            Ok(None) | Err(Shape::Wrong) => {}
            Err(Shape::Syntax(detail)) => malformed.push(FieldError {
                pointer: None,
                header: None,
                line: Some(number),
                keyword: None,
                detail: format!("not valid JSON: {detail}"),
            }),
        }
    }
    if !malformed.is_empty() {
        let detail = format!("{} line(s) are not valid JSON", malformed.len());
        return Err(ParseError::Json { detail, errors: malformed });
    }
    if !invalid.is_empty() {
        return Err(invalid.into_error());
    }
    Ok(events)
}

/// How the `parse_differential` fuzz target reads its input: the limits
/// and the body. The first byte picks the limits, so that their order
/// against syntax and validation errors is fuzzed too. An odd byte picks
/// small ones (`max_event_bytes` 16, 64 or 256, `max_batch` 1, 2 or 8) and
/// is not part of the body; an even one (or none) keeps 4096 bytes and 64
/// events, and the body is the whole input, that byte included. `[` and `{`
/// are odd: a seed that is a JSON body must start with a selector (an odd
/// byte, or an even one that is JSON whitespace: space, LF).
pub fn fuzz_input(data: &[u8]) -> (ParseLimits, &[u8]) {
    match data.split_first() {
        Some((&pick, rest)) if pick & 1 == 1 => {
            let max_event_bytes = [16, 64, 256][usize::from(pick >> 1) % 3];
            let max_batch = [1, 2, 8][usize::from(pick >> 3) % 3];
            (ParseLimits { max_event_bytes, max_batch, ..ParseLimits::default() }, rest)
        }
        _ => (ParseLimits { max_event_bytes: 4096, max_batch: 64, ..ParseLimits::default() }, data),
    }
}

/// Parses a structured body as `parse_body` did before the scanner: events
/// sliced from `body`, in order. A binary-mode kind is refused (`415`).
pub fn parse_body(kind: BodyKind, body: &Bytes, limits: &ParseLimits) -> Result<Events, ParseError> {
    let text = Text::try_from(body.clone()).map_err(not_utf8)?;
    let owner = Some(&text);
    match kind {
        BodyKind::Structured => single(&text, owner, limits),
        BodyKind::Batch => array(&text, owner, limits),
        BodyKind::Json => object_or_array(&text, owner, limits),
        BodyKind::Ndjson => ndjson(&text, owner, limits),
        BodyKind::Binary => Err(ParseError::UnsupportedMediaType("binary mode".into())),
    }
}
