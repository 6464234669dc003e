//! Rejected events (`--keep-rejected`): which events of a refused request
//! are kept, with what, and `GET /rejected`, which reads them back.
//!
//! Kept: the events refused for what they hold. A `422` `schema-violation`
//! keeps each event the schemas refused; a `422` `invalid-event` keeps each
//! event whose envelope failed (the body's JSON parsed, so each event's
//! text is known). The other events of the same request were refused only
//! because a batch is all-or-nothing: they are not kept. Requests refused
//! before their events are known (`400` malformed JSON, `413`, `415`) or for
//! who sent them (`401`, `403`, `429`) keep nothing.

use bytes::{BufMut, Bytes, BytesMut};
use inlet_shared::event::{BodyKind, Event};
use inlet_shared::http::{Request, Response};
use inlet_shared::problem::{FieldError, Problem};
use inlet_shared::schema::{Verdict, MAX_ERRORS};
use serde_json::value::RawValue;

use super::events::parse_query;
use super::App;
use crate::auth::Principal;
use crate::respond;
use crate::store::rejected::Rejected;
use crate::store::{now_ms, now_rfc3339};

/// `Content-Type` values are kept up to this many bytes.
const MAX_CONTENT_TYPE: usize = 256;

/// The refused request, as far as keeping its events goes.
struct Refused<'a> {
    req: &'a Request,
    kind: BodyKind,
    token: Option<String>,
    reason: &'static str,
    /// When the request was refused: one instant for all its rows.
    received_ms: i64,
    received_at: String,
}

impl<'a> Refused<'a> {
    fn new(req: &'a Request, kind: BodyKind, principal: &Principal, reason: &'static str) -> Refused<'a> {
        let token = principal.name().map(|t| t.to_string());
        Refused { req, kind, token, reason, received_ms: now_ms(), received_at: now_rfc3339() }
    }
}

/// Keeps the events a schema refused (`--keep-rejected`); nothing when the
/// store keeps no rejected events.
pub fn keep_schema_refusals(
    app: &App,
    req: &Request,
    body: &[u8],
    principal: &Principal,
    events: &[Event],
    verdict: &Verdict,
) {
    let Some(log) = app.store.rejected() else { return };
    let Ok(kind) = BodyKind::of(&req.headers) else { return };
    let refused = Refused::new(req, kind, principal, "schema-violation");
    let items = Items::of(kind, body);
    let rows = verdict
        .refused
        .iter()
        .filter_map(|r| {
            let text = match kind {
                // Binary mode: the event as its attributes and data.
                BodyKind::Binary => String::from_utf8(events.get(r.index)?.to_json()).ok()?,
                _ => items.event(r.index)?.to_string(),
            };
            Some(refused.row(&text, &r.errors))
        })
        .collect();
    log.keep(rows);
}

/// Keeps the events of a `422` `invalid-event` (`--keep-rejected`): the
/// errors are grouped by the event they point into.
pub fn keep_invalid(app: &App, req: &Request, body: &[u8], principal: &Principal, errors: &[FieldError]) {
    let Some(log) = app.store.rejected() else { return };
    let Ok(kind) = BodyKind::of(&req.headers) else { return };
    let refused = Refused::new(req, kind, principal, "invalid-event");
    let items = Items::of(kind, body);
    // Events in request order (batch index, or NDJSON line), each with its errors.
    let mut groups: std::collections::BTreeMap<usize, Vec<FieldError>> = std::collections::BTreeMap::new();
    for e in errors {
        let key = match (&items, kind) {
            (_, BodyKind::Binary) | (Items::Single(_), _) => Some(0),
            (Items::Array(_), _) => e.pointer.as_deref().and_then(array_index),
            (Items::Lines { .. }, _) => e.line.and_then(|l| usize::try_from(l).ok()),
            (Items::None, _) => None,
        };
        if let Some(key) = key {
            groups.entry(key).or_default().push(e.clone());
        }
    }
    let rows = groups
        .into_iter()
        .filter_map(|(key, errors)| {
            let text = match (&items, kind) {
                (_, BodyKind::Binary) => binary_event(req, body),
                (Items::Lines { .. }, _) => items.line(key)?.to_string(),
                _ => items.event(key)?.to_string(),
            };
            Some(refused.row(&text, &errors))
        })
        .collect();
    log.keep(rows);
}

/// `#/3/...` → 3; `#` (the body itself is not an array) → none.
fn array_index(pointer: &str) -> Option<usize> {
    let rest = pointer.strip_prefix("#/")?;
    rest.split('/').next()?.parse().ok()
}

impl Refused<'_> {
    fn row(&self, text: &str, errors: &[FieldError]) -> Rejected {
        let text = text.trim();
        // The event as sent when it is an object; else what was sent, as a
        // JSON string.
        let object = text.starts_with('{') && serde_json::from_str::<&RawValue>(text).is_ok();
        let (event, ty, source) = if object {
            #[derive(serde::Deserialize)]
            struct Keys {
                #[serde(rename = "type")]
                ty: Option<serde_json::Value>,
                source: Option<serde_json::Value>,
            }
            let keys = serde_json::from_str::<Keys>(text).ok();
            let string = |v: Option<serde_json::Value>| match v {
                Some(serde_json::Value::String(s)) => Some(s),
                _ => None,
            };
            let (ty, source) = keys.map(|k| (string(k.ty), string(k.source))).unwrap_or_default();
            (text.to_string(), ty, source)
        } else {
            (serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into()), None, None)
        };
        let errors = &errors[..errors.len().min(MAX_ERRORS)];
        let content_type = self
            .req
            .headers
            .get("content-type")
            .map(|ct| {
                let ct = String::from_utf8_lossy(ct);
                let mut end = ct.len().min(MAX_CONTENT_TYPE);
                while !ct.is_char_boundary(end) {
                    end -= 1;
                }
                ct[..end].to_string()
            })
            .unwrap_or_default();
        Rejected {
            received_ms: self.received_ms,
            received_at: self.received_at.clone(),
            token: self.token.clone(),
            mode: mode_name(self.kind).to_string(),
            content_type,
            reason: self.reason.to_string(),
            ty,
            source,
            errors: serde_json::to_string(errors).unwrap_or_else(|_| "[]".into()),
            event,
        }
    }
}

fn mode_name(kind: BodyKind) -> &'static str {
    match kind {
        BodyKind::Structured => "structured",
        BodyKind::Batch => "batch",
        BodyKind::Json => "json",
        BodyKind::Ndjson => "ndjson",
        BodyKind::Binary => "binary",
    }
}

/// The events' texts in a structured body.
enum Items<'a> {
    /// One event: the whole body.
    Single(&'a str),
    /// An array: each element's text.
    Array(Vec<&'a RawValue>),
    /// NDJSON: every line (cut once, so that finding many events stays
    /// linear in the body), and which of them hold events (not blank).
    Lines { lines: Vec<&'a str>, events: Vec<usize> },
    /// Binary mode, or a body that is not UTF-8 or not an array.
    None,
}

impl<'a> Items<'a> {
    fn of(kind: BodyKind, body: &'a [u8]) -> Items<'a> {
        let Ok(text) = std::str::from_utf8(body) else { return Items::None };
        let array = || serde_json::from_str::<Vec<&RawValue>>(text).map(Items::Array).unwrap_or(Items::None);
        match kind {
            BodyKind::Binary => Items::None,
            BodyKind::Structured => Items::Single(text),
            BodyKind::Batch => array(),
            BodyKind::Json if text.trim_start().starts_with('[') => array(),
            BodyKind::Json => Items::Single(text),
            BodyKind::Ndjson => {
                let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
                let events =
                    (0..lines.len()).filter(|&i| !inlet_shared::event::is_blank_line(lines[i].as_bytes())).collect();
                Items::Lines { lines, events }
            }
        }
    }

    /// The text of the `index`-th event (NDJSON: blank lines skipped, as
    /// the parser counts events).
    fn event(&self, index: usize) -> Option<&'a str> {
        match self {
            Items::Single(text) => (index == 0).then_some(*text),
            Items::Array(items) => items.get(index).map(|i| i.get()),
            Items::Lines { lines, events } => events.get(index).and_then(|&i| lines.get(i)).copied(),
            Items::None => None,
        }
    }

    /// The text of line `number` (from 1) of an NDJSON body.
    fn line(&self, number: usize) -> Option<&'a str> {
        let Items::Lines { lines, .. } = self else { return None };
        lines.get(number.checked_sub(1)?).copied()
    }
}

/// A binary-mode event whose envelope failed, as a JSON object: each `ce-*`
/// header as an attribute (percent-decoded where that gives UTF-8),
/// `Content-Type` as `datacontenttype`, and the body as `data` (JSON when
/// it is JSON, else a string, else `data_base64`).
fn binary_event(req: &Request, body: &[u8]) -> String {
    use base64::Engine;
    let mut object = serde_json::Map::new();
    for (name, value) in req.headers.iter() {
        if name.len() <= 3 || !name[..3].eq_ignore_ascii_case(b"ce-") {
            continue;
        }
        let attribute = String::from_utf8_lossy(&name[3..]).to_ascii_lowercase();
        let value = match percent_encoding::percent_decode(value).decode_utf8() {
            Ok(text) => text.into_owned(),
            Err(_) => String::from_utf8_lossy(value).into_owned(),
        };
        object.insert(attribute, serde_json::Value::String(value));
    }
    if let Some(ct) = req.headers.get("content-type") {
        object.insert("datacontenttype".into(), serde_json::Value::String(String::from_utf8_lossy(ct).into_owned()));
    }
    if !body.is_empty() {
        match (serde_json::from_slice::<serde_json::Value>(body), std::str::from_utf8(body)) {
            (Ok(json), _) => object.insert("data".into(), json),
            (Err(_), Ok(text)) => object.insert("data".into(), serde_json::Value::String(text.into())),
            (Err(_), Err(_)) => object.insert(
                "data_base64".into(),
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            ),
        };
    }
    serde_json::Value::Object(object).to_string()
}

/// `GET /rejected`: the kept rejected events, filtered and paged like `GET
/// /events`. A server without `--keep-rejected` answers an empty page with
/// `"enabled":false` (as `/schemas` does without `--schemas`).
pub async fn query(app: &App, req: &Request) -> Response {
    let query = match parse_query(req.query()) {
        Ok(q) => q,
        Err(detail) => return app.reject(Problem::new(400, "invalid-query", detail)),
    };
    let Some(log) = app.store.rejected() else {
        return respond::json(200, Bytes::from_static(b"{\"enabled\":false,\"rejected\":[],\"next_after\":null}"));
    };
    let page = match log.page(query, app.max_page_bytes).await {
        Ok(page) => page,
        Err(e) => {
            tracing::warn!(kind = ?e.kind(), "refusing request: {}", e.chain());
            let mut res = app.reject(Problem::new(503, "store-unavailable", format!("{}; retry later", e.reason())));
            res.retry_after = Some(1);
            return res;
        }
    };
    let mut body = BytesMut::with_capacity(256);
    body.put_slice(b"{\"enabled\":true,\"rejected\":[");
    for (i, kept) in page.rows.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        let r = &kept.row;
        let head = serde_json::json!({
            "seq": kept.seq,
            "received_at": r.received_at,
            "token": r.token,
            "reason": r.reason,
            "mode": r.mode,
            "content_type": r.content_type,
        });
        let head = head.to_string();
        // `{...head...,"errors":[...],"event":...}`: the stored JSON texts as they are.
        body.put_slice(&head.as_bytes()[..head.len() - 1]);
        body.put_slice(b",\"errors\":");
        body.put_slice(r.errors.as_bytes());
        body.put_slice(b",\"event\":");
        body.put_slice(r.event.as_bytes());
        body.put_u8(b'}');
    }
    body.put_slice(b"],\"next_after\":");
    match page.next_after {
        Some(n) => body.put_slice(itoa::Buffer::new().format(n).as_bytes()),
        None => body.put_slice(b"null"),
    }
    body.put_u8(b'}');
    respond::json(200, body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_found_in_each_layout() {
        let batch = br#" [ {"a":1} , 42, {"b":[2]} ] "#;
        let items = Items::of(BodyKind::Batch, batch);
        assert_eq!(
            (items.event(0), items.event(1), items.event(2)),
            (Some(r#"{"a":1}"#), Some("42"), Some(r#"{"b":[2]}"#))
        );
        assert_eq!(items.event(3), None);
        let ndjson = b"{\"a\":1}\r\n\n  \n{\"b\":2}\n";
        let items = Items::of(BodyKind::Ndjson, ndjson);
        assert_eq!(
            (items.event(1), items.line(4), items.line(1)),
            (Some("{\"b\":2}"), Some("{\"b\":2}"), Some("{\"a\":1}"))
        );
        assert_eq!(items.line(0), None);
        assert_eq!(array_index("#/12/data/x"), Some(12));
        assert_eq!(array_index("#/3"), Some(3));
        assert_eq!(array_index("#"), None);
    }
}
