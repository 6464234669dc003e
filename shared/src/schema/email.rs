//! `"format": "email"`, checked as the `jsonschema` crate checks it, faster
//! on the common case.
//!
//! The crate's check (its `email` format: the `email_address` crate's full
//! parse, display text and quoted local parts included, then the domain as a
//! hostname) costs a few thousand instructions per address. Most addresses
//! are plain, `local@host.tld`; [`is_plain`] accepts those in one pass over
//! the bytes, and accepts only what the crate's check accepts (the proof is a
//! reading of both, below, and the property test in this file). Everything
//! else, including every address it does not accept, goes to the crate's
//! check, so [`is_email`] answers exactly as the crate does.
//!
//! A plain address, and why the crate accepts each one:
//! - ASCII, exactly one `@`, no space: `email_address` finds no display
//!   text (it looks for `" <"`) and splits at the one `@`.
//! - The local part: 1 to 64 bytes of dot-atom (atext: letters, digits and
//!   ``!#$%&'*+-/=?^_`{|}~``, in runs joined by single dots, no dot first
//!   or last): what `email_address` takes as an unquoted local part, within
//!   its 64-byte limit; not starting with `"` or `<` (neither is atext).
//! - The domain: 1 to 253 bytes, labels of 1 to 63 letters, digits and
//!   hyphens, each starting and ending with a letter or digit, and none with
//!   hyphens in its 3rd and 4th place (the crate decodes those as punycode):
//!   a text domain for `email_address` (at most 254 bytes, labels at most 63,
//!   starting and ending alphanumeric, atext) and a hostname for `jsonschema`
//!   (at most 253 bytes, no dot last, LDH labels of 1 to 63 with no hyphen
//!   first or last, no `??--` label that is not valid punycode).

use std::sync::LazyLock;

use serde_json::Value;

/// The longest local part the crate accepts (`email_address`'s limit).
const LOCAL_MAX: usize = 64;
/// The longest domain accepted here (a hostname's limit; `email_address`
/// allows 254).
const DOMAIN_MAX: usize = 253;
/// The longest label of a domain.
const LABEL_MAX: usize = 63;

/// Whether `address` is an e-mail address by the `jsonschema` crate's
/// `email` format: the registered check of `format: "email"`.
pub(super) fn is_email(address: &str) -> bool {
    is_plain(address) || crate_check(address)
}

/// The crate's own check: its `email` format, run on a one-keyword schema.
fn crate_check(address: &str) -> bool {
    static CHECK: LazyLock<Option<jsonschema::Validator>> = LazyLock::new(|| {
        jsonschema::options().should_validate_formats(true).build(&serde_json::json!({"format": "email"})).ok()
    });
    match &*CHECK {
        Some(check) => check.is_valid(&Value::String(address.to_owned())),
        // A constant schema that compiles in every test: never reached.
        None => false,
    }
}

/// Byte classes of a plain address, one table lookup per byte.
const ATEXT: u8 = 1;
/// A letter or digit (also atext).
const ALNUM: u8 = 2;
const CLASSES: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            table[b] = ATEXT | ALNUM;
        }
        b += 1;
    }
    let specials = b"!#$%&'*+-/=?^_`{|}~";
    let mut i = 0;
    while i < specials.len() {
        table[specials[i] as usize] = ATEXT;
        i += 1;
    }
    table
};

/// A plain address (see the module's note): accepted without the crate.
/// `false` says only "not plain", not "invalid". One pass over the bytes.
pub(super) fn is_plain(address: &str) -> bool {
    let bytes = address.as_bytes();
    // The local part: atext runs joined by single dots, up to the first `@`
    // (which is no atext).
    let mut at = 0;
    let mut previous = b'.';
    loop {
        let Some(&b) = bytes.get(at) else {
            return false;
        };
        if b == b'@' {
            break;
        }
        if b == b'.' {
            if previous == b'.' {
                return false;
            }
        } else if CLASSES[usize::from(b)] & ATEXT == 0 {
            return false;
        }
        previous = b;
        at += 1;
    }
    if at == 0 || at > LOCAL_MAX || previous == b'.' {
        return false;
    }
    let domain = &bytes[at + 1..];
    if domain.is_empty() || domain.len() > DOMAIN_MAX {
        return false;
    }
    // The domain: labels of letters, digits and hyphens, each ending at a
    // dot or the end, checked there.
    let mut label = 0;
    for (i, &b) in domain.iter().enumerate() {
        if b == b'.' {
            if !is_ldh_label(&domain[label..i]) {
                return false;
            }
            label = i + 1;
        } else if CLASSES[usize::from(b)] & ALNUM == 0 && b != b'-' {
            return false;
        }
    }
    is_ldh_label(&domain[label..])
}

/// A label of letters, digits and hyphens (the caller checked each byte):
/// 1 to [`LABEL_MAX`] of them, starting and ending with a letter or digit,
/// and not `??--...` (punycode: left to the crate).
fn is_ldh_label(label: &[u8]) -> bool {
    match label {
        [first, .., last] | [first @ last] => {
            *first != b'-' && *last != b'-' && label.len() <= LABEL_MAX && !matches!(label, [_, _, b'-', b'-', ..])
        }
        [] => false,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    use super::*;

    fn plain_and_crate(address: &str) -> (bool, bool) {
        (is_plain(address), crate_check(address))
    }

    #[test]
    fn plain_addresses_are_accepted_without_the_crate_and_the_crate_agrees() {
        let local64 = "a".repeat(64);
        let label63 = "b".repeat(63);
        let domain253 = format!("{0}.{0}.{0}.{1}", label63, "c".repeat(61));
        assert_eq!(domain253.len(), 253);
        for address in [
            "ada@example.com".to_string(),
            "a@b".into(),
            "first.last+tag@mail-1.example.co.uk".into(),
            "!#$%&'*+-/=?^_`{|}~@x.io".into(),
            "1@2.3".into(),
            format!("{local64}@example.com"),
            format!("x@{label63}.com"),
            format!("x@{domain253}"),
            "x@ab-cd.com".into(),
            "x@a--b.com".into(),
        ] {
            assert_eq!(plain_and_crate(&address), (true, true), "{address}");
            assert!(is_email(&address), "{address}");
        }
    }

    #[test]
    fn addresses_past_a_limit_or_not_plain_go_to_the_crate() {
        let label64 = "b".repeat(64);
        let domain254 = format!("{0}.{0}.{0}.{1}", "b".repeat(63), "c".repeat(62));
        // (address, what the crate says)
        for (address, valid) in [
            (format!("{}@example.com", "a".repeat(65)), false),
            (format!("x@{label64}.com"), false),
            (format!("x@{domain254}"), false),
            ("\"quoted local\"@example.com".into(), true),
            ("Ada <ada@example.com>".into(), true),
            ("x@[127.0.0.1]".into(), true),
            ("x@[IPv6:::1]".into(), true),
            ("x@xn--nxasmq6b.com".into(), true),
            ("x@ab--cd.com".into(), false),
            ("x@xn--.com".into(), false),
            ("jos\u{e9}@example.com".into(), false),
            ("x@b\u{fc}cher.de".into(), false),
            ("a..b@example.com".into(), false),
            (".a@example.com".into(), false),
            ("a.@example.com".into(), false),
            ("a@example.com.".into(), false),
            ("a@-example.com".into(), false),
            ("a@example-.com".into(), false),
            ("a@exa_mple.com".into(), false),
            ("a@b@example.com".into(), false),
            ("@example.com".into(), false),
            ("a@".into(), false),
            ("a".into(), false),
            ("".into(), false),
        ] {
            assert_eq!(plain_and_crate(&address), (false, valid), "{address}");
            assert_eq!(is_email(&address), valid, "{address}");
        }
    }

    /// Strings that look like addresses, near every rule and limit.
    fn addresses() -> impl Strategy<Value = String> {
        let atext = "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,8}";
        let local = prop_oneof![
            prop::collection::vec(atext, 1..4).prop_map(|runs| runs.join(".")),
            (58usize..70).prop_map(|n| "l".repeat(n)),
            "[a-z.\"\\\\ <>()\\[\\]@,;:é-]{0,10}",
            Just("\"\"".to_string()),
        ];
        let label = prop_oneof![
            "[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?",
            "[a-z0-9-]{0,6}",
            "xn--[a-z0-9-]{0,8}",
            "[a-z]{2}--[a-z]{1,3}",
            (60usize..66).prop_map(|n| "d".repeat(n)),
            "[a-z_é\\[\\]:.]{1,4}",
        ];
        let domain = prop_oneof![
            prop::collection::vec(label, 1..5).prop_map(|labels| labels.join(".")),
            prop::collection::vec(Just("e".repeat(63)), 3..5).prop_map(|labels| labels.join(".")),
            "\\[[0-9a-fA-F.:IPv6]{0,16}\\]",
        ];
        let address = (local, domain, prop_oneof![Just(""), Just("."), Just(">"), Just(" ")])
            .prop_map(|(local, domain, end)| format!("{local}@{domain}{end}"));
        prop_oneof![
            4 => address,
            1 => "\\PC{0,12}",
            1 => "[a-z@.\" <>-]{0,12}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// The fast accept accepts only what the crate accepts, and the
        /// combined check answers as the crate does, on every input.
        #[test]
        fn the_fast_accept_is_a_subset_of_the_crate_check(address in addresses()) {
            let (plain, valid) = plain_and_crate(&address);
            prop_assert!(!plain || valid, "plain but refused by the crate: {:?}", address);
            prop_assert_eq!(is_email(&address), valid, "{:?}", address);
        }
    }

    /// The generator meets both sides of the fast accept and of the crate.
    #[test]
    fn the_generator_reaches_every_case() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = addresses();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..3000 {
            let Ok(tree) = strategy.new_tree(&mut runner) else { continue };
            let address = tree.current();
            seen.insert(plain_and_crate(&address));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![(false, false), (false, true), (true, true)]);
    }

    /// The one-pass `is_plain` before it (three passes: the `@`, the local
    /// part, the domain's labels), kept to compare against.
    /// Whether a byte is atext (RFC 5322) in ASCII.
    fn is_atext(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
    }

    /// A plain address (see the module's note): accepted without the crate.
    /// `false` says only "not plain", not "invalid".
    fn old_is_plain(address: &str) -> bool {
        let bytes = address.as_bytes();
        let Some(at) = bytes.iter().position(|&b| b == b'@') else {
            return false;
        };
        let (local, domain) = (&bytes[..at], &bytes[at + 1..]);
        is_dot_atom(local) && is_ldh_domain(domain)
    }

    /// 1 to [`LOCAL_MAX`] bytes of atext runs joined by single dots.
    fn is_dot_atom(local: &[u8]) -> bool {
        if local.is_empty() || local.len() > LOCAL_MAX {
            return false;
        }
        let mut previous = b'.';
        for &b in local {
            if b == b'.' {
                if previous == b'.' {
                    return false;
                }
            } else if !is_atext(b) {
                return false;
            }
            previous = b;
        }
        previous != b'.'
    }

    /// 1 to [`DOMAIN_MAX`] bytes of dot-separated labels, each 1 to
    /// [`LABEL_MAX`] letters, digits and hyphens, starting and ending with a
    /// letter or digit, and not `??--...` (punycode: left to the crate).
    fn is_ldh_domain(domain: &[u8]) -> bool {
        if domain.is_empty() || domain.len() > DOMAIN_MAX {
            return false;
        }
        domain.split(|&b| b == b'.').all(|label| {
            matches!(label, [first, .., last] | [first @ last] if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric())
                && label.len() <= LABEL_MAX
                && label.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
                && !matches!(label, [_, _, b'-', b'-', ..])
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// The one-pass fast accept accepts exactly what the three-pass one did.
        #[test]
        fn the_one_pass_fast_accept_is_the_one_it_replaced(address in addresses()) {
            prop_assert_eq!(is_plain(&address), old_is_plain(&address), "{:?}", address);
        }
    }
}
