//! The CloudEvents 1.0 event and how request bodies become events.
//!
//! - `mod.rs`: the [`Event`] type and its JSON form (CloudEvents JSON format).
//! - `validate.rs`: the rules for each attribute (`time` is RFC 3339, ...).
//! - `structured.rs`: structured, batched and NDJSON bodies.
//! - `scan.rs`: the single-pass JSON scanner that reads them.
//! - `reference.rs` (tests and the `reference-parser` feature only): the
//!   serde_json path the scanner replaced, to compare it with.
//! - `timestamp.rs`: the RFC 3339 rule of `time`, decided by hand.
//! - `binary.rs`: binary mode (`ce-*` headers plus the body as `data`).
//! - `binding.rs`: picks the mode from `Content-Type` (SPEC §3.1).
//! - `error.rs`: [`ParseError`], which says which status to answer.

mod binary;
mod binding;
#[cfg(test)]
mod differential;
mod error;
#[cfg(any(test, feature = "reference-parser"))]
pub mod reference;
mod scan;
mod structured;
mod timestamp;
mod validate;

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::ser::{Error as _, Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

/// An immutable UTF-8 string kept in [`Bytes`]. Attributes parsed from a
/// request body are zero-copy slices of it (one reference count, no
/// allocation); others own their bytes.
pub use bytestring::ByteString as Text;

/// The events of one request, in order. A single event (the common case)
/// is kept inline: no allocation.
pub type Events = smallvec::SmallVec<[Event; 1]>;

pub(crate) use binary::is_json_media_type;
pub use binary::parse_binary;
pub use binding::{parse_body, parse_body_into, parse_body_with, BodyKind};
pub use error::{ParseError, MAX_LISTED_ERRORS};
#[cfg(feature = "reference-parser")]
pub use structured::scan_only;
pub use structured::{is_blank_line, parse_array, parse_ndjson, parse_object_or_array, parse_single};

/// Limits applied while parsing a request body into events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// One event's JSON (or binary-mode body), in bytes (the server's `--max-event-bytes`).
    pub max_event_bytes: usize,
    /// Events in one request (the server's `--max-batch`).
    pub max_batch: usize,
    /// The body with its content codings undone, in bytes (the server's
    /// `--max-decoded-body`), counted while decoding (`http::coding`).
    pub max_decoded_body: usize,
}

impl Default for ParseLimits {
    fn default() -> ParseLimits {
        ParseLimits { max_event_bytes: 256 * 1024, max_batch: 1000, max_decoded_body: 16 * 1024 * 1024 }
    }
}

/// An extension attribute value. CloudEvents' other types (URI, timestamp,
/// binary) travel as strings in JSON and are kept as such.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionValue {
    String(Text),
    /// CloudEvents `Integer`: a signed 32-bit number.
    Integer(i32),
    Boolean(bool),
}

/// The payload of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// `data`: JSON kept exactly as it was sent (same bytes).
    Json(Json),
    /// `data_base64`: binary data, base64 as sent (validated).
    Base64(Text),
}

/// A JSON value's text, known to be valid JSON: exactly the bytes it was
/// received as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json(Text);

impl Json {
    /// Checks that `text` is one JSON value.
    pub fn parse(text: impl Into<Text>) -> Result<Json, serde_json::Error> {
        let text = text.into();
        serde_json::from_str::<&RawValue>(&text)?;
        Ok(Json(text))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_json::from_str::<&RawValue>(self.get()).map_err(S::Error::custom)?.serialize(s)
    }
}

/// Where an attribute's text lies: `start..end` of the event's body, or,
/// when `start` is [`Span::OWN`], the text `own[end]` of the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// `start` of a span that is not in the body but the event's own text
    /// number `end`. No body span starts there: a body that long keeps none.
    const OWN: u32 = u32::MAX;

    /// The span of `s` in `body`, if `s` lies in it (it was borrowed from
    /// it) and `body` is shorter than [`Span::OWN`].
    #[inline]
    fn of(body: &[u8], s: &[u8]) -> Option<Span> {
        let start = (s.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
        let fits = body.len() < Span::OWN as usize && start <= body.len() && s.len() <= body.len() - start;
        // Both below `Span::OWN`, as `body.len()` is.
        fits.then(|| Span { start: start as u32, end: (start + s.len()) as u32 })
    }

    #[inline]
    fn own(index: usize) -> Span {
        // An index into `Event::own`: one text per attribute set by hand
        // (a required one replaced in place; an optional one set to `None`
        // and later set again takes a new slot, the old one kept).
        Span { start: Span::OWN, end: index as u32 }
    }
}

/// The event's JSON as received: a span of the event's body, or its own
/// bytes ([`Event::set_raw`]).
#[derive(Debug, Clone)]
enum Raw {
    Body(Span),
    Own(Bytes),
}

impl Raw {
    /// `s` as a span of `body` if it lies in it, else a copy.
    fn of(body: &Text, s: &str) -> Raw {
        match Span::of(body.as_bytes(), s.as_bytes()) {
            Some(span) => Raw::Body(span),
            None => Raw::Own(Bytes::copy_from_slice(s.as_bytes())),
        }
    }
}

/// What an event's `data` is, as stored in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataForm {
    Json,
    Base64,
}

/// An event's payload as read from it ([`Event::data`]): the text of one of
/// the two members it can come as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataRef<'e> {
    /// `data`: JSON exactly as it was sent (same bytes).
    Json(&'e str),
    /// `data_base64`: base64 as sent (validated).
    Base64(&'e str),
}

/// A valid CloudEvents 1.0 event. `specversion` is always `"1.0"`.
///
/// The attributes of a parsed event lie in the request body it came in: the
/// event keeps that body (one reference count) and where each attribute is
/// in it, and its accessors (`id()`, `source()`, ...) read them from there.
/// An attribute that is not in the body (an unescaped string, a header's
/// value, one set by hand) is a [`Text`] of its own.
#[derive(Clone)]
pub struct Event {
    /// The bytes the body spans are of (empty when there are none).
    body: Text,
    /// The texts of the attributes that are not in `body`.
    own: Vec<Text>,
    id: Span,
    source: Span,
    ty: Span,
    datacontenttype: Option<Span>,
    dataschema: Option<Span>,
    subject: Option<Span>,
    time: Option<Span>,
    data: Option<(DataForm, Span)>,
    raw: Option<Raw>,
    /// `None` when there are none (an empty map costs a walk to drop).
    extensions: Option<BTreeMap<String, ExtensionValue>>,
}

/// The attributes of a parsed event, as the parser hands them to
/// [`Event::from_parts`]: each a `str` that lies in the body or not.
pub(crate) struct Parts<'a> {
    pub(crate) id: &'a str,
    pub(crate) source: &'a str,
    pub(crate) ty: &'a str,
    pub(crate) datacontenttype: Option<&'a str>,
    pub(crate) dataschema: Option<&'a str>,
    pub(crate) subject: Option<&'a str>,
    pub(crate) time: Option<&'a str>,
    /// `None` when there are none.
    pub(crate) extensions: Option<BTreeMap<String, ExtensionValue>>,
    pub(crate) data: Option<DataRef<'a>>,
    /// The event's JSON as received, if it is kept (it lies in the body).
    pub(crate) raw: Option<&'a str>,
}

/// Two events are equal when their attributes and data are; where their
/// bytes came from does not matter.
impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.id() == other.id()
            && self.source() == other.source()
            && self.ty() == other.ty()
            && self.datacontenttype() == other.datacontenttype()
            && self.dataschema() == other.dataschema()
            && self.subject() == other.subject()
            && self.time() == other.time()
            && self.extensions() == other.extensions()
            && self.data() == other.data()
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id())
            .field("source", &self.source())
            .field("type", &self.ty())
            .field("datacontenttype", &self.datacontenttype())
            .field("dataschema", &self.dataschema())
            .field("subject", &self.subject())
            .field("time", &self.time())
            .field("extensions", self.extensions())
            .field("data", &self.data())
            .field("raw", &self.raw().map(String::from_utf8_lossy))
            .finish()
    }
}

impl Event {
    /// An event with the required attributes only.
    pub fn new(id: impl Into<Text>, source: impl Into<Text>, ty: impl Into<Text>) -> Event {
        Event {
            body: Text::new(),
            own: vec![id.into(), source.into(), ty.into()],
            id: Span::own(0),
            source: Span::own(1),
            ty: Span::own(2),
            datacontenttype: None,
            dataschema: None,
            subject: None,
            time: None,
            data: None,
            raw: None,
            extensions: None,
        }
    }

    /// A parsed event: its attributes are spans of `body` where they lie in
    /// it, else copies (an unescaped string, a header's value).
    #[inline]
    pub(crate) fn from_parts(body: Option<&Text>, parts: Parts<'_>) -> Event {
        let body = body.cloned().unwrap_or_default();
        let mut own = Vec::new();
        let mut span = |s: &str| {
            Span::of(body.as_bytes(), s.as_bytes()).unwrap_or_else(|| {
                own.push(Text::from(s));
                Span::own(own.len() - 1)
            })
        };
        let id = span(parts.id);
        let source = span(parts.source);
        let ty = span(parts.ty);
        let datacontenttype = parts.datacontenttype.map(&mut span);
        let dataschema = parts.dataschema.map(&mut span);
        let subject = parts.subject.map(&mut span);
        let time = parts.time.map(&mut span);
        let data = parts.data.map(|data| match data {
            DataRef::Json(s) => (DataForm::Json, span(s)),
            DataRef::Base64(s) => (DataForm::Base64, span(s)),
        });
        let raw = parts.raw.map(|s| Raw::of(&body, s));
        Event {
            body,
            own,
            id,
            source,
            ty,
            datacontenttype,
            dataschema,
            subject,
            time,
            data,
            raw,
            extensions: parts.extensions,
        }
    }

    #[inline]
    fn text(&self, span: Span) -> &str {
        if span.start == Span::OWN {
            self.own.get(span.end as usize).map_or("", |text| text)
        } else {
            self.body.get(span.start as usize..span.end as usize).unwrap_or_default()
        }
    }

    /// `id`: with `source` it identifies the event.
    #[inline]
    pub fn id(&self) -> &str {
        self.text(self.id)
    }

    /// `source`: the URI-reference naming the producer.
    #[inline]
    pub fn source(&self) -> &str {
        self.text(self.source)
    }

    /// `type`.
    #[inline]
    pub fn ty(&self) -> &str {
        self.text(self.ty)
    }

    /// `datacontenttype`: the media type of `data`.
    pub fn datacontenttype(&self) -> Option<&str> {
        self.datacontenttype.map(|s| self.text(s))
    }

    /// `dataschema`: an absolute URI.
    pub fn dataschema(&self) -> Option<&str> {
        self.dataschema.map(|s| self.text(s))
    }

    /// `subject`.
    pub fn subject(&self) -> Option<&str> {
        self.subject.map(|s| self.text(s))
    }

    /// `time`: an RFC 3339 timestamp, kept as sent.
    pub fn time(&self) -> Option<&str> {
        self.time.map(|s| self.text(s))
    }

    /// The extension attributes, by name.
    pub fn extensions(&self) -> &BTreeMap<String, ExtensionValue> {
        static NONE: BTreeMap<String, ExtensionValue> = BTreeMap::new();
        self.extensions.as_ref().unwrap_or(&NONE)
    }

    /// The payload, `data` or `data_base64`, if there is one.
    pub fn data(&self) -> Option<DataRef<'_>> {
        self.data.map(|(form, span)| match form {
            DataForm::Json => DataRef::Json(self.text(span)),
            DataForm::Base64 => DataRef::Base64(self.text(span)),
        })
    }

    /// The event's JSON exactly as it was received (part of the request
    /// body), when it came as one line of JSON in a structured body. Stores
    /// keep these bytes instead of serialising the event again.
    #[inline]
    pub fn raw(&self) -> Option<&[u8]> {
        self.raw.as_ref().map(|raw| match raw {
            Raw::Body(span) => self.body.as_bytes().get(span.start as usize..span.end as usize).unwrap_or_default(),
            Raw::Own(bytes) => &bytes[..],
        })
    }

    /// `text` (an attribute of this event, e.g. `event.id()`) as a [`Text`]
    /// that shares the event's bytes when it lies in them, else a copy.
    pub fn share(&self, text: &str) -> Text {
        if Span::of(self.body.as_bytes(), text.as_bytes()).is_some() {
            return self.body.slice_ref(text);
        }
        let same = |own: &&Text| own.as_ptr() == text.as_ptr() && own.len() == text.len();
        match self.own.iter().find(same) {
            Some(own) => own.clone(),
            None => Text::from(text),
        }
    }

    /// Puts `text` where `span` (one of this event's) says, in place when
    /// that is a text of the event's own already; the new span.
    fn set(&mut self, span: Option<Span>, text: Text) -> Span {
        if let Some(span) = span.filter(|s| s.start == Span::OWN) {
            if let Some(own) = self.own.get_mut(span.end as usize) {
                *own = text;
                return span;
            }
        }
        self.own.push(text);
        Span::own(self.own.len() - 1)
    }

    // The setters: for events built by hand (the client, tests). What they
    // set is a text of the event's own.

    pub fn set_id(&mut self, id: impl Into<Text>) {
        self.id = self.set(Some(self.id), id.into());
    }

    pub fn set_source(&mut self, source: impl Into<Text>) {
        self.source = self.set(Some(self.source), source.into());
    }

    pub fn set_ty(&mut self, ty: impl Into<Text>) {
        self.ty = self.set(Some(self.ty), ty.into());
    }

    pub fn set_datacontenttype(&mut self, datacontenttype: Option<Text>) {
        self.datacontenttype = datacontenttype.map(|text| self.set(self.datacontenttype, text));
    }

    pub fn set_dataschema(&mut self, dataschema: Option<Text>) {
        self.dataschema = dataschema.map(|text| self.set(self.dataschema, text));
    }

    pub fn set_subject(&mut self, subject: Option<Text>) {
        self.subject = subject.map(|text| self.set(self.subject, text));
    }

    pub fn set_time(&mut self, time: Option<Text>) {
        self.time = time.map(|text| self.set(self.time, text));
    }

    pub fn extensions_mut(&mut self) -> &mut BTreeMap<String, ExtensionValue> {
        self.extensions.get_or_insert_with(BTreeMap::new)
    }

    pub fn set_data(&mut self, data: Option<Data>) {
        let old = self.data.map(|(_, span)| span);
        self.data = data.map(|data| match data {
            Data::Json(json) => (DataForm::Json, self.set(old, json.0)),
            Data::Base64(text) => (DataForm::Base64, self.set(old, text)),
        });
    }

    /// Sets the bytes [`Event::raw`] and [`Event::json_bytes`] give: the
    /// caller vouches that they are this event's JSON.
    pub fn set_raw(&mut self, raw: Option<Bytes>) {
        self.raw = raw.map(Raw::Own);
    }

    /// The event in the CloudEvents JSON format, as stored: the bytes it was
    /// received as when there are any, else freshly serialised.
    pub fn json_bytes(&self) -> Bytes {
        match &self.raw {
            Some(Raw::Body(span)) => self.body.as_bytes().slice(span.start as usize..span.end as usize),
            Some(Raw::Own(raw)) => raw.clone(),
            None => Bytes::from(self.to_json()),
        }
    }

    /// Parses and validates one event in the CloudEvents JSON format.
    pub fn from_json(json: &[u8]) -> Result<Event, ParseError> {
        let limits = ParseLimits { max_event_bytes: usize::MAX, max_batch: 1, max_decoded_body: usize::MAX };
        let mut events = parse_single(json, &limits)?;
        events.pop().ok_or(ParseError::Json { detail: "no event".into(), errors: Vec::new() })
    }

    /// The event in the CloudEvents JSON format.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, integers and already-valid raw JSON: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("specversion", "1.0")?;
        map.serialize_entry("id", self.id())?;
        map.serialize_entry("source", self.source())?;
        map.serialize_entry("type", self.ty())?;
        let optional = [
            ("datacontenttype", self.datacontenttype()),
            ("dataschema", self.dataschema()),
            ("subject", self.subject()),
            ("time", self.time()),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                map.serialize_entry(name, value)?;
            }
        }
        for (name, value) in self.extensions() {
            match value {
                ExtensionValue::String(v) => map.serialize_entry(name, &**v)?,
                ExtensionValue::Integer(v) => map.serialize_entry(name, v)?,
                ExtensionValue::Boolean(v) => map.serialize_entry(name, v)?,
            }
        }
        match self.data() {
            Some(DataRef::Json(json)) => {
                map.serialize_entry("data", serde_json::from_str::<&RawValue>(json).map_err(S::Error::custom)?)?
            }
            Some(DataRef::Base64(b64)) => map.serialize_entry("data_base64", b64)?,
            None => {}
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"{"specversion":"1.0","id":"e-1","source":"/s\/x","type":"t.a","subject":"su","time":"2026-11-29T06:00:00Z","datacontenttype":"application/json","dataschema":"https://example.com/s","ext":"v","n":3,"data":{"k": [1, 2]}}"#;

    fn parsed(json: &str) -> (Bytes, Event) {
        let body = Bytes::from(json.to_string());
        let limits = ParseLimits::default();
        let mut events = parse_body(
            &crate::http::Headers::from_pairs(&[("Content-Type", "application/cloudevents+json")]),
            &body,
            &limits,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        (body, events.remove(0))
    }

    #[test]
    fn a_parsed_event_reads_its_attributes_from_the_body_it_came_in() {
        let (body, e) = parsed(ONE);
        let within = |s: &[u8]| body.as_ptr_range().contains(&s.as_ptr()) && s.len() <= body.len();
        assert_eq!((e.id(), e.source(), e.ty()), ("e-1", "/s/x", "t.a"));
        assert_eq!(e.subject(), Some("su"));
        assert_eq!(e.time(), Some("2026-11-29T06:00:00Z"));
        assert_eq!(e.datacontenttype(), Some("application/json"));
        assert_eq!(e.dataschema(), Some("https://example.com/s"));
        assert_eq!(e.data(), Some(DataRef::Json(r#"{"k": [1, 2]}"#)));
        assert_eq!(e.extensions().get("ext"), Some(&ExtensionValue::String("v".into())));
        assert_eq!(e.extensions().get("n"), Some(&ExtensionValue::Integer(3)));
        assert_eq!(e.raw(), Some(ONE.as_bytes()));
        for s in [e.id(), e.ty(), e.subject().unwrap_or_default(), e.time().unwrap_or_default()] {
            assert!(within(s.as_bytes()), "{s:?} is not in the body");
        }
        // Unescaped: its own bytes.
        assert!(!within(e.source().as_bytes()));
        assert!(within(e.raw().unwrap_or_default()));
        assert!(within(&e.json_bytes()));
        assert_eq!(&e.json_bytes()[..], ONE.as_bytes());
        // `share` gives a slice of the body where the text lies in it, else a copy.
        assert!(within(e.share(e.id()).as_bytes()) && &*e.share(e.id()) == "e-1");
        assert_eq!(&*e.share(e.source()), "/s/x");
        assert_eq!(e.share(e.source()).as_ptr(), e.source().as_ptr(), "the unescaped text itself");
        assert_eq!(&*e.share("elsewhere"), "elsewhere");
    }

    #[test]
    fn an_event_built_by_hand_serialises_as_the_parsed_one() {
        let (_, parsed) = parsed(ONE);
        let mut e = Event::new("e-1", "/s/x", "t.x");
        e.set_ty("t.a");
        e.set_subject(Some("su".into()));
        e.set_time(Some("2026-11-29T06:00:00Z".into()));
        e.set_datacontenttype(Some("application/json".into()));
        e.set_dataschema(Some("https://example.com/s".into()));
        e.extensions_mut().insert("ext".into(), ExtensionValue::String("v".into()));
        e.extensions_mut().insert("n".into(), ExtensionValue::Integer(3));
        e.set_data(Json::parse(r#"{"k": [1, 2]}"#).ok().map(Data::Json));
        assert_eq!(e, parsed);
        assert_eq!(e.raw(), None);
        assert_eq!(e.to_json(), parsed.to_json());
        assert_eq!(e.json_bytes(), Bytes::from(parsed.to_json()));
        assert_eq!(
            String::from_utf8_lossy(&e.to_json()),
            r#"{"specversion":"1.0","id":"e-1","source":"/s/x","type":"t.a","datacontenttype":"application/json","dataschema":"https://example.com/s","subject":"su","time":"2026-11-29T06:00:00Z","ext":"v","n":3,"data":{"k": [1, 2]}}"#
        );
        // A parsed event's attributes set again are its own; the rest still read from the body.
        let mut changed = parsed.clone();
        changed.set_id("other");
        changed.set_subject(None);
        changed.set_data(Some(Data::Base64("AA==".into())));
        changed.set_raw(Some(Bytes::from_static(b"{}")));
        assert_eq!((changed.id(), changed.subject(), changed.ty()), ("other", None, "t.a"));
        assert_eq!(changed.data(), Some(DataRef::Base64("AA==")));
        assert_eq!((changed.raw(), &changed.json_bytes()[..]), (Some(&b"{}"[..]), &b"{}"[..]));
        assert_eq!(parsed.id(), "e-1");
        // No extensions and an emptied map are the same.
        let (mut emptied, none) = (Event::new("a", "b", "c"), Event::new("a", "b", "c"));
        assert!(none.extensions().is_empty());
        emptied.extensions_mut().insert("x".into(), ExtensionValue::Boolean(true));
        assert_ne!(emptied, none);
        emptied.extensions_mut().clear();
        assert_eq!(emptied, none);
        assert_eq!(emptied.to_json(), none.to_json());
    }

    #[test]
    fn a_span_is_found_only_for_bytes_inside_the_owner() {
        let owner = b"0123456789";
        assert_eq!(Span::of(owner, &owner[2..5]), Some(Span { start: 2, end: 5 }));
        assert_eq!(Span::of(owner, &owner[..]), Some(Span { start: 0, end: 10 }));
        assert_eq!(Span::of(owner, &owner[10..]), Some(Span { start: 10, end: 10 }));
        let other = *owner;
        assert_eq!(Span::of(owner, &other[2..5]), None);
        let wider = b"x0123456789y";
        let inner = &wider[1..11];
        assert_eq!(Span::of(inner, &wider[0..3]), None, "starts before");
        assert_eq!(Span::of(inner, &wider[9..12]), None, "ends after");
        assert_eq!(Span::of(inner, &wider[1..11]), Some(Span { start: 0, end: 10 }));
    }
}
