//! `GET /`: the dashboard, one self-contained HTML page (inline CSS and
//! JS, no CDN) compiled into the binary. The page holds no data: it reads
//! `/stats` and `/events/stream` from the browser, with the token the user
//! types into it, so `/` itself is open to anyone, like `/openapi.yaml`.
//!
//! Its `Content-Security-Policy` allows nothing but the page's own inline
//! `<script>` and `<style>` (by their SHA-256, computed once from the
//! compiled-in page) and requests to the same origin: an injected script
//! or style, a frame around the page, or a request elsewhere is refused by
//! the browser.

use std::sync::OnceLock;

use base64::Engine;
use bytes::Bytes;
use inlet_shared::http::Response;
use sha2::{Digest, Sha256};

/// The page, byte for byte as in `server/src/dashboard/index.html`.
pub const PAGE: &str = include_str!("index.html");

/// `GET /`, `HEAD /`: the page with its security headers. It is small and
/// changes only with the binary: `no-cache` lets a browser keep it but ask
/// again, so an upgraded server's page is seen on the next load.
pub fn page() -> Response {
    Response::new(200, Some(Bytes::from_static(b"text/html; charset=utf-8")), Bytes::from_static(PAGE.as_bytes()))
        .with_header("Content-Security-Policy", csp().clone())
        .with_header("Cache-Control", Bytes::from_static(b"no-cache"))
        .with_header("X-Content-Type-Options", Bytes::from_static(b"nosniff"))
        .with_header("Referrer-Policy", Bytes::from_static(b"no-referrer"))
}

/// The policy, built once.
fn csp() -> &'static Bytes {
    static CSP: OnceLock<Bytes> = OnceLock::new();
    CSP.get_or_init(|| Bytes::from(policy(PAGE)))
}

/// The policy for `page`: its inline script and style allowed by hash,
/// everything else same-origin or nothing. An element the page does not
/// have gets no source at all (`'none'`).
fn policy(page: &str) -> String {
    let source = |tag: &str| inline(page, tag).map(|body| format!("'{}'", hash(body))).unwrap_or("'none'".into());
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        source("script"),
        source("style"),
    )
}

/// The text of the first `<tag>…</tag>` element of `page` (without
/// attributes, as the page writes them): exactly what a browser hashes.
fn inline<'a>(page: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = page.find(&open)? + open.len();
    let end = start + page[start..].find(&format!("</{tag}>"))?;
    Some(&page[start..end])
}

/// A CSP hash source: `sha256-` and the base64 of the SHA-256 digest.
fn hash(text: &str) -> String {
    format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_pages_inline_script_and_style() {
        let csp = policy(PAGE);
        let script = inline(PAGE, "script").expect("the page has an inline script");
        let style = inline(PAGE, "style").expect("the page has an inline style");
        assert!(csp.contains(&format!("script-src '{}';", hash(script))), "{csp}");
        assert!(csp.contains(&format!("style-src '{}';", hash(style))), "{csp}");
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        // One script and one style: a second one would be blocked.
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        // No inline handlers or style attributes, which a hash cannot allow.
        assert!(!PAGE.contains(" style=") && !PAGE.contains(" onclick=") && !PAGE.contains(" onload="));
        // Nothing loaded from elsewhere.
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
    }

    #[test]
    fn hash_is_the_base64_sha256_a_browser_computes() {
        // The example of the CSP spec (§ 2.3.1 hash-source): "alert('Hello, world.');".
        assert_eq!(hash("alert('Hello, world.');"), "sha256-qznLcsROx4GACP2dm0UCKCzCG+HiZ1guq6ZZDob/Tng=");
    }

    #[test]
    fn a_page_without_a_script_allows_none() {
        let csp = policy("<html><style>p{}</style></html>");
        assert!(csp.contains("script-src 'none';"), "{csp}");
        assert!(csp.contains(&format!("style-src '{}';", hash("p{}"))), "{csp}");
    }

    #[test]
    fn the_page_is_served_with_its_headers() {
        let res = page();
        assert_eq!(res.status, 200);
        assert_eq!(res.content_type.as_deref(), Some(&b"text/html; charset=utf-8"[..]));
        let header = |name: &str| res.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        assert_eq!(header("Content-Security-Policy"), Some(Bytes::from(policy(PAGE))));
        assert_eq!(header("Cache-Control").as_deref(), Some(&b"no-cache"[..]));
        assert_eq!(header("X-Content-Type-Options").as_deref(), Some(&b"nosniff"[..]));
    }
}
