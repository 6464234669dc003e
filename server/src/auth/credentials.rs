//! The `Authorization` header: `Bearer <secret>` (RFC 6750 §2.1) or
//! `Basic <base64(secret:)>` (RFC 7617, with the secret as the user name,
//! the convention of Segment and RudderStack for senders that only do
//! Basic). The secret is hashed with SHA-256 inside [`Credentials::parse`]
//! and never leaves it: what the rest of the server sees is a
//! [`SecretDigest`], whose `Debug` prints nothing of it.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// The longest credentials part (after the scheme) accepted, in bytes.
/// inlet's own secrets are 49 bytes; this leaves room for secrets made by
/// other tools while bounding the hashing work per request.
pub const MAX_CREDENTIALS_LEN: usize = 1024;

/// Base64 for Basic: the standard alphabet, padding optional (some
/// senders strip it).
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// SHA-256 of a secret. The tokens file stores it in hex; requests produce
/// it from the presented secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretDigest(pub(crate) [u8; 32]);

impl SecretDigest {
    pub fn of(secret: &[u8]) -> SecretDigest {
        SecretDigest(Sha256::digest(secret).into())
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(hex: &str) -> Option<SecretDigest> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(SecretDigest(out))
    }

    /// Lower-case hex, as the tokens file spells it.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(DIGITS[usize::from(b >> 4)] as char);
            s.push(DIGITS[usize::from(b & 15)] as char);
        }
        s
    }

    /// The first 8 bytes: the key of the token map. SHA-256 output is
    /// uniform, so this needs no further hashing.
    pub(crate) fn prefix(&self) -> u64 {
        let mut p = [0u8; 8];
        p.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(p)
    }

    /// Equality whose time does not depend on where the digests differ.
    pub(crate) fn ct_eq(&self, other: &SecretDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDigest(<redacted>)")
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// What a request's `Authorization` header amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// No `Authorization` header.
    Missing,
    /// A header that is not a usable Bearer or Basic credential.
    Malformed(Malformed),
    /// A well-formed credential: the digest of its secret.
    Present(SecretDigest),
}

/// Why a header was refused. The texts describe the shape only; they never
/// contain any part of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A scheme other than Bearer or Basic, or no scheme at all.
    UnsupportedScheme,
    /// The scheme with nothing after it.
    Empty,
    /// Longer than [`MAX_CREDENTIALS_LEN`].
    TooLong,
    /// A Bearer token with a character outside RFC 6750's `b64token`.
    BadBearer,
    /// Basic credentials that are not base64, or whose user name is empty.
    BadBasic,
    /// More than one `Authorization` header field (decided by the caller,
    /// which sees the fields; `parse` reads one value).
    Several,
}

impl Malformed {
    pub fn describe(self) -> &'static str {
        match self {
            Malformed::UnsupportedScheme => "the Authorization header must use the Bearer or Basic scheme",
            Malformed::Empty => "the Authorization header has a scheme but no credentials",
            Malformed::TooLong => "the Authorization credentials are longer than 1024 bytes",
            Malformed::BadBearer => "the Bearer token has characters outside RFC 6750's b64token grammar",
            Malformed::BadBasic => {
                "the Basic credentials are not base64 of a non-empty user name (the secret) and a colon"
            }
            Malformed::Several => "the request has more than one Authorization header; send exactly one",
        }
    }
}

impl Credentials {
    /// Reads the value of an `Authorization` header (`None` when absent).
    pub fn parse(header: Option<&[u8]>) -> Credentials {
        let Some(value) = header else {
            return Credentials::Missing;
        };
        match parse_value(trim_ows(value)) {
            Ok(digest) => Credentials::Present(digest),
            Err(m) => Credentials::Malformed(m),
        }
    }
}

/// RFC 9110 §5.5: a field value carries no leading or trailing whitespace.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn parse_value(value: &[u8]) -> Result<SecretDigest, Malformed> {
    // RFC 9110 §11.4: credentials = auth-scheme [ 1*SP ( token68 / ... ) ];
    // the scheme is case-insensitive (§11.1).
    let split = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    let (scheme, rest) = value.split_at(split);
    let rest = trim_ows(rest);
    let bearer = scheme.eq_ignore_ascii_case(b"bearer");
    if !bearer && !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(Malformed::UnsupportedScheme);
    }
    if rest.is_empty() {
        return Err(Malformed::Empty);
    }
    if rest.len() > MAX_CREDENTIALS_LEN {
        return Err(Malformed::TooLong);
    }
    if bearer {
        bearer_secret(rest).map(SecretDigest::of)
    } else {
        basic_digest(rest)
    }
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
/// "+" / "/" ) *"="`.
fn bearer_secret(token: &[u8]) -> Result<&[u8], Malformed> {
    let body_len = token.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let body_ok = token[..body_len]
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'));
    if body_len == 0 || !body_ok {
        return Err(Malformed::BadBearer);
    }
    Ok(token)
}

/// RFC 7617 §2: `base64(user-id ":" password)`; the user id is the secret,
/// the password is ignored. A decoded value without a colon is taken as the
/// user id alone.
fn basic_digest(encoded: &[u8]) -> Result<SecretDigest, Malformed> {
    // Decoded base64 is at most 3/4 of its length; the stack buffer holds
    // the longest accepted input.
    let mut buf = [0u8; MAX_CREDENTIALS_LEN * 3 / 4 + 3];
    let result = match BASIC.decode_slice(encoded, &mut buf) {
        Ok(len) => {
            let decoded = &buf[..len];
            let user = decoded.iter().position(|&b| b == b':').map_or(decoded, |i| &decoded[..i]);
            if user.is_empty() {
                Err(Malformed::BadBasic)
            } else {
                Ok(SecretDigest::of(user))
            }
        }
        Err(_) => Err(Malformed::BadBasic),
    };
    // Best effort: do not leave the decoded secret on the stack.
    buf.fill(0);
    std::hint::black_box(&buf);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(secret: &str) -> Credentials {
        Credentials::Present(SecretDigest::of(secret.as_bytes()))
    }

    fn parse(v: &str) -> Credentials {
        Credentials::parse(Some(v.as_bytes()))
    }

    fn basic(userpass: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(userpass))
    }

    #[test]
    fn no_header_is_missing() {
        assert_eq!(Credentials::parse(None), Credentials::Missing);
    }

    #[test]
    fn bearer_in_any_case_gives_the_secret_digest() {
        for v in ["Bearer inlet_abc-DEF.1~+/==", "bearer inlet_abc-DEF.1~+/==", "BEARER  inlet_abc-DEF.1~+/== "] {
            assert_eq!(parse(v), digest("inlet_abc-DEF.1~+/=="), "{v}");
        }
        assert_eq!(parse("\tBearer x"), digest("x"));
    }

    #[test]
    fn bearer_outside_b64token_is_malformed() {
        for v in ["Bearer a b", "Bearer a=b", "Bearer ===", "Bearer a\"b", "Bearer a,b", "Bearer \u{e9}t\u{e9}"] {
            assert_eq!(parse(v), Credentials::Malformed(Malformed::BadBearer), "{v}");
        }
    }

    #[test]
    fn scheme_without_credentials_is_empty() {
        for v in ["Bearer", "Bearer   ", "Basic", "basic \t"] {
            assert_eq!(parse(v), Credentials::Malformed(Malformed::Empty), "{v}");
        }
    }

    #[test]
    fn other_schemes_are_unsupported() {
        for v in ["Digest username=x", "Token abc", "", "   ", "Bearerabc", "abc"] {
            assert_eq!(parse(v), Credentials::Malformed(Malformed::UnsupportedScheme), "{v}");
        }
    }

    #[test]
    fn basic_takes_the_user_name_as_the_secret() {
        assert_eq!(parse(&basic("s3cret:")), digest("s3cret"));
        assert_eq!(parse(&basic("s3cret:ignored-password")), digest("s3cret"));
        assert_eq!(parse(&basic("s3cret")), digest("s3cret"));
        assert_eq!(parse(&basic("s3cret:").replacen("Basic", "bAsIc", 1)), digest("s3cret"));
        // Padding is optional.
        assert_eq!(parse("Basic czNjcmV0Og"), digest("s3cret"));
    }

    #[test]
    fn basic_that_is_not_base64_or_has_no_user_is_malformed() {
        for v in [basic(":password"), basic(":"), "Basic !!!!".to_string(), "Basic czNjcmV0O g=".to_string()] {
            assert_eq!(parse(&v), Credentials::Malformed(Malformed::BadBasic), "{v}");
        }
    }

    #[test]
    fn credentials_at_the_limit_are_read_and_past_it_refused() {
        let at = "a".repeat(MAX_CREDENTIALS_LEN);
        assert_eq!(parse(&format!("Bearer {at}")), digest(&at));
        let over = "a".repeat(MAX_CREDENTIALS_LEN + 1);
        assert_eq!(parse(&format!("Bearer {over}")), Credentials::Malformed(Malformed::TooLong));

        // Basic: the longest base64 that fits, and one character more.
        let user = "u".repeat(MAX_CREDENTIALS_LEN * 3 / 4 - 1);
        let at = basic(&format!("{user}:"));
        assert_eq!(at.len() - "Basic ".len(), MAX_CREDENTIALS_LEN);
        assert_eq!(parse(&at), digest(&user));
        assert_eq!(parse(&format!("{at}A")), Credentials::Malformed(Malformed::TooLong));
    }

    #[test]
    fn non_utf8_bytes_never_panic() {
        let v: &[u8] = b"Bearer \xff\xfe";
        assert_eq!(Credentials::parse(Some(v)), Credentials::Malformed(Malformed::BadBearer));
        let v: &[u8] = b"\xffBearer x";
        assert_eq!(Credentials::parse(Some(v)), Credentials::Malformed(Malformed::UnsupportedScheme));
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_input() {
        let d = SecretDigest::of(b"test");
        assert_eq!(d.to_hex(), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
        assert_eq!(SecretDigest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(SecretDigest::from_hex(&d.to_hex().to_uppercase()), Some(d));
        assert_eq!(SecretDigest::from_hex(&d.to_hex()[..63]), None);
        assert_eq!(SecretDigest::from_hex(&format!("{}0", d.to_hex())), None);
        assert_eq!(SecretDigest::from_hex(&"g".repeat(64)), None);
        assert_eq!(SecretDigest::from_hex(&"\u{e9}".repeat(32)), None);
    }

    #[test]
    fn debug_never_prints_a_digest() {
        let d = SecretDigest::of(b"test");
        let printed = format!("{d:?} {:?}", Credentials::Present(d));
        assert!(!printed.contains("9f86"), "{printed}");
        assert!(!printed.contains("159"), "{printed}"); // 0x9f as a decimal byte
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn constant_time_equality_agrees_with_equality() {
        let a = SecretDigest::of(b"a");
        let mut b = a;
        assert!(a.ct_eq(&b));
        b.0[31] ^= 1;
        assert!(!a.ct_eq(&b));
        assert_eq!(a.prefix(), b.prefix());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_header_bytes_parse_without_panicking(value in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = Credentials::parse(Some(&value));
        }

        #[test]
        fn any_b64token_is_its_own_bearer_secret(token in "[A-Za-z0-9._~+/-]{1,200}={0,2}") {
            let header = format!("Bearer {token}");
            prop_assert_eq!(Credentials::parse(Some(header.as_bytes())), Credentials::Present(SecretDigest::of(token.as_bytes())));
        }

        #[test]
        fn any_basic_user_is_the_secret(
            user in proptest::collection::vec(any::<u8>().prop_filter("no colon", |b| *b != b':'), 1..300),
            password in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut userpass = user.clone();
            userpass.push(b':');
            userpass.extend_from_slice(&password);
            let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(&userpass));
            prop_assert_eq!(Credentials::parse(Some(header.as_bytes())), Credentials::Present(SecretDigest::of(&user)));
        }
    }
}
