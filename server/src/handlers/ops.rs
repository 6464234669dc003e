//! The small endpoints: `/echo`, `/health`, `/stats`, `/metrics`.

use bytes::Bytes;
use inlet_shared::http::{Request, Response};

use super::App;
use crate::respond;

/// `POST /echo`: the body and its `Content-Type`, unchanged.
pub fn echo(req: &Request) -> Response {
    Response::new(200, req.headers.get("content-type").cloned(), req.body.clone())
}

/// `GET /health`: liveness.
pub fn health(_app: &App) -> Response {
    respond::json(200, Bytes::from_static(br#"{"status":"ok"}"#))
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
