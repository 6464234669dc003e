//! Access control: who may write, read and scrape, and how fast.
//!
//! # One request through the check
//! 1. The handler knows the [`Scope`] its route needs (`write` for
//!    `POST /events` and `POST /echo`, `read` for `GET /events` and
//!    `/stats`, `metrics` for `/metrics`; `/health` is not checked) and calls
//!    [`Auth::check`] with the raw `Authorization` header value.
//! 2. [`Credentials::parse`] reads `Bearer <secret>` or
//!    `Basic base64(<secret>:)` and hashes the secret with SHA-256 right
//!    there; only the digest leaves it. Without an `Authorization` header,
//!    on a connection whose client showed a certificate verified against
//!    `--tls-client-ca` ([`Auth::check_peer`], [`Auth::check_with`]), the
//!    token is instead the one whose `subject` is the certificate's CN (one
//!    hash-map lookup; a subject is not a secret); a presented secret always
//!    takes precedence over the certificate.
//! 3. The digest's first 8 bytes index a hash map of the loaded tokens
//!    (loaded through an `ArcSwap`, so a `SIGHUP` reload is seen by the next
//!    request); the one candidate, if any, is compared over all 32 bytes in
//!    constant time (`subtle`). With [`Auth::check_with`] and a
//!    [`CredentialCache`] per connection, the later requests of a
//!    keep-alive connection that send the same header skip steps 2 and 3: a
//!    constant-time compare of the header bytes and of the token set's
//!    generation stands in for them, so a reload still takes effect at once.
//! 4. The token's scopes are a bit set: one `AND` decides `403`.
//! 5. The handler gets a [`Principal`]: the token's name, which the stored
//!    events and the per-token counters carry; [`Principal::allows_source`]
//!    for each event's `source` (`403` if any is outside the token's
//!    prefixes); and [`Principal::try_take`] with the batch's event count
//!    (`429`, or `413` for a batch larger than the burst). All of this
//!    happens before anything is stored, so a refused batch stores nothing.
//!
//! Any refusal is a [`Denied`], which gives the status, the RFC 9457
//! problem and the extra headers (`WWW-Authenticate`, `Retry-After`,
//! `RateLimit-Policy`, `RateLimit`).
//!
//! # Cost
//! Without `--tokens`, [`Auth::anonymous`] answers every check with one
//! `match` and no allocation. With tokens, the first request of a
//! connection costs an `ArcSwap` load, one SHA-256 of a ~50-byte secret
//! (one compression block), one hash-map probe keyed by bytes that are
//! already a hash (no hashing), one 32-byte constant-time compare and one
//! `Arc` clone. With the connection's [`CredentialCache`], the requests
//! after the first replace all of that with one atomic load (the token
//! set's generation) and a constant-time compare of the ~60 header bytes,
//! eight at a time. A quota adds one compare-and-swap on the token's own
//! atomic (no lock shared between tokens); the per-token counters are two
//! atomic adds on counters the token keeps. Refusals format their problem
//! text; successes format nothing.
//!
//! Measured with `bench/instructions.sh 5000 25000` (callgrind, one worker,
//! 8 keep-alive connections, one event per request): 18,436 instructions
//! per request without tokens, 19,282 with `TOKENS=1` (+4.6%). Of the 846,
//! 475 are the server parsing the ~60 bytes of `Authorization` the client
//! sends (`CLIENT_TOKEN=... ` against a server without tokens: 18,911);
//! the check itself is the other 371 (+2.0%).
//!
//! # Why this is constant-time where it matters
//! A timing side channel matters only where the time depends on a stored
//! secret. The secret is never stored: the file holds SHA-256 digests. The
//! hashing time depends on the length of what the client sent, which the
//! client knows. The map probe depends on the digest of the client's own
//! input, i.e. on something the client can compute itself; learning that
//! no stored digest shares its first 8 bytes tells an attacker nothing that
//! helps, since making an input whose digest matches a stored one is a
//! SHA-256 preimage search. The full comparison, the only place a stored
//! value is compared to a presented one byte by byte, uses
//! `subtle::ConstantTimeEq`, so it does not stop at the first differing
//! byte. The [`CredentialCache`] compares raw header bytes, which are a
//! secret: behind a proxy that reuses one upstream connection for many
//! clients, the remembered header may be another client's. That comparison
//! is constant-time too; only the header's length can show in its timing.
//!
//! # Guarantees
//! - A secret never reaches a log line, a metric, `/stats`, an error body
//!   or a panic message: the parser hashes it and forgets it (the one copy
//!   kept, a connection's [`CredentialCache`], is never printed and is
//!   zeroed when dropped); [`Denied`]
//!   texts describe the shape of a bad header, never its content; every
//!   `Debug` here prints names and scopes, never digests or secrets.
//! - A tokens file is used whole or not at all: the first load fails the
//!   start, a failing reload keeps the old set ([`Auth::reload`]).
//! - Quotas are per token; limiters survive a reload when a token keeps its
//!   name and rate.
//!
//! # Files
//! `tokens`: the file format and its checks. `credentials`: the header.
//! `scope`: scopes. `quota`: GCRA limiters and the RateLimit fields.
//! `reload`: the swappable token set. `secret`: `token new`.

mod credentials;
mod quota;
mod reload;
mod scope;
mod secret;
mod tokens;

use std::path::Path;
use std::sync::Arc;

use inlet_shared::problem::{FieldError, Problem};
use subtle::ConstantTimeEq;

pub use credentials::{Credentials, Malformed, SecretDigest, MAX_CREDENTIALS_LEN};
pub use quota::{OverQuota, QuotaClock, RetryAfter};
pub use reload::{ReloadReport, Token};
pub use scope::{Scope, Scopes};
pub use secret::{new_token, NewToken, NewTokenError, SECRET_PREFIX};
pub use tokens::{
    ClientCerts, Credential, Rate, TokenSpec, TokensError, TokensErrorKind, MAX_NAME_LEN, MAX_RATE, MAX_SUBJECT_LEN,
};

use crate::tls::PeerIdentity;
use reload::Reloadable;

/// The `WWW-Authenticate` value of every `401` (RFC 6750 §3).
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"inlet\"";

/// The access policy of a server: anonymous, or the tokens of a file.
#[derive(Debug)]
pub struct Auth {
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Anonymous,
    Tokens(Reloadable),
}

impl Auth {
    /// Everything is allowed; used without `--tokens`.
    pub fn anonymous() -> Auth {
        Auth { mode: Mode::Anonymous }
    }

    /// Loads a tokens file; any error in it is an error here. Entries that
    /// name a certificate `subject` are an error unless `client_certs` is
    /// [`ClientCerts::Verified`] (`--tls-client-ca`), at start and at every
    /// reload.
    pub fn from_file(path: &Path, client_certs: ClientCerts) -> Result<Auth, TokensError> {
        Auth::from_file_with_clock(path, client_certs, QuotaClock::real())
    }

    /// As [`Auth::from_file`], with the clock the quotas run on.
    pub fn from_file_with_clock(
        path: &Path,
        client_certs: ClientCerts,
        clock: QuotaClock,
    ) -> Result<Auth, TokensError> {
        Ok(Auth { mode: Mode::Tokens(Reloadable::load(path, client_certs, clock)?) })
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self.mode, Mode::Anonymous)
    }

    /// How many tokens are loaded (0 when anonymous).
    pub fn token_count(&self) -> usize {
        match &self.mode {
            Mode::Anonymous => 0,
            Mode::Tokens(r) => r.len(),
        }
    }

    /// The names of the loaded tokens, sorted (for per-token counters).
    pub fn token_names(&self) -> Vec<Arc<str>> {
        match &self.mode {
            Mode::Anonymous => Vec::new(),
            Mode::Tokens(r) => r.current().names(),
        }
    }

    /// Re-reads the tokens file (on `SIGHUP`). On error the tokens in use
    /// stay; the error names the file and the entry. `Ok(None)` when the
    /// server is anonymous: there is nothing to reload.
    pub fn reload(&self) -> Result<Option<ReloadReport>, TokensError> {
        match &self.mode {
            Mode::Anonymous => Ok(None),
            Mode::Tokens(r) => r.reload().map(Some),
        }
    }

    /// Decides whether a request with this `Authorization` header value
    /// may do what `needed` covers.
    pub fn check(&self, authorization: Option<&[u8]>, needed: Scope) -> Result<Principal, Denied> {
        self.decide(None, None, authorization, needed)
    }

    /// As [`Auth::check`], on a connection whose client showed a verified
    /// certificate (`peer`): a request without `Authorization` is the token
    /// whose `subject` is the certificate's CN. A presented secret is
    /// checked as always and takes precedence: a wrong one is a `401`
    /// whatever the certificate.
    pub fn check_peer(
        &self,
        peer: Option<&PeerIdentity>,
        authorization: Option<&[u8]>,
        needed: Scope,
    ) -> Result<Principal, Denied> {
        self.decide(None, peer, authorization, needed)
    }

    /// As [`Auth::check`], remembering the last accepted credential of a
    /// connection in `cache`, so that the requests after the first on a
    /// keep-alive connection skip the SHA-256: a constant-time comparison
    /// of the header bytes with the remembered ones, and a check that no
    /// reload happened since, replace it. Same answers as `check_peer`.
    pub fn check_with(
        &self,
        cache: &mut CredentialCache,
        peer: Option<&PeerIdentity>,
        authorization: Option<&[u8]>,
        needed: Scope,
    ) -> Result<Principal, Denied> {
        self.decide(Some(cache), peer, authorization, needed)
    }

    fn decide(
        &self,
        cache: Option<&mut CredentialCache>,
        peer: Option<&PeerIdentity>,
        authorization: Option<&[u8]>,
        needed: Scope,
    ) -> Result<Principal, Denied> {
        let tokens = match &self.mode {
            Mode::Anonymous => return Ok(Principal { token: None }),
            Mode::Tokens(r) => r,
        };
        // A cache hit needs only the generation (one atomic load), not the set.
        let hit = cache.as_deref().and_then(|c| c.hit(authorization, tokens.generation())).cloned();
        let token = match hit {
            Some(token) => token,
            None => {
                let set = tokens.current();
                let digest = match Credentials::parse(authorization) {
                    Credentials::Present(d) => d,
                    Credentials::Missing => {
                        // No secret: the client certificate, if there is one.
                        let Some(peer) = peer else {
                            return Err(Denied::Unauthenticated(Unauthenticated::Missing));
                        };
                        let token = set.lookup_subject(&peer.common_name);
                        let token = token.ok_or(Denied::Unauthenticated(Unauthenticated::UnknownSubject))?;
                        return authorized(token.clone(), needed);
                    }
                    Credentials::Malformed(m) => return Err(Denied::Unauthenticated(Unauthenticated::Malformed(m))),
                };
                let token = set.lookup(&digest).ok_or(Denied::Unauthenticated(Unauthenticated::Unknown))?.clone();
                if let (Some(cache), Some(header)) = (cache, authorization) {
                    cache.remember(header, set.generation, token.clone());
                }
                token
            }
        };
        authorized(token, needed)
    }
}

/// The principal of a recognised token, if it has the scope.
fn authorized(token: Arc<Token>, needed: Scope) -> Result<Principal, Denied> {
    if !token.scopes.contains(needed) {
        return Err(Denied::Scope { token: token.name.clone(), needed });
    }
    Ok(Principal { token: Some(token) })
}

/// The last credential a connection presented that matched a token. Kept
/// by the connection, one per connection; it holds the header bytes (the
/// secret), so its `Debug` prints nothing of them and dropping it zeroes
/// them.
#[derive(Default)]
pub struct CredentialCache {
    last: Option<Cached>,
}

struct Cached {
    header: Box<[u8]>,
    generation: u64,
    token: Arc<Token>,
}

impl CredentialCache {
    fn hit(&self, header: Option<&[u8]>, generation: u64) -> Option<&Arc<Token>> {
        let (cached, header) = (self.last.as_ref()?, header?);
        let same = ct_bytes_eq(&cached.header, header);
        (same && cached.generation == generation).then_some(&cached.token)
    }

    fn remember(&mut self, header: &[u8], generation: u64, token: Arc<Token>) {
        if header.len() > MAX_CREDENTIALS_LEN + 16 {
            return;
        }
        self.forget();
        self.last = Some(Cached { header: header.into(), generation, token });
    }

    fn forget(&mut self) {
        if let Some(mut old) = self.last.take() {
            old.header.fill(0);
            std::hint::black_box(&old.header);
        }
    }
}

impl Drop for CredentialCache {
    fn drop(&mut self) {
        self.forget();
    }
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = self.last.as_ref().map(|c| &c.token.name);
        f.debug_struct("CredentialCache").field("token", &token).finish_non_exhaustive()
    }
}

/// Whether `a` and `b` are equal, in time that depends on their length
/// only (the length is not secret: it shows on the wire). Eight bytes at a
/// time with no branch on the data, and the running difference passed
/// through `black_box` so that the compiler cannot stop early; about a
/// tenth of the instructions of `subtle`'s byte-by-byte `ct_eq`, which
/// matters because every keep-alive request with a token pays it.
fn ct_bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, a_rest) = a.as_chunks::<8>();
    let (b_words, b_rest) = b.as_chunks::<8>();
    let mut diff = 0u64;
    for (x, y) in a_words.iter().zip(b_words) {
        diff = std::hint::black_box(diff | (u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y)));
    }
    for (x, y) in a_rest.iter().zip(b_rest) {
        diff = std::hint::black_box(diff | u64::from(x ^ y));
    }
    bool::from(diff.ct_eq(&0))
}

/// Who a request is: a token, or nobody in anonymous mode.
#[derive(Debug, Clone)]
pub struct Principal {
    token: Option<Arc<Token>>,
}

impl Principal {
    /// The anonymous principal (what [`Auth::anonymous`] gives).
    pub fn anonymous() -> Principal {
        Principal { token: None }
    }

    /// The token's name; `None` in anonymous mode.
    pub fn name(&self) -> Option<&Arc<str>> {
        self.token.as_ref().map(|t| &t.name)
    }

    /// Whether the token may write events with this `source`: always when
    /// it has no `sources` list, otherwise when `source` starts with one of
    /// its prefixes (plain string prefixes: `/shop` also admits
    /// `/shopping`, so end a prefix with `/` to mean a path segment).
    pub fn allows_source(&self, source: &str) -> bool {
        match self.source_prefixes() {
            None => true,
            Some(prefixes) => prefixes.iter().any(|p| source.starts_with(&**p)),
        }
    }

    /// The token's name and the slot of its `/stats` counters; `None` in
    /// anonymous mode.
    pub fn counters_slot(&self) -> Option<(&Arc<str>, &std::sync::OnceLock<Arc<crate::stats::TokenCounters>>)> {
        self.token.as_ref().map(|t| (&t.name, &t.counters))
    }

    /// The token's `sources` prefixes, for a refusal's text; `None` when it
    /// may write any source.
    pub fn source_prefixes(&self) -> Option<&[Box<str>]> {
        self.token.as_ref().and_then(|t| t.sources.as_deref())
    }

    /// The refusal for events whose `source` is outside the token's
    /// prefixes; `errors` point at them (`#/3/source`, with the NDJSON line).
    pub fn source_denied(&self, errors: Vec<FieldError>) -> Denied {
        Denied::Source { token: self.name().cloned().unwrap_or_else(|| Arc::from("anonymous")), errors }
    }

    /// Takes `events` from the token's quota, all or nothing. Free without a
    /// quota or in anonymous mode.
    pub fn try_take(&self, events: usize) -> Result<(), Denied> {
        match self.token.as_ref().and_then(|t| t.quota.as_ref()) {
            None => Ok(()),
            Some(q) => q.try_take(events).map_err(|over| Denied::Quota { token: self.token_name(), over }),
        }
    }

    fn token_name(&self) -> Arc<str> {
        self.name().cloned().unwrap_or_else(|| Arc::from("anonymous"))
    }
}

/// Why a `401`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthenticated {
    Missing,
    Malformed(Malformed),
    /// A well-formed secret that no loaded token has: mistyped, revoked, or
    /// never issued. Which one is not said.
    Unknown,
    /// No `Authorization`, and the client certificate's subject is no
    /// token's `subject`.
    UnknownSubject,
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// `401` + `WWW-Authenticate: Bearer realm="inlet"`.
    Unauthenticated(Unauthenticated),
    /// `403`: the token lacks the scope.
    Scope { token: Arc<str>, needed: Scope },
    /// `403`: events with a `source` outside the token's prefixes.
    Source { token: Arc<str>, errors: Vec<FieldError> },
    /// `429` (wait) or `413` (a batch larger than the burst).
    Quota { token: Arc<str>, over: OverQuota },
}

impl Denied {
    pub fn status(&self) -> u16 {
        match self {
            Denied::Unauthenticated(_) => 401,
            Denied::Scope { .. } | Denied::Source { .. } => 403,
            Denied::Quota { over, .. } => over.status(),
        }
    }

    /// The token the refusal is counted against; `None` for `401`.
    pub fn token(&self) -> Option<&Arc<str>> {
        match self {
            Denied::Unauthenticated(_) => None,
            Denied::Scope { token, .. } | Denied::Source { token, .. } | Denied::Quota { token, .. } => Some(token),
        }
    }

    /// The `Retry-After` seconds of a `429`.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            Denied::Quota { over: OverQuota::Wait { retry_after, .. }, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The problem body. Its texts name the token and the scope, never any
    /// part of the credentials.
    pub fn problem(&self) -> Problem {
        let (reason, detail) = match self {
            Denied::Unauthenticated(Unauthenticated::Missing) => {
                ("unauthorized", "this endpoint needs a token: send `Authorization: Bearer <secret>`".to_string())
            }
            Denied::Unauthenticated(Unauthenticated::Malformed(m)) => ("unauthorized", m.describe().to_string()),
            Denied::Unauthenticated(Unauthenticated::Unknown) => {
                ("unauthorized", "the token is not valid here (unknown or revoked)".to_string())
            }
            Denied::Unauthenticated(Unauthenticated::UnknownSubject) => (
                "unauthorized",
                "the client certificate's subject is no token's here: send `Authorization: Bearer <secret>`, or a \
                 certificate whose subject a token names"
                    .to_string(),
            ),
            Denied::Scope { token, needed } => {
                ("forbidden", format!("token \"{token}\" does not have the \"{needed}\" scope"))
            }
            Denied::Source { token, .. } => {
                ("source-forbidden", format!("token \"{token}\" may not write events with this source"))
            }
            Denied::Quota { token, over: OverQuota::Wait { retry_after, .. } } => (
                "quota-exceeded",
                format!(
                    "token \"{token}\" is over its quota: retry after {} s; nothing was stored",
                    retry_after.seconds()
                ),
            ),
            Denied::Quota { token, over: OverQuota::TooBig { events, rate } } => (
                "batch-over-burst",
                format!(
                    "a batch of {events} events is more than token \"{token}\"'s burst of {}: it can never be \
                     accepted; send batches of at most {} events",
                    rate.burst, rate.burst
                ),
            ),
        };
        let mut problem = Problem::new(self.status(), reason, detail);
        problem.title = title(self.status()).to_string();
        if let Denied::Source { errors, .. } = self {
            problem = problem.with_errors(errors.clone());
        }
        problem
    }

    /// The response headers beyond the problem's own, in order.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Denied::Unauthenticated(_) => vec![("WWW-Authenticate", WWW_AUTHENTICATE.to_string())],
            Denied::Scope { .. } | Denied::Source { .. } => Vec::new(),
            Denied::Quota { over, .. } => {
                let mut headers = Vec::with_capacity(3);
                if let OverQuota::Wait { retry_after, .. } = over {
                    headers.push(("Retry-After", retry_after.seconds().to_string()));
                }
                headers.push(("RateLimit-Policy", over.policy_header()));
                if let Some(current) = over.ratelimit_header() {
                    headers.push(("RateLimit", current));
                }
                headers
            }
        }
    }
}

/// RFC 9110 §15 reason phrases for the statuses this module answers.
fn title(status: u16) -> &'static str {
    match status {
        401 => "Unauthorized",
        403 => "Forbidden",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests;
