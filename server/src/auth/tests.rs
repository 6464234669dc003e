//! The decision API end to end, over a real tokens file.

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use governor::clock::FakeRelativeClock;

use super::*;

const SHOP: &str = "inlet_Qx7-shop-key";
const READER: &str = "inlet_Qx7-reader-key";
const METRICS: &str = "inlet_Qx7-metrics-key";

fn hex(secret: &str) -> String {
    SecretDigest::of(secret.as_bytes()).to_hex()
}

fn file_text() -> String {
    format!(
        "[[token]]\nname = \"shop\"\nsha256 = \"{}\"\nscopes = [\"write\"]\nsources = [\"/shop/\", \"urn:shop:\"]\n\
         rate = 10\nburst = 20\n\n\
         [[token]]\nname = \"reader\"\nsha256 = \"{}\"\nscopes = [\"read\", \"write\"]\nrate = 10\nburst = 20\n\n\
         [[token]]\nname = \"grafana\"\nsha256 = \"{}\"\nscopes = [\"metrics\"]\n",
        hex(SHOP),
        hex(READER),
        hex(METRICS)
    )
}

struct Fixture {
    file: tempfile::NamedTempFile,
    auth: Auth,
    time: FakeRelativeClock,
}

impl Fixture {
    fn new(text: &str) -> Fixture {
        Fixture::with(text, ClientCerts::Off)
    }

    fn with(text: &str, client_certs: ClientCerts) -> Fixture {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let (clock, time) = QuotaClock::manual();
        let auth = Auth::from_file_with_clock(file.path(), client_certs, clock).unwrap();
        Fixture { file, auth, time }
    }

    fn rewrite(&self, text: &str) {
        std::fs::write(self.file.path(), text).unwrap();
    }

    fn check(&self, header: &str, needed: Scope) -> Result<Principal, Denied> {
        self.auth.check(Some(header.as_bytes()), needed)
    }
}

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

fn basic(secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{secret}:")))
}

#[test]
fn anonymous_allows_everything_and_names_nobody() {
    let auth = Auth::anonymous();
    assert!(auth.is_anonymous());
    for scope in Scope::ALL {
        let p = auth.check(None, scope).unwrap();
        assert_eq!(p.name(), None);
        assert!(p.allows_source("/anything"));
        assert_eq!(p.try_take(1_000_000), Ok(()));
    }
    // Even a header that would be malformed is not looked at.
    assert!(auth.check(Some(b"Digest x"), Scope::Write).is_ok());
    assert_eq!(auth.reload().unwrap(), None);
    assert_eq!(auth.token_count(), 0);
    assert!(auth.token_names().is_empty());
}

#[test]
fn the_right_token_in_bearer_or_basic_gives_its_name() {
    let f = Fixture::new(&file_text());
    assert!(!f.auth.is_anonymous());
    assert_eq!(f.auth.token_count(), 3);
    assert_eq!(f.auth.token_names(), vec![Arc::<str>::from("grafana"), "reader".into(), "shop".into()]);
    for header in [bearer(SHOP), basic(SHOP), format!("bearer {SHOP}")] {
        let p = f.check(&header, Scope::Write).unwrap();
        assert_eq!(p.name().map(|n| &**n), Some("shop"), "{header}");
    }
    let p = f.check(&bearer(METRICS), Scope::Metrics).unwrap();
    assert_eq!(p.name().map(|n| &**n), Some("grafana"));
}

fn assert_401(denied: Denied, detail: &str) {
    assert_eq!(denied.status(), 401);
    assert_eq!(denied.token(), None);
    assert_eq!(denied.headers(), vec![("WWW-Authenticate", "Bearer realm=\"inlet\"".to_string())]);
    let problem = denied.problem();
    assert_eq!(problem.status, 401);
    assert_eq!(problem.title, "Unauthorized");
    assert_eq!(problem.type_uri, "urn:inlet:problem:unauthorized");
    assert_eq!(problem.detail, detail);
}

#[test]
fn no_malformed_or_unknown_credentials_are_401() {
    let f = Fixture::new(&file_text());
    assert_401(
        f.auth.check(None, Scope::Write).unwrap_err(),
        "this endpoint needs a token: send `Authorization: Bearer <secret>`",
    );
    assert_401(
        f.check("Digest username=shop", Scope::Write).unwrap_err(),
        "the Authorization header must use the Bearer or Basic scheme",
    );
    assert_401(
        f.check("Bearer has space", Scope::Write).unwrap_err(),
        "the Bearer token has characters outside RFC 6750's b64token grammar",
    );
    for wrong in [bearer("inlet_Qx7-shop-keY"), bearer(&format!("{SHOP}x")), basic("inlet_nope")] {
        assert_401(f.check(&wrong, Scope::Write).unwrap_err(), "the token is not valid here (unknown or revoked)");
    }
    // The Basic password is not a secret: a right password with a wrong user fails.
    let swapped = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("x:{SHOP}")));
    assert_401(f.check(&swapped, Scope::Write).unwrap_err(), "the token is not valid here (unknown or revoked)");
}

#[test]
fn a_token_without_the_scope_is_403() {
    let f = Fixture::new(&file_text());
    let denied = f.check(&bearer(SHOP), Scope::Read).unwrap_err();
    assert_eq!(denied, Denied::Scope { token: "shop".into(), needed: Scope::Read });
    assert_eq!(denied.status(), 403);
    assert_eq!(denied.token().map(|n| &**n), Some("shop"));
    assert!(denied.headers().is_empty());
    let problem = denied.problem();
    assert_eq!((problem.status, problem.title.as_str()), (403, "Forbidden"));
    assert_eq!(problem.type_uri, "urn:inlet:problem:forbidden");
    assert_eq!(problem.detail, "token \"shop\" does not have the \"read\" scope");
    assert!(f.check(&bearer(SHOP), Scope::Metrics).is_err());
    assert!(f.check(&bearer(METRICS), Scope::Write).is_err());
    assert!(f.check(&bearer(READER), Scope::Read).is_ok());
    assert!(f.check(&bearer(READER), Scope::Write).is_ok());
}

#[test]
fn source_prefixes() {
    let f = Fixture::new(&file_text());
    let shop = f.check(&bearer(SHOP), Scope::Write).unwrap();
    assert!(shop.allows_source("/shop/orders"));
    assert!(shop.allows_source("/shop/"));
    assert!(shop.allows_source("urn:shop:eu"));
    assert!(!shop.allows_source("/shop"));
    assert!(!shop.allows_source("/shopping/x"));
    assert!(!shop.allows_source("/other/shop/"));
    assert!(!shop.allows_source(""));
    let reader = f.check(&bearer(READER), Scope::Write).unwrap();
    assert!(reader.allows_source("/anything"));
    assert_eq!(reader.source_prefixes(), None);
    assert_eq!(shop.source_prefixes(), Some(&["/shop/".into(), "urn:shop:".into()][..]));

    let denied = shop.source_denied(vec![FieldError::pointer("#/1/source".into(), Some(2), "outside /shop/")]);
    assert_eq!(denied.status(), 403);
    let problem = denied.problem();
    assert_eq!(problem.type_uri, "urn:inlet:problem:source-forbidden");
    assert_eq!(problem.detail, "token \"shop\" may not write events with this source");
    assert_eq!(problem.errors, vec![FieldError::pointer("#/1/source".into(), Some(2), "outside /shop/")]);
}

#[test]
fn over_quota_is_429_with_retry_after_and_ratelimit_fields() {
    let f = Fixture::new(&file_text());
    let shop = f.check(&bearer(SHOP), Scope::Write).unwrap();
    assert_eq!(shop.try_take(20), Ok(()));
    let denied = shop.try_take(5).unwrap_err();
    assert_eq!(denied.status(), 429);
    assert_eq!(denied.retry_after().map(RetryAfter::seconds), Some(1));
    assert_eq!(
        denied.headers(),
        vec![
            ("Retry-After", "1".to_string()),
            ("RateLimit-Policy", "\"token\";q=10;w=1;inlet-burst=20".to_string()),
            ("RateLimit", "\"token\";r=0;t=1".to_string()),
        ]
    );
    let problem = denied.problem();
    assert_eq!((problem.status, problem.title.as_str()), (429, "Too Many Requests"));
    assert_eq!(problem.type_uri, "urn:inlet:problem:quota-exceeded");
    assert_eq!(problem.detail, "token \"shop\" is over its quota: retry after 1 s; nothing was stored");

    // Another token is served normally meanwhile.
    let reader = f.check(&bearer(READER), Scope::Write).unwrap();
    assert_eq!(reader.try_take(20), Ok(()));

    // A principal from a later request shares the token's limiter.
    let again = f.check(&bearer(SHOP), Scope::Write).unwrap();
    assert!(again.try_take(1).is_err());
    f.time.advance(Duration::from_millis(500));
    assert_eq!(again.try_take(5), Ok(()));
    assert!(shop.try_take(1).is_err());
}

#[test]
fn a_batch_over_the_burst_is_413() {
    let f = Fixture::new(&file_text());
    let shop = f.check(&bearer(SHOP), Scope::Write).unwrap();
    let denied = shop.try_take(21).unwrap_err();
    assert_eq!(denied.status(), 413);
    assert_eq!(denied.retry_after(), None);
    assert_eq!(denied.headers(), vec![("RateLimit-Policy", "\"token\";q=10;w=1;inlet-burst=20".to_string())]);
    let problem = denied.problem();
    assert_eq!(problem.type_uri, "urn:inlet:problem:batch-over-burst");
    assert_eq!(
        problem.detail,
        "a batch of 21 events is more than token \"shop\"'s burst of 20: it can never be accepted; send batches \
         of at most 20 events"
    );
    // Nothing was taken.
    assert_eq!(shop.try_take(20), Ok(()));
    // A token without a quota takes anything.
    let grafana = f.check(&bearer(METRICS), Scope::Metrics).unwrap();
    assert_eq!(grafana.try_take(usize::MAX), Ok(()));
}

#[test]
fn reload_adds_and_revokes_for_the_next_check() {
    let f = Fixture::new(&file_text());
    let before = f.check(&bearer(SHOP), Scope::Write).unwrap();
    let new_secret = "inlet_new-secret";
    let text = file_text().replace(&hex(SHOP), &hex(new_secret)).replace("name = \"grafana\"", "name = \"prom\"");
    f.rewrite(&text);
    let report = f.auth.reload().unwrap().unwrap();
    assert_eq!(report.tokens, 3);
    assert_eq!(report.added, vec![Arc::<str>::from("prom")]);
    assert_eq!(report.removed, vec![Arc::<str>::from("grafana")]);
    assert_401(f.check(&bearer(SHOP), Scope::Write).unwrap_err(), "the token is not valid here (unknown or revoked)");
    assert_eq!(f.check(&bearer(new_secret), Scope::Write).unwrap().name().map(|n| &**n), Some("shop"));
    assert_eq!(f.check(&bearer(METRICS), Scope::Metrics).unwrap().name().map(|n| &**n), Some("prom"));
    // A request that passed before the reload finishes with what it had.
    assert_eq!(before.name().map(|n| &**n), Some("shop"));
    assert!(before.allows_source("/shop/x"));
}

#[test]
fn reload_keeps_quota_state_of_an_unchanged_token() {
    let f = Fixture::new(&file_text());
    let shop = f.check(&bearer(SHOP), Scope::Write).unwrap();
    assert_eq!(shop.try_take(20), Ok(()));
    f.auth.reload().unwrap();
    let after = f.check(&bearer(SHOP), Scope::Write).unwrap();
    assert_eq!(after.try_take(1).unwrap_err().status(), 429, "a SIGHUP must not refill a burst");
}

#[test]
fn a_broken_file_at_reload_keeps_the_old_tokens() {
    let f = Fixture::new(&file_text());
    for broken in [
        "".to_string(),
        "[[token]]\nname = \"shop".to_string(),
        file_text().replace("\"metrics\"]", "\"admin\"]"),
        format!("{}\n[[token]]\nname = \"shop\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n", file_text(), hex("other")),
    ] {
        f.rewrite(&broken);
        let err = f.auth.reload().unwrap_err();
        assert!(err.to_string().starts_with(&format!("tokens file {}: ", f.file.path().display())), "{err}");
        assert_eq!(f.auth.token_count(), 3);
        assert!(f.check(&bearer(SHOP), Scope::Write).is_ok());
        assert!(f.check(&bearer(METRICS), Scope::Metrics).is_ok());
    }
    std::fs::remove_file(f.file.path()).unwrap();
    assert!(matches!(f.auth.reload().unwrap_err().kind, TokensErrorKind::Io(_)));
    assert!(f.check(&bearer(SHOP), Scope::Write).is_ok());
}

#[test]
fn a_broken_file_at_start_is_an_error() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"[[token]]\nname = \"x\"\n").unwrap();
    let err = Auth::from_file(file.path(), ClientCerts::Off).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "tokens file {}: [[token]] entry 1 (\"x\"): `sha256` is missing (or `subject`, to name a client \
             certificate instead of a secret)",
            file.path().display()
        )
    );
}

#[test]
fn no_secret_or_digest_in_any_refusal_or_debug_output() {
    let f = Fixture::new(&file_text());
    let shop = f.check(&bearer(SHOP), Scope::Write).unwrap();
    let _ = shop.try_take(20);
    let refusals = vec![
        f.auth.check(None, Scope::Write).unwrap_err(),
        f.check(&format!("Bearer {SHOP} trailing"), Scope::Write).unwrap_err(),
        f.check(&format!("Token {SHOP}"), Scope::Write).unwrap_err(),
        f.check(&bearer(&format!("{SHOP}x")), Scope::Write).unwrap_err(),
        f.check(&bearer(SHOP), Scope::Read).unwrap_err(),
        f.check(&basic(SHOP), Scope::Metrics).unwrap_err(),
        shop.source_denied(Vec::new()),
        shop.try_take(1).unwrap_err(),
        shop.try_take(1000).unwrap_err(),
    ];
    let mut printed = format!("{:?} {:?} {:?}", f.auth, shop, refusals);
    for d in &refusals {
        printed.push_str(&String::from_utf8(d.problem().to_json()).unwrap());
        for (name, value) in d.headers() {
            printed.push_str(&format!("{name}: {value}\n"));
        }
    }
    for secret in [SHOP, READER, METRICS] {
        assert!(!printed.contains(secret), "secret in: {printed}");
        assert!(!printed.contains("Qx7"), "part of a secret in: {printed}");
        assert!(!printed.contains(&hex(secret)[..16]), "digest in: {printed}");
        let prefix = SecretDigest::of(secret.as_bytes()).prefix().to_string();
        assert!(!printed.contains(&prefix), "digest prefix in: {printed}");
    }
    assert!(printed.contains("shop"), "{printed}");
}

#[test]
fn a_rotation_admits_both_secrets_as_one_token_with_one_quota() {
    let f = Fixture::new(&file_text());
    let new_secret = "inlet_Qx7-shop-key-2";
    f.rewrite(&file_text().replace(
        &format!("sha256 = \"{}\"", hex(SHOP)),
        &format!("sha256 = [\"{}\", \"{}\"]", hex(SHOP), hex(new_secret)),
    ));
    let report = f.auth.reload().unwrap().unwrap();
    assert!(report.added.is_empty() && report.removed.is_empty());
    let old = f.check(&bearer(SHOP), Scope::Write).unwrap();
    let new = f.check(&bearer(new_secret), Scope::Write).unwrap();
    assert_eq!(old.name(), new.name());
    assert_eq!(old.try_take(15), Ok(()));
    assert_eq!(new.try_take(6).unwrap_err().status(), 429, "both secrets draw on one quota");
    // Dropping the old digest ends it.
    f.rewrite(&file_text().replace(&hex(SHOP), &hex(new_secret)));
    f.auth.reload().unwrap();
    assert_eq!(f.check(&bearer(SHOP), Scope::Write).unwrap_err().status(), 401);
    assert!(f.check(&bearer(new_secret), Scope::Write).is_ok());
}

#[test]
fn the_types_the_server_shares_across_threads_are_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Auth>();
    shared::<Principal>();
    shared::<Denied>();
}

#[test]
fn the_connection_cache_gives_the_same_answers_as_check() {
    let f = Fixture::new(&file_text());
    let mut cache = CredentialCache::default();
    let shop = bearer(SHOP);
    let check = |cache: &mut CredentialCache, header: &str, scope| {
        f.auth.check_with(cache, None, Some(header.as_bytes()), scope)
    };

    assert_eq!(check(&mut cache, &shop, Scope::Write).unwrap().name().map(|n| &**n), Some("shop"));
    assert!(cache.hit(Some(shop.as_bytes()), 0).is_some(), "the accepted header is remembered");
    // A hit still checks the scope.
    assert_eq!(check(&mut cache, &shop, Scope::Read).unwrap_err().status(), 403);
    assert!(check(&mut cache, &shop, Scope::Write).is_ok());
    // Another header on the same connection is checked afresh.
    assert_eq!(check(&mut cache, &bearer("inlet_Qx7-wrong"), Scope::Write).unwrap_err().status(), 401);
    assert_eq!(f.auth.check_with(&mut cache, None, None, Scope::Write).unwrap_err().status(), 401);
    assert!(check(&mut cache, &shop, Scope::Write).is_ok());
    assert_eq!(check(&mut cache, &bearer(READER), Scope::Read).unwrap().name().map(|n| &**n), Some("reader"));
    assert!(cache.hit(Some(shop.as_bytes()), 0).is_none(), "one remembered credential per connection");
    assert!(cache.hit(Some(bearer(READER).as_bytes()), 0).is_some());
    // Only the same bytes hit: same length, one byte different.
    let mut near = bearer(READER).into_bytes();
    *near.last_mut().unwrap() ^= 1;
    assert!(cache.hit(Some(&near), 0).is_none());
    assert!(cache.hit(None, 0).is_none());
}

#[test]
fn a_reload_invalidates_the_connection_cache() {
    let f = Fixture::new(&file_text());
    let mut cache = CredentialCache::default();
    let shop = bearer(SHOP);
    assert!(f.auth.check_with(&mut cache, None, Some(shop.as_bytes()), Scope::Write).is_ok());
    // Revoked: the remembered header must not keep it alive.
    f.rewrite(&file_text().replace(&hex(SHOP), &hex("inlet_Qx7-other")));
    f.auth.reload().unwrap();
    assert!(cache.hit(Some(shop.as_bytes()), 0).is_some(), "still remembered, but from generation 0");
    assert_401(
        f.auth.check_with(&mut cache, None, Some(shop.as_bytes()), Scope::Write).unwrap_err(),
        "the token is not valid here (unknown or revoked)",
    );
    // Scope taken away: the next request sees it.
    let reader = bearer(READER);
    assert!(f.auth.check_with(&mut cache, None, Some(reader.as_bytes()), Scope::Read).is_ok());
    f.rewrite(&file_text().replace("scopes = [\"read\", \"write\"]", "scopes = [\"write\"]"));
    f.auth.reload().unwrap();
    assert_eq!(f.auth.check_with(&mut cache, None, Some(reader.as_bytes()), Scope::Read).unwrap_err().status(), 403);
    assert!(f.auth.check_with(&mut cache, None, Some(reader.as_bytes()), Scope::Write).is_ok());
    assert!(cache.hit(Some(reader.as_bytes()), 2).is_some(), "re-remembered in the new generation");
}

#[test]
fn the_connection_cache_never_prints_the_header() {
    let f = Fixture::new(&file_text());
    let mut cache = CredentialCache::default();
    f.auth.check_with(&mut cache, None, Some(basic(SHOP).as_bytes()), Scope::Write).unwrap();
    let printed = format!("{cache:?}");
    assert!(!printed.contains("Qx7") && !printed.contains("Basic"), "{printed}");
    assert!(printed.contains("shop"), "{printed}");
}

#[test]
fn anonymous_check_with_remembers_nothing() {
    let mut cache = CredentialCache::default();
    assert!(Auth::anonymous().check_with(&mut cache, None, Some(b"Bearer x"), Scope::Read).is_ok());
    assert!(cache.last.is_none());
}

#[test]
fn the_constant_time_compare_finds_every_difference() {
    let base: Vec<u8> = (0..61u8).collect();
    assert!(ct_bytes_eq(&base, &base.clone()));
    assert!(ct_bytes_eq(b"", b""));
    // A difference in any byte, in the 8-byte words or in the tail.
    for i in 0..base.len() {
        let mut other = base.clone();
        other[i] ^= 0x80;
        assert!(!ct_bytes_eq(&base, &other), "byte {i}");
    }
    assert!(!ct_bytes_eq(&base, &base[..60]));
    assert!(!ct_bytes_eq(b"Bearer a", b"Bearer b"));
}

/// `file_text()` and a token for the client certificate `svc-orders`.
fn file_with_subject() -> String {
    format!(
        "{}\n[[token]]\nname = \"orders\"\nsubject = \"svc-orders\"\nscopes = [\"write\"]\nsources = [\"/orders/\"]\n",
        file_text()
    )
}

fn peer(common_name: &str) -> PeerIdentity {
    PeerIdentity { common_name: common_name.to_string() }
}

#[test]
fn a_client_certificate_without_a_secret_is_the_token_naming_its_subject() {
    let f = Fixture::with(&file_with_subject(), ClientCerts::Verified);
    assert_eq!(f.auth.token_count(), 4);
    let orders = peer("svc-orders");
    let p = f.auth.check_peer(Some(&orders), None, Scope::Write).unwrap();
    assert_eq!(p.name().map(|n| &**n), Some("orders"));
    assert!(p.allows_source("/orders/1") && !p.allows_source("/shop/1"));
    // The entry's scopes apply.
    assert_eq!(
        f.auth.check_peer(Some(&orders), None, Scope::Read).unwrap_err(),
        Denied::Scope { token: "orders".into(), needed: Scope::Read }
    );
    // Another certificate, or another case of the name, is nobody.
    for other in ["svc-billing", "SVC-ORDERS", "svc-orders.example", ""] {
        let denied = f.auth.check_peer(Some(&peer(other)), None, Scope::Write).unwrap_err();
        assert_eq!(denied, Denied::Unauthenticated(Unauthenticated::UnknownSubject), "{other:?}");
        assert_eq!(denied.status(), 401);
        assert_eq!(denied.headers(), vec![("WWW-Authenticate", WWW_AUTHENTICATE.to_string())]);
        let detail = denied.problem().detail;
        assert!(detail.starts_with("the client certificate's subject is no token's here"), "{detail}");
    }
    // No certificate and no secret: missing, as without mTLS.
    assert_eq!(
        f.auth.check_peer(None, None, Scope::Write).unwrap_err(),
        Denied::Unauthenticated(Unauthenticated::Missing)
    );
    // `check` knows no peer: a subject token is never reached through it.
    assert_eq!(f.auth.check(None, Scope::Write).unwrap_err(), Denied::Unauthenticated(Unauthenticated::Missing));
}

#[test]
fn a_presented_secret_takes_precedence_over_the_certificate() {
    let f = Fixture::with(&file_with_subject(), ClientCerts::Verified);
    let orders = peer("svc-orders");
    let read = |header: &str| f.auth.check_peer(Some(&orders), Some(header.as_bytes()), Scope::Read);
    // The secret's token, with its scopes (the certificate's lacks `read`).
    assert_eq!(read(&bearer(READER)).unwrap().name().map(|n| &**n), Some("reader"));
    // A wrong or malformed secret is refused, not replaced by the certificate.
    let write = |header: &str| f.auth.check_peer(Some(&orders), Some(header.as_bytes()), Scope::Write);
    assert_eq!(write(&bearer("inlet_wrong")).unwrap_err(), Denied::Unauthenticated(Unauthenticated::Unknown));
    assert!(matches!(write("Digest x").unwrap_err(), Denied::Unauthenticated(Unauthenticated::Malformed(_))));
    // The subject is not a secret: sending it as one is an unknown token.
    assert_eq!(write(&bearer("svc-orders")).unwrap_err(), Denied::Unauthenticated(Unauthenticated::Unknown));
}

#[test]
fn the_connection_cache_does_not_carry_a_secret_to_a_request_without_one() {
    let f = Fixture::with(&file_with_subject(), ClientCerts::Verified);
    let orders = peer("svc-orders");
    let mut cache = CredentialCache::default();
    let reader = bearer(READER);
    let p = f.auth.check_with(&mut cache, Some(&orders), Some(reader.as_bytes()), Scope::Read).unwrap();
    assert_eq!(p.name().map(|n| &**n), Some("reader"));
    // The next request on the connection sends no secret: the certificate's token, not the remembered one.
    let p = f.auth.check_with(&mut cache, Some(&orders), None, Scope::Write).unwrap();
    assert_eq!(p.name().map(|n| &**n), Some("orders"));
    assert!(f.auth.check_with(&mut cache, Some(&orders), None, Scope::Read).is_err());
    // And the secret still works after it.
    let p = f.auth.check_with(&mut cache, Some(&orders), Some(reader.as_bytes()), Scope::Read).unwrap();
    assert_eq!(p.name().map(|n| &**n), Some("reader"));
}

#[test]
fn a_reload_changes_subject_tokens_at_once() {
    let f = Fixture::with(&file_with_subject(), ClientCerts::Verified);
    let orders = peer("svc-orders");
    assert!(f.auth.check_peer(Some(&orders), None, Scope::Write).is_ok());
    // Revoked: the entry is gone.
    f.rewrite(&file_text());
    f.auth.reload().unwrap();
    assert_eq!(
        f.auth.check_peer(Some(&orders), None, Scope::Write).unwrap_err(),
        Denied::Unauthenticated(Unauthenticated::UnknownSubject)
    );
    // Back, with another scope.
    f.rewrite(
        &file_with_subject()
            .replace("subject = \"svc-orders\"\nscopes = [\"write\"]", "subject = \"svc-orders\"\nscopes = [\"read\"]"),
    );
    f.auth.reload().unwrap();
    assert!(f.auth.check_peer(Some(&orders), None, Scope::Read).is_ok());
    assert!(f.auth.check_peer(Some(&orders), None, Scope::Write).is_err());
}

#[test]
fn subject_entries_without_client_certificates_are_refused_at_start_and_at_reload() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(file_with_subject().as_bytes()).unwrap();
    let err = Auth::from_file(file.path(), ClientCerts::Off).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "tokens file {}: [[token]] entry 4 (\"orders\"): `subject` names a client certificate, which needs \
             --tls-client-ca (mTLS); without it no connection has one",
            file.path().display()
        )
    );
    assert!(!err.to_string().contains('\n'));
    // A reload that adds one is refused; the tokens in use stay.
    let f = Fixture::new(&file_text());
    f.rewrite(&file_with_subject());
    assert!(matches!(f.auth.reload().unwrap_err().kind, TokensErrorKind::Entry { index: 4, .. }));
    assert_eq!(f.auth.token_count(), 3);
    assert!(f.check(&bearer(SHOP), Scope::Write).is_ok());
}
