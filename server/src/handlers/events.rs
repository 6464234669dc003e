//! `POST /events`: parse and validate the body into events (all-or-nothing),
//! store them, and answer `202` only once the store says they are safe.
//! `GET /events`: read stored events back, filtered and paged (SPEC §3.2).

use bytes::{BufMut, Bytes, BytesMut};
use inlet_shared::event::{parse_body_into, BodyKind, Event, Events, ParseError};
use inlet_shared::http::coding::StreamEncoder;
use inlet_shared::http::{BodySender, BodyStream, Request, Response};
use inlet_shared::problem::{FieldError, Problem};
use inlet_shared::schema::{Layout, SchemaSet, Tapes, Verdict};

use super::{compress, rejected, App};
use crate::auth::{Denied, Principal};
use crate::respond;
use crate::store::{ErrorKind, PageItem, PageStream, Query, StoreError, StoredEvent};

/// `limit` when the query does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest `limit` accepted.
pub const MAX_LIMIT: usize = 10_000;

/// A store failure: `503` with `Retry-After`. The body says only the
/// error's short reason (e.g. "the store is full"); its cause (SQLite or
/// NATS texts, paths) goes to the log, not to the client.
fn store_unavailable(app: &App, e: &StoreError, writing: bool) -> Response {
    tracing::warn!(kind = ?e.kind(), "refusing request: {}", e.chain());
    if e.kind() == ErrorKind::TooLarge {
        // It can never fit: no `Retry-After`, a retry cannot help.
        let detail = format!("{}; nothing was stored", e.reason());
        return app.reject(Problem::new(413, "request-over-store-cap", detail));
    }
    let detail = if writing && e.kind() == ErrorKind::Unanswered {
        // The events went out and no answer came: they may be stored.
        format!("{}: the events may have been stored; retry with the same ids (duplicates are detected)", e.reason())
    } else {
        let outcome = if writing { "nothing was stored, retry later" } else { "retry later" };
        format!("{}; {outcome}", e.reason())
    };
    let mut res = app.reject(Problem::new(503, "store-unavailable", detail));
    res.retry_after = Some(1);
    res
}

pub async fn ingest(app: &App, req: &Request, principal: &Principal) -> Response {
    // Content codings undone first (within --max-decoded-body); the parsing
    // and its limits then see the decoded body only.
    let body = match compress::decode_request(app, req).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    // The parser pushes the events (one inline, some 200 bytes) where this
    // future keeps them: neither they nor a `Result` holding them are moved.
    let mut events = Events::new();
    let warned = match validate(app, req, &body, principal, &mut events) {
        Ok(warned) => warned,
        Err(refused) => return *refused,
    };
    let token = principal.name();
    // A store that can write at once (memory) does, with no boxed future;
    // the others are awaited.
    let name = token.map(|t| &**t);
    let stored = match app.store.append_now(&events, name) {
        Some(stored) => stored,
        None => app.store.append(&events, name).await,
    };
    let appended = match stored {
        Ok(appended) => appended,
        Err(e) => {
            if let Some(token) = token {
                app.stats.record_token_refused(token, events.len());
            }
            return store_unavailable(app, &e, true);
        }
    };
    let fresh = events.iter().zip(&appended.duplicate).filter(|(_, dup)| !**dup).map(|(e, _)| e.ty());
    app.stats.record_accepted(fresh, appended.duplicates());
    app.stats.record_token_accepted(principal, appended.accepted(), appended.duplicates());
    if !warned.is_empty() {
        app.stats.record_schema_warned(&warned);
        app.schemas.log_warned(&warned, |ty| app.stats.schema_counts(ty).warned);
    }
    respond::json(202, accepted_body(appended.accepted(), appended.duplicates()))
}

/// What is decided before anything is stored, with no `await`: the body
/// parsed and validated onto `events`, then the token's sources and quota,
/// then the schemas (`--schemas`). `Ok`: the types of the events that
/// failed a schema in `warn` mode, counted once stored; `Err`: the answer
/// refusing the request (nothing of it is stored), boxed so that the
/// `Result` stays small on the way that stores.
fn validate(
    app: &App,
    req: &Request,
    body: &Bytes,
    principal: &Principal,
    events: &mut Events,
) -> Result<Vec<String>, Box<Response>> {
    // With `--schemas`, the set in use is loaded once for the parse and the
    // check, and each event's `data` is read onto a tape as it is parsed,
    // for `check_schemas` (one pass over `data`, not two); not that of an
    // event whose type, named before its `data`, no schema checks. The set
    // and the tapes live in this frame (not the handler's future), so they
    // are dropped where they lie, not moved to be dropped.
    let schemas = app.schemas.guard();
    let mut tapes = schemas.as_deref().map(|set| Tapes::for_filter(set.data_filter()));
    if let Err(e) = parse_body_into(&req.headers, body, &app.parse_limits, tapes.as_mut(), events) {
        // Kept only while the token is within its quota (one unit per
        // refused request), so a sender over its quota cannot fill the
        // rejected log.
        if let ParseError::Invalid { errors, .. } = &e {
            if principal.try_take(1).is_ok() {
                rejected::keep_invalid(app, req, body, principal, errors);
            }
        }
        return Err(Box::new(app.reject(e.to_problem())));
    }
    let token = principal.name();
    // Sources, then the quota, then the schemas: a batch refused for its
    // sources takes nothing from the quota; one refused by a schema has
    // taken it (validation is work done for the sender); a request refused
    // before the schemas never reaches them or the rejected log.
    if let Err(denied) = admit(req, body, principal, events) {
        if let Some(token) = token {
            app.stats.record_token_refused(token, events.len());
        }
        return Err(Box::new(app.deny(&denied)));
    }
    // A request with any refused event is refused whole.
    let Some(set) = schemas.as_deref() else { return Ok(Vec::new()) };
    check_schemas(app, set, req, body, events, tapes.as_ref()).map_err(|refused| {
        if let Some(token) = token {
            app.stats.record_token_refused(token, events.len());
        }
        rejected::keep_schema_refusals(app, req, body, principal, events, &refused);
        Box::new(app.reject(refused.to_problem()))
    })
}

/// Validates the events' `data` against the schemas of their types: the
/// verdict (answered `422`) when any event is refused, else the types of the
/// events that failed in `warn` mode (one per event).
fn check_schemas(
    app: &App,
    set: &SchemaSet,
    req: &Request,
    body: &[u8],
    events: &[Event],
    tapes: Option<&Tapes>,
) -> Result<Vec<String>, Verdict> {
    // The handler parsed the body already, so its kind is known good; the
    // layout (the headers read again) is worked out only for an error.
    let layout = || Layout::of(BodyKind::of(&req.headers).unwrap_or(BodyKind::Structured), body);
    let verdict = match tapes {
        Some(tapes) => set.check_taped(events, tapes, layout),
        None => set.check_lazy(events, layout),
    };
    if verdict.is_refused() {
        let types = verdict.refused.iter().map(|r| r.ty.as_str());
        app.stats.record_schema_refused(types, |ty| set.get(ty).is_some());
        return Err(verdict);
    }
    Ok(verdict.warned)
}

/// Whether the token may write these events: every `source` inside its
/// prefixes (`403` pointing at each one outside), then the quota (`429`,
/// or `413` for a batch over the burst). `body` is the decoded body the
/// events were parsed from.
fn admit(req: &Request, body: &[u8], principal: &Principal, events: &[Event]) -> Result<(), Denied> {
    if principal.source_prefixes().is_some() {
        let outside: Vec<usize> = (0..events.len()).filter(|&i| !principal.allows_source(events[i].source())).collect();
        if !outside.is_empty() {
            return Err(principal.source_denied(source_errors(req, body, principal, &outside)));
        }
    }
    principal.try_take(events.len())
}

/// Where each refused `source` came from, as the parser locates errors: the
/// `ce-source` header (binary mode), `#/source` (one event), `#/<i>/source`
/// (an array), or `#/source` with its line (NDJSON), in the decoded `body`.
fn source_errors(req: &Request, body: &[u8], principal: &Principal, outside: &[usize]) -> Vec<FieldError> {
    let prefixes: Vec<&str> = principal.source_prefixes().unwrap_or_default().iter().map(|p| &**p).collect();
    let detail = format!("this token may write only sources starting with {}", prefixes.join(", "));
    let kind = BodyKind::of(&req.headers).ok();
    let ndjson_lines: Vec<u64> = if kind == Some(BodyKind::Ndjson) {
        // The lines that hold events: the parser skips blank ones.
        body.split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !inlet_shared::event::is_blank_line(line))
            .map(|(i, _)| i as u64 + 1)
            .collect()
    } else {
        Vec::new()
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
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
pub(crate) fn parse_query(query: &[u8]) -> Result<Query, String> {
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

/// A chunk of a page's body is handed on once it holds this many bytes
/// (or one event, if larger).
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks waiting between the page's writer and the connection at most.
const CHUNKS_IN_FLIGHT: usize = 2;

/// `GET /events`: the page is read off this thread (the store's read runs
/// on a blocking thread) and written out while it is read, chunked, so
/// that neither this worker nor the memory of the server holds a whole
/// page. The first slice decides the status: a read that fails before it
/// is a `503`; one that fails later cuts the body (the connection closes).
pub async fn query(app: &App, req: &Request) -> Response {
    let query = match parse_query(req.query()) {
        Ok(q) => q,
        Err(detail) => return app.reject(Problem::new(400, "invalid-query", detail)),
    };
    let mut page = app.store.query(query, app.max_page_bytes).await;
    // The slices of the page up to the compression threshold (or its end)
    // decide how it is sent; a failure before anything is sent is a 503.
    let mut head = Vec::new();
    let mut size = 0usize;
    let complete = loop {
        match page.recv().await {
            PageItem::Failed(e) => return store_unavailable(app, &e, false),
            PageItem::Events(events) => {
                size += events.iter().map(|e| e.json.len() + e.received_at.len() + 48).sum::<usize>();
                head.push(PageItem::Events(events));
                if size >= compress::MIN_COMPRESSED_RESPONSE {
                    break false;
                }
            }
            end @ PageItem::End { .. } => {
                head.push(end);
                break true;
            }
        }
    };
    let json = Some(Bytes::from_static(b"application/json"));
    if complete {
        // A small page: whole, with Content-Length, never compressed.
        let mut writer = PageWriter::new();
        head.into_iter().for_each(|item| writer.put(item));
        return Response::new(200, json, writer.chunk.freeze()).with_header("Vary", "Accept-Encoding");
    }
    let encoder = compress::stream(&req.headers);
    let coding = encoder.as_ref().map(|(_, name)| *name);
    let (tx, body) = BodyStream::channel(CHUNKS_IN_FLIGHT);
    tokio::spawn(write_page(head, page, encoder.map(|(e, _)| e), tx));
    let mut res = Response::streamed(200, json, body).with_header("Vary", "Accept-Encoding");
    if let Some(name) = coding {
        res = res.with_header("Content-Encoding", name);
    }
    res
}

/// A page's JSON (SPEC §3.2), built in chunks of about `CHUNK_BYTES`.
struct PageWriter {
    chunk: BytesMut,
    count: usize,
    /// Set once `End` was written: the chunk then holds the page's last bytes.
    done: bool,
}

impl PageWriter {
    fn new() -> PageWriter {
        let mut chunk = BytesMut::with_capacity(CHUNK_BYTES);
        chunk.put_slice(b"{\"events\":[");
        PageWriter { chunk, count: 0, done: false }
    }

    /// Appends one slice (or the end) of the page.
    fn put(&mut self, item: PageItem) {
        match item {
            PageItem::Events(events) => {
                for e in &events {
                    put_event(&mut self.chunk, e, self.count > 0);
                    self.count += 1;
                }
            }
            PageItem::End { next_after } => {
                self.chunk.put_slice(b"],\"next_after\":");
                match next_after {
                    Some(n) => self.chunk.put_slice(itoa::Buffer::new().format(n).as_bytes()),
                    None => self.chunk.put_slice(b"null"),
                }
                self.chunk.put_u8(b'}');
                self.done = true;
            }
            // Both callers answer or cut the page on a failure before it gets here.
            PageItem::Failed(_) => {}
        }
    }
}

/// Writes a page into `tx` as its slices arrive (first the ones already
/// read, `head`), through `encoder` when the client takes a coding. Each
/// event is copied once, into a chunk of about `CHUNK_BYTES`. Stops (and so
/// stops the store's read) when the client is gone; a failed read drops `tx`
/// without ending the body, so a cut page never looks whole.
async fn write_page(head: Vec<PageItem>, mut page: PageStream, mut encoder: Option<StreamEncoder>, tx: BodySender) {
    let mut writer = PageWriter::new();
    let mut pending = head.into_iter();
    loop {
        let item = match pending.next() {
            Some(item) => item,
            None => page.recv().await,
        };
        if let PageItem::Failed(e) = item {
            tracing::warn!(kind = ?e.kind(), "a page was cut: {}", e.chain());
            return;
        }
        writer.put(item);
        if writer.chunk.len() < CHUNK_BYTES && !writer.done {
            continue;
        }
        let raw = writer.chunk.split().freeze();
        let out = match encoder.as_mut() {
            None => raw,
            Some(enc) => match enc.chunk(&raw) {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!("a page was cut: compressing it failed: {e}");
                    return;
                }
            },
        };
        if !out.is_empty() && tx.send(out).await.is_err() {
            return;
        }
        if writer.done {
            if let Some(enc) = encoder.take() {
                let Ok(tail) = enc.finish() else { return };
                if !tail.is_empty() && tx.send(tail).await.is_err() {
                    return;
                }
            }
            let _ = tx.finish().await;
            return;
        }
    }
}

/// `{"seq":…,"received_at":"…","token":…,"event":…}`, after a comma unless first.
pub(crate) fn put_event(body: &mut BytesMut, e: &StoredEvent, comma: bool) {
    body.reserve(e.json.len() + e.received_at.len() + 48);
    if comma {
        body.put_u8(b',');
    }
    body.put_slice(b"{\"seq\":");
    body.put_slice(itoa::Buffer::new().format(e.seq).as_bytes());
    body.put_slice(b",\"received_at\":\"");
    body.put_slice(e.received_at.as_bytes());
    body.put_slice(b"\",\"token\":");
    match &e.token {
        // Names from a tokens file are `A-Z a-z 0-9 . _ -`; anything else (a
        // JetStream message published by another program) is escaped.
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
