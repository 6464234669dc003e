//! Why a body did not become events, and the status that answers it.

use std::fmt;

use crate::problem::{FieldError, Problem};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// `400`: the body is not JSON; for NDJSON, `errors` has every bad line.
    Json { detail: String, errors: Vec<FieldError> },
    /// `422`: events that fail validation; one entry per failing attribute.
    Invalid(Vec<FieldError>),
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
            ParseError::Invalid(_) => 422,
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
            ParseError::Invalid(errors) => {
                let detail = format!("{} invalid attribute(s); nothing of this request was stored", errors.len());
                Problem::new(422, "invalid-event", detail).with_errors(errors.clone())
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
