//! The CloudEvents 1.0 rules for each attribute (spec §3.1 "Context
//! Attributes", the JSON format §2-§3, SPEC §3.1). Every failing attribute is
//! found, not only the first, each located where it came from: a JSON
//! Pointer into the body (plus the NDJSON line) or the `ce-*` header; the
//! request's first 100 are built and reported, the rest counted
//! (`error::Found`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;

use super::error::Found;
use super::timestamp::is_rfc3339;
use super::{DataRef, Event, Events, ExtensionValue, Parts, Text};
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

/// An attribute value as received, parsed once: strings borrowed from the
/// body unless they had escapes.
#[derive(Debug)]
pub(crate) enum Value<'a> {
    Null,
    Bool(bool),
    /// A JSON number that is an integer within `i64`.
    Int(i64),
    /// Any other JSON number.
    Number,
    Str(Cow<'a, str>),
    /// A JSON string without escapes, borrowed from the body, whose every
    /// byte the scanner saw was printable ASCII: a CloudEvents `String`.
    Printable(&'a str),
    /// A JSON object or array (only `data` may be one).
    Compound,
    /// The `data` member of a structured event, or a binary-mode body
    /// turned into JSON: its text as sent, known to be one JSON value.
    Raw(&'a str),
    /// A (percent-decoded) `ce-*` header value: always a string.
    Header(String),
    /// A JSON string with an unpaired surrogate escape (`"\ud800"`), which
    /// no Rust string can hold and the CloudEvents type system forbids.
    UnpairedSurrogate,
}

/// The detail for a string that breaks the CloudEvents `String` type.
pub(crate) const FORBIDDEN_CHARACTERS: &str = "must be a CloudEvents String: no control characters \
     (U+0000-U+001F, U+007F-U+009F), noncharacters or unpaired surrogates";

impl Value<'_> {
    /// The text of a JSON string value (escapes undone), unchecked.
    pub(crate) fn string(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Printable(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a string; `Ok(None)` for JSON null (the attribute is
    /// absent, JSON format §2.4).
    /// A string that breaks the CloudEvents `String` type is
    /// `Err(FORBIDDEN_CHARACTERS)`.
    fn str(&self) -> Result<Option<&str>, &'static str> {
        match self {
            Value::Null => Ok(None),
            Value::Str(s) => allowed(s).map(Some),
            Value::Printable(s) => Ok(Some(s)),
            Value::Header(s) => allowed(s).map(Some),
            Value::UnpairedSurrogate => Err(FORBIDDEN_CHARACTERS),
            _ => Err("must be a string"),
        }
    }
}

/// `s` if it is a CloudEvents `String`.
fn allowed(s: &str) -> Result<&str, &'static str> {
    if is_cloudevents_string(s) {
        Ok(s)
    } else {
        Err(FORBIDDEN_CHARACTERS)
    }
}

/// `detail` for a value that is no string at all; the forbidden-characters
/// detail when it is a string that holds what CloudEvents excludes.
fn unless_forbidden(e: &'static str, detail: &'static str) -> &'static str {
    if e == FORBIDDEN_CHARACTERS {
        e
    } else {
        detail
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Eight bytes (a chunk of exactly 8) as one little-endian word.
#[inline]
fn word(chunk: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(chunk);
    u64::from_le_bytes(word)
}

/// Whether every byte is printable ASCII (0x20..=0x7E), eight bytes at a
/// time: a byte below 0x20 borrows through its high bit when 0x20 is
/// subtracted; a byte of 0x7F or more has its high bit set after adding 1
/// (a carry out of 0xFF comes from a byte that had it already).
/// A string of 8 bytes or more ends with one more word, the last 8 bytes
/// (overlapping the words before), instead of a loop over what is left.
fn is_printable_ascii(bytes: &[u8]) -> bool {
    let printable = |chunk: &[u8]| {
        let x = word(chunk);
        let below = x.wrapping_sub(ONES * 0x20) & !x;
        let above = x | x.wrapping_add(ONES);
        (below | above) & HIGH == 0
    };
    let Some(last) = bytes.len().checked_sub(8).and_then(|at| bytes.get(at..)) else {
        return bytes.iter().all(|&b| b.wrapping_sub(0x20) < 0x5f);
    };
    bytes.chunks_exact(8).all(printable) && printable(last)
}

/// CloudEvents 1.0 §"Type System", `String`: no control characters
/// (U+0000-U+001F, U+007F-U+009F), no noncharacters (U+FDD0-U+FDEF and the
/// last two code points of every plane, U+xFFFE and U+xFFFF); unpaired
/// surrogates cannot occur in a `str`. Printable ASCII, the common case, is
/// checked first in one branch-free pass.
pub(crate) fn is_cloudevents_string(s: &str) -> bool {
    if is_printable_ascii(s.as_bytes()) {
        return true;
    }
    s.chars().all(|c| {
        let c = u32::from(c);
        !(c < 0x20 || (0x7f..=0x9f).contains(&c) || (0xfdd0..=0xfdef).contains(&c) || c & 0xfffe == 0xfffe)
    })
}

/// Turns a validated attribute into a [`Text`]: a zero-copy slice of `owner`
/// when the string lies in it (it was borrowed from the body), else a copy.
pub(crate) fn share(owner: Option<&Text>, s: &str) -> Text {
    match owner {
        Some(owner) if contains(owner, s) => owner.slice_ref(s),
        _ => Text::from(s),
    }
}

fn contains(owner: &str, s: &str) -> bool {
    let start = owner.as_ptr() as usize;
    let at = s.as_ptr() as usize;
    at >= start && at + s.len() <= start + owner.len()
}

/// Above this many attributes, repeated extension names are found with a
/// hash set rather than by looking back (which would be quadratic).
const LINEAR_DUPLICATE_SCAN: usize = 32;

/// The attributes CloudEvents names (and `data`, `data_base64`): each is
/// told apart from every other name by one `match`, and its repetition by
/// one bit (`Seen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Specversion,
    Id,
    Source,
    Type,
    Subject,
    Datacontenttype,
    Dataschema,
    Time,
    Data,
    DataBase64,
}

impl Known {
    fn of(name: &str) -> Option<Known> {
        Some(match name {
            "specversion" => Known::Specversion,
            "id" => Known::Id,
            "source" => Known::Source,
            "type" => Known::Type,
            "subject" => Known::Subject,
            "datacontenttype" => Known::Datacontenttype,
            "dataschema" => Known::Dataschema,
            "time" => Known::Time,
            "data" => Known::Data,
            "data_base64" => Known::DataBase64,
            _ => return None,
        })
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// The names of one event's attributes met so far: a bit per known
/// attribute; an extension name (which never equals a known one) is looked
/// for among the names before it, or in a hash set when there are many.
struct Seen<'n> {
    known: u16,
    extensions: Option<HashSet<&'n str>>,
}

impl<'n> Seen<'n> {
    fn new(count: usize) -> Seen<'n> {
        Seen { known: 0, extensions: (count > LINEAR_DUPLICATE_SCAN).then(HashSet::new) }
    }

    /// Whether the name of `attrs[i]` (of kind `known`) came before it.
    fn repeated(&mut self, attrs: &'n [(Cow<'_, str>, Value<'_>)], i: usize, known: Option<Known>) -> bool {
        match known {
            Some(known) => {
                let repeated = self.known & known.bit() != 0;
                self.known |= known.bit();
                repeated
            }
            None => {
                let Some((name, _)) = attrs.get(i) else { return false };
                match self.extensions.as_mut() {
                    Some(names) => !names.insert(name),
                    None => attrs.get(..i).unwrap_or_default().iter().any(|(earlier, _)| earlier == name),
                }
            }
        }
    }

    /// Whether the known attribute was met at all (valid or not).
    fn has(&self, known: Known) -> bool {
        self.known & known.bit() != 0
    }
}

/// Builds an event from its attributes, offering one [`FieldError`] per
/// failing attribute to `found` (which builds it only within its cap; the
/// caller marked where this event's errors start). Returns the event only
/// if nothing failed. String attributes are slices of `owner` where they
/// were borrowed from it.
pub(crate) fn build_event(
    attrs: &[(Cow<'_, str>, Value<'_>)],
    owner: Option<&Text>,
    origin: Origin<'_>,
    found: &mut Found,
) -> Option<Event> {
    let mut events = Events::new();
    build_event_into(attrs, owner, origin, found, None, &mut events);
    events.pop()
}

/// [`build_event`] that pushes the event (with `raw`) onto `out` where it
/// is built, instead of returning it: an `Event` is some 300 bytes, and
/// each function it is returned through copied it. Whether it was valid.
pub(crate) fn build_event_into(
    attrs: &[(Cow<'_, str>, Value<'_>)],
    owner: Option<&Text>,
    origin: Origin<'_>,
    found: &mut Found,
    raw: Option<&str>,
    out: &mut Events,
) -> bool {
    let errors_before = found.total();
    let mut seen = Seen::new(attrs.len());
    let mut specversion = None;
    let (mut id, mut source, mut ty) = (None, None, None);
    let (mut datacontenttype, mut dataschema, mut subject, mut time) = (None, None, None, None);
    let mut data = None;
    let mut data_base64 = None;
    let mut extensions = None;

    for (i, (name, value)) in attrs.iter().enumerate() {
        let known = Known::of(name);
        if seen.repeated(attrs, i, known) {
            found.offer(|| origin.error(name, "attribute appears more than once"));
            continue;
        }
        let mut fail = |detail: &str| found.offer(|| origin.error(name, detail));
        match known {
            // Reported after the other attributes, as when it is missing.
            Some(Known::Specversion) => {
                specversion = Some(match value.str() {
                    Ok(Some("1.0")) => Ok(()),
                    Ok(Some(_)) => Err("must be \"1.0\""),
                    Ok(None) => Err("is required and must be \"1.0\""),
                    Err(e) => Err(e),
                })
            }
            Some(attribute @ (Known::Id | Known::Source | Known::Type | Known::Subject)) => match value.str() {
                Ok(Some("")) => fail("must be a non-empty string"),
                Ok(None) if attribute != Known::Subject => fail("must be a non-empty string"),
                Ok(None) => {}
                Ok(Some(v)) => {
                    if attribute == Known::Source && !is_uri_reference(v) {
                        fail("must be a URI-reference (no spaces or control characters)");
                    }
                    let v = Some(v);
                    match attribute {
                        Known::Id => id = v,
                        Known::Source => source = v,
                        Known::Type => ty = v,
                        _ => subject = v,
                    }
                }
                Err(e) => fail(unless_forbidden(e, "must be a non-empty string")),
            },
            Some(Known::Datacontenttype) => match value.str() {
                Ok(Some(v)) if !is_media_type(v) => fail("must be a media type (RFC 2046), e.g. application/json"),
                Ok(v) => datacontenttype = v,
                Err(e) => fail(e),
            },
            Some(Known::Dataschema) => match value.str() {
                Ok(Some(v)) if !is_absolute_uri(v) => fail("must be an absolute URI"),
                Ok(v) => dataschema = v,
                Err(e) => fail(e),
            },
            Some(Known::Time) => match value.str() {
                Ok(Some(v)) if !is_rfc3339(v) => fail("must be an RFC 3339 timestamp, e.g. 2026-11-29T06:00:00Z"),
                Ok(v) => time = v,
                Err(e) => fail(unless_forbidden(e, "must be an RFC 3339 timestamp string")),
            },
            Some(Known::Data) => match value {
                Value::Null => {}
                Value::Raw(raw) if raw.trim_start().starts_with('n') => {}
                Value::Raw(raw) => data = Some(*raw),
                _ => fail("is the body in binary mode, not a header"),
            },
            Some(Known::DataBase64) => match value.str() {
                Ok(Some(v)) if base64::engine::general_purpose::STANDARD.decode(v).is_err() => {
                    fail("must be valid base64 (RFC 4648 §4)")
                }
                Ok(v) => data_base64 = v,
                Err(e) => fail(e),
            },
            None => {
                let ext = &**name;
                if !is_extension_name(ext) {
                    fail("extension attribute names must be lowercase ASCII letters and digits");
                } else {
                    match extension_value(value, owner) {
                        Ok(Some(v)) => {
                            extensions.get_or_insert_with(BTreeMap::new).insert(ext.to_string(), v);
                        }
                        Ok(None) => {}
                        Err(e) => fail(e),
                    }
                }
            }
        }
    }

    if let Err(detail) = specversion.unwrap_or(Err("is required and must be \"1.0\"")) {
        found.offer(|| origin.error("specversion", detail));
    }
    for (name, known, value) in [("id", Known::Id, &id), ("source", Known::Source, &source), ("type", Known::Type, &ty)]
    {
        if value.is_none() && !seen.has(known) {
            found.offer(|| origin.error(name, "is required and must be a non-empty string"));
        }
    }
    if data.is_some() && data_base64.is_some() {
        found.offer(|| origin.error("data_base64", "data and data_base64 are mutually exclusive"));
    }
    let (Some(id), Some(source), Some(ty)) = (id, source, ty) else { return false };
    if found.total() > errors_before {
        return false;
    }
    let data = data.map(DataRef::Json).or(data_base64.map(DataRef::Base64));
    let parts = Parts { id, source, ty, datacontenttype, dataschema, subject, time, extensions, data, raw };
    out.push(Event::from_parts(owner, parts));
    true
}

/// CloudEvents type system for extensions: String, Integer (32-bit), Boolean;
/// URI, URI-reference, Timestamp and Binary travel as strings.
fn extension_value(value: &Value<'_>, owner: Option<&Text>) -> Result<Option<ExtensionValue>, &'static str> {
    const BAD: &str = "must be a string, a 32-bit integer or a boolean";
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(ExtensionValue::Boolean(*b))),
        Value::Int(n) => i32::try_from(*n).map(|n| Some(ExtensionValue::Integer(n))).map_err(|_| BAD),
        Value::Str(s) => Ok(Some(ExtensionValue::String(share(owner, allowed(s)?)))),
        Value::Printable(s) => Ok(Some(ExtensionValue::String(share(owner, s)))),
        Value::Header(s) => Ok(Some(ExtensionValue::String(Text::from(allowed(s)?)))),
        Value::UnpairedSurrogate => Err(FORBIDDEN_CHARACTERS),
        Value::Number | Value::Compound | Value::Raw(_) => Err(BAD),
    }
}

/// CloudEvents §3.1.1: extension names are lowercase letters and digits.
pub(crate) fn is_extension_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A URI-reference (RFC 3986 §4.1) has no whitespace or control characters:
/// no byte at or below 0x20, none of 0x7F. Eight bytes at a time: a byte
/// below 0x21 borrows through its high bit when 0x21 is subtracted (a byte
/// of 0x80 or more has its own high bit masked off, and a borrow only runs
/// upwards from a real one), a byte of 0x7F is zero after XOR with 0x7F; a
/// string of 8 bytes or more ends with one overlapping word, as in
/// `is_printable_ascii`.
fn is_uri_reference(s: &str) -> bool {
    let clean = |chunk: &[u8]| {
        let x = word(chunk);
        let below = x.wrapping_sub(ONES * 0x21) & !x;
        let del = x ^ (ONES * 0x7f);
        (below | (del.wrapping_sub(ONES) & !del)) & HIGH == 0
    };
    let bytes = s.as_bytes();
    let Some(last) = bytes.len().checked_sub(8).and_then(|at| bytes.get(at..)) else {
        return !bytes.iter().any(|&b| b <= b' ' || b == 0x7f);
    };
    bytes.chunks_exact(8).all(clean) && clean(last)
}

/// RFC 3986 §3.1: `scheme ":" ...` with `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_absolute_uri(s: &str) -> bool {
    let Some(colon) = s.bytes().position(|b| b == b':') else { return false };
    let mut scheme = s.as_bytes().iter().take(colon);
    scheme.next().is_some_and(u8::is_ascii_alphabetic)
        && scheme.all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && is_uri_reference(s)
}

/// RFC 2045 §5.1 / RFC 9110 §8.3.1: `type "/" subtype *( OWS ";" OWS parameter )`.
/// Bytes are searched one by one: a `str` search for a `char` (`split`,
/// `split_once`) costs some 150 instructions more on a value this short.
///
/// The common form, `type/subtype` of token bytes and nothing else, is
/// decided in one pass over the bytes; anything else (parameters,
/// whitespace, a second `/`, no `/`) by the searches below it.
pub(crate) fn is_media_type(s: &str) -> bool {
    // The value most events carry, whole, is one comparison of 16 bytes
    // (the byte loop below costs some 70 instructions on it).
    s == "application/json" || is_media_type_by_bytes(s)
}

/// [`is_media_type`] for any value.
fn is_media_type_by_bytes(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut slash = None;
    for (i, &b) in bytes.iter().enumerate() {
        if TCHAR[usize::from(b)] {
            continue;
        }
        if b == b'/' && slash.is_none() {
            slash = Some(i);
            continue;
        }
        return is_media_type_with_parameters(s);
    }
    // Every byte a token byte but one `/`: no `;` to cut at, nothing to trim.
    slash.is_some_and(|at| at > 0 && at + 1 < bytes.len())
}

/// [`is_media_type`] for any other value: the essence is cut at the first
/// `;` and trimmed of white space, then split at its first `/`.
fn is_media_type_with_parameters(s: &str) -> bool {
    let end = s.bytes().position(|b| b == b';').unwrap_or(s.len());
    let essence = s.get(..end).unwrap_or_default().trim().as_bytes();
    match essence.iter().position(|&b| b == b'/') {
        Some(slash) => is_token(essence.get(..slash)) && is_token(essence.get(slash + 1..)),
        None => false,
    }
}

/// RFC 9110 §5.6.2 `tchar`, one entry per byte (built at compile time: a
/// lookup per byte instead of a search of the 15 symbols).
const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        b += 1;
    }
    table
};

/// RFC 9110 §5.6.2 token.
fn is_token(s: Option<&[u8]>) -> bool {
    s.is_some_and(|s| !s.is_empty() && s.iter().all(|&b| TCHAR[usize::from(b)]))
}

/// RFC 6901 §3: `~` is written `~0` and `/` is written `~1`.
fn escape_pointer(name: &str) -> Cow<'_, str> {
    if name.contains(['~', '/']) {
        Cow::Owned(name.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy as _;

    use super::*;

    #[test]
    fn printable_ascii_check_agrees_with_the_byte_rule_at_every_position() {
        for len in [1, 7, 8, 9, 16, 17, 24] {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(is_printable_ascii(&bytes), (0x20..=0x7e).contains(&b), "byte {b:#x} at {at} of {len}");
                }
            }
        }
        // A carry out of one byte must not hide another.
        assert!(!is_printable_ascii(&[0xff, 0x7f, b'a', b'a', b'a', b'a', b'a', b'a']));
        assert!(!is_printable_ascii(&[0xff, 0x1f, b'a', b'a', b'a', b'a', b'a', b'a']));
    }

    #[test]
    fn the_tchar_table_is_the_token_rule_for_every_byte() {
        for b in 0..=255u8 {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(TCHAR[usize::from(b)], tchar, "byte {b:#x}");
            assert_eq!(is_token(Some(&[b'a', b, b'z'])), tchar, "byte {b:#x}");
        }
        assert!(!is_token(Some(b"")));
        assert!(!is_token(None));
    }

    #[test]
    fn uri_reference_check_agrees_with_the_byte_rule_at_every_position() {
        for len in [1, 7, 8, 9, 15, 16, 17, 24, 31] {
            for at in 0..len {
                for b in 0..=255u8 {
                    for fill in [b'a', 0x80, 0xff, b'~'] {
                        let mut bytes = vec![fill; len];
                        bytes[at] = b;
                        let Ok(s) = std::str::from_utf8(&bytes) else { continue };
                        let rule = !s.bytes().any(|b| b <= b' ' || b == 0x7f);
                        assert_eq!(is_uri_reference(s), rule, "byte {b:#x} at {at} of {len}, fill {fill:#x}");
                    }
                }
            }
        }
        // Non-ASCII (UTF-8 of 2-4 bytes) around a space and a DEL.
        for s in ["é/a b", "😀😀😀😀 ", "\u{7f}😀😀😀😀", "/ü/ü/ü/ü/ü", "\u{a0}\u{a0}\u{a0}\u{a0}\u{a0}"]
        {
            assert_eq!(is_uri_reference(s), !s.bytes().any(|b| b <= b' ' || b == 0x7f), "{s:?}");
        }
    }

    #[test]
    fn media_types_of_the_common_form_and_others() {
        for (s, valid) in [
            ("application/json", true),
            ("text/plain;charset=utf-8", true),
            ("a/b", true),
            ("/json", false),
            ("application/", false),
            ("application", false),
            ("application/json/x", false),
            ("application//json", false),
            (" application/json", true),
            ("\u{a0}application/json\u{a0}", true),
            ("application/json ", true),
            ("appli cation/json", false),
            ("", false),
            ("/", false),
        ] {
            assert_eq!(is_media_type(s), valid, "{s:?}");
        }
    }

    /// `application/json` and every value one byte away from it (each
    /// byte replaced by others, removed, one put in): the comparison first
    /// decides as the byte loop does.
    #[test]
    fn the_usual_media_type_is_decided_as_the_byte_loop_decides() {
        let usual = "application/json";
        let mut values = vec![usual.to_string()];
        for at in 0..=usual.len() {
            for c in ['a', 'N', '/', ';', ' ', '\t', '\u{e9}', '"', '+', '.'] {
                let mut value = usual.to_string();
                if at < usual.len() {
                    value.replace_range(at..at + 1, c.encode_utf8(&mut [0; 4]));
                    values.push(value.clone());
                    value = usual.to_string();
                    value.remove(at);
                    values.push(value.clone());
                    value = usual.to_string();
                }
                value.insert(at, c);
                values.push(value);
            }
        }
        for value in &values {
            assert_eq!(is_media_type(value), is_media_type_by_bytes(value), "{value:?}");
        }
        assert!(is_media_type(usual));
        assert!(!is_media_type("application json"));
        assert_eq!(values.len(), 1 + 16 * 10 * 2 + 17 * 10);
    }

    proptest::proptest! {
        /// The byte searches decide as the `str` searches they replaced.
        #[test]
        fn media_type_and_absolute_uri_agree_with_the_str_searches(s in "[a-z/;: +.\\-\t\u{a0}\u{e9}!#~=\"]{0,24}") {
            let media_type = match s.split(';').next().unwrap_or("").trim().split_once('/') {
                Some((ty, sub)) => is_token(Some(ty.as_bytes())) && is_token(Some(sub.as_bytes())),
                None => false,
            };
            proptest::prop_assert_eq!(is_media_type(&s), media_type, "{:?}", s);
            let absolute = s.split_once(':').is_some_and(|(scheme, _)| {
                let mut bytes = scheme.bytes();
                bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
                    && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            }) && is_uri_reference(&s);
            proptest::prop_assert_eq!(is_absolute_uri(&s), absolute, "{:?}", s);
        }
    }

    /// The names `Seen` and the pairwise scan it replaced call repeated.
    fn repeated_both_ways(names: &[String]) -> (Vec<bool>, Vec<bool>) {
        let attrs: Vec<(Cow<'_, str>, Value<'_>)> =
            names.iter().map(|name| (Cow::Borrowed(name.as_str()), Value::Null)).collect();
        let mut seen = Seen::new(attrs.len());
        let new = (0..attrs.len()).map(|i| seen.repeated(&attrs, i, Known::of(&attrs[i].0))).collect();
        let old = (0..attrs.len()).map(|i| attrs[..i].iter().any(|(earlier, _)| earlier == &attrs[i].0)).collect();
        (new, old)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// A bit per known attribute and a scan of extension names only find
        /// exactly the repeated names the scan of every earlier name found,
        /// on lists of known names, extension names, near misses and
        /// anything, short (the scan) and past `LINEAR_DUPLICATE_SCAN` (the
        /// hash set).
        #[test]
        fn seen_finds_the_repeated_names_the_pairwise_scan_found(
            names in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "specversion", "id", "source", "type", "subject", "datacontenttype", "dataschema", "time",
                        "data", "data_base64", "Id", "ids", "i", "", "dat", "database64", "ext", "ext1", "x",
                    ]).prop_map(str::to_string),
                    "[a-z_]{0,6}",
                ],
                0..48,
            )
        ) {
            let (new, old) = repeated_both_ways(&names);
            proptest::prop_assert_eq!(new, old, "{:?}", names);
        }
    }

    #[test]
    fn seen_finds_repeated_known_and_extension_names() {
        let names = ["id", "type", "ext", "id", "data", "ext", "type", "id", "data_base64", "data"];
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let (new, _) = repeated_both_ways(&names);
        assert_eq!(new, [false, false, false, true, false, true, true, true, false, true]);
        // Past the scan's limit, with the hash set.
        let many: Vec<String> = (0..40).map(|i| format!("e{}", i % 35)).chain(["id".into(), "id".into()]).collect();
        let (new, old) = repeated_both_ways(&many);
        assert_eq!(new.iter().filter(|&&r| r).count(), 6);
        assert_eq!(new, old);
    }

    #[test]
    fn cloudevents_string_rule_at_every_boundary() {
        let allowed = |c: char| is_cloudevents_string(&format!("ab{c}cdefghij"));
        for c in ['\u{0}', '\u{1f}', '\u{7f}', '\u{80}', '\u{9f}', '\u{fdd0}', '\u{fdef}', '\u{fffe}', '\u{ffff}'] {
            assert!(!allowed(c), "{:#x}", u32::from(c));
        }
        for plane in 1..=16u32 {
            for last in [0xfffe, 0xffff] {
                let c = char::from_u32(plane << 16 | last).unwrap();
                assert!(!allowed(c), "{:#x}", u32::from(c));
            }
            let c = char::from_u32(plane << 16 | 0xfffd).unwrap();
            assert!(allowed(c), "{:#x}", u32::from(c));
        }
        for c in [' ', '~', '\u{a0}', '\u{fdcf}', '\u{fdf0}', '\u{fffd}', '\u{10000}', 'é', '😀'] {
            assert!(allowed(c), "{:#x}", u32::from(c));
        }
    }
}
