//! The small endpoints: `/echo`, `/health`, `/stats`, `/metrics`,
//! `/openapi.yaml`, `/schemas`.

use bytes::Bytes;
use inlet_shared::http::{Request, Response};

use super::{compress, App};
use crate::respond;

/// `POST /echo`: the body and its `Content-Type`, unchanged. A coded body
/// is not decoded: it comes back as it was sent, with its
/// `Content-Encoding`, so the answer still says how to read it.
pub fn echo(req: &Request) -> Response {
    let res = Response::new(200, req.headers.get_bytes("content-type"), req.body.clone());
    match req.headers.get_bytes("content-encoding") {
        Some(coding) if !req.body.is_empty() => res.with_header("Content-Encoding", coding),
        _ => res,
    }
}

/// `GET /health`: liveness. Always 200 while the process serves; when the
/// store cannot take writes it says so (`"ready": false`).
pub fn health(app: &App) -> Response {
    match app.store.readiness() {
        Ok(()) => respond::json(200, Bytes::from_static(br#"{"status":"ok"}"#)),
        Err(why) => {
            let body = serde_json::json!({"status": "ok", "ready": false, "store": app.store.name(), "reason": why});
            respond::json(200, serde_json::to_vec(&body).unwrap_or_default())
        }
    }
}

/// `GET /stats`: the counters as JSON.
pub fn stats(app: &App) -> Response {
    respond::json(200, app.stats.to_json())
}

/// `GET /schemas`: the schemas in use (`--schemas`), by type: mode, `$id`
/// (the URI `dataschema` may name), draft and file name (not its folder).
pub fn schemas(app: &App) -> Response {
    let body = match app.schemas.current() {
        None => serde_json::json!({"enabled": false, "unknown_types": "allow", "schemas": []}),
        Some(set) => {
            let unknown = match set.unknown_types() {
                inlet_shared::schema::UnknownTypes::Allow => "allow",
                inlet_shared::schema::UnknownTypes::Reject => "reject",
            };
            let schemas: Vec<serde_json::Value> = set
                .schemas()
                .map(|s| {
                    serde_json::json!({
                        "type": s.ty,
                        "mode": s.mode.as_str(),
                        "id": s.id,
                        "draft": s.draft,
                        "file": s.file.file_name().map(|n| n.to_string_lossy()),
                    })
                })
                .collect();
            serde_json::json!({"enabled": true, "unknown_types": unknown, "schemas": schemas})
        }
    };
    respond::json(200, serde_json::to_vec(&body).unwrap_or_default())
}

/// `GET /metrics`: Prometheus / OpenMetrics text, compressed when the
/// scraper accepts it (Prometheus sends `Accept-Encoding: gzip`).
pub fn metrics(app: &App, req: &Request) -> Response {
    let res = Response::new(
        200,
        Some(Bytes::from_static(b"application/openmetrics-text; version=1.0.0; charset=utf-8")),
        Bytes::from(app.metrics.render()),
    );
    compress::response(&req.headers, res)
}

/// The OpenAPI 3.1 description of this server, compiled in.
pub const OPENAPI_YAML: &[u8] = include_bytes!("../../../docs/openapi.yaml");

/// `GET /openapi.yaml`: the OpenAPI description, byte for byte as in
/// `docs/openapi.yaml`.
pub fn openapi() -> Response {
    Response::new(200, Some(Bytes::from_static(b"application/yaml")), Bytes::from_static(OPENAPI_YAML))
}
