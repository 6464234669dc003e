//! `POST /events`: parse and validate the body into events (all-or-nothing),
//! store them, and answer `202` only once the store says they are safe.
//! `GET /events`: read stored events back, filtered and paged (SPEC §3.2).

use bytes::{BufMut, Bytes, BytesMut};
use inlet_shared::event::{parse_body, BodyKind, Event};
use inlet_shared::http::{Request, Response};
use inlet_shared::problem::{FieldError, Problem};

use super::App;
use crate::auth::{Denied, Principal};
use crate::respond;
use crate::store::{Query, StoreError};

/// `limit` when the query does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest `limit` accepted.
pub const MAX_LIMIT: usize = 10_000;

/// A store failure: `503` with `Retry-After`. The body says only the
/// error's short reason (e.g. "the store is full"); its cause (SQLite or
/// NATS texts, paths) goes to the log, not to the client.
fn store_unavailable(app: &App, e: &StoreError, writing: bool) -> Response {
    tracing::warn!(kind = ?e.kind(), "refusing request: {}", e.chain());
    let outcome = if writing { "nothing was stored, retry later" } else { "retry later" };
    let detail = format!("{}; {outcome}", e.reason());
    let mut res = app.reject(Problem::new(503, "store-unavailable", detail));
    res.retry_after = Some(1);
    res
}

pub async fn ingest(app: &App, req: &Request, principal: &Principal) -> Response {
    let events = match parse_body(&req.headers, &req.body, &app.parse_limits) {
        Ok(events) => events,
        Err(e) => return app.reject(e.to_problem()),
    };
    let token = principal.name();
    // Sources, then the quota: a batch refused for its sources takes
    // nothing from the quota, and nothing of a refused batch is stored.
    if let Err(denied) = admit(req, principal, &events) {
        if let Some(token) = token {
            app.stats.record_token_refused(token, events.len());
        }
        return app.deny(&denied);
    }
    let appended = match app.store.append(&events, token.map(|t| &**t)).await {
        Ok(appended) => appended,
        Err(e) => {
            if let Some(token) = token {
                app.stats.record_token_refused(token, events.len());
            }
            return store_unavailable(app, &e, true);
        }
    };
    let fresh = events.iter().zip(&appended.duplicate).filter(|(_, dup)| !**dup).map(|(e, _)| &*e.ty);
    app.stats.record_accepted(fresh, appended.duplicates());
    app.stats.record_token_accepted(principal, appended.accepted(), appended.duplicates());
    respond::json(202, accepted_body(appended.accepted(), appended.duplicates()))
}

/// Whether the token may write these events: every `source` inside its
/// prefixes (`403` pointing at each one outside), then the quota (`429`,
/// or `413` for a batch over the burst).
fn admit(req: &Request, principal: &Principal, events: &[Event]) -> Result<(), Denied> {
    if principal.source_prefixes().is_some() {
        let outside: Vec<usize> = (0..events.len()).filter(|&i| !principal.allows_source(&events[i].source)).collect();
        if !outside.is_empty() {
            return Err(principal.source_denied(source_errors(req, principal, &outside)));
        }
    }
    principal.try_take(events.len())
}

/// Where each refused `source` came from, as the parser locates errors: the
/// `ce-source` header (binary mode), `#/source` (one event), `#/<i>/source`
/// (an array), or `#/source` with its line (NDJSON).
fn source_errors(req: &Request, principal: &Principal, outside: &[usize]) -> Vec<FieldError> {
    let prefixes: Vec<&str> = principal.source_prefixes().unwrap_or_default().iter().map(|p| &**p).collect();
    let detail = format!("this token may write only sources starting with {}", prefixes.join(", "));
    let kind = BodyKind::of(&req.headers).ok();
    let ndjson_lines: Vec<u64> = if kind == Some(BodyKind::Ndjson) {
        // The lines that hold events: the parser skips blank ones.
        req.body
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(i, _)| i as u64 + 1)
            .collect()
    } else {
        Vec::new()
    };
    let first = req.body.iter().find(|b| !b.is_ascii_whitespace());
    let single = kind == Some(BodyKind::Structured) || (kind == Some(BodyKind::Json) && first == Some(&b'{'));
    outside
        .iter()
        .map(|&i| match kind {
            Some(BodyKind::Binary) => FieldError::header("ce-source".to_string(), detail.clone()),
            Some(BodyKind::Ndjson) => {
                FieldError::pointer("#/source".into(), ndjson_lines.get(i).copied(), detail.clone())
            }
            _ if single => FieldError::pointer("#/source".into(), None, detail.clone()),
            _ => FieldError::pointer(format!("#/{i}/source"), None, detail.clone()),
        })
        .collect()
}

/// `{"accepted":N,"duplicates":M}`; the answers to a single event are
/// pre-built.
fn accepted_body(accepted: usize, duplicates: usize) -> Bytes {
    match (accepted, duplicates) {
        (1, 0) => Bytes::from_static(b"{\"accepted\":1,\"duplicates\":0}"),
        (0, 1) => Bytes::from_static(b"{\"accepted\":0,\"duplicates\":1}"),
        _ => {
            let mut body = Vec::with_capacity(48);
            body.extend_from_slice(b"{\"accepted\":");
            body.extend_from_slice(itoa::Buffer::new().format(accepted).as_bytes());
            body.extend_from_slice(b",\"duplicates\":");
            body.extend_from_slice(itoa::Buffer::new().format(duplicates).as_bytes());
            body.push(b'}');
            Bytes::from(body)
        }
    }
}

/// Parses `type`, `source`, `after`, `limit` from a query string.
fn parse_query(query: &[u8]) -> Result<Query, String> {
    let mut q = Query { ty: None, source: None, token: None, after: 0, limit: DEFAULT_LIMIT };
    for (key, value) in form_urlencoded::parse(query) {
        match &*key {
            "type" => q.ty = Some(value.into_owned()),
            "source" => q.source = Some(value.into_owned()),
            "token" => q.token = Some(value.into_owned()),
            "after" => {
                q.after = value.parse().map_err(|_| format!("after must be a sequence number, got {value:?}"))?;
            }
            "limit" => {
                q.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| format!("limit must be an integer from 1 to {MAX_LIMIT}, got {value:?}"))?;
            }
            _ => {}
        }
    }
    Ok(q)
}

pub async fn query(app: &App, req: &Request) -> Response {
    let query = match parse_query(req.query()) {
        Ok(q) => q,
        Err(detail) => return app.reject(Problem::new(400, "invalid-query", detail)),
    };
    let page = match app.store.query(query).await {
        Ok(page) => page,
        Err(e) => return store_unavailable(app, &e, false),
    };
    let size: usize = page.events.iter().map(|e| e.json.len() + 64).sum();
    let mut body = BytesMut::with_capacity(size + 32);
    body.put_slice(b"{\"events\":[");
    for (i, e) in page.events.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(b"{\"seq\":");
        body.put_slice(itoa::Buffer::new().format(e.seq).as_bytes());
        body.put_slice(b",\"received_at\":\"");
        body.put_slice(e.received_at.as_bytes());
        body.put_slice(b"\",\"token\":");
        match &e.token {
            // Names from a tokens file are `A-Z a-z 0-9 . _ -`; anything
            // else (a JetStream message published by another program) is
            // escaped.
            Some(name) if name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b)) => {
                body.put_u8(b'"');
                body.put_slice(name.as_bytes());
                body.put_u8(b'"');
            }
            Some(name) => body.put_slice(&serde_json::to_vec(&**name).unwrap_or_else(|_| b"null".to_vec())),
            None => body.put_slice(b"null"),
        }
        body.put_slice(b",\"event\":");
        body.put_slice(&e.json);
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
    fn accepted_bodies() {
        for (a, d) in [(1, 0), (0, 1), (0, 0), (2, 3), (1000, 0)] {
            let expected = format!("{{\"accepted\":{a},\"duplicates\":{d}}}");
            assert_eq!(accepted_body(a, d), expected.as_bytes());
        }
    }

    #[test]
    fn query_parameters() {
        let q = parse_query(b"type=a.b&source=%2Fs%201&after=5&limit=7&other=x&token=shop").unwrap();
        let expected = Query {
            ty: Some("a.b".into()),
            source: Some("/s 1".into()),
            token: Some("shop".into()),
            after: 5,
            limit: 7,
        };
        assert_eq!(q, expected);
        assert_eq!(parse_query(b"").unwrap().limit, DEFAULT_LIMIT);
        assert!(parse_query(b"limit=0").is_err());
        assert!(parse_query(b"limit=10001").is_err());
        assert!(parse_query(b"after=-1").is_err());
    }
}
