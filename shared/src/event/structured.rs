//! Structured-mode bodies (CloudEvents JSON format): one event object, a JSON
//! array of events (batched mode), or NDJSON (one event object per line).
//! A batch is all-or-nothing: either every event is valid or the error lists
//! the failing attributes of its events: the first `MAX_LISTED_ERRORS` of
//! them in document order, the first of every later failing event, and a
//! count of the rest (`error::Found`).

use super::error::Found;
use super::scan::{Members, Scanner, Syntax};
use super::validate::{build_event_into, Origin};
use super::{Events, ParseError, ParseLimits, Text};
use crate::problem::FieldError;
use crate::schema::Tapes;

fn utf8(body: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(body).map_err(not_utf8)
}

pub(crate) fn not_utf8(e: std::str::Utf8Error) -> ParseError {
    ParseError::Json { detail: format!("not UTF-8 ({e})"), errors: Vec::new() }
}

/// Syntax errors are `400`; valid JSON of the wrong shape is reported at
/// `pointer` as a validation error (`422`).
enum Shape {
    Syntax(String),
    Wrong,
}

pub(crate) fn too_large(pointer: String, line: Option<u64>, len: usize, limits: &ParseLimits) -> ParseError {
    let detail = format!("event is {len} bytes; the limit is {}", limits.max_event_bytes);
    ParseError::EventTooLarge { at: FieldError::pointer(pointer, line, detail) }
}

/// Validates one event object found at `prefix`; errors go to `found`, the
/// event (if valid) onto `out`. With `owner` (the body that `json` lies
/// in), the event keeps its own bytes as `raw` when they fit on one line.
fn event_at(
    json: &str,
    owner: Option<&Text>,
    prefix: &str,
    line: Option<u64>,
    found: &mut Found,
    tapes: Option<&mut Tapes>,
    out: &mut Events,
) -> Result<bool, Shape> {
    let syntax = |e: Syntax| Shape::Syntax(e.detail(json));
    let mut scan = Scanner::new(json);
    let mut members = Members::new();
    if scan.skip_ws() != Some(b'{') {
        scan.wrong_type().map_err(syntax)?;
        return Err(Shape::Wrong);
    }
    let start = scan.pos();
    // The caller checked the whole of `json` against `max_event_bytes`.
    scan.object(&mut members, usize::MAX, tapes).map_err(syntax)?;
    let object = scan.since(start);
    scan.end().map_err(syntax)?;
    if let Some(e) = scan.key_error {
        return Err(syntax(e));
    }
    let valid = build(&members, object, owner, Origin::Json { prefix, line }, found, out);
    // Dropping the members walks all of them to find any `String` to free
    // (some 120 instructions for an event of eight). With nothing unescaped
    // they own none, and inline (not spilled) the list owns no heap block
    // either: nothing to free, so the walk is skipped.
    if !scan.unescaped && !members.spilled() {
        std::mem::forget(members);
    }
    Ok(valid)
}

/// Validates the members of the event object `object` (its text); the
/// event, if valid, is pushed onto `out`.
fn build(
    members: &Members<'_>,
    object: &str,
    owner: Option<&Text>,
    origin: Origin<'_>,
    found: &mut Found,
    out: &mut Events,
) -> bool {
    found.start_event();
    // Multi-line JSON is serialised again, so that `GET /events` and
    // `inlet-client events` keep one event per line.
    let raw = owner.filter(|_| memchr::memchr2(b'\n', b'\r', object.as_bytes()).is_none()).map(|_| object);
    build_event_into(members, owner, origin, found, raw, out)
}

/// `application/cloudevents+json`: exactly one event object.
pub fn parse_single(body: &[u8], limits: &ParseLimits) -> Result<Events, ParseError> {
    returned(|out| single(utf8(body)?, None, limits, None, out))
}

/// The events a parser that pushes onto `out` (as the ones below do, so
/// that the events are built where their caller keeps them) pushed, as a
/// value: for the callers that want one.
pub(crate) fn returned(parse: impl FnOnce(&mut Events) -> Result<(), ParseError>) -> Result<Events, ParseError> {
    let mut events = Events::new();
    parse(&mut events)?;
    Ok(events)
}

/// One event object, pushed onto `out` if it is valid; with `tapes`, its
/// `data` is read onto them (see [`Tapes`]): one entry of theirs per event
/// pushed.
pub(crate) fn single(
    json: &str,
    owner: Option<&Text>,
    limits: &ParseLimits,
    mut tapes: Option<&mut Tapes>,
    out: &mut Events,
) -> Result<(), ParseError> {
    if json.len() > limits.max_event_bytes {
        return Err(too_large("#".into(), None, json.len(), limits));
    }
    let mut found = Found::new();
    match event_at(json, owner, "#", None, &mut found, tapes.as_deref_mut(), out) {
        Ok(true) => {
            if let Some(tapes) = tapes {
                tapes.push_event();
            }
            Ok(())
        }
        Ok(false) => Err(found.into_error()),
        Err(Shape::Syntax(detail)) => Err(ParseError::Json { detail, errors: Vec::new() }),
        Err(Shape::Wrong) => Err(ParseError::Invalid { errors: vec![not_an_event("#", None)], cut: 0 }),
    }
}

/// `application/cloudevents-batch+json`: a JSON array of event objects.
pub fn parse_array(body: &[u8], limits: &ParseLimits) -> Result<Events, ParseError> {
    returned(|out| array(utf8(body)?, None, limits, None, out))
}

/// The events of a JSON array, pushed onto `out` as they are found valid:
/// when this fails, `out` may hold some of them (its callers drop them).
pub(crate) fn array(
    json: &str,
    owner: Option<&Text>,
    limits: &ParseLimits,
    mut tapes: Option<&mut Tapes>,
    out: &mut Events,
) -> Result<(), ParseError> {
    let syntax = |e: Syntax| ParseError::Json { detail: e.detail(json), errors: Vec::new() };
    let mut scan = Scanner::new(json);
    if scan.skip_ws() != Some(b'[') {
        scan.wrong_type().map_err(syntax)?;
        let error = FieldError::pointer("#".into(), None, "must be a JSON array of CloudEvents");
        return Err(ParseError::Invalid { errors: vec![error], cut: 0 });
    }
    scan.bump();
    let mut found = Found::new();
    let mut members = Members::new();
    let mut prefix = String::with_capacity(8);
    let mut count = 0usize;
    // The first item that ends the request (over `max_event_bytes`, or not
    // JSON to serde_json's stricter reading), reported unless the whole
    // body is malformed or holds too many items. Items after it, or past
    // `max_batch`, are only checked as JSON.
    let mut stop: Option<ParseError> = None;
    let mut next = scan.skip_ws();
    if next == Some(b']') {
        scan.bump();
    } else {
        loop {
            let start = scan.pos();
            let index = count;
            count += 1;
            if stop.is_some() || count > limits.max_batch {
                scan.skip_value().map_err(syntax)?;
            } else {
                prefix.clear();
                prefix.push_str("#/");
                prefix.push_str(itoa::Buffer::new().format(index));
                let over = |len: usize| too_large(prefix.clone(), None, len, limits);
                if next == Some(b'{') {
                    members.clear();
                    scan.key_error = None;
                    // Past the limit `object` stops collecting members.
                    let limit = start.saturating_add(limits.max_event_bytes);
                    scan.object(&mut members, limit, tapes.as_deref_mut()).map_err(syntax)?;
                    let item = scan.since(start);
                    if item.len() > limits.max_event_bytes {
                        stop = Some(over(item.len()));
                    } else if let Some(e) = scan.key_error {
                        stop = Some(syntax(e));
                    } else if build(
                        &members,
                        item,
                        owner,
                        Origin::Json { prefix: &prefix, line: None },
                        &mut found,
                        out,
                    ) {
                        if let Some(tapes) = tapes.as_deref_mut() {
                            tapes.push_event();
                        }
                    }
                } else {
                    scan.skip_value().map_err(syntax)?;
                    let item = scan.since(start);
                    if item.len() > limits.max_event_bytes {
                        stop = Some(over(item.len()));
                    } else if let Err(e) = Scanner::new(item).wrong_type() {
                        // Read again (it is valid JSON) only within the limit:
                        // a string with escapes is unescaped to be judged.
                        stop = Some(syntax(Syntax { at: start + e.at, ..e }));
                    } else {
                        found.start_event();
                        found.offer(|| not_an_event(&prefix, None));
                    }
                }
            }
            match scan.skip_ws() {
                Some(b',') => {
                    scan.bump();
                    next = scan.skip_ws();
                }
                Some(b']') => {
                    scan.bump();
                    break;
                }
                Some(_) => return Err(syntax(Syntax { what: "expected `,` or `]`", at: scan.pos() })),
                None => return Err(syntax(Syntax { what: "EOF while parsing a list", at: scan.pos() })),
            }
        }
    }
    scan.end().map_err(syntax)?;
    if count > limits.max_batch {
        return Err(ParseError::BatchTooLarge { count, max: limits.max_batch });
    }
    if let Some(stop) = stop {
        return Err(stop);
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(found.into_error())
    }
}

fn not_an_event(prefix: &str, line: Option<u64>) -> FieldError {
    FieldError::pointer(prefix.to_string(), line, "must be a JSON object (a CloudEvent)")
}

/// `application/json`: one event object, or an array of them.
pub fn parse_object_or_array(body: &[u8], limits: &ParseLimits) -> Result<Events, ParseError> {
    returned(|out| object_or_array(utf8(body)?, None, limits, None, out))
}

pub(crate) fn object_or_array(
    body: &str,
    owner: Option<&Text>,
    limits: &ParseLimits,
    tapes: Option<&mut Tapes>,
    out: &mut Events,
) -> Result<(), ParseError> {
    match body.bytes().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => array(body, owner, limits, tapes, out),
        _ => single(body, owner, limits, tapes, out),
    }
}

/// `application/x-ndjson`: one event object per line; blank lines (JSON
/// whitespace only: space, tab, CR, LF) skipped; lines numbered from 1
/// counting every line. A line that is not JSON (one of other Unicode white
/// space, such as U+00A0, included) is a `400` listing every such line;
/// otherwise invalid events are a `422`.
pub fn parse_ndjson(body: &[u8], limits: &ParseLimits) -> Result<Events, ParseError> {
    returned(|out| ndjson(utf8(body)?, None, limits, None, out))
}

/// The events of an NDJSON body, pushed onto `out` as [`array`] pushes
/// them.
pub(crate) fn ndjson(
    text: &str,
    owner: Option<&Text>,
    limits: &ParseLimits,
    mut tapes: Option<&mut Tapes>,
    out: &mut Events,
) -> Result<(), ParseError> {
    let mut invalid = Found::new();
    let mut malformed = Vec::new();
    let mut count = 0usize;
    for (index, line) in text.split('\n').enumerate() {
        let number = index as u64 + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
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
        match event_at(line, owner, "#", Some(number), &mut invalid, tapes.as_deref_mut(), out) {
            Ok(true) => {
                if let Some(tapes) = tapes.as_deref_mut() {
                    tapes.push_event();
                }
            }
            Ok(false) => {}
            Err(Shape::Wrong) => {
                invalid.start_event();
                invalid.offer(|| not_an_event("#", Some(number)));
            }
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
    Ok(())
}

/// Whether an NDJSON line holds nothing but JSON whitespace (RFC 8259 §2):
/// such a line is skipped (and still counted in line numbers). Everything
/// that numbers NDJSON lines (the server's rejected log and schema errors,
/// the client's reader) asks this, so they agree with the parser.
pub fn is_blank_line(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn blank(line: &str) -> bool {
    is_blank_line(line.as_bytes())
}

/// The scanner alone, without validation (`reference-parser` feature, for
/// `bench/json-parsers`): reads one event object, an array of them, or
/// (`ndjson`) one per line into the borrowed members `validate` would get
/// (names and string values unescaped, `data` as its text) and returns how
/// many members it read.
#[cfg(feature = "reference-parser")]
pub fn scan_only(json: &str, ndjson: bool) -> Result<usize, String> {
    let objects = |text: &str| -> Result<usize, Syntax> {
        let mut scan = Scanner::new(text);
        let mut members = Members::new();
        let mut count = 0;
        if scan.skip_ws() == Some(b'[') {
            scan.bump();
            loop {
                if scan.skip_ws() != Some(b'{') {
                    return Err(Syntax { what: "expected an object", at: scan.pos() });
                }
                members.clear();
                scan.object(&mut members, usize::MAX, None)?;
                count += members.len();
                match scan.skip_ws() {
                    Some(b',') => scan.bump(),
                    Some(b']') => {
                        scan.bump();
                        break;
                    }
                    _ => return Err(Syntax { what: "expected `,` or `]`", at: scan.pos() }),
                }
            }
        } else if scan.skip_ws() == Some(b'{') {
            scan.object(&mut members, usize::MAX, None)?;
            count += members.len();
        } else {
            return Err(Syntax { what: "expected an object", at: scan.pos() });
        }
        scan.end()?;
        Ok(count)
    };
    let mut count = 0;
    if ndjson {
        for line in json.split('\n').filter(|line| !blank(line)) {
            count += objects(line).map_err(|e| e.detail(line))?;
        }
    } else {
        count = objects(json).map_err(|e| e.detail(json))?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tokens of an event object, with a gap for whitespace between
    /// each two (inside `data` too).
    const TOKENS: [&str; 30] = [
        "{",
        r#""specversion""#,
        ":",
        r#""1.0""#,
        ",",
        r#""id""#,
        ":",
        r#""1""#,
        ",",
        r#""source""#,
        ":",
        r#""/s""#,
        ",",
        r#""type""#,
        ":",
        r#""t""#,
        ",",
        r#""data""#,
        ":",
        "{",
        r#""a""#,
        ":",
        "[",
        "1",
        ",",
        r#""x\ny""#,
        "]",
        "}",
        ",\"e\":true",
        "}",
    ];

    /// `raw` is kept exactly when the event's text has no CR or LF: a line
    /// break, a tab or a space in every gap between tokens (inside `data`
    /// too), around the object, in a single body, an NDJSON line and a
    /// batch, with `data` read onto a schema tape and skipped.
    #[test]
    fn raw_is_kept_exactly_when_the_event_is_one_line_at_every_gap() {
        let limits = ParseLimits::default();
        let mut cases = 0;
        for gap in 0..=TOKENS.len() {
            for ws in ["\n", "\r", "\r\n", "\t", " ", ""] {
                let mut text = String::new();
                for (i, token) in TOKENS.iter().enumerate() {
                    if i == gap {
                        text.push_str(ws);
                    }
                    text.push_str(token);
                }
                if gap == TOKENS.len() {
                    text.push_str(ws);
                }
                let object = text.trim_matches(|c| c == '\n' || c == '\r' || c == '\t' || c == ' ');
                let one_line = !object.contains(['\n', '\r']);
                for batch in [false, true] {
                    let body = if batch { format!("[{text},{text}]") } else { text.clone() };
                    let owner = Text::from(body.clone());
                    for with_tapes in [false, true] {
                        let mut tapes = Tapes::new();
                        let tapes = with_tapes.then_some(&mut tapes);
                        let events = returned(|out| {
                            if batch {
                                array(&owner, Some(&owner), &limits, tapes, out)
                            } else {
                                single(&owner, Some(&owner), &limits, tapes, out)
                            }
                        });
                        let events = events.unwrap_or_else(|e| panic!("{body:?}: {e}"));
                        for event in &events {
                            let raw = event.raw().map(|raw| String::from_utf8_lossy(raw).into_owned());
                            assert_eq!(raw.as_deref(), one_line.then_some(object), "{body:?} tapes {with_tapes}");
                        }
                        cases += 1;
                    }
                }
                if !text.contains('\n') {
                    let owner = Text::from(text.clone());
                    let events = returned(|out| ndjson(&owner, Some(&owner), &limits, None, out))
                        .unwrap_or_else(|e| panic!("{text:?}: {e}"));
                    let raw = events.first().and_then(|e| e.raw()).map(|raw| String::from_utf8_lossy(raw).into_owned());
                    assert_eq!(raw.as_deref(), one_line.then_some(object), "{text:?} NDJSON");
                }
            }
        }
        assert_eq!(cases, 31 * 6 * 4);
    }
}
