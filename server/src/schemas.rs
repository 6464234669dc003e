//! `--schemas DIR`: the JSON Schemas of events' `data` (see
//! `inlet_shared::schema`), compiled at start and again on `SIGHUP`.
//! Requests read the set through an [`ArcSwap`]; a reload that fails keeps
//! the set in use. Without `--schemas` there is no set and the ingest path
//! pays one branch.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use inlet_shared::schema::{LoadError, SchemaSet, UnknownTypes};

/// A type whose events fail their schema in `warn` mode is logged at most
/// once per this interval.
pub const WARN_LOG_INTERVAL: Duration = Duration::from_secs(60);

pub struct Schemas {
    loaded: Option<Loaded>,
}

struct Loaded {
    dir: PathBuf,
    unknown: UnknownTypes,
    current: ArcSwap<SchemaSet>,
    /// When each type was last logged for `warn`.
    warned_at: Mutex<HashMap<String, Instant>>,
}

impl Schemas {
    /// No `--schemas`: nothing is validated.
    pub fn off() -> Schemas {
        Schemas { loaded: None }
    }

    /// Compiles `dir`; the error names the file and the reason.
    pub fn load(dir: PathBuf, unknown: UnknownTypes) -> Result<Schemas, LoadError> {
        let set = SchemaSet::load(&dir)?.with_unknown_types(unknown);
        tracing::info!(schemas = set.len(), "schemas loaded from {}", dir.display());
        let current = ArcSwap::from_pointee(set);
        Ok(Schemas { loaded: Some(Loaded { dir, unknown, current, warned_at: Mutex::new(HashMap::new()) }) })
    }

    /// The set in use, if `--schemas` was given.
    pub fn current(&self) -> Option<Arc<SchemaSet>> {
        self.loaded.as_ref().map(|l| l.current.load_full())
    }

    /// The set in use, if `--schemas` was given, for the length of one
    /// request: no reference count taken (the per-request path).
    pub fn guard(&self) -> Option<arc_swap::Guard<Arc<SchemaSet>>> {
        self.loaded.as_ref().map(|l| l.current.load())
    }

    /// `SIGHUP`: compiles the directory again; the new set replaces the old
    /// one only if every file compiled. Logs its outcome.
    pub fn reload(&self) {
        let Some(loaded) = &self.loaded else { return };
        match SchemaSet::load(&loaded.dir) {
            Ok(set) => {
                let set = set.with_unknown_types(loaded.unknown);
                // In use first, then said: a reader of the log never sees
                // "reloaded" while the old set still answers.
                let n = set.len();
                loaded.current.store(Arc::new(set));
                tracing::info!(schemas = n, "SIGHUP: schemas reloaded from {}", loaded.dir.display());
            }
            Err(e) => tracing::error!("SIGHUP: {e}; keeping the schemas in use"),
        }
    }

    /// Logs the types of events accepted in `warn` mode although their
    /// `data` failed, each at most once per [`WARN_LOG_INTERVAL`]; `total`
    /// gives a type's count so far. Never logs the data.
    pub fn log_warned(&self, types: &[String], total: impl Fn(&str) -> u64) {
        let Some(loaded) = &self.loaded else { return };
        let Ok(mut warned_at) = loaded.warned_at.lock() else { return };
        let now = Instant::now();
        for ty in types {
            let due = warned_at.get(ty).is_none_or(|at| now.duration_since(*at) >= WARN_LOG_INTERVAL);
            if due {
                warned_at.insert(ty.clone(), now);
                tracing::warn!(
                    r#type = %ty,
                    total = total(ty),
                    "events failed their schema and were accepted (mode warn); logged once per {}s per type",
                    WARN_LOG_INTERVAL.as_secs()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parser's filter follows the set: at load, and after a reload
    /// that changes which types have a schema.
    #[test]
    fn the_data_filter_follows_the_set_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let write = |ty: &str| std::fs::write(dir.path().join(format!("{ty}.json")), r#"{"type": "object"}"#).unwrap();
        write("com.example.order");
        let schemas = Schemas::load(dir.path().to_path_buf(), UnknownTypes::Allow).unwrap();
        let filter = schemas.guard().unwrap().data_filter();
        assert!(filter.may_check("com.example.order"));
        std::fs::remove_file(dir.path().join("com.example.order.json")).unwrap();
        write("t");
        schemas.reload();
        let filter = schemas.guard().unwrap().data_filter();
        assert!(filter.may_check("t") && !filter.may_check("com.example.order"));
        assert!(Schemas::off().guard().is_none());
    }
}
