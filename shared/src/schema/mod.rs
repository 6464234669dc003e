//! JSON Schemas for events' `data`, one per event `type` (issue 18).
//!
//! - `mod.rs`: [`SchemaSet`], the compiled schemas of one directory, and
//!   [`SchemaSet::check`], which validates the events of one request and
//!   says which are refused and why ([`Refusal`]), with pointers into the
//!   request as the envelope's own errors have them.
//! - `load.rs`: reading a directory (`<type>.json` files, the optional
//!   `index.toml` of modes) and compiling it, offline.
//! - `layout.rs`: where each event of a request sits in its body, so that
//!   an error inside `data` gets its pointer (and NDJSON line).
//!
//! The server (`--schemas DIR`) and the client (`inlet-client validate`,
//! `post --schemas`) use this module alike, so both give the same errors.

mod email;
mod layout;
mod load;
mod tape;

use std::cell::OnceCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::event::{is_json_media_type, DataRef, Event};
use crate::problem::{FieldError, Problem};

pub use layout::Layout;
pub use load::{LoadError, INDEX_FILE};
pub use tape::{DataFilter, Tapes};

/// Errors listed in one refusal at most; the last entry then says how many
/// more there were.
pub const MAX_ERRORS: usize = 100;

/// A `detail` longer than this (a message quoting a large value) is cut.
const MAX_DETAIL_CHARS: usize = 200;

/// What happens to events of a type whose `data` fails its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refused: `422` (the default).
    Enforce,
    /// Accepted, counted and logged (once per interval).
    Warn,
    /// Not validated.
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Off => "off",
        }
    }
}

/// What happens to events of a type that has no schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownTypes {
    /// Accepted without validation (the default).
    #[default]
    Allow,
    /// Refused: `422` at the event's `type`.
    Reject,
}

/// One compiled schema.
pub struct Schema {
    /// The event type it applies to (the file name, percent-decoded).
    pub ty: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// Its `$id`: the URI `dataschema` may name.
    pub id: Option<String>,
    pub mode: Mode,
    /// `2020-12`, `07`, ...: the draft it was compiled for.
    pub draft: &'static str,
    /// The errors, from a `serde_json::Value` of `data`.
    validator: jsonschema::Validator,
    /// The same schema compiled for [`tape::Tape`]: the validity check,
    /// without building a `Value`.
    fast: jsonschema::Validator<tape::Tape>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("ty", &self.ty)
            .field("file", &self.file)
            .field("id", &self.id)
            .field("mode", &self.mode)
            .field("draft", &self.draft)
            .finish_non_exhaustive()
    }
}

/// The type lookup's hash, once per event: FNV-1a's multiply over eight
/// bytes at a time (a word, then the tail as one word with its length), so
/// a 17-byte type is three rounds, not eighteen (SipHash cost a few hundred
/// instructions, byte-wise FNV about a hundred). The maps are filled once,
/// from the schema directory, and never grow from requests: a request's
/// type only probes a fixed table, so a weak hash cannot be turned against
/// them.
struct Fnv(u64);

const FNV_PRIME: u64 = 0x0100_0000_01b3;

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn round(&mut self, word: u64) {
        // The high bits of a product depend on every bit of the word; the
        // rotation brings them down where hashbrown takes its bucket.
        self.0 = (self.0 ^ word).wrapping_mul(FNV_PRIME).rotate_left(29);
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.round(u64::from_le_bytes(word));
        }
        let tail = chunks.remainder();
        let mut word = [0; 8];
        word[..tail.len()].copy_from_slice(tail);
        // The tail's length in its top byte (free: a tail is at most 7
        // bytes), so "a" and "a\0" differ.
        word[7] = tail.len() as u8;
        self.round(u64::from_le_bytes(word));
    }

    fn write_u8(&mut self, byte: u8) {
        self.round(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type TypeMap<V> = HashMap<String, V, BuildHasherDefault<Fnv>>;

/// The schemas of one directory, compiled.
#[derive(Debug, Default)]
pub struct SchemaSet {
    by_type: TypeMap<Schema>,
    /// `$id` → type.
    by_id: TypeMap<String>,
    unknown: UnknownTypes,
    /// The types whose `data` is checked (mode not `off`), as a filter.
    checked: DataFilter,
}

/// One event refused by the schemas: which one (its index in the request),
/// its type, and every reason, each located in the request. A value that
/// can be kept as it is (serialisable), e.g. beside the event's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub index: usize,
    #[serde(rename = "type")]
    pub ty: String,
    pub errors: Vec<FieldError>,
}

/// The outcome of [`SchemaSet::check`] for one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Events refused (types in `enforce` mode, unknown types under
    /// `reject`, a `dataschema` not allowed). Any refusal refuses the
    /// whole request: a batch is all-or-nothing.
    pub refused: Vec<Refusal>,
    /// Events accepted although their `data` failed (types in `warn`
    /// mode): their types, one entry per event.
    pub warned: Vec<String>,
    /// Errors found past [`MAX_ERRORS`] and only counted, never built.
    pub cut: usize,
}

impl Verdict {
    pub fn is_refused(&self) -> bool {
        !self.refused.is_empty()
    }

    /// Errors found in the request: those kept plus those only counted.
    pub fn total_errors(&self) -> usize {
        self.refused.iter().map(|r| r.errors.len()).sum::<usize>() + self.cut
    }

    /// The errors of every refused event, in request order, capped at
    /// [`MAX_ERRORS`]; past the cap a last entry says how many were cut.
    pub fn errors(&self) -> Vec<FieldError> {
        let total = self.total_errors();
        let mut errors: Vec<FieldError> =
            self.refused.iter().flat_map(|r| r.errors.iter().cloned()).take(MAX_ERRORS).collect();
        if total > MAX_ERRORS {
            errors.push(FieldError {
                pointer: None,
                header: None,
                line: None,
                keyword: None,
                detail: format!("{} more error(s) not listed; at most {MAX_ERRORS} are", total - MAX_ERRORS),
            });
        }
        errors
    }

    /// The `422` answering a refused request.
    pub fn to_problem(&self) -> Problem {
        let total = self.total_errors();
        let detail = format!(
            "{} of the request's events failed schema validation ({total} error(s)); nothing of this request was stored",
            self.refused.len()
        );
        Problem::new(422, "schema-violation", detail).with_errors(self.errors())
    }
}

impl SchemaSet {
    /// The same set with this policy for types that have no schema.
    pub fn with_unknown_types(mut self, unknown: UnknownTypes) -> SchemaSet {
        self.unknown = unknown;
        self
    }

    pub fn unknown_types(&self) -> UnknownTypes {
        self.unknown
    }

    /// The schema of a type.
    pub fn get(&self, ty: &str) -> Option<&Schema> {
        self.by_type.get(ty)
    }

    /// The types whose `data` a schema checks (mode not `off`), as a filter
    /// for the parser's tapes ([`Tapes::for_filter`]).
    pub fn data_filter(&self) -> DataFilter {
        self.checked
    }

    /// Every schema, by type.
    pub fn schemas(&self) -> impl Iterator<Item = &Schema> {
        let mut all: Vec<&Schema> = self.by_type.values().collect();
        all.sort_by(|a, b| a.ty.cmp(&b.ty));
        all.into_iter()
    }

    pub fn len(&self) -> usize {
        self.by_type.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// Validates the events of one request, parsed from a body laid out as
    /// `layout` says. Each event's `data` is parsed only when its type has
    /// a schema whose mode is not `off`.
    ///
    /// Memory is bounded while validating, not after: at most
    /// [`MAX_ERRORS`] errors of the request are built (each failing event
    /// keeps at least its first, so every refused event says why); the
    /// rest are only counted (`Verdict::cut`).
    pub fn check(&self, events: &[Event], layout: &Layout<'_>) -> Verdict {
        self.check_in(events, None, &Place::Given(layout))
    }

    /// [`SchemaSet::check`] with the layout worked out by `layout` only if
    /// an error needs it (the server's common case, valid data, then never
    /// looks at the request's headers again).
    pub fn check_lazy<'l>(&self, events: &[Event], layout: impl Fn() -> Layout<'l>) -> Verdict {
        self.check_in(events, None, &Place::Lazy(&layout, OnceCell::new()))
    }

    /// [`SchemaSet::check_lazy`] on the tapes the parser filled with the
    /// events' `data` ([`crate::event::parse_body_into`]): valid `data` is
    /// then decided without reading it again. `tapes` must come from the
    /// parse of exactly these `events`.
    pub fn check_taped<'l>(&self, events: &[Event], tapes: &Tapes, layout: impl Fn() -> Layout<'l>) -> Verdict {
        self.check_in(events, Some(tapes), &Place::Lazy(&layout, OnceCell::new()))
    }

    fn check_in(&self, events: &[Event], tapes: Option<&Tapes>, layout: &Place<'_, '_>) -> Verdict {
        let mut verdict = Verdict::default();
        let mut budget = Budget { left: MAX_ERRORS, cut: 0 };
        for (index, event) in events.iter().enumerate() {
            let mut errors = Vec::new();
            let warned = self.check_event(event, &At { layout, index, tapes }, &mut errors, &mut budget);
            if warned {
                verdict.warned.push(event.ty().to_string());
            }
            if !errors.is_empty() {
                verdict.refused.push(Refusal { index, ty: event.ty().to_string(), errors });
            }
        }
        verdict.cut = budget.cut;
        verdict
    }

    /// Errors that refuse the event go to `errors`; returns whether the
    /// event's `data` failed a schema in `warn` mode (decided without
    /// building any error: they would be thrown away).
    fn check_event(&self, event: &Event, at: &At, errors: &mut Vec<FieldError>, budget: &mut Budget) -> bool {
        let schema = self.by_type.get(event.ty());
        if let Some(uri) = event.dataschema() {
            match (self.by_id.get(uri.trim_end_matches('#')), schema) {
                (None, _) => errors.push(at.attribute("dataschema", format!("{uri:?} is not a registered schema"))),
                (Some(ty), Some(own)) if *ty == own.ty => {}
                (Some(ty), _) => errors.push(at.attribute(
                    "dataschema",
                    format!("{uri:?} is the schema of type {ty:?}, not of this event's type {:?}", event.ty()),
                )),
            }
        }
        let Some(schema) = schema else {
            if self.unknown == UnknownTypes::Reject {
                errors.push(at.attribute("type", format!("no schema is registered for type {:?}", event.ty())));
            }
            return false;
        };
        if schema.mode == Mode::Off {
            return false;
        }
        match schema.mode {
            Mode::Warn => {
                let mut found = Vec::new();
                validate_data(schema, event, at, &mut found, &mut Budget { left: 0, cut: 0 });
                !found.is_empty()
            }
            _ => {
                validate_data(schema, event, at, errors, budget);
                false
            }
        }
    }
}

/// How many more errors of the request may be built, and how many were
/// found past that and only counted.
struct Budget {
    left: usize,
    cut: usize,
}

impl Budget {
    /// Keeps `error` if the budget allows, or if it is the event's first;
    /// else counts it.
    fn offer(&mut self, errors: &mut Vec<FieldError>, first_of_event: bool, error: impl FnOnce() -> FieldError) {
        if self.left > 0 || first_of_event {
            errors.push(error());
            self.left = self.left.saturating_sub(1);
        } else {
            self.cut += 1;
        }
    }
}

/// Validates `data` (absent: `null`) against the schema; a non-JSON
/// `datacontenttype` or `data_base64` cannot be validated and is an error.
fn validate_data(schema: &Schema, event: &Event, at: &At, errors: &mut Vec<FieldError>, budget: &mut Budget) {
    if let Some(ct) = event.datacontenttype().filter(|ct| !is_json(ct)) {
        errors.push(at.attribute(
            "datacontenttype",
            format!("type {:?} has a JSON schema; its data must be JSON, not {ct:?}", schema.ty),
        ));
        return;
    }
    // The common case, valid data, is decided on a tape of the raw text
    // (no `Value`, no error built); the errors are collected from a `Value`
    // only for invalid data, or where the tape cannot stand for one.
    if let Some(DataRef::Json(json)) = event.data() {
        let valid = |data: tape::TapeNode<'_>| schema.fast.is_valid(data);
        let verdict = match at.tapes.and_then(|tapes| tapes.with(at.index, json, valid)) {
            Some(verdict) => Some(verdict),
            None => {
                #[cfg(test)]
                tests::RESCANS.with(|n| n.set(n.get() + 1));
                tape::Tape::with(json, valid)
            }
        };
        if verdict == Some(true) {
            return;
        }
    }
    let value = match event.data() {
        Some(DataRef::Base64(_)) => {
            errors.push(at.attribute(
                "data_base64",
                format!("type {:?} has a JSON schema; its data must be JSON, not base64", schema.ty),
            ));
            return;
        }
        Some(DataRef::Json(json)) => match serde_json::from_str::<Value>(json) {
            Ok(value) => value,
            // The parser checked it is JSON; a number beyond f64 range is
            // the one value serde_json then refuses.
            Err(e) => {
                errors.push(at.data("", Some("type"), format!("data cannot be read as JSON: {e}")));
                return;
            }
        },
        None => Value::Null,
    };
    if schema.validator.is_valid(&value) {
        return;
    }
    let before = errors.len();
    for error in schema.validator.iter_errors(&value) {
        budget.offer(errors, errors.len() == before, || {
            let keyword = error.kind().keyword().to_string();
            at.data(error.instance_path().as_str(), Some(&keyword), cut(error.to_string()))
        });
    }
}

/// Whether `datacontenttype` `ct` says JSON ([`is_json_media_type`]), with
/// the usual value, `application/json` exactly, compared inline first (a
/// call and a case-insensitive comparison less per event).
#[inline(always)]
fn is_json(ct: &str) -> bool {
    ct == "application/json" || is_json_media_type(ct)
}

/// Cuts a detail to [`MAX_DETAIL_CHARS`] characters.
fn cut(mut detail: String) -> String {
    if let Some((i, _)) = detail.char_indices().nth(MAX_DETAIL_CHARS) {
        detail.truncate(i);
        detail.push('…');
    }
    detail
}

/// The request's layout: given, or made once, by the first error.
enum Place<'a, 'l> {
    Given(&'a Layout<'l>),
    Lazy(&'a dyn Fn() -> Layout<'l>, OnceCell<Layout<'l>>),
}

impl<'l> Place<'_, 'l> {
    fn layout(&self) -> &Layout<'l> {
        match self {
            Place::Given(layout) => layout,
            Place::Lazy(make, cell) => cell.get_or_init(make),
        }
    }
}

/// One event's place in the request.
struct At<'a, 'l> {
    layout: &'a Place<'a, 'l>,
    index: usize,
    /// The tapes of the request's `data`, when the parser filled them.
    tapes: Option<&'a Tapes>,
}

impl At<'_, '_> {
    /// An error at one of the event's attributes.
    fn attribute(&self, name: &str, detail: String) -> FieldError {
        self.layout.layout().attribute(self.index, name, detail)
    }

    /// An error inside `data`, at the JSON Pointer `path` within it.
    fn data(&self, path: &str, keyword: Option<&str>, detail: String) -> FieldError {
        let mut error = self.layout.layout().data(self.index, path, detail);
        error.keyword = keyword.map(str::to_string);
        error
    }
}

#[cfg(test)]
mod tests;
