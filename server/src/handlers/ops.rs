//! The small endpoints: `/echo`, `/health`, `/stats`, `/metrics`,
//! `/openapi.yaml`.

use bytes::Bytes;
use inlet_shared::http::{Request, Response};

use super::App;
use crate::respond;

/// `POST /echo`: the body and its `Content-Type`, unchanged.
pub fn echo(req: &Request) -> Response {
    Response::new(200, req.headers.get_bytes("content-type"), req.body.clone())
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

/// `GET /metrics`: Prometheus / OpenMetrics text.
pub fn metrics(app: &App) -> Response {
    Response::new(
        200,
        Some(Bytes::from_static(b"application/openmetrics-text; version=1.0.0; charset=utf-8")),
        Bytes::from(app.metrics.render()),
    )
}

/// The OpenAPI 3.1 description of this server, compiled in.
pub const OPENAPI_YAML: &[u8] = include_bytes!("../../../docs/openapi.yaml");

/// `GET /openapi.yaml`: the OpenAPI description, byte for byte as in
/// `docs/openapi.yaml`.
pub fn openapi() -> Response {
    Response::new(200, Some(Bytes::from_static(b"application/yaml")), Bytes::from_static(OPENAPI_YAML))
}
