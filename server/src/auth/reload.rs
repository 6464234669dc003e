//! The live token set, swapped whole on reload.
//!
//! Requests read the set through an [`ArcSwap`]: a load is a couple of
//! uncontended atomic operations, never a lock, so a `SIGHUP` takes effect
//! for the very next request on every connection, open ones included, and
//! a request in flight finishes with the set it started with. A file that
//! fails to load changes nothing: the old set stays.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;

use super::credentials::SecretDigest;
use super::quota::{carry_over, Quota, QuotaClock};
use super::scope::Scopes;
use super::tokens::{self, ClientCerts, Credential, TokenSpec, TokensError};
use crate::stats::TokenCounters;

/// One token as the request path uses it.
pub struct Token {
    pub(crate) name: Arc<str>,
    pub(crate) scopes: Scopes,
    pub(crate) sources: Option<Box<[Box<str>]>>,
    pub(crate) quota: Option<Arc<Quota>>,
    /// This name's counters in `/stats`, found by name on first use and
    /// kept here, so that counting an accepted request costs two atomic
    /// adds, not a map lookup. A reload makes new `Token`s, which find the
    /// same counters by name.
    pub(crate) counters: OnceLock<Arc<TokenCounters>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No digest: it is not the secret, but it is what guessing one
        // would be checked against.
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("sources", &self.sources)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

/// The key is already a uniform hash (the first 8 bytes of a SHA-256), so
/// the map's hasher passes it through.
#[derive(Default)]
pub(crate) struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `u64` keys; fold anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The digests sharing one 8-byte prefix, with their tokens.
type Candidates = Vec<(SecretDigest, Arc<Token>)>;

/// The tokens of one load of the file.
#[derive(Default)]
pub struct TokenSet {
    /// Digest prefix → the digests with that prefix and their tokens (one,
    /// barring a 2^-64 coincidence, which is still handled).
    by_prefix: HashMap<u64, Candidates, BuildHasherDefault<PrefixHasher>>,
    /// Client certificate subject (CN) → the token of a `subject` entry.
    by_subject: HashMap<Box<str>, Arc<Token>>,
    /// Each token once, in file order.
    tokens: Vec<Arc<Token>>,
    /// Which load this is (0, then +1 per successful reload): a cached
    /// credential is valid only for the generation it was found in.
    pub(crate) generation: u64,
}

impl TokenSet {
    /// Builds a set; quota state of `previous` tokens with the same name and
    /// rate is kept.
    pub(crate) fn build(specs: Vec<TokenSpec>, previous: Option<&TokenSet>, clock: &QuotaClock) -> TokenSet {
        let old_quotas: HashMap<&str, &Arc<Quota>> = previous
            .map(|p| p.tokens().filter_map(|t| Some((&*t.name, t.quota.as_ref()?))).collect())
            .unwrap_or_default();
        let mut set = TokenSet::default();
        for spec in specs {
            let quota = spec.rate.map(|rate| carry_over(old_quotas.get(&*spec.name).copied(), rate, clock));
            let token = Arc::new(Token {
                name: spec.name,
                scopes: spec.scopes,
                sources: spec.sources,
                quota,
                counters: OnceLock::new(),
            });
            match spec.credential {
                Credential::Secret(digests) => {
                    for digest in digests.iter() {
                        set.by_prefix.entry(digest.prefix()).or_default().push((*digest, token.clone()));
                    }
                }
                Credential::Subject(cn) => {
                    set.by_subject.insert(cn, token.clone());
                }
            }
            set.tokens.push(token);
        }
        set
    }

    /// The token whose secret hashes to `digest`. One map probe by the
    /// digest's prefix, then a constant-time comparison of all 32 bytes.
    pub fn lookup(&self, digest: &SecretDigest) -> Option<&Arc<Token>> {
        self.by_prefix.get(&digest.prefix())?.iter().find(|(d, _)| d.ct_eq(digest)).map(|(_, t)| t)
    }

    /// The token of a `subject` entry naming this client certificate CN
    /// (compared exactly). Not constant-time: a subject is not a secret,
    /// and only a certificate the server verified gets here.
    pub fn lookup_subject(&self, common_name: &str) -> Option<&Arc<Token>> {
        self.by_subject.get(common_name)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn tokens(&self) -> impl Iterator<Item = &Arc<Token>> {
        self.tokens.iter()
    }

    pub(crate) fn names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.tokens().map(|t| t.name.clone()).collect();
        names.sort();
        names
    }
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The map keys are digest bytes: list the tokens only.
        f.debug_list().entries(self.tokens()).finish()
    }
}

/// What a reload changed, for its log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub tokens: usize,
    pub added: Vec<Arc<str>>,
    pub removed: Vec<Arc<str>>,
}

/// The token set loaded from a file, and the file, for reloads.
pub struct Reloadable {
    path: PathBuf,
    current: ArcSwap<TokenSet>,
    /// The generation of `current`, raised only after the new set is in
    /// place: a credential cached in this generation is still valid, and
    /// checking that costs one atomic load instead of loading the set.
    generation: AtomicU64,
    clock: QuotaClock,
    /// Whether `subject` entries can be used: checked at every load.
    client_certs: ClientCerts,
    /// Serialises reloads, so two `SIGHUP`s in a row cannot race on which
    /// quota state is carried over.
    reloading: Mutex<()>,
}

impl std::fmt::Debug for Reloadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloadable").field("path", &self.path).field("tokens", &self.current.load().len()).finish()
    }
}

impl Reloadable {
    pub fn load(path: &Path, client_certs: ClientCerts, clock: QuotaClock) -> Result<Reloadable, TokensError> {
        let specs = tokens::load(path)?;
        tokens::check_client_certs(path, &specs, client_certs)?;
        let set = TokenSet::build(specs, None, &clock);
        let generation = AtomicU64::new(set.generation);
        Ok(Reloadable {
            path: path.to_owned(),
            current: ArcSwap::from_pointee(set),
            generation,
            clock,
            client_certs,
            reloading: Mutex::new(()),
        })
    }

    /// Reads the file again; on any error the current set stays.
    pub fn reload(&self) -> Result<ReloadReport, TokensError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let specs = tokens::load(&self.path)?;
        tokens::check_client_certs(&self.path, &specs, self.client_certs)?;
        let old = self.current.load_full();
        let mut new = TokenSet::build(specs, Some(&old), &self.clock);
        new.generation = old.generation + 1;
        let (before, after) = (old.names(), new.names());
        let report = ReloadReport {
            tokens: new.len(),
            added: after.iter().filter(|n| !before.contains(n)).cloned().collect(),
            removed: before.iter().filter(|n| !after.contains(n)).cloned().collect(),
        };
        let generation = new.generation;
        self.current.store(Arc::new(new));
        self.generation.store(generation, Ordering::Release);
        Ok(report)
    }

    /// The generation of the current set (see `generation`).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current set; requests hold it for the length of one check.
    pub fn current(&self) -> arc_swap::Guard<Arc<TokenSet>> {
        self.current.load()
    }

    pub fn len(&self) -> usize {
        self.current.load().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    use crate::auth::scope::Scope;
    use crate::auth::tokens::Rate;

    fn spec(name: &str, secret: &str) -> TokenSpec {
        TokenSpec {
            name: name.into(),
            credential: Credential::Secret(Box::new([SecretDigest::of(secret.as_bytes())])),
            scopes: Scopes::NONE.with(Scope::Write),
            sources: None,
            rate: None,
        }
    }

    #[test]
    fn lookup_finds_the_token_of_the_secret_and_nothing_else() {
        let (clock, _) = QuotaClock::manual();
        let set = TokenSet::build(vec![spec("a", "secret-a"), spec("b", "secret-b")], None, &clock);
        assert_eq!(set.len(), 2);
        assert_eq!(&*set.lookup(&SecretDigest::of(b"secret-a")).unwrap().name, "a");
        assert_eq!(&*set.lookup(&SecretDigest::of(b"secret-b")).unwrap().name, "b");
        assert!(set.lookup(&SecretDigest::of(b"secret-c")).is_none());
    }

    #[test]
    fn a_digest_sharing_the_prefix_but_not_the_rest_is_not_found() {
        let (clock, _) = QuotaClock::manual();
        let set = TokenSet::build(vec![spec("a", "secret-a")], None, &clock);
        let mut near = SecretDigest::of(b"secret-a");
        near.0[31] ^= 0x80;
        assert!(set.lookup(&near).is_none());
    }

    #[test]
    fn tokens_with_one_prefix_are_all_reachable() {
        let (clock, _) = QuotaClock::manual();
        let mut a = spec("a", "x");
        let mut b = spec("b", "y");
        // Force a prefix collision: same first 8 bytes, different rest.
        a.credential = Credential::Secret(Box::new([SecretDigest([7; 32])]));
        let mut other = [7; 32];
        other[20] = 9;
        b.credential = Credential::Secret(Box::new([SecretDigest(other)]));
        let set = TokenSet::build(vec![a, b], None, &clock);
        assert_eq!(&*set.lookup(&SecretDigest([7; 32])).unwrap().name, "a");
        assert_eq!(&*set.lookup(&SecretDigest(other)).unwrap().name, "b");
    }

    #[test]
    fn build_keeps_quota_state_of_unchanged_tokens() {
        let (clock, _) = QuotaClock::manual();
        let rate = |r| Some(Rate { per_second: NonZeroU32::new(1).unwrap(), burst: NonZeroU32::new(r).unwrap() });
        let mut kept = spec("kept", "k");
        kept.rate = rate(2);
        let mut changed = spec("changed", "c");
        changed.rate = rate(2);
        let old = TokenSet::build(vec![kept.clone(), changed.clone()], None, &clock);
        assert_eq!(old.generation, 0);
        for secret in [&b"k"[..], b"c"] {
            let q = old.lookup(&SecretDigest::of(secret)).unwrap().quota.clone().unwrap();
            assert_eq!(q.try_take(2), Ok(()));
        }
        changed.rate = rate(3);
        let new = TokenSet::build(vec![kept, changed], Some(&old), &clock);
        let q = |s: &[u8]| new.lookup(&SecretDigest::of(s)).unwrap().quota.clone().unwrap();
        assert!(q(b"k").try_take(1).is_err(), "an unchanged token keeps its spent burst");
        assert_eq!(q(b"c").try_take(3), Ok(()), "a token whose rate changed starts afresh");
    }

    #[test]
    fn every_digest_of_a_rotating_token_finds_it() {
        let (clock, _) = QuotaClock::manual();
        let mut shop = spec("shop", "old");
        shop.credential = Credential::Secret(Box::new([SecretDigest::of(b"old"), SecretDigest::of(b"new")]));
        let set = TokenSet::build(vec![shop, spec("b", "b")], None, &clock);
        assert_eq!(set.len(), 2);
        let old = set.lookup(&SecretDigest::of(b"old")).unwrap();
        let new = set.lookup(&SecretDigest::of(b"new")).unwrap();
        assert!(Arc::ptr_eq(old, new), "one token, so one quota and one name");
    }

    #[test]
    fn a_subject_finds_its_token_by_exact_common_name_and_no_secret_does() {
        let (clock, _) = QuotaClock::manual();
        let mut orders = spec("orders", "unused");
        orders.credential = Credential::Subject("svc-orders".into());
        let set = TokenSet::build(vec![orders, spec("shop", "s")], None, &clock);
        assert_eq!(set.len(), 2);
        assert_eq!(&*set.lookup_subject("svc-orders").unwrap().name, "orders");
        for other in ["svc-Orders", "svc-orders ", "svc", "", "shop"] {
            assert!(set.lookup_subject(other).is_none(), "{other:?}");
        }
        // A subject entry has no digest: neither its subject nor anything
        // else hashes to it.
        assert!(set.lookup(&SecretDigest::of(b"svc-orders")).is_none());
        assert!(set.lookup(&SecretDigest::of(b"unused")).is_none());
        assert_eq!(&*set.lookup(&SecretDigest::of(b"s")).unwrap().name, "shop");
    }

    #[test]
    fn debug_shows_no_digest() {
        let (clock, _) = QuotaClock::manual();
        let set = TokenSet::build(vec![spec("shop", "test")], None, &clock);
        let printed = format!("{set:?}");
        assert!(printed.contains("shop"), "{printed}");
        let hex = SecretDigest::of(b"test").to_hex();
        assert!(!printed.contains(&hex[..8]), "{printed}");
        assert!(!printed.contains("159, 134"), "{printed}"); // 0x9f 0x86 as decimal bytes
        let prefix = SecretDigest::of(b"test").prefix().to_string();
        assert!(!printed.contains(&prefix), "{printed}");
    }
}
