//! `inlet-server token new`: a fresh secret and the tokens-file entry that
//! admits it.
//!
//! A secret is `inlet_` followed by 32 bytes from the operating system's
//! random source, base64url without padding (43 characters): 256 bits,
//! every character inside RFC 6750's `b64token`, so it goes into a Bearer
//! header, a Basic user name, a URL or a shell variable unquoted. The fixed
//! prefix lets secret scanners find leaked ones.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::credentials::SecretDigest;
use super::scope::Scope;
use super::tokens::{valid_name, MAX_NAME_LEN};

/// The prefix of every secret inlet makes.
pub const SECRET_PREFIX: &str = "inlet_";

/// Random bytes per secret.
pub const SECRET_BYTES: usize = 32;

/// A new token: the secret, to be shown once, and the entry to add.
pub struct NewToken {
    pub secret: String,
    pub entry: String,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken").field("secret", &"<redacted>").field("entry", &self.entry).finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NewTokenError {
    #[error("--name must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ -")]
    Name,
    #[error("--scope needs at least one of write, read, metrics")]
    NoScope,
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// Makes a secret from the OS random source and the `[[token]]` entry for
/// `name` with `scopes`.
pub fn new_token(name: &str, scopes: &[Scope]) -> Result<NewToken, NewTokenError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| NewTokenError::Random(e.to_string()))?;
    let token = token_from_bytes(name, scopes, &bytes);
    bytes.fill(0);
    std::hint::black_box(&bytes);
    token
}

fn token_from_bytes(name: &str, scopes: &[Scope], bytes: &[u8; SECRET_BYTES]) -> Result<NewToken, NewTokenError> {
    if !valid_name(name) {
        return Err(NewTokenError::Name);
    }
    if scopes.is_empty() {
        return Err(NewTokenError::NoScope);
    }
    let secret = format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let mut listed: Vec<&str> = Vec::new();
    for s in Scope::ALL {
        if scopes.contains(&s) {
            listed.push(s.as_str());
        }
    }
    let scopes = listed.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    // `name` is of the safe alphabet, so it needs no TOML escaping.
    let entry = format!(
        "[[token]]\nname = \"{name}\"\nsha256 = \"{}\"\nscopes = [{scopes}]\n",
        SecretDigest::of(secret.as_bytes()).to_hex()
    );
    Ok(NewToken { secret, entry })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::auth::tokens;

    #[test]
    fn a_secret_is_the_prefix_and_43_base64url_characters() {
        let t = new_token("shop", &[Scope::Write]).unwrap();
        assert_eq!(t.secret.len(), SECRET_PREFIX.len() + 43);
        let body = t.secret.strip_prefix(SECRET_PREFIX).unwrap();
        assert!(body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{body}");
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), SECRET_BYTES);
    }

    #[test]
    fn secrets_differ_and_use_the_whole_alphabet() {
        // 64 secrets of 256 bits: any repeat, or a byte that never varies,
        // means the source is not random.
        let secrets: Vec<Vec<u8>> = (0..64)
            .map(|_| {
                let t = new_token("a", &[Scope::Read]).unwrap();
                URL_SAFE_NO_PAD.decode(&t.secret[SECRET_PREFIX.len()..]).unwrap()
            })
            .collect();
        let mut unique = secrets.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), secrets.len());
        for i in 0..SECRET_BYTES {
            let first = secrets[0][i];
            assert!(secrets.iter().any(|s| s[i] != first), "byte {i} never changes");
        }
    }

    #[test]
    fn the_entry_parses_and_matches_the_secret() {
        let t = token_from_bytes("shop-eu", &[Scope::Read, Scope::Write], &[0xAB; SECRET_BYTES]).unwrap();
        assert_eq!(t.secret, format!("{SECRET_PREFIX}{}", "q6ur".repeat(10) + "q6s"));
        let digest = SecretDigest::of(t.secret.as_bytes());
        assert_eq!(
            t.entry,
            format!(
                "[[token]]\nname = \"shop-eu\"\nsha256 = \"{}\"\nscopes = [\"write\", \"read\"]\n",
                digest.to_hex()
            )
        );
        let specs = tokens::parse(Path::new("t.toml"), &t.entry).unwrap();
        assert_eq!(&*specs[0].name, "shop-eu");
        assert_eq!(specs[0].credential.digests(), &[digest]);
        assert!(specs[0].scopes.contains(Scope::Write) && specs[0].scopes.contains(Scope::Read));
        assert!(!specs[0].scopes.contains(Scope::Metrics));
    }

    #[test]
    fn bad_names_and_no_scopes_are_refused() {
        assert_eq!(new_token("", &[Scope::Write]).unwrap_err(), NewTokenError::Name);
        assert_eq!(new_token("a\"b", &[Scope::Write]).unwrap_err(), NewTokenError::Name);
        assert_eq!(new_token("a\n[[token]]", &[Scope::Write]).unwrap_err(), NewTokenError::Name);
        assert_eq!(new_token("shop", &[]).unwrap_err(), NewTokenError::NoScope);
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = new_token("shop", &[Scope::Write]).unwrap();
        let printed = format!("{t:?}");
        assert!(!printed.contains(&t.secret[SECRET_PREFIX.len()..]), "{printed}");
        assert!(printed.contains("<redacted>"));
    }
}
