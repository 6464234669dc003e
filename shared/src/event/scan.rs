//! A single-pass JSON scanner for CloudEvents structured bodies.
//!
//! It reads the members of an event object straight into the attribute list
//! that `validate::build_event` checks: member names and string values are
//! borrowed from the body unless they hold escapes, `data` and object or
//! array values are validated as JSON and handed through as their text,
//! never built. It accepts exactly what serde_json's borrowed parse of the
//! same body (the path this replaced) accepted:
//!
//! - the JSON grammar of RFC 8259: whitespace is space, tab, LF and CR; no
//!   control character inside a string; only the escapes `\" \\ \/ \b \f \n
//!   \r \t \uXXXX`; numbers `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`;
//! - nesting without a depth limit (serde_json skips `data` and nested
//!   values without one, iteratively): containers are tracked on a bit
//!   stack, never by recursion, so no depth can overflow the stack;
//! - an unpaired surrogate escape (`"\ud800"`) is a syntax error in a member
//!   name or in a string that is the whole body, an invalid attribute in an
//!   attribute's string value (`Value::UnpairedSurrogate`, a `422` at its
//!   pointer), and nobody's business inside `data` or a nested value;
//! - a number that is the whole body and overflows `f64` is a syntax error.

use std::borrow::Cow;
use std::fmt;

use smallvec::SmallVec;

use super::validate::Value;
use crate::schema::Tapes;

/// The members of one event object in order, duplicates kept for validation
/// to report. Twelve fit without an allocation.
pub(crate) type Members<'a> = SmallVec<[(Cow<'a, str>, Value<'a>); 12]>;

/// Why a body is not JSON: what was wrong, at which byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax {
    pub what: &'static str,
    pub at: usize,
}

impl Syntax {
    /// The detail of the error: what was wrong, at which line and column
    /// (both from 1, the column counted in bytes) of `text`.
    pub(crate) fn detail(&self, text: &str) -> String {
        let before = text.as_bytes().get(..self.at).unwrap_or(text.as_bytes());
        let line = 1 + memchr::memchr_iter(b'\n', before).count();
        let column = 1 + before.len() - memchr::memrchr(b'\n', before).map_or(0, |nl| nl + 1);
        format!("{} at line {line} column {column}", self.what)
    }
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

const EOF_VALUE: &str = "EOF while parsing a value";
const EOF_OBJECT: &str = "EOF while parsing an object";
const EOF_LIST: &str = "EOF while parsing a list";
const EOF_STRING: &str = "EOF while parsing a string";
const EXPECTED_VALUE: &str = "expected value";
const EXPECTED_COLON: &str = "expected `:`";
const OBJECT_COMMA_OR_END: &str = "expected `,` or `}`";
const LIST_COMMA_OR_END: &str = "expected `,` or `]`";
const KEY_MUST_BE_STRING: &str = "key must be a string";
const CONTROL_CHARACTER: &str = "control character (\\u0000-\\u001F) found while parsing a string";
const INVALID_ESCAPE: &str = "invalid escape";
const INVALID_NUMBER: &str = "invalid number";
const OUT_OF_RANGE: &str = "number out of range";
const EXPECTED_IDENT: &str = "expected ident";
const LONE_SURROGATE: &str = "unpaired surrogate in hex escape";
pub(crate) const TRAILING: &str = "trailing characters";

/// A cursor over one JSON text.
pub(crate) struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// The first member name of the last object read that held an unpaired
    /// surrogate: a syntax error, which a batch reports only if no earlier
    /// item ends the request first (see `structured::array`).
    pub key_error: Option<Syntax>,
    /// Whether [`Scanner::object`] unescaped a member name or an attribute's
    /// string: only then can a member it read own a `String` (see
    /// `structured::event_at`, which skips dropping the members otherwise).
    pub unescaped: bool,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` that is zero; the lowest one set is
/// exact (a borrow only runs upwards from a real zero byte).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGH
}

/// The high bit of each byte that ends a run of plain string content: `"`,
/// `\` or a control character below 0x20 (exact for the lowest byte).
#[inline]
fn string_stops(x: u64) -> u64 {
    zero_bytes(x ^ (ONES * u64::from(b'"'))) | zero_bytes(x ^ (ONES * u64::from(b'\\'))) | zero_bytes(x & (ONES * 0xe0))
}

fn hex_digit(b: u8) -> Option<u16> {
    match b {
        b'0'..=b'9' => Some(u16::from(b - b'0')),
        b'a'..=b'f' => Some(u16::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u16::from(b - b'A' + 10)),
        _ => None,
    }
}

fn hex4(bytes: &[u8]) -> Option<u16> {
    match bytes {
        [a, b, c, d, ..] => Some(hex_digit(*a)? << 12 | hex_digit(*b)? << 8 | hex_digit(*c)? << 4 | hex_digit(*d)?),
        _ => None,
    }
}

/// The content of a JSON string (between its quotes, escapes checked by
/// [`Scanner::string`]) with its escapes undone; `None` if it holds an
/// unpaired surrogate escape, which no Rust string can hold.
pub(crate) fn unescape(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(at) = memchr::memchr(b'\\', bytes.get(i..)?) {
        out.push_str(raw.get(i..i + at)?);
        i += at + 1;
        let escape = *bytes.get(i)?;
        i += 1;
        let c = match escape {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let n = hex4(bytes.get(i..)?)?;
                i += 4;
                match n {
                    0xd800..=0xdbff => {
                        // A leading surrogate must be followed by `\u` and a trailing one.
                        let rest = bytes.get(i..)?;
                        if !rest.starts_with(b"\\u") {
                            return None;
                        }
                        let low = hex4(rest.get(2..)?)?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return None;
                        }
                        i += 6;
                        char::from_u32(0x10000 + ((u32::from(n) - 0xd800) << 10 | (u32::from(low) - 0xdc00)))?
                    }
                    0xdc00..=0xdfff => return None,
                    _ => char::from_u32(u32::from(n))?,
                }
            }
            _ => return None,
        };
        out.push(c);
    }
    out.push_str(raw.get(i..)?);
    Some(out)
}

/// A JSON number as serde_json types it: an integer without fraction or
/// exponent within `i64` (`-0` is a float), anything else a float.
pub(crate) fn number_value(json: &str) -> Value<'_> {
    if json.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return Value::Number;
    }
    match json.parse::<i64>() {
        Ok(n) if n < 0 || !json.starts_with('-') => Value::Int(n),
        _ => Value::Number,
    }
}

/// Open containers, one bit each (set: an object): the first 64 in a word
/// of their own, deeper ones in a list that is allocated only past 64.
struct Nesting {
    depth: usize,
    inner: u64,
    outer: Vec<u64>,
}

impl Nesting {
    #[inline]
    fn new() -> Nesting {
        Nesting { depth: 0, inner: 0, outer: Vec::new() }
    }

    #[inline]
    fn push(&mut self, object: bool) {
        let bit = self.depth % 64;
        let word = match (self.depth / 64).checked_sub(1) {
            None => &mut self.inner,
            Some(at) => {
                if at == self.outer.len() {
                    self.outer.push(0);
                }
                match self.outer.get_mut(at) {
                    Some(word) => word,
                    None => return,
                }
            }
        };
        *word = (*word & !(1 << bit)) | (u64::from(object) << bit);
        self.depth += 1;
    }

    /// Whether the innermost open container is an object; `None` at the top.
    #[inline]
    fn top(&self) -> Option<bool> {
        let at = self.depth.checked_sub(1)?;
        let word = match (at / 64).checked_sub(1) {
            None => self.inner,
            Some(outer) => *self.outer.get(outer)?,
        };
        Some(word >> (at % 64) & 1 == 1)
    }

    #[inline]
    fn pop(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Scanner<'a> {
        Scanner { text, bytes: text.as_bytes(), pos: 0, key_error: None, unescaped: false }
    }

    /// The byte offset of the next byte to read.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The text from `start` to the current position.
    pub(crate) fn since(&self, start: usize) -> &'a str {
        self.text.get(start..self.pos).unwrap_or_default()
    }

    fn fail<T>(&self, what: &'static str) -> Result<T, Syntax> {
        Err(Syntax { what, at: self.pos })
    }

    /// Skips whitespace; the next byte, which is not consumed.
    #[inline]
    pub(crate) fn skip_ws(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes.get(self.pos) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    /// Consumes one byte known to be there (the one `skip_ws` returned).
    #[inline]
    pub(crate) fn bump(&mut self) {
        self.pos += 1;
    }

    /// Whitespace to the end of the text, or a syntax error.
    pub(crate) fn end(&mut self) -> Result<(), Syntax> {
        match self.skip_ws() {
            None => Ok(()),
            Some(_) => self.fail(TRAILING),
        }
    }

    /// Reads a string whose opening quote was consumed, checking control
    /// characters and escapes; its content and whether it holds escapes.
    /// Out of line: inside `data` and nested values. An event's member
    /// names and attribute values are read by `read_string` inlined.
    #[inline(never)]
    fn string(&mut self) -> Result<(&'a str, bool), Syntax> {
        self.read_string::<false>().map(|(content, escaped, _)| (content, escaped))
    }

    /// [`Scanner::string`], and with `PRINTABLE` whether every byte of the
    /// content (as written, escapes not undone) is printable ASCII,
    /// 0x20..=0x7E: found on the words the read looks at anyway. (Without
    /// `PRINTABLE`, the third value is meaningless.)
    #[inline(always)]
    fn read_string<const PRINTABLE: bool>(&mut self) -> Result<(&'a str, bool, bool), Syntax> {
        let start = self.pos;
        let mut escaped = false;
        // The high bit of every byte at 0x7F or above seen so far (bytes
        // below 0x20 stop the read). A byte flagged by the carry out of a
        // 0xFF below it is flagged only along with that byte.
        let mut high = 0;
        loop {
            // Eight bytes at a time up to the next quote, backslash or
            // control character.
            while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
                let mut word = [0; 8];
                word.copy_from_slice(chunk);
                let x = u64::from_le_bytes(word);
                let stops = string_stops(x);
                if stops != 0 {
                    if PRINTABLE {
                        // Only the bytes before the stop are content.
                        let before = (stops & stops.wrapping_neg()) - 1;
                        high |= (x | x.wrapping_add(ONES)) & HIGH & before;
                    }
                    self.pos += stops.trailing_zeros() as usize / 8;
                    break;
                }
                if PRINTABLE {
                    high |= (x | x.wrapping_add(ONES)) & HIGH;
                }
                self.pos += 8;
            }
            match self.bytes.get(self.pos) {
                None => return self.fail(EOF_STRING),
                Some(b'"') => {
                    let content = self.text.get(start..self.pos).unwrap_or_default();
                    self.pos += 1;
                    return Ok((content, escaped, high == 0));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    self.escape()?;
                }
                Some(&b) if b < 0x20 => return self.fail(CONTROL_CHARACTER),
                Some(&b) => {
                    if PRINTABLE && b >= 0x7f {
                        high = HIGH;
                    }
                    self.pos += 1;
                }
            }
        }
    }

    /// Checks one escape after its backslash: its letter, and four hex
    /// digits after `\u` (surrogates are judged where the string is used).
    fn escape(&mut self) -> Result<(), Syntax> {
        match self.bytes.get(self.pos) {
            None => self.fail(EOF_STRING),
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                self.pos += 1;
                match self.bytes.get(self.pos..self.pos + 4) {
                    None => {
                        self.pos = self.bytes.len();
                        self.fail(EOF_STRING)
                    }
                    Some(digits) if hex4(digits).is_some() => {
                        self.pos += 4;
                        Ok(())
                    }
                    Some(_) => self.fail(INVALID_ESCAPE),
                }
            }
            Some(_) => self.fail(INVALID_ESCAPE),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Reads a number starting at `-` or a digit.
    fn number(&mut self) -> Result<(), Syntax> {
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => {
                self.pos += 1;
                // One leading zero only.
                if self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    return self.fail(INVALID_NUMBER);
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.fail(INVALID_NUMBER),
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return self.fail(INVALID_NUMBER);
            }
        }
        if matches!(self.bytes.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.bytes.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return self.fail(INVALID_NUMBER);
            }
        }
        Ok(())
    }

    /// Reads `null`, `true` or `false`, whose first byte was seen.
    fn literal(&mut self, word: &'static [u8]) -> Result<(), Syntax> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        if rest.starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else if word.starts_with(rest) {
            self.pos = self.bytes.len();
            self.fail(EOF_VALUE)
        } else {
            self.fail(EXPECTED_IDENT)
        }
    }

    /// After a `{` and whitespace at a member name: reads the name and the
    /// colon after it.
    /// The string read is inlined (names inside `data` are many).
    #[inline(always)]
    fn skip_name(&mut self) -> Result<(), Syntax> {
        match self.skip_ws() {
            Some(b'"') => self.pos += 1,
            Some(_) => return self.fail(KEY_MUST_BE_STRING),
            None => return self.fail(EOF_OBJECT),
        }
        self.read_string::<false>()?;
        self.colon()
    }

    #[inline]
    fn colon(&mut self) -> Result<(), Syntax> {
        // Compact JSON, what most clients send, has no whitespace here.
        if self.bytes.get(self.pos) == Some(&b':') {
            self.pos += 1;
            return Ok(());
        }
        match self.skip_ws() {
            Some(b':') => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => self.fail(EXPECTED_COLON),
            None => self.fail(EOF_OBJECT),
        }
    }

    /// Skips one JSON value (after whitespace), checking it without
    /// building it; nesting is tracked on a bit stack, not by recursion.
    #[inline]
    pub(crate) fn skip_value(&mut self) -> Result<(), Syntax> {
        self.skip_nested(Nesting::new())
    }

    /// At a value inside the containers `open` (none: at the top): skips
    /// it and everything up to the end of the outermost of them.
    fn skip_nested(&mut self, mut open: Nesting) -> Result<(), Syntax> {
        loop {
            // At a value.
            match self.skip_ws() {
                None => return self.fail(EOF_VALUE),
                Some(b'{') => {
                    self.pos += 1;
                    if self.skip_ws() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        self.skip_name()?;
                        open.push(true);
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    if self.skip_ws() == Some(b']') {
                        self.pos += 1;
                    } else {
                        open.push(false);
                        continue;
                    }
                }
                Some(b'"') => {
                    self.pos += 1;
                    self.read_string::<false>()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b'n') => self.literal(b"null")?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(_) => return self.fail(EXPECTED_VALUE),
            }
            // After a value: close what ends here, up to the next comma.
            loop {
                let Some(object) = open.top() else { return Ok(()) };
                match (self.skip_ws(), object) {
                    (Some(b','), _) => {
                        self.pos += 1;
                        if object {
                            self.skip_name()?;
                        }
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.pos += 1;
                        open.pop();
                    }
                    (Some(_), true) => return self.fail(OBJECT_COMMA_OR_END),
                    (Some(_), false) => return self.fail(LIST_COMMA_OR_END),
                    (None, true) => return self.fail(EOF_OBJECT),
                    (None, false) => return self.fail(EOF_LIST),
                }
            }
        }
    }

    /// Reads a value that is not the object or array expected (after
    /// whitespace) as far as serde_json did before calling it the wrong
    /// type: an array or object not at all; a literal, number or string
    /// fully, where a malformed literal, an `f64` overflow or an unpaired
    /// surrogate is a syntax error. `Ok` means: valid, of the wrong type.
    pub(crate) fn wrong_type(&mut self) -> Result<(), Syntax> {
        match self.skip_ws() {
            Some(b'{' | b'[') => Ok(()),
            Some(b'n') => self.literal(b"null"),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                self.number()?;
                // Rare, so left to serde_json's own float reading.
                if serde_json::from_str::<f64>(self.since(start)).is_err() {
                    return Err(Syntax { what: OUT_OF_RANGE, at: start });
                }
                Ok(())
            }
            Some(b'"') => {
                self.pos += 1;
                let start = self.pos;
                match self.string()? {
                    (raw, true) if unescape(raw).is_none() => Err(Syntax { what: LONE_SURROGATE, at: start }),
                    _ => Ok(()),
                }
            }
            Some(_) => self.fail(EXPECTED_VALUE),
            None => self.fail(EOF_VALUE),
        }
    }

    /// After a member's value in an object: skips the rest of the object,
    /// checked as JSON as [`Scanner::object`] would, without building it.
    fn skip_rest_of_object(&mut self) -> Result<(), Syntax> {
        match self.skip_ws() {
            Some(b'}') => {
                self.pos += 1;
                Ok(())
            }
            Some(b',') => {
                self.pos += 1;
                self.skip_name()?;
                let mut open = Nesting::new();
                open.push(true);
                self.skip_nested(open)
            }
            Some(_) => self.fail(OBJECT_COMMA_OR_END),
            None => self.fail(EOF_OBJECT),
        }
    }

    /// Reads one event object (after whitespace, at its `{`) into `members`.
    /// A member name with an unpaired surrogate is recorded in `key_error`
    /// (and kept as `""`); reading goes on, to find the end of the object.
    ///
    /// `limit` is the byte offset past which the object is too large to be
    /// an event (its `{` plus `max_event_bytes`). Once a member reaches past
    /// it, nothing more is collected or unescaped: the rest of the object is
    /// only checked as JSON, to find its end (and any syntax error, which
    /// comes first), and the caller, seeing its length, refuses it. So an
    /// item of a batch costs members for `max_event_bytes` at most, however
    /// large the body.
    ///
    /// With `tapes` (a schema set is loaded), `data` is read onto them as it
    /// is checked ([`Tapes::fill`]), where it would otherwise be skipped.
    pub(crate) fn object(
        &mut self,
        members: &mut Members<'a>,
        limit: usize,
        mut tapes: Option<&mut Tapes>,
    ) -> Result<(), Syntax> {
        if let Some(tapes) = tapes.as_deref_mut() {
            tapes.start_object();
        }
        self.pos += 1;
        match self.skip_ws() {
            Some(b'}') => {
                self.pos += 1;
                return Ok(());
            }
            Some(b'"') => {}
            Some(_) => return self.fail(KEY_MUST_BE_STRING),
            None => return self.fail(EOF_OBJECT),
        }
        loop {
            self.pos += 1;
            let start = self.pos;
            let (raw, escaped, _) = self.read_string::<false>()?;
            if self.pos > limit {
                self.colon()?;
                self.skip_value()?;
                return self.skip_rest_of_object();
            }
            let name = match (raw, escaped) {
                (raw, false) => Cow::Borrowed(raw),
                (raw, true) => match unescape(raw) {
                    Some(name) => {
                        self.unescaped = true;
                        Cow::Owned(name)
                    }
                    None => {
                        self.key_error.get_or_insert(Syntax { what: LONE_SURROGATE, at: start });
                        Cow::Borrowed("")
                    }
                },
            };
            self.colon()?;
            let value = self.member_value(&name, limit, tapes.as_deref_mut())?;
            if self.pos > limit {
                return self.skip_rest_of_object();
            }
            if let (Some(tapes), "type", Some(ty)) = (tapes.as_deref_mut(), &*name, value.string()) {
                tapes.saw_type(ty);
            }
            members.push((name, value));
            // Compact JSON first: `,"` or `}` right after the value.
            match self.bytes.get(self.pos) {
                Some(b',') if self.bytes.get(self.pos + 1) == Some(&b'"') => {
                    self.pos += 1;
                    continue;
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => {}
            }
            match self.skip_ws() {
                Some(b',') => {
                    self.pos += 1;
                    match self.skip_ws() {
                        Some(b'"') => {}
                        Some(_) => return self.fail(KEY_MUST_BE_STRING),
                        None => return self.fail(EOF_OBJECT),
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(_) => return self.fail(OBJECT_COMMA_OR_END),
                None => return self.fail(EOF_OBJECT),
            }
        }
    }

    /// Reads the value of member `name` of an event object; a string that
    /// ends past `limit` is not unescaped (its object is refused).
    #[inline]
    fn member_value(&mut self, name: &str, limit: usize, tapes: Option<&mut Tapes>) -> Result<Value<'a>, Syntax> {
        let first = self.skip_ws();
        let start = self.pos;
        if name == "data" {
            // The tape's scanner reads only JSON and ends where `skip_value`
            // does; where it gives up (duplicate keys, depth, a number past
            // f64, not JSON), `skip_value` decides as always.
            match tapes.filter(|tapes| tapes.wants_data()).and_then(|tapes| tapes.fill(self.text, start)) {
                Some(end) => self.pos = end,
                None => self.skip_value()?,
            }
            return Ok(Value::Raw(self.since(start)));
        }
        match first {
            Some(b'"') => {
                self.pos += 1;
                Ok(match self.read_string::<true>()? {
                    (raw, false, true) => Value::Printable(raw),
                    (raw, false, false) => Value::Str(Cow::Borrowed(raw)),
                    (_, true, _) if self.pos > limit => Value::Null,
                    (raw, true, _) => match unescape(raw) {
                        Some(s) => {
                            self.unescaped = true;
                            Value::Str(Cow::Owned(s))
                        }
                        None => Value::UnpairedSurrogate,
                    },
                })
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Ok(number_value(self.since(start)))
            }
            Some(b'n') => self.literal(b"null").map(|()| Value::Null),
            Some(b't') => self.literal(b"true").map(|()| Value::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|()| Value::Bool(false)),
            Some(b'{' | b'[') => self.skip_value().map(|()| Value::Compound),
            Some(_) => self.fail(EXPECTED_VALUE),
            None => self.fail(EOF_VALUE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_stops_finds_the_first_quote_backslash_or_control_byte_at_every_position() {
        for at in 0..8 {
            for b in 0..=255u8 {
                let mut word = [b'a'; 8];
                word[at] = b;
                let stops = string_stops(u64::from_le_bytes(word));
                let stop = b == b'"' || b == b'\\' || b < 0x20;
                assert_eq!(stops != 0, stop, "byte {b:#x} at {at}");
                if stop {
                    assert_eq!(stops.trailing_zeros() as usize / 8, at, "byte {b:#x} at {at}");
                }
            }
        }
        // The lowest stop is exact even when a later byte would borrow.
        let stops = string_stops(u64::from_le_bytes([b'a', 0x00, 0x01, b'"', 0x00, b'\\', 0xff, 0x20]));
        assert_eq!(stops.trailing_zeros() / 8, 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// On any word (bytes of every value in every position, stops and
        /// bytes that borrow mixed), the lowest stop is the first byte the
        /// rule names, and there is none when no byte is one.
        #[test]
        fn string_stops_lowest_is_the_first_byte_of_the_rule(word in proptest::array::uniform8(proptest::prop_oneof![
            proptest::num::u8::ANY,
            proptest::sample::select(vec![0u8, 0x1f, 0x20, 0x21, b'"', b'\\', 0x5b, 0x7f, 0x80, 0xa0, 0xdc, 0xff]),
        ])) {
            let first = word.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            let stops = string_stops(u64::from_le_bytes(word));
            let lowest = (stops != 0).then(|| stops.trailing_zeros() as usize / 8);
            proptest::prop_assert_eq!(lowest, first, "{:?}", word);
        }
    }

    /// What `read_string::<true>` says of the string at the start of `text`
    /// (after its opening quote): content, escaped, printable.
    fn read_printable(text: &str) -> Result<(&str, bool, bool), Syntax> {
        let mut scan = Scanner::new(text);
        scan.read_string::<true>()
    }

    /// The rule the fused check replaces (`validate::is_printable_ascii`).
    fn printable(content: &str) -> bool {
        content.bytes().all(|b| (0x20..=0x7e).contains(&b))
    }

    #[test]
    fn read_string_finds_a_byte_outside_printable_ascii_at_every_position() {
        let odd = ["\u{7f}", "\u{80}", "\u{ff}", "é", "\u{ffff}", "😀", "~", " "];
        for len in 0..20 {
            for at in 0..=len {
                for c in odd {
                    let mut content: String = "a".repeat(len);
                    content.insert_str(at.min(content.len()), c);
                    // What follows the closing quote (in the same word) is
                    // not content.
                    for tail in ["", "\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}", "ÿÿÿÿÿÿÿÿ", "\u{1}"] {
                        let text = format!("{content}\"{tail}");
                        let (read, escaped, is) = read_printable(&text).unwrap();
                        assert_eq!((read, escaped), (content.as_str(), false), "{text:?}");
                        assert_eq!(is, printable(&content), "{text:?}");
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// The printable flag of a string without escapes is the byte rule
        /// applied to its content; the content and the error are those of
        /// `string`.
        #[test]
        fn read_string_printable_flag_agrees_with_the_byte_rule(
            content in "[a-z \\u{7e}\\u{7f}\\u{80}\\u{9f}\\u{a0}é\\u{fffe}😀\\\\\"\\u{0}\\u{1f}n]{0,40}",
            tail in "[a\\u{80}\\u{ff}\"]{0,9}",
        ) {
            let text = format!("{content}{tail}");
            let read = read_printable(&text);
            let mut scan = Scanner::new(&text);
            let plain = scan.string();
            proptest::prop_assert_eq!(read.map(|(c, e, _)| (c, e)), plain, "{:?}", text);
            if let Ok((content, false, is)) = read {
                proptest::prop_assert_eq!(is, printable(content), "{:?}", text);
            }
        }
    }

    /// `skip_value` as it was before its nesting got a word of its own and
    /// its string reads were inlined: a stack of `bool`s, `string` out of
    /// line. The same result at the same position is wanted.
    fn skip_value_reference(scan: &mut Scanner<'_>) -> Result<(), Syntax> {
        fn name(scan: &mut Scanner<'_>) -> Result<(), Syntax> {
            match scan.skip_ws() {
                Some(b'"') => scan.pos += 1,
                Some(_) => return scan.fail(KEY_MUST_BE_STRING),
                None => return scan.fail(EOF_OBJECT),
            }
            scan.string()?;
            // The colon as it was read before its compact fast path, so
            // that the test holds that path too.
            match scan.skip_ws() {
                Some(b':') => {
                    scan.pos += 1;
                    Ok(())
                }
                Some(_) => scan.fail(EXPECTED_COLON),
                None => scan.fail(EOF_OBJECT),
            }
        }
        let mut open: Vec<bool> = Vec::new();
        loop {
            match scan.skip_ws() {
                None => return scan.fail(EOF_VALUE),
                Some(b'{') => {
                    scan.pos += 1;
                    if scan.skip_ws() == Some(b'}') {
                        scan.pos += 1;
                    } else {
                        name(scan)?;
                        open.push(true);
                        continue;
                    }
                }
                Some(b'[') => {
                    scan.pos += 1;
                    if scan.skip_ws() == Some(b']') {
                        scan.pos += 1;
                    } else {
                        open.push(false);
                        continue;
                    }
                }
                Some(b'"') => {
                    scan.pos += 1;
                    scan.string()?;
                }
                Some(b'-' | b'0'..=b'9') => scan.number()?,
                Some(b'n') => scan.literal(b"null")?,
                Some(b't') => scan.literal(b"true")?,
                Some(b'f') => scan.literal(b"false")?,
                Some(_) => return scan.fail(EXPECTED_VALUE),
            }
            loop {
                let Some(&object) = open.last() else { return Ok(()) };
                match (scan.skip_ws(), object) {
                    (Some(b','), _) => {
                        scan.pos += 1;
                        if object {
                            name(scan)?;
                        }
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        scan.pos += 1;
                        open.pop();
                    }
                    (Some(_), true) => return scan.fail(OBJECT_COMMA_OR_END),
                    (Some(_), false) => return scan.fail(LIST_COMMA_OR_END),
                    (None, true) => return scan.fail(EOF_OBJECT),
                    (None, false) => return scan.fail(EOF_LIST),
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// `skip_value` ends where the reference ends, with the same error:
        /// on nesting of up to 200 levels (across the inline word's bound at
        /// 64 and the list's at 128), mixed objects and arrays, whole, cut
        /// and with bytes put in.
        #[test]
        fn skip_value_agrees_with_the_reference_skip(
            kinds in proptest::collection::vec(proptest::bool::ANY, 0..200),
            leaf in r#"[\[\]{}",: 0-9a-e.E+\-\\u/]{0,12}"#,
            cut in 0usize..=1200,
            at in 0usize..=1200,
            insert in r#"[\[\]{}",:; 0-9tfnrule.\\]{0,3}"#,
        ) {
            let mut json = String::new();
            for (i, &object) in kinds.iter().enumerate() {
                // Every other level with whitespace before its colons: the
                // colon's compact fast path and its general reading.
                json.push_str(match (object, i % 2 == 0) {
                    (true, true) => r#"{"k\n": [1, "s"], "x":"#,
                    (true, false) => r#"{"k\n" : [1, "s"], "x"	:"#,
                    (false, _) => r#"[true, {"a":null}, "#,
                });
            }
            json.push_str(if leaf.is_empty() { "-0.5e+3" } else { &leaf });
            for &object in kinds.iter().rev() {
                json.push(if object { '}' } else { ']' });
            }
            for text in [json.clone(), mangle(&json, cut, usize::MAX, ""), mangle(&json, cut, at, &insert)] {
                let mut new = Scanner::new(&text);
                let mut old = Scanner::new(&text);
                proptest::prop_assert_eq!(new.skip_value(), skip_value_reference(&mut old), "{:?}", text);
                proptest::prop_assert_eq!(new.pos(), old.pos(), "{:?}", text);
            }
        }
    }

    /// Every separator between a member's name and its value, in objects
    /// at each depth: `skip_value` ends where the reference ends, with the
    /// same error (the colon's compact fast path and its general reading).
    #[test]
    fn skip_value_reads_a_colon_as_the_reference_does() {
        for sep in [":", " :", ":\t", " : ", "\r\n:", ";", " ;", "", " ", "::", ",", "\u{a0}:"] {
            for text in [
                format!(r#"{{"k"{sep}1}}"#),
                format!(r#"[{{"a"{sep}"s","b":[{{"c"{sep}null}}]}}]"#),
                format!(r#"{{"x":{{"y"{sep}{{"z"{sep}true}}}}}}"#),
            ] {
                let mut new = Scanner::new(&text);
                let mut old = Scanner::new(&text);
                assert_eq!(new.skip_value(), skip_value_reference(&mut old), "{text:?}");
                assert_eq!(new.pos(), old.pos(), "{text:?}");
            }
        }
    }

    #[test]
    fn unescape_pairs_surrogates_and_refuses_unpaired_ones() {
        assert_eq!(unescape(r#"a\"\\\/\b\f\n\r\tz"#).as_deref(), Some("a\"\\/\u{8}\u{c}\n\r\tz"));
        assert_eq!(unescape(r"\u00e9\ud83d\ude00").as_deref(), Some("é😀"));
        for lone in [r"\ud800", r"\udc00", r"\ud800x", r"\ud800\n", r"\ud800\u0041", r"\ud800\ud800", r"\udfff\ud800"] {
            assert_eq!(unescape(lone), None, "{lone}");
        }
    }

    #[test]
    fn skip_value_nests_without_a_depth_limit() {
        let deep = format!("{}{}", "[{\"a\":".repeat(50_000), "}]".repeat(50_000)).replace(":}", ":1}");
        let mut scan = Scanner::new(&deep);
        assert_eq!(scan.skip_value(), Ok(()));
        assert_eq!(scan.pos(), deep.len());
        let mut scan = Scanner::new(&deep[..deep.len() - 1]);
        assert_eq!(scan.skip_value(), Err(Syntax { what: EOF_LIST, at: deep.len() - 1 }));
    }

    /// `object` with a limit reads exactly as far as without one and fails
    /// exactly where it would, but keeps only the members that end within
    /// the limit: for every limit, on objects whole and cut at every byte.
    #[test]
    fn object_past_its_limit_keeps_no_more_members_and_reads_on_as_json() {
        let objects = [
            r#"{"id":"1","n":-1.5e3,"d\u0061ta":{"a":[1,{"b":null}]},"s":"x\ny","t":true,"e":[],"o":{}}"#,
            r#"{ "data" : [ 1 , 2 ] , "\ud800" : "\udc00" , "x" : { "y" : "z" } }"#,
            r#"{"a":1,"a":2,"b":"\u00e9"}"#,
            "{}",
        ];
        for object in objects {
            for cut in 0..=object.len() {
                let Some(text) = object.get(..cut) else { continue };
                let mut whole = Scanner::new(text);
                let mut all = Members::new();
                let expected = whole.object(&mut all, usize::MAX, None);
                for limit in 0..=text.len() + 1 {
                    let mut scan = Scanner::new(text);
                    let mut members = Members::new();
                    assert_eq!(scan.object(&mut members, limit, None), expected, "{text:?} limit {limit}");
                    assert_eq!(scan.pos(), whole.pos(), "{text:?} limit {limit}");
                    if limit >= text.len() {
                        assert_eq!(format!("{members:?}"), format!("{all:?}"), "{text:?} limit {limit}");
                        assert_eq!(scan.key_error, whole.key_error, "{text:?} limit {limit}");
                    } else {
                        // A prefix of the members; how many, the next test pins down.
                        let prefix = all.get(..members.len()).unwrap_or_default();
                        assert_eq!(format!("{members:?}"), format!("{prefix:?}"), "{text:?} limit {limit}");
                    }
                }
            }
        }
    }

    /// Whether any member owns a `String`, which dropping must free.
    fn owns_a_string(members: &Members<'_>) -> bool {
        members.iter().any(|(name, value)| matches!(name, Cow::Owned(_)) || matches!(value, Value::Str(Cow::Owned(_))))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// `unescaped` (which lets `event_at` skip dropping the members) is
        /// set exactly when a member owns a `String`: on objects whose
        /// names, attribute strings and `data` hold escapes or not
        /// (unpaired surrogates, which own nothing, included).
        #[test]
        fn unescaped_is_set_exactly_when_a_member_owns_a_string(
            name in r#"[a-z]{0,3}(\\n|\\u00e9|\\ud800|\\"|é)?"#,
            value in r#"[a-z ]{0,3}(\\n|\\u00e9|\\ud800|\\ud83d\\ude00|\\/|é)?[a-z]{0,2}"#,
            data in r#"[a-z]{0,2}(\\n|\\u00e9)?"#,
            number in proptest::bool::ANY,
        ) {
            let value = if number { "-1.5".to_string() } else { format!("\"{value}\"") };
            let text = format!(r#"{{"id":"1","{name}":{value},"data":{{"{data}":"{data}"}},"x":[{value}]}}"#);
            let mut scan = Scanner::new(&text);
            let mut members = Members::new();
            proptest::prop_assert_eq!(scan.object(&mut members, usize::MAX, None), Ok(()), "{}", text);
            proptest::prop_assert_eq!(scan.unescaped, owns_a_string(&members), "{}", text);
        }
    }

    #[test]
    fn object_past_its_limit_stops_collecting_members() {
        let text = format!("{{{}\"z\":1}}", r#""a":1,"#.repeat(10_000));
        let mut scan = Scanner::new(&text);
        let mut members = Members::new();
        assert_eq!(scan.object(&mut members, 600, None), Ok(()));
        assert_eq!(scan.pos(), text.len());
        // Members ending at bytes 6, 12, ..., 600: one hundred.
        assert_eq!(members.len(), 100);
    }

    /// A JSON text cut at `cut` bytes and with `insert` put in at `at`.
    fn mangle(json: &str, cut: usize, at: usize, insert: &str) -> String {
        let mut text: Vec<u8> = json.as_bytes().to_vec();
        text.truncate(cut.min(text.len()));
        let at = at.min(text.len());
        text.splice(at..at, insert.bytes());
        String::from_utf8_lossy(&text).into_owned()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Where `data` is read onto a tape instead of skipped, the tape's
        /// scanner reads only what `skip_value` accepts and ends where it
        /// ends: on JSON-like text, whole, cut and with bytes put in.
        #[test]
        fn a_tape_fill_accepts_only_what_skip_value_accepts_and_ends_where_it_does(
            json in r#"[\[\]{}",: 0-9a-e.E+\-\\u/]{0,40}"#,
            cut in 0usize..=80,
            at in 0usize..=80,
            insert in r#"[\[\]{}",: 0-9tfnrule.\\]{0,3}"#,
        ) {
            let samples = [
                r#"{"a":[1,-2.5e3,{"b":null,"c":"x\ny\u00e9"}],"d":true,"e":false}"#,
                r#"[0, -0, 18446744073709551616, 1e400, "\ud800", {"k":1,"k":2}]"#,
                json.as_str(),
            ];
            // The first sample whole is read onto the tape (nothing in it
            // makes the tape give up); each sample also whole, cut (a cut
            // past its end leaves it whole) and with bytes put in.
            proptest::prop_assert_eq!(Tapes::new().fill(samples[0], 0), Some(samples[0].len()));
            for sample in samples {
                for text in [sample.to_string(), mangle(sample, cut, usize::MAX, ""), mangle(sample, cut, at, &insert)] {
                    let mut tapes = Tapes::new();
                    if let Some(end) = tapes.fill(&text, 0) {
                        let mut scan = Scanner::new(&text);
                        proptest::prop_assert_eq!(scan.skip_value(), Ok(()), "{:?}", text);
                        proptest::prop_assert_eq!(scan.pos(), end, "{:?}", text);
                    }
                }
            }
        }
    }

    #[test]
    fn a_tape_fill_reads_valid_data_and_gives_up_where_skip_value_decides() {
        for (text, filled) in [
            (r#"{"a":[1,2.5,"x"]} ,"b":1"#, Some(17)),
            ("12 ", Some(2)),
            (r#""\ud800""#, None),
            (r#"{"a":1,"a":2}"#, None),
            ("[1,]", None),
            ("-", None),
        ] {
            assert_eq!(Tapes::new().fill(text, 0), filled, "{text}");
        }
    }

    #[test]
    fn syntax_detail_counts_lines_and_columns_from_one() {
        let e = Syntax { what: "x", at: 5 };
        assert_eq!(e.detail("ab\ncdef"), "x at line 2 column 3");
        assert_eq!(Syntax { what: "x", at: 0 }.detail(""), "x at line 1 column 1");
    }
}
