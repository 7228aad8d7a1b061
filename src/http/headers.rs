//! Security headers on every response (`security_headers`, wrapped around
//! the whole app in `node.rs`).
//!
//! The Content-Security-Policy lets a page run and load only what the node
//! serves: scripts and styles from the node (plus exactly the inline script
//! and style of `fallback.html`, by hash), images from the node or `data:`
//! (the UI's own icons; never a remote image a model put in a reply), and
//! connections to the node itself, its WebSocket included. The built UI has
//! no inline script or style element, so the hashes only serve the fallback.

use std::sync::LazyLock;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{
    CONTENT_SECURITY_POLICY, HeaderValue, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use actix_web::middleware::Next;
use sha2::{Digest as _, Sha256};

/// The policy up to `connect-src`, the same for every response.
static POLICY_HEAD: LazyLock<String> = LazyLock::new(|| {
    let sources = |tag| {
        inline_blocks(super::FALLBACK_HTML, tag)
            .into_iter()
            .map(|block| format!(" 'sha256-{}'", base64(&Sha256::digest(block.as_bytes()))))
            .collect::<String>()
    };
    format!(
        "default-src 'self'; script-src 'self'{}; style-src 'self'{}; img-src 'self' data:; \
         frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        sources("script"),
        sources("style"),
    )
});

/// Adds `Content-Security-Policy`, `X-Content-Type-Options: nosniff` and
/// `Referrer-Policy: no-referrer` to every response that has none of its own.
pub async fn security_headers(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let policy = content_security_policy(&request);
    let mut response = next.call(request).await?;
    let headers = response.headers_mut();
    if !headers.contains_key(CONTENT_SECURITY_POLICY) {
        headers.insert(CONTENT_SECURITY_POLICY, policy);
    }
    if !headers.contains_key(X_CONTENT_TYPE_OPTIONS) {
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    }
    if !headers.contains_key(REFERRER_POLICY) {
        headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    Ok(response)
}

/// The policy for a request: `connect-src` names the WebSocket of the host
/// the page was loaded from, since only CSP Level 3 browsers count `ws:` and
/// `wss:` of that host as `'self'`.
fn content_security_policy(request: &ServiceRequest) -> HeaderValue {
    // Behind a proxy the host is its `X-Forwarded-Host`, which is what the
    // browser addressed. A host that is not plainly a host name, an address
    // and a port is left out rather than copied into the header.
    let info = request.connection_info();
    let host = info.host();
    let plain_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    // Both schemes: the page's own scheme is not known for sure behind a
    // proxy that does not send `X-Forwarded-Proto`, and a browser refuses
    // `ws:` from an `https:` page anyway.
    let policy = if plain_host {
        format!(
            "{}; connect-src 'self' ws://{host} wss://{host}",
            *POLICY_HEAD
        )
    } else {
        format!("{}; connect-src 'self'", *POLICY_HEAD)
    };
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"))
}

/// The contents of every `<tag>…</tag>` in `html` (only attribute-less
/// tags: a test checks that the fallback page has no other kind).
fn inline_blocks<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut blocks = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        blocks.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    blocks
}

/// Standard base64 with padding, as CSP hash sources are written (the
/// `base64` crate is only an indirect dependency, and this is all it would do).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let triple = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(triple >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_like_rfc_4648() {
        for (input, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn a_hash_source_is_written_as_browsers_compute_it() {
        // The example of the CSP specification.
        let digest = Sha256::digest("alert('Hello, world.');".as_bytes());
        assert_eq!(
            base64(&digest),
            "qznLcsROx4GACP2dm0UCKCzCG+HiZ1guq6ZZDob/Tng="
        );
    }

    #[test]
    fn every_inline_script_and_style_of_the_fallback_page_is_hashed() {
        let html = super::super::FALLBACK_HTML;
        for tag in ["script", "style"] {
            let blocks = inline_blocks(html, tag);
            assert!(!blocks.is_empty(), "the fallback page has a <{tag}>");
            // A tag with attributes would escape `inline_blocks`: there must be none.
            assert_eq!(
                html.matches(&format!("<{tag}")).count(),
                blocks.len(),
                "every <{tag}> of fallback.html is written without attributes"
            );
            for block in blocks {
                let source = format!("'sha256-{}'", base64(&Sha256::digest(block.as_bytes())));
                assert!(POLICY_HEAD.contains(&source), "{source} in the policy");
            }
        }
        assert!(!POLICY_HEAD.contains("unsafe-inline"));
    }

    #[test]
    fn inline_blocks_finds_each_block() {
        let html = "<style>a{}</style><p>x</p><script>one()</script><script>two()</script>";
        assert_eq!(inline_blocks(html, "script"), ["one()", "two()"]);
        assert_eq!(inline_blocks(html, "style"), ["a{}"]);
        assert!(inline_blocks("<script>never closed", "script").is_empty());
    }
}
