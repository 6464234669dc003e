//! Binary mode (CloudEvents HTTP binding §3.1): attributes come from `ce-*`
//! headers, percent-decoded (§3.1.3.2); `Content-Type` becomes
//! `datacontenttype`; the body is the event's data.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::value::RawValue;

use super::validate::{build_event, Origin, RawAttr};
use super::{Event, ParseError, ParseLimits};
use crate::http::Headers;
use crate::problem::FieldError;

/// Whether a media type's data is JSON (`application/json`, `*/*+json`).
pub(crate) fn is_json_media_type(ct: &str) -> bool {
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Parses a binary-mode request into one event.
pub fn parse_binary(headers: &Headers, body: &Bytes, limits: &ParseLimits) -> Result<Vec<Event>, ParseError> {
    if body.len() > limits.max_event_bytes {
        let detail =
            format!("event data is {} bytes; the limit is {} (--max-event-bytes)", body.len(), limits.max_event_bytes);
        return Err(ParseError::EventTooLarge { at: FieldError::pointer("#".into(), None, detail) });
    }
    let mut errors = Vec::new();
    let mut attrs: Vec<(Cow<'_, str>, RawAttr<'_>)> = Vec::new();
    for (name, value) in headers.iter() {
        if name.len() <= 3 || !name[..3].eq_ignore_ascii_case(b"ce-") {
            continue;
        }
        // Header names are ASCII tokens (httparse checked), so this is UTF-8.
        let attribute = String::from_utf8_lossy(&name[3..]).to_ascii_lowercase();
        match percent_encoding::percent_decode(value).decode_utf8() {
            Ok(text) => attrs.push((Cow::Owned(attribute), RawAttr::Text(text.into_owned()))),
            Err(_) => {
                errors.push(FieldError::header(format!("ce-{attribute}"), "must be UTF-8 after percent-decoding"))
            }
        }
    }
    let content_type = match headers.get("content-type").map(|v| std::str::from_utf8(v)) {
        Some(Ok(ct)) => Some(ct.to_string()),
        Some(Err(_)) => {
            errors.push(FieldError::header("content-type".into(), "must be ASCII"));
            None
        }
        None => None,
    };
    if let Some(ct) = &content_type {
        attrs.push((Cow::Borrowed("datacontenttype"), RawAttr::Text(ct.clone())));
    }

    // The body becomes `data`: JSON stays JSON, text becomes a JSON string,
    // anything else is carried as `data_base64` (JSON format §3.1).
    let json_data: Option<Box<RawValue>>;
    if body.is_empty() {
        json_data = None;
    } else if content_type.as_deref().is_some_and(is_json_media_type) {
        let text = std::str::from_utf8(body)
            .map_err(|e| ParseError::Json { detail: format!("body is not UTF-8 ({e})"), errors: Vec::new() })?;
        json_data = Some(
            RawValue::from_string(text.trim().to_string())
                .map_err(|e| ParseError::Json { detail: e.to_string(), errors: Vec::new() })?,
        );
    } else {
        let is_text =
            content_type.as_deref().is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/"));
        match std::str::from_utf8(body) {
            Ok(text) if is_text => {
                let quoted = serde_json::to_string(text).unwrap_or_default();
                json_data = RawValue::from_string(quoted).ok();
            }
            _ => {
                json_data = None;
                let encoded = base64::engine::general_purpose::STANDARD.encode(body);
                attrs.push((Cow::Borrowed("data_base64"), RawAttr::Text(encoded)));
            }
        }
    }
    if let Some(raw) = &json_data {
        attrs.push((Cow::Borrowed("data"), RawAttr::Json(raw)));
    }

    match build_event(attrs, Origin::Headers, &mut errors) {
        Some(event) if errors.is_empty() => Ok(vec![event]),
        _ => Err(ParseError::Invalid(errors)),
    }
}
