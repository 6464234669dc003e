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
    /// The JSON Schema keyword that failed (`type`, `required`, ...), for
    /// errors found by validating `data` against its type's schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    pub detail: String,
}

impl FieldError {
    pub fn pointer(pointer: String, line: Option<u64>, detail: impl Into<String>) -> FieldError {
        FieldError { pointer: Some(pointer), header: None, line, keyword: None, detail: detail.into() }
    }

    pub fn header(header: String, detail: impl Into<String>) -> FieldError {
        FieldError { pointer: None, header: Some(header), line: None, keyword: None, detail: detail.into() }
    }
}

/// A problem details object.
///
/// The client deserialises it from error bodies. RFC 9457 §3.1 makes every
/// member optional, so a body missing some (from a proxy, say) still reads:
/// `type` defaults to `about:blank` (§3.1.1), the others to empty or 0.
/// The defaults change nothing of how a problem is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:inlet:problem:<reason>`; the reason is what `/stats` counts by.
    #[serde(rename = "type", default = "about_blank")]
    pub type_uri: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

fn about_blank() -> String {
    "about:blank".to_string()
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
    crate::http::status::reason_phrase(status).unwrap_or("Error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serialised_form_is_exactly_this() {
        let p = Problem::new(422, "invalid-event", "1 of 2 events is invalid").with_errors(vec![
            FieldError::pointer("#/1/type".into(), Some(2), "is required"),
            FieldError::header("ce-id".into(), "must be a non-empty string"),
        ]);
        assert_eq!(
            String::from_utf8(p.to_json()).unwrap(),
            r##"{"type":"urn:inlet:problem:invalid-event","title":"Unprocessable Content","status":422,"detail":"1 of 2 events is invalid","errors":[{"pointer":"#/1/type","line":2,"detail":"is required"},{"header":"ce-id","detail":"must be a non-empty string"}]}"##
        );
        let plain = Problem::new(408, "request-timeout", "late");
        assert_eq!(
            String::from_utf8(plain.to_json()).unwrap(),
            r#"{"type":"urn:inlet:problem:request-timeout","title":"Request Timeout","status":408,"detail":"late"}"#
        );
    }

    #[test]
    fn a_problem_reads_back_as_written() {
        let p = Problem::new(422, "invalid-event", "bad").with_errors(vec![FieldError::pointer(
            "#/type".into(),
            Some(3),
            "is required",
        )]);
        assert_eq!(serde_json::from_slice::<Problem>(&p.to_json()).unwrap(), p);
    }

    #[test]
    fn missing_members_take_the_rfc_defaults() {
        let p: Problem = serde_json::from_str(r#"{"detail":"slow down"}"#).unwrap();
        assert_eq!((p.type_uri.as_str(), p.title.as_str(), p.status), ("about:blank", "", 0));
        assert_eq!((p.detail.as_str(), p.errors.len()), ("slow down", 0));
        assert!(serde_json::from_str::<Problem>(r#""not a problem""#).is_err());
    }
}
