//! Maps a request to its handler: `404` for unknown paths, `405` with
//! `Allow` for a known path and another method, `HEAD` wherever `GET` is.

use inlet_shared::event::BodyKind;
use inlet_shared::http::{Method, Request, RequestHead, Response};
use inlet_shared::problem::Problem;

use crate::handlers::{compress, events, ops, App};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Events,
    Echo,
    Health,
    Stats,
    Metrics,
    OpenApi,
    NotFound,
}

impl Route {
    /// Every route, `NotFound` last: the label set of the request metrics.
    pub const ALL: [Route; 7] =
        [Route::Events, Route::Echo, Route::Health, Route::Stats, Route::Metrics, Route::OpenApi, Route::NotFound];

    pub fn of(path: &[u8]) -> Route {
        match path {
            b"/events" => Route::Events,
            b"/echo" => Route::Echo,
            b"/health" => Route::Health,
            b"/stats" => Route::Stats,
            b"/metrics" => Route::Metrics,
            b"/openapi.yaml" => Route::OpenApi,
            _ => Route::NotFound,
        }
    }

    /// Label for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Route::Events => "/events",
            Route::Echo => "/echo",
            Route::Health => "/health",
            Route::Stats => "/stats",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.yaml",
            Route::NotFound => "other",
        }
    }

    fn allow(self) -> &'static str {
        match self {
            Route::Events => "GET, HEAD, POST",
            Route::Echo => "POST",
            Route::NotFound => "",
            _ => "GET, HEAD",
        }
    }

    fn allows(self, method: &Method) -> bool {
        match (self, method) {
            (Route::NotFound, _) => false,
            (Route::Events, Method::Post) | (Route::Echo, Method::Post) => true,
            (Route::Echo, _) => false,
            (_, Method::Get | Method::Head) => true,
            _ => false,
        }
    }
}

/// The refusal a request gets whatever its body, if any: decided from the
/// head alone, so that `Expect: 100-continue` can be answered with it.
pub fn refusal(app: &App, head: &RequestHead) -> Option<Response> {
    let route = Route::of(head.path());
    if let Some(refused) = route_refusal(app, route, head) {
        return Some(refused);
    }
    if route == Route::Events && head.method == Method::Post {
        if let Err(e) = BodyKind::of(&head.headers) {
            return Some(app.reject(e.to_problem()));
        }
        if let Some(refused) = compress::refusal(app, &head.headers) {
            return Some(refused);
        }
    }
    None
}

/// `404` for an unknown path, `405` for a method the resource does not take.
fn route_refusal(app: &App, route: Route, head: &RequestHead) -> Option<Response> {
    if route == Route::NotFound {
        let path = String::from_utf8_lossy(head.path());
        return Some(app.reject(Problem::new(404, "not-found", format!("no resource at {path}"))));
    }
    if !route.allows(&head.method) {
        let detail = format!("{} is not allowed on {}; allowed: {}", head.method.as_str(), route.name(), route.allow());
        let mut res = app.reject(Problem::new(405, "method-not-allowed", detail));
        res.allow = Some(route.allow());
        return Some(res);
    }
    None
}

/// Answers a complete request. Returns the route too, for metrics.
pub async fn handle(app: &App, req: Request) -> (Route, Response) {
    let route = Route::of(req.path());
    // The media type of a `POST /events` is checked once, by the handler
    // (the same `415` as `refusal` gives).
    if let Some(refused) = route_refusal(app, route, &req.head) {
        return (route, refused);
    }
    let head_only = req.method == Method::Head;
    let mut res = match (route, &req.method) {
        (Route::Events, Method::Post) => events::ingest(app, &req).await,
        (Route::Events, _) => events::query(app, &req).await,
        (Route::Echo, _) => ops::echo(&req),
        (Route::Health, _) => ops::health(app),
        (Route::Stats, _) => ops::stats(app),
        (Route::Metrics, _) => ops::metrics(app, &req),
        (Route::OpenApi, _) => ops::openapi(),
        (Route::NotFound, _) => unreachable!("refused above"),
    };
    res.omit_body = head_only;
    (route, res)
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn every_path_maps_to_its_route_and_back() {
        for route in Route::ALL {
            if route != Route::NotFound {
                assert_eq!(Route::of(route.name().as_bytes()), route);
            }
        }
        assert_eq!(Route::ALL.last(), Some(&Route::NotFound));
        assert_eq!(Route::of(b"/events/"), Route::NotFound);
        assert_eq!(Route::of(b"/EVENTS"), Route::NotFound);
        assert_eq!(Route::of(b""), Route::NotFound);
    }
}
