//! Binary mode (CloudEvents HTTP binding §3.1): attributes come from `ce-*`
//! headers, percent-decoded (§3.1.3.2); `Content-Type` becomes
//! `datacontenttype`; the body is the event's data.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::value::RawValue;

use super::error::Found;
use super::validate::{build_event, Origin, Value};
use super::{Events, ParseError, ParseLimits, Text};
use crate::http::Headers;
use crate::problem::FieldError;

/// Whether a media type's data is JSON (`application/json`, `*/*+json`).
/// Compared without allocating (the schema check asks it per event): ASCII
/// case-insensitively, as lowercasing the ASCII letters and comparing did.
pub(crate) fn is_json_media_type(ct: &str) -> bool {
    // The usual value, whole: no parameters, nothing to trim.
    if ct.as_bytes().eq_ignore_ascii_case(b"application/json") {
        return true;
    }
    let essence = ct.split_once(';').map_or(ct, |(essence, _)| essence).trim().as_bytes();
    let suffix = essence.len().checked_sub(5).and_then(|at| essence.get(at..)).unwrap_or_default();
    essence.eq_ignore_ascii_case(b"application/json")
        || essence.eq_ignore_ascii_case(b"text/json")
        || suffix.eq_ignore_ascii_case(b"+json")
}

/// Parses a binary-mode request into one event.
pub fn parse_binary(headers: &Headers, body: &Bytes, limits: &ParseLimits) -> Result<Events, ParseError> {
    if body.len() > limits.max_event_bytes {
        let detail = format!("event data is {} bytes; the limit is {}", body.len(), limits.max_event_bytes);
        return Err(ParseError::EventTooLarge { at: FieldError::pointer("#".into(), None, detail) });
    }
    // One event: its errors start here, the headers' first.
    let mut found = Found::new();
    let mut attrs: Vec<(Cow<'_, str>, Value<'_>)> = Vec::new();
    for (name, value) in headers.iter() {
        if name.len() <= 3 || !name[..3].eq_ignore_ascii_case(b"ce-") {
            continue;
        }
        // Header names are ASCII tokens (httparse checked), so this is UTF-8.
        let attribute = String::from_utf8_lossy(&name[3..]).to_ascii_lowercase();
        match percent_encoding::percent_decode(value).decode_utf8() {
            Ok(text) => attrs.push((Cow::Owned(attribute), Value::Header(text.into_owned()))),
            Err(_) => {
                found.offer(|| FieldError::header(format!("ce-{attribute}"), "must be UTF-8 after percent-decoding"))
            }
        }
    }
    let content_type = match headers.get("content-type").map(|v| std::str::from_utf8(v)) {
        Some(Ok(ct)) => Some(ct.to_string()),
        Some(Err(_)) => {
            found.offer(|| FieldError::header("content-type".into(), "must be ASCII"));
            None
        }
        None => None,
    };
    if let Some(ct) = &content_type {
        attrs.push((Cow::Borrowed("datacontenttype"), Value::Header(ct.clone())));
    }

    // The body becomes `data`: JSON stays JSON (the body's own bytes), text
    // becomes a JSON string, anything else is carried as `data_base64`
    // (JSON format §3.1).
    let is_json = !body.is_empty() && content_type.as_deref().is_some_and(is_json_media_type);
    let body_text = if is_json {
        let text = Text::try_from(body.clone())
            .map_err(|e| ParseError::Json { detail: format!("body is not UTF-8 ({e})"), errors: Vec::new() })?;
        Some(text)
    } else {
        None
    };
    let mut quoted: Option<Box<RawValue>> = None;
    let json_body: Option<&RawValue> = match &body_text {
        Some(text) => Some(
            serde_json::from_str(text.trim())
                .map_err(|e| ParseError::Json { detail: e.to_string(), errors: Vec::new() })?,
        ),
        None if body.is_empty() => None,
        None => {
            let is_text =
                content_type.as_deref().is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/"));
            match std::str::from_utf8(body) {
                Ok(text) if is_text => quoted = serde_json::value::to_raw_value(text).ok(),
                _ => {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
                    attrs.push((Cow::Borrowed("data_base64"), Value::Header(encoded)));
                }
            }
            None
        }
    };
    if let Some(raw) = json_body.or(quoted.as_deref()) {
        attrs.push((Cow::Borrowed("data"), Value::Raw(raw.get())));
    }

    match build_event(&attrs, body_text.as_ref(), Origin::Headers, &mut found) {
        Some(event) if found.is_empty() => Ok(Events::from_buf([event])),
        _ => Err(found.into_error()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::is_json_media_type;

    /// The rule as first written (lowercased copy, then compared).
    fn model(ct: &str) -> bool {
        let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
    }

    #[test]
    fn json_media_types_are_recognised_case_insensitively_without_parameters() {
        for (ct, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            (" text/json ;x=1", true),
            ("application/cloudevents+json", true),
            ("application/vnd.x+JSON", true),
            ("+json", true),
            ("json", false),
            ("application/jsonx", false),
            ("text/plain; a=+json", false),
            ("application/xml", false),
            ("", false),
            ("\u{a0}application/json\u{a0}", true),
            ("applicatIon/json\u{212a}", false),
        ] {
            assert_eq!(is_json_media_type(ct), json, "{ct:?}");
            assert_eq!(model(ct), json, "{ct:?}");
        }
    }

    proptest! {
        #[test]
        fn the_comparison_without_allocation_answers_as_the_lowercased_one(
            ct in "[ \t\u{a0}]{0,2}(application|text|TEXT|Application|x)?/?(json|JSON|jSoN|[a-z.]{0,4}\\+[jJ][sS][oO][nN]|xml)?[ \u{2028}]?(;[ a-z=+jsonJSON]{0,8})?\\PC{0,2}"
        ) {
            prop_assert_eq!(is_json_media_type(&ct), model(&ct), "{:?}", ct);
        }
    }
}
