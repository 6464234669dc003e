//! The tape scanner as it was before the reader of one loop with its
//! keys read inline (`super::read`), kept for the tests only: a
//! differential test holds the new reader to exactly what this one read,
//! entry for entry, where it ended and where it gave up.

use serde_json::{Number, Value};

use super::{has_duplicate_keys, key_filter, string_stop, Doc, Entry, Tape, Text, SCAN_DEPTH};

/// The old scanner (see the module's note).
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

/// An array or object the scanner is inside of.
struct Open {
    /// Its entry on the tape.
    at: usize,
    /// Its elements, or members, so far.
    count: usize,
    /// An object's key filter (see [`key_filter`]), and whether two keys
    /// fell on one bit.
    /// The filter's 128 bits as two words: a bit is set with one shift of
    /// a `u64` (a `u128` shift is a few instructions more per key).
    seen: [u64; 2],
    clash: bool,
    object: bool,
}

impl Scan<'_, '_> {
    /// One value at `pos` (after whitespace), read up to its last byte.
    fn value(&mut self) -> Option<()> {
        let mut stack: smallvec::SmallVec<[Open; 16]> = smallvec::SmallVec::new();
        'value: loop {
            // A value at `pos`.
            if self.tape.entries.len() >= self.cap {
                return None;
            }
            match self.peek()? {
                open @ (b'{' | b'[') => {
                    if stack.len() >= SCAN_DEPTH {
                        return None;
                    }
                    let object = open == b'{';
                    let at = self.tape.entries.len();
                    self.tape.entries.push(if object {
                        Entry::Object { len: 0, end: 0 }
                    } else {
                        Entry::Array { len: 0, end: 0 }
                    });
                    self.pos += 1;
                    let mut top = Open { at, count: 0, seen: [0; 2], clash: false, object };
                    let end = if object { b'}' } else { b']' };
                    if self.peek()? == end {
                        self.pos += 1;
                        close(self.tape, at, 0, self.lo)?;
                    } else {
                        if object {
                            self.key(&mut top)?;
                        }
                        stack.push(top);
                        continue 'value;
                    }
                }
                b'"' => {
                    let text = self.string()?;
                    self.tape.entries.push(Entry::String(text));
                }
                b't' => self.literal(b"true", Entry::Bool(true))?,
                b'f' => self.literal(b"false", Entry::Bool(false))?,
                b'n' => self.literal(b"null", Entry::Null)?,
                _ => self.number()?,
            }
            // After a value: the next one in the innermost container, or
            // its end (and then the same for the one around it).
            while let Some(top) = stack.last_mut() {
                top.count += 1;
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        if top.object {
                            self.key(top)?;
                        }
                        continue 'value;
                    }
                    b'}' if top.object => {}
                    b']' if !top.object => {}
                    _ => return None,
                }
                self.pos += 1;
                let Open { at, count, clash, .. } = *top;
                stack.pop();
                close(self.tape, at, count, self.lo)?;
                if clash {
                    let doc = Doc {
                        input: self.text.get(self.base..)?,
                        entries: self.tape.entries.get(self.lo..)?,
                        arena: &self.tape.arena,
                    };
                    if has_duplicate_keys(&doc, at - self.lo) {
                        return None;
                    }
                }
            }
            return Some(());
        }
    }

    /// An object's key and its colon, at `pos`.
    fn key(&mut self, object: &mut Open) -> Option<()> {
        // The cap holds for keys too, so the entries never pass it (and
        // their vector never doubles past it).
        if self.tape.entries.len() >= self.cap || self.peek()? != b'"' {
            return None;
        }
        let key = self.string()?;
        // The key's text: in the input just before its closing quote (no
        // escapes), or in the arena (decoded).
        let text = if key.in_arena {
            self.tape.arena.as_bytes().get(key.start as usize..(key.start + key.len) as usize)?
        } else {
            self.input.get(self.pos - 1 - key.len as usize..self.pos - 1)?
        };
        let filter = key_filter(text);
        let (word, bit) = (&mut object.seen[(filter >> 6) as usize & 1], 1u64 << (filter & 63));
        object.clash |= *word & bit != 0;
        *word |= bit;
        self.tape.entries.push(Entry::String(key));
        // Compact JSON has the colon right after the key.
        if self.input.get(self.pos) != Some(&b':') && self.peek()? != b':' {
            return None;
        }
        self.pos += 1;
        Some(())
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        // Compact JSON: the byte here is no whitespace (all of it is at or
        // below a space), so no loop.
        match self.input.get(self.pos) {
            Some(&b) if b > b' ' => return Some(b),
            _ => self.skip_ws(),
        }
        self.input.get(self.pos).copied()
    }

    fn literal(&mut self, word: &[u8], entry: Entry) -> Option<()> {
        let end = self.pos + word.len();
        (self.input.get(self.pos..end)? == word).then_some(())?;
        self.pos = end;
        self.tape.entries.push(entry);
        Some(())
    }

    /// A number: integers by hand (as serde_json reads them: a `u64`, a
    /// negative `i64`, `-0` a float); floats, and integers of 20 digits or
    /// more, by serde_json's own number parser.
    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        let negative = self.input.get(start) == Some(&b'-');
        let digits = start + usize::from(negative);
        let mut end = digits;
        let mut magnitude = 0u64;
        while let Some(&d @ b'0'..=b'9') = self.input.get(end) {
            magnitude = magnitude.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            end += 1;
        }
        let count = end - digits;
        let float = matches!(self.input.get(end), Some(b'.' | b'e' | b'E'));
        let number = match (float, count) {
            // Not a number, or a leading zero: serde_json refuses both.
            (false, 0) => return None,
            (false, 2..) if self.input.get(digits) == Some(&b'0') => return None,
            (false, ..=19) if !negative => Number::from(magnitude),
            // `(m as i64).wrapping_neg()` is serde_json's own reading; where it is
            // not negative (`-0`, past `i64::MIN`) serde_json reads a float.
            (false, ..=19) if (magnitude as i64).wrapping_neg() < 0 => Number::from((magnitude as i64).wrapping_neg()),
            _ => {
                while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.input.get(end) {
                    end += 1;
                }
                let text = self.input.get(start..end)?;
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
        self.pos = end;
        self.tape.entries.push(Entry::Number(number));
        Some(())
    }

    /// A string at `pos` (its opening quote).
    #[inline(always)]
    fn string(&mut self) -> Option<Text> {
        let start = self.pos + 1;
        let rest = self.input.get(start..)?;
        let end = string_stop(rest)?;
        if rest.get(end) == Some(&b'"') {
            self.pos = start + end + 1;
            // Offsets within the input, whose length fits a u32 (checked
            // where a scan starts): the casts are lossless.
            return Some(Text { in_arena: false, start: (start - self.base) as u32, len: end as u32 });
        }
        // Escapes (or a control character, which serde_json refuses): find
        // the closing quote, let serde_json decode.
        let mut i = start + end;
        loop {
            match self.input.get(i)? {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        let decoded: String = serde_json::from_slice(self.input.get(self.pos..=i)?).ok()?;
        self.pos = i + 1;
        let (at, len) = (u32::try_from(self.tape.arena.len()).ok()?, u32::try_from(decoded.len()).ok()?);
        self.tape.arena.push_str(&decoded);
        Some(Text { in_arena: true, start: at, len })
    }
}

/// Counts and closes a container, as the old scanner did.
fn close(tape: &mut Tape, at: usize, count: usize, lo: usize) -> Option<()> {
    let len = u32::try_from(count).ok()?;
    let end = u32::try_from(tape.entries.len() - lo).ok()?;
    match tape.entries.get_mut(at) {
        Some(Entry::Array { len: l, end: e } | Entry::Object { len: l, end: e }) => {
            (*l, *e) = (len, end);
            Some(())
        }
        _ => None,
    }
}

/// What the old scanner read of the value at `start` in `text` onto
/// `tape` (the arguments as `super::read` takes them): the offset past it.
pub(super) fn read(tape: &mut Tape, text: &str, start: usize, base: usize, lo: usize, cap: usize) -> Option<usize> {
    let mut scan = Scan { tape, text, input: text.as_bytes(), pos: start, base, lo, cap };
    scan.value()?;
    Some(scan.pos)
}
