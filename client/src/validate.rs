//! `validate FILE|- --schemas DIR`: checks an NDJSON file offline with the
//! server's own rules (`inlet_shared`): the CloudEvents envelope, then each
//! event's `data` against the JSON Schema of its type. A file that fails is
//! answered as the server would answer it in one request: the same RFC 9457
//! problem (`400`, `422`, `413` body) printed on stdout, exit 1.
//!
//! `post --schemas DIR` runs the same check on the whole input before it
//! sends anything (see [`check`]).

use std::path::{Path, PathBuf};

use inlet_shared::event::{parse_ndjson, ParseLimits};
use inlet_shared::problem::Problem;
use inlet_shared::schema::{Layout, SchemaSet, UnknownTypes};

use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// NDJSON file to check, or `-` for standard input.
    input: String,
    #[command(flatten)]
    pub schemas: SchemaArgs,
}

/// The flags naming the schemas, as the server's `--schemas` and
/// `--unknown-types`.
#[derive(Debug, Clone, clap::Args)]
pub struct SchemaArgs {
    /// Directory of JSON Schemas (`<type>.json`, optional `index.toml`), as
    /// the server's `--schemas`.
    #[arg(long, value_name = "DIR")]
    pub schemas: Option<PathBuf>,
    /// Events whose type has no schema: allow or reject (as the server's flag).
    #[arg(long, value_enum, default_value = "allow", requires = "schemas")]
    pub unknown_types: Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Unknown {
    Allow,
    Reject,
}

impl SchemaArgs {
    /// The compiled schemas, if `--schemas` was given; the error is the
    /// message to print (file and reason).
    pub fn load(&self) -> Result<Option<SchemaSet>, String> {
        let Some(dir) = &self.schemas else { return Ok(None) };
        let unknown = match self.unknown_types {
            Unknown::Allow => UnknownTypes::Allow,
            Unknown::Reject => UnknownTypes::Reject,
        };
        SchemaSet::load(dir).map(|set| Some(set.with_unknown_types(unknown))).map_err(|e| e.to_string())
    }
}

/// Checks an NDJSON body as the server checks one request: the problem it
/// would answer, or the number of events.
pub fn check(body: &[u8], schemas: &SchemaSet) -> Result<usize, Problem> {
    // Offline, a file may hold more events than one request may.
    let limits = ParseLimits { max_batch: usize::MAX, ..ParseLimits::default() };
    let events = parse_ndjson(body, &limits).map_err(|e| e.to_problem())?;
    let verdict = schemas.check(&events, &Layout::ndjson(body));
    if verdict.is_refused() {
        return Err(verdict.to_problem());
    }
    Ok(events.len())
}

/// Reads a file, or standard input for `-`.
pub fn read_input(input: &str) -> Result<Vec<u8>, String> {
    let read = if input == "-" {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut body).map(|_| body)
    } else {
        std::fs::read(Path::new(input))
    };
    read.map_err(|e| format!("cannot read {input}: {e}"))
}

pub fn run(args: Args) -> u8 {
    let schemas = match args.schemas.load() {
        Ok(Some(set)) => set,
        Ok(None) => {
            eprintln!("inlet-client: validate needs --schemas DIR");
            return exit::USAGE;
        }
        Err(e) => {
            eprintln!("inlet-client: {e}");
            return exit::USAGE;
        }
    };
    let body = match read_input(&args.input) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("inlet-client: {e}");
            return exit::USAGE;
        }
    };
    match check(&body, &schemas) {
        Ok(n) => {
            println!("ok: {n} event(s) valid");
            exit::OK
        }
        Err(problem) => {
            println!("{}", String::from_utf8_lossy(&problem.to_json()));
            exit::REJECTED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_judged_as_one_request() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.json"), r#"{"type":"object","required":["n"]}"#).unwrap();
        let set = SchemaSet::load(dir.path()).unwrap();
        let good = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\",\"data\":{\"n\":1}}\n";
        assert_eq!(check(good.as_bytes(), &set), Ok(1));
        let bad = format!("{good}\n{}", good.replace("{\"n\":1}", "{}"));
        let problem = check(bad.as_bytes(), &set).unwrap_err();
        assert_eq!((problem.status, problem.errors.len()), (422, 1));
        assert_eq!((problem.errors[0].pointer.as_deref(), problem.errors[0].line), (Some("#/data"), Some(3)));
        let broken = check(b"{\n", &set).unwrap_err();
        assert_eq!(broken.status, 400);
    }
}
