//! Reading a schema directory: each `<type>.json` file holds the schema of
//! events of that type (the file name percent-decoded, so a type with `/`
//! is `a%2Fb.json`); the optional `index.toml` gives types their mode.
//! Everything is compiled here, once; nothing is ever fetched: a `$ref`
//! must point inside its own schema (a remote or file `$ref` is refused).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use jsonschema::json::{Json, SerdeJson};

use super::tape::Tape;
use super::{Mode, Schema, SchemaSet};

/// The optional file of modes in a schema directory.
pub const INDEX_FILE: &str = "index.toml";

/// Why a schema directory did not load: the file and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "schema {}: {}", self.file.display(), self.reason)
    }
}

impl std::error::Error for LoadError {}

fn error(file: &Path, reason: impl Into<String>) -> LoadError {
    LoadError { file: file.to_path_buf(), reason: reason.into() }
}

/// `index.toml`: `[types."com.example.order"] mode = "warn"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    #[serde(default)]
    types: BTreeMap<String, IndexEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexEntry {
    mode: Mode,
}

/// The event type a schema file is for: its name without `.json`,
/// percent-decoded.
pub(crate) fn decode_type(stem: &str) -> Result<String, String> {
    let ty = percent_encoding::percent_decode_str(stem)
        .decode_utf8()
        .map_err(|_| "the file name is not UTF-8 once percent-decoded".to_string())?;
    if ty.is_empty() {
        return Err("the file name gives an empty type".into());
    }
    Ok(ty.into_owned())
}

fn draft_name(draft: jsonschema::Draft) -> &'static str {
    match draft {
        jsonschema::Draft::Draft4 => "4",
        jsonschema::Draft::Draft6 => "6",
        jsonschema::Draft::Draft7 => "7",
        jsonschema::Draft::Draft201909 => "2019-09",
        jsonschema::Draft::Draft202012 => "2020-12",
        _ => "unknown",
    }
}

/// Compiles one schema: offline (no retrieval of any kind), formats
/// asserted (`"format": "email"` refuses what is not an e-mail address,
/// in every draft; checked by [`super::email`], which answers as the
/// crate's own check does).
fn compile<F: Json>(file: &Path, schema: &Value) -> Result<jsonschema::Validator<F>, LoadError> {
    jsonschema::options_for::<F>()
        .offline()
        .should_validate_formats(true)
        .with_format("email", super::email::is_email)
        .build(schema)
        .map_err(|e| error(file, format!("does not compile: {e}")))
}

impl SchemaSet {
    /// Reads and compiles every schema of `dir`. Files not ending in
    /// `.json` (other than `index.toml`), hidden files and folders are
    /// ignored. The first failure is returned with its file.
    pub fn load(dir: &Path) -> Result<SchemaSet, LoadError> {
        let entries = std::fs::read_dir(dir).map_err(|e| error(dir, format!("cannot read the directory: {e}")))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| error(dir, format!("cannot read the directory: {e}")))?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(error(&path, "the file name is not UTF-8"));
            };
            if name.starts_with('.') || !path.is_file() {
                continue;
            }
            if let Some(stem) = name.strip_suffix(".json") {
                files.push((stem.to_string(), path));
            }
        }
        files.sort();

        let index_path = dir.join(INDEX_FILE);
        let index = match std::fs::read_to_string(&index_path) {
            Ok(text) => toml::from_str::<Index>(&text).map_err(|e| error(&index_path, e.to_string().trim_end()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Index { types: BTreeMap::new() },
            Err(e) => return Err(error(&index_path, format!("cannot be read: {e}"))),
        };

        let mut set = SchemaSet::default();
        for (stem, file) in files {
            let ty = decode_type(&stem).map_err(|reason| error(&file, reason))?;
            let text = std::fs::read(&file).map_err(|e| error(&file, format!("cannot be read: {e}")))?;
            let schema: Value =
                serde_json::from_slice(&text).map_err(|e| error(&file, format!("is not valid JSON: {e}")))?;
            if !(schema.is_object() || schema.is_boolean()) {
                return Err(error(&file, "a schema must be a JSON object (or a boolean)"));
            }
            let validator = compile::<SerdeJson>(&file, &schema)?;
            let fast = compile::<Tape>(&file, &schema)?;
            let id = schema.get("$id").and_then(Value::as_str).map(|id| id.trim_end_matches('#').to_string());
            if let Some(id) = &id {
                if let Some(other) = set.by_id.get(id) {
                    return Err(error(&file, format!("$id {id:?} is also the $id of the schema of type {other:?}")));
                }
                set.by_id.insert(id.clone(), ty.clone());
            }
            if set.by_type.contains_key(&ty) {
                return Err(error(&file, format!("a second schema for type {ty:?}")));
            }
            let mode = index.types.get(&ty).map_or(Mode::Enforce, |entry| entry.mode);
            let draft = draft_name(validator.draft());
            if mode != Mode::Off {
                set.checked.add(&ty);
            }
            set.by_type.insert(ty.clone(), Schema { ty, file, id, mode, draft, validator, fast });
        }
        if let Some(ty) = index.types.keys().find(|ty| !set.by_type.contains_key(*ty)) {
            return Err(error(&index_path, format!("type {ty:?} has no schema file in {}", dir.display())));
        }
        Ok(set)
    }
}
