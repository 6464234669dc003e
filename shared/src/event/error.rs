//! Why a body did not become events, and the status that answers it.

use std::fmt;

use crate::problem::{FieldError, Problem};

/// Envelope errors built per request in all (the first of every failing
/// event is built on top of them). SPEC asks for every invalid attribute
/// of every invalid event; this bound keeps a body of many bad members
/// from answering with megabytes (see [`Found`]).
pub const MAX_LISTED_ERRORS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// `400`: the body is not JSON; for NDJSON, `errors` has every bad line.
    Json { detail: String, errors: Vec<FieldError> },
    /// `422`: events that fail validation, one error per failing attribute,
    /// capped while they were found (see [`Found`]): `errors` holds the
    /// first [`MAX_LISTED_ERRORS`] of the request in document order and the
    /// first error of each later failing event; `cut` counts the others,
    /// which were never built. The body lists `errors`, then, if any were
    /// cut, a last entry saying how many.
    Invalid { errors: Vec<FieldError>, cut: usize },
    /// `413`: an event over the limit of `ParseLimits::max_event_bytes`.
    EventTooLarge { at: FieldError },
    /// `413`: more events than `ParseLimits::max_batch`.
    BatchTooLarge { count: usize, max: usize },
    /// `415`: a `Content-Type` that is no CloudEvents binding.
    UnsupportedMediaType(String),
}

/// The `detail` of the problem answering the error.
impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_problem().detail)
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Json { .. } => 400,
            ParseError::Invalid { .. } => 422,
            ParseError::EventTooLarge { .. } | ParseError::BatchTooLarge { .. } => 413,
            ParseError::UnsupportedMediaType(_) => 415,
        }
    }

    /// The RFC 9457 body answering this error.
    pub fn to_problem(&self) -> Problem {
        match self {
            ParseError::Json { detail, errors } => {
                Problem::new(400, "malformed-json", format!("request body is not valid JSON: {detail}"))
                    .with_errors(errors.clone())
            }
            ParseError::Invalid { errors, cut } => {
                let total = errors.len() + cut;
                let detail = format!("{total} invalid attribute(s); nothing of this request was stored");
                let mut listed = errors.clone();
                if *cut > 0 {
                    listed.push(FieldError {
                        pointer: None,
                        header: None,
                        line: None,
                        keyword: None,
                        detail: format!(
                            "{cut} more error(s) not listed: the first {MAX_LISTED_ERRORS} are, and the first of \
                             every invalid event"
                        ),
                    });
                }
                Problem::new(422, "invalid-event", detail).with_errors(listed)
            }
            ParseError::EventTooLarge { at } => {
                Problem::new(413, "event-too-large", at.detail.clone()).with_errors(vec![at.clone()])
            }
            ParseError::BatchTooLarge { count, max } => {
                Problem::new(413, "batch-too-large", format!("{count} events in one request; the limit is {max}"))
            }
            ParseError::UnsupportedMediaType(ct) => Problem::new(
                415,
                "unsupported-media-type",
                format!(
                    "Content-Type {ct:?} is not accepted; use application/cloudevents+json, \
                     application/cloudevents-batch+json, application/json, application/x-ndjson, \
                     or binary mode with ce-* headers"
                ),
            ),
        }
    }
}

/// The validation errors of one request, capped while they are found, so
/// that a body of many bad attributes costs a count, not an error each: the
/// first [`MAX_LISTED_ERRORS`] are built; past them, each failing event still
/// keeps its first error (so that every refused event says why, and the
/// rejected log can keep it: at most `max_batch` more), and every other is
/// only counted, its pointer and detail never formatted.
#[derive(Debug, Default)]
pub(crate) struct Found {
    errors: Vec<FieldError>,
    cut: usize,
    /// [`Found::total`] when the event being validated began.
    event_start: usize,
}

impl Found {
    pub(crate) fn new() -> Found {
        Found::default()
    }

    /// Marks the start of the next event's errors.
    pub(crate) fn start_event(&mut self) {
        self.event_start = self.total();
    }

    /// Errors found: built and only counted.
    pub(crate) fn total(&self) -> usize {
        self.errors.len() + self.cut
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// Keeps the error `error` builds if the cap allows, or if it is the
    /// event's first; else only counts it (`error` is not called).
    pub(crate) fn offer(&mut self, error: impl FnOnce() -> FieldError) {
        if self.errors.len() < MAX_LISTED_ERRORS || self.total() == self.event_start {
            self.errors.push(error());
        } else {
            self.cut += 1;
        }
    }

    /// The `422` for the errors found.
    pub(crate) fn into_error(self) -> ParseError {
        ParseError::Invalid { errors: self.errors, cut: self.cut }
    }
}
