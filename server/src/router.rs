//! Maps a request to its handler: `404` for unknown paths, `405` with
//! `Allow` for a known path and another method, `HEAD` wherever `GET` is,
//! and access control: each route's [`Scope`] is checked from the head,
//! before the body matters (`401`, `403`).

use inlet_shared::event::BodyKind;
use inlet_shared::http::{Headers, Method, Request, RequestHead, Response};
use inlet_shared::problem::Problem;

use crate::auth::{CredentialCache, Denied, Malformed, Principal, Scope, Unauthenticated};
use crate::dashboard;
use crate::handlers::{compress, events, ops, rejected, stream, App};
use crate::tls::PeerIdentity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Events,
    EventsStream,
    Echo,
    Health,
    Ready,
    Stats,
    Metrics,
    OpenApi,
    Dashboard,
    Schemas,
    Rejected,
    NotFound,
}

impl Route {
    /// Every route, `NotFound` last: the label set of the request metrics.
    pub const ALL: [Route; 12] = [
        Route::Events,
        Route::EventsStream,
        Route::Echo,
        Route::Health,
        Route::Ready,
        Route::Stats,
        Route::Metrics,
        Route::OpenApi,
        Route::Dashboard,
        Route::Schemas,
        Route::Rejected,
        Route::NotFound,
    ];

    pub fn of(path: &[u8]) -> Route {
        match path {
            b"/events" => Route::Events,
            b"/events/stream" => Route::EventsStream,
            b"/echo" => Route::Echo,
            b"/health" => Route::Health,
            b"/readyz" => Route::Ready,
            b"/stats" => Route::Stats,
            b"/metrics" => Route::Metrics,
            b"/openapi.yaml" => Route::OpenApi,
            b"/" => Route::Dashboard,
            b"/schemas" => Route::Schemas,
            b"/rejected" => Route::Rejected,
            _ => Route::NotFound,
        }
    }

    /// Label for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Route::Events => "/events",
            Route::EventsStream => "/events/stream",
            Route::Echo => "/echo",
            Route::Health => "/health",
            Route::Ready => "/readyz",
            Route::Stats => "/stats",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.yaml",
            Route::Dashboard => "/",
            Route::Schemas => "/schemas",
            Route::Rejected => "/rejected",
            Route::NotFound => "other",
        }
    }

    /// The scope a request needs; `None`: open to anyone (`/health`,
    /// `/readyz`, `/openapi.yaml`, the dashboard page `/`, which holds no
    /// data: its script reads `/stats` and the stream with the user's token,
    /// and unknown paths, which are `404` anyway).
    pub fn scope(self, method: &Method) -> Option<Scope> {
        match (self, method) {
            (Route::Events, Method::Post) | (Route::Echo, _) => Some(Scope::Write),
            (Route::Events | Route::EventsStream | Route::Stats | Route::Schemas | Route::Rejected, _) => {
                Some(Scope::Read)
            }
            (Route::Metrics, _) => Some(Scope::Metrics),
            (Route::Health | Route::Ready | Route::OpenApi | Route::Dashboard | Route::NotFound, _) => None,
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
/// `peer`: the connection's verified client certificate, if any.
pub fn refusal(app: &App, head: &RequestHead, peer: Option<&PeerIdentity>) -> Option<Response> {
    let route = Route::of(head.path());
    if let Some(refused) = route_refusal(app, route, head) {
        return Some(refused);
    }
    if let Err(denied) = authorize(app, route, &head.method, &head.headers, None, peer) {
        return Some(refused_by_auth(app, &denied));
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

/// Whether a field name is `Authorization`, in any case. Every byte of
/// `authorization` is a letter, so a byte matches it in some case exactly
/// when the byte with bit 5 set equals it: compared 8 and 5 bytes at a
/// time, which matters on a check every request pays.
fn is_authorization(name: &[u8]) -> bool {
    const LOWER: u64 = 0x2020_2020_2020_2020;
    let Ok(name) = <&[u8; 13]>::try_from(name) else { return false };
    let (head, tail) = name.split_at(8);
    let mut word = [0u8; 8];
    word.copy_from_slice(head);
    let mut rest = [0u8; 8];
    rest[..5].copy_from_slice(tail);
    u64::from_le_bytes(word) | LOWER == u64::from_le_bytes(*b"authoriz")
        && u64::from_le_bytes(rest) | 0x0000_0020_2020_2020 == u64::from_le_bytes(*b"ation\0\0\0")
}

/// Who the request is, if its route needs a scope: the `Authorization`
/// header checked against the tokens (through the connection's cache when
/// there is one), or, without that header, the client certificate `peer`
/// checked against the tokens' subjects. More than one `Authorization`
/// field is malformed (`401`): which one would count is ambiguous, and a
/// proxy may have added one.
fn authorize(
    app: &App,
    route: Route,
    method: &Method,
    headers: &Headers,
    cache: Option<&mut CredentialCache>,
    peer: Option<&PeerIdentity>,
) -> Result<Principal, Denied> {
    let Some(scope) = route.scope(method) else { return Ok(Principal::anonymous()) };
    if app.auth.is_anonymous() {
        return Ok(Principal::anonymous());
    }
    // One pass over the fields; the length check first skips the others
    // without comparing their names.
    let mut authorization = None;
    for (name, value) in headers.iter() {
        if is_authorization(name) {
            if authorization.is_some() {
                return Err(Denied::Unauthenticated(Unauthenticated::Malformed(Malformed::Several)));
            }
            authorization = Some(value);
        }
    }
    match cache {
        Some(cache) => app.auth.check_with(cache, peer, authorization, scope),
        None => app.auth.check_peer(peer, authorization, scope),
    }
}

/// The answer to a refusal by access control, counted against its token.
fn refused_by_auth(app: &App, denied: &Denied) -> Response {
    if let Some(token) = denied.token() {
        app.stats.record_token_refused(token, 0);
    }
    app.deny(denied)
}

/// Answers a complete request for `route` (`Route::of` its path). The
/// request is borrowed: the handler's future holds a reference, not the
/// request, so it is smaller and the request is not moved into it.
/// `credentials` is the connection's: it lets the requests after the first
/// of a keep-alive connection skip hashing the same secret again. `peer` is
/// the connection's verified client certificate (mTLS), if any.
pub async fn handle(
    app: &App,
    route: Route,
    req: &Request,
    credentials: &mut CredentialCache,
    peer: Option<&PeerIdentity>,
) -> Response {
    // The media type of a `POST /events` is checked once, by the handler
    // (the same `415` as `refusal` gives).
    if let Some(refused) = route_refusal(app, route, &req.head) {
        return refused;
    }
    let principal = match authorize(app, route, &req.method, &req.headers, Some(credentials), peer) {
        Ok(principal) => principal,
        Err(denied) => return refused_by_auth(app, &denied),
    };
    let head_only = req.method == Method::Head;
    let mut res = match (route, &req.method) {
        (Route::Events, Method::Post) => events::ingest(app, req, &principal).await,
        (Route::Events, _) => events::query(app, req).await,
        (Route::EventsStream, _) => stream::stream(app, req).await,
        (Route::Echo, _) => ops::echo(req),
        (Route::Health, _) => ops::health(app).await,
        (Route::Ready, _) => ops::readyz(app).await,
        (Route::Stats, _) => ops::stats(app),
        (Route::Metrics, _) => ops::metrics(app, req),
        (Route::OpenApi, _) => ops::openapi(),
        (Route::Dashboard, _) => dashboard::page(),
        (Route::Schemas, _) => ops::schemas(app),
        (Route::Rejected, _) => rejected::query(app, req).await,
        (Route::NotFound, _) => unreachable!("refused above"),
    };
    res.omit_body = head_only;
    res
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn authorization_is_recognised_in_any_case_and_nothing_else_is() {
        use super::is_authorization;
        for name in ["authorization", "Authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"] {
            assert!(is_authorization(name.as_bytes()), "{name}");
        }
        // Bytes that equal a letter with bit 5 set but are not letters
        // (`A` - 0x20 = `!`), one letter off, shorter, longer.
        for name in ["!uthorization", "authorizatioN ", "authorizatio", "authorizatiom", "proxy-authorization", ""] {
            assert!(!is_authorization(name.as_bytes()), "{name}");
        }
        let mut name = *b"authorization";
        for i in 0..name.len() {
            let original = name[i];
            for b in 0..=255u8 {
                name[i] = b;
                let expected = b.eq_ignore_ascii_case(&original);
                assert_eq!(is_authorization(&name), expected, "byte {i} = {b:#x}");
            }
            name[i] = original;
        }
    }

    #[test]
    fn every_route_but_health_readyz_openapi_and_the_dashboard_needs_a_scope() {
        use crate::auth::Scope;
        use inlet_shared::http::Method;
        assert_eq!(Route::Events.scope(&Method::Post), Some(Scope::Write));
        assert_eq!(Route::Echo.scope(&Method::Post), Some(Scope::Write));
        assert_eq!(Route::Events.scope(&Method::Get), Some(Scope::Read));
        assert_eq!(Route::Events.scope(&Method::Head), Some(Scope::Read));
        assert_eq!(Route::Stats.scope(&Method::Get), Some(Scope::Read));
        assert_eq!(Route::Schemas.scope(&Method::Get), Some(Scope::Read));
        assert_eq!(Route::EventsStream.scope(&Method::Get), Some(Scope::Read));
        assert_eq!(Route::Metrics.scope(&Method::Get), Some(Scope::Metrics));
        assert_eq!(Route::Health.scope(&Method::Get), None);
        assert_eq!(Route::Ready.scope(&Method::Get), None);
        assert_eq!(Route::Ready.scope(&Method::Head), None);
        assert_eq!(Route::OpenApi.scope(&Method::Get), None);
        assert_eq!(Route::Dashboard.scope(&Method::Get), None);
        assert_eq!(Route::Dashboard.scope(&Method::Head), None);
    }

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
