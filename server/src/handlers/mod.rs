//! Request handlers and the state they share.
//!
//! - `events.rs`: `POST /events` (ingest) and `GET /events` (read back).
//! - `compress.rs`: content codings: request bodies decoded, `415` for an
//!   unknown coding, compressed responses.
//! - `ops.rs`: `/echo`, `/health`, `/stats`, `/metrics`.

pub mod compress;
pub mod events;
pub mod ops;

use std::sync::Arc;

use inlet_shared::event::ParseLimits;
use inlet_shared::http::Response;
use inlet_shared::problem::Problem;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::respond;
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
}

impl App {
    pub fn new(store: Arc<dyn Store>, config: &Config) -> App {
        let mut app = App::with_limits(store, config.parse_limits());
        app.max_page_bytes = config.max_page_bytes;
        app
    }

    pub fn with_limits(store: Arc<dyn Store>, parse_limits: ParseLimits) -> App {
        let stats = Arc::new(Stats::default());
        let metrics = Metrics::new(stats.clone());
        App { store, stats, metrics, parse_limits, max_page_bytes: crate::store::DEFAULT_PAGE_BYTES }
    }

    /// Answers a refused request with its problem and counts it by reason.
    pub fn reject(&self, problem: Problem) -> Response {
        self.stats.record_rejected(problem.reason());
        respond::problem(&problem)
    }
}
