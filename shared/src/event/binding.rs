//! Which CloudEvents HTTP binding a `POST /events` uses (SPEC §3.1).

use bytes::Bytes;

use super::binary::parse_binary;
use super::structured::{array, ndjson, not_utf8, object_or_array, returned, single};
use super::{Events, ParseError, ParseLimits, Text};
use crate::http::Headers;
use crate::schema::Tapes;

/// The body format of an ingest request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/cloudevents+json`: one event.
    Structured,
    /// `application/cloudevents-batch+json`: an array of events.
    Batch,
    /// `application/json`: one event or an array.
    Json,
    /// `application/x-ndjson`: one event per line.
    Ndjson,
    /// `ce-*` headers, body is the data.
    Binary,
}

impl BodyKind {
    /// Decides the mode from the headers alone, so a request can be refused
    /// (`415`) before its body is read.
    ///
    /// The `application/cloudevents*` types are structured even when `ce-*`
    /// headers are present (CloudEvents HTTP binding §3.3: the content type
    /// decides); any other type with `ce-specversion` is binary mode.
    pub fn of(headers: &Headers) -> Result<BodyKind, ParseError> {
        let content_type = headers.get("content-type");
        // The two structured types as clients write them (lowercase, no
        // parameters) are one comparison each, before the value is split
        // and trimmed; they decide before `ce-specversion` is looked at.
        match content_type {
            Some(b"application/cloudevents+json") => return Ok(BodyKind::Structured),
            Some(b"application/cloudevents-batch+json") => return Ok(BodyKind::Batch),
            _ => {}
        }
        BodyKind::of_value(headers, content_type)
    }

    /// [`BodyKind::of`] for any `Content-Type` (`content_type`, the value).
    fn of_value(headers: &Headers, content_type: Option<&[u8]>) -> Result<BodyKind, ParseError> {
        // The media type without parameters, compared without allocating.
        let essence =
            content_type.map(|ct| ct.split(|&b| b == b';').next().unwrap_or_default().trim_ascii()).unwrap_or_default();
        // The type as written in lowercase (what clients send) is one
        // `memcmp`; `eq_ignore_ascii_case` goes byte by byte.
        let is = |name: &str| essence == name.as_bytes() || essence.eq_ignore_ascii_case(name.as_bytes());
        if is("application/cloudevents+json") {
            return Ok(BodyKind::Structured);
        }
        if is("application/cloudevents-batch+json") {
            return Ok(BodyKind::Batch);
        }
        if headers.get("ce-specversion").is_some() {
            return Ok(BodyKind::Binary);
        }
        if is("application/json") {
            Ok(BodyKind::Json)
        } else if is("application/x-ndjson") {
            Ok(BodyKind::Ndjson)
        } else {
            Err(ParseError::UnsupportedMediaType(
                content_type.map(|ct| String::from_utf8_lossy(ct).into_owned()).unwrap_or_default(),
            ))
        }
    }
}

/// Parses and validates a `POST /events` body into the events it carries,
/// in the order they were sent. Events from structured bodies keep their
/// received bytes (`Event::raw`, zero-copy slices of `body`).
pub fn parse_body(headers: &Headers, body: &Bytes, limits: &ParseLimits) -> Result<Events, ParseError> {
    parse_body_with(headers, body, limits, None)
}

/// [`parse_body`] that, with `tapes` (a schema set is loaded), also reads
/// each event's `data` onto them as it parses (structured bodies; binary
/// mode's `data` is the body, left to the schema check), so the schema
/// check need not scan `data` again. On `Ok`, `tapes` has one entry per
/// event returned, in order.
pub fn parse_body_with(
    headers: &Headers,
    body: &Bytes,
    limits: &ParseLimits,
    tapes: Option<&mut Tapes>,
) -> Result<Events, ParseError> {
    returned(|out| parse_body_into(headers, body, limits, tapes, out))
}

/// [`parse_body_with`] that pushes the events onto `out`, which the caller
/// passes empty and which is empty again when this fails (`tapes` is not
/// reset then: a caller drops it with the request). An `Event` is
/// some 200 bytes: built where the caller keeps it, it is not copied on
/// its way out of the parser (returned in a `Result`, it was copied once
/// per function it passed through, and once more into the handler's
/// future).
pub fn parse_body_into(
    headers: &Headers,
    body: &Bytes,
    limits: &ParseLimits,
    tapes: Option<&mut Tapes>,
    out: &mut Events,
) -> Result<(), ParseError> {
    debug_assert!(out.is_empty(), "the events pushed would not line up with the tapes");
    type Structured = fn(&str, Option<&Text>, &ParseLimits, Option<&mut Tapes>, &mut Events) -> Result<(), ParseError>;
    let parse: Structured = match BodyKind::of(headers)? {
        BodyKind::Structured => single,
        BodyKind::Batch => array,
        BodyKind::Json => object_or_array,
        BodyKind::Ndjson => ndjson,
        BodyKind::Binary => {
            *out = parse_binary(headers, body, limits)?;
            return Ok(());
        }
    };
    // UTF-8 is checked once; attributes are then zero-copy slices of it.
    let text = Text::try_from(body.clone()).map_err(not_utf8)?;
    let parsed = parse(&text, Some(&text), limits, tapes, out);
    if parsed.is_err() {
        // A batch fails whole: the events before the one that failed go.
        out.clear();
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `of` decides, with its fast path, is what the general reading
    /// of the value decides: for the four types in several spellings, with
    /// parameters and white space, with and without `ce-specversion`.
    #[test]
    fn the_fast_path_decides_as_the_general_reading() {
        let types = [
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
            "application/json",
            "application/x-ndjson",
            "Application/CloudEvents+JSON",
            "APPLICATION/CLOUDEVENTS-BATCH+JSON",
            "text/plain",
            "",
            "application/cloudevents+jsonx",
            "application/cloudevents+jso",
        ];
        let mut cases = 0;
        for ty in types {
            for written in [ty.to_string(), format!("{ty}; charset=utf-8"), format!(" {ty} "), format!("{ty};")] {
                for binary in [false, true] {
                    let mut pairs = vec![("content-type", written.as_str())];
                    if binary {
                        pairs.push(("ce-specversion", "1.0"));
                    }
                    let headers = Headers::from_pairs(&pairs);
                    let general = BodyKind::of_value(&headers, headers.get("content-type"));
                    assert_eq!(format!("{:?}", BodyKind::of(&headers)), format!("{general:?}"), "{written:?} {binary}");
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 80);
        let structured =
            Headers::from_pairs(&[("content-type", "application/cloudevents+json"), ("ce-specversion", "1.0")]);
        assert_eq!(BodyKind::of(&structured).ok(), Some(BodyKind::Structured));
        let batch = Headers::from_pairs(&[("content-type", "application/cloudevents-batch+json")]);
        assert_eq!(BodyKind::of(&batch).ok(), Some(BodyKind::Batch));
        let binary = Headers::from_pairs(&[("content-type", "application/json"), ("ce-specversion", "1.0")]);
        assert_eq!(BodyKind::of(&binary).ok(), Some(BodyKind::Binary));
    }

    /// `parse_body_into` pushes the events of every body kind, in order, as
    /// the reference parser (serde_json's, `event::reference`, which shares
    /// none of its code) reads them, with one tape entry per event; when the
    /// body is refused, also after valid events (a batch fails whole), it
    /// leaves `out` empty.
    #[test]
    fn into_pushes_the_events_in_order_and_nothing_on_failure() {
        let event = |id: &str| format!(r#"{{"specversion":"1.0","id":"{id}","source":"/s","type":"t"}}"#);
        let bad = r#"{"specversion":"1.0","id":"","source":"/s","type":"t"}"#;
        let cases: [(&str, String, &[&str]); 10] = [
            ("application/cloudevents+json", event("a"), &["a"]),
            ("application/cloudevents-batch+json", format!("[{},{}]", event("a"), event("b")), &["a", "b"]),
            ("application/json", format!("[{},{}]", event("b"), event("a")), &["b", "a"]),
            ("application/json", event("a"), &["a"]),
            ("application/x-ndjson", format!("{}\n\n{}\n", event("a"), event("b")), &["a", "b"]),
            ("application/cloudevents-batch+json", format!("[{},{bad}]", event("a")), &[]),
            ("application/x-ndjson", format!("{}\n{bad}\n", event("a")), &[]),
            ("application/x-ndjson", format!("{}\n{{\n", event("a")), &[]),
            ("application/cloudevents+json", bad.to_string(), &[]),
            ("text/plain", event("a"), &[]),
        ];
        let limits = ParseLimits::default();
        for (ty, body, ids) in cases {
            let headers = Headers::from_pairs(&[("content-type", ty)]);
            let body = Bytes::from(body);
            let reference =
                BodyKind::of(&headers).and_then(|kind| super::super::reference::parse_body(kind, &body, &limits));
            for with_tapes in [false, true] {
                let mut tapes = Tapes::new();
                let mut out = Events::new();
                let into = parse_body_into(&headers, &body, &limits, with_tapes.then_some(&mut tapes), &mut out);
                let pushed: Vec<&str> = out.iter().map(|e| e.id()).collect();
                assert_eq!(pushed, ids, "{ty} {body:?}");
                match (&into, &reference) {
                    (Ok(()), Ok(events)) => {
                        assert_eq!(&out, events, "{ty} {body:?}");
                        if with_tapes {
                            assert_eq!(tapes.filled().len(), ids.len(), "{ty} {body:?}");
                        }
                    }
                    (Err(a), Err(b)) => assert_eq!(a.to_problem().status, b.to_problem().status, "{ty} {body:?}"),
                    (a, b) => panic!("{ty} {body:?}: {a:?} against the reference's {b:?}"),
                }
            }
        }
        let binary = Headers::from_pairs(&[
            ("content-type", "text/plain"),
            ("ce-specversion", "1.0"),
            ("ce-id", "a"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ]);
        let mut out = Events::new();
        assert!(parse_body_into(&binary, &Bytes::from_static(b"hi"), &limits, None, &mut out).is_ok());
        assert_eq!(out.iter().map(|e| e.id()).collect::<Vec<_>>(), ["a"]);
    }
}
