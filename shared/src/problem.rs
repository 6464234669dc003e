//! RFC 9457 problem details: the body of every error response
//! (`Content-Type: application/problem+json`).

use serde::{Deserialize, Serialize};

/// Media type of a problem body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// One failing part of a request, in the style of RFC 9457 §3's example:
/// a JSON Pointer into the body, or the header that carried the attribute,
/// plus the NDJSON line number where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub detail: String,
}

impl FieldError {
    pub fn pointer(pointer: String, line: Option<u64>, detail: impl Into<String>) -> FieldError {
        FieldError { pointer: Some(pointer), header: None, line, detail: detail.into() }
    }

    pub fn header(header: String, detail: impl Into<String>) -> FieldError {
        FieldError { pointer: None, header: Some(header), line: None, detail: detail.into() }
    }
}

/// A problem details object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:inlet:problem:<reason>`; the reason is what `/stats` counts by.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(status: u16, reason: &str, detail: impl Into<String>) -> Problem {
        Problem {
            type_uri: format!("urn:inlet:problem:{reason}"),
            title: title(status).to_string(),
            status,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Problem {
        self.errors = errors;
        self
    }

    /// The reason part of the type URI.
    pub fn reason(&self) -> &str {
        self.type_uri.strip_prefix("urn:inlet:problem:").unwrap_or(&self.type_uri)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings and integers into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The standard reason phrase of a status code (RFC 9110 §15).
pub fn title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}
