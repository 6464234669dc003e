//! A JSON representation the validator reads in place of a
//! `serde_json::Value`: `data` parsed once into a flat tape of entries that
//! point into its raw text (strings without escapes are not copied), kept
//! in a per-thread buffer that is reused from one event to the next. Only
//! the validity check (`is_valid`) runs on it; an invalid `data` is parsed
//! again into a `Value` for the errors, so every message stays the one the
//! `Value` path gives.
//!
//! The tape is read by the same `serde_json` deserializer that builds a
//! `Value` (the same number parsing, escapes, depth limit), so it holds the
//! same values. The two places a `Value` differs, it is not built at all
//! ([`Tape::parse`] returns `false`) and the caller takes the `Value` path:
//! an object with a key twice (a `Value` keeps the last one) and any text
//! `serde_json` refuses (e.g. a number past `f64`).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use jsonschema::json::{cmp, Array, Json, Node, NodeIdentity, Object};
use jsonschema::types::JsonType;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The representation: `jsonschema::Validator<Tape>` validates a [`TapeNode`].
pub struct Tape {
    entries: Vec<Entry>,
    /// Strings that had escapes, decoded.
    arena: String,
}

/// Where a string's text is: `input` (the raw JSON) or the arena.
#[derive(Clone, Copy)]
struct Text {
    in_arena: bool,
    start: u32,
    len: u32,
}

enum Entry {
    Null,
    Bool(bool),
    Number(Number),
    String(Text),
    /// Followed by its elements; `end`: the index past its last descendant.
    Array {
        len: u32,
        end: u32,
    },
    /// Followed by key (a `String`), value, key, value...
    Object {
        len: u32,
        end: u32,
    },
}

thread_local! {
    static BUFFER: Cell<Tape> = const { Cell::new(Tape::new()) };
}

impl Tape {
    const fn new() -> Tape {
        Tape { entries: Vec::new(), arena: String::new() }
    }

    /// Parses `input` (JSON text) into this tape; `false` where a `Value` of
    /// it would not hold the same thing (see the module's note).
    fn parse(&mut self, input: &str) -> bool {
        self.entries.clear();
        self.arena.clear();
        // Offsets are u32: past 4 GiB the `Value` path takes over.
        if u32::try_from(input.len()).is_err() {
            return false;
        }
        // The scanner first (the common case, cheaper); where it gives up,
        // serde_json's deserializer, which also decides what is not JSON.
        if (Scan { tape: self, text: input, input: input.as_bytes(), pos: 0, base: 0, lo: 0, cap: usize::MAX })
            .document()
            == Some(())
        {
            return true;
        }
        self.entries.clear();
        self.arena.clear();
        let mut de = serde_json::Deserializer::from_str(input);
        let built = (Builder { tape: self, input }).deserialize(&mut de).is_ok() && de.end().is_ok();
        built && !self.entries.is_empty()
    }

    /// Runs `f` on the root of `input` parsed into this thread's buffer, or
    /// returns `None` where the tape cannot stand for a `Value` of it.
    pub(super) fn with<T>(input: &str, f: impl FnOnce(TapeNode<'_>) -> T) -> Option<T> {
        let mut tape = BUFFER.take();
        let result = tape.parse(input).then_some(()).and_then(|()| {
            let doc = Doc { input, entries: &tape.entries, arena: &tape.arena };
            Some(f(TapeNode::at(&doc, 0)?))
        });
        BUFFER.set(tape);
        result
    }
}

/// The tapes of the `data` of one request's events, filled by the envelope
/// parser as it reads each `data` (`event::scan`), so that the schema check
/// does not scan `data` a second time. Made only when a schema set is
/// loaded; without one the parser skips `data` as before.
///
/// One tape holds the documents of all the request's events, one after the
/// other; each event has the range of its entries, or none (no `data`, or
/// one the scanner gave up on, which the check then reads as before with
/// [`Tape::with`]). Memory is bounded while filling: at most
/// [`Tapes::MAX_ENTRIES`] entries per request (24 bytes each; strings
/// without escapes are not copied); a `data` that would pass it keeps no
/// tape. A tape is proportional to its `data`, which `--max-event-bytes`
/// bounds already.
pub struct Tapes {
    tape: Tape,
    /// Per event of the request, in order: its document's entries.
    docs: smallvec::SmallVec<[Option<(u32, u32)>; 1]>,
    /// The document of the event object being read.
    current: Option<(u32, u32)>,
    cap: usize,
    /// The types whose `data` is worth a tape (none: every event's).
    filter: Option<DataFilter>,
    /// The event object being read named, before its `data`, a type whose
    /// `data` no schema checks: its `data` is skipped, not filled.
    unchecked: bool,
}

/// The event types a schema set checks the `data` of, as a filter of 128
/// bits over each type's length and first and last bytes: a type whose bit
/// is clear has no schema that checks its `data` (its `data` needs no tape);
/// a set bit may be another type's. Computed once per schema set, copied
/// per request, tested in a few instructions (no hash of the type).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataFilter(u128);

impl DataFilter {
    pub(super) fn add(&mut self, ty: &str) {
        self.0 |= 1 << key_filter(ty.as_bytes());
    }

    /// `false`: no schema of the set checks the `data` of type `ty`.
    pub fn may_check(self, ty: &str) -> bool {
        self.0 & (1 << key_filter(ty.as_bytes())) != 0
    }
}

thread_local! {
    /// The tape of this thread's last request, kept for its next one.
    static POOL: Cell<Tape> = const { Cell::new(Tape::new()) };
}

impl Default for Tapes {
    fn default() -> Tapes {
        Tapes::new()
    }
}

impl Tapes {
    /// Entries the tapes of one request hold at most (1.5 MiB).
    pub const MAX_ENTRIES: usize = 1 << 16;

    /// Empty tapes, on this thread's reused buffer.
    pub fn new() -> Tapes {
        Tapes::with_cap(Tapes::MAX_ENTRIES)
    }

    /// Empty tapes for the events whose type a schema set may check
    /// ([`super::SchemaSet::data_filter`]): the `data` of an event that names
    /// a type the filter rules out before its `data` is skipped, as without
    /// schemas (the check needs no tape for it). A type named after `data`
    /// is found too late, and a type the filter lets through without a
    /// schema is filled all the same: those tapes go unused.
    pub fn for_filter(filter: DataFilter) -> Tapes {
        let mut tapes = Tapes::new();
        tapes.filter = Some(filter);
        tapes
    }

    pub(crate) fn with_cap(cap: usize) -> Tapes {
        Tapes { tape: POOL.take(), docs: smallvec::SmallVec::new(), current: None, cap, filter: None, unchecked: false }
    }

    /// The event object being read names type `ty`.
    pub(crate) fn saw_type(&mut self, ty: &str) {
        self.unchecked = self.filter.is_some_and(|filter| !filter.may_check(ty));
    }

    /// Whether the `data` of the event object being read goes on the tape.
    pub(crate) fn wants_data(&self) -> bool {
        !self.unchecked
    }

    /// At the value of a `data` member, at `start` in `text` (after
    /// whitespace): reads it onto the tape and returns the offset just past
    /// it; or `None` (nothing kept) where the tape cannot stand for its
    /// `Value` or the request's entries would pass the cap. It reads only
    /// JSON (it gives up on anything else) and ends where
    /// `Scanner::skip_value` would.
    pub(crate) fn fill(&mut self, text: &str, start: usize) -> Option<usize> {
        // Offsets are u32 (see `plain_text`).
        u32::try_from(text.len()).ok()?;
        let (lo, arena) = (self.tape.entries.len(), self.tape.arena.len());
        let mut scan =
            Scan { tape: &mut self.tape, text, input: text.as_bytes(), pos: start, base: start, lo, cap: self.cap };
        let read = scan.value();
        let end = scan.pos;
        let range = read.and_then(|()| Some((u32::try_from(lo).ok()?, u32::try_from(self.tape.entries.len()).ok()?)));
        if range.is_none() {
            self.tape.entries.truncate(lo);
            self.tape.arena.truncate(arena);
        }
        self.current = range;
        range.map(|_| end)
    }

    /// At the start of an event object: no document yet.
    pub(crate) fn start_object(&mut self) {
        self.current = None;
        self.unchecked = false;
    }

    /// The object just read became the request's next event.
    pub(crate) fn push_event(&mut self) {
        self.docs.push(self.current.take());
    }

    /// Per event of the request, whether its `data` is on the tape.
    #[cfg(test)]
    pub(crate) fn filled(&self) -> Vec<bool> {
        self.docs.iter().map(Option::is_some).collect()
    }

    /// Runs `f` on the root of the tape of event `index`, whose `data` is
    /// `input`; `None` if that event has none.
    pub(super) fn with<T>(&self, index: usize, input: &str, f: impl FnOnce(TapeNode<'_>) -> T) -> Option<T> {
        let (lo, hi) = (*self.docs.get(index)?)?;
        let entries = self.tape.entries.get(lo as usize..hi as usize)?;
        let doc = Doc { input, entries, arena: &self.tape.arena };
        Some(f(TapeNode::at(&doc, 0)?))
    }
}

impl Drop for Tapes {
    fn drop(&mut self) {
        // Kept for the next request unless it grew large.
        if self.tape.entries.capacity() <= 4096 && self.tape.arena.capacity() <= 64 * 1024 {
            let mut tape = std::mem::take(&mut self.tape);
            tape.entries.clear();
            tape.arena.clear();
            POOL.set(tape);
        }
    }
}

/// A parsed document: the tape and the text it points into.
pub struct Doc<'a> {
    input: &'a str,
    entries: &'a [Entry],
    arena: &'a str,
}

impl<'a> Doc<'a> {
    fn text(&self, text: Text) -> &'a str {
        let source = if text.in_arena { self.arena } else { self.input };
        let (start, len) = (text.start as usize, text.len as usize);
        source.get(start..start + len).unwrap_or_default()
    }

    fn to_value(&self, at: usize) -> Value {
        match self.entries.get(at) {
            None | Some(Entry::Null) => Value::Null,
            Some(Entry::Bool(b)) => Value::Bool(*b),
            Some(Entry::Number(n)) => Value::Number(n.clone()),
            Some(Entry::String(text)) => Value::String(self.text(*text).to_string()),
            Some(Entry::Array { .. }) => {
                Value::Array(Elements { doc: self, next: at + 1, left: self.len(at) }.map(TapeNode::value).collect())
            }
            Some(Entry::Object { .. }) => {
                let members = Members { doc: self, next: at + 1, left: self.len(at) };
                Value::Object(members.map(|(k, v)| (k.to_string(), v.value())).collect::<Map<_, _>>())
            }
        }
    }

    fn len(&self, at: usize) -> usize {
        match self.entries.get(at) {
            Some(Entry::Array { len, .. } | Entry::Object { len, .. }) => *len as usize,
            _ => 0,
        }
    }
}

/// Nesting past which the scanner leaves the text to serde_json (whose own
/// limit is 128).
const SCAN_DEPTH: usize = 100;

/// Fills a tape from JSON text in one pass: strings without escapes and
/// integers that fit a `u64` are read here; escaped strings and every other
/// number are read by serde_json, so they hold what a `Value` holds. Gives
/// up (`None`) on anything unexpected: what is not JSON, nesting past
/// [`SCAN_DEPTH`], a key twice in one object. The reading itself is
/// [`read`]; this holds its arguments and where it ended.
struct Scan<'t, 'i> {
    tape: &'t mut Tape,
    text: &'i str,
    input: &'i [u8],
    pos: usize,
    /// Where the document starts in `input`: its strings' offsets are
    /// counted from there (so they point into the document's own text).
    base: usize,
    /// The tape's first entry of this document: the `end` of its arrays
    /// and objects is counted from there.
    lo: usize,
    /// Entries the tape may hold at most: past it the scanner gives up.
    cap: usize,
}

impl Scan<'_, '_> {
    /// The whole input: one value and nothing but whitespace after it.
    fn document(&mut self) -> Option<()> {
        self.value()?;
        self.pos = skip_ws(self.input, self.pos);
        (self.pos == self.input.len()).then_some(())
    }

    /// One value at `pos` (after whitespace), read up to its last byte.
    fn value(&mut self) -> Option<()> {
        self.pos = read(self.tape, self.text, self.pos, self.base, self.lo, self.cap)?;
        Some(())
    }
}

/// An array or object the reader is inside of, or the document's root.
#[derive(Clone, Copy)]
struct Open {
    /// Its entry on the tape.
    at: usize,
    /// Its elements, or members, so far.
    count: usize,
    /// An object's key filter (see [`key_filter`]): its 128 bits as two
    /// words, a bit set with one `u64` shift; and whether two keys fell on
    /// one bit.
    seen_low: u64,
    seen_high: u64,
    clash: bool,
    /// The byte that closes it (`]` or `}`); 0 at the root.
    close: u8,
}

/// The reader's place before the first value: no container.
const ROOT: Open = Open { at: 0, count: 0, seen_low: 0, seen_high: 0, clash: false, close: 0 };

/// Reads the JSON value at `start` in `text` (whitespace before it is
/// skipped) onto `tape` and returns the offset just past its last byte, or
/// `None` where the scanner gives up (see [`Scan`]). Strings' offsets count
/// from `base`, the `end` of arrays and objects from the entry `lo`; past
/// `cap` entries (checked before each value and each key) it gives up.
///
/// One loop over the tokens: the container it is in is kept in locals
/// (`top`), the ones around it on a stack, and an object's keys are read in
/// the loop (no call per key or per value); what is rare (whitespace,
/// escapes, numbers, a possible duplicate key) is out of line. Its own
/// function (not inlined into its callers), with the tape's vectors
/// borrowed once as its arguments rather than reached through `self`.
#[inline(never)]
fn read(tape: &mut Tape, text: &str, start: usize, base: usize, lo: usize, cap: usize) -> Option<usize> {
    let Tape { entries, arena } = tape;
    let input = text.as_bytes();
    let mut pos = start;
    let mut stack: smallvec::SmallVec<[Open; 16]> = smallvec::SmallVec::new();
    let mut top = ROOT;
    'value: loop {
        'key: {
            // A value at `pos`.
            if entries.len() >= cap {
                return None;
            }
            match peek(input, &mut pos)? {
                b'"' => {
                    // Each way pushes its own entry (one made in place, not
                    // moved through the stack from either).
                    let start = pos + 1;
                    match plain_string(input, start) {
                        Some(len) => {
                            pos = start + len + 1;
                            entries.push(Entry::String(plain_text(start - base, len)));
                        }
                        None => {
                            let (text, end) = escaped_string(input, pos, arena)?;
                            pos = end;
                            entries.push(Entry::String(text));
                        }
                    }
                }
                open @ (b'{' | b'[') => {
                    if stack.len() >= SCAN_DEPTH {
                        return None;
                    }
                    let object = open == b'{';
                    let close = if object { b'}' } else { b']' };
                    let at = entries.len();
                    entries.push(if object {
                        Entry::Object { len: 0, end: 0 }
                    } else {
                        Entry::Array { len: 0, end: 0 }
                    });
                    pos += 1;
                    if peek(input, &mut pos)? == close {
                        pos += 1;
                        close_container(entries, at, 0, lo)?;
                    } else {
                        stack.push(top);
                        top = Open { at, count: 0, seen_low: 0, seen_high: 0, clash: false, close };
                        if object {
                            break 'key;
                        }
                        continue 'value;
                    }
                }
                b't' => {
                    pos = literal(input, pos, b"true")?;
                    entries.push(Entry::Bool(true));
                }
                b'f' => {
                    pos = literal(input, pos, b"false")?;
                    entries.push(Entry::Bool(false));
                }
                b'n' => {
                    pos = literal(input, pos, b"null")?;
                    entries.push(Entry::Null);
                }
                _ => {
                    let (number, end) = number(input, pos)?;
                    entries.push(Entry::Number(number));
                    pos = end;
                }
            }
            // After a value: the next one in the innermost container, or
            // its end (and then the same for the one around it).
            loop {
                if top.close == 0 {
                    return Some(pos);
                }
                top.count += 1;
                match peek(input, &mut pos)? {
                    b',' => {
                        pos += 1;
                        if top.close == b'}' {
                            break 'key;
                        }
                        break;
                    }
                    byte if byte == top.close => {}
                    _ => return None,
                }
                pos += 1;
                close_container(entries, top.at, top.count, lo)?;
                if top.clash && duplicate_keys(text, base, entries, lo, arena, top.at)? {
                    return None;
                }
                top = stack.pop()?;
            }
            continue 'value;
        }
        // A key of the object `top` at `pos`, and its colon. The cap holds
        // for keys too, so the entries never pass it (and their vector
        // never doubles past it).
        if entries.len() >= cap || peek(input, &mut pos)? != b'"' {
            return None;
        }
        // The key's filter from its text: in the input between its quotes
        // (no escapes), or in the arena (decoded).
        let start = pos + 1;
        let filter = match plain_string(input, start) {
            Some(len) => {
                pos = start + len + 1;
                entries.push(Entry::String(plain_text(start - base, len)));
                key_filter(input.get(start..start + len).unwrap_or_default())
            }
            None => {
                let (text, end) = escaped_string(input, pos, arena)?;
                pos = end;
                entries.push(Entry::String(text));
                key_filter(arena.as_bytes().get(text.start as usize..(text.start + text.len) as usize)?)
            }
        };
        let bit = 1u64 << (filter & 63);
        let (low, high) = if filter & 64 == 0 { (bit, 0) } else { (0, bit) };
        top.clash |= top.seen_low & low | top.seen_high & high != 0;
        top.seen_low |= low;
        top.seen_high |= high;
        // Compact JSON has the colon right after the key.
        if input.get(pos) != Some(&b':') && peek(input, &mut pos)? != b':' {
            return None;
        }
        pos += 1;
    }
}

/// The byte at `pos`, after any whitespace there (moving `pos` past it).
#[inline(always)]
fn peek(input: &[u8], pos: &mut usize) -> Option<u8> {
    // Compact JSON: the byte here is no whitespace (all of it is at or
    // below a space), so no loop.
    match input.get(*pos) {
        Some(&b) if b > b' ' => Some(b),
        _ => {
            *pos = skip_ws(input, *pos);
            input.get(*pos).copied()
        }
    }
}

/// The offset of the first byte at or after `pos` that is no whitespace.
#[inline(never)]
fn skip_ws(input: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = input.get(pos) {
        pos += 1;
    }
    pos
}

/// `true`, `false` or `null` at `pos`: the offset past it.
#[inline(always)]
fn literal(input: &[u8], pos: usize, word: &[u8]) -> Option<usize> {
    let end = pos + word.len();
    (input.get(pos..end)? == word).then_some(end)
}

/// The length of the string whose content starts at `start` (after its
/// opening quote), if it has no escape or control character (its closing
/// quote found); `None` otherwise, also where the input ends first.
#[inline(always)]
fn plain_string(input: &[u8], start: usize) -> Option<usize> {
    let rest = input.get(start..)?;
    let len = string_stop(rest)?;
    (rest.get(len) == Some(&b'"')).then_some(len)
}

/// A string without escapes, `len` bytes at `start` (counted from the
/// document's first byte). Offsets within the input, whose length fits a
/// `u32` (checked where a read starts): the casts are lossless.
#[inline(always)]
fn plain_text(start: usize, len: usize) -> Text {
    Text { in_arena: false, start: start as u32, len: len as u32 }
}

/// A string at `pos` (its opening quote) that [`plain_string`] did not read
/// (escapes, or a control character, which serde_json refuses): the
/// closing quote found, serde_json decodes it into the arena; and the
/// offset past it.
#[cold]
#[inline(never)]
fn escaped_string(input: &[u8], pos: usize, arena: &mut String) -> Option<(Text, usize)> {
    let mut i = pos + 1;
    loop {
        match input.get(i)? {
            b'\\' => i += 2,
            b'"' => break,
            _ => i += 1,
        }
    }
    let decoded: String = serde_json::from_slice(input.get(pos..=i)?).ok()?;
    let (at, len) = (u32::try_from(arena.len()).ok()?, u32::try_from(decoded.len()).ok()?);
    arena.push_str(&decoded);
    Some((Text { in_arena: true, start: at, len }, i + 1))
}

/// A number at `start`, and the offset past it: integers by hand (as
/// serde_json reads them: a `u64`, a negative `i64`, `-0` a float); floats,
/// and integers of 20 digits or more, by serde_json's own number parser.
#[inline(never)]
fn number(input: &[u8], start: usize) -> Option<(Number, usize)> {
    let negative = input.get(start) == Some(&b'-');
    let digits = start + usize::from(negative);
    let mut end = digits;
    let mut magnitude = 0u64;
    while let Some(&d @ b'0'..=b'9') = input.get(end) {
        magnitude = magnitude.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
        end += 1;
    }
    let count = end - digits;
    let float = matches!(input.get(end), Some(b'.' | b'e' | b'E'));
    let number = match (float, count) {
        // Not a number, or a leading zero: serde_json refuses both.
        (false, 0) => return None,
        (false, 2..) if input.get(digits) == Some(&b'0') => return None,
        (false, ..=19) if !negative => Number::from(magnitude),
        // `(m as i64).wrapping_neg()` is serde_json's own reading; where it is
        // not negative (`-0`, past `i64::MIN`) serde_json reads a float.
        (false, ..=19) if (magnitude as i64).wrapping_neg() < 0 => Number::from((magnitude as i64).wrapping_neg()),
        _ => {
            while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = input.get(end) {
                end += 1;
            }
            let text = input.get(start..end)?;
            if float {
                // What `Value`'s visitor does with the f64 serde_json reads.
                Number::from_f64(serde_json::from_slice::<f64>(text).ok()?)?
            } else {
                match serde_json::from_slice::<Value>(text).ok()? {
                    Value::Number(n) => n,
                    _ => return None,
                }
            }
        }
    };
    Some((number, end))
}

/// Whether the object at entry `at` (of the whole tape) of the document
/// that starts at `base` in `text` and at entry `lo` has a key twice.
#[cold]
#[inline(never)]
fn duplicate_keys(text: &str, base: usize, entries: &[Entry], lo: usize, arena: &str, at: usize) -> Option<bool> {
    let doc = Doc { input: text.get(base..)?, entries: entries.get(lo..)?, arena };
    Some(has_duplicate_keys(&doc, at - lo))
}

/// The first byte of `rest` that ends a string's plain run: a quote, a
/// backslash or a control character (below 0x20). Eight bytes at a time:
/// for each test, `(x - 0x01..) & !x & 0x80..` flags the bytes of `x` below
/// the constant; a borrow can flag bytes only after a true one, so the
/// lowest flagged byte is exactly the first match.
#[inline(always)]
fn string_stop(rest: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let mut at = 0;
    while let Some(chunk) = rest.get(at..at + 8) {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let found = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | word.wrapping_sub(ONES * 0x20) & !word)
            & HIGH;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = rest.get(at..)?;
    tail.iter().position(|b| matches!(b, b'"' | b'\\' | 0..0x20)).map(|i| at + i)
}

/// Fills a tape from a `serde_json` deserializer.
struct Builder<'t, 'i> {
    tape: &'t mut Tape,
    input: &'i str,
}

impl Builder<'_, '_> {
    /// A string: borrowed when it lies in the input, else copied to the arena.
    fn text(&mut self, s: &str, borrowed: bool) -> Result<Text, ()> {
        let base = self.input.as_ptr() as usize;
        let at = s.as_ptr() as usize;
        if borrowed && at >= base && at + s.len() <= base + self.input.len() {
            let start = u32::try_from(at - base).map_err(|_| ())?;
            let len = u32::try_from(s.len()).map_err(|_| ())?;
            return Ok(Text { in_arena: false, start, len });
        }
        let start = u32::try_from(self.tape.arena.len()).map_err(|_| ())?;
        let len = u32::try_from(s.len()).map_err(|_| ())?;
        self.tape.arena.push_str(s);
        Ok(Text { in_arena: true, start, len })
    }

    fn string<E: de::Error>(&mut self, s: &str, borrowed: bool) -> Result<(), E> {
        let text = self.text(s, borrowed).map_err(|()| E::custom("string offset past u32"))?;
        self.tape.entries.push(Entry::String(text));
        Ok(())
    }

    fn reborrow(&mut self) -> Builder<'_, '_> {
        Builder { tape: self.tape, input: self.input }
    }
}

impl<'de> DeserializeSeed<'de> for Builder<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Counts and closes a container opened at `at` (an index of the whole
/// tape) of the document whose first entry is at `lo`.
fn close<E: de::Error>(tape: &mut Tape, at: usize, count: usize, lo: usize) -> Result<(), E> {
    close_container(&mut tape.entries, at, count, lo).ok_or_else(|| E::custom("no container here, or too many entries"))
}

/// [`close`] on the entries themselves; `None` where `at` is no container
/// or a count does not fit a `u32`.
#[inline(always)]
fn close_container(entries: &mut [Entry], at: usize, count: usize, lo: usize) -> Option<()> {
    let len = u32::try_from(count).ok()?;
    let end = u32::try_from(entries.len() - lo).ok()?;
    match entries.get_mut(at) {
        Some(Entry::Array { len: l, end: e } | Entry::Object { len: l, end: e }) => {
            (*l, *e) = (len, end);
            Some(())
        }
        _ => None,
    }
}

impl<'de> Visitor<'de> for Builder<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.tape.entries.push(Entry::Bool(v));
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.tape.entries.push(Entry::Number(v.into()));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.tape.entries.push(Entry::Number(v.into()));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // As `Value`'s own visitor: a float that is no JSON number is `null`.
        self.tape.entries.push(Number::from_f64(v).map_or(Entry::Null, Entry::Number));
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        self.string(v, false)
    }

    fn visit_borrowed_str<E: de::Error>(mut self, v: &'de str) -> Result<(), E> {
        self.string(v, true)
    }

    fn visit_string<E: de::Error>(mut self, v: String) -> Result<(), E> {
        self.string(&v, false)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.tape.entries.push(Entry::Null);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let at = self.tape.entries.len();
        self.tape.entries.push(Entry::Array { len: 0, end: 0 });
        let mut count = 0;
        while seq.next_element_seed(self.reborrow())?.is_some() {
            count += 1;
        }
        close(self.tape, at, count, 0)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let at = self.tape.entries.len();
        self.tape.entries.push(Entry::Object { len: 0, end: 0 });
        let mut count = 0;
        // A cheap filter of the keys seen (length, first and last byte):
        // only an object where two keys fall on one bit is compared key by key.
        let (mut seen, mut clash) = (0u128, false);
        while map.next_key_seed(Key(self.reborrow()))?.is_some() {
            if let Some(Entry::String(text)) = self.tape.entries.last() {
                let source = if text.in_arena { self.tape.arena.as_bytes() } else { self.input.as_bytes() };
                let key = source.get(text.start as usize..(text.start + text.len) as usize).unwrap_or_default();
                let bit = 1u128 << key_filter(key);
                clash |= seen & bit != 0;
                seen |= bit;
            }
            map.next_value_seed(self.reborrow())?;
            count += 1;
        }
        close::<A::Error>(self.tape, at, count, 0)?;
        let doc = Doc { input: self.input, entries: &self.tape.entries, arena: &self.tape.arena };
        if clash && has_duplicate_keys(&doc, at) {
            return Err(de::Error::custom("a key twice in one object"));
        }
        Ok(())
    }
}

/// A key's bit (0..128) in the filter of the keys of one object: equal keys
/// fall on the same bit.
fn key_filter(key: &[u8]) -> u32 {
    let first = u64::from(key.first().copied().unwrap_or(0));
    let last = u64::from(key.last().copied().unwrap_or(0));
    let mixed = (key.len() as u64 | first << 32 | last << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 57) as u32
}

/// Whether the object at `at` has a key twice.
fn has_duplicate_keys(doc: &Doc<'_>, at: usize) -> bool {
    let members = || Members { doc, next: at + 1, left: doc.len(at) };
    if doc.len(at) <= 16 {
        let keys: smallvec::SmallVec<[&str; 16]> = members().map(|(k, _)| k).collect();
        return keys.iter().enumerate().any(|(i, k)| keys[..i].contains(k));
    }
    let mut keys: Vec<&str> = members().map(|(k, _)| k).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

/// An object's key: a string, asked for as such (so that `serde_json` lends
/// it from the input when it has no escapes).
struct Key<'t, 'i>(Builder<'t, 'i>);

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self.0)
    }
}

/// The tape's representation for the validator.
impl Json for Tape {
    type Node<'a> = TapeNode<'a>;
    type PreparedKey = String;
    type StringBuffer = Tape;

    // Object lookups scan the members, as a members pass does.
    const KEYS_PER_LOOKUP: usize = 1;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>(buffer: &mut Tape, string: &str, f: impl FnOnce(TapeNode<'_>) -> T) -> T {
        buffer.entries.clear();
        buffer.arena.clear();
        buffer.arena.push_str(string);
        let len = u32::try_from(string.len()).unwrap_or(u32::MAX);
        let entry = Entry::String(Text { in_arena: true, start: 0, len });
        let doc = Doc { input: "", entries: std::slice::from_ref(&entry), arena: &buffer.arena };
        f(TapeNode { doc: &doc, at: 0, entry: &entry })
    }
}

impl Default for Tape {
    fn default() -> Tape {
        Tape::new()
    }
}

/// One value of a parsed document.
#[derive(Clone, Copy)]
pub struct TapeNode<'a> {
    doc: &'a Doc<'a>,
    at: usize,
    /// Its entry (`doc.entries[at]`), found once where the node is made,
    /// not at each question the validator asks of it.
    entry: &'a Entry,
}

impl<'a> TapeNode<'a> {
    /// The node of entry `at`, if there is one.
    fn at(doc: &'a Doc<'a>, at: usize) -> Option<TapeNode<'a>> {
        Some(TapeNode { doc, at, entry: doc.entries.get(at)? })
    }

    fn entry(&self) -> Option<&'a Entry> {
        Some(self.entry)
    }

    fn value(self) -> Value {
        self.doc.to_value(self.at)
    }
}

impl<'a> Node<'a, Tape> for TapeNode<'a> {
    type Object = TapeObject<'a>;
    type Array = TapeArray<'a>;
    type Number = &'a Number;

    fn as_object(&self) -> Option<TapeObject<'a>> {
        match self.entry() {
            Some(Entry::Object { len, .. }) => Some(TapeObject(*self, *len as usize)),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<TapeArray<'a>> {
        matches!(self.entry(), Some(Entry::Array { .. })).then_some(TapeArray(*self))
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self.entry() {
            Some(Entry::String(text)) => Some(Cow::Borrowed(self.doc.text(*text))),
            _ => None,
        }
    }

    /// `minLength`/`maxLength`: decided from the byte length where it can
    /// be (a string of `n` bytes has between `n / 4` rounded up and `n`
    /// code points), else by counting them, as the default does.
    fn string_length_within(&self, min: u64, max: u64) -> Option<bool> {
        let Some(Entry::String(text)) = self.entry() else {
            return None;
        };
        let bytes = u64::from(text.len);
        let (fewest, most) = (bytes.div_ceil(4), bytes);
        if most < min || fewest > max {
            return Some(false);
        }
        if min <= fewest && most <= max {
            return Some(true);
        }
        let chars = self.doc.text(*text).chars().count() as u64;
        Some((min..=max).contains(&chars))
    }

    fn as_number(&self) -> Option<&'a Number> {
        match self.entry() {
            Some(Entry::Number(n)) => Some(n),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.entry() {
            Some(Entry::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.entry(), Some(Entry::Null))
    }

    fn json_type(&self) -> JsonType {
        match self.entry() {
            None | Some(Entry::Null) => JsonType::Null,
            Some(Entry::Bool(_)) => JsonType::Boolean,
            Some(Entry::Number(_)) => JsonType::Number,
            Some(Entry::String(_)) => JsonType::String,
            Some(Entry::Array { .. }) => JsonType::Array,
            Some(Entry::Object { .. }) => JsonType::Object,
        }
    }

    /// `const` and `enum`: scalars compared in place, as `cmp::equal` compares
    /// them; containers through a `Value`.
    fn equals_value(&self, expected: &Value) -> bool {
        match (self.entry(), expected) {
            (Some(Entry::String(text)), Value::String(s)) => self.doc.text(*text) == s,
            (Some(Entry::Bool(b)), Value::Bool(e)) => b == e,
            (Some(Entry::Null), Value::Null) => true,
            (Some(Entry::Number(n)), Value::Number(e)) => cmp::equal_numbers(&n, e),
            (Some(Entry::Array { .. }), Value::Array(_)) | (Some(Entry::Object { .. }), Value::Object(_)) => {
                cmp::equal(&self.value(), expected)
            }
            _ => false,
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(self.value())
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::tagged(std::ptr::from_ref(self.doc) as usize, u32::try_from(self.at).unwrap_or(u32::MAX)))
    }
}

#[derive(Clone, Copy)]
/// An object node and its number of members (read once, where the node
/// was found to be an object).
pub struct TapeObject<'a>(TapeNode<'a>, usize);

#[derive(Clone, Copy)]
pub struct TapeArray<'a>(TapeNode<'a>);

/// The index past entry `entry`, at `at`, and its descendants.
#[inline(always)]
fn past(entry: &Entry, at: usize) -> usize {
    match entry {
        Entry::Array { end, .. } | Entry::Object { end, .. } => *end as usize,
        _ => at + 1,
    }
}

pub struct Members<'a> {
    doc: &'a Doc<'a>,
    next: usize,
    left: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, TapeNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The key and the value's entry with one bounds check.
        let [key, entry] = self.doc.entries.get(self.next..self.next + 2)? else {
            return None;
        };
        let name = match key {
            Entry::String(text) => self.doc.text(*text),
            _ => "",
        };
        let at = self.next + 1;
        self.next = past(entry, at);
        Some((name, TapeNode { doc: self.doc, at, entry }))
    }
}

pub struct Elements<'a> {
    doc: &'a Doc<'a>,
    next: usize,
    left: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = TapeNode<'a>;

    fn next(&mut self) -> Option<TapeNode<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let node = TapeNode::at(self.doc, self.next)?;
        self.next = past(node.entry, self.next);
        Some(node)
    }
}

impl<'a> Object<'a, Tape> for TapeObject<'a> {
    type Node = TapeNode<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        self.1
    }

    fn get(&self, key: &String) -> Option<TapeNode<'a>> {
        self.members().find(|(name, _)| *name == key).map(|(_, value)| value)
    }

    fn members(&self) -> Members<'a> {
        Members { doc: self.0.doc, next: self.0.at + 1, left: self.len() }
    }
}

impl<'a> Array<'a, Tape> for TapeArray<'a> {
    type Node = TapeNode<'a>;
    type ElementsIter = Elements<'a>;

    fn len(&self) -> usize {
        match self.0.entry {
            Entry::Array { len, .. } => *len as usize,
            _ => 0,
        }
    }

    fn elements(&self) -> Elements<'a> {
        Elements { doc: self.0.doc, next: self.0.at + 1, left: self.len() }
    }
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// Schemas that use most keywords, each compiled for both representations.
    fn schemas() -> Vec<(jsonschema::Validator, jsonschema::Validator<Tape>)> {
        let bench: Value = serde_json::from_str(include_str!("../../../bench/schemas/com.example.order.json")).unwrap();
        let others = [
            json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "integer", "minimum": 1},
                "b": {"type": "array", "items": {"$ref": "#/$defs/x"}, "uniqueItems": true}},
                "$defs": {"x": {"type": ["string", "number"], "maxLength": 3, "multipleOf": 0.5}}}),
            json!({"additionalProperties": false, "patternProperties": {"^[a-c]$": {"not": {"type": "null"}}},
                "minProperties": 1, "maxProperties": 3, "propertyNames": {"pattern": "^[a-e]$"}}),
            json!({"enum": [1, "a\u{e9}", null, [1, {"a": 2.0}], {"a": [true]}]}),
            json!({"const": {"a": 1, "b": [1, 2]}}),
            json!({"oneOf": [{"type": "array", "contains": {"const": 2}, "minContains": 2}, {"type": "string",
                "format": "email"}, {"type": "object", "dependentRequired": {"a": ["b"]}}]}),
            json!({"type": "array", "prefixItems": [{"type": "boolean"}], "items": {"type": "integer"},
                "minItems": 1, "maxItems": 4}),
            json!({"type": "string", "minLength": 2, "pattern": "\\d", "format": "date-time"}),
        ];
        std::iter::once(bench)
            .chain(others)
            .map(|schema| {
                let slow = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
                let fast = jsonschema::options_for::<Tape>().should_validate_formats(true).build(&schema).unwrap();
                (slow, fast)
            })
            .collect()
    }

    /// The tape's verdict and the `Value` of the text (`None`: no tape).
    fn both(text: &str) -> Option<Value> {
        Tape::with(text, |node| node.value())
    }

    /// What the scanner alone reads (`None`: it gives up).
    fn scanned(text: &str) -> Option<Value> {
        let mut tape = Tape::new();
        (Scan { tape: &mut tape, text, input: text.as_bytes(), pos: 0, base: 0, lo: 0, cap: usize::MAX }).document()?;
        let doc = Doc { input: text, entries: &tape.entries, arena: &tape.arena };
        Some(doc.to_value(0))
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-5i64..5).prop_map(|n| json!(n)),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            prop_oneof![Just(0.5), Just(-1.0), Just(2.0), Just(1e300), any::<f64>()]
                .prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[a-e]{0,4}".prop_map(Value::String),
            "\\PC{0,6}".prop_map(Value::String),
            Just(json!("ada@example.com")),
            Just(json!("2026-11-29T06:00:00Z")),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-e]|order_id|customer|email|\\PC{0,3}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// On any `data`, the tape holds the `Value` serde_json reads, and
        /// every schema gives the same verdict on both.
        #[test]
        fn the_tape_holds_the_value_and_gets_its_verdict(value in any_json(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) }.unwrap();
            let read: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(both(&text), Some(read.clone()));
            prop_assert_eq!(scanned(&text), Some(read.clone()));
            for (slow, fast) in schemas() {
                prop_assert_eq!(Tape::with(&text, |node| fast.is_valid(node)), Some(slow.is_valid(&read)), "{}", text);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// `minLength`/`maxLength` on the tape (decided from the byte length
        /// where it can be) answer as counting the code points does, for
        /// strings of 1- to 4-byte characters, plain and escaped, and bounds
        /// around their lengths.
        #[test]
        fn string_length_bounds_answer_as_counting_does(
            text in "[a\u{e9}\u{20ac}\u{1f600}\\\"]{0,12}",
            min in 0u64..14,
            span in 0u64..14,
            unbounded in any::<bool>(),
        ) {
            let max = if unbounded { u64::MAX } else { min + span };
            let json = serde_json::to_string(&text).unwrap();
            let counted = text.chars().count() as u64;
            let within = Tape::with(&json, |node| node.string_length_within(min, max));
            prop_assert_eq!(within, Some(Some((min..=max).contains(&counted))), "{} {} {}", json, min, max);
            let not_a_string = Tape::with("[1]", |node| node.string_length_within(min, max));
            prop_assert_eq!(not_a_string, Some(None));
        }
    }

    /// Data near each schema's edge: every schema meets valid and invalid
    /// data here, and the tape gives the `Value`'s verdict on each.
    #[test]
    fn hand_picked_data_gets_the_same_verdict() {
        let order = include_str!("../../../bench/schemas/com.example.order.data").trim();
        let data = [
            order.to_string(),
            order.replace("\"EUR\"", "\"CHF\""),
            order.replace("\"DE\"", "\"de\""),
            order.replace("ada@example.com", "ada@@example"),
            order.replace("\"coupon\":null", "\"coupon\":\"\\u0058\""),
            order.replace("\"items\":3", "\"items\":3.0"),
            order.replace("\"items\":3", "\"items\":0"),
            order.replace("\"paid\":true", "\"paid\":true,\"extra\":1"),
            order.replace("2026-11-29T06:00:00Z", "2026-11-29"),
            r#"{"a":1,"b":[0.5,"ab",1.5]}"#.into(),
            r#"{"a":1,"b":[0.5,0.5]}"#.into(),
            r#"{"a":0}"#.into(),
            r#"{"a":2,"b":["abcd"]}"#.into(),
            r#"{"a":1,"c":2}"#.into(),
            r#"{"a":null}"#.into(),
            r#"{"f":1}"#.into(),
            r#"{}"#.into(),
            r#"[1,{"a":2}]"#.into(),
            r#"[1.0,{"a":2.0}]"#.into(),
            r#"[1,{"a":2,"b":3}]"#.into(),
            r#""a\u00e9""#.into(),
            r#"{"a":1.0,"b":[1,2.0]}"#.into(),
            r#"{"b":[1,2],"a":1,"c":0}"#.into(),
            r#"[2,2,3]"#.into(),
            r#"[2,3]"#.into(),
            r#""x@example.com""#.into(),
            r#"{"a":1,"b":2}"#.into(),
            r#"{"a":1}"#.into(),
            r#"[true,1,2]"#.into(),
            r#"[true,1,2,3,4]"#.into(),
            r#"[1]"#.into(),
            r#"[]"#.into(),
            r#""2026-11-29T06:00:00Z""#.into(),
            r#""2026-11-29T06:00:00""#.into(),
            r#"1"#.into(),
            r#"null"#.into(),
        ];
        let mut seen = Vec::new();
        for (slow, fast) in schemas() {
            let mut verdicts = Vec::new();
            for text in &data {
                let read: Value = serde_json::from_str(text).unwrap();
                let verdict = slow.is_valid(&read);
                assert_eq!(Tape::with(text, |node| fast.is_valid(node)), Some(verdict), "{text}");
                verdicts.push(verdict);
            }
            seen.push((verdicts.contains(&true), verdicts.contains(&false)));
        }
        assert!(seen.iter().all(|s| *s == (true, true)), "{seen:?}");
    }

    #[test]
    fn escapes_are_decoded_and_compared_decoded() {
        let text = r#"{"a\u0062":"x\ny\"\u00e9\ud83e\udd80","e":"ada\u0040example.com"}"#;
        assert_eq!(both(text), Some(json!({"ab": "x\ny\"é🦀", "e": "ada@example.com"})));
        assert_eq!(scanned(text), both(text));
        let schema = json!({"required": ["ab"], "properties": {"ab": {"const": "x\ny\"é🦀"},
            "e": {"format": "email", "enum": ["ada@example.com"]}}});
        let fast = jsonschema::options_for::<Tape>().should_validate_formats(true).build(&schema).unwrap();
        assert_eq!(Tape::with(text, |node| fast.is_valid(node)), Some(true));
        assert_eq!(Tape::with(r#"{"ab":"x\ny\"\u00e9\ud83e\udd80","e":"ada"}"#, |n| fast.is_valid(n)), Some(false));
    }

    #[test]
    fn a_string_stops_at_its_first_quote_backslash_or_control_character() {
        for len in 0..40 {
            for stop in [b'"', b'\\', 0, 0x1f] {
                for at in 0..=len {
                    let mut text: Vec<u8> =
                        (0..len).map(|i| [b'a', b' ', 0x7f, 0xc3, b'!', b'#', 0x20][i % 7]).collect();
                    let expected = (at < len).then(|| {
                        text[at] = stop;
                        at
                    });
                    // A later stop does not hide the first one.
                    if at + 3 < len {
                        text[at + 3] = b'"';
                    }
                    assert_eq!(string_stop(&text), expected.or((at + 3 < len).then_some(at + 3)), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn numbers_are_the_ones_serde_json_reads() {
        for text in [
            "0",
            "-0",
            "-0.0",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "1e2",
            "1.5E-3",
            "[1.0, -1, 2.5e10]",
            "0.30000000000000004",
            "-1",
            "-10",
            "-9223372036854775808",
            "9223372036854775808",
            "12345678901234567890",
            "1234567890123456789",
            "-1234567890123456789",
            "0.0",
            "59.9",
            "-1.5e-7",
            "1E+2",
            "[0, -0, 7, -7, 0.5, -0.5]",
        ] {
            let read: Value = serde_json::from_str(text).unwrap();
            assert_eq!(scanned(text), Some(read.clone()), "{text}");
            assert_eq!(both(text), Some(read), "{text}");
        }
    }

    #[test]
    fn what_a_tape_cannot_stand_for_is_left_to_the_value() {
        // A `Value` keeps the last of two equal keys; a number past f64 is
        // refused: no tape in either case, the caller takes the `Value` path.
        assert_eq!(both(r#"{"a":1,"b":{"c":1,"c":2}}"#), None);
        let many: Vec<String> = (0..20).map(|i| format!("\"k{}\":{i}", i % 19)).collect();
        assert_eq!(both(&format!("{{{}}}", many.join(","))), None);
        let distinct: Vec<String> = (0..20).map(|i| format!("\"k{i}\":{i}")).collect();
        assert!(both(&format!("{{{}}}", distinct.join(","))).is_some());
        assert_eq!(both("1e400"), None);
        assert_eq!(both(&format!("{}1{}", "[".repeat(200), "]".repeat(200))), None);
        assert_eq!(both("{} x"), None);
        // The scanner gives up on what is not JSON; serde_json then refuses it too.
        for text in
            ["", "[1,]", "{\"a\" 1}", "01", "1.", "-", "+1", "tru", "\"a\u{1}\"", "\"\\x\"", "[1 2]", "{\"a\":1,}"]
        {
            assert_eq!(scanned(text), None, "{text:?}");
            assert_eq!(both(text), None, "{text:?}");
        }
        assert_eq!(scanned(r#"{"a":1,"a":1}"#), None);
    }

    #[test]
    fn the_scanner_nests_to_its_depth_and_leaves_deeper_text_to_serde_json() {
        let nested = |depth: usize, open: &str, close: &str| format!("{}1{}", open.repeat(depth), close.repeat(depth));
        for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
            let at_limit = nested(SCAN_DEPTH, open, close);
            let past = nested(SCAN_DEPTH + 1, open, close);
            let expected: Value = serde_json::from_str(&at_limit).unwrap();
            assert_eq!(scanned(&at_limit), Some(expected));
            assert_eq!(scanned(&past), None);
            // serde_json (limit 128) reads what the scanner left.
            assert_eq!(both(&past), Some(serde_json::from_str::<Value>(&past).unwrap()));
        }
        // Closers must match their openers, at every level.
        for text in ["[1}", "{\"a\":1]", "[[1]}", "{\"a\":[1}}", "[", "{\"a\":[1]", "]", "[]]"] {
            assert_eq!(scanned(text), None, "{text:?}");
            assert_eq!(both(text), None, "{text:?}");
        }
        assert_eq!(scanned(r#"[[],{},[{}],{"a":[]}]"#), Some(json!([[], {}, [{}], {"a": []}])));
    }

    /// Every entry of a document, strings and numbers read out: equal for
    /// two tapes exactly when they hold the same entries (kinds, lengths,
    /// `end`s counted from the document's start).
    fn entries(doc: &Doc<'_>) -> Vec<String> {
        doc.entries
            .iter()
            .map(|entry| match entry {
                Entry::Null => "null".to_string(),
                Entry::Bool(b) => b.to_string(),
                Entry::Number(n) => format!("number {n}"),
                Entry::String(text) => format!("string {:?} in arena {}", doc.text(*text), text.in_arena),
                Entry::Array { len, end } => format!("array {len} {end}"),
                Entry::Object { len, end } => format!("object {len} {end}"),
            })
            .collect()
    }

    /// The entries the scanner reads from `data` alone (`None`: it gives up).
    fn scanned_entries(data: &str) -> Option<Vec<String>> {
        let mut tape = Tape::new();
        (Scan { tape: &mut tape, text: data, input: data.as_bytes(), pos: 0, base: 0, lo: 0, cap: usize::MAX })
            .document()?;
        Some(entries(&Doc { input: data, entries: &tape.entries, arena: &tape.arena }))
    }

    /// The entries of event `index` as the envelope parse filled them.
    fn filled_entries(tapes: &Tapes, index: usize, data: &str) -> Option<Vec<String>> {
        let (lo, hi) = (*tapes.docs.get(index)?)?;
        let doc = Doc { input: data, entries: &tapes.tape.entries[lo as usize..hi as usize], arena: &tapes.tape.arena };
        Some(entries(&doc))
    }

    fn event_with(i: usize, data: &str) -> String {
        format!(r#"{{"specversion":"1.0","id":"{i}","data" : {data} ,"source":"/s","type":"t"}}"#)
    }

    /// Parses `body` as `content_type` with tapes; the events' `data` texts.
    fn parse_taped(content_type: &str, body: &str, tapes: &mut Tapes) -> Vec<String> {
        let headers = crate::http::Headers::from_pairs(&[("Content-Type", content_type)]);
        let limits = crate::event::ParseLimits::default();
        let body = bytes::Bytes::from(body.to_string());
        let events = crate::event::parse_body_with(&headers, &body, &limits, Some(tapes)).unwrap();
        assert_eq!(tapes.docs.len(), events.len());
        events
            .iter()
            .map(|e| match e.data() {
                Some(crate::event::DataRef::Json(json)) => json.to_string(),
                _ => "null".to_string(),
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The tape the envelope parse fills for each event's `data` holds
        /// exactly the entries the scanner reads from that `data` alone, in
        /// one event, a batch and NDJSON; and gets the same verdicts.
        #[test]
        fn the_tape_filled_while_parsing_is_the_tape_scanned_alone(
            values in prop::collection::vec(any_json(), 1..4),
            pretty in any::<bool>(),
        ) {
            let text = |v: &Value, pretty| if pretty { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) };
            let texts: Vec<String> = values.iter().map(|v| text(v, pretty).unwrap()).collect();
            let objects: Vec<String> = texts.iter().enumerate().map(|(i, t)| event_with(i, t)).collect();
            let lines: Vec<String> =
                values.iter().enumerate().map(|(i, v)| event_with(i, &text(v, false).unwrap())).collect();
            let bodies = [
                ("application/cloudevents+json", objects[0].clone()),
                ("application/cloudevents-batch+json", format!("[{}]", objects.join(" , "))),
                ("application/json", format!(" [{}]", objects.join(","))),
                ("application/x-ndjson", format!("{}\n", lines.join("\n\n"))),
            ];
            for (content_type, body) in bodies {
                let mut tapes = Tapes::new();
                let data = parse_taped(content_type, &body, &mut tapes);
                for (index, data) in data.iter().enumerate() {
                    let alone = scanned_entries(data);
                    prop_assert!(alone.is_some(), "{}", data);
                    prop_assert_eq!(filled_entries(&tapes, index, data), alone, "{} {}", content_type, body);
                    let read: Value = serde_json::from_str(data).unwrap();
                    for (slow, fast) in schemas() {
                        prop_assert_eq!(tapes.with(index, data, |node| fast.is_valid(node)), Some(slow.is_valid(&read)));
                    }
                }
            }
        }
    }

    /// What a reader (`read`, or the old scanner it replaced) makes of the
    /// value at `start` in `text`, on a tape that already holds another
    /// document (as in a batch): where it ended, and the entries and text
    /// of the document it read.
    fn read_by(
        reader: fn(&mut Tape, &str, usize, usize, usize, usize) -> Option<usize>,
        text: &str,
        start: usize,
        cap: usize,
    ) -> Option<(usize, Vec<String>)> {
        let mut tape = Tape::new();
        tape.entries.extend([Entry::Bool(true), Entry::Null]);
        tape.arena.push_str("before");
        let end = reader(&mut tape, text, start, start, 2, cap)?;
        let doc = Doc { input: text.get(start..).unwrap(), entries: &tape.entries[2..], arena: &tape.arena };
        assert_eq!(&tape.entries.len(), &(2 + doc.entries.len()));
        Some((end, entries(&doc)))
    }

    /// `text` cut at `cut` bytes, with `insert` put in at `at`.
    fn mangled(text: &str, cut: usize, at: usize, insert: &str) -> String {
        let mut bytes = text.as_bytes().to_vec();
        bytes.truncate(cut.min(bytes.len()));
        let at = at.min(bytes.len());
        bytes.splice(at..at, insert.bytes());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// The reader of one loop (keys read inline) reads exactly what the
        /// scanner it replaced read: the same entries, the same end, and it
        /// gives up on the same texts; on JSON (compact and pretty), JSON
        /// cut and with bytes put in, JSON-like text, after text that is not
        /// its own, and with caps on the entries around what it needs.
        #[test]
        fn the_reader_reads_what_the_old_scanner_read(
            value in any_json(),
            pretty in any::<bool>(),
            noise in r#"[\[\]{}",: 0-9a-e.E+\-\\u/\n]{0,40}"#,
            cut in 0usize..=200,
            at in 0usize..=200,
            insert in r#"[\[\]{}",: 0-9tfnrule.\\\t]{0,3}"#,
            prefix in "[ ,:a\\[]{0,3}",
            cap in prop_oneof![Just(usize::MAX), 0usize..40],
        ) {
            let json = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) }.unwrap();
            // Keys twice (`a` is a common key of `any_json`), also one plain
            // and one escaped.
            let twice = json.replace('{', r#"{"a":0,"#);
            let escaped = json.replace('{', r#"{"\u0061":0,"#);
            let texts = [
                json.clone(),
                mangled(&json, cut, usize::MAX, ""),
                mangled(&json, cut, at, &insert),
                noise.clone(),
                twice.clone(),
                escaped,
                mangled(&twice, cut, at, &insert),
            ];
            for text in texts {
                let whole = format!("{prefix}{text}");
                let new = read_by(read, &whole, prefix.len(), cap);
                let old = read_by(reference::read, &whole, prefix.len(), cap);
                prop_assert_eq!(&new, &old, "{:?} from {} cap {}", whole, prefix.len(), cap);
            }
            // Valid JSON without a cap is always read whole.
            prop_assert_eq!(read_by(read, &json, 0, usize::MAX).map(|(end, _)| end), Some(json.len()));
        }
    }

    #[test]
    fn what_the_filled_tape_cannot_stand_for_is_left_to_the_check() {
        // A key twice, nesting past the scanner's depth, a number past f64,
        // a lone surrogate: no tape for that event (the check reads its
        // `data` again), the others keep theirs.
        let deep = format!("{}1{}", "[".repeat(SCAN_DEPTH + 1), "]".repeat(SCAN_DEPTH + 1));
        let escaped = r#"{"b":"\u0063"}"#;
        for odd in [r#"{"a":1,"a":2}"#, deep.as_str(), "1e400", r#""\ud800""#] {
            let body = format!("[{},{},{}]", event_with(0, "[1]"), event_with(1, odd), event_with(2, escaped));
            let mut tapes = Tapes::new();
            let data = parse_taped("application/cloudevents-batch+json", &body, &mut tapes);
            assert_eq!(data[1], odd);
            assert_eq!(filled_entries(&tapes, 0, &data[0]), scanned_entries("[1]"));
            assert_eq!(filled_entries(&tapes, 1, &data[1]), None, "{odd}");
            assert_eq!(filled_entries(&tapes, 2, &data[2]), scanned_entries(escaped));
            assert_eq!(tapes.with(2, &data[2], |node| node.value()), Some(json!({"b": "c"})));
        }
        // No `data`: an entry that is no tape.
        let body =
            format!("{}\n{}\n", r#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#, event_with(2, "[]"));
        let mut tapes = Tapes::new();
        parse_taped("application/x-ndjson", &body, &mut tapes);
        assert_eq!(tapes.docs.len(), 2);
        assert_eq!(tapes.with(0, "", |node| node.value()), None);
        assert_eq!(tapes.with(1, "[]", |node| node.value()), Some(json!([])));
    }

    /// The cap on a request's entries is enforced while filling: a request
    /// whose `data` need exactly `cap` entries keeps them all; one less and
    /// the `data` that would pass it keeps no tape (and nothing of it stays
    /// on the tape).
    #[test]
    fn the_entries_of_a_request_stop_at_the_cap() {
        let data = r#"{"a":[1,2,{"b":null}],"c":"d"}"#;
        let need = scanned_entries(data).unwrap().len();
        assert_eq!(need, 10);
        let body = format!("[{},{}]", event_with(0, data), event_with(1, data));
        let cases = [
            (2 * need, [true, true]),
            (2 * need - 1, [true, false]),
            (need, [true, false]),
            (need - 1, [false, false]),
        ];
        for (cap, kept) in cases {
            let mut tapes = Tapes::with_cap(cap);
            let texts = parse_taped("application/cloudevents-batch+json", &body, &mut tapes);
            let found: Vec<bool> = (0..2).map(|i| filled_entries(&tapes, i, &texts[i]).is_some()).collect();
            assert_eq!(found, kept, "cap {cap}");
            assert_eq!(tapes.tape.entries.len(), need * kept.iter().filter(|k| **k).count(), "cap {cap}");
        }
    }

    #[test]
    fn the_buffer_is_reused_and_left_in_place() {
        assert_eq!(both(r#"{"a":[1,2,{"b":"c"}],"d":"\u0065"}"#), Some(json!({"a": [1, 2, {"b": "c"}], "d": "e"})));
        assert_eq!(both("[]"), Some(json!([])));
        assert_eq!(both(r#""\u0066""#), Some(json!("f")));
        // A nested call (a format checker validating on this thread) gets a fresh tape.
        let inner = Tape::with("[1]", |outer| (outer.value(), both("{\"x\":2}")));
        assert_eq!(inner, Some((json!([1]), Some(json!({"x": 2})))));
    }
}
