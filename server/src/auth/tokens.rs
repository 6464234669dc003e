//! The tokens file (`--tokens FILE`): TOML, one `[[token]]` table per token.
//!
//! ```toml
//! [[token]]
//! name = "shop"          # 1..=64 of A-Z a-z 0-9 . _ -; unique
//! sha256 = "9f86d0…"     # 64 hex digits: SHA-256 of the secret; unique
//!                        # (or a list of them while a secret is rotated)
//! # subject = "svc-orders"  # instead of sha256: the CN of a client certificate
//!                           # (mTLS, needs --tls-client-ca); unique
//! scopes = ["write", "read"]   # non-empty subset of write, read, metrics
//! sources = ["/shop/"]   # optional: allowed `source` prefixes, each non-empty
//! rate = 1000            # optional: events per second (1..=1000000000)
//! burst = 2000           # optional, needs `rate`; defaults to `rate`
//! ```
//!
//! The file is checked whole before any of it is used: every error names the
//! file, the entry (1-based, as it appears in the file, with its name when it
//! has a valid one) and what is wrong. `sha256` may be a list so that a
//! secret can be rotated without a gap: add the new digest next to the old,
//! reload, move the senders, drop the old digest, reload; the name, and with
//! it the quota and the counters, stays the same throughout. An entry names
//! either a secret (`sha256`) or a client certificate (`subject`, its
//! subject's common name), never both: a service that has a certificate
//! signed by `--tls-client-ca` then needs no secret at all. Unknown keys are errors, so a typo
//! (`scope =`, `[[tokens]]`) cannot silently widen or drop a token. A file
//! without any entry is refused: an empty or truncated file written half-way
//! through a deploy must not revoke every token at reload.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::credentials::SecretDigest;
use super::scope::{Scope, Scopes};

/// The longest token name: names appear in logs, metrics labels and stored
/// events.
pub const MAX_NAME_LEN: usize = 64;

/// The highest `rate`: one event per nanosecond, the resolution of the
/// limiter's clock.
pub const MAX_RATE: u32 = 1_000_000_000;

/// One validated `[[token]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub name: Arc<str>,
    /// What a client shows to be this token.
    pub credential: Credential,
    pub scopes: Scopes,
    /// `None`: every source. Otherwise at least one non-empty prefix.
    pub sources: Option<Box<[Box<str>]>>,
    pub rate: Option<Rate>,
}

/// How a client proves it is a token: exactly one of these per entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `sha256`: one digest, or several while a secret is rotated.
    Secret(Box<[SecretDigest]>),
    /// `subject`: the common name (CN) of a client certificate that the
    /// server verified against `--tls-client-ca`.
    Subject(Box<str>),
}

impl Credential {
    /// The digests of a `sha256` entry; none for a `subject` one.
    pub fn digests(&self) -> &[SecretDigest] {
        match self {
            Credential::Secret(digests) => digests,
            Credential::Subject(_) => &[],
        }
    }

    /// The certificate subject of a `subject` entry.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Credential::Secret(_) => None,
            Credential::Subject(cn) => Some(cn),
        }
    }
}

/// Whether the server verifies client certificates (`--tls-client-ca`):
/// without that, no connection has a certificate subject, so an entry
/// naming one could never be used and is refused instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    Off,
    Verified,
}

/// A quota: events per second, and how many may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// A tokens file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("tokens file {}: {kind}", file.display())]
pub struct TokensError {
    pub file: PathBuf,
    pub kind: TokensErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum TokensErrorKind {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("not valid TOML: {0}")]
    Syntax(String),
    #[error("{0}")]
    File(String),
    #[error("[[token]] entry {index}{}: {what}", name.as_deref().map(|n| format!(" (\"{n}\")")).unwrap_or_default())]
    Entry { index: usize, name: Option<String>, what: String },
}

/// Reads and checks a tokens file.
pub fn load(path: &Path) -> Result<Vec<TokenSpec>, TokensError> {
    let text = std::fs::read_to_string(path).map_err(|e| TokensError { file: path.to_owned(), kind: e.into() })?;
    parse(path, &text)
}

/// Checks the text of a tokens file; `path` is only used in errors.
pub fn parse(path: &Path, text: &str) -> Result<Vec<TokenSpec>, TokensError> {
    parse_text(text).map_err(|kind| TokensError { file: path.to_owned(), kind })
}

fn parse_text(text: &str) -> Result<Vec<TokenSpec>, TokensErrorKind> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|span| format!("line {}: ", line_of(text, span.start))).unwrap_or_default();
        TokensErrorKind::Syntax(format!("{at}{}", e.message().trim_end()))
    })?;
    let mut entries = None;
    for (key, value) in &table {
        match (key.as_str(), value) {
            ("token", toml::Value::Array(list)) => entries = Some(list),
            ("token", _) => {
                return Err(TokensErrorKind::File(
                    "`token` must be an array of tables: write each entry as [[token]]".into(),
                ))
            }
            (other, _) => {
                return Err(TokensErrorKind::File(format!(
                    "unknown top-level key `{other}` (expected [[token]] entries)"
                )))
            }
        }
    }
    let entries = match entries {
        Some(list) if !list.is_empty() => list,
        _ => return Err(TokensErrorKind::File("no [[token]] entries: at least one is needed".into())),
    };
    let mut specs: Vec<TokenSpec> = Vec::with_capacity(entries.len());
    for (i, value) in entries.iter().enumerate() {
        let index = i + 1;
        let spec = entry(value).map_err(|(name, what)| TokensErrorKind::Entry { index, name, what })?;
        let err = |what: String| TokensErrorKind::Entry { index, name: Some(spec.name.to_string()), what };
        if let Some(j) = specs.iter().position(|s| s.name == spec.name) {
            return Err(err(format!("name is already used by entry {}", j + 1)));
        }
        let digests = spec.credential.digests();
        if let Some(j) = specs.iter().position(|s| s.credential.digests().iter().any(|d| digests.contains(d))) {
            return Err(err(format!("a sha256 of it is also entry {}'s: one secret, one name", j + 1)));
        }
        if let Some(subject) = spec.credential.subject() {
            if let Some(j) = specs.iter().position(|s| s.credential.subject() == Some(subject)) {
                return Err(err(format!("its subject is also entry {}'s: one certificate subject, one name", j + 1)));
            }
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// Refuses entries that name a certificate `subject` when the server does
/// not verify client certificates; the error names the first such entry.
pub fn check_client_certs(path: &Path, specs: &[TokenSpec], client_certs: ClientCerts) -> Result<(), TokensError> {
    if client_certs == ClientCerts::Verified {
        return Ok(());
    }
    match specs.iter().position(|s| s.credential.subject().is_some()) {
        None => Ok(()),
        Some(i) => Err(TokensError {
            file: path.to_owned(),
            kind: TokensErrorKind::Entry {
                index: i + 1,
                name: Some(specs[i].name.to_string()),
                what: "`subject` names a client certificate, which needs --tls-client-ca (mTLS); without it no \
                       connection has one"
                    .into(),
            },
        }),
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count()
}

/// One entry; the error carries the entry's name when it has a valid one.
fn entry(value: &toml::Value) -> Result<TokenSpec, (Option<String>, String)> {
    let Some(table) = value.as_table() else {
        return Err((None, "must be a table".into()));
    };
    let name = match table.get("name") {
        None => return Err((None, "`name` is missing".into())),
        Some(v) => match v.as_str() {
            Some(n) if valid_name(n) => n,
            Some(_) => {
                return Err((None, format!("`name` must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ -")))
            }
            None => return Err((None, "`name` must be a string".into())),
        },
    };
    let fail = |what: String| (Some(name.to_string()), what);
    for key in table.keys() {
        if !matches!(key.as_str(), "name" | "sha256" | "subject" | "scopes" | "sources" | "rate" | "burst") {
            return Err(fail(format!(
                "unknown key `{key}` (expected name, sha256, subject, scopes, sources, rate, burst)"
            )));
        }
    }
    let credential = match (table.get("sha256"), table.get("subject")) {
        (Some(v), None) => Credential::Secret(digests(v).map_err(fail)?),
        (None, Some(v)) => Credential::Subject(subject(v).map_err(fail)?),
        (None, None) => {
            return Err(fail(
                "`sha256` is missing (or `subject`, to name a client certificate instead of a secret)".into(),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(fail(
                "has both `sha256` and `subject`: an entry names a secret or a certificate, not both".into(),
            ))
        }
    };
    let scopes = match table.get("scopes") {
        None => return Err(fail("`scopes` is missing".into())),
        Some(v) => scopes(v).map_err(fail)?,
    };
    let sources = match table.get("sources") {
        None => None,
        Some(v) => Some(sources(v).map_err(fail)?),
    };
    let rate = match (table.get("rate"), table.get("burst")) {
        (None, None) => None,
        (None, Some(_)) => return Err(fail("`burst` needs `rate`".into())),
        (Some(r), burst) => {
            let per_second = positive(r)
                .filter(|r| r.get() <= MAX_RATE)
                .ok_or_else(|| fail("`rate` must be an integer from 1 to 1000000000".into()))?;
            let burst = match burst {
                None => per_second,
                Some(b) => positive(b).ok_or_else(|| fail("`burst` must be an integer from 1 to 4294967295".into()))?,
            };
            Some(Rate { per_second, burst })
        }
    };
    Ok(TokenSpec { name: name.into(), credential, scopes, sources, rate })
}

/// Names appear in logs, metric labels and stored events: a small,
/// quote-free alphabet keeps every one of those safe without escaping.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The most digests one entry may list: a rotation needs two.
pub const MAX_DIGESTS: usize = 4;

fn digests(v: &toml::Value) -> Result<Box<[SecretDigest]>, String> {
    let expected = || {
        format!(
            "`sha256` must be 64 hex digits (the SHA-256 of the secret), or a list of 1 to {MAX_DIGESTS} of them \
             while rotating"
        )
    };
    let list: Vec<SecretDigest> = match v {
        toml::Value::String(hex) => vec![SecretDigest::from_hex(hex).ok_or_else(expected)?],
        toml::Value::Array(items) if (1..=MAX_DIGESTS).contains(&items.len()) => items
            .iter()
            .map(|item| item.as_str().and_then(SecretDigest::from_hex).ok_or_else(expected))
            .collect::<Result<_, _>>()?,
        _ => return Err(expected()),
    };
    for (i, d) in list.iter().enumerate() {
        if list[..i].contains(d) {
            return Err("`sha256` lists the same digest twice".into());
        }
    }
    Ok(list.into())
}

/// The longest `subject`: the upper bound of a common name (RFC 5280,
/// `ub-common-name`), in characters.
pub const MAX_SUBJECT_LEN: usize = 64;

/// A certificate subject's common name, compared exactly (case and all)
/// with the CN of the client's verified certificate.
fn subject(v: &toml::Value) -> Result<Box<str>, String> {
    let expected = || {
        format!(
            "`subject` must be the common name (CN) of a client certificate: 1 to {MAX_SUBJECT_LEN} characters, none \
             of them a control character"
        )
    };
    let cn = v.as_str().ok_or_else(expected)?;
    let length = cn.chars().count();
    if !(1..=MAX_SUBJECT_LEN).contains(&length) || cn.chars().any(char::is_control) {
        return Err(expected());
    }
    Ok(cn.into())
}

fn scopes(v: &toml::Value) -> Result<Scopes, String> {
    const EXPECTED: &str = "`scopes` must be a non-empty list of \"write\", \"read\", \"metrics\"";
    let list = v.as_array().ok_or_else(|| EXPECTED.to_string())?;
    let mut set = Scopes::NONE;
    for item in list {
        let name = item.as_str().ok_or_else(|| EXPECTED.to_string())?;
        let scope = Scope::parse(name)
            .ok_or_else(|| format!("unknown scope \"{}\" (expected write, read, metrics)", name.escape_debug()))?;
        set = set.with(scope);
    }
    if set.is_empty() {
        return Err(EXPECTED.into());
    }
    Ok(set)
}

fn sources(v: &toml::Value) -> Result<Box<[Box<str>]>, String> {
    const EXPECTED: &str = "`sources` must be a non-empty list of non-empty strings (omit it to allow every source)";
    let list = v.as_array().filter(|l| !l.is_empty()).ok_or_else(|| EXPECTED.to_string())?;
    list.iter()
        .map(|item| item.as_str().filter(|s| !s.is_empty()).map(Box::from).ok_or_else(|| EXPECTED.to_string()))
        .collect()
}

fn positive(v: &toml::Value) -> Option<NonZeroU32> {
    v.as_integer().and_then(|i| u32::try_from(i).ok()).and_then(NonZeroU32::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const HASH_B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

    fn parse_str(text: &str) -> Result<Vec<TokenSpec>, String> {
        parse(Path::new("/etc/inlet/tokens.toml"), text).map_err(|e| e.to_string())
    }

    fn entry_error(body: &str) -> String {
        let text =
            format!("[[token]]\nname = \"first\"\nsha256 = \"{HASH_B}\"\nscopes = [\"read\"]\n\n[[token]]\n{body}");
        match parse_str(&text) {
            Ok(specs) => panic!("accepted: {specs:?}"),
            Err(e) => e,
        }
    }

    fn good(extra: &str) -> String {
        format!("name = \"shop\"\nsha256 = \"{HASH_A}\"\nscopes = [\"write\"]\n{extra}")
    }

    #[test]
    fn the_issue_example_parses() {
        let text = format!(
            "[[token]]\nname = \"shop\"\nsha256 = \"{HASH_A}\"\nscopes = [\"write\", \"read\"]\nsources = [\"/shop/\"]\n\
             rate = 1000\nburst = 2000\n\n[[token]]\nname = \"grafana\"\nsha256 = \"{}\"\nscopes = [\"metrics\"]\n",
            HASH_B.to_uppercase()
        );
        let specs = parse_str(&text).unwrap();
        assert_eq!(specs.len(), 2);
        let shop = &specs[0];
        assert_eq!(&*shop.name, "shop");
        assert_eq!(shop.credential.digests(), &[SecretDigest::of(b"test")]);
        assert_eq!(shop.scopes, [Scope::Write, Scope::Read].into_iter().collect());
        assert_eq!(shop.sources.as_deref(), Some(&["/shop/".into()][..]));
        assert_eq!(
            shop.rate,
            Some(Rate { per_second: NonZeroU32::new(1000).unwrap(), burst: NonZeroU32::new(2000).unwrap() })
        );
        let grafana = &specs[1];
        assert_eq!(grafana.credential.digests().len(), 1);
        assert_eq!(grafana.credential.digests()[0].to_hex(), HASH_B);
        assert_eq!(grafana.scopes, Scopes::NONE.with(Scope::Metrics));
        assert_eq!(grafana.sources, None);
        assert_eq!(grafana.rate, None);
    }

    #[test]
    fn burst_defaults_to_rate() {
        let specs = parse_str(&format!("[[token]]\n{}", good("rate = 5"))).unwrap();
        let five = NonZeroU32::new(5).unwrap();
        assert_eq!(specs[0].rate, Some(Rate { per_second: five, burst: five }));
    }

    #[test]
    fn rate_and_burst_limits() {
        let max = parse_str(&format!("[[token]]\n{}", good("rate = 1000000000\nburst = 4294967295"))).unwrap();
        assert_eq!(max[0].rate.unwrap().per_second.get(), MAX_RATE);
        assert_eq!(max[0].rate.unwrap().burst.get(), u32::MAX);
        for (extra, what) in [
            ("rate = 0", "`rate` must be an integer from 1 to 1000000000"),
            ("rate = -1", "`rate` must be an integer from 1 to 1000000000"),
            ("rate = 1000000001", "`rate` must be an integer from 1 to 1000000000"),
            ("rate = 1.5", "`rate` must be an integer from 1 to 1000000000"),
            ("rate = \"10\"", "`rate` must be an integer from 1 to 1000000000"),
            ("rate = 10\nburst = 0", "`burst` must be an integer from 1 to 4294967295"),
            ("rate = 10\nburst = 4294967296", "`burst` must be an integer from 1 to 4294967295"),
            ("burst = 10", "`burst` needs `rate`"),
        ] {
            assert_eq!(
                entry_error(&good(extra)),
                format!("tokens file /etc/inlet/tokens.toml: [[token]] entry 2 (\"shop\"): {what}"),
                "{extra}"
            );
        }
    }

    const BAD_SHA: &str = " (\"shop\"): `sha256` must be 64 hex digits (the SHA-256 of the secret), or a list of 1 \
                           to 4 of them while rotating";

    #[test]
    fn a_rotation_lists_several_digests() {
        let specs = parse_str(&format!(
            "[[token]]\nname = \"shop\"\nsha256 = [\"{HASH_A}\", \"{HASH_B}\"]\nscopes = [\"write\"]\n"
        ))
        .unwrap();
        assert_eq!(specs[0].credential.digests().iter().map(|d| d.to_hex()).collect::<Vec<_>>(), vec![HASH_A, HASH_B]);
    }

    #[test]
    fn every_entry_error_names_the_file_the_entry_and_the_problem() {
        let prefix = "tokens file /etc/inlet/tokens.toml: [[token]] entry 2";
        let cases: Vec<(String, String)> = vec![
            (format!("sha256 = \"{HASH_A}\"\nscopes = [\"write\"]"), ": `name` is missing".into()),
            (format!("name = 7\nsha256 = \"{HASH_A}\""), ": `name` must be a string".into()),
            (
                format!("name = \"\"\nsha256 = \"{HASH_A}\""),
                ": `name` must be 1 to 64 characters of A-Z a-z 0-9 . _ -".into(),
            ),
            (
                format!("name = \"a b\"\nsha256 = \"{HASH_A}\""),
                ": `name` must be 1 to 64 characters of A-Z a-z 0-9 . _ -".into(),
            ),
            (
                format!("name = \"{}\"\nsha256 = \"{HASH_A}\"", "n".repeat(65)),
                ": `name` must be 1 to 64 characters of A-Z a-z 0-9 . _ -".into(),
            ),
            (
                "name = \"shop\"\nscopes = [\"write\"]".into(),
                " (\"shop\"): `sha256` is missing (or `subject`, to name a client certificate instead of a secret)"
                    .into(),
            ),
            ("name = \"shop\"\nsha256 = \"abc\"\nscopes = [\"write\"]".into(), BAD_SHA.into()),
            (format!("name = \"shop\"\nsha256 = \"{}z\"\nscopes = [\"write\"]", &HASH_A[..63]), BAD_SHA.into()),
            ("name = \"shop\"\nsha256 = []\nscopes = [\"write\"]".into(), BAD_SHA.into()),
            ("name = \"shop\"\nsha256 = 7\nscopes = [\"write\"]".into(), BAD_SHA.into()),
            (format!("name = \"shop\"\nsha256 = [\"{HASH_A}\", \"abc\"]\nscopes = [\"write\"]"), BAD_SHA.into()),
            (
                format!(
                    "name = \"shop\"\nsha256 = [{}]\nscopes = [\"write\"]",
                    vec![format!("\"{HASH_A}\""); 5].join(",")
                ),
                BAD_SHA.into(),
            ),
            (
                format!(
                    "name = \"shop\"\nsha256 = [\"{HASH_A}\", \"{}\"]\nscopes = [\"write\"]",
                    HASH_A.to_uppercase()
                ),
                " (\"shop\"): `sha256` lists the same digest twice".into(),
            ),
            (
                format!("name = \"other\"\nsha256 = [\"{HASH_A}\", \"{HASH_B}\"]\nscopes = [\"write\"]"),
                " (\"other\"): a sha256 of it is also entry 1's: one secret, one name".into(),
            ),
            (format!("name = \"shop\"\nsha256 = \"{HASH_A}\""), " (\"shop\"): `scopes` is missing".into()),
            (
                format!("name = \"shop\"\nsha256 = \"{HASH_A}\"\nscopes = []"),
                " (\"shop\"): `scopes` must be a non-empty list of \"write\", \"read\", \"metrics\"".into(),
            ),
            (
                format!("name = \"shop\"\nsha256 = \"{HASH_A}\"\nscopes = \"write\""),
                " (\"shop\"): `scopes` must be a non-empty list of \"write\", \"read\", \"metrics\"".into(),
            ),
            (
                format!("name = \"shop\"\nsha256 = \"{HASH_A}\"\nscopes = [\"write\", \"admin\"]"),
                " (\"shop\"): unknown scope \"admin\" (expected write, read, metrics)".into(),
            ),
            (
                format!("name = \"shop\"\nsha256 = \"{HASH_A}\"\nscopes = [\"Write\"]"),
                " (\"shop\"): unknown scope \"Write\" (expected write, read, metrics)".into(),
            ),
            (
                good("sources = []"),
                " (\"shop\"): `sources` must be a non-empty list of non-empty strings (omit it to allow every source)"
                    .into(),
            ),
            (
                good("sources = [\"/a/\", \"\"]"),
                " (\"shop\"): `sources` must be a non-empty list of non-empty strings (omit it to allow every source)"
                    .into(),
            ),
            (
                good("sources = \"/a/\""),
                " (\"shop\"): `sources` must be a non-empty list of non-empty strings (omit it to allow every source)"
                    .into(),
            ),
            (
                good("scope = [\"read\"]"),
                " (\"shop\"): unknown key `scope` (expected name, sha256, subject, scopes, sources, rate, burst)"
                    .into(),
            ),
            (
                format!("name = \"first\"\nsha256 = \"{HASH_A}\"\nscopes = [\"write\"]"),
                " (\"first\"): name is already used by entry 1".into(),
            ),
            (
                format!("name = \"other\"\nsha256 = \"{HASH_B}\"\nscopes = [\"write\"]"),
                " (\"other\"): a sha256 of it is also entry 1's: one secret, one name".into(),
            ),
        ];
        for (body, what) in cases {
            assert_eq!(entry_error(&body), format!("{prefix}{what}"), "{body}");
        }
    }

    #[test]
    fn a_subject_entry_names_a_client_certificate_instead_of_a_secret() {
        let text = format!(
            "[[token]]\nname = \"shop\"\nsha256 = \"{HASH_A}\"\nscopes = [\"write\"]\n\n[[token]]\nname = \"orders\"\n\
             subject = \"svc-orders.example\"\nscopes = [\"write\", \"read\"]\nrate = 5\n\n[[token]]\nname = \"max\"\n\
             subject = \"{}\"\nscopes = [\"read\"]\n",
            "\u{e9}".repeat(MAX_SUBJECT_LEN)
        );
        let specs = parse_str(&text).unwrap();
        assert_eq!(specs[0].credential.subject(), None);
        assert_eq!(specs[1].credential, Credential::Subject("svc-orders.example".into()));
        assert_eq!(specs[1].credential.digests(), &[]);
        assert_eq!(specs[1].scopes, [Scope::Write, Scope::Read].into_iter().collect());
        assert_eq!(specs[1].rate.unwrap().per_second.get(), 5);
        assert_eq!(specs[2].credential.subject().map(|s| s.chars().count()), Some(MAX_SUBJECT_LEN));
    }

    #[test]
    fn subject_errors() {
        let prefix = "tokens file /etc/inlet/tokens.toml: [[token]] entry 2 (\"svc\"): ";
        let bad = "`subject` must be the common name (CN) of a client certificate: 1 to 64 characters, none of them a \
                   control character";
        let long = "n".repeat(MAX_SUBJECT_LEN + 1);
        let cases: Vec<(String, &str)> = vec![
            ("subject = \"\"".into(), bad),
            (format!("subject = \"{long}\""), bad),
            ("subject = \"a\\nb\"".into(), bad),
            ("subject = \"a\\u0000\"".into(), bad),
            ("subject = 7".into(), bad),
            ("subject = [\"svc\"]".into(), bad),
            (
                format!("subject = \"svc\"\nsha256 = \"{HASH_A}\""),
                "has both `sha256` and `subject`: an entry names a secret or a certificate, not both",
            ),
        ];
        for (line, what) in cases {
            let body = format!("name = \"svc\"\n{line}\nscopes = [\"write\"]");
            assert_eq!(entry_error(&body), format!("{prefix}{what}"), "{line}");
        }
        // Unique: two names for one certificate would make it ambiguous.
        let text = "[[token]]\nname = \"a\"\nsubject = \"svc\"\nscopes = [\"write\"]\n\n\
                    [[token]]\nname = \"b\"\nsubject = \"svc\"\nscopes = [\"read\"]\n";
        assert_eq!(
            parse_str(text).unwrap_err(),
            "tokens file /etc/inlet/tokens.toml: [[token]] entry 2 (\"b\"): its subject is also entry 1's: one \
             certificate subject, one name"
        );
        // Compared exactly: another case is another subject.
        let text = text.replace("name = \"b\"\nsubject = \"svc\"", "name = \"b\"\nsubject = \"SVC\"");
        assert_eq!(parse_str(&text).unwrap().len(), 2);
    }

    #[test]
    fn a_subject_entry_needs_client_certificates() {
        let path = Path::new("/etc/inlet/tokens.toml");
        let text = format!(
            "[[token]]\nname = \"shop\"\nsha256 = \"{HASH_A}\"\nscopes = [\"write\"]\n\n\
             [[token]]\nname = \"orders\"\nsubject = \"svc-orders\"\nscopes = [\"write\"]\n"
        );
        let specs = parse(path, &text).unwrap();
        assert!(check_client_certs(path, &specs, ClientCerts::Verified).is_ok());
        assert_eq!(
            check_client_certs(path, &specs, ClientCerts::Off).unwrap_err().to_string(),
            "tokens file /etc/inlet/tokens.toml: [[token]] entry 2 (\"orders\"): `subject` names a client \
             certificate, which needs --tls-client-ca (mTLS); without it no connection has one"
        );
        assert!(check_client_certs(path, &specs[..1], ClientCerts::Off).is_ok());
    }

    #[test]
    fn file_level_errors() {
        let p = "tokens file /etc/inlet/tokens.toml: ";
        assert_eq!(parse_str("").unwrap_err(), format!("{p}no [[token]] entries: at least one is needed"));
        assert_eq!(
            parse_str("# all revoked\n").unwrap_err(),
            format!("{p}no [[token]] entries: at least one is needed")
        );
        assert_eq!(parse_str("token = []").unwrap_err(), format!("{p}no [[token]] entries: at least one is needed"));
        assert_eq!(
            parse_str(&format!("[[tokens]]\n{}", good(""))).unwrap_err(),
            format!("{p}unknown top-level key `tokens` (expected [[token]] entries)")
        );
        assert_eq!(
            parse_str("[token]\nname = \"x\"").unwrap_err(),
            format!("{p}`token` must be an array of tables: write each entry as [[token]]")
        );
        assert_eq!(parse_str("token = [1]").unwrap_err(), format!("{p}[[token]] entry 1: must be a table"));
        let syntax = parse_str("[[token]]\nname = \"shop").unwrap_err();
        assert_eq!(syntax, format!("{p}not valid TOML: line 2: invalid basic string, expected `\"`"));
        let syntax = parse_str("[[token]]\nname = \"a\"\n\nscopes = [\"write\",\n").unwrap_err();
        assert_eq!(syntax, format!("{p}not valid TOML: line 4: unclosed array, expected `]`"));
    }

    #[test]
    fn a_missing_file_names_the_file() {
        let e = load(Path::new("/nonexistent/inlet-tokens.toml")).unwrap_err();
        assert!(matches!(e.kind, TokensErrorKind::Io(_)));
        assert!(e.to_string().starts_with("tokens file /nonexistent/inlet-tokens.toml: cannot read it: "), "{e}");
    }

    #[test]
    fn names_allow_only_the_safe_alphabet() {
        assert!(valid_name("shop-eu_1.prod"));
        assert!(valid_name(&"n".repeat(MAX_NAME_LEN)));
        assert!(!valid_name(&"n".repeat(MAX_NAME_LEN + 1)));
        for bad in ["", "a b", "a\"b", "a\nb", "caf\u{e9}", "a/b", "a=b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
