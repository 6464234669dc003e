//! The small endpoints: `/echo`, `/health`, `/readyz`, `/stats`,
//! `/metrics`, `/openapi.yaml`, `/schemas`.

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
pub async fn health(app: &App) -> Response {
    match app.store.readiness().await {
        Ok(()) => respond::json(200, Bytes::from_static(br#"{"status":"ok"}"#)),
        Err(why) => {
            let body =
                serde_json::json!({"status": "ok", "ready": false, "store": app.store.name(), "reason": why.detail});
            respond::json(200, serde_json::to_vec(&body).unwrap_or_default())
        }
    }
}

/// `GET /readyz`: readiness. `200` when the store can take a write now and
/// shutdown has not begun; `503` otherwise. Either way the body names each
/// component and its status (docs/storage.md, "Readiness"): fixed words and
/// details only (no path, no address, no secret), so it is open to anyone,
/// like `/health`. Nothing is written per probe.
pub async fn readyz(app: &App) -> Response {
    readiness_response(app.store.name(), app.store.readiness().await, crate::shutdown::has_begun())
}

fn readiness_response(store: &str, readiness: Result<(), crate::store::NotReady>, draining: bool) -> Response {
    let store_part = match readiness {
        Ok(()) => serde_json::json!({"status": "ready", "kind": store}),
        Err(why) => serde_json::json!({"status": why.status, "kind": store, "detail": why.detail}),
    };
    let shutdown_part = if draining {
        serde_json::json!({"status": "draining", "detail": "shutdown has begun; requests in flight finish"})
    } else {
        serde_json::json!({"status": "running"})
    };
    let ready = readiness.is_ok() && !draining;
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not-ready" },
        "components": {"store": store_part, "shutdown": shutdown_part},
    });
    let mut res = respond::json(if ready { 200 } else { 503 }, serde_json::to_vec(&body).unwrap_or_default());
    if !ready {
        // When to probe again; a load balancer keeps its own schedule.
        res.retry_after = Some(1);
    }
    res
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NotReady;

    fn body(res: &Response) -> serde_json::Value {
        match &res.body {
            inlet_shared::http::Body::Full(bytes) => serde_json::from_slice(bytes).unwrap(),
            other => panic!("a whole body expected, got {other:?}"),
        }
    }

    #[test]
    fn readiness_is_200_only_with_a_ready_store_and_no_shutdown() {
        let ready = readiness_response("sqlite", Ok(()), false);
        assert_eq!(ready.status, 200);
        assert_eq!(
            body(&ready),
            serde_json::json!({"status": "ready", "components": {
                "store": {"status": "ready", "kind": "sqlite"}, "shutdown": {"status": "running"}}})
        );
        let full = readiness_response("sqlite", Err(NotReady::full("no room")), false);
        assert_eq!((full.status, full.retry_after), (503, Some(1)));
        assert_eq!(
            body(&full),
            serde_json::json!({"status": "not-ready", "components": {
                "store": {"status": "full", "kind": "sqlite", "detail": "no room"}, "shutdown": {"status": "running"}}})
        );
        let draining = readiness_response("memory", Ok(()), true);
        assert_eq!(draining.status, 503);
        assert_eq!(body(&draining)["components"]["shutdown"]["status"], "draining");
        assert_eq!(body(&draining)["components"]["store"]["status"], "ready");
    }
}
