//! The CloudEvents 1.0 rules for each attribute (spec §3.1 "Context
//! Attributes", the JSON format §2-§3, SPEC §3.1). Every failing attribute is
//! reported, not only the first, each located where it came from: a JSON
//! Pointer into the body (plus the NDJSON line) or the `ce-*` header.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;

use super::{Data, Event, ExtensionValue};
use crate::problem::FieldError;

/// Where the attributes of one event came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin<'a> {
    /// A JSON object at JSON Pointer `prefix` (`#` or `#/3`), on NDJSON `line`.
    Json { prefix: &'a str, line: Option<u64> },
    /// `ce-*` headers of a binary-mode request.
    Headers,
}

impl Origin<'_> {
    fn error(&self, attribute: &str, detail: impl Into<String>) -> FieldError {
        match *self {
            Origin::Json { prefix, line } => {
                FieldError::pointer(format!("{prefix}/{}", escape_pointer(attribute)), line, detail)
            }
            Origin::Headers => FieldError::header(format!("ce-{attribute}"), detail),
        }
    }
}

/// An attribute value as received.
#[derive(Debug)]
pub(crate) enum RawAttr<'a> {
    /// A JSON value from a structured body.
    Json(&'a RawValue),
    /// A (percent-decoded) header value: always a string.
    Text(String),
}

/// JSON type of a raw value, from its first byte.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Other,
}

fn kind(raw: &RawValue) -> Kind {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'"') => Kind::String,
        Some(b'-' | b'0'..=b'9') => Kind::Number,
        _ => Kind::Other,
    }
}

impl RawAttr<'_> {
    /// `Ok(None)` for JSON null (the attribute is absent, JSON format §2.4).
    fn string(&self) -> Result<Option<String>, &'static str> {
        match self {
            RawAttr::Text(s) => Ok(Some(s.clone())),
            RawAttr::Json(raw) => match kind(raw) {
                Kind::Null => Ok(None),
                Kind::String => serde_json::from_str(raw.get()).map(Some).map_err(|_| "must be a string"),
                _ => Err("must be a string"),
            },
        }
    }
}

/// Builds an event from its attributes, pushing one [`FieldError`] per failing
/// attribute onto `errors`. Returns the event only if nothing failed.
pub(crate) fn build_event<'a>(
    attrs: impl IntoIterator<Item = (Cow<'a, str>, RawAttr<'a>)>,
    origin: Origin<'_>,
    errors: &mut Vec<FieldError>,
) -> Option<Event> {
    let errors_before = errors.len();
    let mut seen: Vec<Cow<'a, str>> = Vec::new();
    let mut specversion = None;
    let mut event = Event::new(String::new(), String::new(), String::new());
    let (mut id, mut source, mut ty) = (None, None, None);
    let mut data = None;
    let mut data_base64 = None;
    let mut extensions = BTreeMap::new();

    for (name, value) in attrs {
        if seen.contains(&name) {
            errors.push(origin.error(&name, "attribute appears more than once"));
            continue;
        }
        let mut fail = |detail: &str| errors.push(origin.error(&name, detail));
        match &*name {
            "specversion" => match value.string() {
                Ok(v) => specversion = v,
                Err(e) => fail(e),
            },
            "id" | "source" | "type" | "subject" => match value.string() {
                Ok(Some(v)) if v.is_empty() => fail("must be a non-empty string"),
                Ok(None) if name != "subject" => fail("must be a non-empty string"),
                Ok(v) => {
                    if name == "source" && v.as_deref().is_some_and(|s| !is_uri_reference(s)) {
                        fail("must be a URI-reference (no spaces or control characters)");
                    }
                    match &*name {
                        "id" => id = v,
                        "source" => source = v,
                        "type" => ty = v,
                        _ => event.subject = v,
                    }
                }
                Err(_) => fail("must be a non-empty string"),
            },
            "datacontenttype" => match value.string() {
                Ok(Some(v)) if !is_media_type(&v) => fail("must be a media type (RFC 2046), e.g. application/json"),
                Ok(v) => event.datacontenttype = v,
                Err(e) => fail(e),
            },
            "dataschema" => match value.string() {
                Ok(Some(v)) if !is_absolute_uri(&v) => fail("must be an absolute URI"),
                Ok(v) => event.dataschema = v,
                Err(e) => fail(e),
            },
            "time" => match value.string() {
                Ok(Some(v)) if time::OffsetDateTime::parse(&v, &Rfc3339).is_err() => {
                    fail("must be an RFC 3339 timestamp, e.g. 2026-11-29T06:00:00Z")
                }
                Ok(v) => event.time = v,
                Err(_) => fail("must be an RFC 3339 timestamp string"),
            },
            "data" => match value {
                RawAttr::Json(raw) if kind(raw) == Kind::Null => {}
                RawAttr::Json(raw) => data = Some(raw.to_owned()),
                RawAttr::Text(_) => fail("is the body in binary mode, not a header"),
            },
            "data_base64" => match value.string() {
                Ok(Some(v)) if base64::engine::general_purpose::STANDARD.decode(&v).is_err() => {
                    fail("must be valid base64 (RFC 4648 §4)")
                }
                Ok(v) => data_base64 = v,
                Err(e) => fail(e),
            },
            ext => {
                if !is_extension_name(ext) {
                    fail("extension attribute names must be lowercase ASCII letters and digits");
                } else {
                    match extension_value(&value) {
                        Ok(Some(v)) => {
                            extensions.insert(ext.to_string(), v);
                        }
                        Ok(None) => {}
                        Err(e) => fail(e),
                    }
                }
            }
        }
        seen.push(name);
    }

    match specversion.as_deref() {
        Some("1.0") => {}
        Some(_) => errors.push(origin.error("specversion", "must be \"1.0\"")),
        None if !seen.iter().any(|s| s == "specversion") => {
            errors.push(origin.error("specversion", "is required and must be \"1.0\""))
        }
        None => {}
    }
    for (name, value) in [("id", &id), ("source", &source), ("type", &ty)] {
        if value.is_none() && !seen.iter().any(|s| s == name) {
            errors.push(origin.error(name, "is required and must be a non-empty string"));
        }
    }
    if data.is_some() && data_base64.is_some() {
        errors.push(origin.error("data_base64", "data and data_base64 are mutually exclusive"));
    }
    if errors.len() > errors_before {
        return None;
    }
    event.id = id?;
    event.source = source?;
    event.ty = ty?;
    event.extensions = extensions;
    event.data = data.map(Data::Json).or(data_base64.map(Data::Base64));
    Some(event)
}

/// CloudEvents type system for extensions: String, Integer (32-bit), Boolean;
/// URI, URI-reference, Timestamp and Binary travel as strings.
fn extension_value(value: &RawAttr<'_>) -> Result<Option<ExtensionValue>, &'static str> {
    const BAD: &str = "must be a string, a 32-bit integer or a boolean";
    match value {
        RawAttr::Text(s) => Ok(Some(ExtensionValue::String(s.clone()))),
        RawAttr::Json(raw) => match kind(raw) {
            Kind::Null => Ok(None),
            Kind::Bool => Ok(Some(ExtensionValue::Boolean(raw.get().trim() == "true"))),
            Kind::Number => raw.get().trim().parse::<i32>().map(|n| Some(ExtensionValue::Integer(n))).map_err(|_| BAD),
            Kind::String => value.string().map(|s| s.map(ExtensionValue::String)),
            Kind::Other => Err(BAD),
        },
    }
}

/// CloudEvents §3.1.1: extension names are lowercase letters and digits.
pub(crate) fn is_extension_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A URI-reference (RFC 3986 §4.1) has no whitespace or control characters.
fn is_uri_reference(s: &str) -> bool {
    !s.bytes().any(|b| b <= b' ' || b == 0x7f)
}

/// RFC 3986 §3.1: `scheme ":" ...` with `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once(':') else { return false };
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && is_uri_reference(s)
}

/// RFC 2045 §5.1 / RFC 9110 §8.3.1: `type "/" subtype *( OWS ";" OWS parameter )`.
pub(crate) fn is_media_type(s: &str) -> bool {
    let essence = s.split(';').next().unwrap_or("").trim();
    match essence.split_once('/') {
        Some((ty, sub)) => is_token(ty) && is_token(sub),
        None => false,
    }
}

/// RFC 9110 §5.6.2 token.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 6901 §3: `~` is written `~0` and `/` is written `~1`.
fn escape_pointer(name: &str) -> Cow<'_, str> {
    if name.contains(['~', '/']) {
        Cow::Owned(name.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(name)
    }
}
