//! Request handlers and the state they share.
//!
//! - `events.rs`: `POST /events` (ingest) and `GET /events` (read back).
//! - `compress.rs`: content codings: request bodies decoded, `415` for an
//!   unknown coding, compressed responses.
//! - `stream.rs`: `GET /events/stream`, stored then new events as
//!   Server-Sent Events.
//! - `rejected.rs`: the refused events kept (`--keep-rejected`) and `GET
//!   /rejected`.
//! - `ops.rs`: `/echo`, `/health`, `/readyz`, `/stats`, `/metrics`, `/schemas`.
//!
//! `GET /`, the dashboard page, is `crate::dashboard` (its own folder: the
//! page is an HTML file beside its module).

pub mod compress;
pub mod events;
pub mod ops;
pub mod rejected;
pub mod stream;

use std::sync::Arc;

use inlet_shared::event::ParseLimits;
use inlet_shared::http::Response;
use inlet_shared::problem::Problem;

use crate::auth::{Auth, Denied};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::respond;
use crate::schemas::Schemas;
use crate::stats::Stats;
use crate::store::Store;

/// What every handler can reach.
pub struct App {
    pub store: Arc<dyn Store>,
    pub stats: Arc<Stats>,
    pub metrics: Metrics,
    pub parse_limits: ParseLimits,
    /// `--max-page-bytes`: a `GET /events` page holds no more event JSON
    /// than this (unless one event alone is larger).
    pub max_page_bytes: usize,
    /// Who may do what: anonymous, or the tokens of `--tokens`.
    pub auth: Auth,
    /// `--schemas`: the JSON Schemas events' `data` is validated against.
    pub schemas: Schemas,
}

impl App {
    pub fn new(store: Arc<dyn Store>, config: &Config) -> App {
        let mut app = App::with_limits(store, config.parse_limits());
        app.max_page_bytes = config.max_page_bytes;
        app
    }

    pub fn with_limits(store: Arc<dyn Store>, parse_limits: ParseLimits) -> App {
        let stats = Arc::new(Stats::with_store(store.gauges()).with_rejected(store.rejected().map(|r| r.gauges())));
        let metrics = Metrics::new(stats.clone());
        App {
            store,
            stats,
            metrics,
            parse_limits,
            max_page_bytes: crate::store::DEFAULT_PAGE_BYTES,
            auth: Auth::anonymous(),
            schemas: Schemas::off(),
        }
    }

    /// The same app with this access policy.
    pub fn with_auth(mut self, auth: Auth) -> App {
        self.auth = auth;
        self
    }

    /// The same app with these schemas.
    pub fn with_schemas(mut self, schemas: Schemas) -> App {
        self.schemas = schemas;
        self
    }

    /// Answers a refused request with its problem and counts it by reason.
    pub fn reject(&self, problem: Problem) -> Response {
        self.stats.record_rejected(problem.reason());
        respond::problem(&problem)
    }

    /// Answers a request refused by access control: its problem (counted
    /// by reason, and against its token) and its extra headers
    /// (`WWW-Authenticate`, `Retry-After`, `RateLimit-Policy`, `RateLimit`).
    /// Logged at debug level with the token's name; a `Denied` holds no
    /// secret.
    pub fn deny(&self, denied: &Denied) -> Response {
        tracing::debug!(
            status = denied.status(),
            token = denied.token().map(|t| &**t),
            "refused: {}",
            denied.problem().detail
        );
        let mut res = self.reject(denied.problem());
        for (name, value) in denied.headers() {
            res = res.with_header(name, value);
        }
        res
    }
}
