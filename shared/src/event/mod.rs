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
pub use binding::{parse_body, parse_body_with, BodyKind};
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

    /// A value that was parsed as JSON already (a slice of a parsed body).
    pub(crate) fn parsed(text: Text) -> Json {
        Json(text)
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

/// A valid CloudEvents 1.0 event. `specversion` is always `"1.0"`.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Text,
    /// URI-reference naming the producer; with `id` it identifies the event.
    pub source: Text,
    pub ty: Text,
    pub datacontenttype: Option<Text>,
    pub dataschema: Option<Text>,
    pub subject: Option<Text>,
    /// RFC 3339 timestamp, kept as sent.
    pub time: Option<Text>,
    pub extensions: BTreeMap<String, ExtensionValue>,
    pub data: Option<Data>,
    /// The event's JSON exactly as it was received (a zero-copy slice of the
    /// request body), when it came as one line of JSON in a structured body.
    /// Stores keep these bytes instead of serialising the event again.
    pub raw: Option<Bytes>,
}

/// Two events are equal when their attributes and data are; where their
/// bytes came from does not matter.
impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.id == other.id
            && self.source == other.source
            && self.ty == other.ty
            && self.datacontenttype == other.datacontenttype
            && self.dataschema == other.dataschema
            && self.subject == other.subject
            && self.time == other.time
            && self.extensions == other.extensions
            && self.data == other.data
    }
}

impl Event {
    /// An event with the required attributes only.
    pub fn new(id: impl Into<Text>, source: impl Into<Text>, ty: impl Into<Text>) -> Event {
        Event {
            id: id.into(),
            source: source.into(),
            ty: ty.into(),
            datacontenttype: None,
            dataschema: None,
            subject: None,
            time: None,
            extensions: BTreeMap::new(),
            data: None,
            raw: None,
        }
    }

    /// The event in the CloudEvents JSON format, as stored: the bytes it was
    /// received as when there are any, else freshly serialised.
    pub fn json_bytes(&self) -> Bytes {
        match &self.raw {
            Some(raw) => raw.clone(),
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
        map.serialize_entry("id", &*self.id)?;
        map.serialize_entry("source", &*self.source)?;
        map.serialize_entry("type", &*self.ty)?;
        let optional = [
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
            ("subject", &self.subject),
            ("time", &self.time),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                map.serialize_entry(name, &**value)?;
            }
        }
        for (name, value) in &self.extensions {
            match value {
                ExtensionValue::String(v) => map.serialize_entry(name, &**v)?,
                ExtensionValue::Integer(v) => map.serialize_entry(name, v)?,
                ExtensionValue::Boolean(v) => map.serialize_entry(name, v)?,
            }
        }
        match &self.data {
            Some(Data::Json(raw)) => map.serialize_entry("data", raw)?,
            Some(Data::Base64(b64)) => map.serialize_entry("data_base64", &**b64)?,
            None => {}
        }
        map.end()
    }
}
